//! The libc calls of the AF_XDP backend: the XDP socket, its options, the kicks, and `bpf(2)`.
//!
//! AF_XDP sockets and BPF objects are held in [`Fd`]s. Each wrapper makes its call through the
//! parent module's `syscall!` and states why it is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::Fd;

/// Types the kernel may read from or write into as raw bytes: plain C structs of integers.
///
/// # Safety
///
/// Every bit pattern must be a valid value of the type (no references, enums or `bool`s).
pub(crate) unsafe trait PlainData: Copy {}

// SAFETY: integers are valid for any bits.
unsafe impl PlainData for u32 {}
// SAFETY: the following libc structs consist of `u16`/`u32`/`u64` fields only.
unsafe impl PlainData for libc::xdp_umem_reg {}
// SAFETY: as above.
unsafe impl PlainData for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl PlainData for libc::xdp_statistics {}

/// `socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)`.
pub(crate) fn xdp_socket() -> io::Result<Fd> {
    // SAFETY: integer arguments only; the kernel validates them.
    let fd = syscall!(socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0))?;
    // SAFETY: `socket` just returned this descriptor.
    Ok(unsafe { Fd::from_new(fd) })
}

/// `setsockopt(fd, SOL_XDP, name, value)`.
pub(crate) fn set_xdp_option<T: PlainData>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for reads of `size_of::<T>()` bytes for the whole call.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_XDP,
        name,
        (value as *const T).cast(),
        len,
    ))?;
    Ok(())
}

/// `getsockopt(fd, SOL_XDP, name)`. Returns the value and the length the kernel wrote.
pub(crate) fn get_xdp_option<T: PlainData>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
) -> io::Result<(T, usize)> {
    // SAFETY: `T: PlainData`, so all-zero bytes are a valid `T`.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is valid for writes of `len` bytes and `len` for a `socklen_t`; the
    // kernel writes at most `len` bytes, and any bytes are a valid `T`.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_XDP,
        name,
        (&mut value as *mut T).cast(),
        &mut len,
    ))?;
    Ok((value, len as usize))
}

/// `bind(2)` of an AF_XDP socket to an interface queue.
pub(crate) fn bind_xdp(fd: BorrowedFd<'_>, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    let len = std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t;
    // SAFETY: `addr` is a valid `sockaddr_xdp` of `len` bytes that outlives the call.
    syscall!(bind(
        fd.as_raw_fd(),
        (&addr as *const libc::sockaddr_xdp).cast(),
        len,
    ))?;
    Ok(())
}

/// The TX kick: `sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0)`.
pub(crate) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a null buffer of length 0 and a null address of length 0 are valid arguments;
    // the kernel reads neither.
    syscall!(sendto(
        fd.as_raw_fd(),
        std::ptr::null(),
        0,
        libc::MSG_DONTWAIT,
        std::ptr::null(),
        0,
    ))?;
    Ok(())
}

/// The RX wake-up for a fill ring flagged `NEED_WAKEUP`: `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`.
pub(crate) fn wake_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: as in `kick_tx`: zero-length null buffer and null address.
    syscall!(recvfrom(
        fd.as_raw_fd(),
        std::ptr::null_mut(),
        0,
        libc::MSG_DONTWAIT,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ))?;
    Ok(())
}

/// The raw `bpf(2)` system call. Returns its non-negative result (a new descriptor for the
/// commands that create one).
///
/// # Safety
///
/// `attr` must be the `union bpf_attr` member for `cmd`, and every pointer inside it must be
/// valid for what the kernel does with it during the call (read instructions and strings,
/// write the log buffer, read keys and values).
pub(crate) unsafe fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<libc::c_long> {
    let size = std::mem::size_of::<A>() as libc::c_uint;
    // SAFETY: `attr` is valid for reads and writes of `size` bytes; the pointers inside it
    // are the caller's responsibility (see `# Safety`).
    syscall!(syscall(
        libc::SYS_bpf,
        cmd,
        (attr as *mut A).cast::<libc::c_void>(),
        size,
    ))
}

/// `bpf(2)` for a command that creates an object (a map, a program, a link): returns the new
/// descriptor, owned.
///
/// # Safety
///
/// As for [`bpf`]; `cmd` must be a command whose result is a new descriptor.
pub(crate) unsafe fn bpf_create<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<Fd> {
    // SAFETY: forwarded contract.
    let res = unsafe { bpf(cmd, attr) }?;
    let fd = libc::c_int::try_from(res).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: for an object-creating command a non-negative result is a new descriptor that
    // only we hold.
    Ok(unsafe { Fd::from_new(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xdp_socket_opens_or_says_why_not() {
        // Unprivileged, or without AF_XDP in the kernel, the call fails with an errno; it
        // never hands back a descriptor that is not a socket.
        match xdp_socket() {
            Ok(fd) => assert!(fd.as_raw_fd() >= 0),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }
}
