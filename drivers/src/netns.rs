//! Named network namespaces, made and entered the way iproute2's `ip netns` does it, so that
//! the labs need no `ip` program.
//!
//! A named namespace is a bind mount of a namespace file (`/proc/thread-self/ns/net` of a
//! thread that unshared its network namespace) on `/run/netns/NAME`; the mount keeps the
//! namespace alive with no process in it. `ip netns list`, `ip netns exec` and these functions
//! see the same namespaces.
//!
//! A network namespace belongs to a thread, not to a process. [`in_namespace`] runs a closure
//! on a fresh thread that entered the namespace, and never moves the caller's thread; sockets
//! made there (netlink, the ethtool ioctl's socket, TCP) stay in that namespace for good.
//! [`enter_in_child`] makes a [`Command`] start its program inside a namespace, as
//! `ip netns exec` does, sysfs included.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys::{self, Fd};

/// Where named namespaces are mounted (iproute2's `NETNS_RUN_DIR`).
pub const RUN_DIR: &str = "/run/netns";

/// The file of namespace `name`, after checking the name is one file name.
pub fn path(name: &str) -> io::Result<PathBuf> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
        || name.len() > 255
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not a usable namespace name"),
        ));
    }
    Ok(Path::new(RUN_DIR).join(name))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Makes `/run/netns` a mount point with shared propagation, as `ip netns add` does, so that
/// a namespace unmounted in one mount namespace goes away in the others too.
fn prepare_run_dir() -> io::Result<()> {
    match std::fs::create_dir(RUN_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let dir = c_path(Path::new(RUN_DIR))?;
    let none = c"none";
    let mut made_mount_point = false;
    loop {
        let shared = sys::mount(c"", &dir, none, libc::MS_SHARED | libc::MS_REC);
        match shared {
            Ok(_) => return Ok(()),
            // EINVAL: /run/netns is not a mount point yet. Make it one, then try again.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !made_mount_point => {
                // A recursive bind of the directory on itself.
                sys::mount(&dir, &dir, none, libc::MS_BIND | libc::MS_REC)?;
                made_mount_point = true;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `ip netns add NAME`: creates a new, empty network namespace (only `lo`, down) named `name`.
/// Fails with `AlreadyExists` if the name is taken.
pub fn create(name: &str) -> io::Result<()> {
    let file = path(name)?;
    prepare_run_dir()?;
    // The mount point: an empty file, created here so that a second `create` of the same
    // name fails instead of stacking a mount.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)?;
    let target = c_path(&file)?;
    // A scratch thread unshares its network namespace and pins it with the bind mount; the
    // caller's thread stays where it is.
    let bound = std::thread::spawn(move || -> io::Result<()> {
        // This changes only the scratch thread's network namespace.
        sys::unshare(libc::CLONE_NEWNET)?;
        sys::mount(c"/proc/thread-self/ns/net", &target, c"none", libc::MS_BIND)?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if let Err(e) = bound {
        let _ = std::fs::remove_file(&file);
        return Err(e);
    }
    Ok(())
}

/// `ip netns del NAME`: unmounts and removes the namespace's file. The namespace itself goes
/// away when nothing else holds it (no process inside, no open descriptor of it).
pub fn delete(name: &str) -> io::Result<()> {
    let file = path(name)?;
    let target = c_path(&file)?;
    // A failure (not mounted) is fine: the unlink below reports whether there was anything
    // to delete.
    let _ = sys::umount_detach(&target);
    std::fs::remove_file(&file)
}

/// `ip netns list`: the names of the named namespaces, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(RUN_DIR)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether the named namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).is_ok_and(|p| p.exists())
}

/// Opens namespace `name`'s file: a descriptor of the namespace (for `IFLA_NET_NS_FD`).
pub fn open(name: &str) -> io::Result<File> {
    let file = path(name)?;
    File::open(&file).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("there is no network namespace named {name}"),
            )
        } else {
            e
        }
    })
}

/// Runs `f` on a new thread inside namespace `name` and returns what it returns. The calling
/// thread's namespace does not change.
pub fn in_namespace<T, F>(name: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let ns = open(name)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> io::Result<T> {
                // This moves only this new thread, which ends when `f` returns.
                sys::enter_net_namespace(ns.as_fd())?;
                drop(ns);
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Makes `command` start its program inside namespace `name`, as `ip netns exec NAME` does:
/// the child enters the namespace, takes a mount namespace of its own (changes there do not
/// reach the parent), and mounts a sysfs of the new network namespace on `/sys`, so that
/// `/sys/class/net` lists its interfaces. If any step fails, spawning fails with that error.
pub fn enter_in_child<'c>(command: &'c mut Command, name: &str) -> &'c mut Command {
    // Everything the child needs is allocated here: between fork and exec only
    // async-signal-safe calls may be made, and allocation is not one of them.
    let file = path(name).and_then(|p| c_path(&p));
    let label = CString::new(name).unwrap_or_default();
    let hook = move || -> io::Result<()> {
        // A name that is no file name was refused above; `EINVAL` carries no allocation.
        let file = file
            .as_ref()
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // The namespace file is closed again when `ns` drops.
        let ns = Fd::open(file, libc::O_RDONLY)?;
        sys::enter_net_namespace(ns.as_fd())?;
        drop(ns);
        // The child is single-threaded, so it may leave the mount namespace it shares with the
        // parent.
        sys::unshare(libc::CLONE_NEWNS)?;
        // `mount --make-rslave /`, so that nothing mounted below reaches the parent's mount
        // namespace.
        sys::mount(c"", c"/", c"none", libc::MS_SLAVE | libc::MS_REC)?;
        // If /sys cannot be unmounted (none there), the new sysfs is mounted over it all the
        // same.
        let _ = sys::umount_detach(c"/sys");
        sys::mount(&label, c"/sys", c"sysfs", 0)?;
        Ok(())
    };
    // SAFETY: the hook makes only async-signal-safe system calls (open, setns, close,
    // unshare, mount, umount2) on data prepared before the fork, and allocates nothing on
    // success (an error's `io::Error` from errno holds no allocation).
    unsafe { command.pre_exec(hook) }
}

/// The pids of the processes whose network namespace is `name` (`ip netns pids NAME`).
pub fn pids(name: &str) -> Vec<u32> {
    let Ok(ns) = path(name).and_then(std::fs::metadata) else {
        return Vec::new();
    };
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = proc_dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == ns.dev() && m.ino() == ns.ino())
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` (e.g. `libc::SIGTERM`) to process `pid`, as `kill -SIGNAL PID` does.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    // A positive pid names one process, never a group.
    sys::kill(pid, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_file_names() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(path("lab-srv").unwrap(), Path::new("/run/netns/lab-srv"));
        assert!(!exists("../etc"));
        assert!(open("sirocco-no-such-namespace").is_err());
    }

    #[test]
    fn a_namespace_is_created_entered_and_deleted() {
        if !std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            eprintln!("NOT RUN: needs root");
            return;
        }
        let name = format!("sirocco-netns-unit-{}", std::process::id());
        create(&name).expect("create");
        assert!(list().contains(&name));
        assert_eq!(
            create(&name).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = in_namespace(&name, || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        assert_ne!(ours, inside);
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            ours
        );
        // A child started there sees only the namespace's loopback in /sys/class/net.
        let mut ls = Command::new("ls");
        ls.arg("/sys/class/net");
        let out = enter_in_child(&mut ls, &name).output().expect("ls");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "lo");
        delete(&name).expect("delete");
        assert!(!list().contains(&name));
        assert!(delete(&name).is_err());
    }

    #[test]
    fn a_signal_to_no_process_is_an_error() {
        assert!(send_signal(0, 0).is_err());
        assert!(send_signal(u32::MAX, 0).is_err());
        send_signal(std::process::id(), 0).expect("signal 0 to ourselves");
    }
}
