//! The timer wheel leaves no connection stuck: under 5% loss every retransmission deadline
//! fires (every request completes byte-exact), and connections that then go quiet are all
//! reset by the idle timeout, on time, with no input to wake them.

use std::sync::Arc;

use sirocco_drivers::memory::FaultConfig;
use sirocco_netstack::Duration;
use sirocco_tests::{TestTree, assert_all_ok};
use sirocco_tools::sim::{Limits, Mode, Script, SimConfig};

const CONNECTIONS: usize = 2_000;
const IDLE_SECS: u64 = 30;

#[test]
fn under_loss_every_deadline_fires_and_idle_connections_time_out_on_time() {
    let tree = TestTree::with_sizes(&[512, 20_000]);
    let requests = tree.get_all();
    let scripts = (0..CONNECTIONS)
        .map(|i| Script {
            requests: Arc::clone(&requests),
            first: i,
            count: 3,
            mode: Mode::KeepAlive { pipeline: 1 },
        })
        .collect();
    let mut config =
        SimConfig::new(9, CONNECTIONS).with_faults(FaultConfig::lossy(9, 0.05, 0.0, 0.0));
    config.server.stack.idle_timeout = Duration::from_secs(IDLE_SECS);
    // The clients give up on data unacknowledged for a minute, so a dead peer cannot hang them.
    config.fleet.timeout = Some(Duration::from_secs(60));
    let mut sim = tree.simulation(config, scripts);
    sim.fleet_mut().set_hold(true);

    let report = sim
        .run_until_done(Limits::secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_all_ok(&report, 3 * CONNECTIONS as u64);
    assert!(report.server_to_client.lost > 0 && report.client_to_server.lost > 0);
    // Connections that finished early are already idle-timed-out; the others are open.
    assert_eq!(
        report.server.connections as u64 + report.server.stack.idle_timeouts,
        CONNECTIONS as u64,
        "{report}"
    );
    let done_at = report.virtual_micros;

    // Everyone is idle now. Only the wheel can end the remaining connections.
    sim.run_until(Limits::secs(10 * IDLE_SECS), |sim| {
        sim.server().stats().connections == 0
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let idle = sim.report();
    assert_eq!(
        idle.server.stack.idle_timeouts, CONNECTIONS as u64,
        "{idle}"
    );
    // The idle clock of a connection starts at the last segment from its client, which can
    // come a little after the client has its last response: at 5% loss, a lost final ACK is
    // drawn out by a probe or a backed-off retransmission (0.2, 0.4, 0.8 s...) first.
    let waited = idle.virtual_micros - done_at;
    assert!(
        waited <= (IDLE_SECS + 2) * 1_000_000,
        "the last idle connection was reset {waited} us after the last request"
    );

    sim.fleet_mut().set_hold(false);
    let settled = sim
        .settle(Limits::secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settled.server.connections, 0, "{settled}");
}
