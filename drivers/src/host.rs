//! What the host offers engines: the CPUs this process may run on, pinning a thread to one of
//! them, how many queues a NIC has, and the NIC's driver and offloads (what `ethtool -i`,
//! `ethtool -k` and `ethtool -K` read and set).
//!
//! Every call works on the interface of that name in the network namespace of the calling
//! thread.
//!
//! `sirocco serve --queues` runs one engine per NIC queue, each on a thread pinned to a core of
//! its own (`--cpus`), as DPDK lcores and Sandstorm's per-core stacks are. These calls are made
//! at start-up, never on the data path.

use std::io;

use crate::sys::{
    self, ETH_FLAG_LRO, ETHTOOL_GCHANNELS, ETHTOOL_GDRVINFO, ETHTOOL_GFLAGS, ETHTOOL_GGRO,
    ETHTOOL_GRXCSUM, ETHTOOL_GSG, ETHTOOL_GTSO, ETHTOOL_GTXCSUM, ETHTOOL_SFLAGS, ETHTOOL_SGRO,
    ETHTOOL_SRXCSUM, ETHTOOL_SSG, ETHTOOL_STSO, ETHTOOL_STXCSUM, EthtoolChannels, EthtoolDrvinfo,
    EthtoolValue, Fd, IfReq, IfreqRequest, c_chars,
};

/// The CPUs the calling thread may run on (its affinity mask, which a cpuset or `taskset`
/// narrows), in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sys::thread_affinity()?;
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
    sys::set_thread_affinity(&set)
}

/// The calling thread's CPU time so far, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`), for
/// benchmarks that charge each engine thread for what it used.
pub fn thread_cpu_ns() -> io::Result<u64> {
    let ts = sys::thread_cpu_time()?;
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// How many times the calling thread has been preempted so far (its involuntary context
/// switches, `getrusage(RUSAGE_THREAD)`'s `ru_nivcsw`).
pub fn thread_preemptions() -> io::Result<u64> {
    Ok(u64::try_from(sys::thread_usage()?.ru_nivcsw).unwrap_or(0))
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
    let mut c = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    control.ethtool(iface, &mut c)?;
    Ok(Channels {
        combined: c.combined_count,
        rx: c.rx_count,
        tx: c.tx_count,
        max_combined: c.max_combined,
        max_rx: c.max_rx,
    })
}

/// An offload `ethtool -k` shows and `ethtool -K` sets, through the kernel's per-offload
/// ethtool commands (which the kernel maps onto its feature bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offload {
    /// `rx-checksumming` (`ethtool -K IFACE rx on|off`).
    RxChecksum,
    /// `tx-checksumming` (`ethtool -K IFACE tx on|off`).
    TxChecksum,
    /// `scatter-gather` (`sg`).
    ScatterGather,
    /// `tcp-segmentation-offload` (`tso`).
    Tso,
    /// `generic-receive-offload` (`gro`).
    Gro,
    /// `large-receive-offload` (`lro`), a bit of the ethtool flags word.
    Lro,
}

impl Offload {
    /// The keyword `ethtool -K` takes for this offload.
    pub fn keyword(self) -> &'static str {
        match self {
            Offload::RxChecksum => "rx",
            Offload::TxChecksum => "tx",
            Offload::ScatterGather => "sg",
            Offload::Tso => "tso",
            Offload::Gro => "gro",
            Offload::Lro => "lro",
        }
    }

    /// The name `ethtool -k` lists this offload under.
    pub fn feature_name(self) -> &'static str {
        match self {
            Offload::RxChecksum => "rx-checksumming",
            Offload::TxChecksum => "tx-checksumming",
            Offload::ScatterGather => "scatter-gather",
            Offload::Tso => "tcp-segmentation-offload",
            Offload::Gro => "generic-receive-offload",
            Offload::Lro => "large-receive-offload",
        }
    }

    /// The get and set commands, and for a flag-word offload the flag.
    fn commands(self) -> (u32, u32, Option<u32>) {
        match self {
            Offload::RxChecksum => (ETHTOOL_GRXCSUM, ETHTOOL_SRXCSUM, None),
            Offload::TxChecksum => (ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, None),
            Offload::ScatterGather => (ETHTOOL_GSG, ETHTOOL_SSG, None),
            Offload::Tso => (ETHTOOL_GTSO, ETHTOOL_STSO, None),
            Offload::Gro => (ETHTOOL_GGRO, ETHTOOL_SGRO, None),
            Offload::Lro => (ETHTOOL_GFLAGS, ETHTOOL_SFLAGS, Some(ETH_FLAG_LRO)),
        }
    }
}

fn ethtool_get(control: &Fd, iface: &str, cmd: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data: 0 };
    control.ethtool(iface, &mut value)?;
    Ok(value.data)
}

/// `ethtool -k IFACE`, one line: whether `offload` is on.
pub fn offload(iface: &str, offload: Offload) -> io::Result<bool> {
    let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let (get, _, flag) = offload.commands();
    let data = ethtool_get(&control, iface, get)?;
    Ok(match flag {
        Some(bit) => data & bit != 0,
        None => data != 0,
    })
}

/// `ethtool -K IFACE KEYWORD on|off`. A driver that cannot change the offload answers
/// `EOPNOTSUPP` (or leaves it as it was: read it back with [`offload`] to be sure).
pub fn set_offload(iface: &str, offload: Offload, on: bool) -> io::Result<()> {
    let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let (get, set, flag) = offload.commands();
    let data = match flag {
        Some(bit) => {
            let flags = ethtool_get(&control, iface, get)?;
            if on { flags | bit } else { flags & !bit }
        }
        None => u32::from(on),
    };
    control.ethtool(iface, &mut EthtoolValue { cmd: set, data })
}

/// What `ethtool -i IFACE` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInfo {
    /// The kernel driver, e.g. `veth`, `virtio_net`, `ixgbe`.
    pub driver: String,
    pub version: String,
    pub firmware: String,
    /// The bus address, e.g. `0000:01:00.0`; empty for virtual devices.
    pub bus: String,
}

/// `ethtool -i IFACE` (`ETHTOOL_GDRVINFO`).
pub fn driver_info(iface: &str) -> io::Result<DriverInfo> {
    let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        ..EthtoolDrvinfo::default()
    };
    control.ethtool(iface, &mut info)?;
    Ok(DriverInfo {
        driver: c_chars(&info.driver),
        version: c_chars(&info.version),
        firmware: c_chars(&info.fw_version),
        bus: c_chars(&info.bus_info),
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

/// What `ip link show IFACE` says of an interface that matters before serving on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// The interface index (`SIOCGIFINDEX`).
    pub index: u32,
    /// The IP MTU (`SIOCGIFMTU`).
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// Index, MTU and up flag of `iface`. A missing interface is `ENODEV`; a name that cannot be
/// one (empty, too long, with `/`, NUL or a space) is `EINVAL`.
pub fn interface(iface: &str) -> io::Result<Interface> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains(['/', '\0', ' ']) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)?;
    let mut req = IfReq::new(iface);
    control.ifreq_ioctl(IfreqRequest::GetIndex, &mut req)?;
    let index = u32::try_from(req.int_value()).unwrap_or(0);
    let mut req = IfReq::new(iface);
    control.ifreq_ioctl(IfreqRequest::GetMtu, &mut req)?;
    let mtu = u32::try_from(req.int_value()).unwrap_or(0);
    let mut req = IfReq::new(iface);
    control.ifreq_ioctl(IfreqRequest::GetFlags, &mut req)?;
    let up = req.flags() & libc::IFF_UP as libc::c_short != 0;
    Ok(Interface { index, mtu, up })
}

/// The soft limit on locked memory (`ulimit -l`) in bytes, `None` when unlimited. AF_XDP
/// charges each UMEM against it, unless the process has CAP_IPC_LOCK.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    crate::sys::memlock_limit()
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
    fn offloads_of_loopback_read_and_a_missing_interface_is_an_error() {
        // Loopback checksums nothing in hardware but reports checksumming as on.
        assert!(offload("lo", Offload::TxChecksum).expect("tx-checksumming of lo"));
        assert!(offload("lo", Offload::Lro).is_ok());
        let err = offload("no-such-if0", Offload::Gro).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        assert!(driver_info("no-such-if0").is_err());
    }

    #[test]
    fn loopback_is_up_with_index_one_and_bad_names_are_refused() {
        let lo = interface("lo").expect("lo");
        assert_eq!(lo.index, 1);
        assert!(lo.up && lo.mtu >= 1500, "{lo:?}");
        let missing = interface("no-such-if0").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENODEV));
        for bad in ["", "a/b", "sixteen-chars-xx"] {
            let err = interface(bad).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn thread_cpu_time_grows_with_work_and_preemptions_read() {
        let before = thread_cpu_ns().expect("thread CPU time");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_ns().unwrap() > before, "{x}");
        assert!(thread_preemptions().is_ok());
    }

    #[test]
    fn loopback_has_one_rx_queue_and_a_missing_interface_none() {
        assert_eq!(rx_queue_count("lo"), Some(1));
        assert_eq!(rx_queue_count("no-such-if0"), None);
        assert_eq!(rx_queue_count("../x"), None);
    }
}
