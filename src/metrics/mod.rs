//! Prometheus metrics: `sirocco serve --metrics-listen ADDR:PORT`.
//!
//! The engines do nothing for the metrics: the supervisor (`runner.rs`), which already sums
//! the engines' published counters for the stats line, puts a [`Snapshot`] on the
//! [`MetricsBoard`] about once a second ([`PUBLISH_INTERVAL`]), and a scrape renders the
//! latest one ([`render`]) on the endpoint's own thread ([`spawn_endpoint`]). So a scrape sees
//! counters at most a second and a bit old, and a slow or hostile scraper can only hold up
//! other scrapers.
//!
//! [`render`] writes the text exposition format 0.0.4: `# HELP` and `# TYPE` once per family,
//! then its samples, names and units as Prometheus wants them (`sirocco_`, `_total`, `_bytes`,
//! `_seconds`). Every series of an engine carries a `queue` label (`serve --queues N` runs one
//! engine per queue); sum over it for the server's totals.

mod endpoint;

pub use endpoint::{
    CONNECTION_DEADLINE, CONTENT_TYPE, IO_TIMEOUT, MetricsError, bind, spawn_endpoint,
};

use std::fmt::Display;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sirocco_drivers::DriverCounters;
use sirocco_netstack::StackCounters;

use crate::http::HttpCounters;
use crate::server::Stats;

/// How often the supervisor puts a new [`Snapshot`] on the board.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a scrape shows, as the supervisor last saw it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Each engine's queue and counters.
    pub queues: Vec<(u32, Stats)>,
    /// The tree in force: files, and bytes held in memory.
    pub cache_files: u64,
    pub cache_bytes: u64,
    /// SIGHUP reloads that put a new tree in force, and those that failed (the old one stayed).
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// Where the supervisor leaves the latest [`Snapshot`] and the endpoint thread takes it. The
/// lock is held only to swap or clone an `Arc`, never while rendering or writing.
#[derive(Debug, Default)]
pub struct MetricsBoard {
    latest: Mutex<Arc<Snapshot>>,
}

impl MetricsBoard {
    pub fn new() -> MetricsBoard {
        MetricsBoard::default()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        Arc::clone(&self.latest.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The text exposition format of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "sirocco_build_info",
        Kind::Gauge,
        "The running sirocco's version; always 1.",
    );
    out.sample(
        "sirocco_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    driver_families(&mut out, &snapshot.queues);
    stack_families(&mut out, &snapshot.queues);
    connection_families(&mut out, &snapshot.queues);
    http_families(&mut out, &snapshot.queues);
    latency_family(&mut out, &snapshot.queues);

    out.family(
        "sirocco_cache_files",
        Kind::Gauge,
        "Files in the tree in force.",
    );
    out.sample("sirocco_cache_files", &[], snapshot.cache_files);
    out.family(
        "sirocco_cache_bytes",
        Kind::Gauge,
        "Bytes the tree in force holds in memory (compressed variants included).",
    );
    out.sample("sirocco_cache_bytes", &[], snapshot.cache_bytes);
    out.family(
        "sirocco_reloads_total",
        Kind::Counter,
        "Reloads of the tree (SIGHUP) by result: ok put a new tree in force, failed kept the old one.",
    );
    out.sample(
        "sirocco_reloads_total",
        &[("result", "ok")],
        snapshot.reloads_ok,
    );
    out.sample(
        "sirocco_reloads_total",
        &[("result", "failed")],
        snapshot.reloads_failed,
    );
    out.text
}

/// The metric name and help of each [`DriverCounters`] field. `None` for an unknown field (a
/// test checks there is none).
fn driver_metric(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "rx_frames" => (
            "sirocco_driver_rx_frames_total",
            "Frames the driver received from the NIC queue.",
        ),
        "rx_bytes" => (
            "sirocco_driver_rx_bytes_total",
            "Bytes of the frames the driver received.",
        ),
        "tx_frames" => (
            "sirocco_driver_tx_frames_total",
            "Frames the driver handed to the NIC queue.",
        ),
        "tx_bytes" => (
            "sirocco_driver_tx_bytes_total",
            "Bytes of the frames the driver handed to the NIC queue.",
        ),
        "rx_dropped" => (
            "sirocco_driver_rx_dropped_frames_total",
            "Frames the driver dropped on receive (oversize, truncated, ...).",
        ),
        "tx_dropped" => (
            "sirocco_driver_tx_dropped_frames_total",
            "Frames the driver dropped on transmit (oversize, write errors, ...).",
        ),
        "tx_ring_full" => (
            "sirocco_driver_tx_ring_full_total",
            "Frames refused because the TX ring was full.",
        ),
        "kicks" => (
            "sirocco_driver_kicks_total",
            "System calls (or emulated kicks) made to submit TX or refill RX.",
        ),
        _ => return None,
    })
}

/// A family with one sample per engine, labelled by its queue; `value` picks the number from
/// the engine's counters.
fn per_queue(
    out: &mut Exposition,
    name: &str,
    kind: Kind,
    help: &str,
    queues: &[(u32, Stats)],
    value: impl Fn(&Stats) -> u64,
) {
    out.family(name, kind, help);
    for (queue, stats) in queues {
        out.sample(name, &[("queue", &queue.to_string())], value(stats));
    }
}

/// The driver's counters, one family each.
fn driver_families(out: &mut Exposition, queues: &[(u32, Stats)]) {
    for (i, (field, _)) in DriverCounters::default().fields().iter().enumerate() {
        if let Some((name, help)) = driver_metric(field) {
            per_queue(out, name, Kind::Counter, help, queues, |stats| {
                stats.driver.fields()[i].1
            });
        }
    }
}

/// Stack counters that go into a family of their own rather than one per counter.
const SYN_REFUSALS: [(&str, &str); 3] = [
    ("syn_refused_full", "connection_limit"),
    ("syn_refused_draining", "draining"),
    ("conn_limit_per_ip", "per_ip_limit"),
];
const SYN_CACHE_GAUGE: &str = "syn_cache_entries";

/// The stack's counters: drops by reason, SYN refusals by reason, the SYN-cache gauge, and one
/// counter family per other event, named `sirocco_stack_<event>_total`.
fn stack_families(out: &mut Exposition, queues: &[(u32, Stats)]) {
    let labels = |queue: &u32| queue.to_string();
    let fields = StackCounters::default();

    let name = "sirocco_stack_dropped_frames_total";
    out.family(
        name,
        Kind::Counter,
        "Received frames the stack threw away, by reason (each frame counted once).",
    );
    for (queue, stats) in queues {
        for (field, value) in stats.stack.fields() {
            if let Some(reason) = field.strip_prefix("drop_") {
                out.sample(
                    name,
                    &[("queue", &labels(queue)), ("reason", reason)],
                    value,
                );
            }
        }
    }

    let name = "sirocco_syn_refused_total";
    out.family(
        name,
        Kind::Counter,
        "Connections refused with RST by reason: connection_limit (every cell in use, none idle), draining (the server is stopping), per_ip_limit (the peer's address is at its limit).",
    );
    for (queue, stats) in queues {
        for (field, value) in stats.stack.fields() {
            if let Some((_, reason)) = SYN_REFUSALS.iter().find(|(f, _)| *f == field) {
                out.sample(
                    name,
                    &[("queue", &labels(queue)), ("reason", reason)],
                    value,
                );
            }
        }
    }

    per_queue(
        out,
        "sirocco_stack_syn_cache_entries",
        Kind::Gauge,
        &help_text(StackCounters::help(SYN_CACHE_GAUGE).unwrap_or_default()),
        queues,
        |stats| stats.stack.syn_cache_entries,
    );

    for (i, (field, _)) in fields.fields().enumerate() {
        if field.starts_with("drop_")
            || field == SYN_CACHE_GAUGE
            || SYN_REFUSALS.iter().any(|(f, _)| *f == field)
        {
            continue;
        }
        per_queue(
            out,
            &format!("sirocco_stack_{field}_total"),
            Kind::Counter,
            &help_text(StackCounters::help(field).unwrap_or_default()),
            queues,
            |stats| stats.stack.fields().nth(i).map_or(0, |(_, v)| v),
        );
    }
}

/// Connections by state: half-open in the SYN cache, open and busy, open and idle between
/// requests, and closed in TIME-WAIT.
fn connection_families(out: &mut Exposition, queues: &[(u32, Stats)]) {
    let name = "sirocco_connections";
    out.family(
        name,
        Kind::Gauge,
        "Connections by state: handshake (half-open, in the SYN cache), active (open, with a request or response under way), idle (open, waiting for a request), time_wait (closed, holding no cell).",
    );
    for (queue, stats) in queues {
        let queue = queue.to_string();
        let idle = stats.idle_connections.min(stats.connections);
        for (state, value) in [
            ("handshake", stats.stack.syn_cache_entries),
            ("active", (stats.connections - idle) as u64),
            ("idle", idle as u64),
            ("time_wait", stats.time_wait_connections as u64),
        ] {
            out.sample(name, &[("queue", &queue), ("state", state)], value);
        }
    }
}

/// The metric name and help of each [`HttpCounters`] field but the responses, which go into
/// one family by status class. `None` for an unknown field (a test checks there is none).
fn http_metric(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "requests" => (
            "sirocco_http_requests_total",
            "Request heads parsed (malformed ones included).",
        ),
        "bytes_sent" => (
            "sirocco_http_response_bytes_total",
            "Response bytes accepted by sockets.",
        ),
        "parse_errors" => (
            "sirocco_http_parse_errors_total",
            "Requests answered with 400, 414, 431 or 505 because they could not be parsed.",
        ),
        "pipelined_requests" => (
            "sirocco_http_pipelined_requests_total",
            "Requests parsed while an earlier response on the same connection was still unsent.",
        ),
        "header_timeouts" => (
            "sirocco_http_header_timeouts_total",
            "Request heads not completed within the header timeout (answered 408).",
        ),
        "keepalive_timeouts" => (
            "sirocco_http_keepalive_timeouts_total",
            "Idle connections closed because no request came within the keep-alive timeout.",
        ),
        "lingering_aborts" => (
            "sirocco_http_lingering_aborts_total",
            "Closed connections reset because the peer had not finished within the lingering bounds.",
        ),
        "foreign_protocol" => (
            "sirocco_http_foreign_protocol_connections_total",
            "Connections closed without an answer because they opened with TLS or HTTP/2.",
        ),
        "access_log_dropped" => (
            "sirocco_access_log_dropped_lines_total",
            "Access-log lines dropped because the log writer could not keep up.",
        ),
        "drain_closes" => (
            "sirocco_http_drain_closes_total",
            "Idle keep-alive connections closed because the server is stopping.",
        ),
        _ => return None,
    })
}

/// The [`HttpCounters`] fields that go into `sirocco_http_responses_total`, and their class.
const RESPONSE_CLASSES: [(&str, &str); 4] = [
    ("responses_2xx", "2xx"),
    ("responses_3xx", "3xx"),
    ("responses_4xx", "4xx"),
    ("responses_5xx", "5xx"),
];

fn http_families(out: &mut Exposition, queues: &[(u32, Stats)]) {
    let name = "sirocco_http_responses_total";
    out.family(
        name,
        Kind::Counter,
        "Responses by status class, counted when their last byte is in the socket.",
    );
    for (queue, stats) in queues {
        for (field, value) in stats.http.fields() {
            if let Some((_, class)) = RESPONSE_CLASSES.iter().find(|(f, _)| *f == field) {
                out.sample(
                    name,
                    &[("queue", &queue.to_string()), ("code", class)],
                    value,
                );
            }
        }
    }
    for (i, (field, _)) in HttpCounters::default().fields().enumerate() {
        if let Some((name, help)) = http_metric(field) {
            per_queue(out, name, Kind::Counter, help, queues, |stats| {
                stats.http.fields().nth(i).map_or(0, |(_, v)| v)
            });
        }
    }
}

fn latency_family(out: &mut Exposition, queues: &[(u32, Stats)]) {
    let name = "sirocco_http_time_to_first_byte_seconds";
    out.family(
        name,
        Kind::Histogram,
        "From the read that completed a request to its response's first byte in the socket, on the engine's clock (read once per loop iteration: a request answered in the iteration it arrived in counts 0).",
    );
    for (queue, stats) in queues {
        let queue = queue.to_string();
        let histogram = &stats.http.time_to_first_byte;
        let bucket = format!("{name}_bucket");
        for (bound, count) in histogram.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_string(), seconds);
            out.sample(&bucket, &[("queue", &queue), ("le", &le)], count);
        }
        out.sample(
            &format!("{name}_sum"),
            &[("queue", &queue)],
            seconds(histogram.sum_micros()),
        );
        out.sample(
            &format!("{name}_count"),
            &[("queue", &queue)],
            histogram.count(),
        );
    }
}

/// Microseconds as seconds, in the shortest decimal form (`0.00005`, `2.5`, `0`).
fn seconds(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A counter's rustdoc as a plain help line: no code marks or link brackets.
fn help_text(doc: &str) -> String {
    doc.replace(['`', '[', ']'], "")
        .replace("crate::", "")
        .trim()
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The text being built: `# HELP` and `# TYPE` once per family, then its samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn snapshot() -> Snapshot {
        let mut one = Stats::default();
        one.driver.rx_frames = 40;
        one.stack.drop_tcp_checksum = 3;
        one.stack.syn_refused_full = 2;
        one.stack.syn_cache_entries = 5;
        one.stack.tcp_retransmits = 7;
        one.http.requests = 12;
        one.http.responses_2xx = 10;
        one.http.responses_4xx = 2;
        one.http.access_log_dropped = 1;
        one.http.time_to_first_byte.record(0);
        one.http.time_to_first_byte.record(3_000);
        one.connections = 4;
        one.idle_connections = 3;
        one.time_wait_connections = 6;
        Snapshot {
            queues: vec![(0, one), (3, Stats::default())],
            cache_files: 9,
            cache_bytes: 12_345,
            reloads_ok: 2,
            reloads_failed: 1,
        }
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn every_family_has_help_and_type_once_before_its_samples() {
        let text = render(&snapshot());
        let mut seen = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.trim().is_empty(), "{name} has an empty help");
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name);
                current = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, current, "TYPE right after HELP");
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} without _total");
                }
            } else {
                assert!(
                    line.starts_with(current),
                    "{line} outside its family {current}"
                );
                assert!(line.starts_with("sirocco_"), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn samples_carry_their_queue_and_reason() {
        let text = render(&snapshot());
        let drops = lines_of(&text, "sirocco_stack_dropped_frames_total");
        assert!(
            drops.contains(
                &r#"sirocco_stack_dropped_frames_total{queue="0",reason="tcp_checksum"} 3"#
            )
        );
        assert!(
            drops.contains(
                &r#"sirocco_stack_dropped_frames_total{queue="3",reason="tcp_checksum"} 0"#
            )
        );
        assert!(
            text.contains(r#"sirocco_syn_refused_total{queue="0",reason="connection_limit"} 2"#)
        );
        assert!(text.contains(r#"sirocco_stack_syn_cache_entries{queue="0"} 5"#));
        assert!(text.contains(r#"sirocco_stack_tcp_retransmits_total{queue="0"} 7"#));
        assert!(text.contains(r#"sirocco_http_responses_total{queue="0",code="2xx"} 10"#));
        assert!(text.contains(r#"sirocco_http_responses_total{queue="0",code="4xx"} 2"#));
        assert!(text.contains(r#"sirocco_http_requests_total{queue="0"} 12"#));
        assert!(text.contains(r#"sirocco_access_log_dropped_lines_total{queue="0"} 1"#));
        assert!(text.contains(r#"sirocco_driver_rx_frames_total{queue="0"} 40"#));
        assert!(text.contains(r#"sirocco_connections{queue="0",state="active"} 1"#));
        assert!(text.contains(r#"sirocco_connections{queue="0",state="idle"} 3"#));
        assert!(text.contains(r#"sirocco_connections{queue="0",state="time_wait"} 6"#));
        assert!(text.contains(r#"sirocco_connections{queue="0",state="handshake"} 5"#));
        assert!(text.contains("sirocco_cache_files 9\n"));
        assert!(text.contains("sirocco_cache_bytes 12345\n"));
        assert!(text.contains("sirocco_reloads_total{result=\"ok\"} 2\n"));
        assert!(text.contains("sirocco_reloads_total{result=\"failed\"} 1\n"));
        // The special stack counters are not also plain counters.
        assert!(!text.contains("sirocco_stack_drop_"));
        assert!(!text.contains("sirocco_stack_syn_refused_full_total"));
        assert!(!text.contains("sirocco_stack_syn_cache_entries_total"));
    }

    #[test]
    fn the_histogram_is_cumulative_and_ends_with_inf_sum_and_count() {
        let text = render(&snapshot());
        let name = "sirocco_http_time_to_first_byte_seconds";
        let buckets = lines_of(&text, &format!("{name}_bucket"));
        let queue0: Vec<_> = buckets
            .iter()
            .filter(|l| l.contains("queue=\"0\""))
            .collect();
        assert_eq!(queue0.len(), crate::http::BUCKET_BOUNDS_MICROS.len() + 1);
        assert_eq!(
            *queue0[0],
            format!("{name}_bucket{{queue=\"0\",le=\"0.00005\"}} 1")
        );
        assert!(text.contains(&format!("{name}_bucket{{queue=\"0\",le=\"0.0025\"}} 1\n")));
        assert!(text.contains(&format!("{name}_bucket{{queue=\"0\",le=\"0.005\"}} 2\n")));
        assert_eq!(
            *queue0[queue0.len() - 1],
            format!("{name}_bucket{{queue=\"0\",le=\"+Inf\"}} 2")
        );
        let counts: Vec<u64> = queue0
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert!(text.contains(&format!("{name}_sum{{queue=\"0\"}} 0.003\n")));
        assert!(text.contains(&format!("{name}_count{{queue=\"0\"}} 2\n")));
        assert!(text.contains(&format!("{name}_count{{queue=\"3\"}} 0\n")));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = Exposition::default();
        out.family("x_total", Kind::Counter, "a \\ b\nc");
        out.sample("x_total", &[("path", "a\"b\\c\nd")], 1);
        assert_eq!(
            out.text,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"
        );
    }

    #[test]
    fn every_http_counter_has_a_metric() {
        for (field, _) in HttpCounters::default().fields() {
            assert!(
                http_metric(field).is_some() || RESPONSE_CLASSES.iter().any(|(f, _)| *f == field),
                "HttpCounters::{field} is not exported"
            );
        }
    }

    #[test]
    fn every_driver_counter_has_a_metric() {
        for (field, _) in DriverCounters::default().fields() {
            assert!(
                driver_metric(field).is_some(),
                "DriverCounters::{field} is not exported"
            );
        }
    }

    #[test]
    fn stack_help_has_no_rustdoc_markup() {
        let text = render(&snapshot());
        let help = text
            .lines()
            .find(|l| l.starts_with("# HELP sirocco_stack_tx_refused_total "))
            .unwrap();
        assert!(!help.contains('`'), "{help}");
        assert!(help.contains("has_room"), "{help}");
    }

    #[test]
    fn seconds_are_written_short() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(5_000_000), "5");
        assert_eq!(seconds(1_000_001), "1.000001");
    }
}
