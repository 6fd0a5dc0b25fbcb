//! Lab end-to-end of jumbo frames over AF_XDP multi-buffer: a fresh veth lab with an MTU of
//! 9000 on both ends, the real `sirocco serve` on veth-srv, and curl in the client namespace
//! fetching files from 0 B to 4 MiB byte-exact. The client end's own counters show that frames
//! longer than a 4096-byte UMEM chunk really crossed the link (each one a chain of
//! descriptors on sirocco's side); with `--mtu 1500` on the same link they stay at 1514 bytes.
//!
//! Needs root, iproute2, ethtool, ping and curl; without them these tests fail under
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run.

use std::process::Command;

use sirocco::lab::veth::{CLIENT_IFACE, SERVER_IFACE, VethLab};
use sirocco_tests::TestTree;
use sirocco_tests::lab::{LabServer, assert_same_bytes, curl_body, lab_available, run, server_url};

const JUMBO_MTU: u32 = 9000;

/// Sizes around one jumbo segment (9000 - 20 - 20 - 12 of timestamps = 8948 bytes) and a
/// UMEM chunk, and a big file.
const SIZES: [usize; 9] = [
    0,
    1,
    3_840,
    4_097,
    8_948,
    8_949,
    65_536,
    1_000_003,
    4 * 1024 * 1024,
];

fn must(command: &mut Command, what: &str) {
    let output = run(command, what);
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The veth lab with `mtu` on both ends.
fn lab_with_mtu(tag: &str, mtu: u32) -> VethLab {
    let lab = VethLab::create_unique(tag).expect("create the veth lab");
    let mtu = mtu.to_string();
    must(
        lab.server_command("ip")
            .args(["link", "set", "dev", SERVER_IFACE, "mtu", &mtu]),
        "ip link set mtu (server end)",
    );
    must(
        lab.client_command("ip")
            .args(["link", "set", "dev", CLIENT_IFACE, "mtu", &mtu]),
        "ip link set mtu (client end)",
    );
    lab
}

/// The client end's received (packets, bytes): what sirocco sent it.
fn client_rx(lab: &VethLab) -> (u64, u64) {
    let read = |counter: &str| -> u64 {
        let path = format!("/sys/class/net/{CLIENT_IFACE}/statistics/{counter}");
        let out = run(lab.client_command("cat").arg(&path), "read a counter");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    (read("rx_packets"), read("rx_bytes"))
}

/// Fetches every file of `tree` with curl and checks it byte-exact; returns the average length
/// of the frames the client received during the largest download, Ethernet header included.
fn fetch_all(lab: &VethLab, tree: &TestTree) -> f64 {
    let mut biggest = (0, 0.0);
    for (url_path, expected) in tree.files() {
        let (packets_before, bytes_before) = client_rx(lab);
        let body = curl_body(lab, &[], &server_url(url_path));
        let (packets_after, bytes_after) = client_rx(lab);
        assert_same_bytes(url_path, &body, expected);
        let packets = packets_after - packets_before;
        let average = (bytes_after - bytes_before) as f64 / packets.max(1) as f64;
        println!(
            "{url_path}: {} bytes byte-exact, {packets} frames to the client, {average:.0} bytes \
             each on average",
            body.len()
        );
        if body.len() >= biggest.0 {
            biggest = (body.len(), average);
        }
    }
    biggest.1
}

#[test]
fn curl_fetches_every_size_byte_exact_in_jumbo_frames() {
    if !lab_available("jumbo_sizes", &["curl"]) {
        return;
    }
    let tree = TestTree::with_sizes(&SIZES);
    let lab = lab_with_mtu("jumbo", JUMBO_MTU);
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let average = fetch_all(&lab, &tree);
    // A 4 MiB download is almost all full segments: 9014-byte frames, each three UMEM chunks
    // on sirocco's side (plus the client's own few small frames' worth of ACK-less overhead).
    assert!(
        average > 8_000.0,
        "frames to the client average {average:.0} bytes: not jumbo"
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), SIZES.len() as u64, "{}", stopped.stdout);
    assert!(
        stopped.stderr.contains("multi-buffer (MTU 9000)"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn mtu_option_serves_below_the_interface_mtu() {
    if !lab_available("jumbo_mtu_option", &["curl"]) {
        return;
    }
    let tree = TestTree::with_sizes(&[4_097, 1024 * 1024]);
    let lab = lab_with_mtu("jmtu", JUMBO_MTU);
    let server = LabServer::start(
        &lab,
        tree.path(),
        &["--stats-interval", "0", "--mtu", "1500"],
    );
    let average = fetch_all(&lab, &tree);
    assert!(
        average <= 1514.0 && average > 1_000.0,
        "frames to the client average {average:.0} bytes under --mtu 1500"
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 2, "{}", stopped.stdout);

    // Above the interface's MTU: refused, saying why.
    let lab = lab_with_mtu("jmtu2", 1500);
    // Bounded: a server that wrongly started would run until killed.
    let out = run(
        lab.server_command("timeout")
            .arg("20")
            .arg(sirocco_tests::lab::sirocco_binary())
            .args(["serve", "--driver", "afxdp", "--iface", SERVER_IFACE])
            .args(["--ip", "198.18.0.2/24", "--mtu", "9000"])
            .args(["--root", &tree.path().to_string_lossy()]),
        "sirocco serve --mtu 9000 on a 1500 link",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--mtu 9000 is above the 1500 bytes the interface carries"),
        "{stderr}"
    );
}
