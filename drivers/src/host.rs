//! What the host offers engines: the CPUs this process may run on, pinning a thread to one of
//! them, and how many queues a NIC has.
//!
//! `sirocco serve --queues` runs one engine per NIC queue, each on a thread pinned to a core of
//! its own (`--cpus`), as DPDK lcores and Sandstorm's per-core stacks are. These calls are made
//! at start-up, never on the data path.

use std::io;

use crate::sys::Fd;

/// The CPUs the calling thread may run on (its affinity mask, which a cpuset or `taskset`
/// narrows), in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a valid, exclusively borrowed `cpu_set_t`
    // of the size passed, which the kernel fills.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of_val(&set);
    // SAFETY: `CPU_ISSET` reads bit `cpu` of `set`, and `cpu` is below the set's bit size.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`. Fails with `EINVAL` if `cpu` is not one this process may
/// use.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`: a zeroed `cpu_set_t` is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of_val(&set) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `CPU_SET` writes bit `cpu` of `set`, checked above to be within it.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A NIC's queues as `ethtool -l` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    /// Queues with an RX and a TX ring and one interrupt: what RSS spreads flows over on most
    /// NICs, and what `ethtool -L IFACE combined N` sets.
    pub combined: u32,
    pub rx: u32,
    pub tx: u32,
    pub max_combined: u32,
    pub max_rx: u32,
}

impl Channels {
    /// Queues that receive: combined ones plus RX-only ones.
    pub fn receive_queues(&self) -> u32 {
        self.combined + self.rx
    }
}

/// `ethtool -l IFACE`: the interface's channel counts (`ETHTOOL_GCHANNELS`). Drivers without
/// channel settings answer `EOPNOTSUPP`; [`rx_queue_count`] works for every interface.
pub fn channels(iface: &str) -> io::Result<Channels> {
    let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let c = control.ethtool_channels(iface)?;
    Ok(Channels {
        combined: c.combined_count,
        rx: c.rx_count,
        tx: c.tx_count,
        max_combined: c.max_combined,
        max_rx: c.max_rx,
    })
}

/// The RX queues the kernel registered for `iface` (`/sys/class/net/IFACE/queues/rx-*`), or
/// `None` if the interface is not there.
pub fn rx_queue_count(iface: &str) -> Option<u32> {
    if iface.is_empty() || iface.contains(['/', '\0']) || iface == "." || iface == ".." {
        return None;
    }
    let dir = std::fs::read_dir(format!("/sys/class/net/{iface}/queues")).ok()?;
    let count = dir
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    u32::try_from(count).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_may_run_somewhere_and_can_be_pinned_there() {
        let cpus = allowed_cpus().expect("sched_getaffinity");
        assert!(!cpus.is_empty());
        let first = cpus[0];
        std::thread::spawn(move || {
            pin_current_thread(first).expect("pin to an allowed CPU");
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
        let beyond = 8 * std::mem::size_of::<libc::cpu_set_t>();
        assert!(pin_current_thread(beyond).is_err());
    }

    #[test]
    fn loopback_has_one_rx_queue_and_a_missing_interface_none() {
        assert_eq!(rx_queue_count("lo"), Some(1));
        assert_eq!(rx_queue_count("no-such-if0"), None);
        assert_eq!(rx_queue_count("../x"), None);
    }
}
