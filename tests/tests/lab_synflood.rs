//! SYN floods in the veth lab: the real `sirocco` over AF_XDP (default settings: 10,000
//! connection cells), real `hping3 --flood -S` from the client namespace, real curl.
//!
//! Each test floods port 80 for [`FLOOD_SECS`] while curl fetches a 512-byte file over and over
//! (a new connection each time) from the client's own address. It then asserts that at least
//! 95% of those fetches succeeded during the flood, that [`AFTER_FETCHES`] fetches right after
//! it all succeed, and that the 4 MiB file then arrives byte-exact. Half-open connections must
//! not take connection cells (a SYN cache, and SYN cookies when it is full), or else the flood
//! fills the pool within a second and every legitimate SYN gets an RST.
//!
//! The floods:
//! - from one source: `hping3 --flood -S -p 80 -a 198.18.0.100`, one attacker address that is
//!   not the legitimate client's (so that a per-address limit does not count the client's own
//!   connections against it) and that nobody answers from: the server's SYN-ACKs to it go
//!   unanswered, as a real attacker's would;
//! - from random spoofed sources: `hping3 --flood -S -p 80 --rand-source`, every address of
//!   IPv4 at random. The frames need only reach sirocco's NIC: the client kernel routes them by
//!   destination, and the XDP program redirects everything for 198.18.0.2 to sirocco, which
//!   drops the few broadcast and multicast sources (`drop_ipv4_bad_source`) and sends its
//!   answers to the client's MAC, where the kernel drops them (not its address).
//!
//! Every figure is printed for quoting: fetches OK/total during and after, the SYNs hping3
//! sent, and sirocco's stats-line counters before and after. Before the behaviour is asserted,
//! the run is checked to be a real flood: hping3 sent, and sirocco received, more SYN frames
//! than there are cells.
//!
//! Needs root, hping3, curl and timeout (`tools/test` installs them). The two floods take
//! turns; each test takes about half a minute, bounded: hping3 by `timeout` (and killed with
//! its process group if the test fails), each curl by `--max-time`.

mod attack_lab;

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use attack_lab::{Tally, attack_counters, fetch, next_stats, start_server, stat};
use sirocco::lab::SERVER_ADDR;
use sirocco::lab::veth::VethLab;
use sirocco_tests::lab::{ChildGuard, Collected, collect, lab_available, snapshot};
use sirocco_tests::{BIG_FILE_URL, TestTree};

/// How long hping3 floods.
const FLOOD_SECS: u64 = 10;
/// sirocco's default `--max-connections`: a flood of more SYNs than this fills a pool that
/// half-open connections take cells from.
const CELLS: u64 = 10_000;
/// Fetches made right after the flood; every one must succeed.
const AFTER_FETCHES: u64 = 20;
/// A legitimate fetch is started at most this often during the flood.
const FETCH_PACE: Duration = Duration::from_millis(50);
/// Bound on each small fetch: room for a SYN retransmitted after 1 and 3 s.
const FETCH_MAX_SECS: u32 = 8;
/// The attacker's address for the one-source flood: in the lab's subnet, not assigned.
const ATTACKER: &str = "198.18.0.100";
const SMALL_URL: &str = "/file-512.bin";

/// The floods take turns: two at once would share the two cores of a CI machine.
static FLOODS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    FLOODS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// hping3 flooding from the client namespace, in a process group of its own so that it can be
/// killed whatever happens to the test (it does not die with `timeout` on SIGKILL).
struct Flood {
    child: ChildGuard,
    stdout: Collected,
    stderr: Collected,
    started: Instant,
}

impl Flood {
    fn start(lab: &VethLab, source: &[&str]) -> Flood {
        let secs = FLOOD_SECS.to_string();
        let mut command = lab.client_command("timeout");
        // SIGINT makes hping3 print how many packets it sent; -k: SIGKILL 3 s later.
        command
            .args([
                "-s", "INT", "-k", "3", &secs, "hping3", "--flood", "-S", "-p", "80",
            ])
            .args(source)
            .arg(SERVER_ADDR.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().expect("start hping3");
        let (stdout, _) = collect(child.stdout.take().expect("piped stdout"));
        let (stderr, _) = collect(child.stderr.take().expect("piped stderr"));
        Flood {
            child: ChildGuard(child),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    fn output(&self) -> String {
        format!("{}{}", snapshot(&self.stdout), snapshot(&self.stderr))
    }

    /// Waits for hping3 to end (it must, `timeout` stops it); its exit status and the SYNs it
    /// says it sent.
    fn finish(&mut self) -> (ExitStatus, Option<u64>) {
        let deadline = self.started + Duration::from_secs(FLOOD_SECS + 10);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("poll hping3") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "hping3 still running 10 s after `timeout` should have stopped it: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Give the reader threads a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        // "237265 packets transmitted, 0 packets received, 100% packet loss"
        let sent = self.output().lines().find_map(|line| {
            line.split_once(" packets transmitted")
                .and_then(|(n, _)| n.trim().parse().ok())
        });
        (status, sent)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        // The whole group: timeout and hping3 (ip netns exec became timeout).
        let group = format!("-{}", self.child.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The whole test for one flood; `what` names it in the output, `source` is hping3's source
/// option.
fn flood_while_fetching(tag: &str, what: &str, source: &[&str]) {
    if !lab_available(tag, &["hping3", "curl", "timeout"]) {
        return;
    }
    let _turn = one_at_a_time();
    let begun = Instant::now();
    let tree = TestTree::standard();
    let small = tree.body(SMALL_URL);
    let big = tree.body(BIG_FILE_URL);
    let lab = VethLab::create_unique(tag).expect("create the veth lab");
    let mut server = start_server(&lab, tree.path(), &[]);
    if let Err(e) = fetch(&lab, SMALL_URL, &small, FETCH_MAX_SECS) {
        panic!("before any flood, curl {SMALL_URL} failed: {e}");
    }
    let stats_before = next_stats(&mut server);

    let mut flood = Flood::start(&lab, source);
    // The fetches below count as "during the flood" only once it reaches the server: wait for
    // a stats line that shows at least a thousand frames more than before it began.
    let rx_before = stat(&stats_before, "rx").unwrap_or(0);
    let mut reached = false;
    for _ in 0..5 {
        if stat(&next_stats(&mut server), "rx").is_some_and(|rx| rx >= rx_before + 1000) {
            reached = true;
            break;
        }
    }
    assert!(
        reached,
        "the flood did not reach the server within 5 stats lines: {}",
        flood.output()
    );
    let mut during = Tally::default();
    while flood.running() {
        let started = Instant::now();
        during.record(fetch(&lab, SMALL_URL, &small, FETCH_MAX_SECS));
        if let Some(rest) = FETCH_PACE.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let (hping_status, syns_sent) = flood.finish();
    let flood_secs = flood.started.elapsed().as_secs_f64();

    // Right after: every fetch must succeed (stop at the third failure: the verdict is in).
    let mut after = Tally::default();
    for _ in 0..AFTER_FETCHES {
        after.record(fetch(&lab, SMALL_URL, &small, FETCH_MAX_SECS));
        if after.failed() >= 3 {
            break;
        }
    }
    let big_result = fetch(&lab, BIG_FILE_URL, &big, 30);
    let stats_after = next_stats(&mut server);
    let stopped = server.stop();

    let rx_delta = stat(&stats_after, "rx")
        .unwrap_or(0)
        .saturating_sub(stat(&stats_before, "rx").unwrap_or(0));
    let sent = syns_sent.unwrap_or(0);
    println!("== SYN flood {what}: hping3 {source:?} for {FLOOD_SECS} s against {SERVER_ADDR}:80");
    println!(
        "hping3 ({hping_status}): {} SYNs sent in {flood_secs:.1} s ({:.0}/s); sirocco received {rx_delta} frames meanwhile",
        syns_sent.map_or("?".to_string(), |n| n.to_string()),
        sent as f64 / flood_secs.max(0.001)
    );
    println!(
        "legitimate fetches of {SMALL_URL} during the flood: {} ({:.1}%)",
        during.summary(),
        percent(during.ok, during.total)
    );
    println!(
        "legitimate fetches right after the flood: {}",
        after.summary()
    );
    println!(
        "{BIG_FILE_URL} after the flood: {}",
        match &big_result {
            Ok(()) => "byte-exact".to_string(),
            Err(e) => format!("FAILED: {e}"),
        }
    );
    println!("stats before the flood: {stats_before}");
    println!("stats after the flood:  {stats_after}");
    println!("counters before: {}", attack_counters(&stats_before));
    println!("counters after:  {}", attack_counters(&stats_after));
    println!("test time: {:.1} s", begun.elapsed().as_secs_f64());

    // First, that this was a flood at all: otherwise the verdict below would mean nothing.
    assert!(
        sent > CELLS,
        "hping3 sent only {sent} SYNs (no more than sirocco's {CELLS} cells): the flood did not run as planned, a test problem, not the server's: {}",
        flood.output()
    );
    assert!(
        rx_delta > CELLS,
        "sirocco received only {rx_delta} frames during a flood of {sent} SYNs (no more than its {CELLS} cells): the flood did not reach the server, a test problem, not the server's.\nbefore: {stats_before}\nafter: {stats_after}"
    );

    let mut failures = Vec::new();
    if percent(during.ok, during.total) < 95.0 || during.total == 0 {
        failures.push(format!(
            "only {} of {} legitimate fetches succeeded during the flood ({:.1}%, at least 95% required): {}",
            during.ok,
            during.total,
            percent(during.ok, during.total),
            during.summary()
        ));
    }
    if after.ok != AFTER_FETCHES {
        failures.push(format!(
            "right after the flood, not every fetch succeeded: {}",
            after.summary()
        ));
    }
    if let Err(e) = &big_result {
        failures.push(format!("{BIG_FILE_URL} after the flood: {e}"));
    }
    if !stopped.status.success() {
        failures.push(format!(
            "sirocco exited with {} on SIGTERM: {}",
            stopped.status, stopped.stderr
        ));
    }
    assert!(
        failures.is_empty(),
        "SYN flood {what}: {}\nstats after the flood: {stats_after}",
        failures.join("\n")
    );
}

#[test]
fn a_syn_flood_from_one_source_leaves_legitimate_clients_served() {
    flood_while_fetching("sflood1", "from one source", &["-a", ATTACKER]);
}

#[test]
fn a_syn_flood_from_random_spoofed_sources_leaves_legitimate_clients_served() {
    flood_while_fetching("sflood2", "from random sources", &["--rand-source"]);
}
