//! An in-process Ethernet link pair on a [`VirtualClock`]: the backend for deterministic
//! client ↔ server simulation and for packet-rate benchmarks with no kernel in the way.
//!
//! Owns [`MemoryLink`] (which builds the pair), [`MemoryPort`] (one end, a [`FrameIo`]) and
//! [`LinkConfig`] (one direction's MTU, latency, rate, queue and faults). [`nic`] builds a
//! multi-queue NIC from the same parts: one client end, and one end per receive queue with
//! frames steered to them by RSS ([`MemoryLink::rss_nic`]).
//!
//! # Ends, inboxes and directions
//!
//! Every end of a link has an *inbox*: the frames travelling toward it. Every port sends on a
//! *direction*: a wire with its own rate, latency, queue limit and fault injector. A pair has
//! two ends and two directions. In a multi-queue NIC all queue ports send on one direction
//! (the NIC's one port toward the client: they share its wire, and its faults are drawn from
//! one seeded stream in flush order), and the client's direction delivers each frame to the
//! inbox of the queue its RSS hash picks. The queue limit bounds each inbox.
//!
//! # Timing model
//!
//! Each direction is a wire with a serialization rate and a propagation delay. A frame flushed
//! at virtual time `now` finishes leaving at `departure = max(now, wire free) + len*8/rate` and
//! becomes receivable at `arrival = departure + latency`. Times are kept in nanoseconds so
//! sub-microsecond serialization adds up exactly; a frame is receivable once
//! `clock.now_micros()` reaches its arrival rounded *up* to a microsecond, which is also what
//! [`MemoryPort::next_arrival_micros`] reports.
//!
//! # Invariants
//!
//! - [`FrameIo::rx_burst`] never hands out a frame before its arrival time, and hands them out
//!   in arrival order, ties in send order.
//! - Every staged frame is counted exactly once at flush: in `tx_frames`/`tx_bytes` if it went
//!   on the wire, or in `tx_dropped` if the queue was full (tail drop) or the link lost it.
//!   Oversize frames are refused by `tx_stage` and also count in `tx_dropped`.
//! - An inbox holds at most its direction's `queue_limit` frames, counting both frames still
//!   travelling and frames that have arrived but not yet been received, like a NIC ring that
//!   fills when the receiver stops polling.
//! - Faults are decided per frame at flush from the direction's seeded PRNG (see
//!   [`FaultConfig`]), so a run is reproducible bit for bit.
//! - No allocation per frame once warmed up: buffers circulate through one free list shared by
//!   every direction, and received frames are lent straight from the in-flight queue.
//! - Each frame closure runs with no internal borrow held, so a closure may use the other port
//!   (a simulation replying from inside `rx_burst`) without panicking.
//!
//! The ports share state through `Rc<RefCell<_>>`: a simulation is single-threaded, so they are
//! not `Send`.

mod in_flight;
pub mod nic;

pub use crate::faults::{FaultConfig, FaultCounters};

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::clock::VirtualClock;
use crate::faults::FaultInjector;
use crate::rss::Rss;
use crate::{Capabilities, DriverCounters, DriverError, FrameIo, RX_LEND_MAX};
use in_flight::{Frame, FramePool, InFlightQueue};

/// Frames [`FrameIo::tx_stage`] accepts between two flushes; what `tx_room` starts from.
pub const TX_STAGING_FRAMES: usize = 256;

/// Extra hold of a reordered frame beyond the link latency: one more microsecond, so frames
/// overtake it even on a link with zero latency and infinite rate.
const REORDER_MIN_HOLD_NS: u64 = 1_000;

/// How many serialization times of its own length a reordered frame is held back, on top of
/// the latency, so the next few frames on a rate-limited link overtake it.
const REORDER_HOLD_FRAMES: u64 = 4;

/// New pool buffers reserve at most this much up front; a larger frame grows its buffer once,
/// and the buffer keeps that capacity from then on.
const MAX_PREALLOCATED_FRAME: usize = 65_536;

/// One direction of a memory link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// IP MTU: frames longer than `mtu + 14` are refused by `tx_stage`.
    pub mtu: usize,
    /// One-way propagation delay, in microseconds.
    pub latency_us: u64,
    /// Serialization rate in bits per second; `None` is infinitely fast. `Some(0)` is treated
    /// as 1 bit/s.
    pub rate_bits_per_sec: Option<u64>,
    /// Frames this direction holds before it tail-drops new ones.
    pub queue_limit: usize,
    pub faults: FaultConfig,
}

impl Default for LinkConfig {
    /// Plain Ethernet MTU, 10 µs latency, infinite rate, 4096 frames of queue, no faults.
    fn default() -> Self {
        LinkConfig {
            mtu: 1500,
            latency_us: 10,
            rate_bits_per_sec: None,
            queue_limit: 4096,
            faults: FaultConfig::none(),
        }
    }
}

/// Builds connected [`MemoryPort`] pairs.
#[derive(Debug)]
pub struct MemoryLink;

impl MemoryLink {
    /// Two ports joined by a link with the same `config` in both directions. A→B draws its
    /// faults from `config.faults.seed` and B→A from its bitwise complement, so the two
    /// directions do not lose (or reorder, ...) the same frame numbers in lockstep.
    pub fn pair(config: LinkConfig, clock: VirtualClock) -> (MemoryPort, MemoryPort) {
        let mut b_to_a = config;
        b_to_a.faults.seed = !config.faults.seed;
        Self::pair_asymmetric(config, b_to_a, clock)
    }

    /// Two ports `(a, b)`: frames `a` sends follow `a_to_b`, frames `b` sends follow `b_to_a`.
    pub fn pair_asymmetric(
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
        clock: VirtualClock,
    ) -> (MemoryPort, MemoryPort) {
        // End A receives in inbox 0 and sends on direction 0 (A→B); end B uses 1 and 1.
        const A: usize = 0;
        const B: usize = 1;
        let shared = SharedLink::new(2, [a_to_b, b_to_a]);
        let a = MemoryPort::new(
            A,
            A,
            Route::To(B),
            &a_to_b,
            Rc::clone(&shared),
            clock.clone(),
        );
        let b = MemoryPort::new(B, B, Route::To(A), &b_to_a, shared, clock);
        (a, b)
    }
}

fn frame_len_limit(config: &LinkConfig) -> usize {
    Capabilities::ethernet(config.mtu).max_frame_len
}

/// What every port of a link touches: the frames in flight toward each end, each direction's
/// wire and faults, and the buffer pool.
#[derive(Debug)]
struct SharedLink {
    /// `inboxes[end]`: the frames travelling toward end `end`.
    inboxes: Vec<InFlightQueue>,
    /// `directions[d]`: how frames sent on direction `d` travel.
    directions: Vec<Direction>,
    pool: FramePool,
}

impl SharedLink {
    /// `ends` empty inboxes, and one direction per config (direction `d` is `configs[d]`).
    fn new<const N: usize>(ends: usize, configs: [LinkConfig; N]) -> Rc<RefCell<SharedLink>> {
        let largest_frame = configs.iter().map(frame_len_limit).max().unwrap_or(0);
        Rc::new(RefCell::new(SharedLink {
            inboxes: (0..ends).map(|_| InFlightQueue::default()).collect(),
            directions: configs.iter().map(Direction::new).collect(),
            pool: FramePool::new(largest_frame.min(MAX_PREALLOCATED_FRAME)),
        }))
    }
}

/// One transmit direction: the wire, the queue limit of the inboxes it feeds, and its faults.
#[derive(Debug)]
struct Direction {
    queue_limit: usize,
    wire: Wire,
    faults: FaultInjector,
}

impl Direction {
    fn new(config: &LinkConfig) -> Self {
        Direction {
            queue_limit: config.queue_limit,
            wire: Wire::new(config),
            faults: FaultInjector::new(&config.faults),
        }
    }
}

/// Which inbox a port's flushed frames go to.
#[derive(Debug)]
enum Route {
    /// Every frame to this end.
    To(usize),
    /// Each frame to end `first + rss.queue_for_frame(frame)`: the queues of an RSS NIC,
    /// steered by the frame as it was sent (a bit the link flips in the 4-tuple fails the
    /// checksum wherever it lands).
    Steered { first: usize, rss: Box<Rss> },
}

impl Route {
    fn end_for(&self, frame: &[u8]) -> usize {
        match self {
            Route::To(end) => *end,
            // One queue takes everything: no need to parse and hash the frame.
            Route::Steered { first, rss } if rss.queues() == 1 => *first,
            Route::Steered { first, rss } => first + rss.queue_for_frame(frame),
        }
    }
}

/// The sender's view of one direction: when it is next free, and how fast it is.
#[derive(Debug, Clone)]
struct Wire {
    latency_ns: u64,
    rate_bits_per_sec: Option<u64>,
    free_at_ns: u64,
}

impl Wire {
    fn new(config: &LinkConfig) -> Self {
        Wire {
            latency_ns: config.latency_us.saturating_mul(1_000),
            rate_bits_per_sec: config.rate_bits_per_sec.map(|r| r.max(1)),
            free_at_ns: 0,
        }
    }

    /// Time to put `len` bytes on the wire, rounded up to a nanosecond.
    fn serialization_ns(&self, len: usize) -> u64 {
        let Some(rate) = self.rate_bits_per_sec else {
            return 0;
        };
        let bit_ns = (len as u128) * 8 * 1_000_000_000;
        u64::try_from(bit_ns.div_ceil(u128::from(rate))).unwrap_or(u64::MAX)
    }

    /// Occupies the wire with a frame of `len` bytes flushed at `now_ns`; returns its arrival.
    fn send(&mut self, now_ns: u64, len: usize) -> u64 {
        let departure = now_ns
            .max(self.free_at_ns)
            .saturating_add(self.serialization_ns(len));
        self.free_at_ns = departure;
        departure.saturating_add(self.latency_ns)
    }

    /// How much later than planned a reordered frame of `len` bytes arrives.
    fn reorder_hold_ns(&self, len: usize) -> u64 {
        self.latency_ns
            .saturating_add(
                self.serialization_ns(len)
                    .saturating_mul(REORDER_HOLD_FRAMES),
            )
            .saturating_add(REORDER_MIN_HOLD_NS)
    }
}

/// One end of a memory link. Sends with its own direction's [`LinkConfig`]; receives what the
/// other end sent, once the shared [`VirtualClock`] reaches each frame's arrival time.
pub struct MemoryPort {
    /// The inbox this port receives from.
    end: usize,
    /// The direction this port sends on, and where its frames go.
    direction: usize,
    route: Route,
    shared: Rc<RefCell<SharedLink>>,
    clock: VirtualClock,
    /// Reports the transmit direction's MTU: that is what the netstack sizes segments from.
    capabilities: Capabilities,
    staged: Vec<Frame>,
    /// Frames taken off the inbox for one `rx_batch`, lent together, then back to the pool.
    lent: Vec<Frame>,
    counters: DriverCounters,
    fault_counters: FaultCounters,
    /// Wall-clock nanoseconds spent putting flushed frames on the simulated wire (see
    /// [`MemoryPort::wire_ns`]).
    wire_ns: u64,
}

impl MemoryPort {
    /// A port receiving on inbox `end` and sending on `direction` (configured by `tx_config`)
    /// toward `route`.
    fn new(
        end: usize,
        direction: usize,
        route: Route,
        tx_config: &LinkConfig,
        shared: Rc<RefCell<SharedLink>>,
        clock: VirtualClock,
    ) -> Self {
        MemoryPort {
            end,
            direction,
            route,
            shared,
            clock,
            capabilities: Capabilities::ethernet(tx_config.mtu),
            staged: Vec::with_capacity(TX_STAGING_FRAMES),
            lent: Vec::with_capacity(RX_LEND_MAX),
            counters: DriverCounters::default(),
            fault_counters: FaultCounters::default(),
            wire_ns: 0,
        }
    }

    fn now_ns(&self) -> u64 {
        self.clock.now_micros().saturating_mul(1_000)
    }

    /// Earliest virtual time (µs) at which a frame will be receivable on this port, if any is
    /// in flight toward it. A time at or before now means a frame is waiting already.
    pub fn next_arrival_micros(&self) -> Option<u64> {
        self.shared.borrow().inboxes[self.end]
            .next_arrival_ns()
            .map(|ns| ns.div_ceil(1_000))
    }

    /// What fault injection did to the frames this port sent.
    pub fn fault_counters(&self) -> FaultCounters {
        self.fault_counters
    }

    /// Wall-clock nanoseconds this port's flushes have spent, in all, being the network rather
    /// than a NIC: routing each frame to its inbox, the wire's timing, fault injection and the
    /// in-flight queue. A NIC's driver only hands its ring to the hardware at a flush, so a
    /// benchmark of the party that owns this port subtracts this from the time it measured
    /// around that party's poll. Staging a frame (a buffer from the pool, filled by the
    /// caller) is the driver's work and is not in it.
    pub fn wire_ns(&self) -> u64 {
        self.wire_ns
    }
}

impl fmt::Debug for MemoryPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPort")
            .field("end", &self.end)
            .field("direction", &self.direction)
            .field("capabilities", &self.capabilities)
            .field("staged", &self.staged.len())
            .field("counters", &self.counters)
            .field("fault_counters", &self.fault_counters)
            .finish_non_exhaustive()
    }
}

impl FrameIo for MemoryPort {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let now_ns = self.now_ns();
        let mut received = 0;
        while received < max {
            // The borrow ends before `on_frame` runs; see the module invariants.
            let due = self.shared.borrow_mut().inboxes[self.end].pop_due(now_ns);
            let Some(frame) = due else { break };
            on_frame(&frame);
            self.counters.rx_frames += 1;
            self.counters.rx_bytes += frame.len() as u64;
            self.shared.borrow_mut().pool.give(frame);
            received += 1;
        }
        Ok(received)
    }

    fn rx_batch(
        &mut self,
        max: usize,
        on_frames: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<usize, DriverError> {
        let now_ns = self.now_ns();
        let mut received = 0;
        while received < max {
            let want = (max - received).min(RX_LEND_MAX);
            {
                let mut shared = self.shared.borrow_mut();
                let inbox = &mut shared.inboxes[self.end];
                while self.lent.len() < want {
                    let Some(frame) = inbox.pop_due(now_ns) else {
                        break;
                    };
                    self.lent.push(frame);
                }
            }
            if self.lent.is_empty() {
                break;
            }
            let mut slices: [&[u8]; RX_LEND_MAX] = [&[]; RX_LEND_MAX];
            for (slice, frame) in slices.iter_mut().zip(&self.lent) {
                *slice = frame;
            }
            // No borrow of the shared link is held here; see the module invariants.
            on_frames(&slices[..self.lent.len()]);
            let mut shared = self.shared.borrow_mut();
            for frame in self.lent.drain(..) {
                self.counters.rx_frames += 1;
                self.counters.rx_bytes += frame.len() as u64;
                received += 1;
                shared.pool.give(frame);
            }
            if received % RX_LEND_MAX != 0 {
                break;
            }
        }
        Ok(received)
    }

    fn rx_pending(&self) -> bool {
        self.shared.borrow().inboxes[self.end]
            .next_arrival_ns()
            .is_some_and(|at| at <= self.now_ns())
    }

    fn tx_room(&self) -> usize {
        TX_STAGING_FRAMES - self.staged.len()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if len > self.capabilities.max_frame_len {
            self.counters.tx_dropped += 1;
            return false;
        }
        if self.staged.len() >= TX_STAGING_FRAMES {
            self.counters.tx_ring_full += 1;
            return false;
        }
        let mut frame = self.shared.borrow_mut().pool.take(len);
        fill(&mut frame);
        self.staged.push(frame);
        true
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.counters.kicks += 1;
        let wire_started = std::time::Instant::now();
        let now_ns = self.now_ns();
        let mut shared = self.shared.borrow_mut();
        let SharedLink {
            inboxes,
            directions,
            pool,
        } = &mut *shared;
        let Direction {
            queue_limit,
            wire,
            faults,
        } = &mut directions[self.direction];
        let queue_limit = *queue_limit;
        for mut frame in self.staged.drain(..) {
            let queue = &mut inboxes[self.route.end_for(&frame)];
            if queue.len() >= queue_limit {
                self.fault_counters.queue_dropped += 1;
                self.counters.tx_dropped += 1;
                pool.give(frame);
                continue;
            }
            let len = frame.len();
            let mut arrival_ns = wire.send(now_ns, len);
            let fate = faults.decide(len);
            if fate.lose {
                self.fault_counters.lost += 1;
                self.counters.tx_dropped += 1;
                pool.give(frame);
                continue;
            }
            self.counters.tx_frames += 1;
            self.counters.tx_bytes += len as u64;
            if let Some(bit) = fate.corrupt_bit
                && let Some(byte) = frame.get_mut(bit / 8)
            {
                *byte ^= 1 << (bit % 8);
                self.fault_counters.corrupted += 1;
            }
            if fate.reorder {
                arrival_ns = arrival_ns.saturating_add(wire.reorder_hold_ns(len));
                self.fault_counters.reordered += 1;
            }
            // The copy goes in only if the queue has room for it too; it lands right behind.
            let duplicate = if fate.duplicate && queue.len() + 1 < queue_limit {
                let mut copy = pool.take(len);
                copy.copy_from_slice(&frame);
                self.fault_counters.duplicated += 1;
                Some(copy)
            } else {
                None
            };
            queue.push(arrival_ns, frame);
            if let Some(copy) = duplicate {
                queue.push(arrival_ns, copy);
            }
        }
        let wire_ns = u64::try_from(wire_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.wire_ns = self.wire_ns.saturating_add(wire_ns);
        Ok(())
    }

    fn counters(&self) -> DriverCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
