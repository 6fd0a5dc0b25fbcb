//! The steady state allocates nothing: after warm-up, requests over keep-alive connections and
//! over new connections cause no heap allocation inside `Server::poll`.
//!
//! A counting global allocator wraps the system one. Counting is switched on per thread, only
//! around `Server::poll`, so the client fleet (which builds requests into fresh buffers) and
//! other tests running in parallel threads are not counted. The simulation is driven for that
//! reason by `count_server_allocations`, which runs the simulation's own virtual-clock loop
//! (`sirocco_tools::sim::event_loop`) with a poll that counts the server (and not the fleet).
//!
//! The allocator is `sirocco_drivers::alloc_count::CountingAllocator` (its `unsafe` lives in
//! drivers with the rest).

use std::sync::Arc;

use sirocco_drivers::alloc_count::CountingAllocator;
use sirocco_tests::{TestTree, assert_all_ok, count_server_allocations};
use sirocco_tools::sim::{Limits, Mode, Script, SimConfig, Simulation};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs the loop until `resolved` requests are resolved; returns the allocations counted
/// inside `Server::poll` and how many server polls there were.
fn run_counting(sim: &mut Simulation, resolved: u64) -> (u64, u64) {
    count_server_allocations(sim, |sim| sim.fleet().progress().0 >= resolved)
}

fn simulation(tree: &TestTree, connections: usize, count: usize, mode: Mode) -> Simulation {
    let mut config = SimConfig::new(7, connections);
    config.fleet.rx_buffer = 4096;
    simulation_with(tree, config, connections, count, mode)
}

/// `connections` clients, each making `count` requests for the tree's one file.
fn simulation_with(
    tree: &TestTree,
    config: SimConfig,
    connections: usize,
    count: usize,
    mode: Mode,
) -> Simulation {
    // The tree holds one file: a GET of it, expecting its exact bytes.
    let requests = tree.get_all();
    let scripts = (0..connections)
        .map(|_| Script {
            requests: Arc::clone(&requests),
            first: 0,
            count,
            mode,
        })
        .collect();
    tree.simulation(config, scripts)
}

#[test]
fn keep_alive_requests_allocate_nothing_after_warm_up() {
    let tree = TestTree::with_sizes(&[512]);
    let (connections, count) = (500, 40);
    let mut sim = simulation(&tree, connections, count, Mode::KeepAlive { pipeline: 1 });
    // Warm-up: every connection has served two requests (its HTTP state has its buffers).
    // Those first requests do allocate, which also shows the counter counts.
    let (warm_up, _) = run_counting(&mut sim, 2 * connections as u64);
    assert!(
        warm_up >= connections as u64,
        "{warm_up} allocations in warm-up"
    );
    let total = (connections * count) as u64;
    let (allocations, polls) = run_counting(&mut sim, total);
    assert!(polls > 100, "the measured phase ran ({polls} polls)");
    assert_eq!(allocations, 0, "allocations in {polls} server polls");
    assert_all_ok(&sim.report(), total);
}

#[test]
fn new_connections_allocate_nothing_after_warm_up() {
    let tree = TestTree::with_sizes(&[512]);
    // 100 clients, each opening 30 connections one after another (Connection: close): the
    // server opens and recycles 3,000 connections and buries each in a TIME-WAIT tombstone.
    let (connections, count) = (100, 30);
    let mut sim = simulation(&tree, connections, count, Mode::NewConnection);
    let (warm_up, _) = run_counting(&mut sim, 3 * connections as u64);
    assert!(
        warm_up > 0,
        "the first connections allocate their HTTP buffers"
    );
    let total = (connections * count) as u64;
    let (allocations, polls) = run_counting(&mut sim, total);
    assert!(polls > 100, "the measured phase ran ({polls} polls)");
    assert_eq!(allocations, 0, "allocations in {polls} server polls");
    let report = sim.report();
    assert_all_ok(&report, total);
    assert!(report.server.stack.time_wait_entered >= total - connections as u64);
}

/// The server's heap as the simulation counts it (what `sirocco-bench` reports per connection
/// as `bytes_per_connection`) holds every pooled connection's two socket buffers, and not the
/// client fleet's: the fleet's receive buffers here are 64 KiB each, so counting them would
/// put the figure far above the bound. Measured as the growth from 200 to 600 connections,
/// which leaves out what the server allocates whatever their number.
#[test]
fn the_server_heap_counts_the_servers_buffers_and_not_the_fleets() {
    let tree = TestTree::with_sizes(&[512]);
    let heap = |connections: usize| {
        let mut config = SimConfig::new(7, connections);
        config.fleet.rx_buffer = 64 * 1024;
        config.server.stack.max_connections = connections;
        let mut sim = simulation_with(
            &tree,
            config,
            connections,
            3,
            Mode::KeepAlive { pipeline: 1 },
        );
        let total = (connections * 3) as u64;
        sim.run_until(Limits::secs(600), |sim| sim.fleet().progress().0 >= total)
            .expect("the run");
        assert_all_ok(&sim.report(), total);
        sim.server_heap_bytes()
    };
    let stack = SimConfig::new(7, 1).server.stack;
    let buffers = (stack.rx_buffer + stack.tx_buffer) as i64;
    let (few, many) = (heap(200), heap(600));
    let per_connection = (many - few) / 400;
    assert!(
        per_connection >= buffers && per_connection <= 16 * 1024,
        "{per_connection} bytes per connection ({few} at 200, {many} at 600; the socket \
         buffers alone are {buffers})"
    );
}
