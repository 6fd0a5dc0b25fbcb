//! End to end in memory over IPv6: the scenarios of `memory_e2e` with the server on
//! 2001:2::2/64 only and the clients in 2001:2::/64, finding the server's MAC with neighbor
//! discovery (the server's advertisement is what lets them connect at all); and a mixed run,
//! a dual-stack server with half the clients on each family. Every response must arrive
//! byte-exact, on a clean link and through loss, reordering and duplication.
//!
//! The lossy runs take a few seeds, not `memory_e2e`'s hundred: that sweep covers the TCP
//! paths, which do not depend on the family; these show the IPv6 paths hold under faults.

use sirocco_drivers::memory::FaultConfig;
use sirocco_tests::{TestTree, assert_all_ok, run_to_completion, settle};
use sirocco_tools::sim::{Families, Limits, Mode, Script, SimConfig, SimReport};

/// 5% loss, 5% reordering, 5% duplication, on both directions.
fn lossy(seed: u64) -> FaultConfig {
    FaultConfig::lossy(seed, 0.05, 0.05, 0.05)
}

/// The lossy seeds.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=4;

fn config(families: Families, seed: u64, slots: usize, faults: Option<FaultConfig>) -> SimConfig {
    let config = SimConfig::new(seed, slots).with_families(families);
    match faults {
        Some(faults) => config.with_faults(faults),
        None => config,
    }
}

/// Server-side checks that hold on a clean link, and the neighbor discovery that happened.
fn assert_clean_server(report: &SimReport, requests: u64, connections: u64) {
    let server = &report.server;
    assert_eq!(server.http.requests, requests, "{report}");
    assert_eq!(server.http.responses_2xx, requests, "{report}");
    assert_eq!(server.http.parse_errors, 0, "{report}");
    assert_eq!(server.stack.syn_accepted, connections, "{report}");
    assert_eq!(server.stack.total_dropped(), 0, "{report}");
    assert_eq!(server.stack.rst_sent, 0, "{report}");
    assert_eq!(server.driver.tx_dropped, 0, "{report}");
    assert_eq!(report.fleet.resets, 0, "{report}");
    assert_eq!(report.fleet.rx_unmatched, 0, "{report}");
    // One solicitation, answered at once: nothing was lost.
    assert_eq!(report.fleet.solicitations_sent, 1, "{report}");
}

fn every_file(families: Families, faults: Option<FaultConfig>, seed: u64) -> SimReport {
    let tree = TestTree::standard();
    let get = tree.get_all();
    let n = get.len() as u64;
    // As in memory_e2e: keep-alive, pipelined 4 deep, HEAD, and one connection per file. In a
    // mixed run the slots alternate families, so each family gets two of the four.
    let scripts = vec![
        Script::each(get.clone(), Mode::KeepAlive { pipeline: 1 }),
        Script::each(get.clone(), Mode::KeepAlive { pipeline: 4 }),
        Script::each(tree.head_all(), Mode::KeepAlive { pipeline: 1 }),
        Script::each(get, Mode::NewConnection),
    ];
    let mut sim = tree.simulation(config(families, seed, scripts.len(), faults), scripts);
    let report = run_to_completion(&mut sim, Limits::secs(3600));
    assert_all_ok(&report, 4 * n);
    assert!(sim.fleet().server_mac6().is_some(), "{report}");
    let settled = settle(&mut sim, Limits::secs(3600));
    assert_eq!(settled.server.connections, 0, "{settled}");
    assert_eq!(settled.server.http.requests, 4 * n, "{settled}");
    if faults.is_none() {
        assert_clean_server(&settled, 4 * n, 3 + n);
        assert_eq!(settled.fleet.connects, 3 + n);
    } else {
        assert!(settled.server_to_client.lost > 0 && settled.client_to_server.lost > 0);
        assert!(settled.server_to_client.duplicated > 0 && settled.server_to_client.reordered > 0);
    }
    settled
}

fn thousand_connections(families: Families, faults: Option<FaultConfig>, seed: u64) -> SimReport {
    let tree = TestTree::standard();
    let small = tree.get_small();
    let per_connection = 6;
    // Half the slots fetch one file at a time, a quarter pipeline three deep, and a quarter
    // open a new connection for every request (the 4-slot pattern gives each family of a
    // mixed run half of every mode).
    let mode = |i: usize| match i % 4 {
        0 | 1 => Mode::KeepAlive { pipeline: 1 },
        2 => Mode::KeepAlive { pipeline: 3 },
        _ => Mode::NewConnection,
    };
    let scripts: Vec<Script> = (0..1000)
        .map(|i| Script {
            requests: small.clone(),
            first: i,
            count: per_connection,
            mode: mode(i),
        })
        .collect();
    let connections = 750 + 250 * per_connection as u64;
    let mut sim = tree.simulation(config(families, seed, scripts.len(), faults), scripts);
    let report = run_to_completion(&mut sim, Limits::secs(3600));
    let expected = 1000 * per_connection as u64;
    assert_all_ok(&report, expected);
    assert_eq!(report.fleet.connects, connections, "{report}");
    let settled = settle(&mut sim, Limits::secs(3600));
    assert_eq!(settled.server.connections, 0, "{settled}");
    if faults.is_none() {
        assert_clean_server(&settled, expected, connections);
    } else {
        assert_eq!(settled.server.http.requests, expected, "{settled}");
    }
    settled
}

#[test]
fn every_file_byte_exact_over_ipv6() {
    let report = every_file(Families::Ipv6, None, 11);
    // The fleet's one solicitation was answered by the server's advertisement.
    let adverts = report
        .server
        .stack
        .fields()
        .find(|(name, _)| *name == "ndp_adverts_sent")
        .map(|(_, n)| n);
    assert!(
        adverts.is_some_and(|n| n >= 1),
        "{adverts:?} adverts: {report}"
    );
}

#[test]
fn thousand_concurrent_connections_byte_exact_over_ipv6() {
    thousand_connections(Families::Ipv6, None, 21);
}

#[test]
fn every_file_byte_exact_over_ipv6_through_loss_reordering_and_duplication() {
    for seed in SEEDS {
        every_file(Families::Ipv6, Some(lossy(100 + seed)), seed);
    }
}

#[test]
fn thousand_concurrent_connections_over_ipv6_through_loss_reordering_and_duplication() {
    for seed in SEEDS {
        thousand_connections(Families::Ipv6, Some(lossy(100 + seed)), seed);
    }
}

#[test]
fn a_mixed_fleet_is_served_on_both_families() {
    let report = thousand_connections(Families::Mixed, None, 31);
    // Both families carried connections: the IPv6 half needed the server's advertisement,
    // and the server counted as many handshakes as both halves made.
    assert_eq!(report.fleet.solicitations_sent, 1, "{report}");
    assert_eq!(report.server.stack.syn_accepted, report.fleet.connects);
    every_file(Families::Mixed, None, 12);
}

#[test]
fn a_mixed_fleet_through_loss_reordering_and_duplication() {
    for seed in SEEDS {
        every_file(Families::Mixed, Some(lossy(200 + seed)), seed);
        thousand_connections(Families::Mixed, Some(lossy(300 + seed)), seed);
    }
}
