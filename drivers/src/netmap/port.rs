//! The "kernel" side of netmap as the driver sees it: register, sync, poll.
//!
//! [`NetmapPort`] is the seam between the ring logic and whatever moves the slots: the real
//! netmap kernel module through `/dev/netmap` ([`super::real::RealPort`]), or the in-process
//! emulation ([`super::emulated::EmulatedPort`]). The driver calls [`NetmapPort::register`]
//! once, builds its ring views over the returned region, and from then on only asks the port
//! to sync or wait.

use std::fmt;
use std::io;
use std::time::Duration;

use netmap_sys::netmap::{NR_REG_ALL_NIC, NR_REG_NIC_SW, NR_REG_ONE_NIC};

use super::region::Region;
use crate::DriverError;

/// Which rings of an interface one descriptor binds (`nr_flags` / `nr_ringid` of `NIOCREGIF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterMode {
    /// Every NIC ring pair (`NR_REG_ALL_NIC`, `netmap:eth0`).
    AllNic,
    /// One NIC ring pair (`NR_REG_ONE_NIC`, `netmap:eth0-N`): RX queue N and TX queue N.
    OneNic(u16),
    /// Every NIC ring pair and the host rings (`NR_REG_NIC_SW`, `netmap:eth0*`).
    NicAndHost,
}

impl RegisterMode {
    /// `nr_flags` for the legacy `nmreq`.
    pub fn nr_flags(self) -> u32 {
        match self {
            RegisterMode::AllNic => NR_REG_ALL_NIC,
            RegisterMode::OneNic(_) => NR_REG_ONE_NIC,
            RegisterMode::NicAndHost => NR_REG_NIC_SW,
        }
    }

    /// `nr_ringid` for the legacy `nmreq`: the ring index for [`RegisterMode::OneNic`].
    pub fn nr_ringid(self) -> u16 {
        match self {
            RegisterMode::OneNic(ring) => ring,
            RegisterMode::AllNic | RegisterMode::NicAndHost => 0,
        }
    }

    pub fn has_host_rings(self) -> bool {
        self == RegisterMode::NicAndHost
    }
}

impl fmt::Display for RegisterMode {
    /// The netmap port-name suffix for this mode: `eth0`, `eth0-2`, `eth0*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterMode::AllNic => Ok(()),
            RegisterMode::OneNic(ring) => write!(f, "-{ring}"),
            RegisterMode::NicAndHost => f.write_str("*"),
        }
    }
}

/// What a successful registration hands the driver.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The whole shared region (`nr_memsize` bytes).
    pub region: Region,
    /// Where the `netmap_if` is (`nr_offset`).
    pub nifp_offset: usize,
    /// The interface's IP MTU, if the port knows it.
    pub interface_mtu: Option<usize>,
}

/// The kernel operations the netmap driver needs.
///
/// # Safety
///
/// An implementation promises that the [`Registration::region`] returned by `register` is
/// valid as [`Region::new`] requires from the moment `register` returns until the port is
/// dropped, and that the other side of the region follows netmap's ownership rule (it writes
/// only kernel-owned slots, their buffers and `tail`, and only during `rx_sync`, `tx_sync` or
/// `poll` calls on this port, or asynchronously on kernel-owned slots as a NIC does). The
/// driver builds raw pointers on these promises.
pub unsafe trait NetmapPort {
    /// Binds the rings `mode` names on interface `iface` and maps the shared region.
    /// Called once per port.
    fn register(&mut self, iface: &str, mode: RegisterMode) -> Result<Registration, DriverError>;

    /// `NIOCRXSYNC`: hands released RX slots back and publishes newly received frames.
    fn rx_sync(&mut self) -> io::Result<()>;

    /// `NIOCTXSYNC`: transmits the slots user space published and reclaims completed ones.
    fn tx_sync(&mut self) -> io::Result<()>;

    /// `poll(POLLIN)`: waits up to `timeout` for a frame; syncs the RX rings like `rx_sync`.
    /// Returns `true` if the descriptor is readable.
    fn poll(&mut self, timeout: Duration) -> io::Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_legacy_request_fields_and_port_names() {
        assert_eq!(RegisterMode::AllNic.nr_flags(), 1);
        assert_eq!(RegisterMode::NicAndHost.nr_flags(), 3);
        assert_eq!(RegisterMode::OneNic(5).nr_flags(), 4);
        assert_eq!(RegisterMode::OneNic(5).nr_ringid(), 5);
        assert_eq!(format!("eth0{}", RegisterMode::OneNic(2)), "eth0-2");
        assert_eq!(format!("eth0{}", RegisterMode::NicAndHost), "eth0*");
        assert!(RegisterMode::NicAndHost.has_host_rings());
        assert!(!RegisterMode::OneNic(0).has_host_rings());
    }
}
