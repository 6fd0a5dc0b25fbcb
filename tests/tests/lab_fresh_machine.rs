//! The README's first command on a fresh machine: `sirocco demo` (here with `--check`) and
//! `sirocco lab up|status|down` need root, veth and AF_XDP, and no other program. Each runs the
//! real binary with an empty environment whose PATH is a directory holding only a link to
//! `sirocco` itself: no `ip`, `ethtool` or `curl` (nor `sh`, `kill`, `sysctl`) can be found,
//! which the tests assert before they start.
//!
//! Needs root, and a kernel with veth and AF_XDP; without them these tests fail under
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sirocco::lab::ecmp::EcmpLab;
use sirocco::lab::fetch;
use sirocco::lab::veth::VethLab;
use sirocco::lab::{CLIENT_ADDR6, PREFIX_LEN6};
use sirocco_drivers::netns;
use sirocco_tests::lab::{TempDir, runnable, sirocco_binary};

/// Programs a minimal image lacks, which sirocco used to run.
const ABSENT: [&str; 6] = ["ip", "ethtool", "curl", "sh", "kill", "sysctl"];

/// A directory for PATH with only `sirocco` in it, checked to hold none of [`ABSENT`].
fn bare_path() -> TempDir {
    let dir = TempDir::new("fresh-path");
    std::os::unix::fs::symlink(sirocco_binary(), dir.path().join("sirocco"))
        .expect("link sirocco into the bare PATH");
    for program in ABSENT {
        assert!(
            !on_path(dir.path(), program),
            "{program} must not be on the bare PATH"
        );
    }
    assert!(on_path(dir.path(), "sirocco"));
    dir
}

fn on_path(path: &Path, program: &str) -> bool {
    std::env::split_paths(path.as_os_str()).any(|dir| dir.join(program).exists())
}

/// `sirocco ARGS`, found on `path` alone, with no other environment.
fn sirocco(path: &Path, args: &[&str]) -> Output {
    Command::new("sirocco")
        .env_clear()
        .env("PATH", path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run sirocco {}: {e}", args.join(" ")))
}

/// `sirocco ARGS` must exit 0; its stdout.
fn ok(path: &Path, args: &[&str]) -> String {
    let out = sirocco(path, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sirocco {} exited with {}: {stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Removes what a test's `lab up` made, however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(multi) = EcmpLab::existing(&self.0) {
            multi.remove();
        }
        drop(VethLab::named(&self.0));
    }
}

fn lab_name(tag: &str) -> String {
    format!("sfresh-{tag}-{}", std::process::id())
}

#[test]
fn demo_check_passes_without_ip_ethtool_or_curl() {
    if !runnable("fresh_demo", &[]) {
        return;
    }
    let path = bare_path();
    let before = netns::list();
    let out = sirocco(path.path(), &["demo", "--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sirocco demo --check exited with {}: {stdout}{stderr}",
        out.status
    );
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
    let files = walk(&www).len() + usize::from(www.join("index.html").is_file());
    assert!(files > 1, "the sample site has files");
    // Each file over IPv4 and over IPv6.
    let summary = format!(
        "check: {0} of {0} fetches byte-exact ({files} files, over IPv4 and IPv6)",
        2 * files
    );
    assert!(stdout.contains(&summary), "no `{summary}` in: {stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("sirocco demo: serving"), "{stdout}");
    // The server really ran over AF_XDP in the lab, and the lab is gone afterwards.
    assert!(
        stderr.contains("serving ") && stderr.contains("veth-srv"),
        "{stderr}"
    );
    let demo_left: Vec<String> = netns::list()
        .into_iter()
        .filter(|ns| !before.contains(ns) && ns.starts_with("sirocco-demo-"))
        .collect();
    assert!(demo_left.is_empty(), "the demo left {demo_left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the sample site") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[test]
fn lab_up_status_down_without_ip_or_ethtool() {
    if !runnable("fresh_lab", &[]) {
        return;
    }
    let path = bare_path();
    let name = lab_name("veth");
    let _cleanup = Cleanup(name.clone());

    let up = ok(path.path(), &["lab", "up", "--name", &name]);
    assert!(up.contains(&format!("lab {name} is up")), "{up}");
    assert!(netns::exists(&format!("{name}-srv")) && netns::exists(&format!("{name}-cli")));

    let status = ok(path.path(), &["lab", "status", "--name", &name]);
    assert!(status.contains(&format!("lab {name}: up")), "{status}");
    assert!(
        status.contains("veth-cli kernel addresses: 198.18.0.1/24, 2001:2::1/64"),
        "{status}"
    );
    // IPv6 without DAD: nothing is held back, and the server end has no kernel address at
    // all (not even a link-local one: the fe80:: address of its MAC is sirocco's).
    assert!(!status.contains("tentative"), "{status}");
    assert!(
        status.contains("veth-srv kernel addresses: none"),
        "{status}"
    );
    assert!(status.contains("veth-srv: <UP> mtu 1500"), "{status}");
    assert!(status.contains("no XDP program attached"), "{status}");

    // A second `up` of the same name is refused and leaves the lab alone.
    let again = sirocco(path.path(), &["lab", "up", "--name", &name]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(netns::exists(&format!("{name}-srv")));

    let down = ok(path.path(), &["lab", "down", "--name", &name]);
    assert!(down.contains(&format!("lab {name} removed")), "{down}");
    assert!(!netns::exists(&format!("{name}-srv")) && !netns::exists(&format!("{name}-cli")));
    let status = ok(path.path(), &["lab", "status", "--name", &name]);
    assert!(status.contains(&format!("lab {name}: down")), "{status}");
}

/// The veth lab over IPv6, right after it is made: the client's 2001:2::1 is usable at once
/// (no DAD), a kernel-owned 2001:2::3 on the server end answers, and the demo's HTTP client
/// fetches from it across the veth pair with the literal in brackets.
#[test]
fn the_veth_lab_carries_ipv6_from_the_start() {
    if !runnable("fresh_ipv6", &[]) {
        return;
    }
    let lab = VethLab::create_unique("sfresh6").expect("create the veth lab");
    let client = netns::in_namespace(lab.client_ns(), || {
        let mut netlink = sirocco::lab::netlink::Netlink::open()?;
        netlink.ipv6_addresses()
    })
    .expect("enter the client namespace")
    .expect("list the client's IPv6 addresses");
    let mine = client
        .iter()
        .find(|a| a.addr == CLIENT_ADDR6)
        .unwrap_or_else(|| panic!("no {CLIENT_ADDR6} in {client:?}"));
    assert_eq!((mine.prefix_len, mine.tentative), (PREFIX_LEN6, false));
    assert!(client.iter().all(|a| !a.tentative), "{client:?}");

    let kernel = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    lab.add_kernel_server_address6(kernel)
        .expect("a kernel-owned IPv6 address on the server end");
    let listener = netns::in_namespace(lab.server_ns(), || {
        TcpListener::bind(SocketAddr::from((kernel, 80)))
    })
    .expect("enter the server namespace")
    .expect("listen on [2001:2::3]:80 in the server namespace");
    let server = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read the request");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsix\n")
            .expect("answer");
        (peer, String::from_utf8_lossy(&request).into_owned())
    });
    let fetched = netns::in_namespace(lab.client_ns(), || {
        fetch::get(
            SocketAddr::from((kernel, 80)),
            &kernel.to_string(),
            "/",
            Duration::from_secs(10),
        )
    })
    .expect("enter the client namespace")
    .expect("GET http://[2001:2::3]/ across the lab");
    assert_eq!(
        (fetched.status, fetched.body.as_slice()),
        (200, &b"six\n"[..])
    );
    let (peer, request) = server.join().expect("the server thread");
    assert_eq!(peer.ip(), std::net::IpAddr::V6(CLIENT_ADDR6), "{peer}");
    assert!(request.contains("\r\nHost: [2001:2::3]\r\n"), "{request}");
}

#[test]
fn ecmp_lab_up_status_down_without_ip_or_ethtool() {
    if !runnable("fresh_ecmp", &[]) {
        return;
    }
    let path = bare_path();
    let name = lab_name("ecmp");
    let _cleanup = Cleanup(name.clone());

    let up = ok(
        path.path(),
        &["lab", "up", "--name", &name, "--servers", "2"],
    );
    assert!(
        up.contains(&format!("lab {name} is up: 2 sirocco hosts")),
        "{up}"
    );

    let status = ok(path.path(), &["lab", "status", "--name", &name]);
    assert!(
        status.contains(&format!("ECMP lab {name}: up, 2 hosts")),
        "{status}"
    );
    assert!(
        status.contains(
            "198.19.255.1/32 nexthop via 198.18.1.2 dev rtr-h1 nexthop via 198.18.2.2 dev rtr-h2"
        ),
        "{status}"
    );
    assert!(status.contains("fib_multipath_hash_policy=1"), "{status}");
    assert!(
        status.contains("veth-cli kernel addresses: 198.18.100.2/24"),
        "{status}"
    );
    assert!(
        status.contains("veth-srv kernel addresses: 198.18.2.2/24"),
        "{status}"
    );
    // The router forwards, and its host-facing ends checksum in software.
    let router = format!("{name}-rtr");
    let forwarding = netns::in_namespace(&router, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
    })
    .expect("enter the router namespace")
    .expect("read ip_forward");
    assert_eq!(forwarding.trim(), "1");
    for iface in ["rtr-h1", "rtr-h2"] {
        let tx = netns::in_namespace(&router, || {
            sirocco_drivers::host::offload(iface, sirocco_drivers::host::Offload::TxChecksum)
        })
        .expect("enter the router namespace")
        .expect("read tx-checksumming");
        assert!(!tx, "tx checksum offload is still on on {iface}");
    }

    let down = ok(path.path(), &["lab", "down", "--name", &name]);
    assert!(down.contains(&format!("ECMP lab {name} removed")), "{down}");
    for ns in sirocco::lab::ecmp::lab_namespaces(&name, 2) {
        assert!(!netns::exists(&ns), "{ns} is left");
    }
}
