//! Owned memory mappings: the UMEM area (anonymous) and the four rings (shared with the kernel
//! through the AF_XDP socket).
//!
//! A [`Mmap`] only hands out its base pointer and length; it never makes a Rust reference to
//! the memory, because the kernel may write to parts of it at any time. The code that reads or
//! writes through the pointer (`ring`, `umem`) states which part it owns and why.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A mapping that is unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mmap` is an owned region of process memory, like a `Box<[u8]>` that is never
// dereferenced through `&self`; moving it to another thread moves that ownership.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` exposes only the base pointer and length. Every access through the pointer
// is in `unsafe` code that carries its own synchronisation argument (atomics for ring indexes,
// chunk ownership for the UMEM).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Private zero-filled anonymous memory of `len` bytes (rounded up to pages by the kernel).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses cannot alias any
        // existing Rust object; the arguments are plain integers.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        Mmap::from_raw(ptr, len)
    }

    /// A `MAP_SHARED` mapping of `len` bytes of `fd` at `offset`: how AF_XDP rings are mapped.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize, offset: u64) -> io::Result<Mmap> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
        // SAFETY: as in `anonymous`, the kernel picks a fresh address range; `fd` is a live
        // descriptor for the whole call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.as_raw_fd(),
                offset,
            )
        };
        Mmap::from_raw(ptr, len)
    }

    fn from_raw(ptr: *mut libc::c_void, len: usize) -> io::Result<Mmap> {
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        match NonNull::new(ptr.cast::<u8>()) {
            Some(ptr) => Ok(Mmap { ptr, len }),
            None => Err(io::Error::from_raw_os_error(libc::ENOMEM)),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; no
        // reference into it outlives `self` (borrows of frames are tied to `&self` of the
        // owners, which are gone by now).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_mapping_is_zeroed_and_writable() {
        let map = Mmap::anonymous(8192).unwrap();
        assert_eq!(map.len(), 8192);
        assert_eq!(map.as_ptr() as usize % 4096, 0, "page aligned");
        // SAFETY: the test owns the whole fresh mapping and nothing else can see it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), map.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[8191] = 7;
        assert_eq!(bytes[8191], 7);
    }
}
