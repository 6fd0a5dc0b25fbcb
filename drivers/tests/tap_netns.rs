//! The tap backend against the real kernel: a client in its own network namespace pings an
//! address that only this test answers for.
//!
//! Needs root. Without it the test prints a notice and passes, unless `SIROCCO_REQUIRE_LAB=1`.
//! Only 198.18.0.0/15 addresses are used, inside a namespace the test creates and deletes.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sirocco_drivers::FrameIo;
use sirocco_drivers::tap::TapDevice;

const KERNEL_IP: [u8; 4] = [198, 18, 0, 1];
const TAP_IP: [u8; 4] = [198, 18, 0, 2];
const TAP_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x02];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn lab_required() -> bool {
    std::env::var("SIROCCO_REQUIRE_LAB").is_ok_and(|v| v == "1")
}

/// Fails when the lab is required (CI), and otherwise says the test did not run.
fn lab_unavailable(why: &str) -> bool {
    assert!(!lab_required(), "SIROCCO_REQUIRE_LAB=1 but {why}");
    eprintln!("NOT RUN: the tap lab test: {why}; set SIROCCO_REQUIRE_LAB=1 to make this a failure");
    true
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop even if the test fails.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
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
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 && lab_unavailable("not running as root") {
        return;
    }
    for tool in ["ip", "ping"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found && lab_unavailable(&format!("{tool} is not installed")) {
            return;
        }
    }

    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ns = Netns::create(format!("sirocco-tap-{pid}-{n}"));
    let name = format!("sirt{}x{n}", pid % 1_000_000);
    let mut tap = TapDevice::open(&name).expect("open tap");
    assert_eq!(tap.name(), name);
    assert_eq!(tap.capabilities().mtu, 1500);
    assert_eq!(tap.capabilities().max_frame_len, 1514);
    assert!(tap.ifindex() > 0);

    // Moving the tap takes it down; our descriptor keeps working across namespaces.
    ip(&["link", "set", &name, "netns", &ns.0]);
    ip(&["-n", &ns.0, "addr", "add", "198.18.0.1/24", "dev", &name]);
    ip(&["-n", &ns.0, "link", "set", &name, "up"]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);

    let _ping = Reaped(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "198.18.0.2",
            ])
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
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 && lab_unavailable("not running as root") {
        return;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("sirb{}x{n}", std::process::id() % 1_000_000);
    let _first = TapDevice::open(&name).expect("open tap");
    let err = TapDevice::open(&name).expect_err("a second open of the same tap");
    assert_eq!(
        err.to_string(),
        format!("tap {name} is already in use by another process: stop it, or pick another name")
    );
}
