//! Thin, safe wrappers over the libc calls of the crate: descriptors ([`Fd`]), waiting
//! ([`poll_readable`]), shared memory ([`Mmap`]), the interface queries (`ifreq` ioctls and
//! `SIOCETHTOOL` with a typed struct per command), netmap's ioctls, the namespace calls of
//! [`crate::netns`], CPU affinity and credentials (for [`crate::host`] and
//! [`crate::sandbox`]), and (in [`xdp`]) the AF_XDP socket and `bpf(2)`.
//!
//! Every raw call goes through [`syscall!`], which turns the C convention (`-1` and `errno`) into
//! `io::Result`; the one exception here is `mmap`, whose failure value is `MAP_FAILED`, not
//! `-1`. Each wrapper owns one `unsafe` block and states why it is sound. Outside this module
//! only calls that do not follow the convention remain: `sandbox`'s `getpwnam_r` (returns the
//! errno) and `getgrouplist` (`-1` means "too small", with no errno), `geteuid` (cannot fail)
//! and the `CPU_SET` macros. File descriptors are held in [`Fd`] or an [`OwnedFd`], so they are
//! closed exactly once, on drop.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

/// Calls a libc function and maps a `-1` return to the thread's `errno` as an [`io::Error`].
///
/// The expansion contains an `unsafe` block, so the macro is private to this module (and its
/// child [`xdp`]), and every use is preceded by a `// SAFETY:` comment explaining why that
/// particular call is sound.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)? ) ) => {{
        // SAFETY: the caller of `syscall!` (always in this module) upholds the contract of
        // `libc::$fn`; each use site documents why its arguments are valid.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) mod xdp;

/// Waits up to `timeout` for `fd` to become readable with `poll(2)`. Returns `Ok(true)` if it
/// is readable (or has an error or hang-up to report), `Ok(false)` on timeout or when a signal
/// interrupted the wait.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so a 0.5 ms wait does not become a busy poll.
    let millis = timeout.as_micros().div_ceil(1000);
    let millis = libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid, initialised `pollfd` that outlives the call; nfds is 1.
    match syscall!(poll(&mut pfd, 1, millis)) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// An owned memory mapping, unmapped on drop: the AF_XDP UMEM (anonymous) and rings, and the
/// netmap region (both shared with the kernel through a descriptor).
///
/// A [`Mmap`] only hands out its base pointer and length; it never makes a Rust reference to
/// the memory, because the kernel may write to parts of it at any time. The code that reads or
/// writes through the pointer states which part it owns and why.
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
// chunk ownership for the UMEM, netmap's slot ownership rule).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Private zero-filled anonymous memory of `len` bytes (rounded up to pages by the kernel).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        Mmap::map(len, flags, None, 0)
    }

    /// A read-write `MAP_SHARED` mapping of `len` bytes of `fd` at `offset`. `populate` adds
    /// `MAP_POPULATE` (the AF_XDP rings are faulted in at once; netmap maps without it).
    pub(crate) fn shared(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u64,
        populate: bool,
    ) -> io::Result<Mmap> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = if populate {
            libc::MAP_SHARED | libc::MAP_POPULATE
        } else {
            libc::MAP_SHARED
        };
        Mmap::map(len, flags, Some(fd), offset)
    }

    /// A read-write mapping at an address the kernel picks: of `fd` at `offset`, or anonymous.
    fn map(
        len: usize,
        flags: libc::c_int,
        fd: Option<BorrowedFd<'_>>,
        offset: libc::off_t,
    ) -> io::Result<Mmap> {
        let fd = fd.map_or(-1, |fd| fd.as_raw_fd());
        // SAFETY: with a null address hint the kernel maps a fresh range, which cannot alias
        // any existing Rust object; the other arguments are plain integers, and `fd`, when not
        // -1, is borrowed, so live, for the whole call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        Mmap::from_raw(ptr, len)
    }

    /// `mmap` fails with `MAP_FAILED`, not `-1`, so it cannot go through `syscall!`.
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

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; no
        // reference into it outlives `self` (borrows of frames are tied to `&self` of the
        // owners, which are gone by now). A failure cannot be acted on in `drop`.
        let _ = syscall!(munmap(self.ptr.as_ptr().cast(), self.len));
    }
}

/// The netmap ioctls that take a `struct nmreq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NmreqRequest {
    /// `NIOCREGIF`: bind the rings of an interface.
    Register,
    /// `NIOCGINFO`: the module's API version and memory size.
    Info,
}

/// The netmap ring syncs, which take no argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NetmapSync {
    Rx,
    Tx,
}

/// A netmap `ioctl(2)` whose argument is one `struct nmreq`.
pub(crate) fn netmap_ioctl(
    fd: BorrowedFd<'_>,
    request: NmreqRequest,
    req: &mut netmap_sys::netmap::nmreq,
) -> io::Result<()> {
    // The request constants are `c_ulong`; `libc::Ioctl` is `c_ulong` on glibc and `c_int` on
    // musl, so the cast is a no-op on one and needed on the other.
    #[allow(clippy::unnecessary_cast)]
    let code = match request {
        NmreqRequest::Register => netmap_sys::netmap::NIOCREGIF as libc::Ioctl,
        NmreqRequest::Info => netmap_sys::netmap::NIOCGINFO as libc::Ioctl,
    };
    // SAFETY: NIOCREGIF and NIOCGINFO each take a pointer to one `struct nmreq`, whose layout
    // `nmreq` matches (its size is encoded in the request numbers and checked by a test in
    // `netmap::real`); `req` is a valid, exclusively borrowed value for the whole call.
    syscall!(ioctl(
        fd.as_raw_fd(),
        code,
        req as *mut netmap_sys::netmap::nmreq
    ))?;
    Ok(())
}

/// `NIOCRXSYNC` or `NIOCTXSYNC` on a registered netmap descriptor.
pub(crate) fn netmap_sync(fd: BorrowedFd<'_>, which: NetmapSync) -> io::Result<()> {
    let code = match which {
        NetmapSync::Rx => netmap_sys::netmap::NIOCRXSYNC,
        NetmapSync::Tx => netmap_sys::netmap::NIOCTXSYNC,
    };
    // SAFETY: NIOCTXSYNC and NIOCRXSYNC take no argument; the descriptor is open.
    syscall!(ioctl(fd.as_raw_fd(), code as libc::Ioctl))?;
    Ok(())
}

/// `mount(2)` with no data argument. An empty `source` is allowed for a propagation change.
pub(crate) fn mount(
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: libc::c_ulong,
) -> io::Result<()> {
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call; the data
    // argument may be null. Mounting changes no memory of this process.
    syscall!(mount(
        source.as_ptr(),
        target.as_ptr(),
        fstype.as_ptr(),
        flags,
        std::ptr::null()
    ))?;
    Ok(())
}

/// `umount2(target, MNT_DETACH)`.
pub(crate) fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path that outlives the call.
    syscall!(umount2(target.as_ptr(), libc::MNT_DETACH))?;
    Ok(())
}

/// `unshare(2)`: the calling thread leaves the namespaces named in `flags` (`CLONE_NEWNET`,
/// `CLONE_NEWNS`) for new ones.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain flag argument; a namespace change touches no memory Rust relies on.
    syscall!(unshare(flags))?;
    Ok(())
}

/// `setns(fd, CLONE_NEWNET)`: the calling thread enters the network namespace of `ns`.
pub(crate) fn enter_net_namespace(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `ns` is an open descriptor for the whole call; as for `unshare`, no memory of
    // this process changes.
    syscall!(setns(ns.as_raw_fd(), libc::CLONE_NEWNET))?;
    Ok(())
}

/// `kill(2)` of one process (`pid > 0`, checked by the caller).
pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: plain integers.
    syscall!(kill(pid, signal))?;
    Ok(())
}

/// The soft limit on locked memory (`getrlimit(RLIMIT_MEMLOCK)`), in bytes; `None` when it is
/// unlimited.
pub(crate) fn memlock_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, exclusively borrowed `rlimit` that the kernel fills.
    syscall!(getrlimit(libc::RLIMIT_MEMLOCK, &mut limit))?;
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur))
}

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub(crate) struct Fd(OwnedFd);

impl Fd {
    /// Takes ownership of a descriptor a system call just returned.
    ///
    /// # Safety
    ///
    /// `fd` must be a live descriptor that nothing else owns or will close.
    pub(crate) unsafe fn from_new(fd: RawFd) -> Fd {
        // SAFETY: the caller guarantees sole ownership of a live descriptor.
        Fd(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `open(2)` with `flags` (`O_CLOEXEC` is always added).
    pub(crate) fn open(path: &CStr, flags: libc::c_int) -> io::Result<Fd> {
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        let fd = syscall!(open(path.as_ptr(), flags | libc::O_CLOEXEC))?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        Ok(unsafe { Fd::from_new(fd) })
    }

    /// `socket(2)` with `SOCK_CLOEXEC`.
    pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<Fd> {
        // SAFETY: plain integer arguments; the kernel validates them.
        let fd = syscall!(socket(domain, ty | libc::SOCK_CLOEXEC, 0))?;
        // SAFETY: `socket` just returned this descriptor and nothing else owns it.
        Ok(unsafe { Fd::from_new(fd) })
    }

    /// One `read(2)` into `buf`. `Ok(n)` is the number of bytes read.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and the
        // kernel writes at most that many.
        let n = syscall!(read(self.raw(), buf.as_mut_ptr().cast(), buf.len()))?;
        // `read` returns -1 (handled above) or a count no larger than `buf.len()`.
        Ok(n.unsigned_abs())
    }

    /// One `write(2)` of `buf`. `Ok(n)` is the number of bytes written.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call.
        let n = syscall!(write(self.raw(), buf.as_ptr().cast(), buf.len()))?;
        Ok(n.unsigned_abs())
    }

    /// Issues an `ioctl(2)` whose argument is a `struct ifreq`.
    pub(crate) fn ifreq_ioctl(&self, request: IfreqRequest, req: &mut IfReq) -> io::Result<()> {
        // SAFETY: every `IfreqRequest` is an ioctl whose argument is a pointer to one
        // `struct ifreq`; `req.0` is a valid, exclusively borrowed `ifreq` for the whole call.
        syscall!(ioctl(
            self.raw(),
            request.code(),
            &mut req.0 as *mut libc::ifreq
        ))?;
        Ok(())
    }

    /// `SIOCETHTOOL` on a socket: runs the ethtool command in `command` (its first field) on
    /// interface `name`, which the kernel reads from and writes back into `command`.
    pub(crate) fn ethtool<T: EthtoolCommand>(&self, name: &str, command: &mut T) -> io::Result<()> {
        if !T::COMMANDS.contains(&command.cmd()) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut req = IfReq::new(name);
        req.0.ifr_ifru.ifru_data = (command as *mut T).cast();
        // SAFETY: `SIOCETHTOOL` takes a `struct ifreq` whose `ifr_data` points at an ethtool
        // command struct. `T: EthtoolCommand` promises that `T` mirrors the kernel's struct for
        // every command in `T::COMMANDS`, checked above to include this one, so the kernel
        // reads and writes only within `*command`. `req` and `command` are exclusively
        // borrowed and outlive the call.
        syscall!(ioctl(
            self.raw(),
            libc::SIOCETHTOOL as libc::Ioctl,
            &mut req.0 as *mut libc::ifreq
        ))?;
        Ok(())
    }

    fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The ioctls that take a `struct ifreq`. Keeping them in a closed set is what lets
/// [`Fd::ifreq_ioctl`] be safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfreqRequest {
    /// `TUNSETIFF` on a `/dev/net/tun` descriptor: create or attach to a tun/tap device.
    TunSetIff,
    /// `SIOCGIFFLAGS` on a socket: read interface flags.
    GetFlags,
    /// `SIOCSIFFLAGS` on a socket: write interface flags.
    SetFlags,
    /// `SIOCGIFMTU` on a socket: read the MTU.
    GetMtu,
    /// `SIOCGIFINDEX` on a socket: read the interface index.
    GetIndex,
}

impl IfreqRequest {
    // The request constants are `c_ulong` in libc, the `ioctl` parameter is `libc::Ioctl`
    // (`c_ulong` on glibc, `c_int` on musl): the cast is a no-op on glibc and keeps musl building.
    #[allow(clippy::unnecessary_cast)]
    fn code(self) -> libc::Ioctl {
        match self {
            IfreqRequest::TunSetIff => libc::TUNSETIFF as libc::Ioctl,
            IfreqRequest::GetFlags => libc::SIOCGIFFLAGS as libc::Ioctl,
            IfreqRequest::SetFlags => libc::SIOCSIFFLAGS as libc::Ioctl,
            IfreqRequest::GetMtu => libc::SIOCGIFMTU as libc::Ioctl,
            IfreqRequest::GetIndex => libc::SIOCGIFINDEX as libc::Ioctl,
        }
    }
}

/// An ethtool command struct from `<linux/ethtool.h>`: its first field is the `u32` command.
///
/// # Safety
///
/// The implementing type must be `#[repr(C)]` plain data (every bit pattern valid) whose first
/// field is the command, and for every command in [`COMMANDS`](Self::COMMANDS) it must be at
/// least as large as the struct the kernel reads and writes for that command.
pub(crate) unsafe trait EthtoolCommand {
    /// The commands this struct is the argument of.
    const COMMANDS: &'static [u32];
    /// The command the struct holds.
    fn cmd(&self) -> u32;
}

// Command numbers from `<linux/ethtool.h>`.
pub(crate) const ETHTOOL_GDRVINFO: u32 = 0x03;
pub(crate) const ETHTOOL_GRXCSUM: u32 = 0x14;
pub(crate) const ETHTOOL_SRXCSUM: u32 = 0x15;
pub(crate) const ETHTOOL_GTXCSUM: u32 = 0x16;
pub(crate) const ETHTOOL_STXCSUM: u32 = 0x17;
pub(crate) const ETHTOOL_GSG: u32 = 0x18;
pub(crate) const ETHTOOL_SSG: u32 = 0x19;
pub(crate) const ETHTOOL_GTSO: u32 = 0x1e;
pub(crate) const ETHTOOL_STSO: u32 = 0x1f;
pub(crate) const ETHTOOL_GFLAGS: u32 = 0x25;
pub(crate) const ETHTOOL_SFLAGS: u32 = 0x26;
pub(crate) const ETHTOOL_GGRO: u32 = 0x2b;
pub(crate) const ETHTOOL_SGRO: u32 = 0x2c;
pub(crate) const ETHTOOL_GCHANNELS: u32 = 0x3c;
/// `ETH_FLAG_LRO` in the `ETHTOOL_GFLAGS`/`ETHTOOL_SFLAGS` word.
pub(crate) const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`: the argument of the get/set commands of one offload or flag word.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EthtoolValue {
    pub(crate) cmd: u32,
    pub(crate) data: u32,
}

// SAFETY: `repr(C)`, two `u32`s, the command first: exactly `struct ethtool_value`, which is the
// argument of each command listed.
unsafe impl EthtoolCommand for EthtoolValue {
    const COMMANDS: &'static [u32] = &[
        ETHTOOL_GRXCSUM,
        ETHTOOL_SRXCSUM,
        ETHTOOL_GTXCSUM,
        ETHTOOL_STXCSUM,
        ETHTOOL_GSG,
        ETHTOOL_SSG,
        ETHTOOL_GTSO,
        ETHTOOL_STSO,
        ETHTOOL_GFLAGS,
        ETHTOOL_SFLAGS,
        ETHTOOL_GGRO,
        ETHTOOL_SGRO,
    ];
    fn cmd(&self) -> u32 {
        self.cmd
    }
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EthtoolChannels {
    pub(crate) cmd: u32,
    pub(crate) max_rx: u32,
    pub(crate) max_tx: u32,
    pub(crate) max_other: u32,
    pub(crate) max_combined: u32,
    pub(crate) rx_count: u32,
    pub(crate) tx_count: u32,
    pub(crate) other_count: u32,
    pub(crate) combined_count: u32,
}

// SAFETY: `repr(C)`, nine `u32`s in the kernel's order: exactly `struct ethtool_channels`.
unsafe impl EthtoolCommand for EthtoolChannels {
    const COMMANDS: &'static [u32] = &[ETHTOOL_GCHANNELS];
    fn cmd(&self) -> u32 {
        self.cmd
    }
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EthtoolDrvinfo {
    pub(crate) cmd: u32,
    pub(crate) driver: [u8; 32],
    pub(crate) version: [u8; 32],
    pub(crate) fw_version: [u8; 32],
    pub(crate) bus_info: [u8; 32],
    pub(crate) erom_version: [u8; 32],
    pub(crate) reserved2: [u8; 12],
    pub(crate) n_priv_flags: u32,
    pub(crate) n_stats: u32,
    pub(crate) testinfo_len: u32,
    pub(crate) eedump_len: u32,
    pub(crate) regdump_len: u32,
}

impl Default for EthtoolDrvinfo {
    fn default() -> EthtoolDrvinfo {
        EthtoolDrvinfo {
            cmd: ETHTOOL_GDRVINFO,
            driver: [0; 32],
            version: [0; 32],
            fw_version: [0; 32],
            bus_info: [0; 32],
            erom_version: [0; 32],
            reserved2: [0; 12],
            n_priv_flags: 0,
            n_stats: 0,
            testinfo_len: 0,
            eedump_len: 0,
            regdump_len: 0,
        }
    }
}

// SAFETY: `repr(C)`, the fields of `struct ethtool_drvinfo` in its order with its sizes
// (`ETHTOOL_FWVERS_LEN`, `ETHTOOL_BUSINFO_LEN`, `ETHTOOL_EROMVERS_LEN` are all 32); no padding
// is needed, and every field is plain integer data.
unsafe impl EthtoolCommand for EthtoolDrvinfo {
    const COMMANDS: &'static [u32] = &[ETHTOOL_GDRVINFO];
    fn cmd(&self) -> u32 {
        self.cmd
    }
}

/// A NUL-terminated byte array from the kernel as a string.
pub(crate) fn c_chars(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A `struct ifreq` with a name set, and typed access to the union members we use.
pub(crate) struct IfReq(libc::ifreq);

impl IfReq {
    /// An all-zero request naming `name`. The caller has checked `name` fits (at most
    /// `IFNAMSIZ - 1` bytes, no NUL); longer names are cut so the terminating NUL stays.
    pub(crate) fn new(name: &str) -> IfReq {
        // SAFETY: `ifreq` is a plain C struct of integers, byte arrays, a union of those and a
        // raw pointer; all-zero bytes are a valid value for every one of them.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req
            .ifr_name
            .iter_mut()
            .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        IfReq(req)
    }

    /// The name in the request, as the kernel left it (TUNSETIFF writes the final name back).
    pub(crate) fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .0
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(crate) fn flags(&self) -> libc::c_short {
        // SAFETY: every member of the union is plain integer data, so reading `ifru_flags` is
        // valid whichever member was last written (zeroed, or filled in by the kernel).
        unsafe { self.0.ifr_ifru.ifru_flags }
    }

    pub(crate) fn set_flags(&mut self, flags: libc::c_short) {
        self.0.ifr_ifru.ifru_flags = flags;
    }

    pub(crate) fn int_value(&self) -> libc::c_int {
        // SAFETY: as in `flags`: the union holds plain integer data; `ifru_mtu` and
        // `ifru_ifindex` are the same `c_int` at offset 0.
        unsafe { self.0.ifr_ifru.ifru_mtu }
    }
}

/// The calling thread's CPU affinity mask (`sched_getaffinity(0, ...)`).
pub(crate) fn thread_affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a valid, exclusively borrowed `cpu_set_t`
    // of the size passed, which the kernel fills.
    syscall!(sched_getaffinity(0, std::mem::size_of_val(&set), &mut set))?;
    Ok(set)
}

/// Sets the calling thread's CPU affinity mask (`sched_setaffinity(0, ...)`).
pub(crate) fn set_thread_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the size passed.
    syscall!(sched_setaffinity(0, std::mem::size_of_val(set), set))?;
    Ok(())
}

/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`: the calling thread's CPU time so far.
pub(crate) fn thread_cpu_time() -> io::Result<libc::timespec> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed `timespec` that the kernel fills.
    syscall!(clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts))?;
    Ok(ts)
}

/// `getrusage(RUSAGE_THREAD)`: the calling thread's resource usage.
pub(crate) fn thread_usage() -> io::Result<libc::rusage> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusively borrowed `rusage` that the kernel fills.
    syscall!(getrusage(libc::RUSAGE_THREAD, &mut usage))?;
    Ok(usage)
}

/// `setgroups(2)`: the process's supplementary groups.
pub(crate) fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: `groups` is valid for reads of `len()` gids for the whole call.
    syscall!(setgroups(groups.len(), groups.as_ptr()))?;
    Ok(())
}

/// `setresgid(2)` with the real, effective and saved gids all `gid`.
pub(crate) fn set_all_gids(gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: integer arguments only.
    syscall!(setresgid(gid, gid, gid))?;
    Ok(())
}

/// `setresuid(2)` with the real, effective and saved uids all `uid`.
pub(crate) fn set_all_uids(uid: libc::uid_t) -> io::Result<()> {
    // SAFETY: integer arguments only.
    syscall!(setresuid(uid, uid, uid))?;
    Ok(())
}

/// `setuid(2)`.
pub(crate) fn set_uid(uid: libc::uid_t) -> io::Result<()> {
    // SAFETY: integer argument only.
    syscall!(setuid(uid))?;
    Ok(())
}

/// `setgid(2)`.
pub(crate) fn set_gid(gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: integer argument only.
    syscall!(setgid(gid))?;
    Ok(())
}

/// `getresuid(2)`: the real, effective and saved uids.
pub(crate) fn uids() -> io::Result<[libc::uid_t; 3]> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid, exclusively borrowed `uid_t` out-pointers.
    syscall!(getresuid(&mut r, &mut e, &mut s))?;
    Ok([r, e, s])
}

/// `getresgid(2)`: the real, effective and saved gids.
pub(crate) fn gids() -> io::Result<[libc::gid_t; 3]> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid, exclusively borrowed `gid_t` out-pointers.
    syscall!(getresgid(&mut r, &mut e, &mut s))?;
    Ok([r, e, s])
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)` on the calling thread.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: integer arguments only.
    syscall!(prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    Ok(())
}

/// One 32-bit half of the capability sets, `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapData {
    pub(crate) effective: u32,
    pub(crate) permitted: u32,
    pub(crate) inheritable: u32,
}

/// `capget(2)` (version 3) of the calling thread: the low and the high halves of its sets.
pub(crate) fn capget() -> io::Result<[CapData; 2]> {
    /// `struct __user_cap_header_struct`.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 of capget reads one header and writes two data structs, which both
    // match the kernel's layout and outlive the call.
    syscall!(syscall(
        libc::SYS_capget,
        &mut header as *mut Header,
        data.as_mut_ptr()
    ))?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_name_round_trips_and_is_nul_terminated() {
        let req = IfReq::new("tap0");
        assert_eq!(req.name(), "tap0");
        let long = IfReq::new("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(long.name(), "abcdefghijklmno");
        assert_eq!(long.0.ifr_name[libc::IFNAMSIZ - 1], 0);
    }

    #[test]
    fn ifreq_flags_are_stored_in_the_union() {
        let mut req = IfReq::new("x");
        assert_eq!(req.flags(), 0);
        req.set_flags(0x1002);
        assert_eq!(req.flags(), 0x1002);
    }

    #[test]
    fn ethtool_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
        assert_eq!(std::mem::size_of::<EthtoolChannels>(), 36);
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
    }

    #[test]
    fn an_ethtool_command_outside_its_struct_is_refused() {
        let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM).unwrap();
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GCHANNELS,
            data: 0,
        };
        let err = control.ethtool("lo", &mut value).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn loopback_reports_its_driver_and_offloads() {
        let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM).unwrap();
        let mut info = EthtoolDrvinfo::default();
        // loopback has no get_drvinfo; the kernel still answers from the device's parent, or
        // refuses with EOPNOTSUPP: either way the call itself must be well-formed.
        match control.ethtool("lo", &mut info) {
            Ok(()) => assert_eq!(info.cmd, ETHTOOL_GDRVINFO),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
        }
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GTXCSUM,
            data: 7,
        };
        control
            .ethtool("lo", &mut value)
            .expect("ETHTOOL_GTXCSUM on lo");
        assert!(value.data <= 1);
    }

    #[test]
    fn the_memlock_limit_reads() {
        // Unlimited or a number of bytes; either way the call must succeed.
        let limit = memlock_limit().expect("getrlimit(RLIMIT_MEMLOCK)");
        assert!(limit.is_none_or(|bytes| bytes < u64::MAX));
    }

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

    #[test]
    fn the_thread_reads_its_affinity_and_credentials() {
        let set = thread_affinity().unwrap();
        set_thread_affinity(&set).unwrap();
        let [r, e, _] = uids().unwrap();
        // SAFETY: getuid and geteuid take no argument and cannot fail.
        assert_eq!((r, e), unsafe { (libc::getuid(), libc::geteuid()) });
        assert!(gids().is_ok());
        assert!(capget().is_ok());
    }

    #[test]
    fn a_failed_call_maps_to_errno() {
        // SAFETY: closing an invalid descriptor only sets errno.
        let err = syscall!(close(-1)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        let err = Mmap::anonymous(0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            kill(0x7fff_fff0, 0).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }

    #[test]
    fn pipe_read_write_and_poll() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
        syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK)).unwrap();
        // SAFETY: `pipe2` just returned these descriptors; each is owned once.
        let (rd, wr) = unsafe {
            (
                Fd(OwnedFd::from_raw_fd(fds[0])),
                Fd(OwnedFd::from_raw_fd(fds[1])),
            )
        };
        assert!(!poll_readable(rd.as_fd(), Duration::from_millis(1)).unwrap());
        let mut buf = [0u8; 8];
        let err = rd.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(wr.write(b"abc").unwrap(), 3);
        assert!(poll_readable(rd.as_fd(), Duration::from_millis(100)).unwrap());
        assert_eq!(rd.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
    }
}
