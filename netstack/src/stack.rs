//! [`Stack`]: the front end, the flow table, the cell pool and the deadlines, joined.
//!
//! Invariants:
//! - a cell index in the ready list or the dirty list always comes with the cell's generation,
//!   and is ignored if the cell was recycled since; the flow table and the timer wheel forget a
//!   cell when it is recycled;
//! - a cell is in the ready (dirty) list at most once, tracked by `in_ready` (`in_dirty`), so
//!   both lists are bounded by `max_connections` and were sized for it up front;
//! - every cell in service has a timer-wheel deadline or is in the dirty list, so its
//!   retransmissions and timeouts run with no input;
//! - nothing is allocated after `Stack::new`: every cell and its buffers, the flow table, the
//!   SYN cache and its wheel, the per-address counts, the tombstone ring, the reply queue, the
//!   lists and the wheel are sized up front;
//! - a half-open connection is in the SYN cache, never in a cell; a cell is taken only by a
//!   handshake that completed (its ACK matched a cache entry or a valid cookie).
//!
//! Work per call is bounded: `handle_frame` touches one flow and one cell; `serve_ready` lends each
//! ready cell once; `poll_egress` runs each cell dirty at entry once (at most
//! `CELL_EGRESS_BUDGET` frames each) and then due timers, and stops when the sink is full. The
//! caller bounds ingress per loop iteration by its receive batch (`rx_batch` in the server).

use std::collections::VecDeque;

use smoltcp::phy::{ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::Handshake;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetProtocol, IpAddress, IpEndpoint, Ipv6Address, TcpControl, TcpSeqNumber,
};

use crate::cell::{Cell, EgressDevice, EgressStop, PathMtuOutcome};
use crate::cookie::{CookieJar, SynOptions, Tuple};
use crate::flow::{FlowEntry, FlowKey, FlowTable};
use crate::frontend::{FrontEnd, Locals, MAX_IPV6, PathMtuReport, TcpSegment, Verdict, link_local};
use crate::reply_queue::{ETH_HEADER_LEN, EthHeader, ReplyQueue};
use crate::synack::{SynAckShape, SynAcks};
use crate::syncache::{Due, Pending, SynCache};
use crate::timers::TimerWheel;
use crate::tombstone::{Tombstone, Tombstones};
use crate::{ConfigError, Conn, ConnApp, Prefetch, StackConfig, StackCounters, TcpState, TxSink};

/// Frames one cell may emit per `poll_egress` turn before the others get theirs.
const CELL_EGRESS_BUDGET: usize = 64;
/// Replies the front end can hold between two `poll_egress` calls.
const STAGING_SLOTS: usize = 256;
/// How many frames ahead of the one being processed [`Stack::handle_burst`] prefetches a
/// frame's flow-table slot, then its cell, then its socket: the cell step needs the slot's
/// line, the socket step the cell index the slot gave, and a frame's processing takes longer
/// than a miss.
const SLOT_AHEAD: usize = 6;
/// And, before all that, the frame itself (its first [`FRAME_HINT_BYTES`]): the slot step
/// reads its headers, and the frame's processing its payload.
const FRAME_AHEAD: usize = 8;
const FRAME_HINT_BYTES: usize = 256;
const CELL_AHEAD: usize = 4;
const SOCKET_AHEAD: usize = 2;
/// How many ready connections ahead of the one being served [`Stack::serve_ready`] prefetches
/// where its response head will be written (and its application state): with many
/// connections those are lines no frame has touched, and the head's stores would miss.
const SERVE_AHEAD: usize = 2;
/// Connections below which neither look-ahead runs. With few connections their state stays
/// in cache from one request to the next, and the look-ahead is pure overhead: it parses each
/// frame's headers and probes the flow table a second time, and hints lines already there
/// (5.6% of the server's instructions at 10 connections in `sirocco-bench stack`, keep-alive
/// 512 B). In the same bench's wall-clock, alternated rounds, it clearly pays at 1,000
/// connections and more, and is a wash around 250 to 500.
const LOOKAHEAD_MIN_CONNECTIONS: usize = 256;
/// A ring of the look-ahead's findings, by frame index: larger than `SLOT_AHEAD`.
const AHEAD_RING: usize = 8;
/// Smallest socket buffer accepted: a few segments.
const MIN_BUFFER: usize = 1024;
/// smoltcp refuses receive windows over 1 GiB (RFC 7323 §2.3 caps the scale at 14).
const MAX_BUFFER: usize = 1 << 30;
/// If smoltcp asks to be polled "now" right after an idle egress pass, poll again this much
/// later instead of spinning.
const MIN_REPOLL: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
struct CellRef {
    index: u32,
    generation: u32,
}

/// A sans-IO TCP/IP stack for one address and one listening port. See the crate docs for the
/// call order.
pub struct Stack<A: ConnApp> {
    config: StackConfig,
    counters: StackCounters,
    front: FrontEnd,
    caps: DeviceCapabilities,
    replies: ReplyQueue,
    flows: FlowTable,
    cells: Vec<Cell<A>>,
    free: Vec<u32>,
    ready: Vec<CellRef>,
    dirty: VecDeque<CellRef>,
    timers: TimerWheel,
    tombstones: Tombstones,
    syncache: SynCache,
    cookies: CookieJar,
    /// What every SYN-ACK offers (the cells all have the same receive buffer, so the same
    /// window scale), and the SYN-ACKs prebuilt from it.
    synack_shape: SynAckShape,
    synacks: SynAcks,
    /// Cells per peer address, kept only with a `max_connections_per_ip`.
    per_ip: Option<ahash::HashMap<IpAddress, u32>>,
    /// Challenge ACKs that may still go this second, and when the allowance is renewed.
    challenge_allowance: u32,
    challenge_renewal: Instant,
    /// Cells whose application is idle, oldest first: a doubly linked list through the cells.
    idle: IdleList,
    /// The latest `now` any entry point was given.
    now: Instant,
    /// Stopping: new connections are refused ([`Stack::begin_drain`]).
    draining: bool,
    /// The cache prefetch hint of [`Stack::handle_burst`]'s look-ahead; none, no look-ahead.
    prefetch: Option<Prefetch>,
}

/// An intrusive doubly linked list of cell indexes, in the order they joined: O(1) to add at
/// the back, to unlink anywhere and to take the front. `NIL` ends it. A cell's links and its
/// membership share one entry (one cache line to miss per cell, not three: at 100,000
/// connections every request unlinks its cell and links it again).
struct IdleList {
    links: Vec<Link>,
    head: u32,
    tail: u32,
    /// Members, for [`Stack::idle_connections`].
    len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    member: bool,
}

const NIL: u32 = u32::MAX;

impl IdleList {
    fn new(cells: usize) -> Self {
        let out = Link {
            prev: NIL,
            next: NIL,
            member: false,
        };
        IdleList {
            links: vec![out; cells],
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn push_back(&mut self, i: u32) {
        let tail = self.tail;
        let Some(link) = self.links.get_mut(i as usize) else {
            return;
        };
        if link.member {
            return;
        }
        *link = Link {
            prev: tail,
            next: NIL,
            member: true,
        };
        self.len += 1;
        match tail {
            NIL => self.head = i,
            t => self.links[t as usize].next = i,
        }
        self.tail = i;
    }

    fn remove(&mut self, i: u32) {
        let Some(link) = self.links.get_mut(i as usize).filter(|link| link.member) else {
            return;
        };
        let (p, n) = (link.prev, link.next);
        link.member = false;
        match p {
            NIL => self.head = n,
            p => self.links[p as usize].next = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.links[n as usize].prev = p,
        }
        self.len -= 1;
    }

    fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
}

fn validate(config: &StackConfig) -> Result<(), ConfigError> {
    if config.max_connections == 0 {
        return Err(ConfigError::NoConnections);
    }
    if config.max_connections > 1 << 31 {
        return Err(ConfigError::TooManyConnections(config.max_connections));
    }
    if config.time_wait_slots > 1 << 31 {
        return Err(ConfigError::TooManyTombstones(config.time_wait_slots));
    }
    if !(576..=9000).contains(&config.mtu) {
        return Err(ConfigError::Mtu(config.mtu));
    }
    for (which, size) in [("rx", config.rx_buffer), ("tx", config.tx_buffer)] {
        if size < MIN_BUFFER {
            return Err(ConfigError::Buffer {
                which,
                size,
                min: MIN_BUFFER,
            });
        }
        if size > MAX_BUFFER {
            return Err(ConfigError::BufferTooLarge {
                which,
                size,
                max: MAX_BUFFER,
            });
        }
    }
    if config.port == 0 {
        return Err(ConfigError::Port);
    }
    if config.ipv4.is_none() && config.ipv6.is_empty() {
        return Err(ConfigError::NoAddress);
    }
    if let Some(cidr) = config.ipv4 {
        let ip = cidr.address();
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(ConfigError::Ipv4NotUnicast(ip));
        }
    }
    if config.ipv6.len() > MAX_IPV6 {
        return Err(ConfigError::TooManyIpv6 {
            count: config.ipv6.len(),
            max: MAX_IPV6,
        });
    }
    for cidr in &config.ipv6 {
        // The link-local address is derived from the MAC; a configured one must be global
        // or unique local (RFC 4291 §2.4): not unspecified, loopback, multicast or fe80::/10.
        let ip = cidr.address();
        if ip.is_unspecified()
            || ip.is_loopback()
            || ip.is_multicast()
            || ip.is_unicast_link_local()
            || ip.to_ipv4_mapped().is_some()
        {
            return Err(ConfigError::Ipv6NotUnicast(ip));
        }
    }
    if !config.mac.is_unicast() {
        return Err(ConfigError::MacNotUnicast(config.mac));
    }
    let tcp = &config.tcp;
    if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&tcp.rto_min) {
        return Err(ConfigError::RtoMin(tcp.rto_min));
    }
    if !(1..=1000).contains(&tcp.initial_window) {
        return Err(ConfigError::InitialWindow(tcp.initial_window));
    }
    if config.syn_cache_size > 1 << 31 {
        return Err(ConfigError::SynCacheTooLarge(config.syn_cache_size));
    }
    if config.max_connections_per_ip == Some(0) {
        return Err(ConfigError::NoConnectionsPerIp);
    }
    Ok(())
}

impl<A: ConnApp> Stack<A> {
    /// Builds the whole pool: `max_connections` cells with their socket buffers, the flow table
    /// and the tombstone ring. `seeds` is called four times to key the flow-table hasher, then
    /// once per cell (cells are pooled and reused, so not per connection). The server passes OS
    /// randomness; tests pass a seeded PRNG so runs are deterministic.
    pub fn new(
        config: StackConfig,
        mut seeds: Box<dyn FnMut() -> u64>,
    ) -> Result<Self, ConfigError> {
        validate(&config)?;
        // The driver's offload covers TCP alone: IPv4 header, ICMP and UDP checksums are ours.
        let mut tx_caps = ChecksumCapabilities::default();
        if config.tx_checksum_offload {
            tx_caps.tcp = smoltcp::phy::Checksum::Rx;
        }
        // Cells never verify: the front end already did (or the driver did).
        let mut cell_checksums = tx_caps.clone();
        cell_checksums.ipv4 = smoltcp::phy::Checksum::Tx;
        cell_checksums.tcp = tx_only(config.tx_checksum_offload);
        cell_checksums.icmpv4 = smoltcp::phy::Checksum::Tx;
        cell_checksums.icmpv6 = smoltcp::phy::Checksum::Tx;
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = config.mtu;
        caps.checksum = cell_checksums;
        let ipv6: Vec<Ipv6Address> = config
            .ipv6
            .iter()
            .map(|cidr| cidr.address())
            .chain((!config.ipv6.is_empty()).then(|| link_local(config.mac)))
            .collect();
        let front = FrontEnd {
            mac: config.mac,
            locals: Locals::new(config.ipv4.map(|cidr| cidr.address()), &ipv6),
            subnet: config.ipv4,
            verify_rx: !config.rx_checksum_verified,
            tx_caps,
            mtu: config.mtu,
        };
        let flows = FlowTable::new(
            config.max_connections + config.time_wait_slots + config.syn_cache_size,
            [seeds(), seeds(), seeds(), seeds()],
        );
        let cookies = CookieJar::new([seeds(), seeds()]);
        let placeholder = EthHeader {
            dst: config.mac,
            src: config.mac,
            ethertype: EthernetProtocol::Ipv4,
        };
        let max = config.max_connections;
        let cells: Vec<Cell<A>> = (0..max)
            .map(|_| Cell::new(&config, &caps, seeds(), placeholder, Instant::ZERO))
            .collect();
        let synack_shape = SynAckShape {
            port: config.port,
            window: u16::try_from(config.rx_buffer).unwrap_or(u16::MAX),
            wscale: cells.first().map_or(0, |c| c.local_window_scale()),
            sack: config.tcp.sack,
        };
        let synacks = SynAcks::new(&front, synack_shape);
        let per_ip = config.max_connections_per_ip.map(|_| {
            ahash::HashMap::with_capacity_and_hasher(
                max.saturating_mul(2),
                ahash::RandomState::with_seeds(seeds(), seeds(), seeds(), seeds()),
            )
        });
        // Reversed, so the pool hands out cell 0 first and reuses the most recently freed
        // (warmest) cell next.
        let free = (0..max as u32).rev().collect();
        let mut stack = Stack {
            replies: ReplyQueue::new(STAGING_SLOTS, ETH_HEADER_LEN + config.mtu),
            front,
            caps,
            flows,
            cells,
            free,
            ready: Vec::with_capacity(max),
            dirty: VecDeque::with_capacity(max),
            timers: TimerWheel::new(max, Instant::ZERO),
            tombstones: Tombstones::new(config.time_wait_slots),
            syncache: SynCache::new(config.syn_cache_size, Instant::ZERO),
            cookies,
            synack_shape,
            synacks,
            per_ip,
            challenge_allowance: config.challenge_ack_limit,
            challenge_renewal: Instant::ZERO,
            idle: IdleList::new(max),
            counters: StackCounters::default(),
            now: Instant::ZERO,
            draining: false,
            prefetch: None,
            config,
        };
        // RFC 4861 §7.2.6: announce every IPv6 address once; the first `poll_egress` sends
        // the advertisements.
        stack
            .front
            .stage_unsolicited_adverts(&mut stack.counters, &mut stack.replies);
        Ok(stack)
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    pub fn counters(&self) -> &StackCounters {
        &self.counters
    }

    /// Cells in use: connections, half-open ones included.
    pub fn connections(&self) -> usize {
        self.cells.len() - self.free.len()
    }

    /// Connections waiting for their next request with everything they sent acknowledged (as
    /// of the last [`Stack::serve_ready`]): those a new connection may take the cell of.
    pub fn idle_connections(&self) -> usize {
        self.idle.len
    }

    /// Flows in TIME-WAIT: the tombstones in the ring. One that ended early (taken over by a
    /// new SYN, or closed by an RST) is counted until its turn to expire comes.
    pub fn time_wait_connections(&self) -> usize {
        self.tombstones.len()
    }

    /// Starts a graceful stop, as a server closing its listening socket: from now on every
    /// SYN, and every handshake that completes, gets an RST (`syn_refused_draining`), while
    /// open connections carry on. Every open connection is handed to the application at the
    /// next [`Stack::serve_ready`], so it can close the ones that are idle.
    pub fn begin_drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        for (index, cell) in self.cells.iter_mut().enumerate() {
            if cell.flow.is_some() && !cell.in_ready {
                cell.in_ready = true;
                self.ready.push(CellRef {
                    index: index as u32,
                    generation: cell.generation,
                });
            }
        }
    }

    /// Whether [`Stack::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Handles a burst of received frames, in order, as [`Stack::handle_frame`] on each, with
    /// a look-ahead. With many connections, every frame's flow-table slot, cell and socket is
    /// a cache miss (and a TLB miss) of its own, and one frame after another they add up. So
    /// while processing frame `i`, the stack prefetches ([`Stack::set_prefetch`]) the first
    /// lines of frame `i + FRAME_AHEAD` (written by the NIC, or the simulated wire, long
    /// before), the slot of frame `i + SLOT_AHEAD` (found from a quick look at its headers,
    /// `FrontEnd::flow_hint`), the cell of frame `i + CELL_AHEAD` (its slot is in cache by
    /// then) and the socket and application state of frame `i + SOCKET_AHEAD`. The look-ahead only reads and hints: a
    /// frame that changes the table (a SYN, an RST) at worst makes a later frame's hint
    /// useless, never wrong, as each frame is looked up again when its turn comes. Bursts of
    /// one or two frames have nothing to overlap and go straight through, and so does every
    /// burst while fewer than 256 connections are open (`LOOKAHEAD_MIN_CONNECTIONS`).
    pub fn handle_burst(&mut self, now: Instant, frames: &[&[u8]]) {
        let Some(prefetch) = self.lookahead().filter(|_| frames.len() > 2) else {
            for frame in frames {
                self.handle_frame(now, frame);
            }
            return;
        };
        let mut keys = [None; AHEAD_RING];
        let mut cells = [u32::MAX; AHEAD_RING];
        for frame in frames.iter().take(FRAME_AHEAD) {
            prefetch(frame.as_ptr(), frame.len().min(FRAME_HINT_BYTES));
        }
        for i in 0..SLOT_AHEAD {
            self.ahead_slot(prefetch, frames, i, &mut keys);
        }
        for i in 0..CELL_AHEAD {
            self.ahead_cell(prefetch, i, &keys, &mut cells);
        }
        for i in 0..SOCKET_AHEAD {
            self.ahead_socket(prefetch, i, &cells);
        }
        for (i, frame) in frames.iter().enumerate() {
            if let Some(ahead) = frames.get(i + FRAME_AHEAD) {
                prefetch(ahead.as_ptr(), ahead.len().min(FRAME_HINT_BYTES));
            }
            self.ahead_slot(prefetch, frames, i + SLOT_AHEAD, &mut keys);
            self.ahead_cell(prefetch, i + CELL_AHEAD, &keys, &mut cells);
            self.ahead_socket(prefetch, i + SOCKET_AHEAD, &cells);
            self.handle_frame(now, frame);
        }
    }

    fn ahead_slot(
        &self,
        prefetch: Prefetch,
        frames: &[&[u8]],
        i: usize,
        keys: &mut [Option<(FlowKey, u64)>],
    ) {
        let key = frames.get(i).and_then(|frame| self.front.flow_hint(frame));
        keys[i % AHEAD_RING] = key.map(|key| {
            let hash = self.flows.hash(&key);
            self.flows.prefetch(hash, prefetch);
            (key, hash)
        });
    }

    fn ahead_cell(
        &self,
        prefetch: Prefetch,
        i: usize,
        keys: &[Option<(FlowKey, u64)>],
        cells: &mut [u32],
    ) {
        let slot = i % AHEAD_RING;
        cells[slot] = u32::MAX;
        if let Some((key, hash)) = &keys[slot]
            && let Some(FlowEntry::Cell(index)) = self.flows.get_hashed(key, *hash)
            && let Some(cell) = self.cells.get(index as usize)
        {
            cell.prefetch(prefetch);
            cells[slot] = index;
        }
    }

    fn ahead_socket(&self, prefetch: Prefetch, i: usize, cells: &[u32]) {
        let index = cells[i % AHEAD_RING] as usize;
        if let Some(cell) = self.cells.get(index) {
            cell.prefetch_socket(prefetch);
        }
    }

    /// The prefetch hint, if a look-ahead is worth running now (see
    /// [`LOOKAHEAD_MIN_CONNECTIONS`]).
    fn lookahead(&self) -> Option<Prefetch> {
        self.prefetch
            .filter(|_| self.connections() >= LOOKAHEAD_MIN_CONNECTIONS)
    }

    /// Sets the cache prefetch hint [`Stack::handle_burst`] uses (by default none, and then
    /// no look-ahead). The server passes the driver crate's, the one place that may use the
    /// CPU's prefetch instruction.
    pub fn set_prefetch(&mut self, prefetch: Prefetch) {
        self.prefetch = Some(prefetch);
    }

    /// Handles one received Ethernet frame. Never panics, whatever the bytes.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.now = now;
        self.counters.rx_frames += 1;
        match self
            .front
            .classify(frame, &mut self.counters, &mut self.replies)
        {
            Verdict::Done => {}
            Verdict::Tcp(seg) => self.handle_tcp(now, &seg),
            Verdict::PathMtu(report) => self.handle_path_mtu(&report),
        }
    }

    /// A path MTU report from the front end: only a connection a cell holds, whose quoted
    /// sequence number is in flight (RFC 5927 §4.1), lowers its MSS. The cell is then run at
    /// the next egress, which resends what was in flight in smaller segments.
    fn handle_path_mtu(&mut self, report: &PathMtuReport) {
        let key = self
            .front
            .locals
            .index_of(report.local_ip)
            .filter(|_| report.local_port == self.config.port)
            .map(|local| FlowKey {
                peer_ip: report.peer_ip,
                peer_port: report.peer_port,
                local,
            });
        let Some(FlowEntry::Cell(index)) = key.and_then(|key| self.flows.get(&key)) else {
            self.counters.drop_pmtu_no_flow += 1;
            return;
        };
        let Some(cell) = self.cells.get_mut(index as usize) else {
            self.counters.drop_pmtu_no_flow += 1;
            return;
        };
        match cell.lower_path_mtu(report.seq, report.mtu) {
            PathMtuOutcome::Lowered => {
                self.counters.pmtu_lowered += 1;
                let r = CellRef {
                    index,
                    generation: cell.generation,
                };
                mark_dirty(&mut self.dirty, cell, r);
            }
            PathMtuOutcome::NotInFlight => self.counters.drop_pmtu_not_in_flight += 1,
            PathMtuOutcome::NotLower => self.counters.drop_pmtu_not_lower += 1,
        }
    }

    fn handle_tcp(&mut self, now: Instant, seg: &TcpSegment<'_>) {
        if seg.repr.dst_port != self.config.port {
            self.counters.drop_tcp_port_closed += 1;
            self.front
                .stage_rst(seg, &mut self.counters, &mut self.replies);
            return;
        }
        let key = FlowKey {
            peer_ip: seg.peer_ip,
            peer_port: seg.repr.src_port,
            local: seg.local,
        };
        let mut entry = self.flows.get(&key);
        if let Some(FlowEntry::Tombstone(slot)) = entry {
            if !self.handle_time_wait(now, key, slot, seg) {
                return;
            }
            entry = None;
        }
        let opened = match entry {
            Some(FlowEntry::Cell(index)) => Some(index),
            Some(FlowEntry::Pending(slot)) => self.handle_pending(now, key, slot, seg),
            _ => self.handle_unknown(now, key, seg),
        };
        if let Some(index) = opened {
            self.feed_cell(now, index, seg);
        }
    }

    /// Hands a segment to the cell that owns its flow.
    fn feed_cell(&mut self, now: Instant, index: u32, seg: &TcpSegment<'_>) {
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        cell.last_rx = now;
        cell.note_peer(&seg.repr);
        let challenges = cell.challenge_acks();
        let staged = self.replies.len();
        self.counters.tx_staging_full +=
            cell.ingress(now, seg.ip_packet, &mut self.replies, &self.caps);
        if cell.challenge_acks() != challenges {
            // RFC 5961 §7: challenge ACKs are limited host-wide too (Linux's
            // `tcp_challenge_ack_limit`), so a flood of blind guesses cannot make us flood.
            if now >= self.challenge_renewal {
                self.challenge_allowance = self.config.challenge_ack_limit;
                self.challenge_renewal = now + Duration::from_secs(1);
            }
            if self.challenge_allowance > 0 {
                self.challenge_allowance -= 1;
                self.counters.challenge_acks += 1;
            } else {
                if self.replies.len() > staged {
                    self.replies.unstage_last();
                }
                self.counters.challenge_acks_limited += 1;
            }
        }
        let r = CellRef {
            index,
            generation: cell.generation,
        };
        if !cell.in_ready {
            cell.in_ready = true;
            self.ready.push(r);
        }
        mark_dirty(&mut self.dirty, cell, r);
    }

    /// A segment for a flow nobody holds. A SYN is answered from the SYN cache; an ACK may
    /// complete a handshake through its cookie. Returns the cell of a connection it opened.
    fn handle_unknown(&mut self, now: Instant, key: FlowKey, seg: &TcpSegment<'_>) -> Option<u32> {
        let repr = &seg.repr;
        match (repr.control, repr.ack_number) {
            (TcpControl::Syn, None) => {
                self.answer_syn(now, key, seg);
                None
            }
            // An RST is never answered; a SYN-ACK to a listener gets an RST.
            (TcpControl::Rst, _) | (TcpControl::Syn, Some(_)) => {
                self.counters.drop_tcp_no_flow += 1;
                self.front
                    .stage_rst(seg, &mut self.counters, &mut self.replies);
                None
            }
            // The final ACK of a handshake the SYN cache does not hold (it was full, or the
            // entry expired): its cookie says whether we sent the SYN-ACK, and with what.
            (_, Some(ack)) => {
                let peer_isn = repr.seq_number - 1;
                let isn = ack - 1;
                match self.cookies.check(now, &self.tuple(key), peer_isn, isn) {
                    Ok(options) => {
                        self.counters.syncookies_valid += 1;
                        self.open_connection(now, key, seg, isn, peer_isn, options, None)
                    }
                    Err(_) => {
                        self.counters.syncookies_invalid += 1;
                        self.counters.drop_tcp_no_flow += 1;
                        self.front
                            .stage_rst(seg, &mut self.counters, &mut self.replies);
                        None
                    }
                }
            }
            // Neither SYN, ACK nor RST: dropped without an answer (RFC 9293 §3.10.7.2, LISTEN:
            // "any other control or text-bearing segment ... drop the segment"), as Linux does.
            (_, None) => {
                self.counters.drop_tcp_no_ack += 1;
                None
            }
        }
    }

    /// A segment for a handshake in the SYN cache. Returns the cell of the connection it
    /// completed.
    fn handle_pending(
        &mut self,
        now: Instant,
        key: FlowKey,
        slot: u32,
        seg: &TcpSegment<'_>,
    ) -> Option<u32> {
        let Some(pending) = self.syncache.get(slot).copied() else {
            // The flow table never names a free slot; if it did, forget it.
            self.flows.remove(&key);
            return self.handle_unknown(now, key, seg);
        };
        let repr = &seg.repr;
        match (repr.control, repr.ack_number) {
            // The peer's SYN again: our SYN-ACK was lost, or is slow. Send it again.
            (TcpControl::Syn, None) if repr.seq_number == pending.peer_isn => {
                self.syncache.resent(slot, now);
                if let Some(entry) = self.syncache.get(slot).copied() {
                    self.stage_synack(&entry);
                }
                None
            }
            // A SYN with another ISN: the peer started over. So do we.
            (TcpControl::Syn, None) => {
                self.forget_pending(slot, key);
                self.answer_syn(now, key, seg);
                None
            }
            // An RST ends the handshake only if it is exactly in sequence (RFC 5961 §3.2).
            (TcpControl::Rst, _) if repr.seq_number == pending.peer_isn + 1 => {
                self.forget_pending(slot, key);
                self.counters.handshake_resets += 1;
                None
            }
            (TcpControl::Rst, _) => {
                self.counters.drop_tcp_handshake += 1;
                None
            }
            // The final ACK (perhaps with data, or a FIN): the connection opens. Its RTT is a
            // sample unless the SYN-ACK went more than once (RFC 6298 §3, Karn).
            (control, Some(ack)) if ack == pending.isn + 1 && control != TcpControl::Syn => {
                self.forget_pending(slot, key);
                let rtt = (pending.synacks == 1).then(|| now - pending.sent);
                self.open_connection(
                    now,
                    key,
                    seg,
                    pending.isn,
                    pending.peer_isn,
                    pending.options,
                    rtt,
                )
            }
            // An unacceptable ACK in SYN-RECEIVED gets an RST (RFC 9293 §3.10.7.4); the
            // handshake stays, for the real peer's ACK.
            (_, Some(_)) => {
                self.counters.drop_tcp_handshake += 1;
                self.front
                    .stage_rst(seg, &mut self.counters, &mut self.replies);
                None
            }
            (_, None) => {
                self.counters.drop_tcp_handshake += 1;
                None
            }
        }
    }

    fn tuple(&self, key: FlowKey) -> Tuple {
        Tuple {
            local_ip: self.front.locals.get(key.local),
            local_port: self.config.port,
            peer_ip: key.peer_ip,
            peer_port: key.peer_port,
        }
    }

    /// Answers a SYN with a SYN-ACK whose ISN is a cookie, remembering the handshake in the
    /// SYN cache if it has room.
    fn answer_syn(&mut self, now: Instant, key: FlowKey, seg: &TcpSegment<'_>) {
        if self.draining {
            self.refuse_draining(seg);
            return;
        }
        let repr = &seg.repr;
        let options = SynOptions {
            // RFC 9293 §3.7.1: without the option, 536.
            mss: repr.max_seg_size.unwrap_or(536),
            wscale: repr.window_scale.map(|w| w.min(14)),
            sack: repr.sack_permitted && self.config.tcp.sack,
        };
        let isn = self
            .cookies
            .make(now, &self.tuple(key), repr.seq_number, options);
        let pending = Pending {
            key,
            peer_mac: seg.peer_mac,
            peer_isn: repr.seq_number,
            isn,
            options,
            synacks: 1,
            created: now,
            sent: now,
        };
        self.counters.syn_received += 1;
        match self.syncache.insert(pending) {
            Some(slot) => {
                self.flows.insert(key, FlowEntry::Pending(slot));
                self.counters.syn_cache_entries = self.syncache.len() as u64;
            }
            None => {
                self.counters.syn_cache_overflow += 1;
                self.counters.syncookies_sent += 1;
            }
        }
        self.stage_synack(&pending);
    }

    fn stage_synack(&mut self, pending: &Pending) {
        let local = self.front.locals.get(pending.key.local);
        if !self
            .synacks
            .stage(pending, local, &self.synack_shape, &mut self.replies)
        {
            self.counters.tx_staging_full += 1;
        }
    }

    /// A new connection while stopping: RST, as a closed port answers.
    fn refuse_draining(&mut self, seg: &TcpSegment<'_>) {
        self.counters.syn_refused_draining += 1;
        self.front
            .stage_rst(seg, &mut self.counters, &mut self.replies);
    }

    /// Forgets the handshake in `slot` (if the cache still holds it) and its flow.
    fn forget_pending(&mut self, slot: u32, key: FlowKey) {
        self.syncache.remove(slot);
        self.flows.remove_if(&key, FlowEntry::Pending(slot));
        self.counters.syn_cache_entries = self.syncache.len() as u64;
    }

    /// Gives a completed handshake a cell, if the per-address limit allows and a cell is free
    /// (or an idle keep-alive connection can give up its own). Otherwise the peer gets an RST.
    #[allow(clippy::too_many_arguments)]
    fn open_connection(
        &mut self,
        now: Instant,
        key: FlowKey,
        seg: &TcpSegment<'_>,
        isn: TcpSeqNumber,
        peer_isn: TcpSeqNumber,
        options: SynOptions,
        rtt: Option<Duration>,
    ) -> Option<u32> {
        if self.draining {
            self.refuse_draining(seg);
            return None;
        }
        if let (Some(limit), Some(per_ip)) = (self.config.max_connections_per_ip, &self.per_ip)
            && per_ip.get(&key.peer_ip).copied().unwrap_or(0) >= limit
        {
            self.counters.conn_limit_per_ip += 1;
            self.front
                .stage_rst(seg, &mut self.counters, &mut self.replies);
            return None;
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None => match self.evict_idle(now) {
                Some(index) => index,
                None => {
                    self.counters.syn_refused_full += 1;
                    self.front
                        .stage_rst(seg, &mut self.counters, &mut self.replies);
                    return None;
                }
            },
        };
        let handshake = Handshake {
            local: IpEndpoint::new(self.front.locals.get(key.local), self.config.port),
            remote: IpEndpoint::new(key.peer_ip, key.peer_port),
            local_isn: isn,
            remote_isn: peer_isn,
            remote_mss: Some(options.mss),
            remote_win_scale: options.wscale,
            remote_sack: options.sack,
            rtt,
        };
        let eth = self.eth_to(seg.peer_mac, key.peer_ip);
        let accepted = self
            .cells
            .get_mut(index as usize)
            .is_some_and(|cell| cell.accept(&handshake, key, eth, now));
        if !accepted {
            self.free.push(index);
            return None;
        }
        self.flows.insert(key, FlowEntry::Cell(index));
        if let Some(per_ip) = &mut self.per_ip {
            *per_ip.entry(key.peer_ip).or_insert(0) += 1;
        }
        self.counters.syn_accepted += 1;
        Some(index)
    }

    /// Closes the connection that has been idle longest between keep-alive requests (with an
    /// RST, staged now) and frees its cell, as nginx closes idle keep-alive connections when
    /// `worker_connections` run out. `None` when no connection is idle.
    fn evict_idle(&mut self, now: Instant) -> Option<u32> {
        let index = self.idle.front()?;
        let cell = self.cells.get_mut(index as usize)?;
        cell.socket().abort();
        self.counters.tx_staging_full += cell.flush_to(now, &mut self.replies, &self.caps);
        self.counters.rst_sent += 1;
        self.counters.idle_evicted += 1;
        self.recycle(index);
        self.free.pop()
    }

    /// A segment for a flow in TIME-WAIT (RFC 9293 §3.10.7.4). Returns `true` when it is a new
    /// SYN that takes the flow over: the tombstone is gone and the caller opens a connection.
    fn handle_time_wait(
        &mut self,
        now: Instant,
        key: FlowKey,
        slot: u32,
        seg: &TcpSegment<'_>,
    ) -> bool {
        let Some(stone) = self.tombstones.get(slot).copied() else {
            // The flow table never names a dead slot; if it did, forget it and go on as if
            // the flow were unknown.
            self.flows.remove(&key);
            return true;
        };
        let repr = &seg.repr;
        let end = |stones: &mut Tombstones, flows: &mut FlowTable| {
            stones.kill(slot);
            flows.remove(&key);
        };
        if stone.expires <= now {
            // Expired but not yet swept by `poll_egress`: the flow is unknown now.
            end(&mut self.tombstones, &mut self.flows);
            return true;
        }
        match repr.control {
            // An RST ends TIME-WAIT (§3.10.7.4) only if it is exactly in sequence (RFC 5961
            // §3.2), so a blind RST cannot; a client whose SYN drew our challenge ACK answers
            // with exactly this one, and its next SYN then opens a connection.
            TcpControl::Rst if repr.seq_number == stone.rcv_nxt => {
                end(&mut self.tombstones, &mut self.flows);
                self.counters.time_wait_ended += 1;
                false
            }
            TcpControl::Rst => {
                self.counters.drop_tcp_time_wait += 1;
                false
            }
            // A new incarnation may reuse the flow if its ISN is above everything the old one
            // used (RFC 1122 §4.2.2.13, as Linux does); otherwise a challenge ACK (RFC 5961).
            TcpControl::Syn if repr.ack_number.is_none() && repr.seq_number > stone.rcv_nxt => {
                end(&mut self.tombstones, &mut self.flows);
                self.counters.time_wait_ended += 1;
                true
            }
            // "The only thing that can arrive in this state is a retransmission of the remote
            // FIN. Acknowledge it, and restart the 2 MSL timeout."
            TcpControl::Fin => {
                self.ack_from_tombstone(&stone, seg);
                self.tombstones.kill(slot);
                self.bury(now, stone.key, stone.peer_mac, stone.snd_nxt, stone.rcv_nxt);
                false
            }
            // A duplicate ACK needs no answer; anything carrying data or a SYN is out of the
            // window and gets an ACK (§3.10.7.4, first check).
            _ if repr.payload.is_empty() && repr.control != TcpControl::Syn => {
                self.counters.drop_tcp_time_wait += 1;
                false
            }
            _ => {
                self.ack_from_tombstone(&stone, seg);
                false
            }
        }
    }

    fn ack_from_tombstone(&mut self, stone: &Tombstone, seg: &TcpSegment<'_>) {
        if self.front.stage_ack(
            seg,
            stone.snd_nxt,
            stone.rcv_nxt,
            &mut self.counters,
            &mut self.replies,
        ) {
            self.counters.time_wait_acks += 1;
        }
    }

    /// Leaves a tombstone for `key`, evicting the oldest one if the ring is full.
    fn bury(
        &mut self,
        now: Instant,
        key: FlowKey,
        peer_mac: smoltcp::wire::EthernetAddress,
        snd_nxt: smoltcp::wire::TcpSeqNumber,
        rcv_nxt: smoltcp::wire::TcpSeqNumber,
    ) {
        if self.tombstones.is_full()
            && let Some(oldest) = self.tombstones.pop_oldest(now, true)
            && oldest.live
        {
            self.flows.remove(&oldest.key);
            self.counters.time_wait_evicted += 1;
        }
        let stone = Tombstone {
            key,
            peer_mac,
            snd_nxt,
            rcv_nxt,
            expires: now + self.config.time_wait,
            live: true,
        };
        if let Some(slot) = self.tombstones.push(stone) {
            self.flows.insert(key, FlowEntry::Tombstone(slot));
        }
    }

    /// The Ethernet header of frames to `peer_mac` carrying packets of `peer_ip`'s family.
    fn eth_to(&self, peer_mac: EthernetAddress, peer_ip: IpAddress) -> EthHeader {
        EthHeader {
            dst: peer_mac,
            src: self.config.mac,
            ethertype: match peer_ip {
                IpAddress::Ipv4(_) => EthernetProtocol::Ipv4,
                IpAddress::Ipv6(_) => EthernetProtocol::Ipv6,
            },
        }
    }

    /// Calls `f` once for every cell that became ready since the last call: it received
    /// segments (new data, an ACK freeing TX space, a FIN), was just established, or changed
    /// state. After `f` the cell is marked dirty so the next `poll_egress` emits what the app
    /// wrote. Cells whose connection is already gone (reset by the peer) are skipped; they are
    /// recycled by `poll_egress`.
    pub fn serve_ready(&mut self, now: Instant, f: &mut dyn FnMut(Conn<'_, A>)) {
        self.now = now;
        // Taken out to look ahead in it while serving; put back (with its capacity) after.
        let ready = std::mem::take(&mut self.ready);
        let prefetch = self.lookahead().filter(|_| ready.len() > SERVE_AHEAD);
        for (k, &r) in ready.iter().enumerate() {
            // A stale entry (a recycled cell) only makes the hint useless.
            if let (Some(prefetch), Some(ahead)) = (prefetch, ready.get(k + SERVE_AHEAD))
                && let Some(cell) = self.cells.get_mut(ahead.index as usize)
            {
                cell.prefetch_send_room(prefetch);
            }
            let Some(cell) = self.cells.get_mut(r.index as usize) else {
                continue;
            };
            if cell.generation != r.generation || !cell.in_ready {
                continue;
            }
            cell.in_ready = false;
            if matches!(cell.state(), TcpState::Listen | TcpState::Closed) {
                continue;
            }
            let (socket, state) = cell.socket_and_app();
            f(Conn { socket, state });
            // Idle, and everything sent acknowledged: closing it loses the peer nothing.
            if cell.app.is_idle() && cell.socket().send_queue() == 0 {
                self.idle.push_back(r.index);
            } else {
                self.idle.remove(r.index);
            }
            mark_dirty(&mut self.dirty, cell, r);
        }
        self.ready = ready;
        self.ready.clear();
    }

    /// Emits: first the front end's pending replies (ARP, ICMP echo, RST), then every dirty
    /// cell, then every cell whose deadline is due; recycles cells whose socket closed or timed
    /// out. Stops when `tx.has_room()` is false, keeping the rest for the next call (nothing is
    /// lost).
    pub fn poll_egress(&mut self, now: Instant, tx: &mut dyn TxSink) {
        self.now = now;
        self.counters.tx_frames += self.replies.drain_into(tx);
        if !self.replies.is_empty() {
            return;
        }
        // SYN-ACKs due again, and handshakes that timed out (no RST: Linux sends none either).
        while tx.has_room() {
            let Some((slot, due)) = self.syncache.pop_due(now, self.config.handshake_timeout)
            else {
                break;
            };
            match due {
                Due::Resend(pending) => {
                    self.stage_synack(&pending);
                    self.counters.synack_retransmits += 1;
                    self.counters.tx_frames += self.replies.drain_into(tx);
                }
                Due::Expired(pending) => {
                    self.forget_pending(slot, pending.key);
                    self.counters.handshake_timeouts += 1;
                }
            }
        }
        if !self.replies.is_empty() {
            return;
        }
        // Only the cells dirty at entry: one re-marked for exhausting its budget waits for
        // the next call, so one busy cell cannot starve the loop.
        let mut turns = self.dirty.len();
        while turns > 0 && tx.has_room() {
            turns -= 1;
            let Some(r) = self.dirty.pop_front() else {
                break;
            };
            let Some(cell) = self.cells.get_mut(r.index as usize) else {
                continue;
            };
            if cell.generation != r.generation || !cell.in_dirty {
                continue;
            }
            cell.in_dirty = false;
            self.run_cell(now, r.index, tx);
        }
        while tx.has_room() {
            let Some(index) = self.timers.pop_due(now) else {
                break;
            };
            if let Some(cell) = self.cells.get_mut(index as usize) {
                cell.armed = None;
                self.counters.timer_fires += 1;
                self.run_cell(now, index, tx);
            }
        }
        // Tombstones all last `time_wait`, so the expired ones are at the front of the ring.
        while let Some(stone) = self.tombstones.pop_oldest(now, false) {
            if stone.live {
                self.flows.remove(&stone.key);
            }
        }
    }

    /// Timeouts, egress, recycling and re-arming of one cell.
    fn run_cell(&mut self, now: Instant, index: u32, tx: &mut dyn TxSink) {
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        self.counters.cell_polls += 1;
        let r = CellRef {
            index,
            generation: cell.generation,
        };
        match cell.state() {
            TcpState::Established
            | TcpState::FinWait1
            | TcpState::FinWait2
            | TcpState::CloseWait
            | TcpState::Closing
            | TcpState::LastAck
                if now >= cell.last_rx + self.config.idle_timeout =>
            {
                cell.socket().abort();
                self.counters.idle_timeouts += 1;
                self.counters.rst_sent += 1;
            }
            _ => {}
        }

        let mut device = EgressDevice::new(tx, &self.caps);
        let stop = cell.egress(now, &mut device, CELL_EGRESS_BUDGET);
        self.counters.tx_frames += device.sent;
        self.counters.tx_refused += device.refused;
        cell.count_recovery(&mut self.counters);
        let EgressStop::Idle { poll_at } = stop else {
            mark_dirty(&mut self.dirty, cell, r);
            return;
        };

        match cell.state() {
            // We closed first and the peer's FIN is acknowledged (the ACK just left): the
            // cell goes back to the pool and a tombstone holds TIME-WAIT.
            TcpState::TimeWait => {
                let grave = match (cell.flow, cell.peer_ack, cell.peer_fin_end) {
                    (Some(key), Some(snd_nxt), Some(rcv_nxt)) => {
                        Some((key, cell.eth.dst, snd_nxt, rcv_nxt))
                    }
                    _ => None,
                };
                self.recycle(index);
                if let Some((key, mac, snd_nxt, rcv_nxt)) = grave
                    && self.config.time_wait_slots > 0
                {
                    self.bury(now, key, mac, snd_nxt, rcv_nxt);
                    self.counters.time_wait_entered += 1;
                }
                return;
            }
            TcpState::Closed | TcpState::Listen => {
                self.recycle(index);
                return;
            }
            _ => {}
        }

        let timeout = cell.last_rx + self.config.idle_timeout;
        let mut deadline = match poll_at {
            Some(at) => at.min(timeout),
            None => timeout,
        };
        if let Some(wake) = cell.app.wake_at() {
            if wake <= now {
                // The application's own deadline is due: lend it the connection.
                if !cell.in_ready {
                    cell.in_ready = true;
                    self.ready.push(r);
                }
            } else {
                deadline = deadline.min(wake);
            }
        }
        // Only an earlier deadline moves the cell in the wheel; a later one waits for the
        // armed one to fire, which re-arms it here. That keeps keep-alive traffic (each
        // segment pushes the idle timeout back) from touching the wheel per packet.
        let deadline = deadline.max(now + MIN_REPOLL);
        if cell.armed.is_none_or(|armed| deadline < armed) {
            cell.armed = Some(deadline);
            self.timers.arm(index, deadline);
        }
    }

    fn recycle(&mut self, index: u32) {
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        if let Some(key) = cell.flow {
            self.flows.remove_if(&key, FlowEntry::Cell(index));
            if let Some(per_ip) = &mut self.per_ip
                && let Some(count) = per_ip.get_mut(&key.peer_ip)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_ip.remove(&key.peer_ip);
                }
            }
        }
        self.idle.remove(index);
        cell.app.reset();
        cell.close();
        self.timers.cancel(index);
        self.free.push(index);
        self.counters.connections_closed += 1;
    }

    /// Earliest instant at which `serve_ready` or `poll_egress` has work even with no input
    /// (`None` = nothing pending). Pending replies, dirty cells or cells waiting for
    /// `serve_ready` give the latest `now` seen: call at once.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.replies.is_empty() || !self.dirty.is_empty() || !self.ready.is_empty() {
            return Some(self.now);
        }
        match (self.timers.next(), self.syncache.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn tx_only(offload: bool) -> smoltcp::phy::Checksum {
    if offload {
        smoltcp::phy::Checksum::None
    } else {
        smoltcp::phy::Checksum::Tx
    }
}

fn mark_dirty<A>(dirty: &mut VecDeque<CellRef>, cell: &mut Cell<A>, r: CellRef) {
    if !cell.in_dirty {
        cell.in_dirty = true;
        dirty.push_back(r);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v6;
