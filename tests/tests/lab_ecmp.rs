//! Scale-out across machines in the lab: two sirocco hosts serve one anycast address behind a
//! Linux router that spreads connections over them by ECMP (`sirocco::lab::ecmp`).
//!
//! - Many connections from the client (200, each its own source port) all complete byte for
//!   byte, and both hosts serve some of them: their request counters add up to 200.
//! - 40 rate-limited downloads of a 4 MiB file are in flight on both hosts when one host is
//!   killed (SIGKILL). Exactly the downloads on the killed host fail (as many as it had
//!   connections open), every download on the surviving host completes byte for byte, and the
//!   survivor counts exactly those requests. Then the dead host's next hop is withdrawn from
//!   the route, as a health check or BGP would, and new connections all reach the survivor.
//! - `sirocco lab up --servers 2`, `lab status` and `lab down` build, show and remove the
//!   topology.
//!
//! Needs root, ping, curl, python3 and timeout (the lab itself is built over netlink, without
//! iproute2). Without them these tests fail when `SIROCCO_REQUIRE_LAB=1` (as in CI), and
//! otherwise print why they did not run. Runs the release binary (built if missing or stale).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::ecmp::{self, ANYCAST_ADDR, EcmpLab};
use sirocco::lab::netlink::Netlink;
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    ChildGuard, LabServer, TempDir, assert_same_bytes, run, runnable, sirocco_binary, stat,
    stats_lines,
};

const TOOLS: [&str; 4] = ["ping", "curl", "python3", "timeout"];
const SERVERS: u8 = 2;

/// Starts `sirocco serve` on host `n` with a stats line every second, and waits (at most
/// 30 s) until it says it serves and answers ping from the router on its own link.
fn start_host(lab: &EcmpLab, n: u8, root: &Path) -> LabServer {
    let root = root.to_str().expect("a UTF-8 temp path");
    let mut command = lab.host_command(n, sirocco_binary());
    command
        .args(EcmpLab::serve_args(root))
        .args(["--stats-interval", "1"]);
    let mut server = LabServer::spawn(command);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr_now().contains("serving ") {
        server.assert_running(&format!("attaching to veth-srv on host {n}"));
        assert!(
            Instant::now() < deadline,
            "host {n}: sirocco did not attach within 30 s: {}",
            server.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ping from the client would go to whichever host its hash picks; ping bound to the
    // router's interface toward host n reaches host n.
    loop {
        server.assert_running(&format!("answering ping on host {n}"));
        let answered = lab
            .router_command("ping")
            .args(["-c", "1", "-W", "1", "-I", &ecmp::router_host_iface(n)])
            .arg(ANYCAST_ADDR.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run ping")
            .status
            .success();
        if answered {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "host {n}: sirocco attached but did not answer ping within 30 s: {}",
            server.stderr_now()
        );
    }
}

/// The first stats line a host prints after `seen` lines (waiting at most 5 s).
fn next_stats(server: &mut LabServer, seen: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = server.stdout_now();
        if let Some(line) = stats_lines(&out).get(seen) {
            return line.to_string();
        }
        server.assert_running("printing stats");
        assert!(Instant::now() < deadline, "no stats line within 5 s: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of stats lines a host printed so far.
fn stats_count(server: &LabServer) -> usize {
    stats_lines(&server.stdout_now()).len()
}

/// Waits (at most `secs`) for a fresh stats line from every host on which `done` holds for
/// the lines together; returns them.
fn stats_until(
    hosts: &mut [LabServer],
    secs: u64,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen: Vec<usize> = hosts.iter().map(stats_count).collect();
        let lines: Vec<String> = hosts
            .iter_mut()
            .zip(seen)
            .map(|(host, seen)| next_stats(host, seen))
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s; last stats lines: {lines:#?}"
        );
    }
}

/// Fetches `URL` over `N` connections, each new, 16 at a time, and compares every body with
/// the file `FILE`. Prints one JSON line: the source ports, and the failures.
const FETCH_MANY: &str = r#"
import concurrent.futures, json, socket, sys
host, path, expected_file, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
expected = open(expected_file, "rb").read()
def fetch(i):
    try:
        with socket.create_connection((host, 80), timeout=10) as s:
            port = s.getsockname()[1]
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            return port, f"connection {i}: {head[:40]!r}"
        if body != expected:
            return port, f"connection {i}: {len(body)} bytes, not the {len(expected)} expected"
        return port, None
    except Exception as e:
        return None, f"connection {i}: {e!r}"
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    results = list(pool.map(fetch, range(count)))
print(json.dumps({"ports": [p for p, _ in results if p is not None],
                  "failures": [f for _, f in results if f is not None]}))
"#;

/// [`FETCH_MANY`] from the client namespace: `count` new connections fetching `url`, checked
/// against the file under `root`; its JSON report (`ports`, `failures`).
fn fetch_many(lab: &EcmpLab, url: &str, root: &Path, count: usize) -> serde_json::Value {
    let output = run(
        lab.client_command("timeout")
            .args(["-k", "5", "60", "python3", "-c", FETCH_MANY])
            .arg(ANYCAST_ADDR.to_string())
            .arg(url)
            .arg(root.join(url.trim_start_matches('/')))
            .arg(count.to_string()),
        "python3",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the fetch script exited with {}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "the fetch script printed no JSON: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn connections_spread_over_hosts_and_survive_the_loss_of_one() {
    if !runnable("lab_ecmp", &TOOLS) {
        return;
    }
    let small = 65_536;
    let big = 4 * 1024 * 1024;
    let tree = TestTree::with_sizes(&[small, big]);
    let small_url = format!("/size-{small}.bin");
    let big_url = format!("/size-{big}.bin");
    let lab = EcmpLab::create_unique("ecmp", SERVERS).expect("create the ECMP lab");
    println!(
        "lab: {} and {} behind {}, both serving {ANYCAST_ADDR}",
        lab.host_ns(1),
        lab.host_ns(2),
        lab.router_ns()
    );
    let mut hosts: Vec<LabServer> = (1..=SERVERS)
        .map(|n| start_host(&lab, n, tree.path()))
        .collect();

    // (a) 200 connections, each new: all byte-exact, and both hosts served some.
    let connections = 200;
    let started = Instant::now();
    let report = fetch_many(&lab, &small_url, tree.path(), connections);
    let failures = report["failures"].as_array().expect("failures");
    assert!(failures.is_empty(), "failed connections: {failures:#?}");
    let mut ports: Vec<u64> = report["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p.as_u64().expect("a port"))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), connections, "source ports were reused");
    let lines = stats_until(
        &mut hosts,
        10,
        "the hosts did not count 200 requests and close every connection",
        |lines| {
            lines.iter().map(|l| stat(l, "req")).sum::<u64>() == connections as u64
                && lines.iter().all(|l| stat(l, "conns") == 0)
        },
    );
    let served: Vec<u64> = lines.iter().map(|l| stat(l, "req")).collect();
    println!(
        "(a) {connections} connections from {connections} source ports, all {small} bytes byte-exact in {:.2} s; host 1 served {}, host 2 served {}",
        started.elapsed().as_secs_f64(),
        served[0],
        served[1]
    );
    assert!(
        served.iter().all(|&n| n > 0),
        "one host served every connection: {served:?}"
    );

    // (b) 40 slow downloads in flight on both hosts; host 1 dies; those on host 2 complete.
    // The client's receive buffers are capped at 256 KiB: otherwise a host can push a whole
    // 4 MiB body into the client's kernel before it dies, and curl, reading at its own pace,
    // completes a download whose server is gone.
    let capped = run(
        lab.client_command("sh").args([
            "-c",
            "echo 4096 131072 262144 > /proc/sys/net/ipv4/tcp_rmem",
        ]),
        "sh",
    );
    assert!(
        capped.status.success(),
        "cannot cap tcp_rmem in the client namespace: {}",
        String::from_utf8_lossy(&capped.stderr)
    );
    let downloads = 40;
    let into = TempDir::new("ecmp");
    let url = format!("http://{ANYCAST_ADDR}{big_url}");
    let mut curls: Vec<ChildGuard> = (0..downloads)
        .map(|i| {
            let mut command = lab.client_command("timeout");
            command
                .args(["-k", "5", "40", "curl", "--silent", "--show-error"])
                // 4 MiB at 512 KiB/s: 8 s in flight. A download that gets nothing for 3 s
                // gives up (exit 28).
                .args(["--limit-rate", "512K", "--speed-limit", "1000"])
                .args(["--speed-time", "3", "--max-time", "30"])
                .args(["--write-out", "%{local_port} %{http_code}", "--output"])
                .arg(into.path().join(format!("{i}.bin")))
                .arg(&url)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            ChildGuard(command.spawn().expect("start curl"))
        })
        .collect();
    let lines = stats_until(
        &mut hosts,
        10,
        "the 40 downloads did not all connect",
        |lines| lines.iter().map(|l| stat(l, "conns")).sum::<u64>() == downloads as u64,
    );
    let open: Vec<u64> = lines.iter().map(|l| stat(l, "conns")).collect();
    assert!(
        open.iter().all(|&n| n > 0),
        "every download went to one host: {open:?}"
    );
    for (i, curl) in curls.iter_mut().enumerate() {
        let status = curl.0.try_wait().expect("poll curl");
        assert!(
            status.is_none(),
            "download {i} ended ({status:?}) before the kill: raise the file size"
        );
    }
    let victim = hosts.remove(0);
    victim.kill();
    println!(
        "(b) {downloads} downloads of {big} bytes in flight: {} on host 1, {} on host 2; host 1 killed (SIGKILL)",
        open[0], open[1]
    );
    let killed_at = Instant::now();

    let expected = tree.body(&big_url);
    let (mut completed, mut failed) = (0u64, Vec::new());
    for (i, curl) in curls.iter_mut().enumerate() {
        let child: &mut Child = &mut curl.0;
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut out)
            .expect("read curl's output");
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut err)
            .expect("read curl's errors");
        let status = child.wait().expect("wait for curl");
        if status.success() {
            assert!(out.ends_with(" 200"), "download {i}: {out}");
            let body = std::fs::read(into.path().join(format!("{i}.bin"))).expect("the body");
            assert_same_bytes(&format!("download {i} (port {out})"), &body, &expected);
            completed += 1;
        } else {
            // 28: too slow (nothing for 3 s), the sign of a dead peer that sends no RST.
            assert_eq!(
                status.code(),
                Some(28),
                "download {i} (port {out}) failed otherwise: {err}"
            );
            failed.push(out.split_whitespace().next().unwrap_or("?").to_string());
        }
    }
    println!(
        "    {completed} completed byte-exact; {} failed, all with curl's exit 28 (nothing for 3 s), {:.1} s after the kill; their local ports: {}",
        failed.len(),
        killed_at.elapsed().as_secs_f64(),
        failed.join(" ")
    );
    assert_eq!(
        failed.len() as u64,
        open[0],
        "the failed downloads are not exactly those on the killed host"
    );
    assert_eq!(
        completed, open[1],
        "the completed downloads are not exactly those on the surviving host"
    );

    // (c) Withdrawing the dead host's next hop, as a health check or BGP would, sends every
    // new connection to the survivor.
    let via = ecmp::host_link_addr(2);
    let iface = ecmp::router_host_iface(2);
    Netlink::open_in(&lab.router_ns())
        .and_then(|mut netlink| {
            netlink.replace_multipath_route(ANYCAST_ADDR, 32, &[(via, iface.as_str())])
        })
        .expect("withdraw host 1's next hop (ip route replace)");
    let route = lab
        .router_route()
        .expect("read the router's route")
        .join("\n");
    assert!(
        route.contains(&format!("via {via} "))
            && !route.contains(&format!("via {} ", ecmp::host_link_addr(1))),
        "the route should lead to host 2 alone: {route}"
    );
    let fresh = 50;
    let report = fetch_many(&lab, &small_url, tree.path(), fresh);
    let failures = report["failures"].as_array().expect("failures");
    assert!(
        failures.is_empty(),
        "with host 1's next hop withdrawn, connections failed: {failures:#?}"
    );
    println!(
        "(c) host 1's next hop withdrawn: {fresh} new connections, all byte-exact from host 2"
    );

    let survivor = hosts.remove(0);
    let stopped = survivor.stop_cleanly();
    assert_eq!(
        stopped.requests(),
        served[1] + completed + fresh as u64,
        "host 2 should have served its share of (a), every completed download and (c): {}",
        stopped.stdout
    );
    println!(
        "host 2 stopped cleanly after {} requests ({} + {completed} + {fresh})",
        stopped.requests(),
        served[1]
    );
}

#[test]
fn lab_up_servers_2_builds_shows_and_removes_the_topology() {
    if !runnable("lab_ecmp_cli", &[]) {
        return;
    }
    let name = format!("sirocco-ecmp-{}-lab", std::process::id());
    // Removes whatever the commands leave behind if an assertion fails.
    let leftover = Leftover(name.clone());
    let lab = |args: &[&str]| {
        let out = run(
            Command::new(sirocco_binary())
                .arg("lab")
                .args(args)
                .args(["--name", &name]),
            "sirocco lab",
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    let (ok, up) = lab(&["up", "--servers", "2"]);
    assert!(ok, "lab up --servers 2 failed: {up}");
    for expected in [
        format!("{name}-rtr"),
        format!("ip netns exec {name}-h1 "),
        format!("ip netns exec {name}-h2 "),
        format!("--iface veth-srv --ip {ANYCAST_ADDR}/32"),
        format!("ip netns exec {name}-cli curl http://{ANYCAST_ADDR}/"),
        "nexthop via 198.18.1.2 nexthop via 198.18.2.2".to_string(),
    ] {
        assert!(
            up.contains(&expected),
            "lab up does not say {expected:?}: {up}"
        );
    }
    println!("{up}");
    let (ok, again) = lab(&["up", "--servers", "2"]);
    assert!(!ok && again.contains("already exists"), "{again}");

    let (ok, status) = lab(&["status"]);
    assert!(ok, "lab status failed: {status}");
    for expected in [
        "up, 2 hosts",
        "nexthop via 198.18.1.2 dev rtr-h1",
        "nexthop via 198.18.2.2 dev rtr-h2",
        "fib_multipath_hash_policy=1",
        "198.18.1.2/24",
        "198.18.2.2/24",
    ] {
        assert!(
            status.contains(expected),
            "lab status does not say {expected:?}: {status}"
        );
    }

    let (ok, down) = lab(&["down"]);
    assert!(ok, "lab down failed: {down}");
    let left = ecmp::existing_namespaces(&name);
    assert!(left.is_empty(), "lab down left {left:?}: {down}");
    let (ok, status) = lab(&["status"]);
    assert!(ok && status.contains("down"), "{status}");
    drop(leftover);
}

/// Deletes the namespaces of the ECMP lab `0` on drop, if any are left.
struct Leftover(String);

impl Drop for Leftover {
    fn drop(&mut self) {
        if let Some(lab) = EcmpLab::existing(&self.0) {
            lab.remove();
        }
    }
}
