//! `sirocco-bench stack --engines 1,2,...`: how the cost of one engine holds up when N
//! shared-nothing engines run at once, as the multi-core server runs them (one engine per NIC
//! queue, one thread each, pinned to its own core, one content cache shared read-only).
//!
//! # A run
//!
//! For each N, a child process builds the scenario's file and ONE `Arc<ContentCache>`, then
//! starts N threads. Thread `i` pins itself to CPU `cpus[i % cpus.len()]`, where `cpus` are
//! the CPUs of the process's affinity mask in order, and runs a complete shard: a
//! [`Simulation`] of its own (its own `Server<MemoryPort>` on the shared cache, with its own
//! flow table, cells, pools and timer wheel, and its own client fleet and virtual clock) with
//! its share of the connections (`connections / N`, the first `connections % N` engines one
//! more). Every connection makes as many requests as in the
//! one-engine run, so the total work is the same for every N. Only the content cache is
//! shared; each engine's fleet even has its own copy of the expected body. All threads wait
//! on a barrier before the warm-up and again before the measured phase, so the measured
//! phases run at the same time; nothing inside the loops is shared, locked or atomic, and
//! each thread hands its figures back when it is joined. Engine `i` runs on seed `seed + i`,
//! so the one-engine run is the same simulation as the classic row's.
//!
//! The measured phase is driven here, with the simulation's own loop
//! ([`event_loop::tick`]: poll the server, then the fleet; when neither moved, jump the
//! virtual clock to [`Simulation::next_event_micros`]) and a poll of its own, so that each `Server::poll` can be timed on the
//! thread's CPU clock as well as the wall clock. Reading the CPU clock is a system call, and
//! on its way out the kernel checks whether the thread's time slice is over, so a thread that
//! must give up its core often does so between polls, where neither figure counts it: the
//! in-poll wall time is less inflated by time-slicing here than in the classic rows (and
//! `cpu_share` still tells how much the thread waited).
//!
//! # Figures (JSON fields)
//!
//! Arrays have one entry per engine, in engine order.
//! - `requests_per_sec_per_engine`: the engine's measured requests ÷ its real time inside
//!   `Server::poll` (wall clock around each poll, as in the classic rows), and
//!   `requests_per_sec`, their sum: what N cores would sustain;
//! - `server_ns_per_request`, its inverse; `server_cpu_ns_per_request`, the thread's CPU
//!   time (`CLOCK_THREAD_CPUTIME_ID`) inside `Server::poll` per request, which leaves out the
//!   time the thread was descheduled in the middle of a poll; and `client_ns_per_request`, the
//!   fleet's wall-clock time in its own poll (the fleet runs on its engine's thread and core,
//!   so it is not counted in the engine's figures, but it competes with the engine for that
//!   core's caches);
//! - `thread_cpu_ns_per_request`: the thread's CPU time over the whole measured phase per
//!   request: server, fleet and loop together, for context;
//! - `cpu_share`: that CPU time ÷ the phase's wall time, and `preemptions`, the thread's
//!   involuntary context switches in the phase. A share below 1 means the thread waited for
//!   its core: other engines on the same core, or other work on the machine;
//! - `scaling_efficiency`: the mean over engines of requests per second of in-poll wall time
//!   (`requests_per_sec_per_engine`) at N engines, ÷ the same figure at one engine in the same
//!   invocation (same scenario and connections). The one-engine run is always made: when
//!   `--engines` does not list 1, it runs first anyway and its row is printed too. 1.0 means
//!   an engine costs as much with N-1 others running as alone. `scaling_efficiency_cpu` is the
//!   same ratio on in-poll CPU time, which a busy machine's preemptions do not inflate. At N
//!   engines each serves `connections / N`: a smaller working set per engine shows up here too
//!   (a one-engine run with `--connections` at that share tells the two apart);
//! - `round`, with `--rounds K` above 1: the whole list of engine counts runs K times, one
//!   round after another, each against its own round's one-engine run; then one row per
//!   engine count with `"median": true` gives the median over rounds of `scaling_efficiency`,
//!   `scaling_efficiency_cpu` and `requests_per_sec`, each with its `[least, most]` range in
//!   `*_range` (on a busy machine, one round's ratio says little);
//! - `overlap`: the time all N measured phases ran together ÷ the longest phase (1.0: they
//!   ran side by side throughout);
//! - `cpus` (the CPU each engine was pinned to), `allowed_cpus`, `oversubscribed` (more
//!   engines than allowed CPUs), `connections_per_engine`, `requests_per_engine`,
//!   `iterations_per_engine`, `setup_ms`;
//! - `bytes_per_connection` as in the classic rows, all engines' server heaps over all their
//!   connections, and `rss_bytes_per_connection` likewise (thread stacks included), sampled
//!   when every engine has finished its measured phase and none has dropped its simulation.
//!
//! With more engines than CPUs, threads share cores and the OS time-slices them. The in-poll
//! wall time is then inflated whenever a thread is descheduled in the middle of a poll, so
//! oversubscribed rows are a contention check (does anything shared get slower as engines
//! are added?), not a measure of scaling: read them with `cpu_share`, `preemptions` and the
//! in-poll CPU time beside them.

use std::sync::{Arc, Barrier};
use std::time::Instant as WallInstant;

use anyhow::{Context, bail};
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::host;

use super::stack::{Scenario, StackArgs, Workload, check_served, spawn_child};
use super::{Row, round2, round3, rss_bytes};
use crate::sim::event_loop::{self, Parties, Tick};
use crate::sim::{Limits, Request, Simulation};

/// Stack size of an engine thread: the main thread's usual 8 MiB, as in the one-engine run.
const ENGINE_STACK_BYTES: usize = 8 << 20;

/// The parent's side: for each scenario and connection count, one child per engine count
/// (the one-engine baseline first), with `scaling_efficiency` added to each row.
pub(super) fn run_all(args: &StackArgs, scenarios: &[Scenario]) -> anyhow::Result<Vec<Row>> {
    if args.engines.contains(&0) {
        bail!("--engines values must be at least 1");
    }
    if args.plot.is_some() {
        bail!("--plot draws one-engine runs; run it without --engines");
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut counts = vec![1];
    counts.extend(args.engines.iter().copied().filter(|&n| n != 1));
    let most = counts.iter().copied().max().unwrap_or(1);
    for &scenario in scenarios {
        if let Some(fewest) = args.connection_counts(scenario).into_iter().min()
            && fewest < most
        {
            bail!("{most} engines need at least {most} connections, not {fewest}");
        }
    }
    if !args.json {
        print_header();
    }
    let mut rows = Vec::new();
    for &scenario in scenarios {
        for connections in args.connection_counts(scenario) {
            let mut runs = Vec::new();
            for round in 1..=args.rounds {
                let mut baseline = None;
                for &engines in &counts {
                    let mut row = spawn_child(args, scenario, connections, Some(engines))?;
                    let wall = mean_rate(&row, "server_ns_per_request")?;
                    let cpu = mean_rate(&row, "server_cpu_ns_per_request")?;
                    let (base_wall, base_cpu) = *baseline.get_or_insert((wall, cpu));
                    if let Some(map) = row.json.as_object_mut() {
                        map.insert("scaling_efficiency".into(), round3(wall / base_wall).into());
                        map.insert(
                            "scaling_efficiency_cpu".into(),
                            round3(cpu / base_cpu).into(),
                        );
                        if args.rounds > 1 {
                            map.insert("round".into(), round.into());
                        }
                    }
                    print_row(args.json, &row);
                    runs.push(row);
                }
            }
            let medians = if args.rounds > 1 {
                counts
                    .iter()
                    .map(|&engines| median_row(scenario, connections, engines, &runs))
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
    }
    Ok(rows)
}

/// The medians over rounds of the `engines`-engine rows in `runs`.
fn median_row(scenario: Scenario, connections: usize, engines: usize, runs: &[Row]) -> Row {
    let these: Vec<&Row> = runs
        .iter()
        .filter(|r| r.get_f64("engines") == Some(engines as f64))
        .collect();
    let fields = serde_json::json!({
        "scenario": scenario.name(),
        "connections": connections,
        "engines": engines,
    });
    super::median_row(
        fields,
        &these,
        &[
            "scaling_efficiency",
            "scaling_efficiency_cpu",
            "requests_per_sec",
        ],
    )
}

fn print_summary(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    outln!(
        "{:<19} {:>11} {:>7} {:>10} {:>13.0} {:>10.3} {:>10.3} median of {} rounds; \
         efficiency {}, (cpu) {}",
        row.get_str("scenario").unwrap_or("?"),
        row.get_f64("connections").unwrap_or(0.0),
        row.get_f64("engines").unwrap_or(0.0),
        "",
        row.get_f64("requests_per_sec").unwrap_or(0.0),
        row.get_f64("scaling_efficiency").unwrap_or(f64::NAN),
        row.get_f64("scaling_efficiency_cpu").unwrap_or(f64::NAN),
        row.get_f64("rounds").unwrap_or(0.0),
        row.range_text("scaling_efficiency", 3),
        row.range_text("scaling_efficiency_cpu", 3),
    );
}

/// The mean over engines of requests per second of engine time, from the nanoseconds per
/// request in `key`.
fn mean_rate(row: &Row, key: &str) -> anyhow::Result<f64> {
    let costs = f64_array(row, key);
    if costs.is_empty() || costs.iter().any(|ns| !ns.is_finite() || *ns <= 0.0) {
        bail!("a run reported no {key}: {}", row.json);
    }
    Ok(costs.iter().map(|ns| 1e9 / ns).sum::<f64>() / costs.len() as f64)
}

fn f64_array(row: &Row, key: &str) -> Vec<f64> {
    row.json
        .get(key)
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
        .unwrap_or_default()
}

fn print_header() {
    outln!(
        "{:<19} {:>11} {:>7} {:>10} {:>13} {:>10} {:>10} {:>7} {:>9}  {}",
        "scenario",
        "connections",
        "engines",
        "requests",
        "requests/s",
        "efficiency",
        "(cpu)",
        "overlap",
        "cpu share",
        "server ns/req (cpu ns), client ns/req: each engine",
    );
}

fn print_row(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    let list = |key: &str| {
        f64_array(row, key)
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join("/")
    };
    let least_share = f64_array(row, "cpu_share")
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    outln!(
        "{:<19} {:>11} {:>7} {:>10} {:>13.0} {:>10.3} {:>10.3} {:>7.2} {:>9.2}  {} ({}), {}",
        row.get_str("scenario").unwrap_or("?"),
        row.get_f64("connections").unwrap_or(0.0),
        row.get_f64("engines").unwrap_or(0.0),
        row.get_f64("requests").unwrap_or(0.0),
        row.get_f64("requests_per_sec").unwrap_or(0.0),
        row.get_f64("scaling_efficiency").unwrap_or(f64::NAN),
        row.get_f64("scaling_efficiency_cpu").unwrap_or(f64::NAN),
        row.get_f64("overlap").unwrap_or(0.0),
        least_share,
        list("server_ns_per_request"),
        list("server_cpu_ns_per_request"),
        list("client_ns_per_request"),
    );
}

/// What one engine thread hands back when joined.
struct EngineRun {
    cpu: usize,
    connections: usize,
    requests: u64,
    polls: PollTimes,
    /// The thread's CPU time over the measured phase.
    thread_cpu_ns: u64,
    /// Times the thread was preempted during the measured phase.
    preempted: u64,
    started: WallInstant,
    ended: WallInstant,
    setup_ms: f64,
    /// The process's RSS with every engine measured and none dropped (one engine samples it).
    rss_after: Option<u64>,
    /// The engine's heap at the end of its measured phase.
    server_heap: i64,
}

/// The child's side: one run of `engines` engines at once, in this process.
pub(super) fn run_child(
    args: &StackArgs,
    scenario: Scenario,
    connections: usize,
    engines: usize,
) -> anyhow::Result<Row> {
    if engines == 0 || engines > connections {
        bail!("{engines} engines cannot share {connections} connections");
    }
    let work = Workload::new(args, scenario, connections)?;
    let allowed = allowed_cpus()?;
    let shares: Vec<usize> = (0..engines)
        .map(|i| connections / engines + usize::from(i < connections % engines))
        .collect();
    // Each engine's fleet gets requests of its own; only the content cache is shared.
    let requests: Vec<Arc<[Request]>> = (0..engines).map(|_| work.own_requests()).collect();
    let barrier = Barrier::new(engines);
    let rss_before = rss_bytes();
    let runs = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .into_iter()
            .enumerate()
            .map(|(index, requests)| {
                let engine = Engine {
                    work: &work,
                    requests,
                    seed: args.seed.wrapping_add(index as u64),
                    connections: shares[index],
                    cpu: allowed[index % allowed.len()],
                    barrier: &barrier,
                    verbose: args.verbose,
                };
                std::thread::Builder::new()
                    .name(format!("engine-{index}"))
                    .stack_size(ENGINE_STACK_BYTES)
                    .spawn_scoped(scope, move || engine.run())
                    .context("starting an engine thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle?.join() {
                Ok(run) => run,
                Err(_) => bail!("an engine thread panicked"),
            })
            .collect::<anyhow::Result<Vec<EngineRun>>>()
    })?;
    let rss_after = runs
        .iter()
        .find_map(|r| r.rss_after)
        .context("no engine sampled the RSS")?;
    Ok(row(
        &work,
        connections,
        &runs,
        &allowed,
        rss_before,
        rss_after,
    ))
}

/// One engine's shard of the run, before it starts.
struct Engine<'a> {
    work: &'a Workload,
    requests: Arc<[Request]>,
    seed: u64,
    connections: usize,
    cpu: usize,
    barrier: &'a Barrier,
    verbose: bool,
}

impl Engine<'_> {
    /// Pin, build, warm up, measure. Every engine reaches every barrier whatever happened
    /// before it, so one engine's failure cannot leave the others waiting forever.
    fn run(self) -> anyhow::Result<EngineRun> {
        let Engine {
            work,
            requests,
            seed,
            connections,
            cpu,
            barrier,
            verbose,
        } = self;
        let setup = WallInstant::now();
        let built = pin_to(cpu).and_then(|()| work.simulation_with(requests, seed, connections));
        let setup_ms = setup.elapsed().as_secs_f64() * 1e3;
        barrier.wait();
        let warmed = built.and_then(|mut sim| {
            work.warm_up(&mut sim, connections)?;
            Ok(sim)
        });
        barrier.wait();
        let measured = warmed.and_then(|mut sim| {
            let started = WallInstant::now();
            let cpu_before = thread_cpu_ns()?;
            let preempted_before = preemptions()?;
            let before = sim.fleet().progress().0;
            let polls = measure(&mut sim)?;
            let preempted = preemptions()?.saturating_sub(preempted_before);
            let thread_cpu_ns = thread_cpu_ns()?.saturating_sub(cpu_before);
            let ended = WallInstant::now();
            let report = sim.report();
            check_served(&report)?;
            if verbose {
                eprintln!(
                    "{} x{connections} on cpu {cpu} (seed {seed}): {report}",
                    work.scenario.name()
                );
            }
            let run = EngineRun {
                cpu,
                connections,
                requests: report.progress.0 - before,
                polls,
                thread_cpu_ns,
                preempted,
                started,
                ended,
                setup_ms,
                rss_after: None,
                server_heap: sim.server_heap_bytes(),
            };
            Ok((sim, run))
        });
        // Every engine is measured and none has dropped its simulation: one samples the RSS.
        let leader = barrier.wait().is_leader();
        let rss_after = leader.then(rss_bytes);
        barrier.wait();
        let (sim, run) = measured?;
        drop(sim);
        Ok(EngineRun { rss_after, ..run })
    }
}

/// Sums over the polls of a measured phase.
#[derive(Debug, Clone, Copy, Default)]
struct PollTimes {
    /// Wall-clock time inside `Server::poll`.
    server_ns: u64,
    /// The thread's CPU time inside `Server::poll`.
    server_cpu_ns: u64,
    /// Wall-clock time inside the fleet's poll.
    client_ns: u64,
    iterations: u64,
}

/// The measured phase, driven here rather than by `Simulation::run_until` so that each
/// `Server::poll` is timed on the thread's CPU clock as well as the wall clock. The loop is
/// the simulation's ([`event_loop::tick`]): poll the server, then the fleet, at the current virtual time; when
/// neither moved a frame, move the clock to the simulation's next event (at least 1 µs
/// ahead). It ends when every request is resolved, and fails past the same limits as the
/// one-engine run's measured phase.
fn measure(sim: &mut Simulation) -> anyhow::Result<PollTimes> {
    let limits = Limits::secs(36_000);
    let deadline = sim
        .clock()
        .now_micros()
        .saturating_add(limits.virtual_micros);
    let mut measured = Measured {
        sim,
        times: PollTimes::default(),
    };
    while !measured.sim.fleet().is_done() {
        if measured.times.iterations >= limits.iterations {
            bail!("iteration cap reached: {}", measured.sim.report());
        }
        match event_loop::tick(&mut measured, deadline)? {
            Tick::Moved | Tick::Jumped | Tick::Finished => {}
            Tick::Stalled if measured.sim.fleet().is_done() => break,
            Tick::Stalled => bail!("stalled, nothing left to happen: {}", measured.sim.report()),
            Tick::PastDeadline => bail!("virtual-time limit reached: {}", measured.sim.report()),
        }
    }
    Ok(measured.times)
}

/// A simulation whose server polls are timed: the [`Parties`] of [`measure`].
struct Measured<'s> {
    sim: &'s mut Simulation,
    times: PollTimes,
}

impl Parties for Measured<'_> {
    type Error = anyhow::Error;

    fn clock(&self) -> &VirtualClock {
        self.sim.clock()
    }

    fn poll(&mut self, now: u64) -> anyhow::Result<bool> {
        let now = event_loop::instant(now);
        let (sim, times) = (&mut *self.sim, &mut self.times);
        // Each CPU-clock read is a system call, at whose return the kernel may switch the
        // thread out: the wall-clock windows leave both reads out, so that switch is counted
        // in neither poll.
        let wire_before = sim.server_wire_ns();
        let cpu_started = thread_cpu_ns()?;
        let started = WallInstant::now();
        let server_moved = sim.poll_server(now)?;
        let server_ended = WallInstant::now();
        let cpu_ended = thread_cpu_ns()?;
        // The simulated network's share of the poll (see `SimPort::wire_ns`) is no server's.
        let wire = sim.server_wire_ns().saturating_sub(wire_before);
        let fleet_started = WallInstant::now();
        let fleet_moved = sim.fleet_mut().poll(now)?;
        let fleet_ended = WallInstant::now();
        times.server_ns += nanos(server_ended - started).saturating_sub(wire);
        times.server_cpu_ns += cpu_ended.saturating_sub(cpu_started).saturating_sub(wire);
        times.client_ns += nanos(fleet_ended - fleet_started);
        times.iterations += 1;
        Ok(server_moved || fleet_moved)
    }

    fn next_event_micros(&self) -> Option<u64> {
        self.sim.next_event_micros()
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The row of one run (without the efficiencies, which the parent adds).
fn row(
    work: &Workload,
    connections: usize,
    runs: &[EngineRun],
    allowed: &[usize],
    rss_before: u64,
    rss_after: u64,
) -> Row {
    let each = |f: &dyn Fn(&EngineRun) -> serde_json::Value| -> serde_json::Value {
        runs.iter().map(f).collect()
    };
    let per = |ns: u64, run: &EngineRun| round2(ns as f64 / run.requests.max(1) as f64);
    let rate = |r: &EngineRun| (r.requests as f64 * 1e9 / r.polls.server_ns.max(1) as f64).round();
    let wall_ns = |r: &EngineRun| (r.ended - r.started).as_nanos() as f64;
    let first_end = runs.iter().map(|r| r.ended).min();
    let last_start = runs.iter().map(|r| r.started).max();
    let together = match (first_end, last_start) {
        (Some(end), Some(start)) if end > start => (end - start).as_nanos() as f64,
        _ => 0.0,
    };
    let longest = runs.iter().map(wall_ns).fold(0.0, f64::max);
    let rss_per = rss_after.saturating_sub(rss_before) as f64 / connections as f64;
    let server_heap_per =
        runs.iter().map(|r| r.server_heap).sum::<i64>() as f64 / connections as f64;
    let json = serde_json::json!({
        "scenario": work.scenario.name(),
        "connections": connections,
        "engines": runs.len(),
        "requests": runs.iter().map(|r| r.requests).sum::<u64>(),
        "requests_per_sec": runs.iter().map(rate).sum::<f64>(),
        "requests_per_sec_per_engine": each(&|r| rate(r).into()),
        "server_ns_per_request": each(&|r| per(r.polls.server_ns, r).into()),
        "server_cpu_ns_per_request": each(&|r| per(r.polls.server_cpu_ns, r).into()),
        "client_ns_per_request": each(&|r| per(r.polls.client_ns, r).into()),
        "thread_cpu_ns_per_request": each(&|r| per(r.thread_cpu_ns, r).into()),
        "cpu_share": each(&|r| round3(r.thread_cpu_ns as f64 / wall_ns(r).max(1.0)).into()),
        "preemptions": each(&|r| r.preempted.into()),
        "overlap": round3(together / longest.max(1.0)),
        "cpus": each(&|r| r.cpu.into()),
        "allowed_cpus": allowed.len(),
        "oversubscribed": runs.len() > allowed.len(),
        "connections_per_engine": each(&|r| r.connections.into()),
        "requests_per_engine": each(&|r| r.requests.into()),
        "iterations_per_engine": each(&|r| r.polls.iterations.into()),
        "setup_ms": each(&|r| round2(r.setup_ms).into()),
        "bytes_per_connection": server_heap_per.round(),
        "rss_bytes_per_connection": rss_per.round(),
        "file_bytes": work.file_len,
        "mtu": work.mtu,
    });
    Row { json }
}

/// The CPUs this process may run on (its affinity mask), in increasing order. Read on the
/// calling thread, which has the mask the process started with (no engine thread has pinned
/// itself yet).
fn allowed_cpus() -> anyhow::Result<Vec<usize>> {
    let cpus = host::allowed_cpus().context("sched_getaffinity")?;
    if cpus.is_empty() {
        bail!("the affinity mask allows no CPU");
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> anyhow::Result<()> {
    host::pin_current_thread(cpu).with_context(|| format!("pinning an engine thread to cpu {cpu}"))
}

/// The calling thread's CPU time so far, in nanoseconds.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    host::thread_cpu_ns().context("clock_gettime(thread CPU time)")
}

/// Involuntary context switches of the calling thread so far: times it was preempted.
fn preemptions() -> anyhow::Result<u64> {
    host::thread_preemptions().context("getrusage(RUSAGE_THREAD)")
}
