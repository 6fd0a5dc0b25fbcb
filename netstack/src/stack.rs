//! [`Stack`]: the front end, the flow table, the cell pool and the deadlines, joined.
//!
//! Invariants:
//! - a cell index in the flow table, the ready list, the dirty list or the timer heap always
//!   comes with the cell's generation, and is ignored if the cell was recycled since;
//! - a cell is in the ready (dirty) list at most once, tracked by `in_ready` (`in_dirty`);
//! - every cell in service has a live timer entry or is in the dirty list, so its
//!   retransmissions and timeouts run with no input;
//! - after warm-up nothing is allocated per packet: cells, their buffers, the staging ring, the
//!   lists and the heap all keep their capacity.

use std::collections::VecDeque;

use smoltcp::phy::{ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetProtocol, IpAddress, IpListenEndpoint, Ipv4Cidr, TcpControl};

use crate::cell::{Cell, EgressDevice, EgressStop};
use crate::flow::{FlowKey, FlowTable};
use crate::frontend::{FrontEnd, TcpSegment, Verdict};
use crate::staging::{ETH_HEADER_LEN, EthHeader, Staging};
use crate::timers::{Deadline, DeadlineQueue};
use crate::{ConfigError, Conn, ConnState, StackConfig, StackCounters, TcpState, TxSink};

/// Frames one cell may emit per `poll_egress` turn before the others get theirs.
const CELL_EGRESS_BUDGET: usize = 64;
/// Replies the front end can hold between two `poll_egress` calls.
const STAGING_SLOTS: usize = 256;
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
pub struct Stack<A: ConnState> {
    config: StackConfig,
    counters: StackCounters,
    front: FrontEnd,
    caps: DeviceCapabilities,
    staging: Staging,
    flows: FlowTable,
    cells: Vec<Cell<A>>,
    free: Vec<u32>,
    ready: Vec<CellRef>,
    dirty: VecDeque<CellRef>,
    timers: DeadlineQueue,
    seeds: Box<dyn FnMut() -> u64>,
    /// The latest `now` any entry point was given.
    now: Instant,
}

fn validate(config: &StackConfig) -> Result<(), ConfigError> {
    if config.max_connections == 0 {
        return Err(ConfigError::NoConnections);
    }
    if config.max_connections > u32::MAX as usize {
        return Err(ConfigError::TooManyConnections(config.max_connections));
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
    if config.prefix_len > 32 {
        return Err(ConfigError::Prefix(config.prefix_len));
    }
    if config.port == 0 {
        return Err(ConfigError::Port);
    }
    let ip = config.ipv4;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(ConfigError::Ipv4NotUnicast(ip));
    }
    if !config.mac.is_unicast() {
        return Err(ConfigError::MacNotUnicast(config.mac));
    }
    Ok(())
}

impl<A: ConnState> Stack<A> {
    /// `seeds` is called once per cell when the cell is first created (cells are pooled and
    /// reused, so not per connection) and once at construction to key the flow-table hasher.
    /// The server passes OS randomness; tests pass a seeded PRNG so runs are deterministic.
    pub fn new(
        config: StackConfig,
        mut seeds: Box<dyn FnMut() -> u64>,
    ) -> Result<Self, ConfigError> {
        validate(&config)?;
        let tx_caps = if config.tx_checksum_offload {
            ChecksumCapabilities::ignored()
        } else {
            ChecksumCapabilities::default()
        };
        // Cells never verify: the front end already did (or the driver did).
        let mut cell_checksums = tx_caps.clone();
        cell_checksums.ipv4 = tx_only(config.tx_checksum_offload);
        cell_checksums.tcp = tx_only(config.tx_checksum_offload);
        cell_checksums.icmpv4 = tx_only(config.tx_checksum_offload);
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = config.mtu;
        caps.checksum = cell_checksums;
        let front = FrontEnd {
            mac: config.mac,
            ipv4: config.ipv4,
            subnet: Ipv4Cidr::new(config.ipv4, config.prefix_len),
            verify_rx: !config.rx_checksum_verified,
            tx_caps,
            mtu: config.mtu,
        };
        let flows = FlowTable::new(config.max_connections, [seeds(), seeds(), seeds(), seeds()]);
        // Pools grow lazily up to max_connections; reserve the bookkeeping up front, but not
        // more than a sane amount for huge limits.
        let reserve = config.max_connections.min(1 << 16);
        Ok(Stack {
            staging: Staging::new(STAGING_SLOTS, ETH_HEADER_LEN + config.mtu),
            front,
            caps,
            flows,
            cells: Vec::with_capacity(reserve),
            free: Vec::with_capacity(reserve),
            ready: Vec::with_capacity(reserve),
            dirty: VecDeque::with_capacity(reserve),
            timers: DeadlineQueue::with_capacity(reserve * 2),
            seeds,
            counters: StackCounters::default(),
            now: Instant::ZERO,
            config,
        })
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

    /// Handles one received Ethernet frame. Never panics, whatever the bytes.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.now = now;
        self.counters.rx_frames += 1;
        match self
            .front
            .classify(frame, &mut self.counters, &mut self.staging)
        {
            Verdict::Done => {}
            Verdict::Tcp(seg) => self.handle_tcp(now, &seg),
        }
    }

    fn handle_tcp(&mut self, now: Instant, seg: &TcpSegment<'_>) {
        if seg.repr.dst_port != self.config.port {
            self.counters.drop_tcp_port_closed += 1;
            self.front
                .stage_rst(seg, &mut self.counters, &mut self.staging);
            return;
        }
        let key = FlowKey {
            peer_ip: seg.peer_ip,
            peer_port: seg.repr.src_port,
        };
        let index = match self.flows.get(&key) {
            Some(index) => index,
            None if seg.repr.control == TcpControl::Syn && seg.repr.ack_number.is_none() => {
                match self.open_cell(now, key, seg) {
                    Some(index) => {
                        self.counters.syn_accepted += 1;
                        index
                    }
                    None => {
                        self.counters.syn_refused_full += 1;
                        self.front
                            .stage_rst(seg, &mut self.counters, &mut self.staging);
                        return;
                    }
                }
            }
            None => {
                self.counters.drop_tcp_no_flow += 1;
                self.front
                    .stage_rst(seg, &mut self.counters, &mut self.staging);
                return;
            }
        };
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        cell.last_rx = now;
        self.counters.tx_staging_full +=
            cell.ingress(now, seg.ip_packet, &mut self.staging, &self.caps);
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

    /// Takes a cell from the pool (or creates one) for a new flow. `None` at max_connections.
    fn open_cell(&mut self, now: Instant, key: FlowKey, seg: &TcpSegment<'_>) -> Option<u32> {
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.cells.len() < self.config.max_connections => {
                let index = u32::try_from(self.cells.len()).ok()?;
                let cell = Cell::new(
                    &self.config,
                    &self.caps,
                    (self.seeds)(),
                    self.eth_to(seg),
                    now,
                );
                self.cells.push(cell);
                index
            }
            None => return None,
        };
        let local = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(self.config.ipv4)),
            port: self.config.port,
        };
        let eth = self.eth_to(seg);
        let cell = self.cells.get_mut(index as usize)?;
        if !cell.open(local, key, eth, now) {
            self.free.push(index);
            return None;
        }
        self.flows.insert(key, index);
        Some(index)
    }

    fn eth_to(&self, seg: &TcpSegment<'_>) -> EthHeader {
        EthHeader {
            dst: seg.peer_mac,
            src: self.config.mac,
            ethertype: EthernetProtocol::Ipv4,
        }
    }

    /// Calls `f` once for every cell that became ready since the last call: it received
    /// segments (new data, an ACK freeing TX space, a FIN), was just established, or changed
    /// state. After `f` the cell is marked dirty so the next `poll_egress` emits what the app
    /// wrote. Cells whose connection is already gone (reset by the peer) are skipped; they are
    /// recycled by `poll_egress`.
    pub fn service(&mut self, now: Instant, f: &mut dyn FnMut(Conn<'_, A>)) {
        self.now = now;
        for r in self.ready.drain(..) {
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
            mark_dirty(&mut self.dirty, cell, r);
        }
    }

    /// Emits: first the front end's pending replies (ARP, ICMP echo, RST), then every dirty
    /// cell, then every cell whose deadline is due; recycles cells whose socket closed or timed
    /// out. Stops when `tx.has_room()` is false, keeping the rest for the next call (nothing is
    /// lost).
    pub fn poll_egress(&mut self, now: Instant, tx: &mut dyn TxSink) {
        self.now = now;
        self.counters.tx_frames += self.staging.drain_into(tx);
        if !self.staging.is_empty() {
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
            let Some(d) = self.timers.pop_due(now) else {
                break;
            };
            let Some(cell) = self.cells.get_mut(d.cell as usize) else {
                continue;
            };
            if cell.generation != d.generation || cell.armed != Some(d.at) {
                continue;
            }
            cell.armed = None;
            self.run_cell(now, d.cell, tx);
        }
        // Lazy invalidation leaves stale entries; sweep them when they outnumber the cells.
        let cells = &self.cells;
        if self.timers.len() > 2 * cells.len() + 64 {
            self.timers.retain(|d| is_live(cells, d));
        }
        // Keep the top live so `poll_at` reports a real deadline (timers only change here).
        while self.timers.peek().is_some_and(|d| !is_live(cells, d)) {
            self.timers.pop();
        }
    }

    /// Timeouts, egress, recycling and re-arming of one cell.
    fn run_cell(&mut self, now: Instant, index: u32, tx: &mut dyn TxSink) {
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        let r = CellRef {
            index,
            generation: cell.generation,
        };
        match cell.state() {
            TcpState::SynReceived if now >= cell.opened_at + self.config.handshake_timeout => {
                // Abort sends an RST so the peer does not keep a half-open connection either.
                cell.socket().abort();
                self.counters.handshake_timeouts += 1;
                self.counters.rst_sent += 1;
            }
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
        if stop != EgressStop::Idle {
            mark_dirty(&mut self.dirty, cell, r);
            return;
        }

        // TIME-WAIT is not held: the cell goes back to the pool at once. A compact tombstone
        // in the flow table that ACKs a retransmitted FIN (RFC 9293 §3.10.7.4) is planned.
        if matches!(
            cell.state(),
            TcpState::Closed | TcpState::Listen | TcpState::TimeWait
        ) {
            self.recycle(index);
            return;
        }

        let timeout = match cell.state() {
            TcpState::SynReceived => cell.opened_at + self.config.handshake_timeout,
            _ => cell.last_rx + self.config.idle_timeout,
        };
        let mut deadline = match cell.smoltcp_poll_at(now) {
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
        let deadline = deadline.max(now + MIN_REPOLL);
        if cell.armed.is_none_or(|armed| deadline < armed) {
            cell.armed = Some(deadline);
            self.timers.arm(Deadline {
                at: deadline,
                cell: index,
                generation: r.generation,
            });
        }
    }

    fn recycle(&mut self, index: u32) {
        let Some(cell) = self.cells.get_mut(index as usize) else {
            return;
        };
        if let Some(key) = cell.flow {
            self.flows.remove(&key);
        }
        cell.app.reset();
        cell.close();
        self.free.push(index);
        self.counters.connections_closed += 1;
    }

    /// Earliest instant at which `service` or `poll_egress` has work even with no input
    /// (`None` = nothing pending). Pending replies, dirty cells or cells waiting for
    /// `service` give the latest `now` seen: call at once.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.staging.is_empty() || !self.dirty.is_empty() || !self.ready.is_empty() {
            return Some(self.now);
        }
        self.timers.next()
    }
}

fn tx_only(offload: bool) -> smoltcp::phy::Checksum {
    if offload {
        smoltcp::phy::Checksum::None
    } else {
        smoltcp::phy::Checksum::Tx
    }
}

/// Whether a timer entry still belongs to the cell's current connection and armed deadline.
fn is_live<A>(cells: &[Cell<A>], d: &Deadline) -> bool {
    cells
        .get(d.cell as usize)
        .is_some_and(|c| c.generation == d.generation && c.armed == Some(d.at))
}

fn mark_dirty<A>(dirty: &mut VecDeque<CellRef>, cell: &mut Cell<A>, r: CellRef) {
    if !cell.in_dirty {
        cell.in_dirty = true;
        dirty.push_back(r);
    }
}

#[cfg(test)]
mod tests;
