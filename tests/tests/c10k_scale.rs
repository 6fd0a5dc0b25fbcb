//! C10K and beyond: 100,000 concurrent connections in memory, each completing a request
//! byte-exact, all open at the same time on the server.
//!
//! The server runs at its default buffer sizes (2 KiB receive, 2 KiB send per connection);
//! the client fleet uses small buffers so the whole test stays within a CI machine's memory.
//! The fleet holds every connection open after its response ([`ClientFleet::set_hold`]), so
//! the server provably holds all 100,000 at once, then releases them and checks that the
//! server lets every one go.
//!
//! [`ClientFleet::set_hold`]: sirocco_tools::sim::ClientFleet::set_hold

use std::sync::Arc;

use sirocco_tests::{TestTree, assert_all_ok};
use sirocco_tools::sim::{Limits, Mode, Script, SimConfig};

const CONNECTIONS: usize = 100_000;

#[test]
fn hundred_thousand_concurrent_connections_each_complete_a_request_byte_exact() {
    let tree = TestTree::with_sizes(&[512]);
    // The tree holds one file: a GET of it, expecting its exact bytes.
    let requests = tree.get_all();
    let scripts: Vec<Script> = (0..CONNECTIONS)
        .map(|_| Script {
            requests: Arc::clone(&requests),
            first: 0,
            count: 1,
            mode: Mode::KeepAlive { pipeline: 1 },
        })
        .collect();
    let mut config = SimConfig::new(100, CONNECTIONS);
    config.server.stack.max_connections = CONNECTIONS;
    config.fleet.rx_buffer = 2048;
    config.fleet.tx_buffer = 512;
    let mut sim = tree.simulation(config, scripts);
    sim.fleet_mut().set_hold(true);

    let mut peak = 0;
    sim.run_until(Limits::secs(600), |sim| {
        peak = peak.max(sim.server().stats().connections);
        sim.fleet().is_done()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let report = sim.report();
    assert_all_ok(&report, CONNECTIONS as u64);
    assert_eq!(report.server.connections, CONNECTIONS, "{report}");
    assert_eq!(peak, CONNECTIONS, "all connections were open at once");
    let stack = &report.server.stack;
    assert_eq!(stack.syn_accepted, CONNECTIONS as u64, "{report}");
    assert_eq!(stack.syn_refused_full, 0, "{report}");
    assert_eq!(stack.total_dropped(), 0, "{report}");
    assert_eq!(report.fleet.connects, CONNECTIONS as u64, "{report}");
    assert_eq!(report.server.http.responses_2xx, CONNECTIONS as u64);

    sim.fleet_mut().set_hold(false);
    let settled = sim
        .settle(Limits::secs(600))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settled.server.connections, 0, "{settled}");
    assert_eq!(settled.server.stack.rst_sent, 0, "{settled}");
    assert_eq!(settled.server.stack.connections_closed, CONNECTIONS as u64);
}
