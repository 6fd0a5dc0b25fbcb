//! Trace replay against sirocco in process, on the virtual clock: the committed fixtures
//! (real clients talking to real nginx, tests/data/traces/README.md) must get the same statuses
//! and the same bodies from sirocco; a fixed seed must give a server-TX capture byte-identical
//! to the golden file; the hostile trace's valid flows must still be answered byte for byte
//! while its junk is counted; and a trace recorded from sirocco itself must replay cleanly.
//!
//! `SIROCCO_BLESS=1` (what `tools/record-traces --bless` sets) rewrites the golden captures
//! and the hostile trace instead of comparing them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use sirocco::cache::ContentCache;
use sirocco_drivers::capture::CaptureDirection;
use sirocco_drivers::pcap::PcapSource;
use sirocco_tools::replay::{
    FlowOutcome, InProcessOptions, ReplayOptions, Report, Trace, hostile, replay_in_process, wire,
};
use sirocco_tools::sim::SIM_UNIX_TIME;

/// Every fixture, with the number of HTTP exchanges its client made.
const FIXTURES: [(&str, usize); 7] = [
    ("curl-sizes", 9),
    // The same curl commands against nginx over IPv6: replayed over IPv6, against a server
    // with only the simulation's IPv6 address.
    ("curl-sizes-ipv6", 9),
    ("wget-mirror", 12),
    ("ab-keepalive", 24),
    ("python-pipelining", 4),
    ("chromium-index", 4),
    ("client-abort", 1),
];

/// The fixtures whose server-TX capture is pinned by a golden file.
const GOLDEN: [&str; 3] = ["python-pipelining", "chromium-index", "curl-sizes-ipv6"];

/// The fixture the hostile trace is derived from, and the generator's seed.
const HOSTILE_SOURCE: &str = "curl-sizes";
const HOSTILE_SEED: u64 = 0x0bad_f00d;

const SEED: u64 = 7;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn trace_path(name: &str) -> PathBuf {
    data().join("traces").join(format!("{name}.pcap"))
}

/// tests/data/www, copied with every file's mtime set to the simulation's clock
/// ([`SIM_UNIX_TIME`]): `Last-Modified` comes from the mtime, which a checkout does not keep,
/// and the golden captures hold it.
fn cache() -> Arc<ContentCache> {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let root = tempdir("www");
        copy_tree(&data().join("www"), &root);
        root
    });
    Arc::new(ContentCache::load(root).expect("load the copy of tests/data/www"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory of the copy");
    let mtime = UNIX_EPOCH + Duration::from_secs(SIM_UNIX_TIME);
    for entry in std::fs::read_dir(from).expect("read tests/data/www") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
            let file = std::fs::File::options().write(true).open(&target).unwrap();
            file.set_modified(mtime).expect("set the mtime");
        }
    }
}

fn blessing() -> bool {
    std::env::var_os("SIROCCO_BLESS").is_some_and(|v| v == "1")
}

fn replay(trace: &Trace, capture: Option<(PathBuf, CaptureDirection)>) -> Report {
    let options = InProcessOptions {
        seed: SEED,
        capture,
        ..InProcessOptions::default()
    };
    replay_in_process(trace, cache(), ReplayOptions::default(), &options)
        .unwrap_or_else(|e| panic!("replay of {} could not run: {e}", trace.label))
}

/// Every status equal, every body equal (or an equal prefix where the trace's client cut the
/// response short), no flow stalled or skipped.
fn assert_matches_trace(report: &Report, exchanges: usize) {
    assert!(report.is_ok(), "{report}");
    for flow in &report.flows {
        assert!(
            matches!(
                flow.outcome,
                FlowOutcome::Complete | FlowOutcome::ResetByTarget
            ),
            "flow {} ended {}: {report}",
            flow.index + 1,
            flow.outcome
        );
    }
    assert_eq!(report.exchanges().count(), exchanges, "{report}");
    for e in report.exchanges() {
        assert!(e.traced_status.is_some(), "{report}");
        assert_eq!(e.target_status, e.traced_status, "{report}");
        let cut_short = e
            .notes
            .iter()
            .any(|n| n.contains("cut short by the client"));
        if e.traced_status.is_some_and(|s| s < 400) && !cut_short {
            assert_eq!(e.target_body_len, e.traced_body_len, "{report}");
        }
    }
}

#[test]
fn every_fixture_replays_with_nginx_statuses_and_bodies() {
    for (name, exchanges) in FIXTURES {
        let path = trace_path(name);
        let size = std::fs::metadata(&path).expect("fixture present").len();
        assert!(
            size < 1 << 20,
            "{name}.pcap is {size} bytes; fixtures stay under 1 MiB"
        );
        let trace = Trace::open(&path, 80).expect("fixture parses");
        let report = replay(&trace, None);
        assert_matches_trace(&report, exchanges);
        assert_eq!(report.counters.junk_sent, 0, "{report}");
        assert_eq!(report.target_counter("parse_errors"), 0, "{report}");
    }
}

#[test]
fn the_ipv6_fixture_is_replayed_over_ipv6() {
    let trace = Trace::open(&trace_path("curl-sizes-ipv6"), 80).unwrap();
    let v4 = Trace::open(&trace_path("curl-sizes"), 80).unwrap();
    assert_eq!(trace.flows.len(), v4.flows.len());
    // The recording's neighbor discovery is link housekeeping, not junk to send.
    assert!(trace.junk.is_empty(), "{} junk frames", trace.junk.len());
    let dir = tempdir("ipv6");
    let out = dir.join("both.pcap");
    let report = replay(&trace, Some((out.clone(), CaptureDirection::Both)));
    assert_matches_trace(&report, 9);
    for flow in &report.flows {
        assert!(flow.traced_server.0.is_ipv6(), "{report}");
    }
    // Every TCP segment either way was IPv6: none parses as IPv4.
    let frames = PcapSource::open(&out).unwrap();
    let tcp: Vec<_> = frames
        .frames()
        .filter_map(|(_, f)| wire::TcpSegment::parse(f))
        .collect();
    assert!(
        tcp.len() as u64 >= report.counters.segments_sent,
        "{report}"
    );
    assert!(tcp.iter().all(|s| s.src_ip.is_ipv6() && s.dst_ip.is_ipv6()));
    // The same bodies as over IPv4, byte for byte.
    let over_v4 = replay(&v4, None);
    let bodies = |r: &Report| -> Vec<_> { r.exchanges().map(|e| e.target_body_len).collect() };
    assert_eq!(bodies(&report), bodies(&over_v4));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_client_abort_fixture_is_compared_up_to_where_the_client_left() {
    let trace = Trace::open(&trace_path("client-abort"), 80).unwrap();
    let report = replay(&trace, None);
    let exchange = report.exchanges().next().expect("one exchange");
    assert!(
        exchange
            .notes
            .iter()
            .any(|n| n.contains("cut short by the client")),
        "{report}"
    );
    assert!(exchange.traced_body_len.unwrap() < 200_000, "{report}");
}

#[test]
fn golden_server_captures_are_byte_identical() {
    let dir = tempdir("golden");
    for name in GOLDEN {
        let trace = Trace::open(&trace_path(name), 80).unwrap();
        let out = dir.join(format!("{name}.server.pcap"));
        let report = replay(&trace, Some((out.clone(), CaptureDirection::Tx)));
        assert!(report.is_ok(), "{report}");
        let produced = std::fs::read(&out).expect("capture written");
        let golden_path = data().join("golden").join(format!("{name}.server.pcap"));
        if blessing() {
            std::fs::write(&golden_path, &produced).expect("write golden file");
            eprintln!("blessed {}", golden_path.display());
            continue;
        }
        let golden = std::fs::read(&golden_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; create it with tools/record-traces --bless",
                golden_path.display()
            )
        });
        if produced != golden {
            let at = produced
                .iter()
                .zip(&golden)
                .position(|(a, b)| a != b)
                .unwrap_or(produced.len().min(golden.len()));
            panic!(
                "{name}: the server's frames differ from {} from byte {at} \
                 ({} bytes produced, {} golden); if the change is intended, run \
                 tools/record-traces --bless",
                golden_path.display(),
                produced.len(),
                golden.len()
            );
        }
        // Readable by the pcap reader, with the server's frames only.
        let frames = PcapSource::open(&out).unwrap();
        assert_eq!(frames.len() as u64, report.target_counter("tx_frames"));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_hostile_trace_is_answered_byte_exact_and_its_junk_counted() {
    let path = trace_path("hostile");
    let source = PcapSource::open(trace_path(HOSTILE_SOURCE)).unwrap();
    let frames = hostile::hostile_frames(&source, 80, HOSTILE_SEED);
    if blessing() {
        hostile::write_pcap(&path, &frames).expect("write the hostile trace");
        eprintln!("blessed {}", path.display());
    }
    let dir = tempdir("hostile");
    let regenerated = dir.join("hostile.pcap");
    hostile::write_pcap(&regenerated, &frames).unwrap();
    assert_eq!(
        std::fs::read(&regenerated).unwrap(),
        std::fs::read(&path).expect("hostile.pcap committed"),
        "the generator no longer gives the committed hostile.pcap: rerun tools/record-traces --bless"
    );
    let _ = std::fs::remove_dir_all(dir);

    let trace = Trace::open(&path, 80).unwrap();
    let report = replay(&trace, None);
    let (_, exchanges) = FIXTURES
        .iter()
        .find(|(n, _)| *n == HOSTILE_SOURCE)
        .copied()
        .unwrap();
    assert_matches_trace(&report, exchanges);
    let junk = trace.junk.len() as u64;
    assert!(junk >= 30, "only {junk} junk frames in the hostile trace");
    assert_eq!(report.counters.junk_sent, junk, "{report}");
    let dropped: u64 = report
        .target_counters
        .iter()
        .filter(|(n, _)| n.starts_with("drop_"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        dropped >= junk,
        "{dropped} drops for {junk} junk frames: {report}"
    );
    for counter in [
        "drop_eth_truncated",
        "drop_ipv4_malformed",
        "drop_ipv4_checksum",
        "drop_tcp_checksum",
    ] {
        assert!(
            report.target_counter(counter) > 0,
            "{counter} is 0: {report}"
        );
    }
    assert_eq!(report.target_counter("parse_errors"), 0, "{report}");
}

#[test]
fn a_trace_recorded_from_sirocco_replays_cleanly() {
    let dir = tempdir("self");
    let recorded = dir.join("sirocco.pcap");
    let original = Trace::open(&trace_path("python-pipelining"), 80).unwrap();
    let first = replay(&original, Some((recorded.clone(), CaptureDirection::Both)));
    assert!(first.is_ok(), "{first}");

    let trace = Trace::open(&recorded, 80).expect("sirocco's own capture parses");
    assert_eq!(trace.flows.len(), original.flows.len());
    let report = replay(&trace, None);
    assert_matches_trace(&report, 4);
    // Same server, same seed, same virtual time: not even the headers differ.
    for e in report.exchanges() {
        assert!(e.notes.is_empty(), "{report}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory under Cargo's scratch space for integration tests.
fn tempdir(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replay-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}
