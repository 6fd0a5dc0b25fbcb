//! The `sirocco-replay` command line: a fixture gives a clean report (text and JSON) and exit
//! status 0; bad input (a missing file, a file that is not a pcap, a port with no flows,
//! missing target arguments) gives exit status 2 and a message that says what to do, never a
//! panic. Runs the release binary
//! (`sirocco_tests::lab::release_binary` builds it if it is missing or stale).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> PathBuf {
    sirocco_tests::lab::release_binary("sirocco-replay")
}

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(path)
}

fn replay(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run sirocco-replay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_fixture_replays_in_process_with_a_clean_report() {
    let trace = data("traces/python-pipelining.pcap");
    let root = data("www");
    let out = replay(&[
        trace.to_str().unwrap(),
        "--target",
        "inprocess",
        "--root",
        root.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("GET /files/64k.bin  status 200 (trace 200)"),
        "{stdout}"
    );
    assert!(stdout.contains("4 exchanges: 0 failed, 4 ok"), "{stdout}");
    assert!(stdout.trim_end().ends_with("result: PASS"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn json_report_is_one_parseable_document() {
    let trace = data("traces/chromium-index.pcap");
    let root = data("www");
    let out = replay(&[
        trace.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--original-timing",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let trimmed = stdout.trim();
    assert!(
        trimmed.starts_with('{') && trimmed.ends_with('}'),
        "{stdout}"
    );
    for key in [
        "\"ok\": true",
        "\"flows\": [",
        "\"exchanges\": [",
        "\"summary\": {",
    ] {
        assert!(stdout.contains(key), "no {key} in {stdout}");
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let root = data("www");
    let root = root.to_str().unwrap();
    let not_pcap = data("www/index.html");
    let fixture = data("traces/curl-sizes.pcap");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["/nonexistent/trace.pcap", "--root", root],
            "cannot read trace /nonexistent/trace.pcap",
        ),
        (
            vec![not_pcap.to_str().unwrap(), "--root", root],
            "not a pcap or pcapng file",
        ),
        (
            vec![fixture.to_str().unwrap(), "--root", root, "--port", "8080"],
            "no TCP flows to port 8080",
        ),
        (vec![fixture.to_str().unwrap()], "needs --root DIR"),
        (
            vec![fixture.to_str().unwrap(), "--target", "afxdp"],
            "needs --iface IFACE",
        ),
    ];
    for (args, message) in cases {
        let out = replay(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
