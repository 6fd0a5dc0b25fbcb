//! Least privilege for a running server: dropping root for an unprivileged user, and a seccomp
//! filter that allows only the system calls the server makes once it is set up.
//!
//! `sirocco serve` needs root (or `CAP_NET_ADMIN`, `CAP_NET_RAW`, `CAP_BPF`, `CAP_SYS_ADMIN`) only
//! to *set up*: to create the AF_XDP socket, load and attach the XDP program, register the UMEM,
//! open `/dev/net/tun` and `TUNSETIFF`, or register the netmap rings. Once the driver is attached
//! and the tree is loaded it needs no privilege at all:
//!
//! - **AF_XDP**: the rings and the UMEM are mapped; the TX kick (`sendto`), the RX wake-up
//!   (`recvfrom`) and the idle wait (`poll`) on the already-bound socket check no capability.
//!   The BPF link and program are plain descriptors: closing them at exit detaches the program
//!   without a capability. The UMEM's locked-memory charge stays with the user who registered it.
//! - **tap**: `read`/`write`/`poll` on the open `/dev/net/tun` descriptor check nothing; the
//!   device goes away when the descriptor is closed.
//! - **netmap**: `NIOCTXSYNC`/`NIOCRXSYNC` and `poll` on the open `/dev/netmap` descriptor.
//! - **pcap** and `--capture`: files opened before the drop, read and written through their
//!   descriptors.
//! - **SIGHUP reload** re-reads the tree from disk on a new thread, as the unprivileged user:
//!   the tree (and the path to it) must be readable by that user.
//! - **access log**: the file is opened before the drop; its thread only writes.
//! - **metrics** (`--metrics-listen`): the listening socket is bound before the drop (a port
//!   below 1024 too); its thread only accepts, sets timeouts, reads and writes.
//!
//! So [`drop_privileges`] keeps no capability: after `setgroups`, `setresgid` and `setresuid` to
//! a user other than root, the kernel clears the permitted, effective and ambient sets, and
//! [`drop_privileges`] checks that they are empty and that `setuid(0)` fails before it returns.
//!
//! # The system-call filter
//!
//! [`install_seccomp_filter`] sets `PR_SET_NO_NEW_PRIVS` and installs, on every thread of the
//! process (`SECCOMP_FILTER_FLAG_TSYNC`; threads started later inherit it), a filter compiled by
//! the `seccompiler` crate (Firecracker's) that allows the calls below and kills the whole
//! process (`SECCOMP_RET_KILL_PROCESS`, which the parent sees as death by `SIGSYS`) on any other
//! call, and on any call made through another architecture's ABI (x32, i386). The list comes
//! from reading the code and from `strace -f` of `sirocco serve` over AF_XDP, tap and pcap,
//! through serving, downloads, stats lines, the access log, SIGHUP reloads (good and failed)
//! and SIGTERM (README.md, "Least privilege", says how to repeat that). Threads: the engine
//! (main) thread, the reload thread (one per SIGHUP), the access-log writer and the metrics
//! endpoint.
//!
//! Before the filter goes in, one thread is started and joined: glibc installs a signal
//! handler (`rt_sigaction`, not on the list) when a process starts its first thread, which for
//! a server with no access log would otherwise be the first SIGHUP's reload thread.
//!
//! "Seen" marks the calls `strace` showed; the others come from reading the code, for paths
//! the lab runs did not take (netmap, zero-copy AF_XDP, aarch64, a clock without a vDSO).
//!
//! | calls | seen | who, and why |
//! | --- | --- | --- |
//! | `read`, `write` | seen | engine: tap frames, stats lines on stdout, messages on stderr, pcap output and `--capture`; access-log writer; reload: file contents |
//! | `writev` | code | vectored writes of the standard library's writers |
//! | `sendto` | seen | engine, AF_XDP: the zero-length TX kick; metrics: the answer to a scrape |
//! | `recvfrom` | seen | engine, AF_XDP: the RX wake-up when the fill ring asks for one (zero-copy); metrics: the scraper's request |
//! | `accept4` | seen | metrics: a scraper's connection on the socket bound before the filter |
//! | `setsockopt`, only `SO_RCVTIMEO` and `SO_SNDTIMEO` | seen | metrics: a scraper's read and write timeouts |
//! | `poll` (x86_64), `ppoll` | seen, code | engine, `--sleep-when-idle`: wait for a frame on the AF_XDP, tap or netmap descriptor (aarch64 has only `ppoll`) |
//! | `ioctl`, only `NIOCTXSYNC` and `NIOCRXSYNC` | code | engine, netmap: ring syncs |
//! | `getrandom` | seen | a new thread's first `HashMap` keys (the reload's); any later draw of fresh seeds |
//! | `clock_nanosleep` | seen | the pcap driver's wait once the trace is over |
//! | `clock_gettime`, `nanosleep` | code | the clock when there is no vDSO; other sleeps |
//! | `futex` | seen | locks, the access log's channel, joining the reload thread |
//! | `sched_yield` | code | the standard library's channels back off with it under contention |
//! | `brk`, `mremap` | seen | the allocator: the main heap grows; big buffers grow in place (`--compress`) |
//! | `mmap` and `mprotect`, without `PROT_EXEC` | seen | the allocator's per-thread arenas, thread stacks and their guard pages. No new executable memory |
//! | `munmap`, `madvise` | seen | freeing memory and thread stacks; the rings at exit |
//! | `clone`, only with `CLONE_THREAD` | seen | starting the reload thread: threads, never processes |
//! | `clone3` (answered `ENOSYS`) | seen | its flags sit in memory a filter cannot read, so glibc is told it is missing and falls back to `clone` |
//! | `set_robust_list`, `rseq`, `rt_sigprocmask` | seen | glibc's thread start |
//! | `sched_getaffinity`, `gettid`, `sigaltstack` | seen | the standard library's thread start: `pthread_getattr_np` for the stack bounds, the stack-overflow handler's alternate stack |
//! | `prctl`, only `PR_SET_NAME` | seen | naming the thread (`sirocco-reload`) |
//! | `exit` | seen | a thread's end |
//! | `openat` without write, create, truncate or append flags | seen | reload: open directories and files to read |
//! | `close`, `newfstatat`, `statx`, `lseek`, `getdents64`, `readlink` (x86_64) | seen | reload: walk the tree, read metadata, resolve the root (`canonicalize`) |
//! | `fstat`, `readlinkat` | code | the same with other C libraries and on aarch64 |
//! | `fcntl`, only `F_GETFD` | seen | debug builds: the standard library checks that a descriptor is open before it closes one. Reads the close-on-exec flag, nothing else |
//! | `getcwd` | seen | a panic's report when `RUST_BACKTRACE` is set (the backtrace's file names) |
//! | `rt_sigreturn` | seen | return from the SIGHUP, SIGTERM and SIGINT handlers (they only set flags) |
//! | `exit_group` | seen | the process's exit |
//!
//! Everything else is absent, notably `socket`, `connect`, `bind`, `execve`, `fork`/`vfork`,
//! `ptrace`, `kill`, `bpf`, `setuid` and the other credential calls, `mount`, `chmod`, `unlink`,
//! `rename` and `open` for writing.

use std::ffi::CString;
use std::io;

use crate::sys;

/// Whether this build has the seccomp filter: Linux on x86_64 and aarch64.
pub const SECCOMP_SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("there is no user named '{0}' on this system")]
    NoSuchUser(String),
    #[error(
        "user '{0}' is root (uid 0): give --user an unprivileged user, e.g. nobody or a dedicated one"
    )]
    RootUser(String),
    #[error("looking up user '{name}': {source}")]
    Lookup { name: String, source: io::Error },
    #[error(
        "switching to another user needs root, and this process runs as uid {0}: start it as root, or leave out --user"
    )]
    NotRoot(u32),
    #[error("{what} failed while switching to user '{user}': {source}")]
    Drop {
        what: &'static str,
        user: String,
        source: io::Error,
    },
    #[error("after switching to user '{user}' the process still {left}: refusing to go on")]
    StillPrivileged { user: String, left: String },
    #[error(
        "the seccomp system-call filter is not supported on this platform (only Linux on x86_64 and aarch64)"
    )]
    Unsupported,
    #[error("installing the seccomp filter: {0}")]
    Seccomp(String),
}

/// An unprivileged user to run as: what [`drop_privileges`] switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group the user is in, the primary one included (from the group database).
    pub groups: Vec<u32>,
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    effective_uid() == 0
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no argument and cannot fail.
    unsafe { libc::geteuid() }
}

impl User {
    /// Looks `name` up in the user and group databases (NSS: `/etc/passwd`, `/etc/group`...).
    /// Do this before the filter is installed: NSS may open files and load modules.
    pub fn lookup(name: &str) -> Result<User, SandboxError> {
        let lookup_error = |source| SandboxError::Lookup {
            name: name.to_string(),
            source,
        };
        let c_name = CString::new(name).map_err(|_| SandboxError::NoSuchUser(name.to_string()))?;
        let mut buf: Vec<libc::c_char> = vec![0; 1024];
        let (uid, gid) = loop {
            // SAFETY: `passwd` is a C struct of integers and pointers: all zeroes is valid.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: `c_name` is a NUL-terminated string; `entry`, `buf` (of `buf.len()` bytes)
            // and `found` are valid for writes for the whole call. The strings the C library
            // writes into `buf` are not read here; only the integer fields are.
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                )
            };
            match rc {
                0 if found.is_null() => return Err(SandboxError::NoSuchUser(name.to_string())),
                0 => break (entry.pw_uid, entry.pw_gid),
                libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
                // getpwnam_r reports "not found" as ENOENT, ESRCH, EBADF or EPERM on some
                // NSS setups (see its manual page).
                libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => {
                    return Err(SandboxError::NoSuchUser(name.to_string()));
                }
                errno => return Err(lookup_error(io::Error::from_raw_os_error(errno))),
            }
        };
        if uid == 0 {
            return Err(SandboxError::RootUser(name.to_string()));
        }
        let groups = group_list(&c_name, gid).map_err(lookup_error)?;
        Ok(User {
            name: name.to_string(),
            uid,
            gid,
            groups,
        })
    }
}

/// `getgrouplist(3)`: every group `user` belongs to, `gid` included.
fn group_list(user: &CString, gid: u32) -> io::Result<Vec<u32>> {
    let mut room: libc::c_int = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; room as usize];
        let mut count = room;
        // SAFETY: `user` is NUL-terminated; `groups` has room for `count` entries, and `count`
        // is valid for reads and writes.
        let rc = unsafe { libc::getgrouplist(user.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(usize::try_from(count).unwrap_or(0));
            return Ok(groups);
        }
        // Too small: `count` now holds the number needed (older C libraries leave it alone).
        room = if count > room { count } else { room * 2 };
        if room > 1 << 16 {
            return Err(io::Error::other("the user is in too many groups"));
        }
    }
}

/// Switches the whole process (every thread: the C library applies credential changes to all
/// of them) to `user` for good: supplementary groups, then the real, effective and saved gids,
/// then the uids. Sets `PR_SET_NO_NEW_PRIVS` on the calling thread (a thread's attribute:
/// [`install_seccomp_filter`] then sets it on every thread). Then checks that no capability is
/// left, that every id is the user's and that `setuid(0)` fails, and returns an error
/// otherwise.
///
/// Needs root ([`SandboxError::NotRoot`] otherwise). Call it once set-up is over: after it, the
/// process cannot attach a driver, bind a port below 1024 or read root-only files.
pub fn drop_privileges(user: &User) -> Result<(), SandboxError> {
    let euid = effective_uid();
    if euid != 0 {
        return Err(SandboxError::NotRoot(euid));
    }
    if user.uid == 0 {
        return Err(SandboxError::RootUser(user.name.clone()));
    }
    let failed = |what: &'static str| {
        move |source| SandboxError::Drop {
            what,
            user: user.name.clone(),
            source,
        }
    };
    sys::set_groups(&user.groups).map_err(failed("setgroups"))?;
    sys::set_all_gids(user.gid).map_err(failed("setresgid"))?;
    sys::set_all_uids(user.uid).map_err(failed("setresuid"))?;
    sys::set_no_new_privs().map_err(failed("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    verify_dropped(user)
}

/// The checks at the end of [`drop_privileges`].
fn verify_dropped(user: &User) -> Result<(), SandboxError> {
    let still = |left: String| SandboxError::StillPrivileged {
        user: user.name.clone(),
        left,
    };
    match sys::uids() {
        Ok(ids) if ids == [user.uid; 3] => {}
        Ok([r, e, s]) => return Err(still(format!("has uids {r}/{e}/{s}"))),
        Err(e) => return Err(still(format!("cannot read its uids ({e})"))),
    }
    match sys::gids() {
        Ok(ids) if ids == [user.gid; 3] => {}
        Ok([r, e, s]) => return Err(still(format!("has gids {r}/{e}/{s}"))),
        Err(e) => return Err(still(format!("cannot read its gids ({e})"))),
    }
    let caps = capabilities().map_err(|e| still(format!("cannot read its capabilities ({e})")))?;
    if caps.effective != 0 || caps.permitted != 0 {
        return Err(still(format!(
            "has capabilities (effective {:#x}, permitted {:#x})",
            caps.effective, caps.permitted
        )));
    }
    // The real test: asking for root back must fail.
    if sys::set_uid(0).is_ok() {
        return Err(still("could switch back to uid 0".into()));
    }
    if user.gid != 0 && !user.groups.contains(&0) && sys::set_gid(0).is_ok() {
        return Err(still("could switch back to gid 0".into()));
    }
    Ok(())
}

/// The calling thread's capability sets, 64 bits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `capget(2)` of the calling thread.
pub fn capabilities() -> io::Result<Capabilities> {
    let data = sys::capget()?;
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok(Capabilities {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// The system calls [`install_seccomp_filter`] allows (some only with the arguments the module
/// documentation gives), by name.
pub fn allowed_syscalls() -> Vec<&'static str> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        filter::ALLOWED.iter().map(|a| a.name).collect()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        Vec::new()
    }
}

/// Sets `PR_SET_NO_NEW_PRIVS` and installs the filter the module documentation describes on
/// every thread of the process; threads started later inherit it. From then on, a system call
/// outside the list kills the process. Call it last in set-up, after [`drop_privileges`] (whose
/// calls it forbids). Returns how many system calls the filter allows.
pub fn install_seccomp_filter() -> Result<usize, SandboxError> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        warm_up_threads()?;
        sys::set_no_new_privs()
            .map_err(|e| SandboxError::Seccomp(format!("PR_SET_NO_NEW_PRIVS: {e}")))?;
        filter::install()
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        Err(SandboxError::Unsupported)
    }
}

/// Starts and joins one thread, so that what the C library and Rust's runtime do only for the
/// process's first thread is done before the filter is in. glibc installs its `SIGSETXID`
/// handler (`rt_sigaction`) when the first thread starts: a server with no access log starts
/// its first thread on the first SIGHUP, and the filter, which has no `rt_sigaction`, would
/// kill it there.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn warm_up_threads() -> Result<(), SandboxError> {
    std::thread::Builder::new()
        .name("sirocco-warm-up".into())
        .spawn(|| ())
        .and_then(|thread| {
            thread
                .join()
                .map_err(|_| io::Error::other("the thread panicked"))
        })
        .map_err(|e| SandboxError::Seccomp(format!("starting a first thread: {e}")))
}

/// Makes one system call the filter forbids (`socket(AF_INET, SOCK_DGRAM)`): under the filter
/// the process dies of `SIGSYS` here. Without it the call succeeds, the socket is closed, and
/// this returns. For tests, and the hidden `sirocco serve --seccomp selftest-kill`.
pub fn forbidden_syscall() {
    // std's UdpSocket::bind starts with socket(2); nothing here needs unsafe.
    let _ = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0));
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod filter {
    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    use super::SandboxError;

    /// What a call's arguments must be for it to be allowed.
    pub(super) enum Only {
        /// Any arguments.
        Any,
        /// Argument `index` (32 bits) is one of the values.
        ArgIn(u8, &'static [u64]),
        /// Argument `index` (32 bits) has none of the bits of the mask set.
        ArgClear(u8, u64),
        /// Argument `index` (32 bits) has every bit of the mask set.
        ArgSet(u8, u64),
    }

    pub(super) struct Allowed {
        pub(super) name: &'static str,
        nr: libc::c_long,
        only: Only,
    }

    const fn any(name: &'static str, nr: libc::c_long) -> Allowed {
        Allowed {
            name,
            nr,
            only: Only::Any,
        }
    }

    const fn only(name: &'static str, nr: libc::c_long, only: Only) -> Allowed {
        Allowed { name, nr, only }
    }

    /// Flags that open a file for writing, or create, truncate or append to it.
    const WRITE_FLAGS: u64 =
        (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u64;
    /// netmap's ring syncs, the only ioctls of a running server.
    const NETMAP_SYNCS: &[u64] = &[
        netmap_sys::netmap::NIOCTXSYNC as u64,
        netmap_sys::netmap::NIOCRXSYNC as u64,
    ];

    /// The allow-list. Why each call is here: the module documentation's table.
    pub(super) const ALLOWED: &[Allowed] = &[
        // Frames, stats lines, messages, the access log, file contents.
        any("read", libc::SYS_read),
        any("write", libc::SYS_write),
        any("writev", libc::SYS_writev),
        // AF_XDP: TX kick and RX wake-up; metrics: a scrape's answer and request.
        any("sendto", libc::SYS_sendto),
        any("recvfrom", libc::SYS_recvfrom),
        // Metrics: scrapers' connections on the socket bound during set-up, with timeouts.
        any("accept4", libc::SYS_accept4),
        only(
            "setsockopt",
            libc::SYS_setsockopt,
            Only::ArgIn(2, &[libc::SO_RCVTIMEO as u64, libc::SO_SNDTIMEO as u64]),
        ),
        // --sleep-when-idle.
        #[cfg(target_arch = "x86_64")]
        any("poll", libc::SYS_poll),
        any("ppoll", libc::SYS_ppoll),
        // netmap ring syncs.
        only("ioctl", libc::SYS_ioctl, Only::ArgIn(1, NETMAP_SYNCS)),
        // Seeds and hash keys.
        any("getrandom", libc::SYS_getrandom),
        // Clock and sleeps.
        any("clock_gettime", libc::SYS_clock_gettime),
        any("clock_nanosleep", libc::SYS_clock_nanosleep),
        any("nanosleep", libc::SYS_nanosleep),
        // Locks, channels, joins.
        any("futex", libc::SYS_futex),
        any("sched_yield", libc::SYS_sched_yield),
        // Memory: never executable.
        any("brk", libc::SYS_brk),
        only(
            "mmap",
            libc::SYS_mmap,
            Only::ArgClear(2, libc::PROT_EXEC as u64),
        ),
        only(
            "mprotect",
            libc::SYS_mprotect,
            Only::ArgClear(2, libc::PROT_EXEC as u64),
        ),
        any("munmap", libc::SYS_munmap),
        any("mremap", libc::SYS_mremap),
        any("madvise", libc::SYS_madvise),
        // Threads (the engines and the reload thread): start and end.
        only(
            "clone",
            libc::SYS_clone,
            Only::ArgSet(0, libc::CLONE_THREAD as u64),
        ),
        any("set_robust_list", libc::SYS_set_robust_list),
        any("rseq", libc::SYS_rseq),
        any("rt_sigprocmask", libc::SYS_rt_sigprocmask),
        any("sigaltstack", libc::SYS_sigaltstack),
        any("sched_getaffinity", libc::SYS_sched_getaffinity),
        // An engine thread pins itself to its core (`--cpus`); pid 0 is the calling thread,
        // so no other process or thread can be moved.
        only(
            "sched_setaffinity",
            libc::SYS_sched_setaffinity,
            Only::ArgIn(0, &[0]),
        ),
        any("gettid", libc::SYS_gettid),
        only(
            "prctl",
            libc::SYS_prctl,
            Only::ArgIn(0, &[libc::PR_SET_NAME as u64]),
        ),
        any("exit", libc::SYS_exit),
        // Reload: reading the tree.
        only("openat", libc::SYS_openat, Only::ArgClear(2, WRITE_FLAGS)),
        any("close", libc::SYS_close),
        only(
            "fcntl",
            libc::SYS_fcntl,
            Only::ArgIn(1, &[libc::F_GETFD as u64]),
        ),
        any("fstat", libc::SYS_fstat),
        any("newfstatat", libc::SYS_newfstatat),
        any("statx", libc::SYS_statx),
        any("lseek", libc::SYS_lseek),
        any("getdents64", libc::SYS_getdents64),
        #[cfg(target_arch = "x86_64")]
        any("readlink", libc::SYS_readlink),
        any("readlinkat", libc::SYS_readlinkat),
        // A panic's report with RUST_BACKTRACE set: the backtrace names source files.
        any("getcwd", libc::SYS_getcwd),
        // Signal handlers (SIGHUP, SIGTERM, SIGINT).
        any("rt_sigreturn", libc::SYS_rt_sigreturn),
        // The end.
        any("exit_group", libc::SYS_exit_group),
    ];

    fn arch() -> TargetArch {
        #[cfg(target_arch = "x86_64")]
        {
            TargetArch::x86_64
        }
        #[cfg(target_arch = "aarch64")]
        {
            TargetArch::aarch64
        }
    }

    fn condition(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, String> {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
    }

    fn rules(only: &Only) -> Result<Vec<SeccompRule>, String> {
        let rule = |c: SeccompCondition| SeccompRule::new(vec![c]).map_err(|e| e.to_string());
        match *only {
            Only::Any => Ok(Vec::new()),
            Only::ArgIn(index, values) => values
                .iter()
                .map(|&v| rule(condition(index, SeccompCmpOp::Eq, v)?))
                .collect(),
            Only::ArgClear(index, mask) => Ok(vec![rule(condition(
                index,
                SeccompCmpOp::MaskedEq(mask),
                0,
            )?)?]),
            Only::ArgSet(index, mask) => Ok(vec![rule(condition(
                index,
                SeccompCmpOp::MaskedEq(mask),
                mask,
            )?)?]),
        }
    }

    /// The allow-list: [`ALLOWED`] allowed, anything else kills the process.
    pub(super) fn allow_list() -> Result<BpfProgram, String> {
        let mut map = BTreeMap::new();
        for allowed in ALLOWED {
            if map.insert(allowed.nr, rules(&allowed.only)?).is_some() {
                return Err(format!("{} is listed twice", allowed.name));
            }
        }
        // Passed here so that the answer of [`clone3_enosys`], ENOSYS, is the strictest one:
        // the kernel runs every filter and a kill would win over an error.
        map.insert(libc::SYS_clone3, Vec::new());
        let filter = SeccompFilter::new(
            map,
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch(),
        )
        .map_err(|e| e.to_string())?;
        BpfProgram::try_from(filter).map_err(|e| e.to_string())
    }

    /// `clone3` fails with `ENOSYS`, everything else passes (to the allow-list).
    pub(super) fn clone3_enosys() -> Result<BpfProgram, String> {
        let map = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        let filter = SeccompFilter::new(
            map,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch(),
        )
        .map_err(|e| e.to_string())?;
        BpfProgram::try_from(filter).map_err(|e| e.to_string())
    }

    pub(super) fn install() -> Result<usize, SandboxError> {
        let clone3 = clone3_enosys().map_err(SandboxError::Seccomp)?;
        let allow = allow_list().map_err(SandboxError::Seccomp)?;
        // Filters stack, the kernel runs them all and the strictest answer wins: clone3 gets
        // ENOSYS from the first (the second passes it), and every call outside the list is
        // killed by the second. The first must go in first: the second forbids seccomp(2).
        seccompiler::apply_filter_all_threads(&clone3)
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
        seccompiler::apply_filter_all_threads(&allow)
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
        Ok(ALLOWED.len())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn both_filters_compile_and_no_call_is_listed_twice() {
            let allow = allow_list().expect("the allow-list compiles");
            assert!(allow.len() > ALLOWED.len());
            assert!(
                allow.len() < 4096,
                "BPF programs hold at most 4096 instructions"
            );
            clone3_enosys().expect("the clone3 filter compiles");
            let mut names: Vec<_> = ALLOWED.iter().map(|a| a.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), ALLOWED.len());
        }

        #[test]
        fn nothing_dangerous_is_allowed() {
            for nr in [
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_execve,
                libc::SYS_ptrace,
                libc::SYS_bpf,
                libc::SYS_setuid,
                libc::SYS_setresuid,
                libc::SYS_kill,
                libc::SYS_seccomp,
                libc::SYS_clone3,
                libc::SYS_unlinkat,
            ] {
                assert!(
                    ALLOWED.iter().all(|a| a.nr != nr),
                    "system call {nr} is allowed"
                );
            }
        }
    }
}
