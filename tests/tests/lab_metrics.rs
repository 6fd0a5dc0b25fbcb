//! The Prometheus endpoint of `sirocco serve --metrics-listen`: the real server on a veth lab
//! (AF_XDP, with the default seccomp filter), real requests from the client namespace, and a
//! scrape from the server's namespace (the metrics socket is an ordinary kernel socket there).
//! The counts must follow the requests and the text must pass `promtool check metrics`; with
//! two engines (a two-queue lab), each has its `queue` series. Also: a bad or busy
//! `--metrics-listen` fails at start with a clear message.
//!
//! The lab test needs root, iproute2, ethtool, ping, curl and promtool (Debian's `prometheus`
//! package); without them it fails under `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise
//! prints why it did not run.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::veth::VethLab;
use sirocco::metrics::{Snapshot, render};
use sirocco::server::Stats;
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    LabServer, lab_available, run, server_url, sirocco_binary, tools_present,
};

/// Where the server listens for scrapes, in its own (fresh) network namespace.
const METRICS: &str = "127.0.0.1:9464";

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("wait for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

/// The value of the sample `series` (name and labels, exactly as rendered) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// curl in the server's namespace: the status code and the body.
fn scrape(lab: &VethLab, path: &str) -> (String, String) {
    let output = run(
        lab.server_command("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(["--write-out", "\n%{http_code} %{content_type}"])
            .arg(format!("http://{METRICS}{path}")),
        "curl (scrape)",
    );
    assert!(
        output.status.success(),
        "scraping {path} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl's --write-out line");
    (status.to_string(), body.to_string())
}

fn get(lab: &VethLab, path: &str) -> String {
    let output = run(
        lab.client_command("curl")
            .args(["--silent", "--output", "/dev/null", "--max-time", "20"])
            .args(["--write-out", "%{http_code}"])
            .arg(server_url(path)),
        "curl",
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn metrics_follow_the_requests_and_pass_promtool() {
    if !lab_available("metrics_scrape", &["curl", "promtool"]) {
        return;
    }
    let tree = TestTree::with_sizes(&[512, 70_000]);
    let lab = VethLab::create_unique("xmetrics").expect("create the veth lab");
    let mut server = LabServer::start(
        &lab,
        tree.path(),
        &["--stats-interval", "0", "--metrics-listen", METRICS],
    );
    assert!(
        server
            .stderr_now()
            .contains(&format!("metrics: http://{METRICS}/metrics")),
        "{}",
        server.stderr_now()
    );

    for path in ["/size-512.bin", "/size-70000.bin", "/size-512.bin"] {
        assert_eq!(get(&lab, path), "200", "GET {path}");
    }
    assert_eq!(get(&lab, "/no-such-file"), "404");

    // Published about once a second: wait (at most 10 s) for the last response to show.
    let responses_2xx = r#"sirocco_http_responses_total{queue="0",code="2xx"}"#;
    let responses_4xx = r#"sirocco_http_responses_total{queue="0",code="4xx"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        server.assert_running("serving metrics");
        let (status, body) = scrape(&lab, "/metrics");
        assert_eq!(
            status, "200 text/plain; version=0.0.4; charset=utf-8",
            "{body}"
        );
        if sample(&body, responses_4xx) == Some(1.0) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the 404 did not show in 10 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("{body}");

    assert_eq!(sample(&body, responses_2xx), Some(3.0), "{body}");
    assert_eq!(
        sample(&body, r#"sirocco_http_requests_total{queue="0"}"#),
        Some(4.0)
    );
    let ttfb = "sirocco_http_time_to_first_byte_seconds";
    assert_eq!(
        sample(&body, &format!(r#"{ttfb}_count{{queue="0"}}"#)),
        Some(4.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!(r#"{ttfb}_bucket{{queue="0",le="+Inf"}}"#)),
        Some(4.0)
    );
    assert!(
        sample(&body, r#"sirocco_http_response_bytes_total{queue="0"}"#)
            .is_some_and(|bytes| bytes > 71_024.0),
        "{body}"
    );
    assert!(
        sample(&body, r#"sirocco_driver_rx_frames_total{queue="0"}"#)
            .is_some_and(|frames| frames > 10.0),
        "{body}"
    );
    assert_eq!(sample(&body, "sirocco_cache_files"), Some(2.0));
    assert_eq!(
        sample(&body, r#"sirocco_reloads_total{result="ok"}"#),
        Some(0.0)
    );
    for state in ["handshake", "active", "idle", "time_wait"] {
        assert!(
            sample(
                &body,
                &format!(r#"sirocco_connections{{queue="0",state="{state}"}}"#)
            )
            .is_some(),
            "no {state} connections in {body}"
        );
    }
    assert!(
        body.contains(r#"sirocco_stack_dropped_frames_total{queue="0",reason="tcp_checksum"} "#)
    );
    assert!(body.contains(r#"sirocco_syn_refused_total{queue="0",reason="connection_limit"} 0"#));

    let (ok, said) = promtool(&body);
    assert!(ok, "promtool check metrics failed: {said}");

    // A reload shows as one, with the tree's new size.
    std::fs::write(tree.path().join("added.txt"), "one more file").expect("add a file");
    server.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = scrape(&lab, "/metrics");
        if sample(&body, r#"sirocco_reloads_total{result="ok"}"#) == Some(1.0) {
            assert_eq!(sample(&body, "sirocco_cache_files"), Some(3.0), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the reload did not show in 10 s");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, _) = scrape(&lab, "/");
    assert!(status.starts_with("404 "), "{status}");

    // Scraping counted nothing on the served side, and the filter let the thread be.
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 4, "{}", stopped.stdout);
}

#[test]
fn every_engine_has_its_queue_label() {
    if !lab_available("metrics_queues", &["curl", "promtool"]) {
        return;
    }
    let tree = TestTree::with_sizes(&[512]);
    let lab = VethLab::create_with_queues(&format!("sirocco-xmq-{}", std::process::id()), 2)
        .expect("create the two-queue veth lab");
    let server = LabServer::start(
        &lab,
        tree.path(),
        &["--stats-interval", "0", "--metrics-listen", METRICS],
    );
    // Separate connections (each its own source port, so the flow hash spreads them).
    const REQUESTS: usize = 12;
    for _ in 0..REQUESTS {
        assert_eq!(get(&lab, "/size-512.bin"), "200");
    }
    let per_queue = |body: &str, queue: u32| {
        sample(
            body,
            &format!(r#"sirocco_http_responses_total{{queue="{queue}",code="2xx"}}"#),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (_, body) = scrape(&lab, "/metrics");
        let total = per_queue(&body, 0).unwrap_or(0.0) + per_queue(&body, 1).unwrap_or(0.0);
        if total == REQUESTS as f64 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{REQUESTS} responses did not show in 10 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for queue in [0, 1] {
        assert!(
            per_queue(&body, queue).is_some(),
            "no queue {queue}: {body}"
        );
        assert!(
            sample(
                &body,
                &format!(r#"sirocco_driver_rx_frames_total{{queue="{queue}"}}"#)
            )
            .is_some()
        );
    }
    let (ok, said) = promtool(&body);
    assert!(ok, "promtool check metrics failed: {said}");
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), REQUESTS as u64, "{}", stopped.stdout);
}

/// `sirocco serve` with `args` (and an interface that does not exist, which is never reached):
/// its exit status and stderr, within 30 s.
fn serve_fails(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = run(
        Command::new("timeout")
            .args(["-k", "5", "30"])
            .arg(sirocco_binary())
            .args([
                "serve",
                "--driver",
                "afxdp",
                "--iface",
                "sirocco-no-such-if",
                "--ip",
                "198.18.0.2/24",
                "--seccomp",
                "off",
            ])
            .args(args),
        "sirocco serve",
    );
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_or_busy_metrics_address_fails_at_start_with_a_clear_message() {
    if !tools_present("metrics_bad_address", &["timeout"]) {
        return;
    }
    let (status, stderr) = serve_fails(&["--metrics-listen", "localhost:9100"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not ADDR:PORT") && stderr.contains("127.0.0.1:9100"),
        "{stderr}"
    );

    let (status, stderr) = serve_fails(&["--metrics-listen", "127.0.0.1:0"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("port 0"), "{stderr}");

    // Busy: checked before the interface (which does not exist here) is even looked at.
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let busy = holder.local_addr().expect("its address").to_string();
    let (status, stderr) = serve_fails(&["--metrics-listen", &busy]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics-listen {busy}: the address is in use")),
        "{stderr}"
    );
    assert!(!stderr.contains("sirocco-no-such-if"), "{stderr}");

    // An address this host does not have (TEST-NET-1, RFC 5737).
    let (status, stderr) = serve_fails(&["--metrics-listen", "192.0.2.1:9100"]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("no interface of this host"), "{stderr}");
}

#[test]
fn rendered_metrics_pass_promtool() {
    if !tools_present("metrics_promtool", &["promtool"]) {
        return;
    }
    let mut busy = Stats::default();
    busy.driver.rx_frames = 100;
    busy.stack.drop_ipv6 = 2;
    busy.stack.syn_refused_draining = 1;
    busy.http.requests = 9;
    busy.http.responses_2xx = 8;
    busy.http.responses_5xx = 1;
    for micros in [0, 40, 900, 70_000, 9_000_000] {
        busy.http.time_to_first_byte.record(micros);
    }
    busy.connections = 3;
    busy.idle_connections = 2;
    let snapshot = Snapshot {
        queues: vec![(0, busy), (1, Stats::default())],
        cache_files: 4,
        cache_bytes: 4096,
        reloads_ok: 1,
        reloads_failed: 2,
    };
    let text = render(&snapshot);
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics failed: {said}\n{text}");
    // And an empty server (no engine has published yet) renders valid text too.
    let (ok, said) = promtool(&render(&Snapshot::default()));
    assert!(ok, "promtool on an empty snapshot: {said}");
}
