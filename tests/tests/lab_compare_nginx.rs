//! `tools/compare-nginx` in its throughput mode, short: one 2 s wrk run of keepalive-512-c10
//! against sirocco (AF_XDP) and one against nginx, in its veth lab, with --json. Both must serve
//! every request without error, and the server CPU figures (CPU time per request and per MiB,
//! the share of the core, and the ratios sirocco/nginx) must be there and positive, with their
//! parts adding up: the figures are a benchmark (`tools/compare-nginx --repeat 3`), not
//! asserted beyond that. Then the same on a jumbo link (`--mtu 9000`), with the 1 MiB file.
//! The two labs run one after the other: both pin their servers to the same core.
//!
//! Needs root, ip, ethtool, python3, nginx, wrk and taskset; `tools/test` installs them. Runs the release
//! binary (`lab::sirocco_binary` builds it if it is missing or stale).

use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use sirocco_tests::lab;

/// Held by each test for its whole lab: one lab at a time.
static ONE_LAB: Mutex<()> = Mutex::new(());

/// The lab's turn for test `name`: `None` if the lab cannot run here (see `lab::runnable`).
fn lab_turn(name: &str) -> Option<MutexGuard<'static, ()>> {
    let tools = ["ip", "ethtool", "python3", "nginx", "wrk", "taskset"];
    if !lab::runnable(name, &tools) {
        return None;
    }
    Some(
        ONE_LAB
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

fn positive(row: &Value, key: &str) -> f64 {
    let x = row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key}: {row}"));
    assert!(x > 0.0, "{key} = {x}, not positive: {row}");
    x
}

/// Checks that `row` is `scenario`'s and that both servers served it without an error and
/// have a CPU time per MiB; returns the two servers' names.
fn served_cleanly(row: &Value, scenario: &str) -> [&'static str; 2] {
    assert_eq!(row["scenario"], scenario, "{row}");
    let servers = ["sirocco", "nginx"];
    for server in servers {
        positive(row, &format!("{server}_rps"));
        assert_eq!(row[format!("{server}_errors")].as_u64(), Some(0), "{row}");
        positive(row, &format!("{server}_cpu_per_mib_ms"));
    }
    servers
}

#[test]
fn compare_nginx_reports_server_cpu_per_request_and_per_mib() {
    let Some(_turn) = lab_turn("lab_compare_nginx") else {
        return;
    };
    let (row, stderr) = lab::compare_nginx(&["--quick", "--scenarios", "keepalive-512-c10"]);
    // The set-up (RPS on the client, sirocco sleeping when idle) is said on stderr.
    assert!(stderr.contains("RPS on veth-cli"), "{stderr}");
    assert!(stderr.contains("--sleep-when-idle"), "{stderr}");
    for server in served_cleanly(&row, "keepalive-512-c10") {
        positive(&row, &format!("{server}_cpu_per_req_us"));
        let share = positive(&row, &format!("{server}_core_share"));
        assert!(share <= 1.05, "{server} used {share} of one core: {row}");
        let runs = row[format!("{server}_cpu_runs")]
            .as_array()
            .unwrap_or_else(|| panic!("no {server}_cpu_runs: {row}"));
        assert_eq!(runs.len(), 1, "{row}");
        let run = &runs[0];
        // server CPU = process + irq/softirq of its core, at most the core's busy time.
        let cpu = positive(run, "server_cpu_s");
        let process = positive(run, "server_process_cpu_s");
        let irq = run["server_core_irq_softirq_s"].as_f64().expect("irq time");
        let busy = positive(run, "server_core_busy_s");
        assert!(
            cpu <= process + irq + 0.002 && cpu <= busy + 0.002,
            "{server}: {run}"
        );
        positive(run, "client_core_net_rx_per_req");
    }
    positive(&row, "cpu_per_req_ratio");
    positive(&row, "cpu_per_mib_ratio");
}

/// `--mtu 9000`: the same lab on a jumbo link. Both servers serve the 1 MiB file without
/// error (sirocco in jumbo frames, over AF_XDP multi-buffer) and the set-up says the MTU.
#[test]
fn compare_nginx_runs_on_a_jumbo_link() {
    let Some(_turn) = lab_turn("lab_compare_nginx_jumbo") else {
        return;
    };
    let (row, stderr) =
        lab::compare_nginx(&["--quick", "--scenarios", "file-1m-c10", "--mtu", "9000"]);
    assert!(stderr.contains("IP MTU 9000 on both ends"), "{stderr}");
    served_cleanly(&row, "file-1m-c10");
}
