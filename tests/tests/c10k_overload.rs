//! Overload: twice as many clients as the server has connection cells.
//!
//! The first half is served and then holds its connections open, idle, as browsers hold
//! keep-alive connections. When the second half arrives the pool is full, and each newcomer
//! takes the cell of the connection idle longest, which is reset, as nginx closes idle
//! keep-alive connections when `worker_connections` run out (no queueing, no stall, no
//! refusal). Everyone is served byte-exact; the server then recovers fully. (A full pool with
//! no idle connection refuses the handshake with an RST: see the netstack's
//! `pool_exhausted_handshake_gets_rst`.)

use std::sync::Arc;

use sirocco_tests::TestTree;
use sirocco_tools::sim::{Limits, Mode, Script, SimConfig};

const CELLS: usize = 500;

#[test]
fn twice_max_connections_the_idle_make_room_and_everyone_is_served() {
    let tree = TestTree::with_sizes(&[512]);
    // The tree holds one file: a GET of it, expecting its exact bytes.
    let requests = tree.get_all();
    let script = || Script {
        requests: Arc::clone(&requests),
        first: 0,
        count: 1,
        mode: Mode::KeepAlive { pipeline: 1 },
    };
    let mut config = SimConfig::new(3, CELLS);
    config.server.stack.max_connections = CELLS;
    let mut sim = tree.simulation(config, (0..CELLS).map(|_| script()).collect());
    sim.fleet_mut().set_hold(true);
    let first = sim
        .run_until_done(Limits::secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.fleet.responses_ok, CELLS as u64, "{first}");
    assert_eq!(first.server.connections, CELLS, "the pool is full: {first}");
    // The clients acknowledge their answers (after their delayed-ACK timer): only then is a
    // connection idle with nothing to lose.
    sim.run_steps(10_000, 50_000)
        .unwrap_or_else(|e| panic!("{e}"));
    let acked = sim.report();
    assert_eq!(acked.server.driver.rx_frames, 3 * CELLS as u64, "{acked}");

    // The second half: each takes an idle connection's cell.
    for _ in 0..CELLS {
        sim.fleet_mut().add_script(script());
    }
    let report = sim
        .run_until_done(Limits::secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.fleet.responses_ok, 2 * CELLS as u64, "{report}");
    assert_eq!(report.fleet.requests_failed, 0, "{report}");
    assert!(report.mismatches.is_empty(), "{report}");
    assert_eq!(report.server.connections, CELLS, "{report}");
    let stack = &report.server.stack;
    assert_eq!(stack.syn_accepted, 2 * CELLS as u64, "{report}");
    assert_eq!(stack.syn_refused_full, 0, "{report}");
    assert_eq!(stack.idle_evicted, CELLS as u64, "{report}");
    // The evicted ones, all of the first half, were reset while idle.
    assert_eq!(report.fleet.resets, CELLS as u64, "{report}");
    assert!(
        report.virtual_micros < 1_000_000,
        "nobody waited for a cell: {report}"
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
    assert_eq!(after.fleet.responses_ok, 3 * CELLS as u64, "{after}");
    assert_eq!(after.fleet.requests_failed, 0, "{after}");
    assert_eq!(after.server.stack.syn_accepted, 3 * CELLS as u64, "{after}");
}
