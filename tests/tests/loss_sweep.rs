//! `sirocco-bench loss --json`, the simulator's sweep of loss rates and round trips: every point
//! keeps at least half the Mathis bound, and no download stalls longer than two retransmission
//! timeouts. The sweep runs on the virtual clock, so its numbers are the same on every machine
//! and the bounds are not timing. Runs the release binary
//! (`sirocco_tests::lab::release_binary` builds it if it is missing or stale).

use std::process::Command;

#[test]
fn every_point_keeps_half_the_mathis_bound_and_no_stall_outlasts_two_rtos() {
    let out = Command::new(sirocco_tests::lab::release_binary("sirocco-bench"))
        .args(["loss", "--json"])
        .output()
        .expect("run sirocco-bench loss");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sirocco-bench loss failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    // 0, 0.1, 1, 2, 5 and 10% each way, at 1, 10 and 50 ms.
    assert_eq!(rows.len(), 18, "{stdout}");
    let number = |row: &serde_json::Value, key: &str| {
        row[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {row}"))
    };
    for row in &rows {
        let loss = number(row, "loss");
        for key in ["rtt_ms", "goodput_mbps", "rto_fired", "longest_stall_ms"] {
            number(row, key);
        }
        if loss == 0.0 {
            assert!(row["mathis_mbps"].is_null() && row["ratio_to_mathis"].is_null());
            assert_eq!(
                number(row, "rto_fired"),
                0.0,
                "a clean link fired an RTO: {row}"
            );
        } else {
            let ratio = number(row, "ratio_to_mathis");
            let expected = number(row, "goodput_mbps") / number(row, "mathis_mbps");
            // Both figures are rounded to two decimals (0.9 Mbit/s at 10% and 50 ms).
            assert!((ratio - expected).abs() <= 0.01 + 0.02 * expected, "{row}");
            assert!(ratio >= 0.5, "below half the Mathis bound: {row}");
        }
        assert!(
            number(row, "longest_stall_ms") <= number(row, "stall_limit_ms"),
            "a stall longer than two RTOs: {row}"
        );
    }
}
