//! `sirocco-bench`: requests per second of the real server loop, in memory.
//!
//! Each run builds a [`Simulation`]: a `Server<MemoryPort>` serving a 512-byte file, and a
//! fleet of smoltcp clients on the other end of the memory link, on a virtual clock. No kernel
//! and no NIC are involved, so this measures the cost of sirocco itself: netstack, HTTP and the
//! loop.
//!
//! Scenarios (Kegel's "how many 512-byte files per second", and von Leitner's check that the
//! per-request cost stays flat as connections grow):
//! - `keepalive-512`: N keep-alive connections, each fetching the file over and over, one
//!   request in flight per connection (default N = 10, 1,000 and 10,000).
//! - `new-connection-512`: N concurrent clients, each request on a new connection with
//!   `Connection: close` (handshake, request, response, close; default N = 100).
//!
//! Each connection first completes one request (warm-up: handshakes, cell creation, first
//! touches of every buffer); the timing sums are then reset and the measured phase runs the
//! remaining requests.
//!
//! Reported, for the measured phase:
//! - `requests_per_sec` = measured requests ÷ (real time spent inside `Server::poll`). That is
//!   the rate one server core sustains if clients and the wire were free: the client fleet's
//!   own cost is measured separately and left out.
//! - `server_ns_per_request` = ns inside `Server::poll` ÷ measured requests (the inverse).
//! - `client_ns_per_request` = ns inside the client fleet's poll ÷ measured requests.
//! - `wall_requests_per_sec` = measured requests ÷ (server + client ns): what this process
//!   achieved, both sides on one core.
//!
//! Every run is bounded by its request count and by virtual-time and iteration limits.

use std::sync::Arc;
use std::time::Instant as WallInstant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sirocco::cache::ContentCache;
use sirocco_tools::sim::{Limits, Mode, Request, Script, SimConfig, Simulation, SiteTree, seeds};

const FILE_PATH: &str = "/file-512.bin";
const FILE_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Keep-alive connections, one request in flight each.
    #[value(name = "keepalive-512")]
    Keepalive512,
    /// A new connection (with `Connection: close`) for every request.
    #[value(name = "new-connection-512")]
    NewConnection512,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Keepalive512 => "keepalive-512",
            Scenario::NewConnection512 => "new-connection-512",
        }
    }

    fn default_connections(self) -> &'static [usize] {
        match self {
            Scenario::Keepalive512 => &[10, 1_000, 10_000],
            Scenario::NewConnection512 => &[100],
        }
    }
}

/// In-memory benchmarks of the sirocco server loop (see the module docs for what is measured).
#[derive(Debug, Parser)]
#[command(name = "sirocco-bench", version)]
struct Args {
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Concurrent connections per run, comma-separated (default: 10,1000,10000 for
    /// keepalive-512 and 100 for new-connection-512).
    #[arg(long, value_delimiter = ',')]
    connections: Vec<usize>,
    /// Measured requests per run (at least one per connection).
    #[arg(long, default_value_t = 200_000)]
    requests: usize,
    /// Seed of the simulation (ISNs and everything else derived from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// Print each run's full simulation report (server counters included) to stderr.
    #[arg(long)]
    verbose: bool,
    /// Bytes of TCP receive buffer per client connection.
    #[arg(long, default_value_t = 4096)]
    client_rx_buffer: usize,
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    scenario: Scenario,
    connections: usize,
    requests: u64,
    iterations: u64,
    server_ns: u64,
    client_ns: u64,
    setup_ms: f64,
    virtual_secs: f64,
}

impl Outcome {
    fn per_request(&self, ns: u64) -> f64 {
        ns as f64 / self.requests.max(1) as f64
    }

    fn requests_per_sec(&self) -> f64 {
        self.requests as f64 * 1e9 / self.server_ns.max(1) as f64
    }

    fn wall_requests_per_sec(&self) -> f64 {
        self.requests as f64 * 1e9 / (self.server_ns + self.client_ns).max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario.name(),
            "connections": self.connections,
            "requests": self.requests,
            "iterations": self.iterations,
            "requests_per_sec": self.requests_per_sec().round(),
            "server_ns_per_request": round2(self.per_request(self.server_ns)),
            "client_ns_per_request": round2(self.per_request(self.client_ns)),
            "wall_requests_per_sec": self.wall_requests_per_sec().round(),
            "virtual_secs": self.virtual_secs,
            "setup_ms": round2(self.setup_ms),
        })
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    if args.connections.contains(&0) {
        bail!("--connections values must be at least 1");
    }
    let scenarios = if args.scenario.is_empty() {
        vec![Scenario::Keepalive512, Scenario::NewConnection512]
    } else {
        args.scenario.clone()
    };

    let mut tree = SiteTree::new("bench").context("creating the document root")?;
    let body = tree
        .add(FILE_PATH, seeds::bytes(512, FILE_LEN))
        .context("writing the 512-byte file")?;
    let cache = Arc::new(ContentCache::load(tree.root()).context("loading the document root")?);
    let requests: Arc<[Request]> = Arc::from(vec![Request::get(FILE_PATH, body)]);

    if !args.json {
        println!(
            "{:<20} {:>11} {:>10} {:>14} {:>12} {:>12} {:>14}",
            "scenario",
            "connections",
            "requests",
            "requests/s",
            "server ns/req",
            "client ns/req",
            "wall req/s"
        );
    }
    for scenario in scenarios {
        let counts = if args.connections.is_empty() {
            scenario.default_connections().to_vec()
        } else {
            args.connections.clone()
        };
        for connections in counts {
            let outcome = run(&args, scenario, connections, &cache, &requests)
                .with_context(|| format!("{} with {connections} connections", scenario.name()))?;
            if args.json {
                println!("{}", outcome.json());
            } else {
                println!(
                    "{:<20} {:>11} {:>10} {:>14.0} {:>12.1} {:>12.1} {:>14.0}",
                    scenario.name(),
                    connections,
                    outcome.requests,
                    outcome.requests_per_sec(),
                    outcome.per_request(outcome.server_ns),
                    outcome.per_request(outcome.client_ns),
                    outcome.wall_requests_per_sec(),
                );
            }
        }
    }
    Ok(())
}

fn run(
    args: &Args,
    scenario: Scenario,
    connections: usize,
    cache: &Arc<ContentCache>,
    requests: &Arc<[Request]>,
) -> anyhow::Result<Outcome> {
    let setup = WallInstant::now();
    let per_connection = args.requests.div_ceil(connections);
    let mode = match scenario {
        Scenario::Keepalive512 => Mode::KeepAlive { pipeline: 1 },
        Scenario::NewConnection512 => Mode::NewConnection,
    };
    // One warm-up request per connection, then the measured ones.
    let scripts = (0..connections)
        .map(|_| Script {
            requests: Arc::clone(requests),
            first: 0,
            count: 1 + per_connection,
            mode,
        })
        .collect();
    let mut config = SimConfig::new(args.seed, connections);
    config.fleet.rx_buffer = args.client_rx_buffer;
    config.fleet.tx_buffer = 1024;
    let mut sim = Simulation::new(Arc::clone(cache), config, scripts)?;
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    let warm_up = connections as u64;
    sim.run_until(Limits::secs(600), |sim| sim.fleet().progress().0 >= warm_up)?;
    let before = sim.fleet().progress().0;
    let virtual_before = sim.clock().now_micros();
    sim.reset_timing();
    let report = sim.run_until_done(Limits::secs(3_600))?;
    let total = report.progress.1;
    if report.fleet.requests_failed > 0
        || report.fleet.responses_ok != total
        || report.server.http.responses_2xx != total
    {
        bail!("not every request was served byte-exact: {report}");
    }
    if args.verbose {
        eprintln!("{} x{connections}: {report}", scenario.name());
    }
    Ok(Outcome {
        scenario,
        connections,
        requests: report.progress.0 - before,
        iterations: report.timing.iterations,
        server_ns: report.timing.server_ns,
        client_ns: report.timing.client_ns,
        setup_ms,
        virtual_secs: (report.virtual_micros - virtual_before) as f64 / 1e6,
    })
}
