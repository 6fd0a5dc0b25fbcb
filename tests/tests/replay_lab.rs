//! Trace replay against the live binary in the veth lab: `sirocco serve --driver afxdp` on
//! veth-srv in the server namespace, and `sirocco-replay --target afxdp` on veth-cli in the
//! client namespace (AF_XDP with every frame redirected, so the client kernel stays out of it).
//! The replayed nginx fixtures must get nginx's statuses and bodies from the real server over a
//! real (virtual) link, on the wall clock. And a trace that `sirocco serve --capture` wrote
//! in the lab replays cleanly too.
//!
//! Needs root, iproute2, ethtool and ping. Without them this test fails when
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise prints why it did not run. The server and
//! the replay are bounded in time; the lab is removed even when the test fails.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sirocco::lab::veth::{CLIENT_IFACE, VethLab};
use sirocco::lab::{CLIENT_ADDR, SERVER_ADDR};
use sirocco_tests::lab::{LabServer, Ready, lab_available, release_binary};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(path)
}

/// Starts the server with `extra` options, serving the fixtures' site, and waits until it
/// answers ping from the client namespace.
fn start_server(lab: &VethLab, extra: &[&OsStr]) -> LabServer {
    LabServer::afxdp(&data("www"))
        .args(extra)
        .ready(Ready::PING)
        .start(lab)
}

#[test]
fn fixtures_replay_through_afxdp_against_the_live_binary() {
    if !lab_available("fixtures_replay_through_afxdp_against_the_live_binary", &[]) {
        return;
    }
    let lab = VethLab::create_unique("replay").expect("create the veth lab");
    let server = start_server(&lab, &[]);
    for fixture in ["python-pipelining", "chromium-index", "curl-sizes"] {
        let trace = data(&format!("traces/{fixture}.pcap"));
        let out = lab
            .client_command("timeout")
            .args(["-k", "5", "60"])
            .arg(release_binary("sirocco-replay"))
            .arg(&trace)
            .args(["--target", "afxdp", "--iface", CLIENT_IFACE])
            .arg("--client-ip")
            .arg(CLIENT_ADDR.to_string())
            .arg("--server-ip")
            .arg(SERVER_ADDR.to_string())
            .args(["--timeout", "30"])
            .stdin(Stdio::null())
            .output()
            .expect("run sirocco-replay in the client namespace");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{fixture} over AF_XDP:\n{stdout}{stderr}"
        );
        assert!(stdout.contains(" 0 failed, "), "{fixture}:\n{stdout}");
        assert!(
            stdout.trim_end().ends_with("result: PASS"),
            "{fixture}:\n{stdout}"
        );
        assert!(
            stdout.contains("via AF_XDP on veth-cli"),
            "{fixture}:\n{stdout}"
        );
        let summary = stdout.lines().find(|l| l.starts_with("summary:"));
        eprintln!("{fixture}: {}", summary.unwrap_or_default());
    }
    drop(server);
    drop(lab);
}

/// A trace recorded by `sirocco serve --capture` (both directions, from the server's side) while
/// curl fetches files is read by tcpdump and replays cleanly against sirocco in process: the
/// replayed answers equal the ones the live server sent.
#[test]
fn a_capture_written_by_sirocco_serve_replays_cleanly() {
    if !lab_available(
        "a_capture_written_by_sirocco_serve_replays_cleanly",
        &["curl", "tcpdump"],
    ) {
        return;
    }
    let scratch =
        std::env::temp_dir().join(format!("sirocco-capture-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let capture = scratch.join("served.pcap");
    let lab = VethLab::create_unique("capreplay").expect("create the veth lab");
    let server = start_server(&lab, &["--capture".as_ref(), capture.as_os_str()]);
    for path in ["/", "/files/64k.bin", "/files/200k.bin", "/no-such-file"] {
        let out = lab
            .client_command("curl")
            .args(["--silent", "--max-time", "30", "--output", "/dev/null"])
            .arg(format!("http://{SERVER_ADDR}{path}"))
            .stdin(Stdio::null())
            .status()
            .expect("run curl");
        assert!(out.success(), "curl {path}: {out}");
    }
    // SIGTERM: a clean stop, which flushes the capture file.
    let stopped = server.stop();
    assert!(
        stopped.status.success(),
        "sirocco exited with {}: {}",
        stopped.status,
        stopped.stderr
    );

    let tcpdump = std::process::Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&capture)
        .output()
        .expect("run tcpdump");
    assert!(
        tcpdump.status.success(),
        "{}",
        String::from_utf8_lossy(&tcpdump.stderr)
    );
    let lines = String::from_utf8_lossy(&tcpdump.stdout).lines().count();
    assert!(lines > 20, "tcpdump read only {lines} packets");

    let out = std::process::Command::new(release_binary("sirocco-replay"))
        .arg(&capture)
        .args(["--target", "inprocess", "--root"])
        .arg(data("www"))
        .output()
        .expect("run sirocco-replay");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("4 flows (0 stalled, 0 skipped), 4 exchanges: 0 failed"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("result: PASS"), "{stdout}");
    let _ = std::fs::remove_dir_all(&scratch);
}
