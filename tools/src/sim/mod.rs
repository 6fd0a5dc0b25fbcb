//! Deterministic simulation: a sirocco [`Server`] and a [`ClientFleet`] joined by an in-memory
//! link ([`MemoryLink::pair`]) on a [`VirtualClock`].
//!
//! # Ports
//!
//! [`Simulation::new`] builds the memory link. [`Simulation::with_ports`] takes any two joined
//! [`FrameIo`] ends instead, e.g. an emulated netmap pair, so the same loop drives the server
//! over another driver's code. A port type only needs [`SimPort`], which tells the loop when
//! the next frame reaches it (ports with no clock of their own deliver at once).
//!
//! # The loop
//!
//! [`Simulation::run_until`] repeats: poll the server, poll the fleet; when neither moved a
//! frame, jump the virtual clock to the earliest of the server's and the fleet's deadlines and
//! the next frame arrival on either port (at least one microsecond ahead, so a deadline that
//! does not fire cannot hold time still). It stops when the condition holds, and never hangs:
//! a virtual-time limit, an iteration cap, and "nothing left that could ever happen" each end
//! the run with a [`SimError`] that describes where it stood.
//!
//! # Cost accounting
//!
//! The real (wall-clock) nanoseconds spent inside `Server::poll` and inside the fleet's poll
//! are summed separately in [`Timing`]. The server side is what a server core would spend on
//! the same traffic; the benchmark reports it per request.
//!
//! # Determinism
//!
//! Every seed in a run is drawn from a SplitMix64 stream on [`SimConfig::seed`]: the server's
//! seeds (flow-table key, cell ISNs), the fleet's interface seeds, and the link's fault seed
//! (when faults are on). The same seed, site and scripts give bit-identical frames; wall-clock
//! time is only measured, never read into the simulation.

pub mod client;
mod device;
pub mod flood;
pub mod impair;
pub mod reader;
pub mod script;
pub mod seeds;
pub mod site;

use std::sync::Arc;

use sirocco::cache::ContentCache;
use sirocco::server::{Server, ServerConfig, ServerError, Stats};
use sirocco_drivers::capture::Capture;
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::{FaultConfig, FaultCounters, LinkConfig, MemoryLink, MemoryPort};
use sirocco_drivers::netmap::{EmulatedPort, Netmap};
use sirocco_drivers::{DriverError, FrameIo};
use sirocco_netstack::{EthernetAddress, Instant, Ipv4Address, StackConfig};

pub use client::{ClientFleet, FleetConfig, FleetCounters, FleetError, Mismatch};
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
}

impl SimPort for MemoryPort {
    fn next_arrival_micros(&self) -> Option<u64> {
        MemoryPort::next_arrival_micros(self)
    }

    fn fault_counters(&self) -> FaultCounters {
        MemoryPort::fault_counters(self)
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
    pub server: ServerConfig,
    pub fleet: FleetConfig,
}

impl SimConfig {
    /// The standard addresses, a 1500-byte link with 10 µs latency and a queue too deep to
    /// overflow, no faults, and room for `connections` concurrent connections on the server.
    pub fn new(seed: u64, connections: usize) -> Self {
        let mut stack = StackConfig::new(SERVER_MAC, SERVER_IP, PREFIX_LEN, HTTP_PORT);
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
        }
    }

    /// The same, with `faults` on both directions of the link.
    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.link.faults = faults;
        self
    }
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
    /// Inside `Server::poll`.
    pub server_ns: u64,
    /// Inside `ClientFleet::poll`.
    pub client_ns: u64,
    pub iterations: u64,
    /// Times the clock jumped because nothing moved.
    pub clock_jumps: u64,
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
    pub server: Stats,
    /// Faults injected on frames the server sent, and on frames the clients sent.
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

/// What one iteration of the loop did.
enum Tick {
    Moved,
    Jumped,
    Stalled,
    PastDeadline,
}

/// A server and a client fleet on one virtual clock, over two joined ports (the memory link
/// unless built with [`Simulation::with_ports`]). See the module documentation.
pub struct Simulation<D: SimPort = MemoryPort> {
    clock: VirtualClock,
    server: Server<D>,
    fleet: ClientFleet<D>,
    timing: Timing,
}

impl Simulation {
    /// Builds the link, the server (serving `cache`) and one client connection slot per script.
    pub fn new(
        cache: Arc<ContentCache>,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        Self::over_memory_link(cache, config, scripts, |port, _| port)
    }
}

/// Draws every seed from `config.seed`, always in the same order whatever the ports: writes
/// the fleet's and the link's into `config` and returns the server's.
fn draw_seeds(config: &mut SimConfig) -> u64 {
    let mut seeds = SplitMix64::new(config.seed);
    let server = seeds.next_u64();
    config.fleet.seed = seeds.next_u64();
    config.link.faults.seed = seeds.next_u64();
    server
}

/// The server a [`Simulation`] on `config` would run, on any `port`: the same seeds (drawn
/// from `config.seed` in the same order), addresses and `Date` clock. For drivers of the server
/// other than the client fleet, such as trace replay (`crate::replay`).
pub fn sim_server<P: FrameIo>(
    port: P,
    cache: Arc<ContentCache>,
    config: &SimConfig,
) -> Result<Server<P>, SimError> {
    let mut config = config.clone();
    let server_seed = draw_seeds(&mut config);
    seeded_server(port, cache, config.server, server_seed)
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
    /// Like [`Simulation::new`], with each end of the memory link wrapped by `wrap` (called
    /// for the server's end, then the client's) before use: a [`Capture`] that records the
    /// run to a pcap on the simulation's clock, say, or a port that drops chosen frames.
    pub fn over_memory_link(
        cache: Arc<ContentCache>,
        mut config: SimConfig,
        scripts: Vec<Script>,
        mut wrap: impl FnMut(MemoryPort, &VirtualClock) -> D,
    ) -> Result<Self, SimError> {
        let server_seed = draw_seeds(&mut config);
        let clock = VirtualClock::new();
        let (server_port, client_port) = MemoryLink::pair(config.link, clock.clone());
        let server_port = wrap(server_port, &clock);
        let client_port = wrap(client_port, &clock);
        Self::assemble(
            clock,
            server_seed,
            server_port,
            client_port,
            cache,
            config,
            scripts,
        )
    }

    /// The server on `server_port` and the fleet on `client_port`, two ends the caller has
    /// already joined. `config.link` is not used. The virtual clock starts at 0 and is the
    /// simulation's own: ports must not need it (see [`SimPort`]).
    pub fn with_ports(
        server_port: D,
        client_port: D,
        cache: Arc<ContentCache>,
        mut config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        let server_seed = draw_seeds(&mut config);
        let clock = VirtualClock::new();
        Self::assemble(
            clock,
            server_seed,
            server_port,
            client_port,
            cache,
            config,
            scripts,
        )
    }

    fn assemble(
        clock: VirtualClock,
        server_seed: u64,
        server_port: D,
        client_port: D,
        cache: Arc<ContentCache>,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Result<Self, SimError> {
        let server = seeded_server(server_port, cache, config.server, server_seed)?;
        let fleet =
            ClientFleet::new(client_port, config.fleet, scripts).map_err(SimError::Fleet)?;
        Ok(Simulation {
            clock,
            server,
            fleet,
            timing: Timing::default(),
        })
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(i64::try_from(self.clock.now_micros()).unwrap_or(i64::MAX))
    }

    /// One iteration: poll the server, then the fleet, at the current virtual time. `true` if
    /// either moved a frame.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let now = self.now();
        let started = std::time::Instant::now();
        let server_moved = self.server.poll(now)?;
        let between = std::time::Instant::now();
        let fleet_moved = self.fleet.poll(now)?;
        let ended = std::time::Instant::now();
        self.timing.server_ns += nanos(between - started);
        self.timing.client_ns += nanos(ended - between);
        self.timing.iterations += 1;
        Ok(server_moved || fleet_moved)
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
                Tick::Moved | Tick::Jumped => {}
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
                Tick::Stalled | Tick::PastDeadline => break,
            }
        }
        Ok(())
    }

    /// One iteration, and a clock jump to the next event if nothing moved.
    fn tick(&mut self, deadline: u64) -> Result<Tick, SimError> {
        if self.step()? {
            return Ok(Tick::Moved);
        }
        let now = self.clock.now_micros();
        let Some(next) = self.next_event_micros() else {
            return Ok(Tick::Stalled);
        };
        let next = next.max(now + 1);
        if next > deadline {
            return Ok(Tick::PastDeadline);
        }
        self.clock.set_micros(next);
        self.timing.clock_jumps += 1;
        Ok(Tick::Jumped)
    }

    /// Runs until every request of every script is resolved; returns the report. Mismatches do
    /// not make this an error: check [`SimReport::mismatches`].
    pub fn run_until_done(&mut self, limits: Limits) -> Result<SimReport, SimError> {
        self.run_until(limits, |sim| sim.fleet.is_done())?;
        Ok(self.report())
    }

    /// Runs until every client connection has closed and the server holds no connection.
    pub fn settle(&mut self, limits: Limits) -> Result<SimReport, SimError> {
        self.run_until(limits, |sim| {
            sim.fleet.is_quiet() && sim.server.stats().connections == 0
        })?;
        Ok(self.report())
    }

    /// The earliest deadline or frame arrival on either side, in virtual microseconds: where
    /// the clock jumps when nothing moved (for loops that drive the simulation by hand too).
    pub fn next_event_micros(&self) -> Option<u64> {
        let micros = |at: Instant| u64::try_from(at.total_micros()).unwrap_or(0);
        [
            self.server.poll_at().map(micros),
            self.fleet.poll_at().map(micros),
            self.server.driver().next_arrival_micros(),
            self.fleet.driver().next_arrival_micros(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn report(&self) -> SimReport {
        SimReport {
            virtual_micros: self.clock.now_micros(),
            timing: self.timing,
            fleet: self.fleet.counters(),
            progress: self.fleet.progress(),
            mismatches: self.fleet.mismatches().to_vec(),
            server: self.server.stats(),
            server_to_client: self.server.driver().fault_counters(),
            client_to_server: self.fleet.driver().fault_counters(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Zeroes the timing sums (after a warm-up phase, say).
    pub fn reset_timing(&mut self) {
        self.timing = Timing::default();
    }

    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    pub fn server(&self) -> &Server<D> {
        &self.server
    }

    pub fn server_mut(&mut self) -> &mut Server<D> {
        &mut self.server
    }

    pub fn fleet(&self) -> &ClientFleet<D> {
        &self.fleet
    }

    pub fn fleet_mut(&mut self) -> &mut ClientFleet<D> {
        &mut self.fleet
    }
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
}
