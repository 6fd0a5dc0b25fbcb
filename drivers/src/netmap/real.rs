//! The real netmap kernel module, through `/dev/netmap` and the legacy `nmreq` API (version 11).
//!
//! `NIOCREGIF` binds the rings, `mmap` of `nr_memsize` bytes maps the shared region with the
//! `netmap_if` at `nr_offset`, `NIOCTXSYNC` / `NIOCRXSYNC` sync the rings and `poll` waits.
//! The libc calls themselves are in `crate::sys` (`netmap_ioctl`, `netmap_sync`, `Mmap`,
//! `poll_readable`).
//!
//! Only the netmap module can exercise this file; the machines sirocco is developed on do not
//! have it, so tests cover only the "module missing" path.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use netmap_sys::netmap::{IFNAMSIZ, NETMAP_API, nmreq};

use super::port::{NetmapPort, RegisterMode, Registration};
use super::region::Region;
use crate::DriverError;
use crate::sys::{self, Mmap, NetmapSync, NmreqRequest};

/// Where the netmap module puts its control device.
pub const NETMAP_DEVICE: &str = "/dev/netmap";

/// The error for a machine without the netmap module.
pub const NO_NETMAP_MESSAGE: &str = "no /dev/netmap: the netmap kernel module is not loaded. \
     Install and load netmap (see README, 'Running on a dedicated NIC'), or use --driver afxdp";

/// An open `/dev/netmap` descriptor, with its region once registered.
#[derive(Debug)]
pub struct RealPort {
    // Field order: the mapping goes before the descriptor that owns the registration.
    mapping: Option<Mmap>,
    device: File,
}

impl RealPort {
    /// Opens `/dev/netmap`. A missing device (or one with no module behind it) gives the setup
    /// error that says how to get netmap.
    pub fn open() -> Result<Self, DriverError> {
        Self::open_device(Path::new(NETMAP_DEVICE))
    }

    /// Opens a netmap control device at `path` (tests point this at paths that do not exist).
    pub fn open_device(path: &Path) -> Result<Self, DriverError> {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(device) => Ok(RealPort {
                mapping: None,
                device,
            }),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT | libc::ENXIO | libc::ENODEV) => {
                    Err(DriverError::Unsupported(NO_NETMAP_MESSAGE.to_string()))
                }
                _ => Err(DriverError::io("open /dev/netmap", e)),
            },
        }
    }
}

/// What the netmap module says of itself, for `sirocco doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetmapStatus {
    /// No netmap device: the module is not loaded.
    Absent,
    /// The module answered `NIOCGINFO` in sirocco's API version.
    Ready { api: u32 },
    /// The module speaks another API version than the one sirocco was built for.
    VersionMismatch { kernel: u32, ours: u32 },
}

/// Opens `/dev/netmap` and asks the module for its API version (`NIOCGINFO`).
pub fn probe() -> Result<NetmapStatus, DriverError> {
    probe_device(Path::new(NETMAP_DEVICE))
}

/// [`probe`] of the control device at `path`.
pub fn probe_device(path: &Path) -> Result<NetmapStatus, DriverError> {
    let port = match RealPort::open_device(path) {
        Ok(port) => port,
        // Only a missing device is `Unsupported` when opening it.
        Err(DriverError::Unsupported(_)) => {
            return Ok(NetmapStatus::Absent);
        }
        Err(other) => return Err(other),
    };
    let ours = NETMAP_API as u32;
    let mut req = info_request();
    match sys::netmap_ioctl(port.device.as_fd(), NmreqRequest::Info, &mut req) {
        Ok(()) => Ok(NetmapStatus::Ready {
            api: req.nr_version,
        }),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && req.nr_version != ours => {
            Ok(NetmapStatus::VersionMismatch {
                kernel: req.nr_version,
                ours,
            })
        }
        Err(e) => Err(DriverError::io("NIOCGINFO on /dev/netmap", e)),
    }
}

/// A legacy request in sirocco's API version, naming no interface and asking nothing: as
/// such it is the `NIOCGINFO` of the probe, and [`register_request`] fills in the rest.
fn info_request() -> nmreq {
    nmreq {
        nr_name: [0; IFNAMSIZ],
        nr_version: NETMAP_API as u32,
        nr_offset: 0,
        nr_memsize: 0,
        nr_tx_slots: 0,
        nr_rx_slots: 0,
        nr_tx_rings: 0,
        nr_rx_rings: 0,
        nr_ringid: 0,
        nr_cmd: 0,
        nr_arg1: 0,
        nr_arg2: 0,
        nr_arg3: 0,
        nr_flags: 0,
        spare2: [0],
    }
}

/// The IP MTU of `iface`, if the kernel will say.
fn interface_mtu(iface: &str) -> Option<usize> {
    let found = crate::host::interface(iface).ok()?;
    usize::try_from(found.mtu).ok()
}

/// A legacy registration request for `iface` in `mode`.
fn register_request(iface: &str, mode: RegisterMode) -> Result<nmreq, DriverError> {
    if iface.is_empty() || iface.len() >= IFNAMSIZ || iface.contains('\0') {
        return Err(DriverError::NoInterface(format!(
            "netmap: bad interface name {iface:?}: it must be 1 to {} bytes",
            IFNAMSIZ - 1
        )));
    }
    let mut request = info_request();
    for (dst, &src) in request.nr_name.iter_mut().zip(iface.as_bytes()) {
        *dst = src as libc::c_char;
    }
    request.nr_ringid = mode.nr_ringid();
    request.nr_flags = mode.nr_flags();
    Ok(request)
}

// SAFETY: `register` returns a region that is exactly the `mmap` of `nr_memsize` bytes, which
// stays mapped until the port (and with it `mapping`) is dropped; the kernel follows netmap's
// ownership rule by construction.
unsafe impl NetmapPort for RealPort {
    fn register(&mut self, iface: &str, mode: RegisterMode) -> Result<Registration, DriverError> {
        if self.mapping.is_some() {
            return Err(DriverError::Setup(
                "netmap: this descriptor is already registered".to_string(),
            ));
        }
        let mut req = register_request(iface, mode)?;
        sys::netmap_ioctl(self.device.as_fd(), NmreqRequest::Register, &mut req).map_err(|e| {
            DriverError::Setup(format!(
                "netmap: cannot register netmap:{iface}{mode}: {e}. Check that the interface \
                 exists and is up, that its driver supports netmap, and that the queue is below \
                 its queue count"
            ))
        })?;
        let len = req.nr_memsize as usize;
        if len == 0 {
            return Err(DriverError::Setup(format!(
                "netmap: registering {iface} returned an empty memory region"
            )));
        }
        let mapping = Mmap::shared(self.device.as_fd(), len, 0, false)
            .map_err(|e| DriverError::io("mmap /dev/netmap", e))?;
        // SAFETY: the mapping is `len` bytes, page-aligned, readable and writable, and lives in
        // `self.mapping` until the port is dropped.
        let region = unsafe { Region::new(mapping.base(), mapping.len()) };
        self.mapping = Some(mapping);
        Ok(Registration {
            region,
            nifp_offset: req.nr_offset as usize,
            interface_mtu: interface_mtu(iface),
        })
    }

    fn rx_sync(&mut self) -> io::Result<()> {
        sys::netmap_sync(self.device.as_fd(), NetmapSync::Rx)
    }

    fn tx_sync(&mut self) -> io::Result<()> {
        sys::netmap_sync(self.device.as_fd(), NetmapSync::Tx)
    }

    fn poll(&mut self, timeout: Duration) -> io::Result<bool> {
        sys::poll_readable(self.device.as_fd(), timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmap_sys::netmap::{NIOCGINFO, NIOCREGIF};
    use std::mem::size_of;

    #[test]
    fn nmreq_matches_the_size_encoded_in_niocregif() {
        // _IOWR('i', 146, struct nmreq): bits 16..30 hold sizeof(struct nmreq).
        let encoded = (NIOCREGIF >> 16) & 0x3fff;
        assert_eq!(encoded as usize, size_of::<nmreq>());
        assert_eq!(size_of::<nmreq>(), 60);
    }

    #[test]
    fn missing_device_gives_the_install_hint() {
        let err = RealPort::open_device(Path::new("/nonexistent/netmap")).unwrap_err();
        assert_eq!(err.to_string(), NO_NETMAP_MESSAGE);
    }

    #[test]
    fn probing_a_missing_device_says_absent() {
        let status = probe_device(Path::new("/nonexistent/netmap")).unwrap();
        assert_eq!(status, NetmapStatus::Absent);
        // Not a netmap device: the ioctl is refused, and that is an error, not "absent".
        assert!(probe_device(Path::new("/dev/null")).is_err());
        assert_eq!(info_request().nr_version, 11);
        assert_eq!((NIOCGINFO >> 16) & 0x3fff, (NIOCREGIF >> 16) & 0x3fff);
    }

    #[test]
    fn request_names_the_interface_and_mode() {
        let req = register_request("eth0", RegisterMode::OneNic(3)).unwrap();
        assert_eq!(
            req.nr_name[..5],
            [b'e' as _, b't' as _, b'h' as _, b'0' as _, 0]
        );
        assert_eq!(req.nr_version, 11);
        assert_eq!((req.nr_flags, req.nr_ringid), (4, 3));
        assert!(register_request("", RegisterMode::AllNic).is_err());
        assert!(register_request("a-very-long-ifname", RegisterMode::AllNic).is_err());
    }
}
