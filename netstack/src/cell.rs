//! A cell: one connection's private smoltcp `Interface` and one-socket `SocketSet`.
//!
//! smoltcp scans every socket of a set per packet and per egress pass; a cell holds exactly one,
//! so both are O(1). The interface uses `Medium::Ip`: the front end owns layer 2, strips the
//! Ethernet header on the way in and writes it on the way out (to the MAC learned from the
//! flow's SYN). Two tiny `Device` adapters connect a cell to the outside:
//! - [`IngressDevice`] lends one borrowed IP packet as the only RX token; a reply smoltcp makes
//!   while processing it (challenge ACK, RST) goes to the front end's reply queue;
//! - [`EgressDevice`] writes each packet smoltcp emits straight into the `TxSink`.
//!
//! Invariants: the socket handle is the only one in the set; cells are built once, up front,
//! and reused (the socket is aborted and re-listened, keeping its buffers), and `generation`
//! changes on every reuse so a stale reference (ready list, dirty list) can never reach the next
//! connection.

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities};
use smoltcp::socket::tcp::{Handshake, RecoveryStats};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetProtocol, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address, TcpControl,
    TcpRepr, TcpSeqNumber,
};

use crate::flow::FlowKey;
use crate::reply_queue::{ETH_HEADER_LEN, EthHeader, ReplyQueue};
use crate::{Prefetch, StackConfig, StackCounters, TxSink};
use crate::{TcpSocket, TcpState};

/// Why a cell's egress loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EgressStop {
    /// smoltcp has nothing more to send before `poll_at` ([`Cell::smoltcp_poll_at`], as it
    /// stood when the loop stopped).
    Idle { poll_at: Option<Instant> },
    /// The sink had no room; the cell still has work.
    SinkFull,
    /// The per-cell frame budget ran out; the cell still has work.
    BudgetExhausted,
}

/// What a path MTU report did to a cell's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathMtuOutcome {
    /// The MSS is lower; what was in flight waits to be resent.
    Lowered,
    /// The quoted sequence number is not in flight: nothing changed.
    NotInFlight,
    /// The report would not lower the MSS: nothing changed.
    NotLower,
}

/// What a segment uses of a cell: its own fields (at most 128 bytes, tested) and the interface's
/// per-packet fields, which lead it (360 bytes; the neighbor cache, unused on `Medium::Ip`,
/// follows). A prefetch hint only costs time when it is wrong, so these are measured figures,
/// not guarantees (patch 22 in vendor/smoltcp/PATCHES.md; `sirocco-bench stack` shows the
/// effect at 100,000 connections).
const CELL_HOT_BYTES: usize = 512;

/// What a segment uses of a smoltcp TCP socket (patch 22 lays it out hot first): the fixed
/// fields (under 704 bytes), then the shared chunks (their head and first chunk), then the
/// loss-recovery state (its head and first scoreboard blocks), about 1,230 bytes in all; the
/// unused chunks between them cost four wasted lines, fewer than two separate hints would.
const SOCKET_HOT_BYTES: usize = 1280;

/// The most segments of new data one smoltcp egress pass builds back to back (patch 23): a
/// train settles the timers, loss recovery and the choice of what to send once, not once per
/// segment. 16 segments of 1,448 octets are about one 64 KiB TSO frame's worth, and stay well
/// within the TX ring; the congestion and peer windows usually end a train sooner.
const SEGMENT_TRAIN: u16 = 16;

/// Laid out in declaration order (`repr(C)`): the fields every segment uses first, then the
/// interface (whose own hot fields lead it, see vendor/smoltcp/PATCHES.md), then the
/// application state; [`Cell::prefetch`] hints the leading lines.
#[repr(C)]
pub(crate) struct Cell<A> {
    /// Bumped on every recycle.
    pub generation: u32,
    pub in_ready: bool,
    pub in_dirty: bool,
    handle: SocketHandle,
    /// Where the socket lives (its set's storage is allocated once, with room for it alone,
    /// and never moves): for [`Cell::prefetch_socket`], which must not read the set's storage
    /// to find it. Never dereferenced.
    socket_at: usize,
    /// The flow this cell serves; `None` while pooled.
    pub flow: Option<FlowKey>,
    /// When the last segment from the peer arrived.
    pub last_rx: Instant,
    /// Deadline of this cell's timer-wheel entry, if any.
    pub armed: Option<Instant>,
    /// The latest acknowledgment number the peer sent: once we are in TIME-WAIT, our SND.NXT.
    pub peer_ack: Option<TcpSeqNumber>,
    /// Just past the peer's FIN, once one arrived: in TIME-WAIT, our RCV.NXT.
    pub peer_fin_end: Option<TcpSeqNumber>,
    /// Ethernet header for everything the cell emits (dst = the peer MAC from the SYN).
    pub eth: EthHeader,
    sockets: SocketSet<'static>,
    iface: Interface,
    pub app: A,
    /// The socket's loss-recovery counters already added to the stack's (they count over the
    /// socket's whole life, across the connections the pooled cell serves).
    recovery_counted: RecoveryStats,
}

/// `len` zero bytes whose pages are in memory: written here, at start-up, instead of being
/// faulted in on the data path by the first segment that lands in them. (`vec![0; len]` alone
/// asks the allocator for zeroed memory, which it may hand out as fresh pages that the kernel
/// maps only at their first write.)
fn touched_zeroes(len: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; len];
    // `black_box`: the optimiser knows the allocation is zero and would drop the fill.
    std::hint::black_box(&mut buffer[..]).fill(0);
    buffer
}

impl<A: Default> Cell<A> {
    /// Builds a pooled cell: interface, socket with its buffers, no flow yet.
    pub fn new(
        config: &StackConfig,
        caps: &DeviceCapabilities,
        seed: u64,
        eth: EthHeader,
        now: Instant,
    ) -> Self {
        let mut iface_config = Config::new(HardwareAddress::Ip);
        iface_config.random_seed = seed;
        let mut iface = Interface::new(iface_config, &mut CapsDevice(caps.clone()), now);
        // The interface holds one address: the one of ours that the connection it serves
        // reached (set by `accept`), so the same pooled cell serves IPv4 and IPv6 flows.
        // With Medium::Ip smoltcp resolves no neighbours, but it still refuses to send to a
        // destination with no route (`InterfaceInner::route`). Peers outside our prefix arrive
        // through a gateway whose MAC the front end learned from the SYN, so a default route
        // per family makes every peer routable; the gateway addresses are never used on
        // Medium::Ip (they are documentation addresses, RFC 5737 and RFC 3849).
        // Cannot fail: a fresh interface has an empty route table with room for both.
        let routes = iface.routes_mut();
        let _ = routes.add_default_ipv4_route(Ipv4Address::new(192, 0, 2, 1));
        let _ = routes.add_default_ipv6_route(Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

        let mut socket = TcpSocket::new(
            smoltcp::socket::tcp::SocketBuffer::new(touched_zeroes(config.rx_buffer)),
            smoltcp::socket::tcp::SocketBuffer::new(touched_zeroes(config.tx_buffer)),
        );
        // A static server writes whole responses at once: Nagle would only hold back the tail.
        socket.set_nagle_enabled(false);
        // No delayed ACK: the application answers a request in the same loop iteration, so the
        // ACK rides on the response anyway; when it does not (partial request), an immediate
        // ACK costs one small frame but avoids the 10 ms Nagle/delayed-ACK stall with clients
        // that keep Nagle on, and saves a timer entry per request.
        socket.set_ack_delay(None);
        // Loss recovery as Linux does it (see `TcpTuning`), with Cubic, the workspace's
        // congestion-control feature.
        let tcp = &config.tcp;
        socket.set_rto_min(tcp.rto_min);
        socket.set_initial_window(Some(tcp.initial_window));
        socket.set_sack_enabled(tcp.sack);
        socket.set_rack_enabled(tcp.rack);
        socket.set_tlp_enabled(tcp.tail_loss_probe);
        socket.set_segment_train(SEGMENT_TRAIN);
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(socket);
        let socket_at = std::ptr::from_ref(sockets.get::<TcpSocket<'static>>(handle)).addr();
        Cell {
            iface,
            sockets,
            handle,
            socket_at,
            app: A::default(),
            generation: 0,
            flow: None,
            eth,
            last_rx: now,
            in_ready: false,
            in_dirty: false,
            armed: None,
            peer_ack: None,
            peer_fin_end: None,
            recovery_counted: RecoveryStats::default(),
        }
    }
}

impl<A> Cell<A> {
    pub fn socket(&mut self) -> &mut TcpSocket<'static> {
        self.sockets.get_mut::<TcpSocket<'static>>(self.handle)
    }

    /// The socket and the application state, borrowed together for [`crate::Conn`].
    pub fn socket_and_app(&mut self) -> (&mut TcpSocket<'static>, &mut A) {
        (
            self.sockets.get_mut::<TcpSocket<'static>>(self.handle),
            &mut self.app,
        )
    }

    pub fn state(&self) -> TcpState {
        self.sockets.get::<TcpSocket<'static>>(self.handle).state()
    }

    /// Hints the cell's first [`CELL_HOT_BYTES`]: the first step of bringing it into cache
    /// ahead of a segment (see `Stack::handle_burst`).
    pub fn prefetch(&self, prefetch: Prefetch) {
        crate::prefetch_value(self, CELL_HOT_BYTES, prefetch);
    }

    /// Hints the socket's first [`SOCKET_HOT_BYTES`] (found from the cell's first line, which
    /// [`Cell::prefetch`] brought in: finding it through the socket set would read the set's
    /// storage, one more miss), and the first lines of the application state, which lie past
    /// the cell's first lines.
    pub fn prefetch_socket(&self, prefetch: Prefetch) {
        prefetch(
            std::ptr::without_provenance(self.socket_at),
            SOCKET_HOT_BYTES,
        );
        crate::prefetch_value(&self.app, 128, prefetch);
    }

    /// Hints the first lines of the socket's free send space, where the next response head
    /// will be written, and of the application state. The send space is found by a send of
    /// nothing: smoltcp lends the free space and takes no octet (a socket that cannot send
    /// refuses, and nothing is hinted).
    pub fn prefetch_send_room(&mut self, prefetch: Prefetch) {
        let socket = self.sockets.get_mut::<TcpSocket<'static>>(self.handle);
        let _ = socket.send(|room: &mut [u8]| {
            prefetch(room.as_ptr(), room.len().min(256));
            (0, ())
        });
        crate::prefetch_value(&self.app, 512, prefetch);
    }

    /// Takes a pooled cell into service for a connection whose handshake the front end
    /// completed: the socket goes straight to ESTABLISHED with what the handshake agreed.
    /// `false` if the socket refused (a zero port; ruled out by config validation).
    pub fn accept(
        &mut self,
        handshake: &Handshake,
        flow: FlowKey,
        eth: EthHeader,
        now: Instant,
    ) -> bool {
        let local = handshake.local.addr;
        if !self.iface.has_ip_addr(local) {
            let prefix = match local {
                IpAddress::Ipv4(_) => 32,
                IpAddress::Ipv6(_) => 128,
            };
            self.iface.update_ip_addrs(|addrs| {
                addrs.clear();
                // Cannot fail: the list was just emptied.
                let _ = addrs.push(IpCidr::new(local, prefix));
            });
        }
        let socket = self.sockets.get_mut::<TcpSocket<'static>>(self.handle);
        socket.abort();
        // `reset` (inside `accept_handshake`) keeps the congestion controller: start it afresh.
        socket.set_congestion_control(socket.congestion_control());
        if socket
            .accept_handshake(self.iface.context(), handshake)
            .is_err()
        {
            return false;
        }
        self.flow = Some(flow);
        self.eth = eth;
        self.last_rx = now;
        self.peer_ack = None;
        self.peer_fin_end = None;
        true
    }

    /// The window scale the cell's socket offers (fixed by its receive buffer's size).
    pub fn local_window_scale(&self) -> u8 {
        self.sockets
            .get::<TcpSocket<'static>>(self.handle)
            .local_window_scale()
    }

    /// Challenge ACKs the socket sent (RFC 5961), over the cell's whole life.
    pub fn challenge_acks(&self) -> u64 {
        self.sockets
            .get::<TcpSocket<'static>>(self.handle)
            .challenge_acks()
    }

    /// Applies a path MTU report quoting `seq` (RFC 8201, RFC 1191): if `seq` is in flight
    /// (RFC 5927 §4.1), lowers the socket's MSS to what `mtu` allows, and what is in flight
    /// goes again in smaller segments at the next egress (smoltcp patch 19).
    pub fn lower_path_mtu(&mut self, seq: TcpSeqNumber, mtu: u16) -> PathMtuOutcome {
        let socket = self.sockets.get_mut::<TcpSocket<'static>>(self.handle);
        if !socket.is_in_flight(seq) {
            PathMtuOutcome::NotInFlight
        } else if socket.lower_path_mtu(self.iface.context(), usize::from(mtu)) {
            PathMtuOutcome::Lowered
        } else {
            PathMtuOutcome::NotLower
        }
    }

    /// Remembers the sequence numbers a TIME-WAIT tombstone needs from a segment the peer
    /// sent. smoltcp does not expose its own, and in TIME-WAIT they are exactly these: the
    /// peer has acknowledged our FIN, and we have acknowledged its FIN.
    pub fn note_peer(&mut self, repr: &TcpRepr<'_>) {
        if let Some(ack) = repr.ack_number {
            self.peer_ack = Some(ack);
        }
        if repr.control == TcpControl::Fin {
            self.peer_fin_end = Some(repr.seq_number + repr.segment_len());
        }
    }

    /// Forgets the connection without sending anything and bumps the generation.
    pub fn close(&mut self) {
        let socket = self.socket();
        socket.abort();
        // Clear the tuple so an aborted socket has no RST left to send.
        let endpoint = socket.listen_endpoint();
        if endpoint.port != 0 {
            let _ = socket.listen(endpoint);
        }
        self.flow = None;
        self.generation = self.generation.wrapping_add(1);
        self.in_ready = false;
        self.in_dirty = false;
        self.armed = None;
    }

    /// Feeds one IP packet. Returns how many replies were lost to a full reply queue.
    pub fn ingress(
        &mut self,
        now: Instant,
        packet: &[u8],
        replies: &mut ReplyQueue,
        caps: &DeviceCapabilities,
    ) -> u64 {
        let mut device = IngressDevice {
            packet: Some(packet),
            replies,
            eth: self.eth,
            caps,
            lost: 0,
        };
        self.iface
            .poll_ingress_single(now, &mut device, &mut self.sockets);
        device.lost
    }

    /// Runs one egress pass into the reply queue, for what must leave before the next
    /// `poll_egress` (the RST of a connection closed to free its cell). Returns how many frames
    /// were lost to a full ring.
    pub fn flush_to(
        &mut self,
        now: Instant,
        replies: &mut ReplyQueue,
        caps: &DeviceCapabilities,
    ) -> u64 {
        let mut device = IngressDevice {
            packet: None,
            replies,
            eth: self.eth,
            caps,
            lost: 0,
        };
        self.iface.poll_egress(now, &mut device, &mut self.sockets);
        device.lost
    }

    /// Runs egress passes until smoltcp is idle (a pass sent nothing, or its `poll_at` is not
    /// due), the sink is full or at least `budget` frames were sent (a pass may send a train
    /// of several).
    pub fn egress(
        &mut self,
        now: Instant,
        device: &mut EgressDevice<'_>,
        budget: usize,
    ) -> EgressStop {
        device.eth = self.eth;
        let start = device.sent + device.refused;
        loop {
            if !device.sink.has_room() {
                return EgressStop::SinkFull;
            }
            let before = device.sent + device.refused;
            // A pass sends one segment, or a train of up to `SEGMENT_TRAIN` of new data.
            self.iface.poll_egress(now, device, &mut self.sockets);
            let after = device.sent + device.refused;
            if after != before && after - start >= budget as u64 {
                return EgressStop::BudgetExhausted;
            }
            // smoltcp's `poll_at` mirrors the start of a socket's `dispatch`: a pass before it
            // is due sends nothing. So after a pass that sent, asking it (which the caller
            // needs anyway, for the cell's timer) replaces the pass that would find nothing
            // to send: a whole `dispatch` per cell and burst, the most common case being a
            // response sent in one pass.
            let poll_at = self.smoltcp_poll_at(now);
            if after == before {
                return EgressStop::Idle { poll_at };
            }
            if poll_at.is_none_or(|at| at > now) {
                #[cfg(any(test, debug_assertions))]
                self.check_idle(now, device);
                return EgressStop::Idle { poll_at };
            }
        }
    }

    /// Adds what loss recovery did since the last call to `counters`.
    pub fn count_recovery(&mut self, counters: &mut StackCounters) {
        let now = self
            .sockets
            .get::<TcpSocket<'static>>(self.handle)
            .recovery_stats();
        let seen = std::mem::replace(&mut self.recovery_counted, now);
        counters.tcp_retransmits += now.retransmitted_segments - seen.retransmitted_segments;
        counters.tcp_timeouts += now.timeouts - seen.timeouts;
        counters.tcp_fast_recoveries += now.fast_recoveries - seen.fast_recoveries;
        counters.tcp_loss_probes += now.tail_loss_probes - seen.tail_loss_probes;
        counters.tcp_spurious_recoveries += now.spurious_recoveries - seen.spurious_recoveries;
    }

    /// When smoltcp next wants an egress pass (retransmit, zero-window probe, TIME-WAIT...).
    pub fn smoltcp_poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets)
    }

    /// Debug builds and this crate's tests only: the pass [`Cell::egress`] skipped because
    /// `poll_at` was not due would indeed have sent nothing.
    #[cfg(any(test, debug_assertions))]
    fn check_idle(&mut self, now: Instant, device: &mut EgressDevice<'_>) {
        let before = device.sent + device.refused;
        self.iface.poll_egress(now, device, &mut self.sockets);
        assert_eq!(
            device.sent + device.refused,
            before,
            "smoltcp sent a segment before its poll_at said it was due"
        );
    }
}

/// Only answers `capabilities()`, for `Interface::new`.
struct CapsDevice(DeviceCapabilities);

impl Device for CapsDevice {
    type RxToken<'a> = PacketRx<'a>;
    type TxToken<'a> = ReplyTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(PacketRx<'_>, ReplyTx<'_>)> {
        None
    }
    fn transmit(&mut self, _: Instant) -> Option<ReplyTx<'_>> {
        None
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.0.clone()
    }
}

/// Lends one received IP packet to a cell.
pub(crate) struct IngressDevice<'d> {
    packet: Option<&'d [u8]>,
    replies: &'d mut ReplyQueue,
    eth: EthHeader,
    caps: &'d DeviceCapabilities,
    lost: u64,
}

pub(crate) struct PacketRx<'a> {
    packet: &'a [u8],
}

impl phy::RxToken for PacketRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.packet)
    }
}

/// Writes a reply made during ingress into the reply queue, or into scratch if it is full.
pub(crate) struct ReplyTx<'a> {
    replies: &'a mut ReplyQueue,
    eth: EthHeader,
    lost: &'a mut u64,
}

impl phy::TxToken for ReplyTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let eth = self.eth;
        if let Some(payload) = self
            .replies
            .reserve(ETH_HEADER_LEN + len)
            .and_then(|frame| eth.write(frame))
        {
            return f(payload);
        }
        *self.lost += 1;
        // smoltcp needs the packet built to return `R`; build it where it is thrown away.
        // Only replies to misbehaving peers get here, so the allocation is off the fast path.
        f(&mut vec![0; len])
    }
}

impl<'d> Device for IngressDevice<'d> {
    type RxToken<'a>
        = PacketRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = ReplyTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(PacketRx<'_>, ReplyTx<'_>)> {
        let packet = self.packet.take()?;
        Some((
            PacketRx { packet },
            ReplyTx {
                replies: self.replies,
                eth: self.eth,
                lost: &mut self.lost,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<ReplyTx<'_>> {
        Some(ReplyTx {
            replies: self.replies,
            eth: self.eth,
            lost: &mut self.lost,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

/// Writes what a cell emits into the `TxSink`, behind the cell's Ethernet header.
pub(crate) struct EgressDevice<'d> {
    pub sink: &'d mut dyn TxSink,
    pub eth: EthHeader,
    pub caps: &'d DeviceCapabilities,
    /// Frames the sink took.
    pub sent: u64,
    /// Frames built but refused by the sink despite `has_room`.
    pub refused: u64,
}

impl<'d> EgressDevice<'d> {
    pub fn new(sink: &'d mut dyn TxSink, caps: &'d DeviceCapabilities) -> Self {
        EgressDevice {
            sink,
            eth: EthHeader {
                dst: smoltcp::wire::EthernetAddress([0; 6]),
                src: smoltcp::wire::EthernetAddress([0; 6]),
                ethertype: EthernetProtocol::Ipv4,
            },
            caps,
            sent: 0,
            refused: 0,
        }
    }
}

pub(crate) struct SinkTx<'a, 'd> {
    device: &'a mut EgressDevice<'d>,
}

impl phy::TxToken for SinkTx<'_, '_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let eth = self.device.eth;
        let mut pending = Some(f);
        let mut out = None;
        let taken = self.device.sink.send(ETH_HEADER_LEN + len, &mut |frame| {
            if let Some(payload) = eth.write(frame).and_then(|p| p.get_mut(..len)) {
                out = pending.take().map(|f| f(payload));
            }
        });
        if let Some(out) = out {
            if taken {
                self.device.sent += 1;
            } else {
                self.device.refused += 1;
            }
            return out;
        }
        self.device.refused += 1;
        match pending {
            // The sink broke its contract (no room after `has_room`, or a short buffer): build
            // the packet where it is thrown away; TCP retransmits it.
            Some(f) => f(&mut vec![0; len]),
            // `pending` is only taken in the statement that sets `out`.
            None => unreachable!("fill consumed the packet builder without output"),
        }
    }
}

impl<'d> Device for EgressDevice<'d> {
    type RxToken<'a>
        = PacketRx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = SinkTx<'a, 'd>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(PacketRx<'_>, SinkTx<'_, 'd>)> {
        None
    }

    fn transmit(&mut self, _: Instant) -> Option<SinkTx<'_, 'd>> {
        if self.sink.has_room() {
            Some(SinkTx { device: self })
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn the_cells_own_fields_then_the_interface_lead_the_cell() {
        type C = Cell<[u8; 64]>;
        let iface = offset_of!(C, iface);
        for field in [
            offset_of!(C, generation),
            offset_of!(C, in_ready),
            offset_of!(C, handle),
            offset_of!(C, socket_at),
            offset_of!(C, flow),
            offset_of!(C, last_rx),
            offset_of!(C, armed),
            offset_of!(C, peer_ack),
            offset_of!(C, eth),
            offset_of!(C, sockets),
        ] {
            assert!(field < iface);
        }
        // The interface's per-packet fields (patch 22) end well inside the hinted span.
        assert!(iface <= 128);
        assert!(offset_of!(C, app) > iface && offset_of!(C, recovery_counted) > iface);
    }
}
