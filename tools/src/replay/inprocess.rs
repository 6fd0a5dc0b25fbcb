//! The in-process target: a sirocco [`Server`] built as a [`crate::sim`] simulation builds it
//! ([`sim_server`]: same seeds, addresses and `Date` clock), on a [`MemoryLink`] and a
//! [`VirtualClock`], with the [`Replayer`] on the other end of the link. The server speaks the
//! family of the trace's first flow: a trace recorded over IPv6 is replayed against a server
//! with only the simulation's IPv6 address ([`sim::SERVER_IP6`]).
//!
//! The loop (one [`event_loop::tick`] after another) polls the server, hands the replayer what
//! reached the client port, lets it send, and when nothing moved jumps the clock to the next
//! event: a server deadline, a frame arrival, or a replayer deadline (pacing, resend, stall).
//! A fixed seed therefore gives the same frames, at the same virtual times, on every run, which
//! the golden server-TX capture ([`InProcessOptions::capture`]) relies on. A virtual-time deadline and an iteration cap end
//! any run; flows still running then are reported as stalled.
//!
//! Once every flow has ended, the run goes on until the server holds no connection (or for
//! [`InProcessOptions::settle_micros`]), so a capture includes the closing handshakes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sirocco::cache::ContentCache;
use sirocco::server::Server;
use sirocco_drivers::FrameIo;
use sirocco_drivers::capture::{Capture, CaptureDirection};
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::{MemoryLink, MemoryPort};
use sirocco_drivers::pcap::{PcapSink, Timestamps};

use super::ReplayError;
use super::engine::{Addresses, ReplayOptions, Replayer};
use super::report::Report;
use super::trace::Trace;
use crate::sim::event_loop::{self, Parties, Tick};
use crate::sim::{self, Families, SimConfig, SimPort, sim_server};

/// The replay client's MAC on the memory link.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 198, 19, 0, 1];
/// Client ports of replayed flows start here.
pub const FIRST_CLIENT_PORT: u16 = 20_000;

/// Settings of an in-process replay beyond the replay's own.
#[derive(Debug, Clone)]
pub struct InProcessOptions {
    /// Seeds the server exactly as `SimConfig::new(seed, ..)` does.
    pub seed: u64,
    /// Records the server's traffic (virtual timestamps) to this file.
    pub capture: Option<(PathBuf, CaptureDirection)>,
    /// Virtual time the whole run may take.
    pub deadline_micros: u64,
    /// Virtual time to wait, once every flow ended, for the server to close its connections.
    pub settle_micros: u64,
}

impl Default for InProcessOptions {
    /// Seed 1, no capture, 120 s deadline, 2 s settle.
    fn default() -> Self {
        InProcessOptions {
            seed: 1,
            capture: None,
            deadline_micros: 120_000_000,
            settle_micros: 2_000_000,
        }
    }
}

/// Loop iterations a run may take, whatever the clock says.
const ITERATION_CAP: u64 = 20_000_000;

/// Replays `trace` against a sirocco server serving `cache`, in process. See the module docs.
pub fn replay_in_process(
    trace: &Trace,
    cache: Arc<ContentCache>,
    replay: ReplayOptions,
    options: &InProcessOptions,
) -> Result<Report, ReplayError> {
    let v6 = trace.flows.first().is_some_and(|f| f.server.0.is_ipv6());
    let (families, client_ip, server_ip) = if v6 {
        (
            Families::Ipv6,
            IpAddr::V6(sim::FIRST_CLIENT_IP6),
            IpAddr::V6(sim::SERVER_IP6),
        )
    } else {
        (
            Families::Ipv4,
            IpAddr::V4(sim::FIRST_CLIENT_IP),
            IpAddr::V4(sim::SERVER_IP),
        )
    };
    let mut config = SimConfig::new(options.seed, trace.flows.len()).with_families(families);
    config.server.stack.port = trace.port;
    let clock = VirtualClock::new();
    let (server_port, client_port) = MemoryLink::pair(config.link, clock.clone());
    let addresses = Addresses {
        client_mac: CLIENT_MAC,
        client_ip,
        server_mac: sim::SERVER_MAC.0,
        server_ip,
        server_port: trace.port,
        first_client_port: FIRST_CLIENT_PORT,
    };
    let label = format!("sirocco in-process (seed {}, virtual clock)", options.seed);
    match &options.capture {
        None => {
            let server = sim_server(server_port, cache, &config)?;
            let (report, _) = run(
                trace,
                server,
                client_port,
                clock,
                addresses,
                replay,
                options,
                label,
            )?;
            Ok(report)
        }
        Some((path, direction)) => {
            let sink = PcapSink::create(path, Timestamps::Virtual(clock.clone()))?;
            let captured = Capture::new(server_port, sink, *direction);
            let server = sim_server(captured, cache, &config)?;
            let (report, mut server) = run(
                trace,
                server,
                client_port,
                clock,
                addresses,
                replay,
                options,
                label,
            )?;
            server.driver_mut().flush()?;
            Ok(report)
        }
    }
}

/// The server, the replayer and the client's port: the [`Parties`] of an in-process replay.
struct Replay<'t, D: SimPort> {
    server: Server<D>,
    client: MemoryPort,
    replayer: Replayer<'t>,
    clock: VirtualClock,
    /// When the run stops waiting for the server to close, once every flow has ended.
    settle_until: Option<u64>,
    settle_micros: u64,
}

impl<D: SimPort> Parties for Replay<'_, D> {
    type Error = ReplayError;

    fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    fn poll(&mut self, now: u64) -> Result<bool, ReplayError> {
        let Replay {
            server,
            client,
            replayer,
            ..
        } = self;
        let mut moved = server.poll(event_loop::instant(now))?;
        moved |= client.rx_burst(256, &mut |frame| replayer.handle_frame(now, frame))? > 0;
        moved |= replayer.poll(now, &mut |frame| {
            client.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame))
        });
        client.tx_flush()?;
        Ok(moved)
    }

    /// Every flow has ended and the server holds no connection (or the settle time is up).
    fn finished(&mut self, now: u64) -> bool {
        if !self.replayer.is_done() {
            return false;
        }
        let until = *self
            .settle_until
            .get_or_insert(now.saturating_add(self.settle_micros));
        self.server.stats().connections == 0 || now >= until
    }

    fn next_event_micros(&self) -> Option<u64> {
        [
            self.server.poll_at().map(event_loop::micros),
            self.server.driver().next_arrival_micros(),
            self.client.next_arrival_micros(),
            self.replayer.poll_at(),
            self.settle_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Runs the replay to its end; returns the report and the server (to flush its capture).
#[allow(clippy::too_many_arguments)]
fn run<D: SimPort>(
    trace: &Trace,
    server: Server<D>,
    client: MemoryPort,
    clock: VirtualClock,
    addresses: Addresses,
    replay: ReplayOptions,
    options: &InProcessOptions,
    label: String,
) -> Result<(Report, Server<D>), ReplayError> {
    let mut parties = Replay {
        server,
        client,
        replayer: Replayer::new(trace, addresses, replay),
        clock,
        settle_until: None,
        settle_micros: options.settle_micros,
    };
    let deadline = options.deadline_micros;
    for _ in 0..ITERATION_CAP {
        match event_loop::tick(&mut parties, deadline)? {
            Tick::Moved | Tick::Jumped => {}
            Tick::Finished => break,
            Tick::Stalled => {
                parties.replayer.give_up("nothing left that could happen");
                break;
            }
            Tick::PastDeadline => {
                parties.replayer.give_up(&format!(
                    "the run's virtual-time limit of {} s passed",
                    deadline / 1_000_000
                ));
                break;
            }
        }
    }
    let Replay {
        server,
        mut replayer,
        clock,
        ..
    } = parties;
    if !replayer.is_done() {
        replayer.give_up("the iteration cap was reached");
    }
    let stats = server.stats();
    let target_counters = stats
        .stack
        .fields()
        .chain(stats.http.fields())
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    let (flows, counters) = replayer.finish();
    let report = Report {
        trace: trace.label.clone(),
        target: label,
        flows,
        counters,
        elapsed_micros: clock.now_micros(),
        target_counters,
    };
    Ok((report, server))
}
