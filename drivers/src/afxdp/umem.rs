//! The UMEM: one anonymous mapping cut into equal chunks that hold frames, shared with the
//! kernel by `XDP_UMEM_REG`.
//!
//! Every chunk has exactly one owner at a time: the kernel (it sits in the fill, RX-in-flight,
//! TX or completion path) or us. The chunks we own and have no use for sit on a free stack.
//! Addresses are byte offsets from the start of the UMEM, as in the ring descriptors.
//!
//! # Invariants
//!
//! - A chunk is on the free stack at most once: a bitmap rejects a second `release` of the
//!   same chunk, so a kernel that returns an address twice cannot make two frames share it.
//! - [`Umem::frame`] and [`Umem::frame_mut`] check that `addr .. addr + len` lies inside one
//!   chunk inside the mapping, whatever the descriptor says; bad descriptors give `None`.

use std::io;

use super::tx_meta::{TX_METADATA_LEN, TxChecksum};
use crate::sys::Mmap;

/// Chunk size used by the driver: one page, so a chunk never straddles pages.
pub(crate) const CHUNK_SIZE: u32 = 4096;

pub(crate) struct Umem {
    area: Mmap,
    chunk_size: u32,
    chunk_count: u32,
    free: Vec<u64>,
    /// Bit `n` is set while chunk `n` is on the free stack.
    on_free_stack: Vec<u64>,
}

impl std::fmt::Debug for Umem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Umem")
            .field("chunk_size", &self.chunk_size)
            .field("chunk_count", &self.chunk_count)
            .field("free", &self.free.len())
            .finish()
    }
}

impl Umem {
    /// Maps `chunk_count` chunks of `chunk_size` bytes (a power of two, at least 2048), all on
    /// the free stack.
    pub(crate) fn new(chunk_count: u32, chunk_size: u32) -> io::Result<Umem> {
        if !chunk_size.is_power_of_two() || chunk_size < 2048 || chunk_count == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let len = (chunk_count as usize)
            .checked_mul(chunk_size as usize)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let area = Mmap::anonymous(len)?;
        // Pop order: chunk 0 first.
        let free = (0..u64::from(chunk_count))
            .rev()
            .map(|n| n * u64::from(chunk_size))
            .collect();
        let mut on_free_stack = vec![0u64; (chunk_count as usize).div_ceil(64)];
        for n in 0..chunk_count as usize {
            on_free_stack[n / 64] |= 1 << (n % 64);
        }
        Ok(Umem {
            area,
            chunk_size,
            chunk_count,
            free,
            on_free_stack,
        })
    }

    /// The registration the kernel needs: base address, length, chunk size, no headroom; for
    /// TCP checksums completed by anyone but the stack, [`TX_METADATA_LEN`] bytes of TX
    /// metadata in front of each TX frame (`XDP_UMEM_TX_METADATA_LEN`, Linux 6.11+; an older
    /// kernel refuses the flag), and for the kernel's software completion
    /// `XDP_UMEM_TX_SW_CSUM`.
    pub(crate) fn registration(&self, tx_checksum: TxChecksum) -> libc::xdp_umem_reg {
        let (flags, tx_metadata_len) = match tx_checksum {
            TxChecksum::Stack => (0, 0),
            TxChecksum::Device => (libc::XDP_UMEM_TX_METADATA_LEN, TX_METADATA_LEN),
            TxChecksum::KernelSoftware => (
                libc::XDP_UMEM_TX_METADATA_LEN | libc::XDP_UMEM_TX_SW_CSUM,
                TX_METADATA_LEN,
            ),
        };
        libc::xdp_umem_reg {
            addr: self.area.as_ptr() as u64,
            len: self.area.len() as u64,
            chunk_size: self.chunk_size,
            headroom: 0,
            flags,
            tx_metadata_len,
        }
    }

    pub(crate) fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub(crate) fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Start of the chunk that holds `addr`, if `addr` is inside the UMEM.
    pub(crate) fn chunk_base(&self, addr: u64) -> Option<u64> {
        (addr < self.area.len() as u64).then_some(addr & !u64::from(self.chunk_size - 1))
    }

    /// Takes a chunk off the free stack.
    pub(crate) fn alloc(&mut self) -> Option<u64> {
        let addr = self.free.pop()?;
        let n = (addr / u64::from(self.chunk_size)) as usize;
        if let Some(word) = self.on_free_stack.get_mut(n / 64) {
            *word &= !(1 << (n % 64));
        }
        Some(addr)
    }

    /// Hints the cache to bring in `len` bytes at `offset` into the chunk that the next
    /// `alloc` returns (if any): a transmit path calls it after staging a frame, so that
    /// the next frame's headers are not a store miss on a chunk the ring left cold.
    pub(crate) fn hint_next(&self, offset: u32, len: usize) {
        if let Some(&next) = self.free.last()
            && let Some(range) = self.frame_range(next + u64::from(offset), 1)
        {
            crate::prefetch::prefetch(self.area.as_ptr().wrapping_add(range.start), len);
        }
    }

    /// Puts the chunk holding `addr` back on the free stack. Returns `false` (and changes
    /// nothing) if `addr` is outside the UMEM or the chunk is already free.
    pub(crate) fn release(&mut self, addr: u64) -> bool {
        let Some(base) = self.chunk_base(addr) else {
            return false;
        };
        let n = (base / u64::from(self.chunk_size)) as usize;
        let Some(word) = self.on_free_stack.get_mut(n / 64) else {
            return false;
        };
        let bit = 1 << (n % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.free.push(base);
        true
    }

    /// Byte range of a frame of `len` bytes at `addr`, if it is non-empty and lies inside one
    /// chunk of the UMEM.
    pub(crate) fn frame_range(&self, addr: u64, len: u32) -> Option<std::ops::Range<usize>> {
        let base = self.chunk_base(addr)?;
        let end_in_chunk = (addr - base).checked_add(u64::from(len))?;
        if len == 0 || end_in_chunk > u64::from(self.chunk_size) {
            return None;
        }
        // Both fit: `addr < area.len()`, a `usize`, and the end is inside the same chunk.
        let start = usize::try_from(addr).ok()?;
        Some(start..start + len as usize)
    }

    /// The frame of `len` bytes at `addr`, or `None` for a descriptor that does not fit.
    ///
    /// # Safety
    ///
    /// We must own the chunk holding `addr` (it came off the RX ring, or we took it with
    /// `alloc` and have not given it to the kernel), so nothing writes it while the slice lives.
    pub(crate) unsafe fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let range = self.frame_range(addr, len)?;
        // SAFETY: `range` lies inside the mapping (checked by `frame_range`) and inside one
        // chunk that the caller owns, so no one writes these bytes while `&self` is borrowed.
        Some(unsafe {
            std::slice::from_raw_parts(self.area.as_ptr().add(range.start), range.len())
        })
    }

    /// Mutable access to the frame of `len` bytes at `addr`.
    ///
    /// # Safety
    ///
    /// As for [`Umem::frame`].
    pub(crate) unsafe fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let range = self.frame_range(addr, len)?;
        // SAFETY: as in `frame`; `&mut self` rules out any other slice into the UMEM from
        // this side.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.area.as_ptr().add(range.start), range.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_stack_hands_out_each_chunk_once() {
        let mut umem = Umem::new(4, 4096).unwrap();
        assert_eq!(umem.free_count(), 4);
        let got: Vec<u64> = std::iter::from_fn(|| umem.alloc()).collect();
        assert_eq!(got, vec![0, 4096, 8192, 12288]);
        assert_eq!(umem.alloc(), None);
        // An address inside a chunk frees that chunk.
        assert!(umem.release(8192 + 256));
        assert!(!umem.release(8192), "double free is refused");
        assert!(!umem.release(16384), "outside the UMEM");
        assert!(!umem.release(u64::MAX));
        assert_eq!(umem.free_count(), 1);
        assert_eq!(umem.alloc(), Some(8192));
    }

    #[test]
    fn bad_descriptors_are_refused() {
        let umem = Umem::new(4, 4096).unwrap();
        assert_eq!(umem.frame_range(256, 60), Some(256..316));
        assert_eq!(umem.frame_range(4096 + 256, 3840), Some(4352..8192));
        assert_eq!(
            umem.frame_range(256, 3841),
            None,
            "crosses into the next chunk"
        );
        assert_eq!(
            umem.frame_range(12288 + 4000, 200),
            None,
            "runs off the end"
        );
        assert_eq!(umem.frame_range(16384, 1), None, "starts past the end");
        assert_eq!(umem.frame_range(u64::MAX - 2, 10), None, "would overflow");
        assert_eq!(umem.frame_range(512, 0), None, "empty");
    }

    #[test]
    fn frames_read_back_what_was_written() {
        let mut umem = Umem::new(2, 4096).unwrap();
        let addr = umem.alloc().unwrap();
        // SAFETY: the chunk came off the free stack and no kernel sees this UMEM.
        let buf = unsafe { umem.frame_mut(addr + 10, 4) }.unwrap();
        buf.copy_from_slice(b"abcd");
        // SAFETY: as above.
        assert_eq!(unsafe { umem.frame(addr + 10, 4) }, Some(&b"abcd"[..]));
        let reg = umem.registration(TxChecksum::Stack);
        assert_eq!((reg.len, reg.chunk_size, reg.headroom), (8192, 4096, 0));
        assert_eq!((reg.flags, reg.tx_metadata_len), (0, 0));
        let reg = umem.registration(TxChecksum::Device);
        assert_eq!((reg.flags, reg.tx_metadata_len), (1 << 2, 24));
        let reg = umem.registration(TxChecksum::KernelSoftware);
        assert_eq!((reg.flags, reg.tx_metadata_len), (1 << 2 | 1 << 1, 24));
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert!(Umem::new(0, 4096).is_err());
        assert!(Umem::new(4, 3000).is_err());
        assert!(Umem::new(4, 1024).is_err());
    }
}
