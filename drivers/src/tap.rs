//! The tap backend: Ethernet frames through a Linux `/dev/net/tun` tap device.
//!
//! [`TapDevice::open`] creates the tap (or attaches to an existing, unused one), brings it up
//! and reads its MTU. The kernel side of the tap is an ordinary interface: give it an address
//! and it becomes the server's client, with no XDP and no special NIC.
//!
//! # Batching, and where tap falls short of the trait
//!
//! A tap descriptor moves one frame per syscall in each direction; the kernel offers no batch.
//! So this backend meets the [`FrameIo`] contract on allocation (none per frame: the RX buffer
//! and the TX staging ring are allocated at open) but not on syscalls:
//!
//! - [`FrameIo::rx_burst`] calls `read` once per frame, until `EAGAIN` or `max` frames, and
//!   counts every `read` (the last one, which finds nothing, too) in `kicks`.
//! - [`FrameIo::tx_flush`] calls `write` once per staged frame and counts each in `kicks`. If a
//!   write meets `EAGAIN` the rest stay staged for the next flush and the event is counted in
//!   [`TapDevice::tx_would_block`].
//!
//! Use AF_XDP where frame rate matters; tap is for a quick start.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::host;
use crate::staging::StagingRing;
use crate::sys::{self, Fd, IfReq, IfreqRequest};
use crate::{Capabilities, DriverCounters, DriverError, FrameIo};

/// TX frames that can be staged between two flushes.
pub const TAP_TX_SLOTS: usize = 256;

/// Largest frame a tap read can return: the RX buffer is this big, so a frame larger than the
/// MTU (say, after someone raises the kernel side's MTU) is read whole and then dropped, not
/// split.
const RX_BUFFER_LEN: usize = 65536;

const TUN_PATH: &CStr = c"/dev/net/tun";

/// A tap device opened for raw Ethernet frames. Closing it (drop) deletes a tap it created.
pub struct TapDevice {
    fd: Fd,
    name: String,
    ifindex: u32,
    caps: Capabilities,
    rx_buf: Box<[u8]>,
    staging: StagingRing,
    counters: DriverCounters,
    tx_would_block: u64,
}

impl TapDevice {
    /// Creates the tap `name` (or attaches to an existing tap of that name that no other
    /// process holds), brings it up, and reads its MTU. Needs root or `CAP_NET_ADMIN`.
    pub fn open(name: &str) -> Result<Self, DriverError> {
        check_interface_name(name)?;
        let fd = Fd::open(TUN_PATH, libc::O_RDWR | libc::O_NONBLOCK).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    DriverError::Unsupported(
                        "/dev/net/tun not found: load the tun module (modprobe tun)".into(),
                    )
                }
                Some(libc::EPERM) | Some(libc::EACCES) => DriverError::Permission(format!(
                    "opening /dev/net/tun for tap {name} needs root or CAP_NET_ADMIN: {e}"
                )),
                _ => DriverError::Setup(format!("cannot open /dev/net/tun for tap {name}: {e}")),
            }
        })?;

        let mut req = IfReq::new(name);
        // IFF_TAP | IFF_NO_PI is 0x1002: it fits the `c_short` the kernel reads.
        req.set_flags((libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short);
        fd.ifreq_ioctl(IfreqRequest::TunSetIff, &mut req)
            .map_err(|e| tunsetiff_error(name, e))?;
        // The kernel writes back the name it used (the same one, as we never pass a pattern).
        let name = req.name();

        let control = Fd::socket(libc::AF_INET, libc::SOCK_DGRAM)
            .map_err(|e| DriverError::Setup(format!("cannot configure tap {name}: socket: {e}")))?;
        bring_up(&control, &name)?;
        let found = host::interface(&name).map_err(|e| {
            DriverError::Setup(format!("cannot read the MTU and index of tap {name}: {e}"))
        })?;
        let mtu = usize::try_from(found.mtu).unwrap_or(0);
        if mtu == 0 {
            return Err(DriverError::Setup(format!(
                "tap {name} reports an MTU of 0: set one with `ip link set {name} mtu 1500`"
            )));
        }
        let ifindex = found.index;

        let caps = Capabilities::ethernet(mtu);
        Ok(TapDevice {
            fd,
            name,
            ifindex,
            caps,
            rx_buf: vec![0; RX_BUFFER_LEN.max(caps.max_frame_len)].into_boxed_slice(),
            staging: StagingRing::new(TAP_TX_SLOTS, caps.max_frame_len),
            counters: DriverCounters::default(),
            tx_would_block: 0,
        })
    }

    /// The interface name, as the kernel knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index when the tap was opened (it changes if the tap moves to another
    /// network namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// How many times a flush stopped early because the kernel's queue was full (`EAGAIN`).
    pub fn tx_would_block(&self) -> u64 {
        self.tx_would_block
    }
}

impl std::fmt::Debug for TapDevice {
    // Leaves out the buffers: a quarter megabyte of bytes helps nobody.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapDevice")
            .field("fd", &self.fd)
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("caps", &self.caps)
            .field("staging", &self.staging)
            .field("counters", &self.counters)
            .field("tx_would_block", &self.tx_would_block)
            .finish()
    }
}

fn bring_up(control: &Fd, name: &str) -> Result<(), DriverError> {
    let mut req = IfReq::new(name);
    control
        .ifreq_ioctl(IfreqRequest::GetFlags, &mut req)
        .map_err(|e| DriverError::Setup(format!("cannot read the flags of tap {name}: {e}")))?;
    // IFF_UP is 0x1: it fits the `c_short` flags field.
    let up = libc::IFF_UP as libc::c_short;
    if req.flags() & up == 0 {
        let flags = req.flags() | up;
        req.set_flags(flags);
        control
            .ifreq_ioctl(IfreqRequest::SetFlags, &mut req)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => DriverError::Permission(format!(
                    "bringing tap {name} up needs root or CAP_NET_ADMIN"
                )),
                _ => DriverError::Setup(format!("cannot bring tap {name} up: {e}")),
            })?;
    }
    Ok(())
}

fn tunsetiff_error(name: &str, e: io::Error) -> DriverError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => DriverError::Permission(format!(
            "creating tap {name} needs root or CAP_NET_ADMIN: run as root, or grant it with \
             `setcap cap_net_admin+ep` on the binary"
        )),
        Some(libc::EBUSY) => DriverError::Busy(format!(
            "tap {name} is already in use by another process: stop it, or pick another name"
        )),
        Some(libc::EINVAL) => DriverError::InvalidConfig(format!(
            "interface {name} exists and is not a tap device: pick a name no interface has \
             (see `ip link`)"
        )),
        _ => DriverError::Setup(format!("cannot create tap {name}: {e}")),
    }
}

/// Checks `name` the way the kernel would (`dev_valid_name`), so the user gets a clear message
/// instead of `EINVAL`.
fn check_interface_name(name: &str) -> Result<(), DriverError> {
    let bad = |problem: String| {
        Err(DriverError::NoInterface(format!(
            "interface name '{}' {problem}",
            name.escape_debug()
        )))
    };
    if name.is_empty() {
        return bad("is empty: give a name such as tap0".into());
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad(format!("is too long: at most {} bytes", libc::IFNAMSIZ - 1));
    }
    if name == "." || name == ".." {
        return bad("is reserved: give a name such as tap0".into());
    }
    let forbidden = |c: char| c == '/' || c == ':' || c == '\0' || c.is_whitespace();
    if let Some(c) = name.chars().find(|&c| forbidden(c)) {
        return bad(format!(
            "contains {c:?}: use letters, digits, '-', '_' or '.', e.g. tap0"
        ));
    }
    Ok(())
}

impl FrameIo for TapDevice {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let mut delivered = 0;
        let mut reads = 0;
        while reads < max {
            self.counters.kicks += 1;
            match self.fd.read(&mut self.rx_buf) {
                Ok(len) => {
                    reads += 1;
                    if len > self.caps.max_frame_len {
                        self.counters.rx_dropped += 1;
                        continue;
                    }
                    let Some(frame) = self.rx_buf.get(..len) else {
                        self.counters.rx_dropped += 1;
                        continue;
                    };
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += len as u64;
                    delivered += 1;
                    on_frame(frame);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DriverError::io("tap read", e)),
            }
        }
        Ok(delivered)
    }

    fn tx_room(&self) -> usize {
        self.staging.room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.staging
            .stage_counted(&mut self.counters, self.caps.max_frame_len, len, fill)
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        while let Some(frame) = self.staging.front() {
            self.counters.kicks += 1;
            match self.fd.write(frame) {
                Ok(_) => {
                    self.counters.tx_frames += 1;
                    self.counters.tx_bytes += frame.len() as u64;
                    self.staging.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.tx_would_block += 1;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The kernel refused this frame (too short, malformed, link down): drop it
                // and keep going, as a NIC would.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINVAL | libc::EMSGSIZE | libc::EIO | libc::ENOBUFS)
                    ) =>
                {
                    self.counters.tx_dropped += 1;
                    self.staging.pop_front();
                }
                Err(e) => {
                    self.counters.tx_dropped += 1;
                    self.staging.pop_front();
                    return Err(DriverError::io("tap write", e));
                }
            }
        }
        Ok(())
    }

    fn counters(&self) -> DriverCounters {
        self.counters
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        sys::poll_readable(self.fd.as_fd(), timeout)
            .map(|_| ())
            .map_err(|e| DriverError::io("tap poll", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_message(result: Result<(), DriverError>) -> String {
        match result {
            Err(e @ DriverError::NoInterface(_)) => e.to_string(),
            other => panic!("expected a bad-name error, got {other:?}"),
        }
    }

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        assert!(check_interface_name("tap0").is_ok());
        assert!(check_interface_name("sirocco-tap.1_x").is_ok());
        assert!(check_interface_name("abcdefghijklmno").is_ok()); // 15 bytes

        let long = setup_message(check_interface_name("abcdefghijklmnop"));
        assert_eq!(
            long,
            "interface name 'abcdefghijklmnop' is too long: at most 15 bytes"
        );
        assert!(setup_message(check_interface_name("")).contains("is empty"));
        assert!(setup_message(check_interface_name("a/b")).contains("contains '/'"));
        assert!(setup_message(check_interface_name("a b")).contains("contains ' '"));
        assert!(setup_message(check_interface_name("tap\t0")).contains("contains '\\t'"));
        assert!(setup_message(check_interface_name("eth0:1")).contains("contains ':'"));
        assert!(setup_message(check_interface_name("..")).contains("reserved"));
    }

    #[test]
    fn open_rejects_a_bad_name_before_touching_the_kernel() {
        let err = TapDevice::open("this-name-is-too-long").unwrap_err();
        assert!(err.to_string().contains("is too long"), "{err}");
    }

    #[test]
    fn tunsetiff_errors_say_what_to_do() {
        let busy = tunsetiff_error("tap7", io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(busy, DriverError::Busy(_)), "{busy:?}");
        assert_eq!(
            busy.to_string(),
            "tap tap7 is already in use by another process: stop it, or pick another name"
        );
        let perm = tunsetiff_error("tap7", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(perm, DriverError::Permission(_)), "{perm:?}");
        assert!(
            perm.to_string()
                .starts_with("creating tap tap7 needs root or CAP_NET_ADMIN")
        );
    }
}
