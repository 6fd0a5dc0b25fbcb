//! The netmap backend: frames straight from a NIC's rings through `/dev/netmap`, zero-copy.
//!
//! [`Netmap`] implements [`FrameIo`] over any [`NetmapPort`]: the real kernel module
//! ([`RealPort`], through [`Netmap::open`]) or the in-process emulation ([`EmulatedNetmap`]),
//! which is how it is tested on machines without netmap.
//!
//! # Data path
//!
//! - **Receive.** [`FrameIo::rx_burst`] walks each bound NIC RX ring from `head` to `tail`,
//!   checks every slot's buffer index and length against the region, lends each buffer to the
//!   closure without copying, and releases the whole burst with one store of `head`/`cur` per
//!   ring. It asks the kernel for more (`NIOCRXSYNC`) only when every RX ring is empty, so a
//!   busy ring costs no syscall at all.
//! - **Transmit.** [`FrameIo::tx_stage`] fills the next free slot of a NIC TX ring in place;
//!   [`FrameIo::tx_flush`] publishes `head`/`cur` once per ring and makes one `NIOCTXSYNC` for
//!   all of them. A full ring is refused (`tx_ring_full`), and the next flush syncs even with
//!   nothing new, to reclaim completed slots.
//! - **Host rings** ([`NetmapConfig::host_rings`], `netmap:eth0*`). netmap takes the NIC away
//!   from the kernel, so frames the [`Filter`] does not give the server are moved, by buffer
//!   swap, to the host TX ring (up to the kernel stack), and frames the host stack sends arrive
//!   on the host RX ring and are swapped onto a NIC TX ring. SSH and the like keep working on
//!   a shared port. Both moves set `NS_BUF_CHANGED`; they are submitted by the next flush.
//! - **Waiting.** In idle mode [`FrameIo::wait_rx`] calls `poll` when every RX ring is empty;
//!   with [`NetmapConfig::busy_poll`] it returns at once.
//!
//! Nothing read from the shared region is trusted: a slot with a bad buffer index or length is
//! counted ([`NetmapCounters`]) and skipped, a ring with `head` or `tail` out of range is left
//! alone and counted; nothing panics.
//!
//! Counting: `kicks` counts every sync and poll. Frames the server stages count in
//! `tx_frames` at flush; frames forwarded between the NIC and the host stack count only in
//! [`NetmapCounters`].

pub mod emulated;
pub mod port;
pub mod real;
pub mod region;
pub mod ring;

pub use crate::Filter;
pub use emulated::{
    EmulatedConfig, EmulatedNetmap, EmulatedPort, EmulatedStats, EmulationControl, SlotFault,
};
pub use port::{NetmapPort, RegisterMode, Registration};
pub use real::{NetmapStatus, RealPort};

use std::time::Duration;

use netmap_sys::netmap::NS_MOREFRAG;

use crate::{Capabilities, DriverCounters, DriverError, ETHERNET_HEADER_LEN, FrameIo};
use region::{LayoutError, RingId};
use ring::{NetmapRing, Slot, swap_buffers};

/// Smallest buffer size this driver accepts: an Ethernet header plus a minimal IPv4 packet.
const MIN_BUF_SIZE: u32 = 64;

/// How to open a netmap port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetmapConfig {
    /// The interface, e.g. `eth1`.
    pub iface: String,
    /// Bind only this NIC queue (`netmap:eth1-N`) instead of all of them.
    pub queue: Option<u16>,
    /// Also bind the host rings (`netmap:eth1*`) and pass frames the [`Filter`] rejects to the
    /// kernel stack. Default `true`; `--dedicated-nic` turns it off, and then every frame goes
    /// to the server. netmap's legacy API cannot bind one queue and the host rings with one
    /// descriptor, so `queue` needs `host_rings: false`.
    pub host_rings: bool,
    /// Which received frames are the server's (only used with host rings).
    pub filter: Filter,
    /// Never sleep in `wait_rx`: return at once (benchmarks). Default `false` (idle mode).
    pub busy_poll: bool,
}

impl NetmapConfig {
    /// All queues and the host rings of `iface`, every frame to the server, idle mode.
    pub fn new(iface: &str) -> Self {
        NetmapConfig {
            iface: iface.to_string(),
            queue: None,
            host_rings: true,
            filter: Filter::RedirectAll,
            busy_poll: false,
        }
    }

    /// The registration these settings ask for.
    pub fn register_mode(&self) -> Result<RegisterMode, DriverError> {
        match (self.queue, self.host_rings) {
            (None, true) => Ok(RegisterMode::NicAndHost),
            (None, false) => Ok(RegisterMode::AllNic),
            (Some(q), false) => Ok(RegisterMode::OneNic(q)),
            (Some(q), true) => Err(DriverError::InvalidConfig(format!(
                "netmap: --queue {q} binds one NIC ring pair, and netmap cannot bind the host rings \
                 on the same descriptor; add --dedicated-nic, or drop --queue to bind all queues \
                 and the host rings"
            ))),
        }
    }
}

/// netmap-specific counters, beside [`DriverCounters`]. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetmapCounters {
    /// RX slots whose buffer index or length did not fit the region (dropped, also in
    /// `rx_dropped`).
    pub bad_rx_slots: u64,
    /// TX slots the kernel left with an unusable buffer index (skipped with an empty frame).
    pub bad_tx_slots: u64,
    /// Frames spread over several slots (`NS_MOREFRAG`), dropped: this driver does one slot per
    /// frame.
    pub fragmented_dropped: u64,
    /// Received frames longer than `max_frame_len` (dropped, also in `rx_dropped`).
    pub oversize_dropped: u64,
    /// Syncs after which a ring's `head` or `tail` was out of range, or the kernel had reset it.
    pub ring_errors: u64,
    /// Frames passed from the NIC to the host stack.
    pub to_host: u64,
    /// Frames passed from the host stack to the NIC.
    pub from_host: u64,
    /// Frames for the host stack dropped because its ring was full or a slot was bad.
    pub host_dropped: u64,
}

/// One RX ring and where a multi-slot frame being skipped stands.
#[derive(Debug)]
struct RxRing {
    ring: NetmapRing,
    skipping_fragments: bool,
}

impl RxRing {
    fn new(ring: NetmapRing) -> Self {
        RxRing {
            ring,
            skipping_fragments: false,
        }
    }

    fn has_frames(&self) -> bool {
        self.ring.user_span().is_some_and(|(_, n)| n > 0)
    }

    /// `true` if the slot is part of a multi-slot frame and must be skipped (counted once per
    /// frame, at its first slot).
    fn skip_fragment(
        &mut self,
        slot: Slot,
        counters: &mut DriverCounters,
        nm: &mut NetmapCounters,
    ) -> bool {
        let more = slot.flags & NS_MOREFRAG != 0;
        if self.skipping_fragments {
            self.skipping_fragments = more;
            return true;
        }
        if more {
            self.skipping_fragments = true;
            counters.rx_dropped += 1;
            nm.fragmented_dropped += 1;
        }
        more
    }
}

/// One TX ring: `next` is the first slot not yet staged, `published` what `head` was last set to.
#[derive(Debug)]
struct TxRing {
    ring: NetmapRing,
    next: u32,
    published: u32,
}

impl TxRing {
    fn new(ring: NetmapRing) -> Self {
        let head = ring.head();
        let head = if head < ring.num_slots() { head } else { 0 };
        TxRing {
            ring,
            next: head,
            published: head,
        }
    }

    /// Free slots after the staged ones. A `tail` that is out of range, or behind what we
    /// staged, gives 0.
    fn room(&self) -> u32 {
        let tail = self.ring.tail();
        if tail >= self.ring.num_slots() {
            return 0;
        }
        let owned = self.ring.distance(self.published, tail);
        owned.saturating_sub(self.ring.distance(self.published, self.next))
    }

    /// Fills the next free slot. Slots with a bad buffer index are skipped as empty frames.
    /// `false` when no free slot is left.
    fn stage(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
        nm: &mut NetmapCounters,
    ) -> bool {
        while self.room() > 0 {
            let s = self.next;
            self.next = self.ring.next(s);
            if self.ring.fill(s, len, fill).is_ok() {
                return true;
            }
            nm.bad_tx_slots += 1;
            if let Ok(slot) = self.ring.slot(s) {
                let _ = self.ring.set_slot(s, Slot { len: 0, ..slot });
            }
        }
        false
    }

    /// Moves the frame in `from[index]` into the next free slot by buffer swap.
    fn forward(&mut self, from: &NetmapRing, index: u32) -> Forward {
        if self.room() == 0 {
            return Forward::Full;
        }
        match swap_buffers(from, index, &self.ring, self.next) {
            Ok(()) => {
                self.next = self.ring.next(self.next);
                Forward::Moved
            }
            Err(_) => Forward::BadSlot,
        }
    }

    /// Sets `head`/`cur` past the staged slots; `true` if anything new was published.
    fn publish(&mut self) -> bool {
        if self.next == self.published {
            return false;
        }
        self.ring.set_head_cur(self.next);
        self.published = self.next;
        true
    }

    /// After a sync: `false` if the kernel reset the ring (its `head` is not what we wrote);
    /// staging then restarts from the kernel's `head`.
    fn check_after_sync(&mut self) -> bool {
        let head = self.ring.head();
        if head == self.published {
            return true;
        }
        let head = if head < self.ring.num_slots() {
            head
        } else {
            0
        };
        self.next = head;
        self.published = head;
        false
    }
}

enum Forward {
    Moved,
    Full,
    BadSlot,
}

/// A netmap port as a [`FrameIo`]. See the module documentation.
#[derive(Debug)]
pub struct Netmap<P: NetmapPort> {
    rx: Vec<RxRing>,
    /// RX ring the next burst starts with, so no ring starves another.
    rx_start: usize,
    tx: Vec<TxRing>,
    /// TX ring staging goes to until it fills.
    tx_current: usize,
    host_rx: Option<RxRing>,
    host_tx: Option<TxRing>,
    filter: Filter,
    busy_poll: bool,
    caps: Capabilities,
    iface: String,
    counters: DriverCounters,
    netmap: NetmapCounters,
    staged_frames: u64,
    staged_bytes: u64,
    /// A stage or forward was refused for lack of room: the next flush syncs to reclaim slots.
    kick_wanted: bool,
    // Last: the ring views point into the region this port owns.
    port: P,
}

// SAFETY: the ring views hold raw pointers into the region the port owns and keeps mapped
// (`NetmapPort`'s contract); they move with the port, and nothing in the driver is tied to a
// thread. Without `P: Send` (the emulation shares its wire through `Rc`) it stays `!Send`.
unsafe impl<P: NetmapPort + Send> Send for Netmap<P> {}

impl Netmap<RealPort> {
    /// Opens `/dev/netmap` and registers `config.iface`.
    pub fn open(config: NetmapConfig) -> Result<Self, DriverError> {
        let port = RealPort::open()?;
        Self::with_port(port, config)
    }
}

impl Netmap<EmulatedPort> {
    /// Controls of the emulated kernel under this driver (faults, host stack, stalls).
    pub fn emulation(&mut self) -> EmulationControl<'_> {
        EmulationControl::new(&mut self.port)
    }
}

impl<P: NetmapPort> Netmap<P> {
    /// Registers `port` as `config` asks and builds the ring views over its region.
    pub fn with_port(mut port: P, config: NetmapConfig) -> Result<Self, DriverError> {
        let mode = config.register_mode()?;
        if config.host_rings {
            config
                .filter
                .check()
                .map_err(|e| DriverError::InvalidConfig(format!("netmap: {e}")))?;
        }
        let registration = port.register(&config.iface, mode)?;
        let iface = config.iface.clone();
        let malformed = |e: LayoutError| {
            DriverError::Setup(format!(
                "netmap: the memory region of {iface} is malformed: {e}"
            ))
        };
        let region = registration.region;
        // SAFETY: (this block and the one in `open`) `NetmapPort` promises the region stays mapped until the port
        // drops; the port moves into the `Netmap` built below, next to the views, and is
        // declared last so it drops after them. `nif` itself does not outlive this function.
        let nif = unsafe { region.interface(registration.nifp_offset) }.map_err(malformed)?;
        let open = |id: RingId| -> Result<NetmapRing, DriverError> {
            let offset = nif.ring_offset(id).map_err(malformed)?;
            // SAFETY: see above.
            unsafe { NetmapRing::new(region, offset) }.map_err(malformed)
        };
        let (tx_ids, rx_ids): (Vec<RingId>, Vec<RingId>) = match mode {
            RegisterMode::OneNic(q) => (vec![RingId::Tx(q.into())], vec![RingId::Rx(q.into())]),
            RegisterMode::AllNic | RegisterMode::NicAndHost => (
                (0..nif.tx_rings()).map(RingId::Tx).collect(),
                (0..nif.rx_rings()).map(RingId::Rx).collect(),
            ),
        };
        if tx_ids.is_empty() || rx_ids.is_empty() {
            return Err(DriverError::Setup(format!(
                "netmap: {} has no NIC rings to bind",
                config.iface
            )));
        }
        let tx = tx_ids
            .into_iter()
            .map(|id| open(id).map(TxRing::new))
            .collect::<Result<Vec<_>, _>>()?;
        let rx = rx_ids
            .into_iter()
            .map(|id| open(id).map(RxRing::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (host_tx, host_rx) = if mode.has_host_rings() {
            (
                Some(TxRing::new(open(RingId::HostTx)?)),
                Some(RxRing::new(open(RingId::HostRx)?)),
            )
        } else {
            (None, None)
        };
        let buf_size = tx
            .iter()
            .map(|t| &t.ring)
            .chain(rx.iter().map(|r| &r.ring))
            .map(NetmapRing::buf_size)
            .min()
            .unwrap_or(0);
        if buf_size < MIN_BUF_SIZE {
            return Err(DriverError::Setup(format!(
                "netmap: {} has {buf_size}-byte buffers, too small for Ethernet frames",
                config.iface
            )));
        }
        let largest_payload = buf_size as usize - ETHERNET_HEADER_LEN;
        let mtu = registration
            .interface_mtu
            .map_or(largest_payload, |m| m.min(largest_payload));
        let caps = Capabilities {
            zero_copy: true,
            ..Capabilities::ethernet(mtu)
        };
        Ok(Netmap {
            rx,
            rx_start: 0,
            tx,
            tx_current: 0,
            host_rx,
            host_tx,
            filter: config.filter,
            busy_poll: config.busy_poll,
            caps,
            iface: config.iface,
            counters: DriverCounters::default(),
            netmap: NetmapCounters::default(),
            staged_frames: 0,
            staged_bytes: 0,
            kick_wanted: false,
            port,
        })
    }

    pub fn netmap_counters(&self) -> NetmapCounters {
        self.netmap
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The port, e.g. an [`EmulatedPort`] to read its stats. There is deliberately no
    /// `port_mut`: replacing the port would unmap the region under the ring views.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// `true` if any bound RX ring (host ring included) holds a frame.
    fn rx_pending(&self) -> bool {
        self.rx
            .iter()
            .chain(self.host_rx.as_ref())
            .any(RxRing::has_frames)
    }
}

/// What `drain_nic_ring` does with a frame: the server takes it if `filter` accepts it (or
/// there is no host ring) and it is no longer than `max_frame_len`.
#[derive(Debug, Clone, Copy)]
struct RxPolicy<'a> {
    filter: &'a Filter,
    max_frame_len: usize,
}

/// Walks one NIC RX ring for up to `budget` slots. Returns (frames delivered, slots used).
fn drain_nic_ring(
    rx: &mut RxRing,
    budget: usize,
    host_tx: Option<&mut TxRing>,
    policy: RxPolicy<'_>,
    counters: &mut DriverCounters,
    nm: &mut NetmapCounters,
    on_frame: &mut dyn FnMut(&[u8]),
) -> (usize, usize) {
    let Some((head, available)) = rx.ring.user_span() else {
        nm.ring_errors += 1;
        return (0, 0);
    };
    let take = usize::try_from(available).unwrap_or(usize::MAX).min(budget);
    let RxPolicy {
        filter,
        max_frame_len,
    } = policy;
    let mut host_tx = host_tx.filter(|_| !matches!(filter, Filter::RedirectAll));
    let mut delivered = 0;
    let mut s = head;
    for _ in 0..take {
        let index = s;
        s = rx.ring.next(s);
        let Ok(slot) = rx.ring.slot(index) else {
            continue;
        };
        if rx.skip_fragment(slot, counters, nm) {
            continue;
        }
        if let Some(host) = host_tx.as_deref_mut()
            && rx.ring.with_frame(index, |f| !filter.accepts(f)) == Ok(true)
        {
            match host.forward(&rx.ring, index) {
                Forward::Moved => nm.to_host += 1,
                Forward::Full | Forward::BadSlot => nm.host_dropped += 1,
            }
            continue;
        }
        let seen = rx.ring.with_frame(index, |frame| {
            if frame.len() > max_frame_len {
                return None;
            }
            on_frame(frame);
            Some(frame.len())
        });
        match seen {
            Ok(Some(len)) => {
                delivered += 1;
                counters.rx_frames += 1;
                counters.rx_bytes += len as u64;
            }
            Ok(None) => {
                counters.rx_dropped += 1;
                nm.oversize_dropped += 1;
            }
            Err(_) => {
                counters.rx_dropped += 1;
                nm.bad_rx_slots += 1;
            }
        }
    }
    if take > 0 {
        // One store releases the whole burst.
        rx.ring.set_head_cur(s);
    }
    (delivered, take)
}

/// Moves up to `budget` frames from the host RX ring onto NIC TX rings. Stops, leaving frames
/// in place, when every NIC TX ring is full. Returns `false` if it stopped for lack of room.
fn forward_from_host(
    host_rx: &mut RxRing,
    tx: &mut [TxRing],
    tx_current: &mut usize,
    budget: usize,
    counters: &mut DriverCounters,
    nm: &mut NetmapCounters,
) -> bool {
    let Some((head, available)) = host_rx.ring.user_span() else {
        nm.ring_errors += 1;
        return true;
    };
    let take = usize::try_from(available).unwrap_or(usize::MAX).min(budget);
    let mut had_room = true;
    let mut s = head;
    for _ in 0..take {
        let Ok(slot) = host_rx.ring.slot(s) else {
            break;
        };
        if host_rx.skip_fragment(slot, counters, nm) {
            s = host_rx.ring.next(s);
            continue;
        }
        let Some(r) = (0..tx.len())
            .map(|k| (*tx_current + k) % tx.len())
            .find(|&r| tx[r].room() > 0)
        else {
            had_room = false;
            break;
        };
        *tx_current = r;
        match tx[r].forward(&host_rx.ring, s) {
            Forward::Moved => nm.from_host += 1,
            Forward::Full | Forward::BadSlot => nm.host_dropped += 1,
        }
        s = host_rx.ring.next(s);
    }
    if s != head {
        host_rx.ring.set_head_cur(s);
    }
    had_room
}

impl<P: NetmapPort> FrameIo for Netmap<P> {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        if max == 0 {
            return Ok(0);
        }
        if !self.rx_pending() {
            self.counters.kicks += 1;
            self.port
                .rx_sync()
                .map_err(|e| DriverError::io("netmap NIOCRXSYNC", e))?;
        }
        let mut budget = max;
        let mut delivered = 0;
        let rings = self.rx.len();
        for k in 0..rings {
            if budget == 0 {
                break;
            }
            let r = (self.rx_start + k) % rings;
            let (d, used) = drain_nic_ring(
                &mut self.rx[r],
                budget,
                self.host_tx.as_mut(),
                RxPolicy {
                    filter: &self.filter,
                    max_frame_len: self.caps.max_frame_len,
                },
                &mut self.counters,
                &mut self.netmap,
                on_frame,
            );
            delivered += d;
            budget -= used.min(budget);
        }
        self.rx_start = (self.rx_start + 1) % rings.max(1);
        if let Some(host_rx) = self.host_rx.as_mut() {
            let had_room = forward_from_host(
                host_rx,
                &mut self.tx,
                &mut self.tx_current,
                max,
                &mut self.counters,
                &mut self.netmap,
            );
            self.kick_wanted |= !had_room;
        }
        Ok(delivered)
    }

    fn tx_room(&self) -> usize {
        self.tx.iter().map(|t| t.room() as usize).sum()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if len > self.caps.max_frame_len {
            self.counters.tx_dropped += 1;
            return false;
        }
        let rings = self.tx.len();
        for k in 0..rings {
            let r = (self.tx_current + k) % rings;
            if self.tx[r].stage(len, fill, &mut self.netmap) {
                self.tx_current = r;
                self.staged_frames += 1;
                self.staged_bytes += len as u64;
                return true;
            }
        }
        self.counters.tx_ring_full += 1;
        self.kick_wanted = true;
        false
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        let mut published = false;
        for t in self.tx.iter_mut().chain(self.host_tx.as_mut()) {
            published |= t.publish();
        }
        // A full ring must be synced even with nothing new to publish: only a sync reads the
        // kernel's new `tail`, and callers stop staging (so stop setting `kick_wanted`) once
        // `tx_room()` is 0. Skipping it would leave the ring full for good.
        if !published && !self.kick_wanted && self.tx_room() > 0 {
            return Ok(());
        }
        self.kick_wanted = false;
        self.counters.tx_frames += std::mem::take(&mut self.staged_frames);
        self.counters.tx_bytes += std::mem::take(&mut self.staged_bytes);
        self.counters.kicks += 1;
        self.port
            .tx_sync()
            .map_err(|e| DriverError::io("netmap NIOCTXSYNC", e))?;
        for t in self.tx.iter_mut().chain(self.host_tx.as_mut()) {
            if !t.check_after_sync() {
                self.netmap.ring_errors += 1;
            }
        }
        Ok(())
    }

    fn counters(&self) -> DriverCounters {
        self.counters
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        if self.busy_poll || self.rx_pending() {
            return Ok(());
        }
        self.counters.kicks += 1;
        self.port
            .poll(timeout)
            .map_err(|e| DriverError::io("netmap poll", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_and_host_rings_cannot_share_a_descriptor() {
        let mut config = NetmapConfig::new("eth1");
        assert_eq!(config.register_mode().unwrap(), RegisterMode::NicAndHost);
        config.queue = Some(2);
        let err = config.register_mode().unwrap_err().to_string();
        assert!(err.contains("--dedicated-nic"), "{err}");
        config.host_rings = false;
        assert_eq!(config.register_mode().unwrap(), RegisterMode::OneNic(2));
        config.queue = None;
        assert_eq!(config.register_mode().unwrap(), RegisterMode::AllNic);
    }

    #[test]
    fn a_filter_without_addresses_is_refused_with_host_rings() {
        let config = NetmapConfig {
            filter: Filter::Server(crate::ServerAddresses::default()),
            ..NetmapConfig::new("emu-a")
        };
        let without = NetmapConfig {
            host_rings: false,
            ..config.clone()
        };
        let err = EmulatedNetmap::pair_with(EmulatedConfig::default(), config, without.clone())
            .expect_err("an empty filter is refused");
        assert_eq!(err.kind(), crate::DriverErrorKind::InvalidConfig);
        assert!(err.to_string().contains("no server address"), "{err}");
        // Without host rings the filter is unused, and not checked.
        EmulatedNetmap::pair_with(EmulatedConfig::default(), without.clone(), without).unwrap();
    }

    #[test]
    fn emulated_pair_reports_netmap_capabilities() {
        let (a, _b) = EmulatedNetmap::pair(EmulatedConfig::default()).unwrap();
        let caps = a.capabilities();
        assert_eq!(caps.mtu, 1500);
        assert_eq!(caps.max_frame_len, 1514);
        assert!(caps.zero_copy);
        assert!(!caps.rx_checksum_verified && !caps.tx_checksum_offload);
        let (big, _) = EmulatedNetmap::pair(EmulatedConfig {
            mtu: 9000,
            ..EmulatedConfig::default()
        })
        .unwrap();
        assert_eq!(
            big.capabilities().max_frame_len,
            2048,
            "capped by nr_buf_size"
        );
    }

    #[test]
    fn one_nic_mode_binds_only_its_queue() {
        let config = EmulatedConfig {
            nic_rings: 4,
            num_slots: 8,
            ..EmulatedConfig::default()
        };
        let (port, _peer) = EmulatedNetmap::port_pair(config);
        let netmap = Netmap::with_port(
            port,
            NetmapConfig {
                queue: Some(2),
                host_rings: false,
                ..NetmapConfig::new("emu-a")
            },
        )
        .unwrap();
        assert_eq!((netmap.rx.len(), netmap.tx.len()), (1, 1));
        let layout = netmap.port().layout();
        assert_eq!(
            netmap.rx[0].ring.offset(),
            layout.ring_offsets[layout.rx_ring_index(2)]
        );
        let (port, _peer) = EmulatedNetmap::port_pair(EmulatedConfig::default());
        let err = Netmap::with_port(
            port,
            NetmapConfig {
                queue: Some(1),
                host_rings: false,
                ..NetmapConfig::new("emu-a")
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("1 queues"), "{err}");
    }
}
