//! Raw Ethernet frame I/O behind one batched trait, [`FrameIo`].
//!
//! This crate is the only place in sirocco with `unsafe` code; every backend exposes a safe API.
//!
//! # The contract every backend meets
//!
//! - **Receive in bursts.** [`FrameIo::rx_burst`] lends up to `max` received frames, one at a
//!   time, to a closure as borrowed slices. The slice is valid only during that call; a backend
//!   with a shared-memory ring (AF_XDP, netmap) hands out its ring buffer directly, and releases
//!   the whole burst back to the ring in one move after the last frame.
//! - **Transmit in bursts.** [`FrameIo::tx_stage`] lends a transmit buffer of exactly `len` bytes
//!   to a closure that fills it. Nothing leaves the machine until [`FrameIo::tx_flush`], which
//!   submits every staged frame with one kick (one syscall at most). When the TX ring is full,
//!   `tx_stage` returns `false` and counts `tx_ring_full`; callers keep the data and retry after
//!   the next flush.
//! - **No allocation, syscall or logging per frame** on either path, once warmed up.
//! - **Counters** are plain integers, read with [`FrameIo::counters`].
//! - A backend never panics on what it receives.
//!
//! Frames are whole Ethernet frames without the FCS. [`Capabilities::max_frame_len`] bounds both
//! directions.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod afxdp;
pub mod alloc_count;
pub mod capture;
pub mod clock;
pub mod faults;
mod filter;
pub mod host;
pub mod memory;
pub mod netmap;
pub mod netns;
pub mod pcap;
pub mod prefetch;
pub mod rng;
pub mod rss;
pub mod sandbox;
mod staging;
mod sys;
pub mod tap;

use std::time::Duration;

pub use filter::{Filter, FilterError, MAX_SERVER_IPV6, ServerAddresses};

/// What a backend can do. Read once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// IP MTU of the link: the largest IP packet a frame can carry (1500 on plain Ethernet).
    pub mtu: usize,
    /// Largest whole frame, Ethernet header included (`mtu + 14`).
    pub max_frame_len: usize,
    /// The backend (or NIC) has already verified IPv4/TCP checksums of received frames.
    pub rx_checksum_verified: bool,
    /// The backend (or NIC) fills in the TCP checksums of transmitted frames, whatever their
    /// checksum field holds; IPv4 header, ICMP and UDP checksums stay the stack's.
    pub tx_checksum_offload: bool,
    /// Frames are lent straight from the device's ring, without a copy.
    pub zero_copy: bool,
}

impl Capabilities {
    /// Plain Ethernet with the given IP MTU, software checksums, copy mode.
    pub const fn ethernet(mtu: usize) -> Self {
        Capabilities {
            mtu,
            max_frame_len: mtu + ETHERNET_HEADER_LEN,
            rx_checksum_verified: false,
            tx_checksum_offload: false,
            zero_copy: false,
        }
    }
}

/// The most frames one call of [`FrameIo::rx_batch`]'s closure is lent.
pub const RX_LEND_MAX: usize = 64;

/// Length of an Ethernet II header (no VLAN tag).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Per-backend counters. Monotonic; a stats reporter diffs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames the backend dropped on receive (oversize, truncated, fault injection, ...).
    pub rx_dropped: u64,
    /// Frames the backend dropped on transmit (oversize, fault injection, write errors, ...).
    pub tx_dropped: u64,
    /// `tx_stage` calls refused because the TX ring was full.
    pub tx_ring_full: u64,
    /// Syscalls (or emulated kicks) made to submit TX or refill RX.
    pub kicks: u64,
}

impl DriverCounters {
    /// Every counter with its field name, in declaration order, for reporters (the metrics
    /// endpoint) that list them all. Destructured, so a new counter cannot be forgotten here.
    pub fn fields(&self) -> [(&'static str, u64); 8] {
        let DriverCounters {
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            rx_dropped,
            tx_dropped,
            tx_ring_full,
            kicks,
        } = *self;
        [
            ("rx_frames", rx_frames),
            ("rx_bytes", rx_bytes),
            ("tx_frames", tx_frames),
            ("tx_bytes", tx_bytes),
            ("rx_dropped", rx_dropped),
            ("tx_dropped", tx_dropped),
            ("tx_ring_full", tx_ring_full),
            ("kicks", kicks),
        ]
    }
}

/// Adds another backend's counters: the total over the queues of one NIC, say.
impl std::ops::AddAssign for DriverCounters {
    fn add_assign(&mut self, other: DriverCounters) {
        // Destructured, so a new counter cannot be forgotten here.
        let DriverCounters {
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            rx_dropped,
            tx_dropped,
            tx_ring_full,
            kicks,
        } = other;
        self.rx_frames += rx_frames;
        self.rx_bytes += rx_bytes;
        self.tx_frames += tx_frames;
        self.tx_bytes += tx_bytes;
        self.rx_dropped += rx_dropped;
        self.tx_dropped += tx_dropped;
        self.tx_ring_full += tx_ring_full;
        self.kicks += kicks;
    }
}

/// Errors a backend can report. Transient conditions (an empty ring, a full ring) are not errors.
///
/// Setup failures come in kinds that callers act on (`sirocco doctor` and the AF_XDP trials
/// sort by them; see [`DriverError::kind`]); each carries the message `serve` prints, which
/// says what to do about it. The message is the whole [`Display`](std::fmt::Display) text.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A system call failed, on the data path or in a setup step with nothing more to say.
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The interface name is not valid, or no interface has it.
    #[error("{0}")]
    NoInterface(String),
    /// Not allowed: no root, or a missing capability (`CAP_NET_ADMIN`, `CAP_NET_RAW`,
    /// `CAP_BPF`).
    #[error("{0}")]
    Permission(String),
    /// Someone else holds it: an XDP program already attached, a queue bound by another AF_XDP
    /// socket, a tap open in another process.
    #[error("{0}")]
    Busy(String),
    /// The interface MTU is above what native XDP takes on its driver.
    #[error("{0}")]
    MtuTooLarge(String),
    /// The kernel, a module or the driver lacks what is needed (no AF_XDP sockets, no
    /// zero-copy, no native XDP, no netmap module, no tun device).
    #[error("{0}")]
    Unsupported(String),
    /// A setting is out of range or contradicts another; refused before touching the kernel.
    #[error("{0}")]
    InvalidConfig(String),
    /// Any other setup failure (a trace that does not parse, a malformed netmap region, ...).
    #[error("{0}")]
    Setup(String),
}

/// What kind of failure a [`DriverError`] is: its variant without the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverErrorKind {
    Io,
    NoInterface,
    Permission,
    Busy,
    MtuTooLarge,
    Unsupported,
    InvalidConfig,
    Setup,
}

impl DriverError {
    pub fn io(op: &'static str, source: std::io::Error) -> Self {
        DriverError::Io { op, source }
    }

    /// An error of `kind` with `message` (an `Io` kind, which needs a source, becomes `Setup`).
    pub fn new(kind: DriverErrorKind, message: String) -> Self {
        match kind {
            DriverErrorKind::NoInterface => DriverError::NoInterface(message),
            DriverErrorKind::Permission => DriverError::Permission(message),
            DriverErrorKind::Busy => DriverError::Busy(message),
            DriverErrorKind::MtuTooLarge => DriverError::MtuTooLarge(message),
            DriverErrorKind::Unsupported => DriverError::Unsupported(message),
            DriverErrorKind::InvalidConfig => DriverError::InvalidConfig(message),
            DriverErrorKind::Io | DriverErrorKind::Setup => DriverError::Setup(message),
        }
    }

    pub fn kind(&self) -> DriverErrorKind {
        match self {
            DriverError::Io { .. } => DriverErrorKind::Io,
            DriverError::NoInterface(_) => DriverErrorKind::NoInterface,
            DriverError::Permission(_) => DriverErrorKind::Permission,
            DriverError::Busy(_) => DriverErrorKind::Busy,
            DriverError::MtuTooLarge(_) => DriverErrorKind::MtuTooLarge,
            DriverError::Unsupported(_) => DriverErrorKind::Unsupported,
            DriverError::InvalidConfig(_) => DriverErrorKind::InvalidConfig,
            DriverError::Setup(_) => DriverErrorKind::Setup,
        }
    }

    /// The same kind of error with its message rewritten by `f` (given the whole text).
    pub(crate) fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        let kind = self.kind();
        DriverError::new(kind, f(self.to_string()))
    }
}

/// Batched raw-frame I/O. See the crate documentation for the contract.
pub trait FrameIo {
    fn capabilities(&self) -> Capabilities;

    /// Receives up to `max` frames, calling `on_frame` once for each. Returns how many.
    /// Returns `Ok(0)` when nothing is waiting; it never blocks.
    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError>;

    /// Receives up to `max` frames like [`FrameIo::rx_burst`], but lends them several at a
    /// time, in order, as one slice (at most [`RX_LEND_MAX`] frames a call), so the caller
    /// can look ahead across a burst: find every frame's connection and bring its state into
    /// cache before processing the first. Returns how many frames were lent. The default lends
    /// each frame of [`FrameIo::rx_burst`] alone.
    fn rx_batch(
        &mut self,
        max: usize,
        on_frames: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<usize, DriverError> {
        self.rx_burst(max, &mut |frame| on_frames(&[frame]))
    }

    /// Whether a frame may be waiting for [`FrameIo::rx_burst`]: a look at the RX ring with
    /// no syscall, for a busy-polling loop to spin on while idle instead of running whole
    /// iterations (each reading the clock). `false` only when the backend knows nothing is
    /// ready; the default, for backends that cannot tell, is `true`.
    fn rx_pending(&self) -> bool {
        true
    }

    /// How many more frames `tx_stage` will accept before the next `tx_flush`.
    fn tx_room(&self) -> usize;

    /// Lends a TX buffer of exactly `len` bytes to `fill`, and stages it for the next flush.
    /// Returns `false` (and does not call `fill`) if the ring is full or `len` exceeds
    /// `max_frame_len`.
    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool;

    /// Submits every staged frame: one kick per call at most.
    fn tx_flush(&mut self) -> Result<(), DriverError>;

    /// Submits every staged frame like [`FrameIo::tx_flush`], but a backend whose kick is a
    /// system call may leave it owed, so that the passes of one wake-up share one: to the next
    /// lazy flush that submits frames or follows received ones, to [`FrameIo::tx_flush`], or
    /// to [`FrameIo::wait_rx`], which settles it before it sleeps. A pass that neither
    /// received nor submitted anything leaves an owed kick owed, so a caller must end a run of
    /// lazy flushes with `tx_flush` or `wait_rx`; a busy-polling caller that never waits uses
    /// `tx_flush`. The default is `tx_flush`.
    fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
        self.tx_flush()
    }

    fn counters(&self) -> DriverCounters;

    /// Idle mode: blocks until a frame may be waiting or `timeout` passes, after settling a
    /// kick [`FrameIo::tx_flush_lazy`] left owed. Busy-polling callers never call it.
    /// Backends without a way to wait return at once.
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        let _ = timeout;
        Ok(())
    }

    /// `true` once a finite source (a pcap file being replayed) has nothing more to give.
    fn rx_exhausted(&self) -> bool {
        false
    }
}

impl<T: FrameIo + ?Sized> FrameIo for Box<T> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        (**self).rx_burst(max, on_frame)
    }
    fn rx_batch(
        &mut self,
        max: usize,
        on_frames: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<usize, DriverError> {
        (**self).rx_batch(max, on_frames)
    }
    fn rx_pending(&self) -> bool {
        (**self).rx_pending()
    }
    fn tx_room(&self) -> usize {
        (**self).tx_room()
    }
    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        (**self).tx_stage(len, fill)
    }
    fn tx_flush(&mut self) -> Result<(), DriverError> {
        (**self).tx_flush()
    }
    fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
        (**self).tx_flush_lazy()
    }
    fn counters(&self) -> DriverCounters {
        (**self).counters()
    }
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        (**self).wait_rx(timeout)
    }
    fn rx_exhausted(&self) -> bool {
        (**self).rx_exhausted()
    }
}
