//! A fleet of simulated HTTP clients that scales to 100,000 connections.
//!
//! One smoltcp `SocketSet` with N sockets costs O(N) per packet (DESIGN.md, "Why cells"), so the
//! client side uses cells too: every connection slot is its own `Interface` (`Medium::Ip`)
//! holding one TCP socket. Incoming frames are demultiplexed by (client address, client port)
//! through a flat table, in O(1); connection slots use consecutive addresses from
//! [`FleetConfig::first_client_ip`] when one address's 64,512 ports are not enough. The fleet
//! writes the Ethernet header itself and talks through any [`FrameIo`], a memory port in
//! practice.
//!
//! # Address families
//!
//! Slots talk IPv4, IPv6 or, in a mixed fleet, alternately one and the other
//! ([`FleetConfig::family`]); each family has its own demultiplexing table. Over IPv4 the
//! server's MAC is configured, so there is no ARP. Over IPv6 the fleet asks for it once with a
//! neighbor solicitation (RFC 4861 §7.2) from the first client address, sent again every second
//! until the server's advertisement comes; IPv6 slots connect only then. The fleet also answers
//! solicitations for its own IPv6 addresses.
//!
//! # Polling
//!
//! [`ClientFleet::poll`] receives a burst, feeds each frame to its connection, then *services*
//! only the connections that got frames or whose smoltcp deadline is due (a binary heap of
//! deadlines with lazy deletion): the cost of a poll is O(active connections), and an idle
//! connection costs nothing. Servicing a connection runs its [`Script`]: connect, send requests
//! (pipelined up to the script's depth), read and verify responses with a
//! [`ResponseReader`], close, and reconnect when the script needs a new connection.
//!
//! # Outcomes
//!
//! Every request of every script is *resolved* exactly once: as a match (status and body
//! byte-exact), or as a [`Mismatch`] (wrong status, wrong bytes, the connection reset or closed
//! with the response outstanding). [`ClientFleet::is_done`] once all are resolved. Nothing here
//! retries a failed request: a failure is what the tests are looking for.
//!
//! Given the same seed, scripts and input frames, the fleet emits the same frames: there is no
//! hashing with random state and no wall-clock read.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use sirocco_drivers::{DriverError, ETHERNET_HEADER_LEN, FrameIo};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpPacket,
};

use crate::replay::wire as frames;

use super::device::{ClientDevice, TxTally};
use super::reader::{Completed, ResponseReader};
use super::script::Script;
use super::seeds::SplitMix64;

/// The lowest client port; below are the well-known and registered-by-convention ones.
const FIRST_PORT: u32 = 1024;
/// Client ports per address.
const PORTS_PER_ADDRESS: u32 = 65536 - FIRST_PORT;
/// At most this many client addresses (4 MiB of demux table).
pub const MAX_ADDRESSES: u32 = 16;
/// Mismatches kept for the report; later ones are only counted.
const MAX_MISMATCHES_KEPT: usize = 1000;
/// Consecutive connections that end without resolving any request before the slot gives up.
const MAX_FRUITLESS_CONNECTIONS: u32 = 3;
/// Egress passes per connection per poll (each sends at most one segment).
const MAX_EGRESS_PASSES: usize = 64;
/// A rate-limited client reads in multiples of this (one full segment).
const READ_QUANTUM: usize = 1460;
/// Rendered-but-unsent request bytes per connection before rendering more.
const OUTBOX_SOFT_LIMIT: usize = 4096;
/// Neighbor solicitations for the server's MAC before the IPv6 slots give up (RFC 4861 allows
/// 3 a round; a test fleet on a lossy link is more patient).
const MAX_SOLICITATIONS: u32 = 10;
/// Between two neighbor solicitations (RFC 4861 §10, `RETRANS_TIMER`).
const SOLICITATION_INTERVAL_MICROS: i64 = 1_000_000;

/// The IPv6 side of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Side {
    pub server_ip: Ipv6Address,
    /// The first client address; more consecutive ones are used as over IPv4.
    pub first_client_ip: Ipv6Address,
    pub prefix_len: u8,
}

/// Which address family the connection slots use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    /// Every slot over IPv6.
    Ipv6(Ipv6Side),
    /// Even slots (0, 2, ...) over IPv4, odd ones over IPv6.
    Mixed(Ipv6Side),
}

impl Family {
    /// Whether slot `idx` talks IPv6.
    fn slot_is_v6(self, idx: usize) -> bool {
        match self {
            Family::Ipv4 => false,
            Family::Ipv6(_) => true,
            Family::Mixed(_) => idx % 2 == 1,
        }
    }

    fn ipv6(self) -> Option<Ipv6Side> {
        match self {
            Family::Ipv4 => None,
            Family::Ipv6(side) | Family::Mixed(side) => Some(side),
        }
    }
}

/// Addresses, buffers and TCP settings of a fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub server_mac: EthernetAddress,
    pub server_ip: Ipv4Address,
    pub server_port: u16,
    pub client_mac: EthernetAddress,
    /// The first client address. More consecutive ones are used when the scripts need more than
    /// 64,512 ports at once (at most 16 addresses).
    pub first_client_ip: Ipv4Address,
    pub prefix_len: u8,
    /// IP MTU.
    pub mtu: usize,
    /// TCP receive buffer per connection (it bounds the advertised window).
    pub rx_buffer: usize,
    /// TCP send buffer per connection.
    pub tx_buffer: usize,
    /// smoltcp's delayed ACK (its default is 10 ms; Linux uses 40 ms at least).
    pub ack_delay: Option<Duration>,
    /// smoltcp's user timeout: a connection whose data stays unacknowledged this long is reset.
    pub timeout: Option<Duration>,
    /// Frames taken from the driver per poll.
    pub rx_batch: usize,
    /// Seeds every client interface's ISN generator.
    pub seed: u64,
    /// Each connection reads at most this many bytes per second from its socket (a slow
    /// client: its TCP window closes and the server must hold the data). `None`: no limit.
    pub read_rate_bytes_per_sec: Option<u64>,
    /// With a read rate, a connection reads in multiples of this many bytes, and so reopens its
    /// window by as much at a time. A full segment by default; a few bytes make a client that
    /// opens its window a few bytes at a time, which the server must not answer with tiny
    /// segments (RFC 9293 §3.8.6.2.1).
    pub read_quantum: usize,
    /// Offer SACK (RFC 2018) in the SYN; off makes a peer without SACK.
    pub sack: bool,
    /// Keep copies of up to this many frames that matched no connection, for inspection.
    pub keep_unmatched: usize,
    /// IPv4 (the default), IPv6, or both; `server_ip`, `first_client_ip` and `prefix_len`
    /// are the IPv4 side.
    pub family: Family,
}

impl FleetConfig {
    /// A fleet of clients in `first_client_ip/prefix_len` talking to `server_ip:server_port`
    /// at `server_mac`, with 64 KiB receive buffers, 4 KiB send buffers and a 1500-byte MTU.
    pub fn new(
        server_mac: EthernetAddress,
        server_ip: Ipv4Address,
        server_port: u16,
        first_client_ip: Ipv4Address,
        prefix_len: u8,
        seed: u64,
    ) -> Self {
        FleetConfig {
            server_mac,
            server_ip,
            server_port,
            client_mac: EthernetAddress([0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]),
            first_client_ip,
            prefix_len,
            mtu: 1500,
            rx_buffer: 64 * 1024,
            tx_buffer: 4 * 1024,
            ack_delay: Some(Duration::from_millis(10)),
            timeout: None,
            rx_batch: 256,
            seed,
            keep_unmatched: 0,
            read_rate_bytes_per_sec: None,
            read_quantum: READ_QUANTUM,
            sack: true,
            family: Family::Ipv4,
        }
    }
}

/// Why a fleet could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum FleetError {
    /// The scripts need more ports than 16 client addresses give.
    TooManyConnections(usize),
    /// The client addresses would run past the end of the IPv4 (or IPv6) space.
    AddressRange,
    /// A zero buffer size, batch or MTU.
    Setting(&'static str),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::TooManyConnections(n) => write!(
                f,
                "{n} connections need more than {MAX_ADDRESSES} client addresses: use fewer"
            ),
            FleetError::AddressRange => f.write_str(
                "client addresses run past the end of the address space: pick a lower first \
                 address",
            ),
            FleetError::Setting(what) => write!(f, "{what} must be at least 1"),
        }
    }
}

impl std::error::Error for FleetError {}

/// Monotonic counters of a fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounters {
    pub rx_frames: u64,
    /// Received frames that matched no connection (bad headers, not TCP over IPv4 or IPv6,
    /// unknown port), IPv6 link housekeeping aside (neighbor discovery and the like).
    pub rx_unmatched: u64,
    /// Neighbor solicitations sent for the server's MAC.
    pub solicitations_sent: u64,
    /// Neighbor advertisements sent, answering the server's solicitations.
    pub advertisements_sent: u64,
    pub tx_frames: u64,
    /// Frames smoltcp produced that the driver did not take.
    pub tx_dropped: u64,
    pub connects: u64,
    /// Connections that ended with a reset (or the user timeout) while the script needed them.
    pub resets: u64,
    pub requests_sent: u64,
    pub responses_ok: u64,
    /// Requests resolved as a [`Mismatch`].
    pub requests_failed: u64,
    /// Body octets of the responses resolved (counted when a response is complete).
    pub body_bytes: u64,
    /// Octets read from the sockets, headers included, as they arrive in order.
    pub rx_bytes: u64,
}

/// A request that did not get the response it expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub connection: usize,
    /// Index of the request in its script.
    pub request: usize,
    pub label: String,
    pub problem: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} request {} ({}): {}",
            self.connection, self.request, self.label, self.problem
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Needs a (new) connection for the rest of its script.
    Connect,
    Open,
    /// Our side is closed; waiting for the socket to reach CLOSED or TIME-WAIT.
    Closing,
    /// Every request resolved and the last connection closed.
    Finished,
}

/// One connection slot: a smoltcp cell plus its script's progress.
struct Conn {
    /// Talks IPv6 (else IPv4).
    v6: bool,
    iface: Interface,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    script: Script,
    /// Requests rendered into the outbox on the current connection (script index).
    sent: usize,
    /// Requests resolved (script index of the next response).
    resolved: usize,
    /// Requests sent on the current connection.
    on_connection: usize,
    outbox: Vec<u8>,
    out_pos: usize,
    reader: ResponseReader,
    phase: Phase,
    /// The server announced `Connection: close`.
    server_closing: bool,
    /// Demux key of the current local endpoint.
    endpoint: Option<u32>,
    /// The deadline this slot has in the timer heap (stale heap entries are skipped).
    deadline: Option<i64>,
    ready: bool,
    fruitless: u32,
    resolved_at_connect: usize,
    /// With a read rate: virtual time (µs) up to which the read allowance is used up.
    read_clock: i64,
    /// With a read rate: when reading may go on (µs), if it stopped for the allowance.
    read_wake: Option<i64>,
}

/// Everything but the connection slots, so a slot and the rest can be borrowed together.
struct Shared {
    config: FleetConfig,
    /// Per family (IPv4, IPv6): slot + 1 by (address index << 16 | port); empty for a family
    /// no slot uses.
    port_maps: [Vec<u32>; 2],
    addresses: u32,
    next_port: [u32; 2],
    /// The server's MAC over IPv6, once neighbor discovery found it.
    server_mac6: Option<EthernetAddress>,
    counters: FleetCounters,
    mismatches: Vec<Mismatch>,
    total_requests: u64,
    resolved_requests: u64,
    unfinished: usize,
    /// Responses completed within one received chunk (kept for its capacity).
    completed: Vec<Completed>,
    /// Keep-alive connections stay open after their last response (see
    /// [`ClientFleet::set_hold`]).
    hold: bool,
}

/// Neighbor discovery of the server's MAC, until it is known.
struct Resolver {
    server_ip: Ipv6Address,
    /// The address solicitations come from.
    client_ip: Ipv6Address,
    sent: u32,
    /// When the next solicitation is due (µs).
    next_at: i64,
}

/// The fleet. See the module documentation.
pub struct ClientFleet<D: FrameIo> {
    driver: D,
    /// The Ethernet header of IPv4 slots, and of IPv6 ones (its destination is known once the
    /// server's MAC is).
    l2: [[u8; ETHERNET_HEADER_LEN]; 2],
    resolver: Option<Resolver>,
    /// Advertisements owed to the server's solicitations: (its MAC, its address, our target).
    advertisements: Vec<(EthernetAddress, Ipv6Address, Ipv6Address)>,
    conns: Vec<Conn>,
    shared: Shared,
    /// Interface seeds for slots added later ([`ClientFleet::add_script`]).
    seeds: SplitMix64,
    timers: BinaryHeap<Reverse<(i64, u32)>>,
    ready: Vec<u32>,
    rx_arena: Vec<u8>,
    rx_frames: Vec<(u32, usize, usize)>,
    unmatched: Vec<Vec<u8>>,
    tally: TxTally,
}

impl<D: FrameIo> ClientFleet<D> {
    /// One connection slot per script. Nothing is sent until the first [`ClientFleet::poll`].
    pub fn new(
        mut driver: D,
        config: FleetConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, FleetError> {
        if config.rx_buffer == 0 || config.tx_buffer == 0 {
            return Err(FleetError::Setting("buffer size"));
        }
        if config.rx_batch == 0 {
            return Err(FleetError::Setting("rx batch"));
        }
        if config.mtu < 576 {
            return Err(FleetError::Setting("MTU (576)"));
        }
        // Ports in use at once: one per slot, plus one per one-request connection, as ports are
        // not reused until the allocator wraps around.
        let ports: usize = scripts
            .iter()
            .map(|s| {
                if s.one_per_connection() {
                    s.count.max(1)
                } else {
                    1
                }
            })
            .sum();
        let addresses = ports
            .div_ceil(PORTS_PER_ADDRESS as usize)
            .clamp(1, MAX_ADDRESSES as usize);
        if scripts.len() > addresses * PORTS_PER_ADDRESS as usize {
            return Err(FleetError::TooManyConnections(scripts.len()));
        }
        let addresses = addresses as u32;
        if u32::from(config.first_client_ip)
            .checked_add(addresses)
            .is_none()
        {
            return Err(FleetError::AddressRange);
        }
        if let Some(side) = config.family.ipv6()
            && u128::from(side.first_client_ip)
                .checked_add(u128::from(addresses))
                .is_none()
        {
            return Err(FleetError::AddressRange);
        }

        let header = |ethertype: EthernetProtocol| {
            let mut l2 = [0u8; ETHERNET_HEADER_LEN];
            l2[..6].copy_from_slice(config.server_mac.as_bytes());
            l2[6..12].copy_from_slice(config.client_mac.as_bytes());
            l2[12..].copy_from_slice(&u16::from(ethertype).to_be_bytes());
            l2
        };
        let l2 = [
            header(EthernetProtocol::Ipv4),
            header(EthernetProtocol::Ipv6),
        ];

        let mut seeds = SplitMix64::new(config.seed);
        let mut tally = TxTally::default();
        let mut conns = Vec::with_capacity(scripts.len());
        let mut total_requests = 0u64;
        for script in scripts {
            total_requests += script.count as u64;
            let v6 = config.family.slot_is_v6(conns.len());
            conns.push(new_conn(
                &mut driver,
                &l2[usize::from(v6)],
                &config,
                &mut tally,
                seeds.next_u64(),
                script,
                v6,
            ));
        }
        let ready = (0..conns.len() as u32).collect();
        let unfinished = conns.len();
        let table = vec![0; (addresses as usize) << 16];
        let port_maps = match config.family {
            Family::Ipv4 => [table, Vec::new()],
            Family::Ipv6(_) => [Vec::new(), table],
            Family::Mixed(_) => [table.clone(), table],
        };
        let resolver = config.family.ipv6().map(|side| Resolver {
            server_ip: side.server_ip,
            client_ip: side.first_client_ip,
            sent: 0,
            next_at: 0,
        });
        Ok(ClientFleet {
            driver,
            l2,
            resolver,
            advertisements: Vec::new(),
            shared: Shared {
                port_maps,
                addresses,
                next_port: [0; 2],
                server_mac6: None,
                counters: FleetCounters::default(),
                mismatches: Vec::new(),
                total_requests,
                resolved_requests: 0,
                unfinished,
                completed: Vec::new(),
                hold: false,
                config,
            },
            conns,
            seeds,
            timers: BinaryHeap::new(),
            ready,
            rx_arena: Vec::new(),
            rx_frames: Vec::new(),
            unmatched: Vec::new(),
            tally,
        })
    }

    /// One round at `now`: receive a burst, feed it to the connections, service the ready ones,
    /// flush. `Ok(true)` if any frame was received or sent, or any connection read bytes: a
    /// rate-limited reader's timed read moves no frame when it opens no window worth
    /// announcing, yet it is progress that the loop must see at the time it happened, not at
    /// the next event the clock would jump to.
    pub fn poll(&mut self, now: Instant) -> Result<bool, DriverError> {
        let received = self.receive_burst()?;
        let tx_before = self.tally.staged;
        let read_before = self.shared.counters.rx_bytes;
        self.neighbor_discovery(now)?;

        let ClientFleet {
            driver,
            l2,
            conns,
            shared,
            ready,
            rx_arena,
            rx_frames,
            tally,
            ..
        } = self;
        let mtu = shared.config.mtu;
        for &(idx, start, len) in rx_frames.iter() {
            let Some(conn) = conns.get_mut(idx as usize) else {
                continue;
            };
            if driver.tx_room() == 0 {
                driver.tx_flush()?;
            }
            let mut device = ClientDevice {
                io: &mut *driver,
                l2: &l2[usize::from(conn.v6)],
                mtu,
                rx: rx_arena.get(start..start + len),
                tally: &mut *tally,
            };
            conn.iface
                .poll_ingress_single(now, &mut device, &mut conn.sockets);
            if !conn.ready {
                conn.ready = true;
                ready.push(idx);
            }
        }
        rx_frames.clear();
        rx_arena.clear();

        let now_micros = now.total_micros();
        while let Some(&Reverse((at, idx))) = self.timers.peek() {
            if at > now_micros {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(idx as usize)
                && conn.deadline == Some(at)
            {
                conn.deadline = None;
                if !conn.ready {
                    conn.ready = true;
                    self.ready.push(idx);
                }
            }
        }

        let mut ready = std::mem::take(&mut self.ready);
        for &idx in &ready {
            if self.driver.tx_room() == 0 {
                self.driver.tx_flush()?;
            }
            self.service(idx, now);
        }
        ready.clear();
        self.ready = ready;
        self.drop_stale_timers();

        let sent = self.tally.staged - tx_before;
        self.driver.tx_flush()?;
        self.shared.counters.tx_frames = self.tally.staged;
        self.shared.counters.tx_dropped = self.tally.dropped;
        let read = self.shared.counters.rx_bytes - read_before;
        Ok(received > 0 || sent > 0 || read > 0)
    }

    /// With `hold`, a keep-alive connection whose script is done stays open instead of
    /// closing, so a test can have every connection open at once. Releasing the hold lets
    /// them all close at the next poll.
    pub fn set_hold(&mut self, hold: bool) {
        self.shared.hold = hold;
        if !hold {
            for (idx, conn) in self.conns.iter_mut().enumerate() {
                if conn.phase == Phase::Open && !conn.ready {
                    conn.ready = true;
                    self.ready.push(idx as u32);
                }
            }
        }
    }

    /// Adds a connection slot running `script`; it starts at the next poll. Its ports come
    /// from the same client addresses as the others, so the fleet must have been built with
    /// room for them (see [`FleetConfig::first_client_ip`]). Returns the slot's index.
    pub fn add_script(&mut self, script: Script) -> usize {
        let ClientFleet {
            driver,
            l2,
            conns,
            shared,
            seeds,
            ready,
            tally,
            ..
        } = self;
        shared.total_requests += script.count as u64;
        shared.unfinished += 1;
        let v6 = shared.config.family.slot_is_v6(conns.len());
        let conn = new_conn(
            driver,
            &l2[usize::from(v6)],
            &shared.config,
            tally,
            seeds.next_u64(),
            script,
            v6,
        );
        conns.push(conn);
        let idx = conns.len() - 1;
        ready.push(idx as u32);
        idx
    }

    /// When the fleet next needs a poll even if no frame arrives.
    pub fn poll_at(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let solicitation = self.resolver.as_ref().map(|r| r.next_at);
        [timer, solicitation]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_micros)
    }

    /// The server's MAC over IPv6, once neighbor discovery found it.
    pub fn server_mac6(&self) -> Option<EthernetAddress> {
        self.shared.server_mac6
    }

    /// Neighbor discovery, once per poll: answers the server's solicitations, lets the IPv6
    /// slots connect once the server's MAC is known, else solicits it (every second, a few
    /// times, then fails the IPv6 slots' requests).
    fn neighbor_discovery(&mut self, now: Instant) -> Result<(), DriverError> {
        let client_mac = self.shared.config.client_mac.0;
        for (mac, ip, target) in std::mem::take(&mut self.advertisements) {
            let frame = frames::neighbor_advertisement(client_mac, target, mac.0, ip);
            self.stage(&frame)?;
            self.shared.counters.advertisements_sent += 1;
        }
        let Some(resolver) = self.resolver.as_mut() else {
            return Ok(());
        };
        if let Some(mac) = self.shared.server_mac6 {
            self.l2[1][..6].copy_from_slice(mac.as_bytes());
            self.resolver = None;
            for (idx, conn) in self.conns.iter_mut().enumerate() {
                if conn.v6 && conn.phase == Phase::Connect && !conn.ready {
                    conn.ready = true;
                    self.ready.push(idx as u32);
                }
            }
            return Ok(());
        }
        let now_micros = now.total_micros();
        if now_micros < resolver.next_at {
            return Ok(());
        }
        if resolver.sent >= MAX_SOLICITATIONS {
            let why = format!(
                "{} did not answer {MAX_SOLICITATIONS} neighbor solicitations",
                resolver.server_ip
            );
            self.resolver = None;
            let ClientFleet { conns, shared, .. } = self;
            for (idx, conn) in conns.iter_mut().enumerate() {
                if conn.v6 && conn.phase == Phase::Connect {
                    shared.fail_rest(conn, idx, &why);
                    conn.phase = Phase::Finished;
                    shared.unfinished -= 1;
                }
            }
            return Ok(());
        }
        let frame =
            frames::neighbor_solicitation(client_mac, resolver.client_ip, resolver.server_ip);
        resolver.sent += 1;
        resolver.next_at = now_micros + SOLICITATION_INTERVAL_MICROS;
        self.stage(&frame)?;
        self.shared.counters.solicitations_sent += 1;
        Ok(())
    }

    /// Stages a frame the fleet wrote itself (neighbor discovery: rare, not per packet).
    fn stage(&mut self, frame: &[u8]) -> Result<(), DriverError> {
        if self.driver.tx_room() == 0 {
            self.driver.tx_flush()?;
        }
        if self
            .driver
            .tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame))
        {
            self.tally.staged += 1;
        } else {
            self.tally.dropped += 1;
        }
        Ok(())
    }

    /// Every request of every script has been resolved.
    pub fn is_done(&self) -> bool {
        self.shared.resolved_requests >= self.shared.total_requests
    }

    /// Done, and every connection has finished closing.
    pub fn is_quiet(&self) -> bool {
        self.shared.unfinished == 0
    }

    /// (resolved, total) requests.
    pub fn progress(&self) -> (u64, u64) {
        (self.shared.resolved_requests, self.shared.total_requests)
    }

    pub fn counters(&self) -> FleetCounters {
        self.shared.counters
    }

    /// The first 1000 mismatches (all are counted in [`FleetCounters::requests_failed`]).
    pub fn mismatches(&self) -> &[Mismatch] {
        &self.shared.mismatches
    }

    /// Copies of frames that matched no connection (up to [`FleetConfig::keep_unmatched`]).
    pub fn unmatched_frames(&self) -> &[Vec<u8>] {
        &self.unmatched
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The TCP state of connection slot `idx`.
    pub fn tcp_state(&self, idx: usize) -> Option<State> {
        let conn = self.conns.get(idx)?;
        Some(conn.sockets.get::<tcp::Socket>(conn.handle).state())
    }

    /// Requests resolved by slot `idx`, and its script length.
    pub fn slot_progress(&self, idx: usize) -> Option<(usize, usize)> {
        self.conns.get(idx).map(|c| (c.resolved, c.script.count))
    }

    pub fn config(&self) -> &FleetConfig {
        &self.shared.config
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver, e.g. to stage hand-made frames into the link.
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    fn receive_burst(&mut self) -> Result<usize, DriverError> {
        let ClientFleet {
            driver,
            shared,
            rx_arena,
            rx_frames,
            unmatched,
            advertisements,
            resolver,
            ..
        } = self;
        let soliciting = resolver.as_ref().is_some_and(|r| r.sent > 0);
        let received = driver.rx_burst(shared.config.rx_batch, &mut |frame| {
            shared.counters.rx_frames += 1;
            if shared.neighbor_discovery(frame, soliciting, advertisements) {
                return;
            }
            match shared.demux(frame) {
                Some((idx, packet)) => {
                    let start = rx_arena.len();
                    rx_arena.extend_from_slice(packet);
                    rx_frames.push((idx, start, packet.len()));
                }
                None => {
                    shared.counters.rx_unmatched += 1;
                    if unmatched.len() < shared.config.keep_unmatched {
                        unmatched.push(frame.to_vec());
                    }
                }
            }
        })?;
        Ok(received)
    }

    /// Runs slot `idx`'s script as far as it goes now, transmits what its socket has, and
    /// re-arms its deadline.
    fn service(&mut self, idx: u32, now: Instant) {
        let ClientFleet {
            driver,
            l2,
            conns,
            shared,
            timers,
            tally,
            ..
        } = self;
        let Some(conn) = conns.get_mut(idx as usize) else {
            return;
        };
        conn.ready = false;
        let mtu = shared.config.mtu;
        // A closed session can be followed by the next one in the same service.
        for _ in 0..3 {
            shared.drive(conn, idx as usize, now);
            let mut device = ClientDevice {
                io: &mut *driver,
                l2: &l2[usize::from(conn.v6)],
                mtu,
                rx: None,
                tally: &mut *tally,
            };
            for _ in 0..MAX_EGRESS_PASSES {
                if conn.iface.poll_egress(now, &mut device, &mut conn.sockets)
                    == smoltcp::iface::PollResult::None
                {
                    break;
                }
            }
            let next = conn.iface.poll_at(now, &conn.sockets);
            let owes_nothing = next.is_none_or(|at| at > now);
            if conn.phase == Phase::Closing && owes_nothing && shared.session_over(conn) {
                conn.phase = Phase::Connect;
                continue;
            }
            break;
        }

        let socket_state = conn.sockets.get::<tcp::Socket>(conn.handle).state();
        let parked = conn.phase == Phase::Finished
            && matches!(socket_state, State::Closed | State::TimeWait);
        let next = if parked {
            None
        } else {
            let smoltcp = conn.iface.poll_at(now, &conn.sockets);
            [smoltcp.map(|at| at.total_micros()), conn.read_wake]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.max(now.total_micros()))
        };
        if next != conn.deadline {
            conn.deadline = next;
            if let Some(at) = next {
                timers.push(Reverse((at, idx)));
            }
        }
    }

    fn drop_stale_timers(&mut self) {
        while let Some(&Reverse((at, idx))) = self.timers.peek() {
            let live = self
                .conns
                .get(idx as usize)
                .is_some_and(|c| c.deadline == Some(at));
            if live {
                break;
            }
            self.timers.pop();
        }
    }
}

/// A fresh connection slot (its own interface and socket) for `script`.
fn new_conn<D: FrameIo>(
    driver: &mut D,
    l2: &[u8; ETHERNET_HEADER_LEN],
    config: &FleetConfig,
    tally: &mut TxTally,
    seed: u64,
    script: Script,
    v6: bool,
) -> Conn {
    let mut iface_config = Config::new(HardwareAddress::Ip);
    iface_config.random_seed = seed;
    let mut device = ClientDevice {
        io: driver,
        l2,
        mtu: config.mtu,
        rx: None,
        tally,
    };
    let iface = Interface::new(iface_config, &mut device, Instant::ZERO);
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; config.rx_buffer]),
        tcp::SocketBuffer::new(vec![0u8; config.tx_buffer]),
    );
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(config.ack_delay);
    socket.set_timeout(config.timeout);
    socket.set_sack_enabled(config.sack);
    let mut sockets = SocketSet::new(Vec::with_capacity(1));
    let handle = sockets.add(socket);
    Conn {
        v6,
        iface,
        sockets,
        handle,
        script,
        sent: 0,
        resolved: 0,
        on_connection: 0,
        outbox: Vec::new(),
        out_pos: 0,
        reader: ResponseReader::default(),
        phase: Phase::Connect,
        server_closing: false,
        endpoint: None,
        deadline: None,
        ready: true,
        fruitless: 0,
        resolved_at_connect: 0,
        read_clock: 0,
        read_wake: None,
    }
}

impl Shared {
    /// Takes in a neighbor discovery frame: an advertisement of the server's MAC (taken once
    /// a solicitation went out, as RFC 4861 §7.2.5 has an INCOMPLETE entry take it), or a
    /// solicitation of one of our IPv6 addresses (answered at the next poll). Other neighbor
    /// and router discovery and multicast listener messages (the server's unsolicited
    /// advertisements, say) are taken and ignored. `true` if the frame was one of those.
    fn neighbor_discovery(
        &mut self,
        frame: &[u8],
        soliciting: bool,
        advertisements: &mut Vec<(EthernetAddress, Ipv6Address, Ipv6Address)>,
    ) -> bool {
        let Some(side) = self.config.family.ipv6() else {
            return false;
        };
        if !frames::is_ipv6_housekeeping(frame) {
            return false;
        }
        if let Some(mac) = frames::neighbor_advertisement_for(frame, side.server_ip)
            && soliciting
        {
            self.server_mac6.get_or_insert(EthernetAddress(mac));
        } else if let Some((target, mac, asker)) = frames::neighbor_solicitation_in(frame) {
            let ours = u128::from(target)
                .checked_sub(u128::from(side.first_client_ip))
                .is_some_and(|k| k < u128::from(self.addresses));
            if ours && advertisements.len() < 64 {
                advertisements.push((EthernetAddress(mac), asker, target));
            }
        }
        true
    }

    /// The connection slot a received frame belongs to, and its IP packet.
    fn demux<'f>(&self, frame: &'f [u8]) -> Option<(u32, &'f [u8])> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.dst_addr() != self.config.client_mac {
            return None;
        }
        let ip_bytes = frame.get(ETHERNET_HEADER_LEN..)?;
        let (family, address, payload, packet) = match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(ip_bytes).ok()?;
                if ip.next_header() != IpProtocol::Tcp {
                    return None;
                }
                let address =
                    u32::from(ip.dst_addr()).checked_sub(u32::from(self.config.first_client_ip))?;
                let packet = ip_bytes.get(..usize::from(ip.total_len()))?;
                (0, address, ip.payload(), packet)
            }
            EthernetProtocol::Ipv6 => {
                let side = self.config.family.ipv6()?;
                let ip = Ipv6Packet::new_checked(ip_bytes).ok()?;
                if ip.next_header() != IpProtocol::Tcp {
                    return None;
                }
                let address =
                    u128::from(ip.dst_addr()).checked_sub(u128::from(side.first_client_ip))?;
                let address = u32::try_from(address).ok()?;
                let packet = ip_bytes.get(..ip.total_len())?;
                (1, address, ip.payload(), packet)
            }
            _ => return None,
        };
        if address >= self.addresses {
            return None;
        }
        let tcp = TcpPacket::new_checked(payload).ok()?;
        let key = (address << 16) | u32::from(tcp.dst_port());
        let slot = *self.port_maps[family].get(key as usize)?;
        slot.checked_sub(1).map(|idx| (idx, packet))
    }

    fn allocate_port(&mut self, idx: usize, v6: bool) -> Option<u32> {
        let family = usize::from(v6);
        let total = self.addresses * PORTS_PER_ADDRESS;
        for _ in 0..total {
            let n = self.next_port[family];
            self.next_port[family] = (n + 1) % total;
            let key = ((n / PORTS_PER_ADDRESS) << 16) | (FIRST_PORT + n % PORTS_PER_ADDRESS);
            if let Some(entry) = self.port_maps[family].get_mut(key as usize)
                && *entry == 0
            {
                *entry = idx as u32 + 1;
                return Some(key);
            }
        }
        None
    }

    fn release_port(&mut self, conn: &mut Conn) {
        let map = &mut self.port_maps[usize::from(conn.v6)];
        if let Some(entry) = conn
            .endpoint
            .take()
            .and_then(|key| map.get_mut(key as usize))
        {
            *entry = 0;
        }
    }

    /// Whether the socket of a closing slot is done with its connection.
    fn session_over(&self, conn: &Conn) -> bool {
        matches!(
            conn.sockets.get::<tcp::Socket>(conn.handle).state(),
            State::Closed | State::TimeWait
        )
    }

    /// The script step: connect, read and verify, send, close.
    fn drive(&mut self, conn: &mut Conn, idx: usize, now: Instant) {
        if conn.phase == Phase::Connect {
            self.connect(conn, idx);
        }
        if conn.phase == Phase::Open {
            self.exchange(conn, idx, now);
        }
        if conn.phase == Phase::Closing
            && conn.resolved >= conn.script.count
            && self.session_over(conn)
        {
            conn.phase = Phase::Finished;
            self.unfinished -= 1;
        }
    }

    fn connect(&mut self, conn: &mut Conn, idx: usize) {
        if conn.resolved >= conn.script.count {
            conn.phase = Phase::Finished;
            self.unfinished -= 1;
            return;
        }
        if conn.v6 && self.server_mac6.is_none() {
            // Neighbor discovery readies the slot once the server's MAC is known.
            return;
        }
        if conn.endpoint.is_some() && conn.resolved == conn.resolved_at_connect {
            conn.fruitless += 1;
        } else {
            conn.fruitless = 0;
        }
        self.release_port(conn);
        let key = if conn.fruitless >= MAX_FRUITLESS_CONNECTIONS {
            None
        } else {
            self.allocate_port(idx, conn.v6)
        };
        let Some(key) = key else {
            let why = if conn.fruitless >= MAX_FRUITLESS_CONNECTIONS {
                "gave up after repeated failed connections"
            } else {
                "no free client port"
            };
            self.fail_rest(conn, idx, why);
            conn.phase = Phase::Finished;
            self.unfinished -= 1;
            return;
        };
        conn.endpoint = Some(key);
        let (local, prefix_len, server) = match self.config.family.ipv6().filter(|_| conn.v6) {
            Some(side) => {
                let local =
                    Ipv6Address::from(u128::from(side.first_client_ip) + u128::from(key >> 16));
                (
                    IpAddress::Ipv6(local),
                    side.prefix_len,
                    IpAddress::Ipv6(side.server_ip),
                )
            }
            None => {
                let local = Ipv4Address::from(u32::from(self.config.first_client_ip) + (key >> 16));
                (
                    IpAddress::Ipv4(local),
                    self.config.prefix_len,
                    IpAddress::Ipv4(self.config.server_ip),
                )
            }
        };
        let port = (key & 0xffff) as u16;
        conn.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // One address always fits (the list holds at least one).
            let _ = addrs.push(IpCidr::new(local, prefix_len));
        });
        let socket = conn.sockets.get_mut::<tcp::Socket>(conn.handle);
        socket.abort();
        let remote = (server, self.config.server_port);
        if let Err(error) = socket.connect(conn.iface.context(), remote, (local, port)) {
            self.fail_rest(conn, idx, &format!("connect failed: {error}"));
            conn.phase = Phase::Finished;
            self.unfinished -= 1;
            return;
        }
        self.counters.connects += 1;
        conn.resolved_at_connect = conn.resolved;
        conn.sent = conn.resolved;
        conn.on_connection = 0;
        conn.outbox.clear();
        conn.out_pos = 0;
        conn.reader.reset();
        conn.server_closing = false;
        conn.phase = Phase::Open;
    }

    fn exchange(&mut self, conn: &mut Conn, idx: usize, now: Instant) {
        // Read and verify, within the read rate's allowance.
        let initial_allowance = self.read_allowance(conn, now);
        let mut allowance = initial_allowance;
        let mut framing_error = None;
        loop {
            let socket = conn.sockets.get_mut::<tcp::Socket>(conn.handle);
            if !socket.can_recv() || framing_error.is_some() || allowance == 0 {
                break;
            }
            let script = &conn.script;
            let reader = &mut conn.reader;
            let mut completed = std::mem::take(&mut self.completed);
            let sent = conn.sent;
            let resolved = conn.resolved;
            let result = socket.recv(|chunk| {
                let chunk = chunk.get(..chunk.len().min(allowance)).unwrap_or(chunk);
                allowance -= chunk.len();
                let mut pos = 0;
                while let Some(rest) = chunk.get(pos..).filter(|r| !r.is_empty()) {
                    let k = resolved + completed.len();
                    let Some(request) = script.request(k).filter(|_| k < sent) else {
                        framing_error = Some(format!("{} unsolicited bytes", rest.len()));
                        break;
                    };
                    match reader.feed(rest, request) {
                        Ok((used, done)) => {
                            pos += used;
                            completed.extend(done);
                        }
                        Err(error) => {
                            framing_error = Some(error.0);
                            break;
                        }
                    }
                }
                (chunk.len(), chunk.len())
            });
            let Ok(read) = result else {
                break;
            };
            self.counters.rx_bytes += read as u64;
            for done in completed.drain(..) {
                self.record(conn, idx, done);
            }
            self.completed = completed;
        }
        self.charge_reads(conn, now, initial_allowance - allowance);
        if let Some(problem) = framing_error {
            self.fail_outstanding(conn, idx, &problem);
            conn.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
            conn.phase = Phase::Closing;
            return;
        }

        let socket = conn.sockets.get_mut::<tcp::Socket>(conn.handle);
        let state = socket.state();
        if state == State::Closed {
            // Reset by the server, or smoltcp's user timeout. After `Connection: close` the
            // unanswered requests are simply sent again on the next connection.
            if !conn.server_closing {
                self.counters.resets += 1;
                self.fail_outstanding(conn, idx, "connection reset");
            }
            conn.phase = Phase::Closing;
            return;
        }
        let peer_closed = matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        );
        if peer_closed {
            if let Some(request) = conn.script.request(conn.resolved)
                && let Some(done) = conn.reader.finish_at_close(request)
            {
                self.record(conn, idx, done);
            }
            if !conn.server_closing {
                self.fail_outstanding(conn, idx, "server closed the connection");
            }
            conn.sockets.get_mut::<tcp::Socket>(conn.handle).close();
            conn.phase = Phase::Closing;
            return;
        }

        // Send what the script allows.
        let socket = conn.sockets.get_mut::<tcp::Socket>(conn.handle);
        if socket.may_send() && !conn.server_closing {
            let depth = conn.script.depth();
            let one = conn.script.one_per_connection();
            while conn.sent < conn.script.count
                && conn.sent - conn.resolved < depth
                && !(one && conn.on_connection >= 1)
                && conn.outbox.len() - conn.out_pos < OUTBOX_SOFT_LIMIT
            {
                let Some(request) = conn.script.request(conn.sent) else {
                    break;
                };
                request.render(one, &mut conn.outbox);
                conn.sent += 1;
                conn.on_connection += 1;
                self.counters.requests_sent += 1;
            }
            if let Some(pending) = conn.outbox.get(conn.out_pos..).filter(|p| !p.is_empty()) {
                conn.out_pos += socket.send_slice(pending).unwrap_or(0);
                if conn.out_pos >= conn.outbox.len() {
                    conn.outbox.clear();
                    conn.out_pos = 0;
                }
            }
        }

        // Our side is done when every request is resolved; after `Connection: close` we wait for
        // the server's FIN instead, so the server makes the active close (and holds TIME-WAIT).
        if conn.resolved >= conn.script.count && !conn.server_closing && !self.hold {
            socket.close();
            conn.phase = Phase::Closing;
        }
    }

    /// Bytes the connection may read now (`usize::MAX` without a read rate). The allowance
    /// accrues at the rate and is capped at one receive buffer, so an idle client does not
    /// save up more than a burst.
    fn read_allowance(&self, conn: &mut Conn, now: Instant) -> usize {
        let Some(rate) = self.config.read_rate_bytes_per_sec.filter(|&r| r > 0) else {
            return usize::MAX;
        };
        let now_us = now.total_micros();
        let burst_us = (self.config.rx_buffer as u128 * 1_000_000 / u128::from(rate)) as i64;
        conn.read_clock = conn.read_clock.max(now_us - burst_us);
        let credit = (now_us - conn.read_clock).max(0) as u128 * u128::from(rate) / 1_000_000;
        // Whole quanta only (a full segment unless the test asks for less).
        let quantum = self.config.read_quantum.max(1) as u128;
        let credit = credit - credit % quantum;
        usize::try_from(credit).unwrap_or(usize::MAX)
    }

    /// Uses up the allowance for the `read` bytes, and plans a wake-up if data is left.
    fn charge_reads(&self, conn: &mut Conn, now: Instant, read: usize) {
        let Some(rate) = self.config.read_rate_bytes_per_sec.filter(|&r| r > 0) else {
            return;
        };
        let used_us = (read as u128 * 1_000_000).div_ceil(u128::from(rate));
        conn.read_clock += i64::try_from(used_us).unwrap_or(i64::MAX / 2);
        let quantum = self.config.read_quantum.max(1) as u128;
        let mss_us = (quantum * 1_000_000).div_ceil(u128::from(rate)) as i64;
        let socket = conn.sockets.get::<tcp::Socket>(conn.handle);
        conn.read_wake = socket
            .can_recv()
            .then_some((conn.read_clock + mss_us).max(now.total_micros() + 1));
    }

    fn record(&mut self, conn: &mut Conn, idx: usize, done: Completed) {
        let k = conn.resolved;
        conn.resolved += 1;
        self.resolved_requests += 1;
        self.counters.body_bytes += done.body_len as u64;
        if done.closes {
            conn.server_closing = true;
        }
        match done.problem {
            None => self.counters.responses_ok += 1,
            Some(problem) => self.mismatch(conn, idx, k, problem),
        }
    }

    fn mismatch(&mut self, conn: &Conn, idx: usize, k: usize, problem: String) {
        self.counters.requests_failed += 1;
        if self.mismatches.len() < MAX_MISMATCHES_KEPT {
            self.mismatches.push(Mismatch {
                connection: idx,
                request: k,
                label: conn
                    .script
                    .request(k)
                    .map(|r| r.label().to_owned())
                    .unwrap_or_default(),
                problem,
            });
        }
    }

    /// Resolves every request sent on the current connection but not answered as failed.
    fn fail_outstanding(&mut self, conn: &mut Conn, idx: usize, why: &str) {
        while conn.resolved < conn.sent {
            let k = conn.resolved;
            conn.resolved += 1;
            self.resolved_requests += 1;
            self.mismatch(conn, idx, k, why.to_owned());
        }
        conn.reader.reset();
    }

    /// Resolves every remaining request of the script as failed.
    fn fail_rest(&mut self, conn: &mut Conn, idx: usize, why: &str) {
        conn.sent = conn.script.count;
        self.fail_outstanding(conn, idx, why);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sim::script::{Mode, Request};

    /// A driver that hands out queued frames and keeps what is staged.
    #[derive(Default)]
    struct Queue {
        incoming: Vec<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl FrameIo for Queue {
        fn capabilities(&self) -> sirocco_drivers::Capabilities {
            sirocco_drivers::Capabilities::ethernet(1500)
        }
        fn rx_burst(&mut self, _: usize, f: &mut dyn FnMut(&[u8])) -> Result<usize, DriverError> {
            let frames = std::mem::take(&mut self.incoming);
            frames.iter().for_each(|frame| f(frame));
            Ok(frames.len())
        }
        fn tx_room(&self) -> usize {
            64
        }
        fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            let mut frame = vec![0; len];
            fill(&mut frame);
            self.sent.push(frame);
            true
        }
        fn tx_flush(&mut self) -> Result<(), DriverError> {
            Ok(())
        }
        fn counters(&self) -> sirocco_drivers::DriverCounters {
            Default::default()
        }
    }

    fn config(seed: u64) -> FleetConfig {
        FleetConfig::new(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            Ipv4Address::new(198, 18, 0, 1),
            80,
            Ipv4Address::new(198, 19, 0, 1),
            15,
            seed,
        )
    }

    fn scripts(n: usize) -> Vec<Script> {
        let list: Arc<[Request]> = Arc::from(vec![Request::get("/", Arc::from(&b"x"[..]))]);
        (0..n)
            .map(|_| Script::each(list.clone(), Mode::KeepAlive { pipeline: 1 }))
            .collect()
    }

    #[test]
    fn first_poll_sends_one_syn_per_slot_from_distinct_ports_deterministically() {
        let run = |seed| {
            let mut fleet = ClientFleet::new(Queue::default(), config(seed), scripts(3)).unwrap();
            assert!(fleet.poll(Instant::ZERO).unwrap());
            assert_eq!(fleet.counters().connects, 3);
            fleet.driver().sent.clone()
        };
        let frames = run(1);
        assert_eq!(frames.len(), 3);
        let mut ports: Vec<u16> = frames
            .iter()
            .map(|f| {
                let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
                assert_eq!(ip.dst_addr(), Ipv4Address::new(198, 18, 0, 1));
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(tcp.syn() && !tcp.ack());
                tcp.src_port()
            })
            .collect();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        assert_eq!(frames, run(1), "same seed, same frames");
        assert_ne!(frames, run(2), "the seed changes the ISNs");
    }

    #[test]
    fn demux_ignores_frames_for_other_ports_and_addresses() {
        let mut fleet = ClientFleet::new(Queue::default(), config(1), scripts(1)).unwrap();
        fleet.poll(Instant::ZERO).unwrap();
        let syn = fleet.driver().sent[0].clone();
        // Swap the SYN's addresses around, as if the server echoed it back.
        let mut echo = syn.clone();
        echo[..6].copy_from_slice(&syn[6..12]);
        echo[6..12].copy_from_slice(&syn[..6]);
        echo[26..30].copy_from_slice(&syn[30..34]);
        echo[30..34].copy_from_slice(&syn[26..30]);
        echo[34..36].copy_from_slice(&syn[36..38]);
        echo[36..38].copy_from_slice(&syn[34..36]);
        assert!(fleet.shared.demux(&echo).is_some());
        let mut other_port = echo.clone();
        other_port[37] ^= 1;
        assert!(fleet.shared.demux(&other_port).is_none());
        let mut other_address = echo.clone();
        other_address[33] = 200;
        assert!(fleet.shared.demux(&other_address).is_none());
        assert!(fleet.shared.demux(&echo[..30]).is_none());
    }

    #[test]
    fn ipv6_slots_solicit_the_server_first_and_answer_its_solicitations() {
        let server_ip: Ipv6Address = "2001:2::2".parse().unwrap();
        let client_ip: Ipv6Address = "2001:2::1:1".parse().unwrap();
        let server_mac = [2, 0, 0, 0, 0, 9];
        let mut config = config(1);
        config.family = Family::Ipv6(Ipv6Side {
            server_ip,
            first_client_ip: client_ip,
            prefix_len: 64,
        });
        let client_mac = config.client_mac.0;
        let mut fleet = ClientFleet::new(Queue::default(), config, scripts(1)).unwrap();
        fleet.poll(Instant::ZERO).unwrap();
        // A solicitation, and no SYN while the server's MAC is unknown.
        let sent = std::mem::take(&mut fleet.driver_mut().sent);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            frames::neighbor_solicitation_in(&sent[0]),
            Some((server_ip, client_mac, client_ip))
        );
        assert_eq!(fleet.poll_at(), Some(Instant::from_secs(1)));

        // The server's advertisement, and its own solicitation of our address.
        let advert = frames::neighbor_advertisement(server_mac, server_ip, client_mac, client_ip);
        let mut asks = frames::neighbor_solicitation(server_mac, server_ip, client_ip);
        fleet.driver_mut().incoming = vec![advert, asks.clone()];
        fleet.poll(Instant::from_millis(1)).unwrap();
        assert_eq!(fleet.server_mac6(), Some(EthernetAddress(server_mac)));
        let sent = std::mem::take(&mut fleet.driver_mut().sent);
        assert_eq!(sent.len(), 2, "an advertisement and a SYN");
        assert_eq!(
            frames::neighbor_advertisement_for(&sent[0], client_ip),
            Some(client_mac)
        );
        let syn = frames::TcpSegment::parse(&sent[1]).expect("a TCP segment");
        assert_eq!(syn.dst_mac, server_mac);
        assert_eq!(
            (syn.src_ip, syn.dst_ip),
            (client_ip.into(), server_ip.into())
        );
        assert!(syn.has(frames::SYN));
        assert_eq!(fleet.counters().solicitations_sent, 1);
        assert_eq!(fleet.counters().advertisements_sent, 1);
        assert_eq!(fleet.counters().rx_unmatched, 0);

        // A solicitation of an address not ours is housekeeping, left unanswered.
        asks = frames::neighbor_solicitation(server_mac, server_ip, "2001:2::99".parse().unwrap());
        fleet.driver_mut().incoming = vec![asks];
        fleet.poll(Instant::from_millis(2)).unwrap();
        assert!(fleet.driver().sent.is_empty());
        assert_eq!(fleet.counters().rx_unmatched, 0);
    }

    #[test]
    fn many_one_request_connections_spread_over_addresses() {
        let list: Arc<[Request]> = Arc::from(vec![Request::get("/", Arc::from(&b"x"[..]))]);
        let script = Script {
            requests: list,
            first: 0,
            count: 70_000,
            mode: Mode::NewConnection,
        };
        let fleet = ClientFleet::new(Queue::default(), config(1), vec![script]).unwrap();
        assert_eq!(fleet.shared.addresses, 2);
    }
}
