//! The tap backend against the real kernel: a client in its own network namespace pings an
//! address that only this test answers for.
//!
//! The namespace is the tap lab every lab test uses (`sirocco::lab::Lab`), removed when the
//! test ends, even when it fails: the tap is created inside it, and the lab gives the kernel's
//! side of the tap the client address, so the kernel's own stack is the client.
//!
//! Needs root. Without it the test prints a notice and passes, unless `SIROCCO_REQUIRE_LAB=1`.
//! Only 198.18.0.0/15 addresses are used.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::{CLIENT_ADDR, Lab, SERVER_ADDR};
use sirocco_drivers::tap::TapDevice;
use sirocco_drivers::{FrameIo, netns};

const KERNEL_IP: [u8; 4] = CLIENT_ADDR.octets();
const TAP_IP: [u8; 4] = SERVER_ADDR.octets();
const TAP_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x02];

fn lab_required() -> bool {
    std::env::var("SIROCCO_REQUIRE_LAB").is_ok_and(|v| v == "1")
}

/// Fails when the lab is required (CI), and otherwise says the test did not run.
fn lab_unavailable(why: &str) -> bool {
    assert!(!lab_required(), "SIROCCO_REQUIRE_LAB=1 but {why}");
    eprintln!("NOT RUN: the tap lab test: {why}; set SIROCCO_REQUIRE_LAB=1 to make this a failure");
    true
}

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn is_arp_who_has(frame: &[u8], target: [u8; 4]) -> Option<([u8; 6], [u8; 4])> {
    // Ethernet (14) + ARP for IPv4 over Ethernet (28).
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] {
        return None;
    }
    let arp = &frame[14..42];
    let ipv4_over_ethernet = arp[0..6] == [0, 1, 0x08, 0x00, 6, 4];
    let request = arp[6..8] == [0, 1];
    if !(ipv4_over_ethernet && request && arp[24..28] == target) {
        return None;
    }
    let sender_mac = arp[8..14].try_into().ok()?;
    let sender_ip = arp[14..18].try_into().ok()?;
    Some((sender_mac, sender_ip))
}

fn arp_reply(to_mac: [u8; 6], to_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&to_mac);
    f.extend_from_slice(&TAP_MAC);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&TAP_MAC);
    f.extend_from_slice(&TAP_IP);
    f.extend_from_slice(&to_mac);
    f.extend_from_slice(&to_ip);
    f
}

fn is_echo_request_to_us(frame: &[u8]) -> bool {
    if frame.len() < 14 + 20 + 8 || frame[0..6] != TAP_MAC || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[14..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    ip[0] >> 4 == 4
        && ip[9] == 1 // ICMP
        && ip[12..16] == KERNEL_IP
        && ip[16..20] == TAP_IP
        && ip.get(header_len) == Some(&8) // echo request
}

/// Reads frames until `wanted` picks one out, or `deadline` passes.
fn receive<T>(
    tap: &mut TapDevice,
    deadline: Instant,
    mut wanted: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        tap.wait_rx(Duration::from_millis(50)).unwrap();
        tap.rx_burst(32, &mut |frame| {
            if found.is_none() {
                found = wanted(frame);
            }
        })
        .unwrap();
    }
    found
}

#[test]
fn tap_answers_arp_and_receives_a_ping_from_a_namespace() {
    if !sirocco::lab::is_root() && lab_unavailable("not running as root") {
        return;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v ping"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && lab_unavailable("ping is not installed") {
        return;
    }

    let lab = Lab::create("tap").expect("create the tap lab");
    let name = Lab::unique_tap_name();
    // Created from a thread inside the lab, the tap lives there; the descriptor works from
    // any thread.
    let mut tap = netns::in_namespace(lab.namespace(), || TapDevice::open(&name))
        .expect("enter the lab namespace")
        .expect("open tap");
    assert_eq!(tap.name(), name);
    assert_eq!(tap.capabilities().mtu, 1500);
    assert_eq!(tap.capabilities().max_frame_len, 1514);
    assert!(tap.ifindex() > 0);
    lab.configure_client_link(&name)
        .expect("give the kernel's side of the tap 198.18.0.1/24");

    let _ping = Reaped(
        lab.command("ping")
            .args(["-c", "1", "-W", "2", &SERVER_ADDR.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping"),
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let (kernel_mac, kernel_ip) = receive(&mut tap, deadline, |f| is_arp_who_has(f, TAP_IP))
        .expect("an ARP who-has 198.18.0.2 from the namespace");
    assert_eq!(kernel_ip, KERNEL_IP);

    let reply = arp_reply(kernel_mac, kernel_ip);
    assert!(tap.tx_stage(reply.len(), &mut |buf| buf.copy_from_slice(&reply)));
    tap.tx_flush().unwrap();
    let counters = tap.counters();
    assert_eq!((counters.tx_frames, counters.tx_bytes), (1, 42));
    assert_eq!(tap.tx_room(), sirocco_drivers::tap::TAP_TX_SLOTS);

    let echo = receive(&mut tap, deadline, |f| {
        is_echo_request_to_us(f).then_some(())
    });
    assert!(echo.is_some(), "the ICMP echo request after our ARP reply");
    let counters = tap.counters();
    assert!(counters.rx_frames >= 2);
    assert!(counters.kicks >= counters.rx_frames + counters.tx_frames);
    assert_eq!(counters.rx_dropped, 0);
}

#[test]
fn opening_a_tap_twice_says_it_is_busy() {
    if !sirocco::lab::is_root() && lab_unavailable("not running as root") {
        return;
    }
    let name = Lab::unique_tap_name();
    let _first = TapDevice::open(&name).expect("open tap");
    let err = TapDevice::open(&name).expect_err("a second open of the same tap");
    assert_eq!(
        err.to_string(),
        format!("tap {name} is already in use by another process: stop it, or pick another name")
    );
}
