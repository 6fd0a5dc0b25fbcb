//! Overload: twice as many clients as the server has connection cells.
//!
//! The server must refuse the excess with an RST at once (no queueing, no stall), keep serving
//! the connections it accepted, and serve new clients as soon as cells come back. The clients
//! hold their connections open after their response, so the pool stays full for the whole
//! burst and every refused client really meets a full pool (each tries three times before it
//! gives up).

use std::sync::Arc;

use sirocco_tests::TestTree;
use sirocco_tools::sim::{Limits, Mode, Script, SimConfig};

const CELLS: usize = 500;

#[test]
fn twice_max_connections_the_excess_is_reset_the_rest_served_and_the_server_recovers() {
    let tree = TestTree::with_sizes(&[512]);
    // The tree holds one file: a GET of it, expecting its exact bytes.
    let requests = tree.get_all();
    let script = || Script {
        requests: Arc::clone(&requests),
        first: 0,
        count: 1,
        mode: Mode::KeepAlive { pipeline: 1 },
    };
    let mut config = SimConfig::new(3, 2 * CELLS);
    config.server.stack.max_connections = CELLS;
    let mut sim = tree.simulation(config, (0..2 * CELLS).map(|_| script()).collect());
    sim.fleet_mut().set_hold(true);

    let report = sim
        .run_until_done(Limits::secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    // The accepted half all completed byte-exact and are still open.
    assert_eq!(report.fleet.responses_ok, CELLS as u64, "{report}");
    assert_eq!(report.server.connections, CELLS, "{report}");
    assert_eq!(report.server.http.responses_2xx, CELLS as u64, "{report}");
    // The refused half got RSTs (three attempts each), and nothing else.
    assert_eq!(report.fleet.requests_failed, CELLS as u64, "{report}");
    assert!(
        report.mismatches.iter().all(|m| m
            .problem
            .contains("gave up after repeated failed connections")),
        "{report}"
    );
    let stack = &report.server.stack;
    assert_eq!(stack.syn_accepted, CELLS as u64, "{report}");
    assert_eq!(stack.syn_refused_full, 3 * CELLS as u64, "{report}");
    assert_eq!(report.fleet.resets, 3 * CELLS as u64, "{report}");
    assert_eq!(stack.rst_sent, 3 * CELLS as u64, "{report}");
    assert!(
        report.virtual_micros < 1_000_000,
        "refusals are immediate: {report}"
    );

    // The burst ends: the held connections close, and the cells come back.
    sim.fleet_mut().set_hold(false);
    let settled = sim
        .settle(Limits::secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settled.server.connections, 0, "{settled}");

    // New clients, a full pool's worth, are all served.
    for _ in 0..CELLS {
        sim.fleet_mut().add_script(script());
    }
    let after = sim
        .run_until_done(Limits::secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.fleet.responses_ok, 2 * CELLS as u64, "{after}");
    assert_eq!(after.fleet.requests_failed, CELLS as u64, "{after}");
    assert_eq!(after.server.stack.syn_accepted, 2 * CELLS as u64, "{after}");
    assert_eq!(
        after.server.stack.syn_refused_full,
        3 * CELLS as u64,
        "{after}"
    );
}
