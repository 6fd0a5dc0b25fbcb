//! `sirocco-bench synflood`: a SYN flood against the real server loop in memory, with
//! legitimate clients connecting through it.
//!
//! The server is a `Server` over the memory link with default settings (10,000 connection
//! cells unless `--max-connections`), the legitimate side a fleet of smoltcp clients
//! (`--clients`, 8) that each do a full handshake, `GET` a 512-byte file with
//! `Connection: close` and start over on a new connection, for as long as the run lasts. The
//! flood is a stream of SYNs from random sources (addresses in 198.18.0.0/15 other than the
//! server's and the clients', random ports, sequence numbers and timestamps; a Linux-like SYN
//! with MSS, SACK-permitted, timestamps and window scale), made by the simulator's
//! [`SynMaker`], that the server's port interleaves with the legitimate frames: every receive
//! burst takes the legitimate frames that have arrived, then is topped up with flood SYNs.
//!
//! Time: the server is the one CPU of the model. The virtual clock advances by the real time
//! each `Server::poll` took (the clients and the wire are free), and jumps to the next event
//! when nothing moved. So with the default `--rate max` the flood offers exactly what the loop
//! absorbs: every burst is full. With `--rate N`, N SYNs arrive per second of that time, and
//! those that find the receive ring (2,048 frames) full are dropped, as a NIC would.
//!
//! Runs a baseline phase without the flood first (`--baseline`, 1 s), then the flood
//! (`--duration`, 3 s), each in virtual seconds. The frames of the flood are made between
//! polls, outside the measured time; the server's answers to them cross the link and the
//! clients drop them.
//!
//! Reported (JSON fields, one object):
//! - `syns_offered` and `syns_per_sec_per_core`: flood SYNs the server took in, per second
//!   of its own (single-core) time, all its work included (at `--rate max` the server is busy
//!   all the time, so this is the rate it absorbs; below it, the legitimate work weighs in);
//! - `syns_dropped_at_ring` (only below `--rate max`);
//! - `legit_connections` and `legit_connections_per_sec`: legitimate connections that completed
//!   their request byte-exact during the flood, per virtual second, out of `legit_attempts`
//!   (connections opened: a refused or reset one counts too); `legit_resets`, and
//!   `legit_clients_gave_up`: clients refused three times in a row, which the fleet gives up
//!   (each is replaced by a new client, up to 16 per client);
//! - `baseline_legit_connections_per_sec` and `baseline_legit_attempts`: the same without the
//!   flood;
//! - `flood_synacks`, `flood_rsts`: the server's answers to flood sources;
//! - `cells_in_use` at the end of the flood, `server_busy_fraction` (server time over virtual
//!   time), and `counters`: every stack counter that moved during the flood, by its name in the
//!   stats line (the SYN cache and cookie counters included, where the stack has them).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration as WallDuration, Instant as WallInstant};

use anyhow::{Context, bail};
use clap::Args;
use sirocco::cache::ContentCache;
use sirocco_drivers::memory::{FaultCounters, MemoryPort};
use sirocco_drivers::{Capabilities, DriverCounters, DriverError, FrameIo};
use sirocco_netstack::StackCounters;

use super::{Row, round2};
use crate::sim::flood::{FLOOD_MAC, SYN_LEN, SynMaker, SynShape};
use crate::sim::{Mode, Request, Script, SimConfig, SimPort, Simulation, SiteTree, seeds};

/// The receive ring a flood at a fixed rate fills before SYNs are dropped.
const RING_FRAMES: usize = 2048;
/// The requests each legitimate client has: more than a run of `MAX_SECS` completes. A
/// client refused three times in a row gives up (the fleet's rule) and resolves the rest as
/// failed, one by one, so this is not much more.
const REQUESTS_PER_CLIENT: usize = 200_000;
/// The longest phase, virtual seconds.
const MAX_SECS: f64 = 60.0;
/// A client that gave up is replaced by a new one, until this many were started per client.
const REPLACEMENTS_PER_CLIENT: usize = 16;

/// Options of `sirocco-bench synflood`.
#[derive(Debug, Clone, Args)]
pub struct SynfloodArgs {
    /// Virtual seconds of flood.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Virtual seconds without the flood first, for the legitimate clients' baseline.
    #[arg(long, default_value_t = 1.0)]
    pub baseline: f64,
    /// Flood SYNs per virtual second, or `max`: as many as the loop absorbs.
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Legitimate clients, each connecting again as soon as its request is done.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// The server's connection cells (`--max-connections` of `sirocco serve`).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seed of the simulation and of the flood.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The flood: SYN frames made ahead of the polls, lent to the server's port in bursts.
///
/// Not the simulator's `Flooded` port, though it makes the same SYNs: that one makes them
/// inside the receive burst (inside the measured server time) at a rate in virtual time with an
/// unbounded backlog; this one makes them between polls, outside the measured time, either as
/// many as a burst takes or at a rate into a ring that drops what does not fit.
struct Flood {
    syns: SynMaker,
    /// `None`: as fast as the loop absorbs.
    rate: Option<f64>,
    burst: usize,
    started_micros: u64,
    /// SYNs due so far (rate mode).
    due: u64,
    /// Linux SYNs ([`SynShape::Linux`]): every one is `SYN_LEN` bytes.
    ring: VecDeque<[u8; SYN_LEN]>,
    offered: u64,
    dropped_at_ring: u64,
    synacks: u64,
    rsts: u64,
    replies: u64,
}

impl Flood {
    fn new(seed: u64, rate: Option<f64>, burst: usize, now_micros: u64) -> Flood {
        Flood {
            syns: SynMaker::new(seed, SynShape::Linux),
            rate,
            burst,
            started_micros: now_micros,
            due: 0,
            ring: VecDeque::with_capacity(RING_FRAMES),
            offered: 0,
            dropped_at_ring: 0,
            synacks: 0,
            rsts: 0,
            replies: 0,
        }
    }

    /// Makes the SYNs that have arrived by `now_micros`: a full burst's worth in `max` mode.
    fn prepare(&mut self, now_micros: u64) {
        let wanted = match self.rate {
            None => self.burst.saturating_sub(self.ring.len()),
            Some(rate) => {
                let elapsed = now_micros.saturating_sub(self.started_micros) as f64 / 1e6;
                let due = (rate * elapsed) as u64;
                let new = due.saturating_sub(self.due);
                self.due = due;
                let room = (RING_FRAMES - self.ring.len()) as u64;
                self.dropped_at_ring += new.saturating_sub(room);
                new.min(room) as usize
            }
        };
        for _ in 0..wanted {
            self.ring.push_back([0; SYN_LEN]);
            let frame = self.ring.back_mut().expect("just pushed");
            self.syns.write(frame);
        }
    }

    /// When the next SYN arrives, in virtual microseconds (rate mode; `None` in max mode,
    /// where SYNs are always there).
    fn next_due_micros(&self) -> Option<u64> {
        let rate = self.rate?;
        let at = (self.due + 1) as f64 / rate * 1e6;
        Some(self.started_micros + at.ceil() as u64)
    }

    /// Counts a frame the server sent, if it went to a flood source.
    fn note_reply(&mut self, frame: &[u8]) {
        if frame.get(..6) != Some(FLOOD_MAC.as_bytes()) {
            return;
        }
        self.replies += 1;
        let ihl = usize::from(frame.get(14).copied().unwrap_or(0x45) & 0x0f) * 4;
        match frame.get(14 + ihl + 13).copied() {
            Some(flags) if flags & 0x12 == 0x12 => self.synacks += 1,
            Some(flags) if flags & 0x04 != 0 => self.rsts += 1,
            _ => {}
        }
    }
}

/// A memory port that, armed with a [`Flood`], lends flood SYNs after the frames that arrived
/// over the link, and counts the server's answers to them.
struct FloodPort {
    inner: MemoryPort,
    flood: Option<Flood>,
}

impl FloodPort {
    fn new(inner: MemoryPort) -> Self {
        FloodPort { inner, flood: None }
    }
}

impl FrameIo for FloodPort {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let mut received = self.inner.rx_burst(max, on_frame)?;
        if let Some(flood) = &mut self.flood {
            while received < max {
                let Some(frame) = flood.ring.pop_front() else {
                    break;
                };
                on_frame(&frame);
                flood.offered += 1;
                received += 1;
            }
        }
        Ok(received)
    }

    fn tx_room(&self) -> usize {
        self.inner.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let flood = &mut self.flood;
        self.inner.tx_stage(len, &mut |buf| {
            fill(buf);
            if let Some(flood) = flood.as_mut() {
                flood.note_reply(buf);
            }
        })
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.inner.tx_flush()
    }

    fn counters(&self) -> DriverCounters {
        let mut counters = self.inner.counters();
        if let Some(flood) = &self.flood {
            counters.rx_frames += flood.offered;
            counters.rx_bytes += flood.offered * SYN_LEN as u64;
        }
        counters
    }
}

impl SimPort for FloodPort {
    fn next_arrival_micros(&self) -> Option<u64> {
        match &self.flood {
            Some(flood) if !flood.ring.is_empty() => Some(0),
            _ => self.inner.next_arrival_micros(),
        }
    }

    fn fault_counters(&self) -> FaultCounters {
        self.inner.fault_counters()
    }
}

/// What one phase of the run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    virtual_micros: u64,
    server_ns: u64,
    legit_ok: u64,
    legit_attempts: u64,
    legit_resets: u64,
    gave_up: u64,
}

/// The legitimate clients: the fleet's slots, and which of them gave up already.
struct Clients {
    script: Script,
    gave_up: Vec<bool>,
    cap: usize,
}

impl Clients {
    /// Counts the clients that gave up since the last call, and starts new ones in their place
    /// while under the cap. Returns how many gave up.
    fn replace_quitters(&mut self, sim: &mut Simulation<FloodPort>) -> u64 {
        let mut quit = 0;
        for idx in 0..sim.fleet().connections() {
            if self.gave_up.get(idx).copied().unwrap_or(true) {
                continue;
            }
            let Some((resolved, count)) = sim.fleet().slot_progress(idx) else {
                continue;
            };
            if resolved >= count {
                self.gave_up[idx] = true;
                quit += 1;
            }
        }
        for _ in 0..quit {
            if self.gave_up.len() < self.cap {
                sim.fleet_mut().add_script(self.script.clone());
                self.gave_up.push(false);
            }
        }
        quit
    }
}

/// Runs the bench; prints and returns its row.
pub fn run(args: &SynfloodArgs) -> anyhow::Result<Row> {
    let rate = match args.rate.as_str() {
        "max" => None,
        r => match r.parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => Some(n),
            _ => bail!("--rate {r}: give SYNs per second (more than 0), or max"),
        },
    };
    if !(args.duration > 0.0 && args.duration <= MAX_SECS) {
        bail!("--duration must be more than 0 and at most {MAX_SECS} seconds");
    }
    if !(0.0..=MAX_SECS).contains(&args.baseline) {
        bail!("--baseline must be 0 to {MAX_SECS} seconds");
    }
    if args.clients == 0 || args.clients > 10_000 {
        bail!("--clients must be 1 to 10,000");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    let mut tree = SiteTree::new("bench-synflood").context("creating the document root")?;
    let body = tree
        .add("/file-512.bin", seeds::bytes(512, 512))
        .context("writing the file")?;
    let cache = Arc::new(ContentCache::load(tree.root()).context("loading the document root")?);
    let requests: Arc<[Request]> = Arc::from(vec![Request::get("/file-512.bin", body)]);
    let script = Script {
        requests,
        first: 0,
        count: REQUESTS_PER_CLIENT,
        mode: Mode::NewConnection,
    };
    let scripts = vec![script.clone(); args.clients];
    let mut clients = Clients {
        script,
        gave_up: vec![false; args.clients],
        cap: args.clients * REPLACEMENTS_PER_CLIENT,
    };
    let mut config = SimConfig::new(args.seed, args.clients);
    config.server.stack.max_connections = args.max_connections;
    config.fleet.rx_buffer = 4096;
    let burst = config.server.rx_batch;
    let mut sim =
        Simulation::over_memory_link(cache, config, scripts, |port, _| FloodPort::new(port))?;

    let wall = WallInstant::now();
    let wall_limit = WallDuration::from_secs_f64(60.0 + 30.0 * (args.duration + args.baseline));
    // Warm-up, not measured: the first polls touch fresh memory.
    run_phase(&mut sim, &mut clients, 0.05, wall, wall_limit)?;
    let baseline = run_phase(&mut sim, &mut clients, args.baseline, wall, wall_limit)?;
    let before: StackCounters = sim.server().stats().stack;
    let now = sim.clock().now_micros();
    sim.server_mut().driver_mut().flood =
        Some(Flood::new(args.seed ^ 0x5f10_0d00, rate, burst, now));
    let flood = run_phase(&mut sim, &mut clients, args.duration, wall, wall_limit)?;
    let stats = sim.server().stats();
    let port = sim.server_mut().driver_mut();
    let f = port.flood.take().context("the flood is gone")?;

    let secs = |micros: u64| micros as f64 / 1e6;
    let server_secs = flood.server_ns as f64 / 1e9;
    let counters: serde_json::Map<String, serde_json::Value> = stats
        .stack
        .fields()
        .zip(before.fields())
        .filter(|((_, after), (_, before))| after != before)
        // Signed: a gauge (entries in use, say) may end lower than it started.
        .map(|((name, after), (_, before))| {
            let delta = i128::from(after) - i128::from(before);
            (
                name.to_string(),
                i64::try_from(delta).unwrap_or(i64::MAX).into(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "bench": "synflood",
        "rate": rate.map_or(serde_json::Value::from("max"), serde_json::Value::from),
        "duration_secs": round2(secs(flood.virtual_micros)),
        "baseline_secs": round2(secs(baseline.virtual_micros)),
        "max_connections": args.max_connections,
        "clients": args.clients,
        "syns_offered": f.offered,
        "syns_per_sec_per_core": (f.offered as f64 / server_secs.max(1e-9)).round(),
        "syns_dropped_at_ring": f.dropped_at_ring,
        "flood_synacks": f.synacks,
        "flood_rsts": f.rsts,
        "flood_replies": f.replies,
        "legit_connections": flood.legit_ok,
        "legit_attempts": flood.legit_attempts,
        "legit_connections_per_sec": (flood.legit_ok as f64 / secs(flood.virtual_micros).max(1e-9)).round(),
        "legit_resets": flood.legit_resets,
        "legit_clients_gave_up": flood.gave_up,
        "baseline_legit_connections_per_sec": (baseline.legit_ok as f64 / secs(baseline.virtual_micros).max(1e-9)).round(),
        "baseline_legit_attempts": baseline.legit_attempts,
        "cells_in_use": stats.connections,
        "server_busy_fraction": round2(server_secs / secs(flood.virtual_micros).max(1e-9)),
        "wall_secs": round2(wall.elapsed().as_secs_f64()),
        "counters": counters,
    });
    let row = Row { json };
    print_row(args.json, &row);
    Ok(row)
}

/// Runs the loop for `virtual_secs` (see the module documentation for how time advances).
fn run_phase(
    sim: &mut Simulation<FloodPort>,
    clients: &mut Clients,
    virtual_secs: f64,
    wall: WallInstant,
    wall_limit: WallDuration,
) -> anyhow::Result<Phase> {
    let start = sim.clock().now_micros();
    let end = start + (virtual_secs * 1e6) as u64;
    let fleet_before = sim.fleet().counters();
    let server_before = sim.timing().server_ns;
    let mut carry_ns = 0u64;
    let mut iterations = 0u64;
    let mut gave_up = 0;
    while sim.clock().now_micros() < end {
        iterations += 1;
        if iterations.is_multiple_of(256) {
            gave_up += clients.replace_quitters(sim);
        }
        if iterations.is_multiple_of(4096) && wall.elapsed() > wall_limit {
            bail!(
                "still running after {:.0} s of real time, at {:.3} virtual s: {}",
                wall_limit.as_secs_f64(),
                sim.clock().now_micros() as f64 / 1e6,
                sim.report()
            );
        }
        let now = sim.clock().now_micros();
        if let Some(flood) = &mut sim.server_mut().driver_mut().flood {
            flood.prepare(now);
        }
        let spent_before = sim.timing().server_ns;
        let moved = sim.step()?;
        carry_ns += sim.timing().server_ns - spent_before;
        let advance = carry_ns / 1000;
        carry_ns %= 1000;
        if advance > 0 {
            sim.clock().advance_micros(advance);
        } else if !moved {
            let flood_due = sim
                .server()
                .driver()
                .flood
                .as_ref()
                .and_then(Flood::next_due_micros);
            let next = [sim.next_event_micros(), flood_due]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(end);
            sim.clock().set_micros(next.clamp(now + 1, end));
        }
    }
    gave_up += clients.replace_quitters(sim);
    let fleet = sim.fleet().counters();
    Ok(Phase {
        virtual_micros: sim.clock().now_micros() - start,
        server_ns: sim.timing().server_ns - server_before,
        legit_ok: fleet.responses_ok - fleet_before.responses_ok,
        legit_attempts: fleet.connects - fleet_before.connects,
        legit_resets: fleet.resets - fleet_before.resets,
        gave_up,
    })
}

fn print_row(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    let n = |key: &str| row.get_f64(key).unwrap_or(0.0);
    let rate = row.json.get("rate").map_or_else(
        || "?".to_string(),
        |r| r.to_string().trim_matches('"').to_string(),
    );
    outln!(
        "{:>10} {:>12} {:>14} {:>14} {:>15} {:>17} {:>13} {:>6}",
        "rate",
        "SYNs",
        "SYNs/s/core",
        "legit conn/s",
        "legit ok/tried",
        "baseline conn/s",
        "cells in use",
        "busy"
    );
    outln!(
        "{:>10} {:>12.0} {:>14.0} {:>14.0} {:>15} {:>17.0} {:>13.0} {:>5.0}%",
        rate,
        n("syns_offered"),
        n("syns_per_sec_per_core"),
        n("legit_connections_per_sec"),
        format!("{:.0}/{:.0}", n("legit_connections"), n("legit_attempts")),
        n("baseline_legit_connections_per_sec"),
        n("cells_in_use"),
        n("server_busy_fraction") * 100.0,
    );
    outln!(
        "answers to the flood: {:.0} SYN-ACKs, {:.0} RSTs; SYNs dropped at the ring: {:.0}; \
         legitimate clients that gave up: {:.0}",
        n("flood_synacks"),
        n("flood_rsts"),
        n("syns_dropped_at_ring"),
        n("legit_clients_gave_up")
    );
    if let Some(counters) = row.json.get("counters").and_then(|c| c.as_object()) {
        let list: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!("stack counters during the flood: {}", list.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Packet, TcpPacket};

    /// The SYNs themselves are `SynMaker`'s, tested with it: here, that a burst's are all the
    /// full Linux SYN the module documentation describes, from distinct sources.
    #[test]
    fn a_burst_of_flood_syns_is_linux_syns_from_distinct_sources() {
        let mut flood = Flood::new(3, None, 64, 0);
        flood.prepare(0);
        assert_eq!(flood.ring.len(), 64);
        let mut sources = std::collections::HashSet::new();
        for frame in &flood.ring {
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(usize::from(ip.total_len()), SYN_LEN - 14);
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.syn() && !tcp.ack());
            assert_eq!(tcp.header_len(), 40);
            sources.insert(ip.src_addr());
        }
        assert!(sources.len() > 60);
    }

    #[test]
    fn a_fixed_rate_flood_delivers_its_rate_and_drops_past_the_ring() {
        let mut flood = Flood::new(1, Some(1000.0), 64, 0);
        flood.prepare(10_000);
        assert_eq!(flood.ring.len(), 10);
        assert_eq!(flood.next_due_micros(), Some(11_000));
        flood.prepare(10_000_000);
        assert_eq!(flood.ring.len(), RING_FRAMES);
        assert_eq!(flood.dropped_at_ring, 10_000 - RING_FRAMES as u64);
    }

    #[test]
    fn a_short_run_completes_legitimate_connections_and_absorbs_syns() {
        let args = SynfloodArgs {
            duration: 0.05,
            baseline: 0.02,
            rate: "max".into(),
            clients: 2,
            max_connections: 64,
            seed: 1,
            json: true,
        };
        let row = run(&args).unwrap();
        assert!(row.get_f64("syns_offered").unwrap() > 0.0, "{}", row.json);
        assert!(
            row.get_f64("baseline_legit_connections_per_sec").unwrap() > 0.0,
            "{}",
            row.json
        );
    }
}
