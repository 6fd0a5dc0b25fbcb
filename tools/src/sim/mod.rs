//! Deterministic simulation: sirocco [`Server`]s and a [`ClientFleet`] joined by an in-memory
//! link on a [`VirtualClock`].
//!
//! # Ports and engines
//!
//! [`Simulation::new`] builds the memory link: an RSS NIC in memory ([`MemoryLink::rss_nic`])
//! with one receive queue per engine ([`SimConfig::engines`]), and one engine (a [`Server`]
//! with its own driver port, stack and pools, sharing only the [`ContentCache`]) on each
//! queue, as a multi-queue server runs one engine per NIC queue and core. With one engine the
//! NIC is exactly the plain link pair ([`MemoryLink::pair`]). [`Simulation::with_ports`] and
//! [`Simulation::with_engine_ports`] take any joined [`FrameIo`] ends instead, e.g. an emulated
//! netmap pair, so the same loop drives the server over another driver's code. A port type
//! only needs [`SimPort`], which tells the loop when the next frame reaches it (ports with no
//! clock of their own deliver at once).
//!
//! # The loop
//!
//! [`Simulation::run_until`] repeats one [`event_loop::tick`]: poll every engine, poll the
//! fleet; when none moved a frame, jump the virtual clock to the earliest of every engine's and
//! the fleet's deadlines and the next frame arrival on any port (at least one microsecond
//! ahead, so a deadline that does not fire cannot hold time still). It stops when the condition
//! holds, and never hangs: a virtual-time limit, an iteration cap, and "nothing left that could
//! ever happen" each end the run with a [`SimError`] that describes where it stood.
//!
//! # Cost accounting
//!
//! The real (wall-clock) nanoseconds spent inside each engine's `Server::poll` and inside the
//! fleet's poll are summed separately: in [`Timing`] (all engines together, and the busiest
//! one) and per engine in [`SimReport::engines`]. The server side is what server cores would
//! spend on the same traffic; the benchmark reports it per request.
//!
//! # Determinism
//!
//! Every seed in a run is drawn from a SplitMix64 stream on [`SimConfig::seed`]: the first
//! engine's seeds (flow-table key, cell ISNs), the fleet's interface seeds, the link's fault
//! seed (when faults are on), then each further engine's. The same seed, site and scripts give
//! bit-identical frames; wall-clock time is only measured, never read into the simulation.

pub mod client;
mod device;
pub mod event_loop;
pub mod flood;
pub mod impair;
pub mod reader;
pub mod script;
pub mod seeds;
pub mod site;

use std::sync::Arc;

use sirocco::cache::ContentCache;
use sirocco::server::{Server, ServerConfig, ServerError, Stats};
use sirocco_drivers::alloc_count::heap_growth_in;
use sirocco_drivers::capture::Capture;
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::faults::Faults;
use sirocco_drivers::memory::{FaultConfig, FaultCounters, LinkConfig, MemoryLink, MemoryPort};
use sirocco_drivers::netmap::{EmulatedPort, Netmap};
use sirocco_drivers::rss::{INDIRECTION_ENTRIES, Rss};
use sirocco_drivers::{DriverError, FrameIo};
use sirocco_netstack::{
    EthernetAddress, Instant, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr, StackConfig,
};

use event_loop::{Parties, Tick};

pub use client::{ClientFleet, Family, FleetConfig, FleetCounters, FleetError, Ipv6Side, Mismatch};
pub use impair::{Fate, Impaired, Logged, SegmentView};
pub use script::{Expect, ExpectBody, Method, Mode, Request, Script};
pub use seeds::SplitMix64;
pub use site::{SiteFile, SiteTree};

/// The server's MAC in simulations.
pub const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 198, 18, 0, 1]);
/// The server's address (RFC 2544 benchmarking range).
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
/// The first client address; clients and server share 198.18.0.0/15.
pub const FIRST_CLIENT_IP: Ipv4Address = Ipv4Address::new(198, 19, 0, 1);
pub const PREFIX_LEN: u8 = 15;
/// The server's IPv6 address (RFC 5180 benchmarking prefix 2001:2::/48).
pub const SERVER_IP6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// The first IPv6 client address; clients and server share 2001:2::/64.
pub const FIRST_CLIENT_IP6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 1, 1);
pub const PREFIX_LEN6: u8 = 64;
pub const HTTP_PORT: u16 = 80;
/// `Date` headers in simulations start here (2023-11-14T22:13:20Z), so output is reproducible.
pub const SIM_UNIX_TIME: u64 = 1_700_000_000;

/// A [`FrameIo`] end a [`Simulation`] can run on: what the loop needs to know beyond moving
/// frames.
pub trait SimPort: FrameIo {
    /// When the next frame in flight toward this port can be received, in virtual
    /// microseconds, or `None` if nothing is in flight. A time already past (such as 0) means
    /// "now". The default, `None`, suits ports that deliver every frame by the time the sender
    /// flushes.
    fn next_arrival_micros(&self) -> Option<u64> {
        None
    }

    /// Faults injected into the frames this port sent. The default is none.
    fn fault_counters(&self) -> FaultCounters {
        FaultCounters::default()
    }

    /// Wall-clock nanoseconds this port's flushes spent being the simulated network, which its
    /// owner's poll time leaves out (see [`MemoryPort::wire_ns`]). The default is none.
    fn wire_ns(&self) -> u64 {
        0
    }
}

impl SimPort for MemoryPort {
    fn next_arrival_micros(&self) -> Option<u64> {
        MemoryPort::next_arrival_micros(self)
    }

    fn fault_counters(&self) -> FaultCounters {
        MemoryPort::fault_counters(self)
    }

    fn wire_ns(&self) -> u64 {
        MemoryPort::wire_ns(self)
    }
}

/// A recorded port delivers when the port it wraps does.
impl<D: SimPort> SimPort for Capture<D> {
    fn next_arrival_micros(&self) -> Option<u64> {
        self.inner().next_arrival_micros()
    }

    fn fault_counters(&self) -> FaultCounters {
        self.inner().fault_counters()
    }

    fn wire_ns(&self) -> u64 {
        self.inner().wire_ns()
    }
}

/// Frames the wrapper injects faults into arrive when the port it wraps delivers them; its
/// faults add to the port's own.
impl<D: SimPort> SimPort for Faults<D> {
    fn next_arrival_micros(&self) -> Option<u64> {
        self.inner().next_arrival_micros()
    }

    fn fault_counters(&self) -> FaultCounters {
        let mut counters = self.inner().fault_counters();
        counters += Faults::fault_counters(self);
        counters
    }
}

/// The emulation has no clock: a flush puts frames on the wire and the peer's next sync
/// receives them. Frames still on the wire (the peer's RX ring was full) are due now.
impl SimPort for Netmap<EmulatedPort> {
    fn next_arrival_micros(&self) -> Option<u64> {
        (self.port().wire_pending() > 0).then_some(0)
    }
}

/// Everything a [`Simulation`] is built from besides the content and the scripts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Every other seed is derived from this one; seeds set in `link.faults` and `fleet` are
    /// overwritten.
    pub seed: u64,
    /// Both directions of the link (B→A uses the complement of the fault seed). Only
    /// [`Simulation::new`] reads it.
    pub link: LinkConfig,
    /// Every engine's configuration.
    pub server: ServerConfig,
    pub fleet: FleetConfig,
    /// Engines, each on its own queue of the memory NIC: 1 (the default) to 128, the
    /// indirection table's size. Only [`Simulation::new`] and
    /// [`Simulation::over_memory_link`] read it.
    pub engines: usize,
}

impl SimConfig {
    /// The standard addresses, a 1500-byte link with 10 µs latency and a queue too deep to
    /// overflow, no faults, one engine, and room for `connections` concurrent connections on
    /// every engine.
    pub fn new(seed: u64, connections: usize) -> Self {
        let mut stack =
            StackConfig::new(SERVER_MAC, Ipv4Cidr::new(SERVER_IP, PREFIX_LEN), HTTP_PORT);
        stack.max_connections = connections.max(1) + 64;
        let mut server = ServerConfig::new(stack);
        server.unix_time_at_zero = SIM_UNIX_TIME;
        // Deep enough that a clean link never tail-drops: every connection may have a full
        // send buffer of segments in flight at once.
        let link = LinkConfig {
            queue_limit: connections.saturating_mul(64).max(65_536),
            ..LinkConfig::default()
        };
        let fleet = FleetConfig::new(
            SERVER_MAC,
            SERVER_IP,
            HTTP_PORT,
            FIRST_CLIENT_IP,
            PREFIX_LEN,
            seed,
        );
        SimConfig {
            seed,
            link,
            server,
            fleet,
            engines: 1,
        }
    }

    /// The same, with `engines` engines behind an RSS NIC in memory.
    pub fn with_engines(mut self, engines: usize) -> Self {
        self.engines = engines;
        self
    }

    /// The same, with the server and the clients on `families`: over IPv6 the server has only
    /// [`SERVER_IP6`] (no IPv4 address), and the clients come from [`FIRST_CLIENT_IP6`] and
    /// find the server's MAC with neighbor discovery; a mixed run gives the server both
    /// addresses and alternates the clients' family slot by slot.
    pub fn with_families(mut self, families: Families) -> Self {
        let side = Ipv6Side {
            server_ip: SERVER_IP6,
            first_client_ip: FIRST_CLIENT_IP6,
            prefix_len: PREFIX_LEN6,
        };
        let stack = &mut self.server.stack;
        let ipv4 = Some(Ipv4Cidr::new(SERVER_IP, PREFIX_LEN));
        let ipv6 = vec![Ipv6Cidr::new(SERVER_IP6, PREFIX_LEN6)];
        (stack.ipv4, stack.ipv6, self.fleet.family) = match families {
            Families::Ipv4 => (ipv4, Vec::new(), Family::Ipv4),
            Families::Ipv6 => (None, ipv6, Family::Ipv6(side)),
            Families::Mixed => (ipv4, ipv6, Family::Mixed(side)),
        };
        self
    }

    /// The same, with IP MTU `mtu` (576 ..= 9000) on the link, the server and every client.
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.link.mtu = mtu;
        self.server.stack.mtu = mtu;
        self.fleet.mtu = mtu;
        self
    }

    /// The same, with `faults` on both directions of the link.
    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.link.faults = faults;
        self
    }
}

/// The address families of a simulation ([`SimConfig::with_families`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Families {
    /// The default.
    #[default]
    Ipv4,
    Ipv6,
    /// A dual-stack server; half the clients over IPv4, half over IPv6.
    Mixed,
}

/// Bounds on one run call. Both are counted from the start of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub virtual_micros: u64,
    pub iterations: u64,
}

impl Limits {
    /// `virtual_secs` of virtual time, and at most 50 million loop iterations.
    pub fn secs(virtual_secs: u64) -> Self {
        Limits {
            virtual_micros: virtual_secs.saturating_mul(1_000_000),
            iterations: 50_000_000,
        }
    }
}

/// Where the time went. Nanoseconds are real (wall-clock) time, summed around each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Inside `Server::poll`, every engine's summed: the server CPU time of the run. Leaves out
    /// `wire_ns`.
    pub server_ns: u64,
    /// Inside `Server::poll`, spent by the engines' memory links being the network (routing,
    /// the wire's timing, faults, the in-flight queues; see [`MemoryPort::wire_ns`]): no
    /// server's work, so in no engine's time.
    pub wire_ns: u64,
    /// Inside the busiest engine's `Server::poll`: with one core per engine, the time the
    /// server side needed. Equal to `server_ns` with one engine.
    pub busiest_engine_ns: u64,
    /// Inside `ClientFleet::poll`.
    pub client_ns: u64,
    pub iterations: u64,
    /// Times the clock jumped because nothing moved.
    pub clock_jumps: u64,
}

/// One engine's part of a [`SimReport`].
#[derive(Debug, Clone)]
pub struct EngineReport {
    pub stats: Stats,
    /// Real nanoseconds inside this engine's `Server::poll`.
    pub server_ns: u64,
    /// Faults injected on the frames this engine sent.
    pub to_client: FaultCounters,
}

/// The state of a simulation, for assertions and error messages.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub virtual_micros: u64,
    pub timing: Timing,
    pub fleet: FleetCounters,
    /// (resolved, total) requests.
    pub progress: (u64, u64),
    pub mismatches: Vec<Mismatch>,
    /// Every engine's counters added up (the one engine's, when there is one).
    pub server: Stats,
    /// Each engine, in queue order.
    pub engines: Vec<EngineReport>,
    /// Faults injected on frames the server (every engine) sent, and on frames the clients
    /// sent.
    pub server_to_client: FaultCounters,
    pub client_to_server: FaultCounters,
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.server;
        write!(
            f,
            "t={:.6}s iterations={} resolved={}/{} ok={} failed={} resets={} connects={} | \
             server: conns={} requests={} 2xx={} 4xx={} 5xx={} dropped={} rst_sent={} rx={} tx={}",
            self.virtual_micros as f64 / 1e6,
            self.timing.iterations,
            self.progress.0,
            self.progress.1,
            self.fleet.responses_ok,
            self.fleet.requests_failed,
            self.fleet.resets,
            self.fleet.connects,
            s.connections,
            s.http.requests,
            s.http.responses_2xx,
            s.http.responses_4xx,
            s.http.responses_5xx,
            s.stack.total_dropped(),
            s.stack.rst_sent,
            s.driver.rx_frames,
            s.driver.tx_frames,
        )?;
        if self.engines.len() > 1 {
            for (i, engine) in self.engines.iter().enumerate() {
                let s = &engine.stats;
                write!(
                    f,
                    "\n  engine {i}: conns={} accepted={} requests={} dropped={} rst_sent={} \
                     rx={} tx={} server_ns={}",
                    s.connections,
                    s.stack.syn_accepted,
                    s.http.requests,
                    s.stack.total_dropped(),
                    s.stack.rst_sent,
                    s.driver.rx_frames,
                    s.driver.tx_frames,
                    engine.server_ns,
                )?;
            }
        }
        for mismatch in self.mismatches.iter().take(5) {
            write!(f, "\n  {mismatch}")?;
        }
        if self.mismatches.len() > 5 {
            write!(f, "\n  ... {} more", self.mismatches.len() - 5)?;
        }
        Ok(())
    }
}

/// Why a simulation could not be built or did not finish.
#[derive(Debug)]
pub enum SimError {
    Server(ServerError),
    Fleet(FleetError),
    Driver(DriverError),
    /// An engine count outside `1..=128`, or no server port given.
    Engines(usize),
    /// The virtual-time limit passed first.
    TimeLimit(Box<SimReport>),
    /// The iteration cap was reached first.
    IterationLimit(Box<SimReport>),
    /// No deadline and no frame in flight: nothing can ever happen again.
    Stalled(Box<SimReport>),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Server(e) => write!(f, "server: {e}"),
            SimError::Fleet(e) => write!(f, "client fleet: {e}"),
            SimError::Driver(e) => write!(f, "link: {e}"),
            SimError::Engines(n) => write!(
                f,
                "{n} engines: a simulation runs 1 to {INDIRECTION_ENTRIES} (one per NIC queue)"
            ),
            SimError::TimeLimit(r) => write!(f, "virtual-time limit reached: {r}"),
            SimError::IterationLimit(r) => write!(f, "iteration cap reached: {r}"),
            SimError::Stalled(r) => write!(f, "stalled, nothing left to happen: {r}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<DriverError> for SimError {
    fn from(e: DriverError) -> Self {
        SimError::Driver(e)
    }
}

/// Engines and a client fleet on one virtual clock, over joined ports (the memory NIC unless
/// built with [`Simulation::with_ports`] or [`Simulation::with_engine_ports`]). See the module
/// documentation.
pub struct Simulation<D: SimPort = MemoryPort> {
    clock: VirtualClock,
    /// One per queue; never empty.
    servers: Vec<Server<D>>,
    fleet: ClientFleet<D>,
    timing: Timing,
    /// Real nanoseconds inside each engine's `Server::poll`.
    engine_ns: Vec<u64>,
    /// Bytes the engines hold on the heap: allocated less freed inside `Server::new` and
    /// `Server::poll`. See [`Simulation::server_heap_bytes`].
    server_heap: i64,
}

impl Simulation {
    /// Builds the link (a NIC with `config.engines` queues), one engine per queue (serving
    /// `cache`) and one client connection slot per script.
    pub fn new(
        cache: Arc<ContentCache>,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        Self::over_memory_link(cache, config, scripts, |port, _| port)
    }
}

/// Draws every seed from `config.seed`, always in the same order whatever the ports: writes
/// the fleet's and the link's into `config` and returns one seed per engine. Engines past the
/// first draw after the link, so a one-engine run has the seeds it always had.
fn draw_seeds(config: &mut SimConfig) -> Result<Vec<u64>, SimError> {
    if !(1..=INDIRECTION_ENTRIES).contains(&config.engines) {
        return Err(SimError::Engines(config.engines));
    }
    let mut seeds = SplitMix64::new(config.seed);
    let first = seeds.next_u64();
    config.fleet.seed = seeds.next_u64();
    config.link.faults.seed = seeds.next_u64();
    let more = (1..config.engines).map(|_| seeds.next_u64());
    Ok(std::iter::once(first).chain(more).collect())
}

/// The server a [`Simulation`] on `config` would run (its first engine), on any `port`: the
/// same seeds (drawn from `config.seed` in the same order), addresses and `Date` clock. For
/// drivers of the server other than the client fleet, such as trace replay (`crate::replay`).
pub fn sim_server<P: FrameIo>(
    port: P,
    cache: Arc<ContentCache>,
    config: &SimConfig,
) -> Result<Server<P>, SimError> {
    let mut config = config.clone();
    let server_seed = draw_seeds(&mut config)?[0];
    seeded_server(port, cache, config.server, server_seed)
}

/// `server.poll(now)`, adding what it left allocated to `heap`.
fn poll_counting_heap<P: FrameIo>(
    server: &mut Server<P>,
    now: Instant,
    heap: &mut i64,
) -> Result<bool, SimError> {
    let (moved, grown) = heap_growth_in(|| server.poll(now));
    *heap += grown;
    Ok(moved?)
}

fn seeded_server<P: FrameIo>(
    port: P,
    cache: Arc<ContentCache>,
    config: ServerConfig,
    seed: u64,
) -> Result<Server<P>, SimError> {
    let mut server_seeds = SplitMix64::new(seed);
    Server::new(
        port,
        cache,
        config,
        Box::new(move || server_seeds.next_u64()),
    )
    .map_err(SimError::Server)
}

impl<D: SimPort> Simulation<D> {
    /// Like [`Simulation::new`], with each port of the memory NIC wrapped by `wrap` (called for
    /// each engine's queue port in queue order, then the client's) before use: a [`Capture`]
    /// that records the run to a pcap on the simulation's clock, say, or a port that drops
    /// chosen frames.
    pub fn over_memory_link(
        cache: Arc<ContentCache>,
        mut config: SimConfig,
        scripts: Vec<Script>,
        mut wrap: impl FnMut(MemoryPort, &VirtualClock) -> D,
    ) -> Result<Self, SimError> {
        let engine_seeds = draw_seeds(&mut config)?;
        let clock = VirtualClock::new();
        let rss = Rss::new(engine_seeds.len());
        let nic = MemoryLink::rss_nic(config.link, rss, clock.clone());
        let server_ports: Vec<D> = nic.queues.into_iter().map(|p| wrap(p, &clock)).collect();
        let client_port = wrap(nic.client, &clock);
        Self::assemble(
            clock,
            engine_seeds,
            server_ports,
            client_port,
            cache,
            config,
            scripts,
        )
    }

    /// The server on `server_port` and the fleet on `client_port`, two ends the caller has
    /// already joined. `config.link` and `config.engines` are not used. The virtual clock
    /// starts at 0 and is the simulation's own: ports must not need it (see [`SimPort`]).
    pub fn with_ports(
        server_port: D,
        client_port: D,
        cache: Arc<ContentCache>,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        Self::with_engine_ports(vec![server_port], client_port, cache, config, scripts)
    }

    /// One engine on each of `server_ports` and the fleet on `client_port`, ends the caller
    /// has already joined (and steers between). `config.link` is not used, and `config.engines`
    /// is taken from the number of ports. The virtual clock starts at 0 and is the simulation's
    /// own: ports must not need it (see [`SimPort`]).
    pub fn with_engine_ports(
        server_ports: Vec<D>,
        client_port: D,
        cache: Arc<ContentCache>,
        mut config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        config.engines = server_ports.len();
        let engine_seeds = draw_seeds(&mut config)?;
        let clock = VirtualClock::new();
        Self::assemble(
            clock,
            engine_seeds,
            server_ports,
            client_port,
            cache,
            config,
            scripts,
        )
    }

    fn assemble(
        clock: VirtualClock,
        engine_seeds: Vec<u64>,
        server_ports: Vec<D>,
        client_port: D,
        cache: Arc<ContentCache>,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        if server_ports.is_empty() || server_ports.len() != engine_seeds.len() {
            return Err(SimError::Engines(server_ports.len()));
        }
        let (servers, server_heap) = heap_growth_in(|| {
            server_ports
                .into_iter()
                .zip(engine_seeds)
                .map(|(port, seed)| {
                    seeded_server(port, Arc::clone(&cache), config.server.clone(), seed)
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let servers = servers?;
        let fleet =
            ClientFleet::new(client_port, config.fleet, scripts).map_err(SimError::Fleet)?;
        Ok(Simulation {
            clock,
            engine_ns: vec![0; servers.len()],
            servers,
            fleet,
            timing: Timing::default(),
            server_heap,
        })
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        event_loop::instant(self.clock.now_micros())
    }

    /// One iteration: poll every engine in queue order, then the fleet, at the current virtual
    /// time. `true` if any moved a frame.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.poll_all(self.clock.now_micros())
    }

    fn poll_all(&mut self, now_micros: u64) -> Result<bool, SimError> {
        let now = event_loop::instant(now_micros);
        let mut moved = false;
        let mut started = std::time::Instant::now();
        for (server, spent) in self.servers.iter_mut().zip(&mut self.engine_ns) {
            let wire_before = server.driver().wire_ns();
            moved |= poll_counting_heap(server, now, &mut self.server_heap)?;
            let ended = std::time::Instant::now();
            let wire = server.driver().wire_ns().saturating_sub(wire_before);
            self.timing.wire_ns += wire;
            let ns = nanos(ended - started).saturating_sub(wire);
            *spent += ns;
            self.timing.server_ns += ns;
            self.timing.busiest_engine_ns = self.timing.busiest_engine_ns.max(*spent);
            started = ended;
        }
        moved |= self.fleet.poll(now)?;
        self.timing.client_ns += nanos(started.elapsed());
        self.timing.iterations += 1;
        Ok(moved)
    }

    /// One `Server::poll` of the first engine at `now`, alone (for callers that drive the
    /// parties themselves, timing each), its heap counted in [`Simulation::server_heap_bytes`].
    pub fn poll_server(&mut self, now: Instant) -> Result<bool, SimError> {
        poll_counting_heap(&mut self.servers[0], now, &mut self.server_heap)
    }

    /// The first engine's [`SimPort::wire_ns`]: a caller timing [`Simulation::poll_server`]
    /// leaves out what this grew by meanwhile.
    pub fn server_wire_ns(&self) -> u64 {
        self.servers[0].driver().wire_ns()
    }

    /// Runs until `done` holds (checked before every iteration). See the module documentation.
    pub fn run_until(
        &mut self,
        limits: Limits,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), SimError> {
        let deadline = self
            .clock
            .now_micros()
            .saturating_add(limits.virtual_micros);
        let iteration_cap = self.timing.iterations.saturating_add(limits.iterations);
        loop {
            if done(self) {
                return Ok(());
            }
            if self.timing.iterations >= iteration_cap {
                return Err(SimError::IterationLimit(Box::new(self.report())));
            }
            match self.tick(deadline)? {
                Tick::Moved | Tick::Jumped | Tick::Finished => {}
                Tick::Stalled if done(self) => return Ok(()),
                Tick::Stalled => return Err(SimError::Stalled(Box::new(self.report()))),
                Tick::PastDeadline => return Err(SimError::TimeLimit(Box::new(self.report()))),
            }
        }
    }

    /// Runs `iterations` iterations of the loop (fewer if nothing is left to happen, or the
    /// next event is more than `max_virtual_micros` away), whatever the state of the scripts.
    /// For tests that interleave their own frames with the simulation's.
    pub fn run_steps(&mut self, iterations: u64, max_virtual_micros: u64) -> Result<(), SimError> {
        let deadline = self.clock.now_micros().saturating_add(max_virtual_micros);
        for _ in 0..iterations {
            match self.tick(deadline)? {
                Tick::Moved | Tick::Jumped => {}
                Tick::Finished | Tick::Stalled | Tick::PastDeadline => break,
            }
        }
        Ok(())
    }

    /// One iteration, and a clock jump to the next event if nothing moved
    /// ([`event_loop::tick`]).
    fn tick(&mut self, deadline: u64) -> Result<Tick, SimError> {
        let tick = event_loop::tick(self, deadline)?;
        if tick == Tick::Jumped {
            self.timing.clock_jumps += 1;
        }
        Ok(tick)
    }

    /// Runs until every request of every script is resolved; returns the report. Mismatches do
    /// not make this an error: check [`SimReport::mismatches`].
    pub fn run_until_done(&mut self, limits: Limits) -> Result<SimReport, SimError> {
        self.run_until(limits, |sim| sim.fleet.is_done())?;
        Ok(self.report())
    }

    /// Runs until every client connection has closed and no engine holds a connection.
    pub fn settle(&mut self, limits: Limits) -> Result<SimReport, SimError> {
        self.run_until(limits, |sim| {
            sim.fleet.is_quiet() && sim.servers.iter().all(|s| s.stats().connections == 0)
        })?;
        Ok(self.report())
    }

    /// The earliest deadline or frame arrival anywhere (every engine, the fleet, every port),
    /// in virtual microseconds: where the clock jumps when nothing moved (for loops that drive
    /// the simulation by hand too).
    pub fn next_event_micros(&self) -> Option<u64> {
        let micros = event_loop::micros;
        let engines = self.servers.iter().flat_map(|server| {
            [
                server.poll_at().map(micros),
                server.driver().next_arrival_micros(),
            ]
        });
        let fleet = [
            self.fleet.poll_at().map(micros),
            self.fleet.driver().next_arrival_micros(),
        ];
        engines.chain(fleet).flatten().min()
    }

    pub fn report(&self) -> SimReport {
        let engines: Vec<EngineReport> = self
            .servers
            .iter()
            .zip(&self.engine_ns)
            .map(|(server, &server_ns)| EngineReport {
                stats: server.stats(),
                server_ns,
                to_client: server.driver().fault_counters(),
            })
            .collect();
        let mut server = engines[0].stats.clone();
        let mut server_to_client = engines[0].to_client;
        for engine in &engines[1..] {
            add_stats(&mut server, &engine.stats);
            server_to_client += engine.to_client;
        }
        SimReport {
            virtual_micros: self.clock.now_micros(),
            timing: self.timing,
            fleet: self.fleet.counters(),
            progress: self.fleet.progress(),
            mismatches: self.fleet.mismatches().to_vec(),
            server,
            engines,
            server_to_client,
            client_to_server: self.fleet.driver().fault_counters(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The bytes the engines hold on the heap now: what `Server::new` and every
    /// `Server::poll` of this simulation allocated, less what they freed (requested sizes,
    /// without the allocator's overhead; the shared content cache is not in it). Measured only
    /// in a program whose global allocator is `sirocco_drivers::alloc_count::CountingAllocator`
    /// (`sirocco-bench` is one); otherwise 0.
    pub fn server_heap_bytes(&self) -> i64 {
        self.server_heap
    }

    /// Zeroes the timing sums, the engines' too (after a warm-up phase, say).
    pub fn reset_timing(&mut self) {
        self.timing = Timing::default();
        self.engine_ns.fill(0);
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// The first engine: the server, when there is one engine.
    pub fn server(&self) -> &Server<D> {
        &self.servers[0]
    }

    /// The first engine, mutably.
    pub fn server_mut(&mut self) -> &mut Server<D> {
        &mut self.servers[0]
    }

    /// Every engine, in queue order.
    pub fn engines(&self) -> &[Server<D>] {
        &self.servers
    }

    pub fn engines_mut(&mut self) -> &mut [Server<D>] {
        &mut self.servers
    }

    pub fn fleet(&self) -> &ClientFleet<D> {
        &self.fleet
    }

    pub fn fleet_mut(&mut self) -> &mut ClientFleet<D> {
        &mut self.fleet
    }
}

/// The engines and the fleet, on the simulation's clock.
impl<D: SimPort> Parties for Simulation<D> {
    type Error = SimError;

    fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    fn poll(&mut self, now: u64) -> Result<bool, SimError> {
        self.poll_all(now)
    }

    fn next_event_micros(&self) -> Option<u64> {
        Simulation::next_event_micros(self)
    }
}

/// Adds `other`'s counters to `total`; connections (a gauge) add up too.
fn add_stats(total: &mut Stats, other: &Stats) {
    total.driver += other.driver;
    total.stack += &other.stack;
    total.http += &other.http;
    total.connections += other.connections;
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (SiteTree, Arc<ContentCache>) {
        let mut tree = SiteTree::new("sim-unit").unwrap();
        tree.add("a.txt", seeds::bytes(1, 3000)).unwrap();
        tree.add("b.bin", seeds::bytes(2, 512)).unwrap();
        let cache = Arc::new(ContentCache::load(tree.root()).unwrap());
        (tree, cache)
    }

    fn run(seed: u64, mode: Mode) -> (SimReport, Vec<u8>) {
        let (tree, cache) = site();
        let scripts = (0..4)
            .map(|i| Script {
                requests: tree.get_all(),
                first: i,
                count: 3,
                mode,
            })
            .collect();
        let mut sim = Simulation::new(cache, SimConfig::new(seed, 4), scripts).unwrap();
        let report = sim.run_until_done(Limits::secs(10)).unwrap();
        let settled = sim.settle(Limits::secs(30)).unwrap();
        let fingerprint = format!(
            "{:?} {:?} {:?}",
            settled.virtual_micros, settled.fleet, settled.server.driver
        );
        (report, fingerprint.into_bytes())
    }

    #[test]
    fn keep_alive_and_new_connection_scripts_complete_byte_exact() {
        for mode in [Mode::KeepAlive { pipeline: 2 }, Mode::NewConnection] {
            let (report, _) = run(7, mode);
            assert!(report.mismatches.is_empty(), "{report}");
            assert_eq!(report.progress, (12, 12));
            assert_eq!(report.fleet.responses_ok, 12);
            assert_eq!(report.server.http.requests, 12, "{report}");
        }
    }

    #[test]
    fn a_jumbo_mtu_serves_byte_exact_in_fewer_longer_frames() {
        let frames = |mtu: usize| {
            let mut tree = SiteTree::new("sim-jumbo").unwrap();
            tree.add("big.bin", seeds::bytes(3, 256 << 10)).unwrap();
            let cache = Arc::new(ContentCache::load(tree.root()).unwrap());
            let script = Script::each(tree.get_all(), Mode::KeepAlive { pipeline: 1 });
            let config = SimConfig::new(4, 1).with_mtu(mtu);
            let mut sim = Simulation::new(cache, config, vec![script]).unwrap();
            let report = sim.run_until_done(Limits::secs(10)).unwrap();
            assert!(report.mismatches.is_empty(), "{report}");
            assert_eq!(report.fleet.responses_ok, 1, "{report}");
            let d = report.server.driver;
            (d.tx_frames, d.tx_bytes / d.tx_frames.max(1))
        };
        let (standard, standard_len) = frames(1500);
        let (jumbo, jumbo_len) = frames(9000);
        assert!(standard_len <= 1514, "{standard_len}");
        assert!(jumbo_len > 4096, "{jumbo_len}");
        assert!(
            jumbo * 3 < standard,
            "{jumbo} frames at 9000, {standard} at 1500"
        );
    }

    #[test]
    fn a_fixed_seed_gives_the_same_run() {
        let mode = Mode::KeepAlive { pipeline: 1 };
        assert_eq!(run(3, mode).1, run(3, mode).1);
    }

    #[test]
    fn a_wrong_byte_is_reported_as_a_mismatch() {
        let (tree, cache) = site();
        let mut wrong = tree.body("/a.txt").unwrap().to_vec();
        wrong[2999] ^= 1;
        let requests = vec![
            Request::get("/a.txt", wrong.into()),
            Request::get("/b.bin", tree.body("/b.bin").unwrap()),
            Request::status(Method::Get, "/missing", 404),
            Request::status(Method::Get, "/b.bin", 404),
        ];
        let script = Script::each(requests.into(), Mode::KeepAlive { pipeline: 3 });
        let mut sim = Simulation::new(cache, SimConfig::new(2, 1), vec![script]).unwrap();
        let report = sim.run_until_done(Limits::secs(5)).unwrap();
        assert_eq!(report.fleet.responses_ok, 2, "{report}");
        let problems: Vec<_> = report
            .mismatches
            .iter()
            .map(|m| m.problem.as_str())
            .collect();
        assert_eq!(
            problems,
            ["body differs at byte 2999", "status 200, expected 404"]
        );
        assert_eq!(
            report.fleet.connects, 1,
            "mismatches keep the connection: {report}"
        );
    }

    #[test]
    fn a_silent_server_port_is_reported_not_hung() {
        let (tree, cache) = site();
        let mut config = SimConfig::new(1, 1);
        // Clients talk to a port nobody listens on: every SYN draws an RST, and the slot gives
        // up after a few tries instead of looping.
        config.fleet.server_port = 81;
        let script = Script::each(tree.get_all(), Mode::KeepAlive { pipeline: 1 });
        let mut sim = Simulation::new(cache, config, vec![script]).unwrap();
        let report = sim.run_until_done(Limits::secs(5)).unwrap();
        assert_eq!(report.fleet.requests_failed, 2);
        assert!(report.server.stack.drop_tcp_port_closed >= 1, "{report}");
    }

    #[test]
    fn the_faults_wrapper_impairs_any_port_and_a_seed_fixes_the_run() {
        let run = || {
            let (tree, cache) = site();
            let scripts = (0..4)
                .map(|i| Script {
                    requests: tree.get_all(),
                    first: i,
                    count: 6,
                    mode: Mode::KeepAlive { pipeline: 2 },
                })
                .collect();
            let mut port_seed = 40;
            let mut sim =
                Simulation::over_memory_link(cache, SimConfig::new(5, 4), scripts, |port, _| {
                    port_seed += 1;
                    let faults = FaultConfig {
                        corrupt: 0.02,
                        ..FaultConfig::lossy(port_seed, 0.1, 0.1, 0.1)
                    };
                    Faults::new(port, &faults)
                })
                .unwrap();
            sim.run_until_done(Limits::secs(600)).unwrap();
            sim.settle(Limits::secs(600)).unwrap()
        };
        let report = run();
        assert!(report.mismatches.is_empty(), "{report}");
        assert_eq!(report.fleet.responses_ok, 24, "{report}");
        for faults in [report.server_to_client, report.client_to_server] {
            assert!(faults.lost > 0 && faults.reordered > 0, "{faults:?}");
        }
        let fingerprint = |r: &SimReport| {
            format!(
                "{} {:?} {:?} {:?} {:?}",
                r.virtual_micros, r.fleet, r.server.driver, r.server_to_client, r.client_to_server
            )
        };
        assert_eq!(fingerprint(&report), fingerprint(&run()));
    }

    #[test]
    fn ipv6_clients_find_the_server_with_one_solicitation_or_report_its_silence() {
        let (tree, cache) = site();
        let scripts = || {
            (0..4)
                .map(|i| Script {
                    requests: tree.get_all(),
                    first: i,
                    count: 2,
                    mode: Mode::KeepAlive { pipeline: 1 },
                })
                .collect()
        };
        let config = SimConfig::new(4, 4).with_families(Families::Mixed);
        let mut sim = Simulation::new(Arc::clone(&cache), config, scripts()).unwrap();
        let report = sim.run_until_done(Limits::secs(10)).unwrap();
        assert!(report.mismatches.is_empty(), "{report}");
        assert_eq!(report.fleet.responses_ok, 8, "{report}");
        assert_eq!(report.fleet.solicitations_sent, 1);
        assert_eq!(sim.fleet().server_mac6(), Some(SERVER_MAC));

        // A server without the IPv6 address never answers: the IPv6 half fails, named, after
        // ten solicitations a second apart; the IPv4 half is served.
        let mut config = SimConfig::new(4, 4).with_families(Families::Mixed);
        config.server.stack.ipv6.clear();
        let mut sim = Simulation::new(cache, config, scripts()).unwrap();
        let report = sim.run_until_done(Limits::secs(60)).unwrap();
        assert_eq!(report.fleet.responses_ok, 4, "{report}");
        assert_eq!(report.fleet.requests_failed, 4, "{report}");
        assert_eq!(report.fleet.solicitations_sent, 10);
        assert!(report.virtual_micros >= 9_000_000, "{report}");
        assert!(
            report.mismatches[0]
                .problem
                .contains("2001:2::2 did not answer 10 neighbor solicitations"),
            "{report}"
        );
    }

    #[test]
    fn engine_counts_outside_the_table_are_refused() {
        let (_tree, cache) = site();
        for engines in [0, INDIRECTION_ENTRIES + 1] {
            let config = SimConfig::new(1, 1).with_engines(engines);
            match Simulation::new(Arc::clone(&cache), config, Vec::new()) {
                Err(SimError::Engines(n)) => assert_eq!(n, engines),
                Err(e) => panic!("{engines} engines: {e}"),
                Ok(_) => panic!("{engines} engines were accepted"),
            }
        }
    }

    #[test]
    fn engines_share_the_connections_and_a_seed_fixes_the_run() {
        let run = || {
            let (tree, cache) = site();
            let scripts = (0..24)
                .map(|i| Script {
                    requests: tree.get_all(),
                    first: i,
                    count: 2,
                    mode: Mode::NewConnection,
                })
                .collect();
            let config = SimConfig::new(12, 24).with_engines(3);
            let mut sim = Simulation::new(cache, config, scripts).unwrap();
            sim.run_until_done(Limits::secs(10)).unwrap();
            sim.settle(Limits::secs(30)).unwrap()
        };
        let report = run();
        assert!(report.mismatches.is_empty(), "{report}");
        assert_eq!(report.fleet.responses_ok, 48, "{report}");
        assert_eq!(report.engines.len(), 3);
        let accepted: Vec<u64> = report
            .engines
            .iter()
            .map(|e| e.stats.stack.syn_accepted)
            .collect();
        assert!(accepted.iter().all(|&n| n > 0), "{report}");
        assert_eq!(accepted.iter().sum::<u64>(), 48);
        assert_eq!(report.server.stack.syn_accepted, 48);
        let rx: u64 = report
            .engines
            .iter()
            .map(|e| e.stats.driver.rx_frames)
            .sum();
        assert_eq!(report.server.driver.rx_frames, rx);
        let spent: u64 = report.engines.iter().map(|e| e.server_ns).sum();
        assert_eq!(report.timing.server_ns, spent);
        // The engines' links put their frames on the simulated wire, in no engine's time.
        assert!(report.timing.wire_ns > 0, "{report}");
        let busiest = report.engines.iter().map(|e| e.server_ns).max();
        assert_eq!(Some(report.timing.busiest_engine_ns), busiest);
        let fingerprint = |r: &SimReport| {
            let engines: Vec<_> = r.engines.iter().map(|e| &e.stats.driver).collect();
            format!("{} {:?} {:?}", r.virtual_micros, r.fleet, engines)
        };
        assert_eq!(fingerprint(&report), fingerprint(&run()));
    }
}
