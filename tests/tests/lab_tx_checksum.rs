//! Lab end-to-end of TCP checksum offload through AF_XDP TX metadata: the real `sirocco serve`
//! on veth-srv, curl in the client namespace fetching files byte-exact, and tcpdump on the
//! client end recording what crossed the link.
//!
//! - `--tx-checksum-offload kernel-software` has the kernel complete each checksum from
//!   sirocco's requests (`csum_start`, `csum_offset`, the pseudo-header sum in the field): every
//!   TCP segment the client captures must carry a correct checksum, so a wrong request shows.
//!   With an MTU of 9000 the frames longer than a UMEM chunk (descriptor chains) are covered
//!   too.
//! - `on`: veth takes the offload, and the frames reach the client as the kernel passes its
//!   own offloaded packets, the pseudo-header sum still in the field, which the client's TCP
//!   takes. The default (`auto`) leaves checksums to sirocco on veth, whose peer may be an XDP
//!   program that sees the field as it is: whole checksums.
//!
//! Needs root, iproute2, ethtool, curl and tcpdump; without them these tests fail under
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, checksum,
};

use sirocco::lab::SERVER_ADDR;
use sirocco::lab::veth::{CLIENT_IFACE, SERVER_IFACE, VethLab};
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    ChildGuard, LabServer, TempDir, assert_same_bytes, curl_body, lab_available, poll_until, run,
    server_url,
};

/// Around one segment (1500 - 20 - 20 - 12 of timestamps = 1448 bytes), a UMEM chunk, one
/// jumbo segment, and a big file.
const SIZES: [usize; 7] = [0, 1, 1_448, 1_449, 4_097, 8_949, 1_000_003];

/// What the client saw of sirocco's TCP segments: how many carried data, and how many of
/// those had a correct checksum, the pseudo-header sum alone (an offloaded packet not yet
/// completed), or neither.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    segments: usize,
    correct: usize,
    pseudo_header_only: usize,
    wrong: usize,
}

/// Reads the capture and sorts sirocco's TCP segments (from `server`) by their checksum.
fn sort_segments(capture: &Path, server: IpAddr) -> Seen {
    let file = std::fs::File::open(capture).expect("open the capture");
    let mut reader = PcapReader::new(file).expect("a pcap file");
    let mut seen = Seen::default();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a whole packet");
        let Ok(eth) = EthernetFrame::new_checked(&packet.data[..]) else {
            continue;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            continue;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            continue;
        };
        if IpAddr::V4(ip.src_addr()) != server || ip.next_header() != IpProtocol::Tcp {
            continue;
        }
        assert!(
            ip.verify_checksum(),
            "IPv4 header checksum: always sirocco's"
        );
        let segment = ip.payload();
        let Ok(tcp) = TcpPacket::new_checked(segment) else {
            panic!("a short TCP segment from sirocco");
        };
        seen.segments += 1;
        let (src, dst) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        if tcp.verify_checksum(&src, &dst) {
            seen.correct += 1;
        } else if tcp.checksum()
            == checksum::pseudo_header_v4(
                &ip.src_addr(),
                &ip.dst_addr(),
                IpProtocol::Tcp,
                segment.len() as u32,
            )
        {
            seen.pseudo_header_only += 1;
        } else {
            seen.wrong += 1;
        }
    }
    seen
}

/// tcpdump on the client end, writing every TCP frame to `path` until dropped (SIGINT).
fn capture_client(lab: &VethLab, path: &Path) -> ChildGuard {
    let child = lab
        .client_command("tcpdump")
        // A 16 MiB capture buffer: a megabyte at veth speed must not overrun it.
        .args(["-i", CLIENT_IFACE, "-B", "16384", "-U", "-n", "-w"])
        .arg(path)
        .arg("tcp")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tcpdump");
    let guard = ChildGuard(child);
    // The file gets its header once tcpdump is listening.
    poll_until("tcpdump to listen", Duration::from_secs(10), || {
        std::fs::metadata(path).is_ok_and(|m| m.len() >= 24)
    });
    std::thread::sleep(Duration::from_millis(200));
    guard
}

fn stop_capture(mut tcpdump: ChildGuard) {
    let pid = tcpdump.0.id().to_string();
    run(Command::new("kill").args(["-INT", &pid]), "stop tcpdump");
    let _ = tcpdump.0.wait();
}

/// Serves `tree` on `lab` with `extra` flags, fetches every file byte-exact under a capture,
/// and returns the server's log and what the client saw.
fn fetch_under_capture(
    lab: &VethLab,
    tree: &TestTree,
    extra: &[&str],
    tag: &str,
) -> (String, Seen) {
    let dir = TempDir::new(tag);
    let capture = dir.path().join("client.pcap");
    let mut args = vec!["--stats-interval", "0"];
    args.extend_from_slice(extra);
    let server = LabServer::start(lab, tree.path(), &args);
    let tcpdump = capture_client(lab, &capture);
    for (url_path, expected) in tree.files() {
        let body = curl_body(lab, &[], &server_url(url_path));
        assert_same_bytes(url_path, &body, expected);
    }
    std::thread::sleep(Duration::from_millis(200));
    stop_capture(tcpdump);
    let stopped = server.stop_cleanly();
    assert_eq!(
        stopped.requests(),
        tree.files().len() as u64,
        "{}",
        stopped.stdout
    );
    let seen = sort_segments(&capture, IpAddr::V4(SERVER_ADDR));
    println!("{tag} {extra:?}: {seen:?}");
    (stopped.stderr, seen)
}

fn set_mtu(lab: &VethLab, mtu: &str) {
    for (command, iface) in [
        (lab.server_command("ip"), SERVER_IFACE),
        (lab.client_command("ip"), CLIENT_IFACE),
    ] {
        let mut command = command;
        let output = run(
            command.args(["link", "set", "dev", iface, "mtu", mtu]),
            "ip link set mtu",
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_kernels_software_completion_of_sirocco_requests_gives_correct_checksums() {
    if !lab_available("tx_checksum_kernel", &["curl", "tcpdump"]) {
        return;
    }
    let tree = TestTree::with_sizes(&SIZES);
    for mtu in ["1500", "9000"] {
        let lab = VethLab::create_unique("txsum").expect("create the veth lab");
        set_mtu(&lab, mtu);
        let (log, seen) = fetch_under_capture(
            &lab,
            &tree,
            &["--tx-checksum-offload", "kernel-software"],
            "txsum-kernel",
        );
        assert!(
            log.contains("TCP checksums by the kernel in software"),
            "MTU {mtu}: {log}"
        );
        // The files make about 700 full segments at MTU 1500 and 120 at 9000: the capture must
        // hold a good part of them (tcpdump may drop some under load), each one checked.
        assert!(seen.segments > 60, "MTU {mtu}: too few segments: {seen:?}");
        assert_eq!(seen.correct, seen.segments, "MTU {mtu}: {seen:?}");
    }
}

#[test]
fn veth_takes_the_offload_when_asked_and_sends_whole_checksums_by_default() {
    if !lab_available("tx_checksum_device", &["curl", "tcpdump"]) {
        return;
    }
    let tree = TestTree::with_sizes(&SIZES);
    let lab = VethLab::create_unique("txdev").expect("create the veth lab");

    let (log, offloaded) =
        fetch_under_capture(&lab, &tree, &["--tx-checksum-offload", "on"], "txsum-on");
    assert!(log.contains("TCP checksums offloaded"), "{log}");
    assert!(offloaded.segments > 350, "{offloaded:?}");
    // Every segment went out as an offloaded packet: the client's TCP took them on the
    // device's word, as it does its own kernel's.
    assert_eq!(
        offloaded.pseudo_header_only, offloaded.segments,
        "{offloaded:?}"
    );

    let (log, whole) = fetch_under_capture(&lab, &tree, &[], "txsum-default");
    assert!(!log.contains("TCP checksums"), "{log}");
    assert!(whole.segments > 350, "{whole:?}");
    assert_eq!(whole.correct, whole.segments, "{whole:?}");
}
