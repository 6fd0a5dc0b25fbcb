//! Loss recovery, one mechanism per test, on the virtual clock: the real server and a smoltcp
//! client over the memory link (10 ms round trip), with chosen segments lost, delayed or
//! reordered by an [`Impaired`] port instead of at random.
//!
//! Each test runs the same transfer twice in one process, once clean and once impaired, and
//! asserts on *time*: the impaired transfer ends within a few round trips of the clean one,
//! far below the 200 ms minimum retransmission timeout, so no test passes by a timeout's
//! rescue. The wire log counts what was retransmitted; the server's counters say which
//! mechanism did it.

use std::collections::HashSet;
use std::time::Duration;

use sirocco_drivers::memory::MemoryPort;
use sirocco_tests::{TestTree, assert_all_ok};
use sirocco_tools::sim::{
    Fate, Impaired, Limits, Logged, Mode, Request, Script, SegmentView, SimConfig, SimReport,
    Simulation,
};

/// One-way latency of the link: a 10 ms round trip.
const LATENCY_US: u64 = 5_000;
const RTT_MS: u64 = 10;
/// The server's minimum RTO: what every bound below stays clear of.
const RTO_MIN_MS: u64 = 200;
const HTTP_PORT: u16 = 80;

type Rule = Box<dyn FnMut(&SegmentView) -> Fate>;

/// What a transfer did.
struct Run {
    report: SimReport,
    /// Virtual time when the response was complete, in milliseconds.
    done_ms: f64,
    /// What reached the client (the server's segments) and the server (the client's).
    to_client: Vec<Logged>,
    to_server: Vec<Logged>,
}

impl Run {
    /// Data segments from the server that were sent more than once, by the time they arrived.
    fn retransmissions(&self) -> Vec<&Logged> {
        self.to_client
            .iter()
            .filter(|l| l.segment.src_port == HTTP_PORT && l.segment.is_data())
            .filter(|l| l.segment.transmission > 1)
            .collect()
    }

    /// Sequence numbers (relative) of the server's data segments, in first-transmission order.
    fn data_segments(&self) -> Vec<u32> {
        self.to_client
            .iter()
            .filter(|l| l.segment.src_port == HTTP_PORT && l.segment.is_data())
            .filter(|l| l.segment.transmission == 1)
            .map(|l| l.segment.seq)
            .collect()
    }
}

/// Options of one transfer.
struct Setup {
    file_len: usize,
    /// What happens to the server's segments on their way to the client.
    to_client: Rule,
    /// What happens to the client's segments on their way to the server.
    to_server: Rule,
    /// Link rate (frames queue behind each other), bits per second; `None` is infinite.
    rate: Option<u64>,
    adjust: Box<dyn FnOnce(&mut SimConfig)>,
}

impl Setup {
    fn new(file_len: usize) -> Self {
        Setup {
            file_len,
            to_client: Box::new(|_| Fate::Deliver),
            to_server: Box::new(|_| Fate::Deliver),
            rate: None,
            adjust: Box::new(|_| {}),
        }
    }

    fn on_server_segments(mut self, rule: impl FnMut(&SegmentView) -> Fate + 'static) -> Self {
        self.to_client = Box::new(rule);
        self
    }

    fn on_client_segments(mut self, rule: impl FnMut(&SegmentView) -> Fate + 'static) -> Self {
        self.to_server = Box::new(rule);
        self
    }

    fn rate(mut self, bits_per_sec: u64) -> Self {
        self.rate = Some(bits_per_sec);
        self
    }

    fn adjust(mut self, f: impl FnOnce(&mut SimConfig) + 'static) -> Self {
        self.adjust = Box::new(f);
        self
    }

    fn run(self) -> Run {
        let tree = TestTree::with_sizes(&[self.file_len]);
        let url = format!("/size-{}.bin", self.file_len);
        let request = Request::get(&url, tree.body(&url));
        let script = Script::each(vec![request].into(), Mode::KeepAlive { pipeline: 1 });
        let mut config = SimConfig::new(42, 1);
        config.link.latency_us = LATENCY_US;
        config.link.rate_bits_per_sec = self.rate;
        (self.adjust)(&mut config);
        let mut rules = [Some(self.to_server), Some(self.to_client)].into_iter();
        let mut sim: Simulation<Impaired<MemoryPort>> =
            Simulation::over_memory_link(tree.cache(), config, vec![script], |port, clock| {
                let rule = rules.next().flatten().expect("two ports");
                Impaired::new(port, clock.clone(), rule)
            })
            .expect("build the simulation");
        let report = sim
            .run_until_done(Limits::secs(600))
            .unwrap_or_else(|e| panic!("the transfer did not finish: {e}"));
        assert_all_ok(&report, 1);
        Run {
            done_ms: report.virtual_micros as f64 / 1000.0,
            report,
            to_client: sim.fleet().driver().log().to_vec(),
            to_server: sim.server().driver().log().to_vec(),
        }
    }
}

/// A rule that loses the first transmission of the server's data segments whose index (in
/// first-transmission order, from 0) is in `indices`, and `extra` more transmissions of them.
fn lose_data_segments(
    indices: &[usize],
    transmissions: u32,
) -> impl FnMut(&SegmentView) -> Fate + use<> {
    let indices: HashSet<usize> = indices.iter().copied().collect();
    let mut seen = Vec::new();
    move |s| {
        if s.src_port != HTTP_PORT || !s.is_data() {
            return Fate::Deliver;
        }
        let index = match seen.iter().position(|&seq| seq == s.seq) {
            Some(index) => index,
            None => {
                seen.push(s.seq);
                seen.len() - 1
            }
        };
        if indices.contains(&index) && s.transmission <= transmissions {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }
}

/// The clean transfer of `len` bytes, for comparison.
fn clean(len: usize) -> Run {
    let run = Setup::new(len).run();
    assert!(
        run.retransmissions().is_empty(),
        "a clean link retransmits nothing"
    );
    run
}

/// No timeout, and no stall a timeout would leave: the impaired transfer ends less than one
/// minimum RTO after the clean one.
#[track_caller]
fn no_timeout(lossy: &Run, clean: &Run) {
    assert_eq!(
        lossy.report.server.stack.tcp_timeouts, 0,
        "an RTO fired: {}",
        lossy.report
    );
    let extra = lossy.done_ms - clean.done_ms;
    assert!(
        extra < RTO_MIN_MS as f64,
        "{extra:.1} ms later than the clean transfer ({:.1} ms): {}",
        clean.done_ms,
        lossy.report
    );
}

/// For each of the server's data segments lost on the wire: how long after the lost copy a
/// copy of its first octet got through, in milliseconds, by sequence number. (A retransmission
/// need not have the original's boundaries: a probe resends the last MSS of the stream.)
fn repair_delays(run: &Run) -> Vec<(u32, f64)> {
    let data = run
        .to_client
        .iter()
        .filter(|l| l.segment.src_port == HTTP_PORT && l.segment.is_data());
    let mut lost: Vec<(u32, u64)> = Vec::new();
    let mut repaired = Vec::new();
    for l in data {
        let (start, end) = (l.segment.seq, l.segment.seq + l.segment.len as u32);
        match l.fate {
            Fate::Drop if l.segment.transmission == 1 => lost.push((start, l.at_micros)),
            Fate::Drop => {}
            _ => {
                while let Some(i) = lost.iter().position(|&(s, _)| start <= s && s < end) {
                    let (seq, at) = lost.remove(i);
                    repaired.push((seq, (l.at_micros - at) as f64 / 1000.0));
                }
            }
        }
    }
    assert!(lost.is_empty(), "never repaired: {lost:?}");
    repaired
}

/// Every loss was repaired within `ms` of the lost copy.
#[track_caller]
fn repaired_within(run: &Run, count: usize, ms: f64) -> Vec<(u32, f64)> {
    let delays = repair_delays(run);
    assert_eq!(delays.len(), count, "{delays:?}");
    for &(seq, delay) in &delays {
        assert!(
            delay <= ms,
            "segment at {seq} repaired after {delay} ms (allowed {ms}): {delays:?}"
        );
    }
    delays
}

const FILE: usize = 200_000;
const RTT: f64 = RTT_MS as f64;

#[test]
fn one_loss_is_repaired_in_a_round_trip() {
    let clean = clean(FILE);
    let lossy = Setup::new(FILE)
        .on_server_segments(lose_data_segments(&[20], 1))
        .run();
    // The SACKs of the segments sent after it (at worst those of the next flight, when it
    // ends its own) show the hole; it goes again at once and arrives within two round trips.
    repaired_within(&lossy, 1, 2.0 * RTT + 1.0);
    no_timeout(&lossy, &clean);
    assert_eq!(lossy.retransmissions().len(), 1);
    assert_eq!(lossy.report.server.stack.tcp_fast_recoveries, 1);
}

#[test]
fn three_losses_in_one_window_are_repaired_together() {
    let clean = clean(FILE);
    let lossy = Setup::new(FILE)
        .on_server_segments(lose_data_segments(&[20, 23, 26], 1))
        .run();
    // All three as soon as the SACKs show them, not one per timeout.
    repaired_within(&lossy, 3, 2.0 * RTT + 1.0);
    no_timeout(&lossy, &clean);
    assert_eq!(lossy.retransmissions().len(), 3);
    assert_eq!(lossy.report.server.stack.tcp_fast_recoveries, 1);
}

#[test]
fn a_lost_tail_is_found_by_the_probe_not_a_timeout() {
    let clean = clean(FILE);
    let segments = clean.data_segments().len();
    let lossy = Setup::new(FILE)
        .on_server_segments(lose_data_segments(&[segments - 2, segments - 1], 1))
        .run();
    // No ACK follows a lost tail. The probe goes two smoothed RTTs and 2 ms after the last
    // ACK, resending the last segment; its SACK shows the other hole, which RACK resends at
    // once. Both well inside the 200 ms minimum RTO.
    let delays = repaired_within(&lossy, 2, 2.0 * RTT + 2.0 + 2.0 * RTT + 1.0);
    no_timeout(&lossy, &clean);
    let stack = &lossy.report.server.stack;
    assert_eq!(stack.tcp_loss_probes, 1, "{}", lossy.report);
    // The probe and the hole: two segments sent again, nothing more.
    assert_eq!(stack.tcp_retransmits, 2, "{delays:?}");

    // Without the probe, the same loss waits for the retransmission timeout.
    let without = Setup::new(FILE)
        .adjust(|config| config.server.stack.tcp.tail_loss_probe = false)
        .on_server_segments(lose_data_segments(&[segments - 2, segments - 1], 1))
        .run();
    assert_eq!(
        without.report.server.stack.tcp_timeouts, 1,
        "{}",
        without.report
    );
    assert!(without.done_ms >= clean.done_ms + RTO_MIN_MS as f64);
}

#[test]
fn a_lost_retransmission_is_sent_again_without_a_timeout() {
    // RACK finds a lost retransmission from data sent after it, so the send window holds more
    // than the window in flight when the first copy was lost. (With nothing new to send, the
    // retransmission probe of smoltcp patch 12 finds it instead; smoltcp's own
    // `test_buffer_limited_lost_retransmission_goes_again_without_a_timeout` covers that.)
    let big_buffer = |config: &mut SimConfig| config.server.http.send_window = 64 * 1024;
    let clean = Setup::new(FILE).adjust(big_buffer).run();
    let lossy = Setup::new(FILE)
        .adjust(big_buffer)
        .on_server_segments(lose_data_segments(&[20], 2))
        .run();
    // RACK sees data sent after the retransmission delivered, a round trip later.
    repaired_within(&lossy, 1, 3.0 * RTT + 2.0);
    no_timeout(&lossy, &clean);
    let again: Vec<u32> = lossy
        .retransmissions()
        .iter()
        .map(|l| l.segment.transmission)
        .collect();
    assert_eq!(again, [2, 3], "sent three times in all");

    // Counting duplicate ACKs instead (RACK off), only the timeout finds it.
    let without = Setup::new(FILE)
        .adjust(move |config| {
            big_buffer(config);
            config.server.stack.tcp.rack = false;
        })
        .on_server_segments(lose_data_segments(&[20], 2))
        .run();
    assert_eq!(
        without.report.server.stack.tcp_timeouts, 1,
        "{}",
        without.report
    );
}

#[test]
fn reordering_by_three_segments_costs_at_most_one_undone_retransmission() {
    // 100 Mbit/s: a 1514-byte frame takes 121 us. The 21st segment arrives after the next
    // three.
    let rate = 100_000_000;
    let frame_us = 1514 * 8 * 1_000_000 / rate;
    let clean = Setup::new(FILE).rate(rate).run();
    let mut seen = 0;
    let lossy = Setup::new(FILE)
        .rate(rate)
        .on_server_segments(move |s| {
            if s.src_port == HTTP_PORT && s.is_data() && s.transmission == 1 {
                seen += 1;
                if seen == 21 {
                    return Fate::Delay(Duration::from_micros(3 * frame_us + frame_us / 2));
                }
            }
            Fate::Deliver
        })
        .run();
    no_timeout(&lossy, &clean);
    let stack = &lossy.report.server.stack;
    assert!(lossy.retransmissions().len() <= 1, "{}", lossy.report);
    // A retransmission that was not needed is found out, and its window cut undone: the
    // transfer is no slower than the clean one.
    assert_eq!(
        stack.tcp_spurious_recoveries, stack.tcp_fast_recoveries,
        "{}",
        lossy.report
    );
    assert!(
        lossy.done_ms <= clean.done_ms + RTT,
        "{} vs {}",
        lossy.done_ms,
        clean.done_ms
    );
}

#[test]
fn lost_acks_cost_no_retransmission() {
    // A rate-limited link spaces the segments, so the client acknowledges every other one,
    // as Linux does; then every other ACK is lost. The cumulative ACKs that get through
    // cover what the lost ones said.
    let rate = 100_000_000;
    let clean = Setup::new(FILE).rate(rate).run();
    let mut n = 0;
    let lossy = Setup::new(FILE)
        .rate(rate)
        .on_client_segments(move |s| {
            if s.is_data() || s.syn || s.fin {
                return Fate::Deliver;
            }
            n += 1;
            if n % 2 == 0 {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        })
        .run();
    assert!(lossy.retransmissions().is_empty(), "{}", lossy.report);
    no_timeout(&lossy, &clean);
    let dropped = lossy
        .to_server
        .iter()
        .filter(|l| l.fate == Fate::Drop)
        .count();
    assert!(dropped > 20, "only {dropped} ACKs were lost");
    // Fewer ACKs grow the window more slowly, but the transfer stays within a few round
    // trips of the clean one.
    assert!(
        lossy.done_ms <= clean.done_ms + 5.0 * RTT,
        "{} vs {}",
        lossy.done_ms,
        clean.done_ms
    );
}

#[test]
fn a_peer_without_sack_gets_newreno() {
    let no_sack = |config: &mut SimConfig| config.fleet.sack = false;
    let clean = Setup::new(FILE).adjust(no_sack).run();
    let lossy = Setup::new(FILE)
        .adjust(no_sack)
        .on_server_segments(lose_data_segments(&[20, 24], 1))
        .run();
    // Three duplicate ACKs resend the first hole; the partial ACK that answers it, the
    // second, a round trip later.
    repaired_within(&lossy, 2, 2.5 * RTT + 2.0);
    no_timeout(&lossy, &clean);
    assert_eq!(lossy.retransmissions().len(), 2);
    assert_eq!(lossy.report.server.stack.tcp_fast_recoveries, 1);
    // Neither side spoke SACK.
    assert!(!lossy.to_server.iter().any(|l| l.segment.sack));
    assert!(!lossy.to_client.iter().any(|l| l.segment.sack));
}

#[test]
fn a_peer_opening_its_window_ten_bytes_at_a_time_gets_no_tiny_segments() {
    // A client with a 4 KiB receive buffer that reads (and so reopens its window) ten bytes
    // at a time, 100 KB/s.
    let slow = |config: &mut SimConfig| {
        config.fleet.rx_buffer = 4096;
        config.fleet.read_rate_bytes_per_sec = Some(100_000);
        config.fleet.read_quantum = 10;
    };
    let len = 64 * 1024;
    let run = Setup::new(len).adjust(slow).run();
    let data: Vec<&Logged> = run
        .to_client
        .iter()
        .filter(|l| l.segment.src_port == HTTP_PORT && l.segment.is_data())
        .collect();
    let last_seq = data.iter().map(|l| l.segment.seq).max().unwrap();
    // RFC 9293 §3.8.6.2.1: a full segment, or at least half the largest window (2 KiB), or
    // the rest of the response; nothing below 536 bytes but the very end.
    let tiny: Vec<usize> = data
        .iter()
        .filter(|l| l.segment.seq != last_seq && l.segment.len < 536)
        .map(|l| l.segment.len)
        .collect();
    assert!(tiny.is_empty(), "{} tiny segments: {tiny:?}", tiny.len());
    // The window did open by tens: the client advertised windows that are not multiples of
    // a segment.
    let small_windows = run
        .to_server
        .iter()
        .filter(|l| l.segment.window > 0 && l.segment.window < 1460)
        .count();
    assert!(
        small_windows > 0,
        "the client never advertised a small window"
    );
}
