//! Trials for `sirocco doctor`: attach sirocco's own XDP program in one mode and take it off
//! again ([`trial_attach`]); bind an AF_XDP socket to a queue in zero-copy or copy mode and
//! close it ([`trial_bind`]). They go through the same map, program, attach and socket code as
//! [`AfXdp::open_queues`](super::AfXdp::open_queues), so a trial that succeeds means `serve`
//! gets that far too, and a failure carries the very message `serve` would print.
//!
//! A trial leaves nothing behind: the BPF link, the program, the map, the socket and its UMEM
//! are closed before it returns (the kernel detaches a link's program when its descriptor
//! closes). While it is attached, the program redirects into an empty XSKMAP, whose fallback
//! passes every frame to the kernel: traffic flows as before. On some hardware NICs, attaching
//! native XDP reconfigures the rings, a short link reset; veth and virtio do not drop frames.
//!
//! No `XDP_FLAGS_UPDATE_IF_NOEXIST` is needed to notice a program that is already there: a
//! BPF link never replaces one, and the kernel answers `EBUSY` (same mode) or `EEXIST` (the
//! other mode), which [`DriverErrorKind::Busy`] reports.

use std::io;

use super::if_xdp::XDP_PACKET_HEADROOM;
use super::socket::{SocketError, SocketStep, XdpSocket};
use super::tx_meta::TxChecksum;
use super::umem::{CHUNK_SIZE, Umem};
use super::{
    AfXdpConfig, AttachMode, CopyMode, Filter, attach_error, attach_once, create_map, interface,
    is_permission, load_program, socket_config, socket_error,
};
use crate::{DriverError, DriverErrorKind, ETHERNET_HEADER_LEN};

/// The largest IP MTU whose frames fit one UMEM chunk after the kernel's headroom: 4096 - 256
/// - 14 = 3826. The kernel drops a received frame that is longer (it counts it in the
///   socket's `rx_dropped`).
pub const MAX_FRAME_MTU: usize = (CHUNK_SIZE - XDP_PACKET_HEADROOM) as usize - ETHERNET_HEADER_LEN;

/// The largest MTU veth accepts for native XDP with single-buffer programs: a page less the
/// XDP headroom, the Ethernet header and `skb_shared_info`. Above it sirocco loads its program
/// frags-aware (`BPF_F_XDP_HAS_FRAGS`), which veth accepts up to its own maximum MTU.
pub const VETH_NATIVE_MAX_MTU: usize = 3506;

/// The largest MTU served over AF_XDP multi-buffer: the netstack's largest MTU. Frames of an
/// interface with a larger MTU still arrive; those longer than this are dropped and counted.
pub const MAX_MULTI_BUFFER_MTU: usize = 9000;

/// Whether frames of an interface with this MTU can exceed one UMEM chunk, so the socket must
/// be bound with `XDP_USE_SG` and take chains of descriptors (Linux 6.6+).
pub fn needs_multi_buffer(mtu: usize) -> bool {
    mtu > MAX_FRAME_MTU
}

/// Whether the XDP program must be loaded frags-aware (`BPF_F_XDP_HAS_FRAGS`, Linux 5.18+):
/// for multi-buffer, and for veth's native mode above its single-buffer limit.
pub(super) fn needs_frags_program(mtu: usize) -> bool {
    mtu > VETH_NATIVE_MAX_MTU
}

/// The UMEM and rings of a trial bind: as small as the driver accepts, 512 KiB.
const TRIAL_FRAMES: u32 = 128;
const TRIAL_RING: u32 = 64;

/// A failed trial: its kind, and the message `serve` would print for it. A [`DriverError`]
/// that can be cloned and compared, for the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TrialError {
    pub failure: DriverErrorKind,
    pub message: String,
}

impl From<DriverError> for TrialError {
    fn from(error: DriverError) -> TrialError {
        TrialError {
            failure: error.kind(),
            message: error.to_string(),
        }
    }
}

/// The kind of an attach failure in `mode` (`Native` or `Skb`).
pub(super) fn attach_failure(mode: AttachMode, e: &io::Error) -> DriverErrorKind {
    let native = mode == AttachMode::Native;
    match e.raw_os_error() {
        _ if is_permission(e) => DriverErrorKind::Permission,
        Some(libc::EBUSY | libc::EEXIST) => DriverErrorKind::Busy,
        Some(libc::ERANGE) if native => DriverErrorKind::MtuTooLarge,
        Some(libc::EOPNOTSUPP) if native => DriverErrorKind::Unsupported,
        _ => DriverErrorKind::Setup,
    }
}

/// The kind of a socket failure; `zero_copy` is the mode the bind asked for, `multi_buffer`
/// whether it asked for `XDP_USE_SG` (which older kernels refuse with `EINVAL`).
pub(super) fn socket_failure(
    e: &SocketError,
    zero_copy: bool,
    multi_buffer: bool,
) -> DriverErrorKind {
    match (e.step, e.error.raw_os_error()) {
        _ if is_permission(&e.error) => DriverErrorKind::Permission,
        (SocketStep::Create, Some(libc::EAFNOSUPPORT)) => DriverErrorKind::Unsupported,
        (SocketStep::Bind, Some(libc::EOPNOTSUPP)) if zero_copy || multi_buffer => {
            DriverErrorKind::Unsupported
        }
        (SocketStep::Bind, Some(libc::EINVAL)) if multi_buffer => DriverErrorKind::Unsupported,
        (SocketStep::Bind, Some(libc::EBUSY)) => DriverErrorKind::Busy,
        _ => DriverErrorKind::Setup,
    }
}

/// Attaches sirocco's XDP program to `iface` in `mode` and detaches it again. `Auto` is
/// `Native`: try each mode on its own to learn which the interface supports.
pub fn trial_attach(iface: &str, mode: AttachMode) -> Result<(), TrialError> {
    let mode = match mode {
        AttachMode::Auto => AttachMode::Native,
        other => other,
    };
    let (ifindex, mtu) = interface(iface)?;
    let map = create_map(1)?;
    let prog = load_program(&Filter::RedirectAll, &map, mtu)?;
    match attach_once(&prog, ifindex, mode) {
        // Dropping the link detaches the program.
        Ok(link) => {
            drop(link);
            Ok(())
        }
        Err(e) => Err(attach_error(iface, mode, mtu, e).into()),
    }
}

/// Opens an AF_XDP socket over a small UMEM and binds it to `queue` of `iface`, in zero-copy
/// mode or copy mode, then closes it; multi-buffer (`XDP_USE_SG`) when the interface's MTU
/// needs it, as `serve` would. No program needs to be attached for that.
pub fn trial_bind(iface: &str, queue: u32, zero_copy: bool) -> Result<(), TrialError> {
    let (ifindex, mtu) = interface(iface)?;
    let config = AfXdpConfig {
        queue,
        copy: if zero_copy {
            CopyMode::ZeroCopy
        } else {
            CopyMode::Copy
        },
        ring_size: TRIAL_RING,
        frame_count: TRIAL_FRAMES,
        ..AfXdpConfig::new(iface)
    };
    let umem = Umem::new(config.frame_count, CHUNK_SIZE).map_err(|e| TrialError {
        failure: DriverErrorKind::Setup,
        message: format!("cannot map a UMEM for the trial bind: {e}"),
    })?;
    match XdpSocket::open(
        &umem,
        &socket_config(&config, ifindex, zero_copy, mtu, TxChecksum::Stack),
    ) {
        Ok(socket) => {
            drop(socket);
            Ok(())
        }
        Err(e) => Err(socket_error(&config, zero_copy, mtu, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_mtu_fits_a_chunk() {
        assert_eq!(MAX_FRAME_MTU, 3826);
        assert_eq!(
            MAX_FRAME_MTU + ETHERNET_HEADER_LEN + XDP_PACKET_HEADROOM as usize,
            CHUNK_SIZE as usize
        );
        const { assert!(VETH_NATIVE_MAX_MTU < MAX_FRAME_MTU) };
    }

    #[test]
    fn attach_errnos_have_their_kinds() {
        let kind = |mode, errno| attach_failure(mode, &io::Error::from_raw_os_error(errno));
        assert_eq!(kind(AttachMode::Native, libc::EBUSY), DriverErrorKind::Busy);
        assert_eq!(kind(AttachMode::Skb, libc::EEXIST), DriverErrorKind::Busy);
        assert_eq!(
            kind(AttachMode::Skb, libc::EPERM),
            DriverErrorKind::Permission
        );
        assert_eq!(
            kind(AttachMode::Native, libc::ERANGE),
            DriverErrorKind::MtuTooLarge
        );
        assert_eq!(
            kind(AttachMode::Native, libc::EOPNOTSUPP),
            DriverErrorKind::Unsupported
        );
        assert_eq!(kind(AttachMode::Skb, libc::ERANGE), DriverErrorKind::Setup);
    }

    #[test]
    fn socket_errnos_have_their_kinds() {
        let kind = |step, zero_copy, errno| {
            let e = SocketError {
                step,
                error: io::Error::from_raw_os_error(errno),
            };
            socket_failure(&e, zero_copy, false)
        };
        assert_eq!(
            kind(SocketStep::Bind, true, libc::EOPNOTSUPP),
            DriverErrorKind::Unsupported
        );
        assert_eq!(
            kind(SocketStep::Bind, false, libc::EOPNOTSUPP),
            DriverErrorKind::Setup
        );
        assert_eq!(
            kind(SocketStep::Bind, false, libc::EBUSY),
            DriverErrorKind::Busy
        );
        assert_eq!(
            kind(SocketStep::Create, false, libc::EAFNOSUPPORT),
            DriverErrorKind::Unsupported
        );
        assert_eq!(
            kind(SocketStep::Create, false, libc::EPERM),
            DriverErrorKind::Permission
        );
    }

    #[test]
    fn a_missing_interface_is_named() {
        let err = trial_attach("sirocco-nope0", AttachMode::Native).unwrap_err();
        assert_eq!(err.failure, DriverErrorKind::NoInterface);
        assert!(err.message.contains("sirocco-nope0 not found"), "{err}");
        let err = trial_bind("sirocco-nope0", 0, false).unwrap_err();
        assert_eq!(err.failure, DriverErrorKind::NoInterface);
    }
}
