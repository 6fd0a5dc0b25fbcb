//! The AF_XDP backend against the real kernel, over a veth pair between two network
//! namespaces that each test creates (unique names) and deletes, even when it fails.
//!
//! - The client namespace holds one veth end with 198.18.0.1/24; `ping` runs there.
//! - The server namespace holds the other end; this test thread enters it (`setns` affects
//!   only the calling thread) to open the driver, and answers ARP and ICMP echo for
//!   198.18.0.2 by hand through `rx_burst` / `tx_stage` / `tx_flush`.
//!
//! Needs root. Without it the tests print NOT RUN and pass, unless `SIROCCO_REQUIRE_LAB=1`.
//! Only 198.18.0.0/15 addresses are used.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sirocco_drivers::FrameIo;
use sirocco_drivers::afxdp::{AfXdp, AfXdpConfig, AttachMode, CopyMode, Filter};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const SERVER_MAC: [u8; 6] = [0x02, 0x5e, 0x00, 0x00, 0x00, 0x02];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn lab_required() -> bool {
    std::env::var("SIROCCO_REQUIRE_LAB").is_ok_and(|v| v == "1")
}

/// `true` (after a NOT RUN notice) if the lab cannot run here; panics instead when the lab is
/// required.
fn lab_unavailable() -> bool {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        ["ip", "ping"]
            .into_iter()
            .find(|tool| !have(tool))
            .map(|tool| format!("{tool} is not installed"))
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

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces joined by a veth pair: `server_dev` in `server`, `client_dev` (198.18.0.1/24)
/// in `client`. Dropping it deletes both namespaces, and the veth pair with them.
struct Lab {
    server: Netns,
    client: Netns,
    server_dev: String,
}

impl Lab {
    fn new() -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}x{n}", std::process::id() % 1_000_000);
        let server = Netns(format!("sirocco-xdp-s{id}"));
        run("ip", &["netns", "add", &server.0]);
        let client = Netns(format!("sirocco-xdp-c{id}"));
        run("ip", &["netns", "add", &client.0]);
        let server_dev = format!("sxs{id}");
        let client_dev = format!("sxc{id}");
        let (s, c) = (server.0.as_str(), client.0.as_str());
        let (sd, cd) = (server_dev.as_str(), client_dev.as_str());
        run(
            "ip",
            &[
                "-n", s, "link", "add", sd, "type", "veth", "peer", "name", cd, "netns", c,
            ],
        );
        run(
            "ip",
            &["-n", s, "link", "set", sd, "address", "02:5e:00:00:00:02"],
        );
        run("ip", &["-n", c, "addr", "add", "198.18.0.1/24", "dev", cd]);
        for (ns, dev) in [(s, sd), (c, cd)] {
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // The client must send complete checksums (DESIGN.md, the lab). Only ICMP crosses this
        // link, whose checksum the kernel always completes, so the test runs without ethtool
        // too.
        if have("ethtool") {
            run(
                "ip",
                &["netns", "exec", c, "ethtool", "-K", cd, "tx", "off"],
            );
        } else {
            eprintln!("notice: ethtool missing; client TX checksum offload left on (ICMP only)");
        }
        Lab {
            server,
            client,
            server_dev,
        }
    }

    /// Enters the server namespace on this thread until the guard drops.
    fn enter_server(&self) -> InNetns {
        InNetns::enter(&self.server.0)
    }

    fn ping(&self, target: Ipv4Addr, count: u32) -> Reaped {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client.0,
                "ping",
                "-n",
                "-q",
                "-i",
                "0.2",
                "-W",
                "1",
            ])
            .args(["-c", &count.to_string(), &target.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        Reaped(child)
    }

    /// `ip link show` of the server end once it shows no XDP program, or after `limit`.
    ///
    /// The detach is not always instant in this test binary: a parallel test that spawns a
    /// process holds a copy of every descriptor (the link's too) between its fork and exec.
    fn program_gone_within(&self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let link = self.server_link();
            if !link.contains("prog/xdp") || Instant::now() > deadline {
                return link;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn server_link(&self) -> String {
        let out = run(
            "ip",
            &[
                "-n",
                &self.server.0,
                "link",
                "show",
                "dev",
                &self.server_dev,
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// This thread's network namespace switched to a named one; switched back on drop.
struct InNetns {
    original: File,
}

impl InNetns {
    fn enter(name: &str) -> InNetns {
        let original = File::open("/proc/thread-self/ns/net").expect("open own netns");
        let target = File::open(format!("/var/run/netns/{name}")).expect("open netns");
        // SAFETY: `target` is an open namespace descriptor; `setns` changes only this thread.
        let res = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(res, 0, "setns: {}", std::io::Error::last_os_error());
        InNetns { original }
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        // SAFETY: as in `enter`, with the descriptor of the namespace we came from.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
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

fn small_config(lab: &Lab) -> AfXdpConfig {
    AfXdpConfig {
        ring_size: 256,
        frame_count: 512,
        ..AfXdpConfig::new(lab.server_dev.clone())
    }
}

fn open_in(lab: &Lab, filter: Filter) -> AfXdp {
    open_with(
        lab,
        AfXdpConfig {
            filter,
            ..small_config(lab)
        },
    )
}

fn open_with(lab: &Lab, config: AfXdpConfig) -> AfXdp {
    let _inside = lab.enter_server();
    AfXdp::open(config).expect("open AF_XDP on the server veth")
}

/// Frames the client end of the veth has received (its `rx_packets` counter).
fn client_rx_packets(lab: &Lab) -> u64 {
    let dev = lab.server_dev.replacen("sxs", "sxc", 1);
    let path = format!("/sys/class/net/{dev}/statistics/rx_packets");
    let out = run("ip", &["netns", "exec", &lab.client.0, "cat", &path]);
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
    Other,
}

fn classify(frame: &[u8]) -> Seen {
    match frame.get(12..14) {
        Some([0x08, 0x06]) if frame.len() >= 42 => {
            Seen::ArpFor(Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]))
        }
        Some([0x08, 0x00]) if frame.len() >= 34 => {
            Seen::Ipv4To(Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]))
        }
        _ => Seen::Other,
    }
}

/// The reply the server owes for `frame`, if any: an ARP reply for a who-has SERVER_IP, or an
/// echo reply for an echo request to SERVER_IP.
fn reply_to(frame: &[u8]) -> Option<Vec<u8>> {
    if classify(frame) == Seen::ArpFor(SERVER_IP) && frame[20..22] == [0, 1] {
        let (peer_mac, peer_ip) = (&frame[22..28], &frame[28..32]);
        let mut f = Vec::with_capacity(42);
        f.extend_from_slice(peer_mac);
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&SERVER_IP.octets());
        f.extend_from_slice(peer_mac);
        f.extend_from_slice(peer_ip);
        return Some(f);
    }
    if classify(frame) != Seen::Ipv4To(SERVER_IP) || frame[..6] != SERVER_MAC {
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
    f[6..12].copy_from_slice(&SERVER_MAC);
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
fn serve(driver: &mut AfXdp, pings: &mut [Reaped], limit: Duration) -> (Vec<bool>, Vec<Seen>) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut results: Vec<Option<bool>> = vec![None; pings.len()];
    while results.iter().any(Option::is_none) && Instant::now() < deadline {
        driver.wait_rx(Duration::from_millis(20)).unwrap();
        let mut replies = Vec::new();
        driver
            .rx_burst(64, &mut |frame| {
                seen.push(classify(frame));
                replies.extend(reply_to(frame));
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
    // veth has native XDP and no zero-copy (DESIGN.md): Auto must pick native + copy.
    assert_eq!(driver.attach_mode(), AttachMode::Native);
    assert!(!driver.zero_copy());
    assert_eq!(driver.mode_description(), "native XDP, copy mode, queue 0");
    let caps = driver.capabilities();
    assert_eq!((caps.mtu, caps.max_frame_len), (1500, 1514));
    assert!(!caps.zero_copy && !caps.tx_checksum_offload);
    let link = lab.server_link();
    assert!(
        link.contains("prog/xdp") && !link.contains("xdpgeneric"),
        "{link}"
    );

    let mut pings = [lab.ping(SERVER_IP, 3)];
    let (ok, seen) = serve(&mut driver, &mut pings, Duration::from_secs(10));
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
    run(
        "ip",
        &[
            "-n",
            &lab.server.0,
            "addr",
            "add",
            "198.18.0.3/24",
            "dev",
            &lab.server_dev,
        ],
    );
    let mut driver = open_in(&lab, Filter::ServerIpv4(SERVER_IP));

    let mut pings = [lab.ping(KERNEL_IP, 3), lab.ping(SERVER_IP, 3)];
    let (ok, seen) = serve(&mut driver, &mut pings, Duration::from_secs(10));
    assert_eq!(
        ok,
        [true, true],
        "the kernel answers .3 and we answer .2; saw {seen:?}"
    );
    assert!(seen.contains(&Seen::ArpFor(SERVER_IP)));
    assert!(seen.contains(&Seen::Ipv4To(SERVER_IP)));
    assert!(
        seen.iter()
            .all(|s| matches!(s, Seen::ArpFor(SERVER_IP) | Seen::Ipv4To(SERVER_IP))),
        "only traffic for 198.18.0.2 reaches the driver; saw {seen:?}"
    );
    assert_eq!(CLIENT_IP.octets()[3], 1);
}

#[test]
fn dropping_the_driver_detaches_the_program_and_frees_the_queue() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let driver = open_in(&lab, Filter::RedirectAll);
    assert!(lab.server_link().contains("prog/xdp"));

    // A second driver on the same interface is refused with a message that says what to do.
    let second = {
        let _inside = lab.enter_server();
        AfXdp::open(AfXdpConfig::new(lab.server_dev.clone()))
    };
    let message = second.expect_err("the interface is taken").to_string();
    assert!(
        message.contains("already attached") && message.contains("xdp off"),
        "{message}"
    );

    drop(driver);
    let link = lab.program_gone_within(Duration::from_secs(2));
    assert!(
        !link.contains("prog/xdp"),
        "no XDP program left after drop: {link}"
    );

    let started = Instant::now();
    let again = open_in(&lab, Filter::RedirectAll);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(again.attach_mode(), AttachMode::Native);
}

#[test]
fn a_missing_interface_lists_the_real_ones() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let _inside = lab.enter_server();
    let err = AfXdp::open(AfXdpConfig::new("sirocco-nope0")).expect_err("no such interface");
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
        ..small_config(&lab)
    };
    let mut driver = open_with(&lab, config);
    assert_eq!(
        driver.mode_description(),
        "SKB (generic) XDP, copy mode, queue 0, need-wakeup"
    );
    let link = lab.server_link();
    assert!(
        link.contains(" xdpgeneric ") && link.contains("prog/xdp"),
        "{link}"
    );
    let mut pings = [lab.ping(SERVER_IP, 2)];
    let (ok, seen) = serve(&mut driver, &mut pings, Duration::from_secs(10));
    assert_eq!(ok, [true], "saw {seen:?}");
}

#[test]
fn unsupported_modes_say_what_to_do() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let open = |config: AfXdpConfig| {
        let _inside = lab.enter_server();
        AfXdp::open(config).map(|d| d.mode_description())
    };
    // veth has no zero-copy.
    let forced = AfXdpConfig {
        copy: CopyMode::ZeroCopy,
        ..small_config(&lab)
    };
    let message = open(forced).expect_err("no zero-copy on veth").to_string();
    assert!(message.contains("does not support zero-copy"), "{message}");

    // Native XDP on veth caps the MTU at 3506.
    for (ns, dev) in [
        (&lab.server.0, lab.server_dev.clone()),
        (&lab.client.0, lab.server_dev.replacen("sxs", "sxc", 1)),
    ] {
        run("ip", &["-n", ns, "link", "set", "dev", &dev, "mtu", "4000"]);
    }
    let native = AfXdpConfig {
        mode: AttachMode::Native,
        ..small_config(&lab)
    };
    let message = open(native)
        .expect_err("MTU too big for native")
        .to_string();
    assert!(
        message.contains("3506") && message.contains("mtu"),
        "{message}"
    );
    // Auto falls back to SKB and says why.
    let description = open(small_config(&lab)).expect("auto falls back to SKB");
    assert!(
        description
            .starts_with("SKB (generic) XDP, copy mode, queue 0 (native XDP refused: MTU 4000"),
        "{description}"
    );
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
        ..small_config(&lab)
    };
    let mut driver = open_with(&lab, config);
    assert_eq!(driver.tx_room(), 1024);
    // Frames of an unassigned local EtherType: the client counts and drops them.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&SERVER_MAC);
    frame.extend_from_slice(&[0x88, 0xb5]);
    frame.resize(60, 0x5a);
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

const HOLD_ENV: &str = "SIROCCO_AFXDP_HOLD";

/// Not a test on its own: `sigkill_detaches_the_program` runs this in a child process, which
/// opens a driver, says READY and waits to be killed. Without the variable it does nothing.
#[test]
fn child_holds_a_driver_until_killed() {
    let Ok(spec) = std::env::var(HOLD_ENV) else {
        return;
    };
    let (ns, dev) = spec.split_once(' ').expect("namespace and device");
    let _inside = InNetns::enter(ns);
    let _driver = AfXdp::open(AfXdpConfig::new(dev)).expect("open in the child");
    println!("READY");
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn sigkill_detaches_the_program() {
    if lab_unavailable() {
        return;
    }
    let lab = Lab::new();
    let mut child = Reaped(
        Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_holds_a_driver_until_killed",
                "--nocapture",
            ])
            .env(HOLD_ENV, format!("{} {}", lab.server.0, lab.server_dev))
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
    assert!(lab.server_link().contains("prog/xdp"));

    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reap");
    let link = lab.program_gone_within(Duration::from_secs(2));
    assert!(!link.contains("prog/xdp"), "SIGKILL left a program: {link}");
    let again = open_in(&lab, Filter::RedirectAll);
    assert_eq!(again.attach_mode(), AttachMode::Native);
}
