//! `sirocco-bench stack`: the real server loop in memory, one core, no kernel and no NIC.
//!
//! Each run builds a [`Simulation`]: a `Server<MemoryPort>` with default settings (2 KiB
//! receive and 2 KiB send buffer per connection) and a fleet of smoltcp clients on the other
//! end of the memory link, on a virtual clock.
//!
//! Scenarios (Kegel's two tests, and von Leitner's check that cost stays flat as N grows):
//! - `keepalive-512`: N keep-alive connections fetching a 512-byte file over and over, one
//!   request in flight each (N = 10, 1,000, 10,000 and 100,000; `--quick`: 10 and 1,000).
//! - `new-connection-512`: N concurrent clients, every request on a new connection with
//!   `Connection: close` (handshake, request, response, close, TIME-WAIT tombstone).
//! - `keepalive-1m`: N keep-alive connections fetching a 1 MiB file.
//! - `slow-clients`: Kegel's many slow clients: N clients (10,000; `--quick` 1,000) each
//!   reading a large file (1 MiB; `--quick` 256 KiB) no faster than its own link rate
//!   (1 Mbit/s), so the server holds N windows' worth of unsent data.
//!
//! Each connection first completes one request (warm-up: handshakes and the first touch of
//! every buffer); the timing sums are then reset and the measured phase runs the rest. Clients
//! keep their connections open until every client is done, so N really is concurrent.
//!
//! Reported (JSON fields):
//! - `requests_per_sec` = measured requests ÷ real time inside `Server::poll`: what one server
//!   core sustains when clients and wire are free (the fleet's own cost is left out);
//! - `server_ns_per_request`, its inverse, and `client_ns_per_request` for the fleet;
//!   `wire_ns_per_request` is the time the simulated network took inside the server's poll
//!   (at each flush of its memory link: routing each frame, the wire's timing, faults, the
//!   in-flight queue), which a NIC does and `server_ns_per_request` leaves out;
//! - `bytes_per_connection`: the server's heap per connection at the end of the run, with
//!   every connection open and idle between keep-alive requests: what `Server::new` and every
//!   `Server::poll` allocated less what they freed, counted by the bench's allocator
//!   ([`Simulation::server_heap_bytes`]; requested sizes, the shared content cache and the
//!   simulated wire's frame buffers left out). `rss_bytes_per_connection` is the process's RSS
//!   growth over the run per connection, fleet and wire included. Each run is a child process
//!   of its own, so runs do not share a heap;
//! - `slow-clients` adds `aggregate_bits_per_sec` (body bits ÷ virtual seconds until the last
//!   body byte arrived, `transfer_secs`), `link_bits_per_sec` per client and
//!   `fraction_of_link_rate`: the aggregate over N links' worth;
//! - `keepalive-1m` adds a yardstick measured in the same process: `memcpy_ns_per_mib`, one warm
//!   `copy_from_slice` of 1 MiB into another 1 MiB buffer (the median of several rounds of
//!   many copies), `server_ns_per_mib`, the server's time per request scaled to 1 MiB of body,
//!   and `cost_vs_memcpy`, their ratio: how many plain copies of the body one response costs.
//!   `frame_copy_ns_per_mib` is a second yardstick: the same warm copy, but one segment's
//!   payload at a time into frame buffers of their own, the least any server that copies the
//!   body into its frames pays.
//!
//! - `cost_vs_fewest`, when a scenario runs more than one connection count:
//!   `server_ns_per_request` ÷ the same figure at the fewest connections, in the same round
//!   (the counts run fewest first): how far the cost per request is from flat.
//!
//! `--rounds K` runs each scenario's list of connection counts K times, one round after
//! another (rows gain `round`), then prints one row per connection count with `"median":
//! true` and `rounds`: the median over the rounds of `server_ns_per_request`,
//! `requests_per_sec`, `cost_vs_fewest` and, for `keepalive-1m`, `server_ns_per_mib` and
//! `cost_vs_memcpy`, each with its `[least, most]` range in `<key>_range`. Alternating the
//! counts within each round lets a shared machine's drift hit them alike.
//!
//! `--mtu` (default 1500, up to 9000) sets the IP MTU of the simulated link, the server and
//! every client alike (reported as `mtu`): `--mtu 9000` serves in jumbo frames.
//!
//! `--engines 1,2,...` runs N such simulations at once instead, one per thread pinned to its
//! own CPU, sharing one content cache, and reports per-engine figures and the scaling
//! efficiency against one engine: see [`super::engines`]. Without it the rows are the ones
//! above.

use std::sync::Arc;
use std::time::Instant as WallInstant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sirocco::cache::ContentCache;

use super::{Row, engines, round2, round3, rss_bytes};
use crate::sim::{
    Limits, Mode, Request, Script, SimConfig, SimReport, Simulation, SiteTree, seeds,
};

/// A slow client's link: 1 Mbit/s.
const SLOW_LINK_BITS: u64 = 1_000_000;
/// One MiB, the unit of the memcpy yardstick.
const MIB: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    #[value(name = "keepalive-512")]
    Keepalive512,
    #[value(name = "new-connection-512")]
    NewConnection512,
    #[value(name = "keepalive-1m")]
    Keepalive1m,
    #[value(name = "slow-clients")]
    SlowClients,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Keepalive512,
        Scenario::NewConnection512,
        Scenario::Keepalive1m,
        Scenario::SlowClients,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Keepalive512 => "keepalive-512",
            Scenario::NewConnection512 => "new-connection-512",
            Scenario::Keepalive1m => "keepalive-1m",
            Scenario::SlowClients => "slow-clients",
        }
    }

    fn default_connections(self, quick: bool) -> &'static [usize] {
        match (self, quick) {
            (Scenario::Keepalive512, false) => &[10, 1_000, 10_000, 100_000],
            (Scenario::Keepalive512, true) => &[10, 1_000],
            (Scenario::NewConnection512, _) => &[100],
            (Scenario::Keepalive1m, _) => &[10],
            (Scenario::SlowClients, false) => &[10_000],
            (Scenario::SlowClients, true) => &[1_000],
        }
    }

    /// Measured requests per run.
    fn default_requests(self, quick: bool) -> usize {
        match (self, quick) {
            (Scenario::Keepalive512, false) => 400_000,
            (Scenario::Keepalive512, true) => 40_000,
            (Scenario::NewConnection512, false) => 200_000,
            (Scenario::NewConnection512, true) => 20_000,
            (Scenario::Keepalive1m, false) => 400,
            (Scenario::Keepalive1m, true) => 40,
            // One download per client.
            (Scenario::SlowClients, _) => 0,
        }
    }

    fn file_len(self, quick: bool) -> usize {
        match (self, quick) {
            (Scenario::Keepalive512 | Scenario::NewConnection512, _) => 512,
            (Scenario::Keepalive1m, _) | (Scenario::SlowClients, false) => 1 << 20,
            (Scenario::SlowClients, true) => 256 << 10,
        }
    }
}

/// Options of `sirocco-bench stack` (also the default command).
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, alias = "scenario", value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Concurrent connections per run, comma-separated (default: per scenario, see --help).
    #[arg(long, value_delimiter = ',')]
    pub connections: Vec<usize>,
    /// Measured requests per run (default: per scenario).
    #[arg(long)]
    pub requests: Option<usize>,
    /// CI-sized runs: fewer connections and requests.
    #[arg(long)]
    pub quick: bool,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG of requests/s against connections to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Print each run's simulation report (server counters included) to stderr.
    #[arg(long)]
    pub verbose: bool,
    /// Engine counts to run, comma-separated (e.g. `1,2,4`): N shared-nothing engines at
    /// once, each with its own server, client fleet and thread pinned to its own CPU, sharing
    /// one content cache. Rows then give per-engine figures and the scaling efficiency
    /// against one engine (which always runs). Without it: the classic one-core rows.
    #[arg(long, value_delimiter = ',')]
    pub engines: Vec<usize>,
    /// Run the whole list this many times, one round after another, and end with median rows:
    /// per connection count (and, with --engines, per engine count), the median over the
    /// rounds of each cost and ratio, with its range. On a noisy machine one run says little.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// IP MTU of the simulated link, for the server and the client fleet alike: 576 to 9000
    /// (9000: jumbo frames).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..=9000))]
    pub mtu: u16,
    /// Run exactly one scenario and connection count in this process (used by the parent).
    #[arg(long, hide = true)]
    pub child: bool,
}

/// Runs every selected scenario, each in a child process; prints and returns the rows.
pub fn run_all(args: &StackArgs) -> anyhow::Result<Vec<Row>> {
    if args.child {
        let scenario = *args
            .scenarios
            .first()
            .context("--child needs one scenario")?;
        let connections = *args
            .connections
            .first()
            .context("--child needs --connections")?;
        let row = match args.engines[..] {
            [] => run_one(args, scenario, connections)?,
            [engines] => engines::run_child(args, scenario, connections, engines)?,
            _ => bail!("--child takes at most one --engines value"),
        };
        outln!("{}", row.json);
        return Ok(vec![row]);
    }
    if args.connections.contains(&0) {
        bail!("--connections values must be at least 1");
    }
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    if !args.engines.is_empty() {
        return engines::run_all(args, &scenarios);
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if !args.json {
        outln!(
            "{:<19} {:>11} {:>10} {:>13} {:>13} {:>13} {:>12} {:>14}",
            "scenario",
            "connections",
            "requests",
            "requests/s",
            "server ns/req",
            "client ns/req",
            "bytes/conn",
            "extra"
        );
    }
    let mut rows = Vec::new();
    for scenario in scenarios {
        // Fewest first: each round's run at the fewest connections is its baseline.
        let mut counts = args.connection_counts(scenario);
        counts.sort_unstable();
        counts.dedup();
        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            let mut fewest = None;
            for &connections in &counts {
                let mut row = spawn_child(args, scenario, connections, None)?;
                let ns = row
                    .get_f64("server_ns_per_request")
                    .filter(|ns| ns.is_finite() && *ns > 0.0)
                    .with_context(|| format!("a run reported no server time: {}", row.json))?;
                let base = *fewest.get_or_insert(ns);
                if let Some(map) = row.json.as_object_mut() {
                    if counts.len() > 1 {
                        map.insert("cost_vs_fewest".into(), round3(ns / base).into());
                    }
                    if args.rounds > 1 {
                        map.insert("round".into(), round.into());
                    }
                }
                print_row(args.json, &row);
                runs.push(row);
            }
        }
        let medians: Vec<Row> = if args.rounds > 1 {
            counts
                .iter()
                .map(|&connections| median_row(scenario, connections, &runs))
                .collect()
        } else {
            Vec::new()
        };
        rows.extend(runs);
        for row in medians {
            print_summary(args.json, &row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The medians over rounds of the runs (all of `scenario`) at `connections`.
fn median_row(scenario: Scenario, connections: usize, runs: &[Row]) -> Row {
    let these: Vec<&Row> = runs
        .iter()
        .filter(|r| r.get_f64("connections") == Some(connections as f64))
        .collect();
    let fields = serde_json::json!({
        "scenario": scenario.name(),
        "connections": connections,
    });
    super::median_row(
        fields,
        &these,
        &[
            "server_ns_per_request",
            "requests_per_sec",
            "cost_vs_fewest",
            "server_ns_per_mib",
            "cost_vs_memcpy",
        ],
    )
}

fn print_summary(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    let range = |key: &str, decimals: usize| match row.range_text(key, decimals) {
        text if text.is_empty() => text,
        text => format!(" ({text})"),
    };
    let mut line = format!(
        "{:<19} {:>11} median of {} rounds: {:.1} server ns/req{}",
        row.get_str("scenario").unwrap_or("?"),
        row.get_f64("connections").unwrap_or(0.0),
        row.get_f64("rounds").unwrap_or(0.0),
        row.get_f64("server_ns_per_request").unwrap_or(f64::NAN),
        range("server_ns_per_request", 1),
    );
    for (key, what) in [
        ("cost_vs_fewest", "x the fewest connections' cost"),
        ("cost_vs_memcpy", "x a 1 MiB memcpy"),
    ] {
        if let Some(ratio) = row.get_f64(key) {
            line.push_str(&format!("; {ratio:.3}{what}{}", range(key, 3)));
        }
    }
    outln!("{line}");
}

impl StackArgs {
    /// The connection counts to run `scenario` with: `--connections`, or its defaults.
    pub(super) fn connection_counts(&self, scenario: Scenario) -> Vec<usize> {
        if self.connections.is_empty() {
            scenario.default_connections(self.quick).to_vec()
        } else {
            self.connections.clone()
        }
    }
}

/// One run in a child process of its own (`engines`: that many engines at once, see
/// [`engines`]; `None`: the classic run); returns the row it printed.
pub(super) fn spawn_child(
    args: &StackArgs,
    scenario: Scenario,
    connections: usize,
    engines: Option<usize>,
) -> anyhow::Result<Row> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["stack", "--child", "--json", "--scenarios", scenario.name()])
        .args(["--connections", &connections.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--mtu", &args.mtu.to_string()]);
    if let Some(n) = engines {
        cmd.args(["--engines", &n.to_string()]);
    }
    if let Some(r) = args.requests {
        cmd.args(["--requests", &r.to_string()]);
    }
    if args.quick {
        cmd.arg("--quick");
    }
    if args.verbose {
        cmd.arg("--verbose");
    }
    let what = match engines {
        Some(n) => format!("{} x{connections} on {n} engines", scenario.name()),
        None => format!("{} x{connections}", scenario.name()),
    };
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("the child printed nothing")?;
    Ok(Row {
        json: serde_json::from_str(line).context("parsing the child's JSON")?,
    })
}

fn print_row(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    let extra = match row.get_f64("fraction_of_link_rate") {
        Some(f) => format!("{:.0}% of link", f * 100.0),
        None => match row.get_f64("body_bits_per_sec") {
            Some(b) => format!("{:.2} Gbit/s", b / 1e9),
            None => String::new(),
        },
    };
    outln!(
        "{:<19} {:>11} {:>10} {:>13.0} {:>13.1} {:>13.1} {:>12.0} {:>14}",
        row.get_str("scenario").unwrap_or("?"),
        row.get_f64("connections").unwrap_or(0.0),
        row.get_f64("requests").unwrap_or(0.0),
        row.get_f64("requests_per_sec").unwrap_or(0.0),
        row.get_f64("server_ns_per_request").unwrap_or(0.0),
        row.get_f64("client_ns_per_request").unwrap_or(0.0),
        row.get_f64("bytes_per_connection").unwrap_or(0.0),
        extra,
    );
}

/// What every engine of one run serves and how its clients behave: the document root and its
/// cache (one, shared), the request, and the scripts' shape.
pub(super) struct Workload {
    pub(super) scenario: Scenario,
    pub(super) file_len: usize,
    pub(super) cache: Arc<ContentCache>,
    /// The one request every client makes over and over, and the body it must get.
    path: &'static str,
    body: Arc<[u8]>,
    requests: Arc<[Request]>,
    /// Requests per connection, the warm-up one included.
    count: usize,
    mode: Mode,
    pub(super) client_rx: usize,
    pub(super) client_tx: usize,
    /// IP MTU of the link, the server and the clients.
    pub(super) mtu: usize,
    /// The document root on disk, kept for as long as the run.
    _tree: SiteTree,
}

impl Workload {
    /// The file, the cache and the scripts' shape for `connections` connections in all.
    pub(super) fn new(
        args: &StackArgs,
        scenario: Scenario,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let quick = args.quick;
        let file_len = scenario.file_len(quick);
        let path = "/file.bin";
        let mut tree = SiteTree::new("bench").context("creating the document root")?;
        let body = tree
            .add(path, seeds::bytes(512, file_len))
            .context("writing the file")?;
        let cache = Arc::new(ContentCache::load(tree.root()).context("loading the document root")?);
        let requests: Arc<[Request]> = Arc::from(vec![Request::get(path, Arc::clone(&body))]);

        let measured = args
            .requests
            .unwrap_or_else(|| scenario.default_requests(quick));
        let per_connection = measured.div_ceil(connections);
        let mode = match scenario {
            Scenario::NewConnection512 => Mode::NewConnection,
            _ => Mode::KeepAlive { pipeline: 1 },
        };
        let count = match scenario {
            Scenario::SlowClients => 1,
            _ => 1 + per_connection,
        };
        let (client_rx, client_tx) = match scenario {
            Scenario::Keepalive1m => (64 * 1024, 1024),
            Scenario::SlowClients => (16 * 1024, 1024),
            _ => (4096, 1024),
        };
        Ok(Workload {
            scenario,
            file_len,
            cache,
            path,
            requests,
            body,
            count,
            mode,
            client_rx,
            client_tx,
            mtu: usize::from(args.mtu),
            _tree: tree,
        })
    }

    /// One server on the shared cache and a fleet of `connections` clients, each with the
    /// workload's script, holding their connections open until all are done.
    pub(super) fn simulation(&self, seed: u64, connections: usize) -> anyhow::Result<Simulation> {
        self.simulation_with(Arc::clone(&self.requests), seed, connections)
    }

    /// The workload's request list with a copy of the expected body of its own, for a fleet
    /// that is to share nothing with the others.
    pub(super) fn own_requests(&self) -> Arc<[Request]> {
        let body: Arc<[u8]> = Arc::from(&self.body[..]);
        Arc::from(vec![Request::get(self.path, body)])
    }

    /// [`Workload::simulation`] with the clients making `requests` (see
    /// [`Workload::own_requests`]).
    pub(super) fn simulation_with(
        &self,
        requests: Arc<[Request]>,
        seed: u64,
        connections: usize,
    ) -> anyhow::Result<Simulation> {
        let scripts = (0..connections)
            .map(|_| Script {
                requests: Arc::clone(&requests),
                first: 0,
                count: self.count,
                mode: self.mode,
            })
            .collect();
        let mut config = SimConfig::new(seed, connections).with_mtu(self.mtu);
        config.server.stack.max_connections = connections + 64;
        config.fleet.rx_buffer = self.client_rx;
        config.fleet.tx_buffer = self.client_tx;
        if self.scenario == Scenario::SlowClients {
            config.fleet.read_rate_bytes_per_sec = Some(SLOW_LINK_BITS / 8);
        }
        let mut sim = Simulation::new(Arc::clone(&self.cache), config, scripts)?;
        sim.fleet_mut().set_hold(true);
        Ok(sim)
    }

    /// The warm-up: every connection completes one request (handshakes and the first touch
    /// of every buffer). Slow clients have no warm-up: their one download is the run.
    pub(super) fn warm_up(&self, sim: &mut Simulation, connections: usize) -> anyhow::Result<()> {
        let warm_up = if self.scenario == Scenario::SlowClients {
            0
        } else {
            connections as u64
        };
        sim.run_until(Limits::secs(3_600), |sim| {
            sim.fleet().progress().0 >= warm_up
        })?;
        Ok(())
    }

    /// The measured phase: zeroes the timing sums, runs every remaining request and checks
    /// that each was served byte-exact.
    pub(super) fn measure(
        &self,
        sim: &mut Simulation,
        connections: usize,
    ) -> anyhow::Result<Measured> {
        let before = sim.fleet().progress().0;
        let virtual_before = sim.clock().now_micros();
        let body_before = sim.fleet().counters().body_bytes;
        sim.reset_timing();
        // When the last body byte reached the clients (slow-clients measures its rate by that).
        let all_bytes = connections as u64 * self.file_len as u64;
        let mut last_byte_micros = None;
        sim.run_until(Limits::secs(36_000), |sim| {
            if last_byte_micros.is_none() && sim.fleet().counters().body_bytes >= all_bytes {
                last_byte_micros = Some(sim.clock().now_micros());
            }
            sim.fleet().is_done()
        })?;
        let report = sim.report();
        check_served(&report)?;
        Ok(Measured {
            requests: report.progress.0 - before,
            virtual_secs: (report.virtual_micros - virtual_before) as f64 / 1e6,
            transfer_secs: last_byte_micros.map(|us| (us - virtual_before) as f64 / 1e6),
            body_bytes: report.fleet.body_bytes - body_before,
            report,
        })
    }
}

/// Fails unless every request of the run was answered 200 with the exact body.
pub(super) fn check_served(report: &SimReport) -> anyhow::Result<()> {
    let total = report.progress.1;
    if report.fleet.requests_failed > 0
        || report.fleet.responses_ok != total
        || report.server.http.responses_2xx != total
    {
        bail!("not every request was served byte-exact: {report}");
    }
    Ok(())
}

/// What the measured phase of one simulation did.
pub(super) struct Measured {
    /// Requests completed in the measured phase.
    pub(super) requests: u64,
    /// Virtual seconds the measured phase took.
    pub(super) virtual_secs: f64,
    /// Virtual seconds until the last body byte arrived, if it did.
    pub(super) transfer_secs: Option<f64>,
    /// Body bytes received in the measured phase.
    pub(super) body_bytes: u64,
    /// The simulation at the end (its timing covers the measured phase only).
    pub(super) report: SimReport,
}

/// One run, in this process.
fn run_one(args: &StackArgs, scenario: Scenario, connections: usize) -> anyhow::Result<Row> {
    let work = Workload::new(args, scenario, connections)?;
    let rss_before = rss_bytes();
    let setup = WallInstant::now();
    let mut sim = work.simulation(args.seed, connections)?;
    let setup_ms = setup.elapsed().as_secs_f64() * 1e3;

    work.warm_up(&mut sim, connections)?;
    let measured = work.measure(&mut sim, connections)?;
    let report = &measured.report;
    let rss_after = rss_bytes();
    if args.verbose {
        eprintln!("{} x{connections}: {report}", scenario.name());
    }
    let requests = measured.requests;
    let per = |ns: u64| ns as f64 / requests.max(1) as f64;
    let server_ns = report.timing.server_ns;
    let virtual_secs = measured.virtual_secs;
    let rss_per = rss_after.saturating_sub(rss_before) as f64 / connections as f64;
    let server_heap_per = sim.server_heap_bytes() as f64 / connections as f64;
    let body_bytes = measured.body_bytes;
    // After the RSS reading: the yardstick's two buffers are not the server's.
    let memcpy_ns = (scenario == Scenario::Keepalive1m)
        .then(|| (memcpy_ns_per_mib(), frame_copy_ns_per_mib(work.mtu)));
    let mut json = serde_json::json!({
        "scenario": scenario.name(),
        "connections": connections,
        "requests": requests,
        "requests_per_sec": (requests as f64 * 1e9 / server_ns.max(1) as f64).round(),
        "server_ns_per_request": round2(per(server_ns)),
        "client_ns_per_request": round2(per(report.timing.client_ns)),
        "wire_ns_per_request": round2(per(report.timing.wire_ns)),
        "bytes_per_connection": server_heap_per.round(),
        "rss_bytes_per_connection": rss_per.round(),
        "file_bytes": work.file_len,
        "mtu": work.mtu,
        "body_bits_per_sec": (body_bytes as f64 * 8e9 / server_ns.max(1) as f64).round(),
        "iterations": report.timing.iterations,
        "virtual_secs": virtual_secs,
        "setup_ms": round2(setup_ms),
        "cell_polls_per_request": round2(
            report.server.stack.cell_polls as f64 / report.progress.0.max(1) as f64
        ),
    });
    if let (Some((memcpy_ns, frame_copy_ns)), Some(map)) = (memcpy_ns, json.as_object_mut()) {
        let server_ns_per_mib = per(server_ns) * MIB as f64 / work.file_len.max(1) as f64;
        map.insert("memcpy_ns_per_mib".into(), round2(memcpy_ns).into());
        map.insert("frame_copy_ns_per_mib".into(), round2(frame_copy_ns).into());
        map.insert("server_ns_per_mib".into(), round2(server_ns_per_mib).into());
        map.insert(
            "cost_vs_memcpy".into(),
            round2(server_ns_per_mib / memcpy_ns.max(1e-9)).into(),
        );
    }
    if scenario == Scenario::SlowClients {
        let transfer_secs = measured.transfer_secs.unwrap_or(virtual_secs);
        let aggregate = body_bytes as f64 * 8.0 / transfer_secs.max(1e-9);
        if let Some(map) = json.as_object_mut() {
            map.insert("aggregate_bits_per_sec".into(), aggregate.round().into());
            map.insert("link_bits_per_sec".into(), SLOW_LINK_BITS.into());
            map.insert("transfer_secs".into(), transfer_secs.into());
            map.insert(
                "fraction_of_link_rate".into(),
                round2(aggregate / (connections as f64 * SLOW_LINK_BITS as f64)).into(),
            );
        }
    }
    Ok(Row { json })
}

/// Nanoseconds one warm `copy_from_slice` of 1 MiB into another 1 MiB buffer takes on this
/// core (timed by [`median_copy_ns`]).
fn memcpy_ns_per_mib() -> f64 {
    let source: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    let mut target = vec![0u8; MIB];
    median_copy_ns(|| target.copy_from_slice(std::hint::black_box(&source[..])))
}

/// Nanoseconds one warm copy of 1 MiB into frames takes: in pieces of one segment's payload at
/// `mtu` (the MTU less 40 octets of IPv4 and TCP headers, and 12 of timestamps), each into its
/// own buffer behind 66 octets of headers, as a server that copies each segment into its
/// frame does at best. The buffers are allocated one by one, like the simulated wire's frames.
/// A floor for the server's `server_ns_per_mib` with no TCP work at all.
fn frame_copy_ns_per_mib(mtu: usize) -> f64 {
    let piece = mtu.saturating_sub(52).max(1);
    let source: Vec<u8> = (0..MIB).map(|i| i as u8).collect();
    let mut frames = frame_buffers(MIB, piece);
    median_copy_ns(|| copy_into_frames(&source, &mut frames, piece))
}

/// Octets of Ethernet, IPv4 and TCP headers with timestamps in front of a frame's payload.
const FRAME_HEADERS: usize = 14 + 40 + 12;

/// One buffer per `piece` octets of a body of `len`, each with room for the headers.
fn frame_buffers(len: usize, piece: usize) -> Vec<Vec<u8>> {
    (0..len.div_ceil(piece))
        .map(|_| vec![0u8; FRAME_HEADERS + piece])
        .collect()
}

/// Copies `source` into `frames`, `piece` octets each, behind the headers.
fn copy_into_frames(source: &[u8], frames: &mut [Vec<u8>], piece: usize) {
    for (frame, part) in frames.iter_mut().zip(source.chunks(piece)) {
        frame[FRAME_HEADERS..FRAME_HEADERS + part.len()]
            .copy_from_slice(std::hint::black_box(part));
    }
}

/// The median over [`MEMCPY_ROUNDS`] rounds of the time one `copy` takes, each round the mean of
/// [`MEMCPY_COPIES`] copies, after a few copies that bring the buffers into the cache and the
/// page tables.
fn median_copy_ns(mut copy: impl FnMut()) -> f64 {
    for _ in 0..8 {
        copy();
    }
    let mut rounds: Vec<f64> = (0..MEMCPY_ROUNDS)
        .map(|_| {
            let started = WallInstant::now();
            for _ in 0..MEMCPY_COPIES {
                copy();
                std::hint::black_box(&mut copy);
            }
            started.elapsed().as_nanos() as f64 / MEMCPY_COPIES as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[MEMCPY_ROUNDS / 2]
}

/// Rounds of the memcpy yardstick (odd: the median is one of them).
const MEMCPY_ROUNDS: usize = 9;
/// 1 MiB copies per round: some tens of milliseconds in all.
const MEMCPY_COPIES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_copy_yardstick_copies_the_whole_body_in_order_behind_the_headers() {
        let source: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let piece = 1448;
        let mut frames = frame_buffers(source.len(), piece);
        assert_eq!(frames.len(), 7);
        copy_into_frames(&source, &mut frames, piece);
        let joined: Vec<u8> = frames
            .iter()
            .zip(source.chunks(piece))
            .flat_map(|(frame, part)| frame[FRAME_HEADERS..FRAME_HEADERS + part.len()].to_vec())
            .collect();
        assert_eq!(joined, source);
        assert!(
            frames
                .iter()
                .all(|f| f[..FRAME_HEADERS].iter().all(|&b| b == 0))
        );
    }
}
