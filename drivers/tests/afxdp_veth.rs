//! The AF_XDP backend against the real kernel, in the veth lab every lab test uses
//! (`sirocco::lab::veth::VethLab`): two network namespaces joined by a veth pair, with unique
//! names, removed when the test ends, even when it fails.
//!
//! - The client namespace holds veth-cli with 198.18.0.1/24; `ping` runs there.
//! - The server namespace holds veth-srv; the driver is opened from a thread inside it, and
//!   this test answers ARP and ICMP echo for 198.18.0.2 by hand through `rx_burst` /
//!   `tx_stage` / `tx_flush`.
//!
//! The filter test also pings over IPv6 link-local addresses (no address is added: the
//! kernel's own fe80:: ones are used once their duplicate address detection is over).
//!
//! Needs root and ping. Without them the tests print NOT RUN and pass, unless
//! `SIROCCO_REQUIRE_LAB=1`. Only 198.18.0.0/15 addresses are used.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::netlink::Netlink;
use sirocco::lab::veth::{CLIENT_IFACE, SERVER_IFACE, VethLab};
use sirocco::lab::{CLIENT_ADDR, SERVER_ADDR};
use sirocco_drivers::afxdp::{AfXdp, AfXdpConfig, AttachMode, CopyMode, Filter, TxChecksumOffload};
use sirocco_drivers::{DriverError, FrameIo, ServerAddresses, netns};

const SERVER_IP: Ipv4Addr = SERVER_ADDR;
/// An address the kernel holds on veth-srv beside sirocco's, in the filter test.
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

fn lab_required() -> bool {
    std::env::var("SIROCCO_REQUIRE_LAB").is_ok_and(|v| v == "1")
}

/// `true` (after a NOT RUN notice) if the lab cannot run here; panics instead when the lab is
/// required.
fn lab_unavailable() -> bool {
    let why = if !sirocco::lab::is_root() {
        Some("not running as root".to_string())
    } else {
        (!have("ping")).then(|| "ping is not installed".to_string())
    };
    let Some(why) = why else { return false };
    assert!(!lab_required(), "SIROCCO_REQUIRE_LAB=1 but {why}");
    eprintln!("NOT RUN: AF_XDP veth lab test: {why}");
    true
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The veth lab, and the MAC address of its server end (the one sirocco would serve with).
struct Lab {
    veth: VethLab,
    server_mac: [u8; 6],
}

impl Lab {
    fn new() -> Lab {
        let veth = VethLab::create_unique("xdrv").expect("create the veth lab");
        let server_mac = veth
            .server_link_state()
            .expect("read veth-srv")
            .mac
            .expect("veth-srv has a MAC address");
        Lab { veth, server_mac }
    }

    /// Opens the driver from a thread inside the server namespace (the driver keeps working
    /// from any thread after that).
    fn open(&self, config: AfXdpConfig) -> Result<AfXdp, DriverError> {
        netns::in_namespace(self.veth.server_ns(), || AfXdp::open(config))
            .expect("enter the server namespace")
    }

    fn ping(&self, target: Ipv4Addr, count: u32) -> Reaped {
        self.ping_address(&target.to_string(), count)
    }

    /// Pings an address (of either family) from the client namespace.
    fn ping_address(&self, target: &str, count: u32) -> Reaped {
        self.ping_with(target, count, &[])
    }

    /// Pings with `size` bytes of ICMP payload, never fragmented (`-M do`).
    fn ping_sized(&self, target: Ipv4Addr, count: u32, size: usize) -> Reaped {
        let size = size.to_string();
        self.ping_with(&target.to_string(), count, &["-M", "do", "-s", &size])
    }

    fn ping_with(&self, target: &str, count: u32, extra: &[&str]) -> Reaped {
        let child = self
            .veth
            .client_command("ping")
            .args(["-n", "-q", "-i", "0.2", "-W", "1"])
            .args(extra)
            .args(["-c", &count.to_string(), target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        Reaped(child)
    }

    /// The XDP program on the server end (id and how it is attached), if any.
    fn server_program(&self) -> Option<(u32, &'static str)> {
        self.veth.server_link_state().expect("read veth-srv").xdp
    }

    /// Waits until the server end has no XDP program; panics after `limit` (a bound generous
    /// enough for a loaded machine: the time it took is printed, not asserted).
    ///
    /// The detach is not always instant in this test binary: a parallel test that spawns a
    /// process holds a copy of every descriptor (the link's too) between its fork and exec.
    fn wait_program_gone(&self, after: &str, limit: Duration) {
        let started = Instant::now();
        while let Some(program) = self.server_program() {
            assert!(
                started.elapsed() < limit,
                "XDP program {program:?} still on veth-srv {limit:?} after {after}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "veth-srv clean {:.0} ms after {after}",
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    /// Sets the MTU of both ends.
    fn set_mtu(&self, mtu: u32) {
        for (ns, iface) in [
            (self.veth.server_ns(), SERVER_IFACE),
            (self.veth.client_ns(), CLIENT_IFACE),
        ] {
            Netlink::open_in(ns)
                .and_then(|mut netlink| netlink.set_mtu(iface, mtu))
                .expect("set the MTU");
        }
    }
}

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Reaped {
    fn finished(&mut self) -> Option<bool> {
        self.0.try_wait().expect("wait").map(|s| s.success())
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn small_config() -> AfXdpConfig {
    AfXdpConfig {
        ring_size: 256,
        frame_count: 512,
        ..AfXdpConfig::new(SERVER_IFACE)
    }
}

fn open_in(lab: &Lab, filter: Filter) -> AfXdp {
    open_with(
        lab,
        AfXdpConfig {
            filter,
            ..small_config()
        },
    )
}

fn open_with(lab: &Lab, config: AfXdpConfig) -> AfXdp {
    lab.open(config).expect("open AF_XDP on the server veth")
}

/// A broadcast frame of an unassigned local EtherType from the server: the client counts it
/// (see [`client_rx_packets`]) and drops it.
fn counted_and_dropped(lab: &Lab) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&lab.server_mac);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.resize(60, 0x5a);
    frame
}

/// Frames the client end of the veth has received (its `rx_packets` counter).
fn client_rx_packets(lab: &Lab) -> u64 {
    let path = format!("/sys/class/net/{CLIENT_IFACE}/statistics/rx_packets");
    let out = lab
        .veth
        .client_command("cat")
        .arg(&path)
        .output()
        .expect("run cat in the client namespace");
    assert!(out.status.success(), "cat {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a counter")
}

// ---- hand-built replies -------------------------------------------------------------------

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the server side saw in one frame.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    ArpFor(Ipv4Addr),
    Ipv4To(Ipv4Addr),
    /// An ICMPv6 Neighbor Solicitation (right after the fixed header) for this target.
    NeighborSolicitationFor(Ipv6Addr),
    Ipv6To(Ipv6Addr),
    Other,
}

fn classify(frame: &[u8]) -> Seen {
    let ipv6_at = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&frame[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    match frame.get(12..14) {
        Some([0x86, 0xdd]) if frame.len() >= 78 && frame[20] == 58 && frame[54] == 135 => {
            Seen::NeighborSolicitationFor(ipv6_at(62))
        }
        Some([0x86, 0xdd]) if frame.len() >= 54 => Seen::Ipv6To(ipv6_at(38)),
        Some([0x08, 0x06]) if frame.len() >= 42 => {
            Seen::ArpFor(Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]))
        }
        Some([0x08, 0x00]) if frame.len() >= 34 => {
            Seen::Ipv4To(Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]))
        }
        _ => Seen::Other,
    }
}

/// The reply the server (at `server_mac`) owes for `frame`, if any: an ARP reply for a who-has
/// SERVER_IP, or an echo reply for an echo request to SERVER_IP.
fn reply_to(frame: &[u8], server_mac: [u8; 6]) -> Option<Vec<u8>> {
    if classify(frame) == Seen::ArpFor(SERVER_IP) && frame[20..22] == [0, 1] {
        let (peer_mac, peer_ip) = (&frame[22..28], &frame[28..32]);
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(peer_mac);
        f.extend_from_slice(&server_mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        f.extend_from_slice(&server_mac);
        f.extend_from_slice(&SERVER_IP.octets());
        f.extend_from_slice(peer_mac);
        f.extend_from_slice(peer_ip);
        return Some(f);
    }
    if classify(frame) != Seen::Ipv4To(SERVER_IP) || frame[..6] != server_mac {
        return None;
    }
    let header_len = usize::from(frame[14] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let icmp_at = 14 + header_len;
    if frame[23] != 1 || frame.len() < 14 + total_len || total_len < header_len + 8 {
        return None;
    }
    if frame[icmp_at] != 8 {
        return None;
    }
    let mut f = frame[..14 + total_len].to_vec();
    f.copy_within(6..12, 0);
    f[6..12].copy_from_slice(&server_mac);
    // Swapping source and destination keeps the IPv4 header checksum valid.
    let (src, dst) = (f[26..30].to_vec(), f[30..34].to_vec());
    f[26..30].copy_from_slice(&dst);
    f[30..34].copy_from_slice(&src);
    f[icmp_at] = 0; // echo reply
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&[0, 0]);
    let sum = checksum(&f[icmp_at..]);
    f[icmp_at + 2..icmp_at + 4].copy_from_slice(&sum.to_be_bytes());
    Some(f)
}

/// Answers ARP and pings for SERVER_IP until every ping has exited or `limit` passes.
/// Returns what each ping exited with and every frame the driver received.
fn serve(
    lab: &Lab,
    driver: &mut AfXdp,
    pings: &mut [Reaped],
    limit: Duration,
) -> (Vec<bool>, Vec<Seen>) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut results: Vec<Option<bool>> = vec![None; pings.len()];
    while results.iter().any(Option::is_none) && Instant::now() < deadline {
        driver.wait_rx(Duration::from_millis(20)).unwrap();
        let mut replies = Vec::new();
        driver
            .rx_burst(64, &mut |frame| {
                seen.push(classify(frame));
                replies.extend(reply_to(frame, lab.server_mac));
            })
            .unwrap();
        for reply in &replies {
            assert!(driver.tx_room() > 0);
            assert!(driver.tx_stage(reply.len(), &mut |buf| buf.copy_from_slice(reply)));
        }
        driver.tx_flush().unwrap();
        for (result, ping) in results.iter_mut().zip(pings.iter_mut()) {
            if result.is_none() {
                *result = ping.finished();
            }
        }
    }
    (results.into_iter().map(|r| r == Some(true)).collect(), seen)
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn ping_is_answered_through_af_xdp() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let mut driver = open_in(&lab, Filter::RedirectAll);
    eprintln!("AF_XDP on veth: {}", driver.mode_description());
    // veth has native XDP and no zero-copy (DESIGN.md): Auto must pick native + copy. Its
    // peer would get TCP checksums still partial: Auto keeps them in the stack.
    assert_eq!(driver.attach_mode(), AttachMode::Native);
    assert!(!driver.zero_copy());
    assert_eq!(driver.mode_description(), "native XDP, copy mode, queue 0");
    let caps = driver.capabilities();
    assert_eq!((caps.mtu, caps.max_frame_len), (1500, 1514));
    assert!(!caps.zero_copy && !caps.tx_checksum_offload);
    assert!(
        matches!(lab.server_program(), Some((_, "native"))),
        "{:?}",
        lab.server_program()
    );

    let mut pings = [lab.ping(SERVER_IP, 3)];
    let (ok, seen) = serve(&lab, &mut driver, &mut pings, Duration::from_secs(10));
    assert_eq!(
        ok,
        [true],
        "ping 198.18.0.2 answered through AF_XDP; saw {seen:?}"
    );
    assert!(seen.contains(&Seen::ArpFor(SERVER_IP)));
    let echoes = seen
        .iter()
        .filter(|s| **s == Seen::Ipv4To(SERVER_IP))
        .count();
    assert!(echoes >= 3, "three echo requests, saw {seen:?}");

    // One more flush reclaims the last completions.
    driver.tx_flush().unwrap();
    let c = driver.counters();
    assert!(c.rx_frames >= 4 && c.tx_frames >= 4, "{c:?}");
    assert_eq!(
        (c.rx_dropped, c.tx_dropped, c.tx_ring_full),
        (0, 0, 0),
        "{c:?}"
    );
    assert!(c.kicks >= 1, "{c:?}");
    let x = driver.xdp_counters();
    assert_eq!((x.rx_invalid_descs, x.completion_invalid), (0, 0), "{x:?}");
    assert_eq!(x.tx_completed, c.tx_frames, "{x:?}");
    let k = driver.kernel_statistics().unwrap();
    assert_eq!((k.rx_invalid_descs, k.tx_invalid_descs), (0, 0), "{k:?}");
    assert_eq!(driver.tx_room(), 256, "every TX chunk is back");
}

#[test]
fn filter_leaves_other_addresses_to_the_kernel() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    lab.veth
        .add_kernel_server_address(KERNEL_IP)
        .expect("give veth-srv 198.18.0.3");
    // The kernel's own IPv6 address on the same interface, and two of sirocco's that the
    // kernel does not hold: 2001:2::2, and one in the same solicited-node group as the
    // kernel's (same low 24 bits), so only the target of a solicitation tells them apart.
    let kernel6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    lab.veth
        .add_kernel_server_address6(kernel6)
        .expect("give veth-srv 2001:2::3");
    let ours_same_group = Ipv6Addr::new(0x2001, 2, 0, 0, 0x8000, 0, 0, 3);
    let ours_global = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    // Loading this program also shows the kernel verifier accepts the IPv6 rules.
    let mut driver = open_in(
        &lab,
        Filter::Server(ServerAddresses {
            ipv4: Some(SERVER_IP),
            ipv6: vec![ours_global, ours_same_group],
        }),
    );

    let mut pings = [
        lab.ping(KERNEL_IP, 3),
        lab.ping(SERVER_IP, 3),
        lab.ping_address(&kernel6.to_string(), 3),
        // Nobody answers this one: the driver only records the solicitations for it.
        lab.ping_address(&ours_same_group.to_string(), 1),
    ];
    let (ok, seen) = serve(&lab, &mut driver, &mut pings, Duration::from_secs(15));
    assert_eq!(
        ok,
        [true, true, true, false],
        "the kernel answers .3 and {kernel6}, we answer .2 and not {ours_same_group}; saw {seen:?}"
    );
    assert!(seen.contains(&Seen::ArpFor(SERVER_IP)));
    assert!(seen.contains(&Seen::Ipv4To(SERVER_IP)));
    assert!(
        seen.contains(&Seen::NeighborSolicitationFor(ours_same_group)),
        "the client asked for {ours_same_group} through its solicited-node group; saw {seen:?}"
    );
    assert!(
        seen.iter().all(
            |s| matches!(s, Seen::ArpFor(SERVER_IP) | Seen::Ipv4To(SERVER_IP))
                || *s == Seen::NeighborSolicitationFor(ours_same_group)
                || *s == Seen::Ipv6To(ours_same_group)
        ),
        "only traffic for 198.18.0.2 and {ours_same_group} reaches the driver; saw {seen:?}"
    );
    assert_eq!(CLIENT_ADDR.octets()[3], 1);
}

#[test]
fn dropping_the_driver_detaches_the_program_and_frees_the_queue() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let driver = open_in(&lab, Filter::RedirectAll);
    assert!(lab.server_program().is_some());

    // A second driver on the same interface is refused with a message that says what to do.
    let second = lab.open(AfXdpConfig::new(SERVER_IFACE));
    let message = second.expect_err("the interface is taken").to_string();
    assert!(
        message.contains("already attached") && message.contains("xdp off"),
        "{message}"
    );

    drop(driver);
    lab.wait_program_gone("the drop", Duration::from_secs(20));

    // The queue is free again: a new driver attaches (an error here fails the test).
    let again = open_in(&lab, Filter::RedirectAll);
    assert_eq!(again.attach_mode(), AttachMode::Native);
}

#[test]
fn a_missing_interface_lists_the_real_ones() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let err = lab
        .open(AfXdpConfig::new("sirocco-nope0"))
        .expect_err("no such interface");
    let message = err.to_string();
    assert!(
        message.starts_with("interface sirocco-nope0 not found; available: "),
        "{message}"
    );
}

#[test]
fn skb_mode_and_need_wakeup_also_answer_pings() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let config = AfXdpConfig {
        mode: AttachMode::Skb,
        copy: CopyMode::Copy,
        need_wakeup: true,
        ..small_config()
    };
    let mut driver = open_with(&lab, config);
    assert_eq!(
        driver.mode_description(),
        "SKB (generic) XDP, copy mode, queue 0, need-wakeup"
    );
    assert!(
        matches!(lab.server_program(), Some((_, "generic"))),
        "{:?}",
        lab.server_program()
    );
    let mut pings = [lab.ping(SERVER_IP, 2)];
    let (ok, seen) = serve(&lab, &mut driver, &mut pings, Duration::from_secs(10));
    assert_eq!(ok, [true], "saw {seen:?}");
}

/// Asked for, veth takes TCP checksum offload through TX metadata (this kernel registers a
/// UMEM with it), in both forms; the ICMP answers keep the stack's checksums and get through.
#[test]
fn tx_checksum_offload_is_taken_when_asked_for() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    for (tx_checksum, says) in [
        (TxChecksumOffload::On, "TCP checksums offloaded"),
        (
            TxChecksumOffload::KernelSoftware,
            "TCP checksums by the kernel in software",
        ),
    ] {
        let config = AfXdpConfig {
            tx_checksum,
            ..small_config()
        };
        let mut driver = open_with(&lab, config);
        assert_eq!(
            driver.mode_description(),
            format!("native XDP, copy mode, queue 0, {says}")
        );
        assert!(driver.capabilities().tx_checksum_offload);
        let mut pings = [lab.ping(SERVER_IP, 2)];
        let (ok, seen) = serve(&lab, &mut driver, &mut pings, Duration::from_secs(10));
        assert_eq!(ok, [true], "{tx_checksum:?}: saw {seen:?}");
    }
}

#[test]
fn unsupported_modes_say_what_to_do() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let open = |config: AfXdpConfig| lab.open(config).map(|d| d.mode_description());
    // veth has no zero-copy.
    let forced = AfXdpConfig {
        copy: CopyMode::ZeroCopy,
        ..small_config()
    };
    let message = open(forced).expect_err("no zero-copy on veth").to_string();
    assert!(message.contains("does not support zero-copy"), "{message}");

    // Above veth's single-buffer limit of 3506 the program is loaded frags-aware, which
    // native XDP on veth accepts; above 3826 the socket is multi-buffer.
    lab.set_mtu(4000);
    let native = AfXdpConfig {
        mode: AttachMode::Native,
        ..small_config()
    };
    assert_eq!(
        open(native).expect("a frags-aware program attaches natively at MTU 4000"),
        "native XDP, copy mode, queue 0, multi-buffer (MTU 4000)"
    );
}

/// Jumbo echo requests and replies (8028-byte IP packets, three UMEM chunks each) over a veth
/// pair with MTU 9000: RX gathers chains, TX sends them, in native and SKB mode.
#[test]
fn jumbo_pings_are_answered_over_multi_buffer() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    lab.set_mtu(9000);
    for (mode, description) in [
        (
            AttachMode::Native,
            "native XDP, copy mode, queue 0, multi-buffer (MTU 9000)",
        ),
        (
            AttachMode::Skb,
            "SKB (generic) XDP, copy mode, queue 0, multi-buffer (MTU 9000)",
        ),
    ] {
        let config = AfXdpConfig {
            mode,
            ..small_config()
        };
        let mut driver = open_with(&lab, config);
        assert_eq!(driver.mode_description(), description);
        let caps = driver.capabilities();
        assert_eq!((caps.mtu, caps.max_frame_len), (9000, 9014));
        // 256 slots and chunks for TX, three descriptors for the longest frame.
        assert_eq!(driver.tx_room(), 256 / 3);

        let mut pings = [lab.ping_sized(SERVER_IP, 3, 8000)];
        let (ok, seen) = serve(&lab, &mut driver, &mut pings, Duration::from_secs(10));
        assert_eq!(ok, [true], "{mode:?}: jumbo pings answered; saw {seen:?}");
        // Each 8042-byte reply took two 4096-byte chunks (it came in three descriptors of at
        // most 3840 bytes), and each chunk comes back on its own: the kernel completes a chain
        // when the skb it built is freed, which may be a moment after the send.
        let all_back = |driver: &AfXdp| {
            let (c, x) = (driver.counters(), driver.xdp_counters());
            x.tx_completed == c.tx_frames + x.tx_chains
        };
        let started = Instant::now();
        driver.tx_flush().unwrap();
        while !all_back(&driver) && started.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(10));
            driver.tx_flush().unwrap();
        }
        let c = driver.counters();
        let x = driver.xdp_counters();
        eprintln!("{mode:?}: {c:?} {x:?}");
        assert!(x.rx_chains >= 3 && x.tx_chains >= 3, "{mode:?}: {x:?}");
        assert_eq!((c.rx_dropped, c.tx_dropped), (0, 0), "{mode:?}: {c:?}");
        assert_eq!(
            (
                x.rx_invalid_descs,
                x.rx_chains_dropped,
                x.completion_invalid
            ),
            (0, 0, 0),
            "{mode:?}: {x:?}"
        );
        assert!(all_back(&driver), "{mode:?}: {c:?} {x:?}");
        assert_eq!(driver.tx_room(), 256 / 3, "every TX chunk is back");
        assert!(c.tx_bytes >= 3 * 8042, "{mode:?}: {c:?}");
        let k = driver.kernel_statistics().unwrap();
        assert_eq!((k.rx_invalid_descs, k.tx_invalid_descs), (0, 0), "{k:?}");
        drop(driver);
        lab.wait_program_gone("a jumbo round", Duration::from_secs(5));
    }
}

#[test]
fn a_burst_bigger_than_one_kick_is_all_sent() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let config = AfXdpConfig {
        ring_size: 1024,
        frame_count: 2048,
        ..small_config()
    };
    let mut driver = open_with(&lab, config);
    assert_eq!(driver.tx_room(), 1024);
    let frame = counted_and_dropped(&lab);
    let before = client_rx_packets(&lab);
    const BURST: u64 = 1000;
    for _ in 0..BURST {
        assert!(driver.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(&frame)));
    }
    assert!(driver.tx_room() < 30);
    // One flush sends up to the kernel's TX budget per kick; flushing again finishes the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    while driver.tx_room() < 1024 && Instant::now() < deadline {
        driver.tx_flush().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        driver.tx_room(),
        1024,
        "every chunk came back: {:?}",
        driver.xdp_counters()
    );
    // `tx_room` counts chunks still on the completion ring; a flush takes them off.
    driver.tx_flush().unwrap();
    let c = driver.counters();
    assert_eq!((c.tx_frames, c.tx_bytes), (BURST, BURST * 60));
    let budget = driver.tx_budget().unwrap_or(32);
    assert!(c.kicks >= BURST.div_ceil(u64::from(budget)), "{c:?}");
    assert_eq!(driver.xdp_counters().tx_completed, BURST);
    let received = client_rx_packets(&lab) - before;
    assert!(received >= BURST, "client received {received} of {BURST}");
}

/// The kernel behaviour `tx_flush_lazy` counts on: frames published on the TX ring with no
/// `sendto` go out during the `poll()` of the next wait (`xsk_poll` sends them in copy mode).
#[test]
fn frames_left_unkicked_go_out_with_the_wait_s_poll() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    // Only the server's address: the client kernel's own chatter (IPv6 neighbour and router
    // solicitations) stays with the server's kernel, so the RX ring stays empty and the wait
    // really reaches `poll()`.
    let mut driver = open_in(
        &lab,
        Filter::Server(ServerAddresses {
            ipv4: Some(SERVER_IP),
            ipv6: Vec::new(),
        }),
    );
    let frame = counted_and_dropped(&lab);
    let before = client_rx_packets(&lab);
    const FRAMES: u64 = 8;
    for _ in 0..FRAMES {
        assert!(driver.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(&frame)));
    }
    driver.tx_flush_lazy().unwrap();
    assert_eq!(
        driver.counters().kicks,
        0,
        "the first lazy flush leaves its kick"
    );
    assert_eq!(
        client_rx_packets(&lab) - before,
        0,
        "nothing sent before the wait"
    );
    // Nothing comes in (the client sends nothing): the wait sleeps its whole timeout in
    // `poll()`, and the frames leave meanwhile.
    driver.wait_rx(Duration::from_millis(100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client_rx_packets(&lab) - before < FRAMES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(client_rx_packets(&lab) - before, FRAMES);
    let c = driver.counters();
    assert_eq!(c.kicks, 0, "sent with no sendto: {c:?}");
    assert_eq!(driver.xdp_counters().tx_kicks_left_to_poll, 1);
    driver.tx_flush().unwrap();
    assert_eq!(driver.xdp_counters().tx_completed, FRAMES);
}

const HOLD_ENV: &str = "SIROCCO_AFXDP_HOLD";

/// A driver held by another process, killed with SIGKILL (no chance to clean up), leaves no
/// program on the interface, and the queue can be taken again.
///
/// The other process is this test binary running this same test with `SIROCCO_AFXDP_HOLD`
/// set to the server namespace: there it opens a driver, says READY and waits to be killed.
#[test]
fn sigkill_detaches_the_program() {
    if let Ok(server_ns) = std::env::var(HOLD_ENV) {
        hold_a_driver_until_killed(&server_ns);
    }
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let mut child = Reaped(
        Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "sigkill_detaches_the_program", "--nocapture"])
            .env(HOLD_ENV, lab.veth.server_ns())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the holder"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "READY");
    assert!(ready, "the child opened a driver");
    assert!(
        matches!(lab.server_program(), Some((_, "native"))),
        "the child's program: {:?}",
        lab.server_program()
    );

    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reap");
    lab.wait_program_gone("SIGKILL", Duration::from_secs(20));
    let again = open_in(&lab, Filter::RedirectAll);
    assert_eq!(again.attach_mode(), AttachMode::Native);
}

/// The child's side of [`sigkill_detaches_the_program`]: opens a driver on veth-srv in
/// `server_ns`, says READY, and sleeps until killed (it gives up after 30 s, failing).
fn hold_a_driver_until_killed(server_ns: &str) -> ! {
    let driver = netns::in_namespace(server_ns, || AfXdp::open(AfXdpConfig::new(SERVER_IFACE)))
        .expect("enter the server namespace")
        .expect("open in the child");
    println!("READY");
    std::thread::sleep(Duration::from_secs(30));
    drop(driver);
    panic!("the holder of a driver was not killed within 30 s");
}
