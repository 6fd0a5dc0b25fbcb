//! `sirocco-bench stack --engines 1,2 --json`, and `--rounds`: one engine and two at once,
//! each on its own pinned thread with its own server and client fleet on one shared content
//! cache; `--rounds` of the classic one-engine rows, with their ratio to the fewest
//! connections; and the slow clients' transfer time, in virtual time. Checks the shape and
//! sanity of the rows (every request served, one entry per engine, a finite positive
//! efficiency, medians within their ranges), never a performance threshold: the bench
//! reports, tests do not time. Runs the release binary
//! (`sirocco_tests::lab::release_binary` builds it if it is missing or stale).

use std::process::Command;

use serde_json::Value;

fn number(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {row}"))
}

fn numbers(row: &Value, key: &str) -> Vec<f64> {
    row[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {row}"))
        .iter()
        .map(|v| {
            v.as_f64()
                .unwrap_or_else(|| panic!("{key} holds a non-number in {row}"))
        })
        .collect()
}

/// `sirocco-bench stack ARGS --json`, asserting it succeeded; one JSON row per line.
fn bench_rows(args: &[&str]) -> Vec<Value> {
    let out = Command::new(sirocco_tests::lab::release_binary("sirocco-bench"))
        .arg("stack")
        .args(args)
        .arg("--json")
        .output()
        .expect("run sirocco-bench stack");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sirocco-bench stack {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[test]
fn one_and_two_engines_give_a_row_each_with_per_engine_figures() {
    let rows = bench_rows(&[
        "--scenarios",
        "keepalive-512,new-connection-512",
        "--connections",
        "100",
        "--requests",
        "4000",
        "--engines",
        "1,2",
    ]);
    let shape: Vec<(&str, f64)> = rows
        .iter()
        .map(|row| {
            (
                row["scenario"].as_str().unwrap_or("?"),
                number(row, "engines"),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("keepalive-512", 1.0),
            ("keepalive-512", 2.0),
            ("new-connection-512", 1.0),
            ("new-connection-512", 2.0),
        ],
        "{rows:?}"
    );
    for row in &rows {
        let engines = number(row, "engines") as usize;
        assert_eq!(number(row, "connections"), 100.0, "{row}");
        for key in [
            "requests_per_sec_per_engine",
            "server_ns_per_request",
            "server_cpu_ns_per_request",
            "client_ns_per_request",
            "thread_cpu_ns_per_request",
            "cpu_share",
            "preemptions",
            "cpus",
            "connections_per_engine",
            "requests_per_engine",
        ] {
            assert_eq!(numbers(row, key).len(), engines, "{key} in {row}");
        }
        // The connections are shared out, and every engine served requests of its own.
        assert_eq!(
            numbers(row, "connections_per_engine").iter().sum::<f64>(),
            100.0,
            "{row}"
        );
        let per_engine = numbers(row, "requests_per_engine");
        assert!(per_engine.iter().all(|&r| r > 0.0), "{row}");
        assert_eq!(per_engine.iter().sum::<f64>(), number(row, "requests"));
        for key in [
            "requests_per_sec_per_engine",
            "server_ns_per_request",
            "server_cpu_ns_per_request",
            "client_ns_per_request",
            "thread_cpu_ns_per_request",
            "cpu_share",
        ] {
            for x in numbers(row, key) {
                assert!(x.is_finite() && x > 0.0, "{key} in {row}");
            }
        }
        // The sum over engines (each rounded to a whole request per second).
        let sum: f64 = numbers(row, "requests_per_sec_per_engine").iter().sum();
        assert!(
            (number(row, "requests_per_sec") - sum).abs() <= engines as f64,
            "{row}"
        );
        for key in ["scaling_efficiency", "scaling_efficiency_cpu"] {
            let efficiency = number(row, key);
            assert!(efficiency.is_finite() && efficiency > 0.0, "{key} in {row}");
            if engines == 1 {
                assert_eq!(efficiency, 1.0, "{key}: the baseline is itself: {row}");
            }
        }
        let overlap = number(row, "overlap");
        assert!((0.0..=1.0).contains(&overlap), "{row}");
        // Each engine on a CPU of its own while there are enough of them.
        let allowed = number(row, "allowed_cpus") as usize;
        let mut cpus = numbers(row, "cpus");
        cpus.dedup();
        assert_eq!(cpus.len(), engines.min(allowed), "{row}");
        assert_eq!(row["oversubscribed"].as_bool(), Some(engines > allowed));
    }
}

#[test]
fn rounds_repeat_the_list_and_end_with_the_median_of_each_engine_count() {
    let rows = bench_rows(&[
        "--scenarios",
        "keepalive-512",
        "--connections",
        "20",
        "--requests",
        "1000",
        "--engines",
        "2",
        "--rounds",
        "2",
    ]);
    // Round 1 and round 2, each with the one-engine baseline first, then the medians.
    let shape: Vec<(f64, Option<f64>, bool)> = rows
        .iter()
        .map(|row| {
            (
                number(row, "engines"),
                row["round"].as_f64(),
                row["median"] == Value::Bool(true),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1.0, Some(1.0), false),
            (2.0, Some(1.0), false),
            (1.0, Some(2.0), false),
            (2.0, Some(2.0), false),
            (1.0, None, true),
            (2.0, None, true),
        ],
        "{rows:?}"
    );
    for median in &rows[4..] {
        assert_eq!(number(median, "rounds"), 2.0, "{median}");
        for key in [
            "scaling_efficiency",
            "scaling_efficiency_cpu",
            "requests_per_sec",
        ] {
            let value = number(median, key);
            let range = numbers(median, &format!("{key}_range"));
            assert!(value.is_finite() && value > 0.0, "{key} in {median}");
            // Rounded to three decimals, the median of two lies between them.
            assert!(
                range[0] - 0.001 <= value && value <= range[1] + 0.001,
                "{key} in {median}"
            );
        }
    }
}

#[test]
fn classic_rounds_alternate_the_counts_and_end_with_medians_of_cost_and_flatness() {
    // Given most first: the bench runs the fewest first, its baseline.
    let rows = bench_rows(&[
        "--scenarios",
        "keepalive-512",
        "--connections",
        "40,20",
        "--requests",
        "1000",
        "--rounds",
        "3",
    ]);
    let shape: Vec<(f64, Option<f64>, bool)> = rows
        .iter()
        .map(|row| {
            (
                number(row, "connections"),
                row["round"].as_f64(),
                row["median"] == Value::Bool(true),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (20.0, Some(1.0), false),
            (40.0, Some(1.0), false),
            (20.0, Some(2.0), false),
            (40.0, Some(2.0), false),
            (20.0, Some(3.0), false),
            (40.0, Some(3.0), false),
            (20.0, None, true),
            (40.0, None, true),
        ],
        "{rows:?}"
    );
    for pair in rows[..6].chunks(2) {
        let (fewest, most) = (&pair[0], &pair[1]);
        assert_eq!(number(fewest, "cost_vs_fewest"), 1.0, "{fewest}");
        let ratio = number(most, "server_ns_per_request") / number(fewest, "server_ns_per_request");
        assert!(
            (number(most, "cost_vs_fewest") - ratio).abs() < 0.001,
            "the ratio to the same round's fewest: {pair:?}"
        );
    }
    let median = &rows[7];
    assert_eq!(number(median, "rounds"), 3.0, "{median}");
    for key in [
        "server_ns_per_request",
        "requests_per_sec",
        "cost_vs_fewest",
    ] {
        // The median of three is one of them, rounded to three decimals.
        let mut values: Vec<f64> = [1, 3, 5].iter().map(|&i| number(&rows[i], key)).collect();
        values.sort_by(f64::total_cmp);
        assert!(
            (number(median, key) - values[1]).abs() < 0.001,
            "{key}: {median} from {values:?}"
        );
        assert_eq!(
            numbers(median, &format!("{key}_range")),
            [values[0], values[2]],
            "{key} in {median}"
        );
    }
    assert!(median.get("cost_vs_memcpy").is_none(), "{median}");
}

#[test]
fn rounds_of_zero_are_refused() {
    let out = Command::new(sirocco_tests::lab::release_binary("sirocco-bench"))
        .args(["stack", "--scenarios", "keepalive-512", "--rounds", "0"])
        .output()
        .expect("run sirocco-bench stack");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--rounds must be at least 1"), "{stderr}");
}

#[test]
fn slow_clients_are_timed_to_their_last_byte_not_to_the_next_event_after_it() {
    // 50 clients each read a 256 KiB body at 1 Mbit/s: in virtual time the transfer takes
    // 2.1 s, whatever this machine is doing. A read driven by the reader's own timer moves no
    // frame when it opens no window worth announcing; the loop once took that for "nothing
    // happened" and jumped the clock to the next event (a keep-alive timer 70 s on) before
    // looking, and reported 3% of the link rate.
    let rows = bench_rows(&[
        "--scenarios",
        "slow-clients",
        "--connections",
        "50",
        "--quick",
    ]);
    let [row] = &rows[..] else {
        panic!("one row: {rows:?}")
    };
    let ideal = number(row, "file_bytes") * 8.0 / number(row, "link_bits_per_sec");
    let took = number(row, "transfer_secs");
    assert!(
        ideal <= took && took <= ideal * 1.02,
        "the last byte {took} s after the start, for {ideal} s of link time: {row}"
    );
    assert!(number(row, "fraction_of_link_rate") >= 0.98, "{row}");
}
