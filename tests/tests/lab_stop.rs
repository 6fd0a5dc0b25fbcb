//! Lab end-to-end of a graceful stop: the real `sirocco serve` on a veth lab, real clients.
//!
//! On SIGTERM the server refuses new connections (an RST, as a closed port: curl says
//! "connection refused"), closes idle keep-alive connections with a FIN, lets a download in
//! flight finish byte-exact, and then exits 0 with its XDP program gone. A second signal
//! stops it at once.
//!
//! Needs root, iproute2, ethtool, ping, curl and python3; without them these tests fail under
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::veth::VethLab;
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    ChildGuard, LabServer, TempDir, assert_same_bytes, lab_available, run, server_url,
};

const BIG: usize = 16 * 1024 * 1024;

/// Opens a keep-alive connection, fetches a small file on it, says `ready`, then waits (at
/// most 20 s) for the server to close it: prints `eof` on a FIN, else what happened.
const IDLE_CLIENT: &str = r#"
import socket, sys, time
host, path = sys.argv[1], sys.argv[2]
s = socket.create_connection((host, 80), timeout=10)
s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
while len(body) < length:
    body += s.recv(65536)
print("ready", flush=True)
s.settimeout(20)
try:
    more = s.recv(1)
    print("eof" if more == b"" else f"data {more!r}", flush=True)
except socket.timeout:
    print("timeout", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"#;

/// curl downloading `path` at `rate` into `into`, in the client namespace, bounded to 60 s.
fn slow_download(lab: &VethLab, path: &str, rate: &str, into: &std::path::Path) -> ChildGuard {
    let child = lab
        .client_command("timeout")
        .args([
            "-k",
            "5",
            "60",
            "curl",
            "--silent",
            "--show-error",
            "--fail",
        ])
        .args(["--limit-rate", rate, "--output"])
        .arg(into)
        .arg(server_url(path))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl");
    ChildGuard(child)
}

/// Waits (at most 20 s) until `path` has some bytes: the download is under way.
fn wait_started(path: &std::path::Path, curl: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(path).map_or(0, |m| m.len()) == 0 {
        assert!(
            curl.try_wait().expect("poll curl").is_none(),
            "curl ended before its download started"
        );
        assert!(
            Instant::now() < deadline,
            "the download did not start in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 10 s) for `text` on the server's stderr.
fn wait_said(server: &LabServer, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr_now().contains(text) {
        assert!(
            Instant::now() < deadline,
            "sirocco did not say {text:?} within 10 s: {}",
            server.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn big_path(tree: &TestTree) -> String {
    tree.files()
        .find(|(_, body)| body.len() == BIG)
        .map(|(path, _)| path.to_string())
        .expect("the tree has the 16 MiB file")
}

#[test]
fn a_graceful_stop_finishes_downloads_closes_idle_connections_and_refuses_new_ones() {
    if !lab_available("stop_graceful", &["curl", "python3", "timeout"]) {
        return;
    }
    let tree = TestTree::with_sizes(&[512, BIG]);
    let big = big_path(&tree);
    let lab = VethLab::create_unique("xstop").expect("create the veth lab");
    let mut server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);

    let mut idle = lab
        .client_command("timeout")
        .args(["-k", "5", "60", "python3", "-c", IDLE_CLIENT])
        .arg(sirocco::lab::SERVER_ADDR.to_string())
        .arg("/size-512.bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the idle client");
    // Its connection is open and idle before the stop begins.
    let mut idle_said = std::io::BufReader::new(idle.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    std::io::BufRead::read_line(&mut idle_said, &mut first).expect("read the idle client");
    assert_eq!(
        first.trim(),
        "ready",
        "the idle client did not get its first answer: {}",
        {
            let mut err = String::new();
            if let Some(mut pipe) = idle.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
            }
            err
        }
    );
    let out = TempDir::new("stop");
    let into = out.path().join("big.bin");
    // 16 MiB at 4 MiB/s: about 4 s in flight.
    let mut download = slow_download(&lab, &big, "4M", &into);
    wait_started(&into, &mut download.0);

    server.signal("-TERM");
    wait_said(&server, "stopping: refusing new connections");

    // A new connection is refused while the download goes on.
    let refused = run(
        lab.client_command("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .arg(server_url("/size-512.bin")),
        "curl",
    );
    assert_eq!(
        refused.status.code(),
        Some(7),
        "a new connection during the stop should be refused (curl exit 7): {}",
        String::from_utf8_lossy(&refused.stderr)
    );
    server.assert_running("finishing the download in flight");

    // The idle keep-alive connection got a FIN.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut idle_said, &mut rest).expect("read the idle client");
    let idle_out = idle.wait_with_output().expect("wait for the idle client");
    assert_eq!(
        rest.trim(),
        "eof",
        "the idle keep-alive connection should be closed with a FIN: {rest}{}",
        String::from_utf8_lossy(&idle_out.stderr)
    );

    // The download completes, byte-exact.
    let finished = download.0.wait().expect("wait for curl");
    let mut err = String::new();
    if let Some(mut pipe) = download.0.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut err);
    }
    assert!(finished.success(), "the download failed: {finished} {err}");
    let got = std::fs::read(&into).expect("read the download");
    let (_, expected) = tree.files().find(|(p, _)| *p == big).unwrap();
    assert_same_bytes(&big, &got, expected);

    // Then the server exits 0 by itself, its XDP program gone.
    let stopped = server.wait_exit(Duration::from_secs(15));
    assert!(
        stopped.status.success(),
        "sirocco should exit 0 after a graceful stop: {} {}{}",
        stopped.status,
        stopped.stdout,
        stopped.stderr
    );
    assert!(stopped.stdout.contains("stopped: "), "{}", stopped.stdout);
    let link = lab.server_link().expect("ip link show veth-srv");
    assert!(!link.contains("xdp"), "an XDP program is left: {link}");
}

#[test]
fn a_second_signal_stops_at_once() {
    if !lab_available("stop_twice", &["curl", "timeout"]) {
        return;
    }
    let tree = TestTree::with_sizes(&[BIG]);
    let big = big_path(&tree);
    let lab = VethLab::create_unique("xstop2").expect("create the veth lab");
    let mut server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let out = TempDir::new("stop2");
    let into = out.path().join("big.bin");
    // 16 MiB at 512 KiB/s: 32 s, far longer than the test waits.
    let mut download = slow_download(&lab, &big, "512K", &into);
    wait_started(&into, &mut download.0);

    server.signal("-TERM");
    wait_said(&server, "stopping: refusing new connections");
    server.assert_running("finishing the download in flight");
    let second = Instant::now();
    server.signal("-TERM");
    let stopped = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        stopped.status.code(),
        Some(1),
        "a second signal should end sirocco at once with status 1: {}{}",
        stopped.stdout,
        stopped.stderr
    );
    println!(
        "exited {:.0} ms after the second SIGTERM",
        second.elapsed().as_secs_f64() * 1e3
    );
    let link = lab.server_link().expect("ip link show veth-srv");
    assert!(!link.contains("xdp"), "an XDP program is left: {link}");
}
