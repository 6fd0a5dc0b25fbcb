//! What a replay found: per flow, per HTTP exchange, and in total; as text or JSON.
//!
//! A run **fails** when an exchange has a failure (status or body mismatch, a missing or cut
//! short response) or a flow stalled. Notes (`differs: <reason>`) are differences with a
//! legitimate reason; they are shown, never silently passed, but do not fail the run.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};

use super::engine::ReplayCounters;

/// How a flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowOutcome {
    /// Every client segment went out and the target's answers came in.
    Complete,
    /// The target reset the connection (not a failure by itself: the exchanges decide).
    ResetByTarget,
    /// The target closed before sending what the trace's client acknowledged.
    TargetClosedEarly(String),
    /// No progress within the stall limit, or the run's deadline passed.
    Stalled(String),
    /// Not replayed.
    Skipped(String),
}

impl fmt::Display for FlowOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowOutcome::Complete => write!(f, "complete"),
            FlowOutcome::ResetByTarget => write!(f, "reset by the target"),
            FlowOutcome::TargetClosedEarly(why) => write!(f, "target closed early: {why}"),
            FlowOutcome::Stalled(why) => write!(f, "STALLED: {why}"),
            FlowOutcome::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// One request and the two answers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeReport {
    pub method: String,
    pub target: String,
    pub traced_status: Option<u16>,
    pub target_status: Option<u16>,
    pub traced_body_len: Option<usize>,
    pub target_body_len: Option<usize>,
    pub failure: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowReport {
    pub index: usize,
    pub traced_client: (IpAddr, u16),
    pub traced_server: (IpAddr, u16),
    /// The client port the replay used.
    pub client_port: u16,
    pub outcome: FlowOutcome,
    pub segments_sent: u64,
    pub segments_received: u64,
    pub repeats_skipped: usize,
    pub exchanges: Vec<ExchangeReport>,
}

impl FlowReport {
    pub fn failed(&self) -> bool {
        matches!(self.outcome, FlowOutcome::Stalled(_))
            || self.exchanges.iter().any(|e| e.failure.is_some())
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub trace: String,
    pub target: String,
    pub flows: Vec<FlowReport>,
    pub counters: ReplayCounters,
    /// Duration of the run on its clock (virtual or wall), in microseconds.
    pub elapsed_micros: u64,
    /// The target's own counters, where it can be asked (in-process): name, value.
    pub target_counters: Vec<(String, u64)>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        !self.flows.iter().any(FlowReport::failed)
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &ExchangeReport> {
        self.flows.iter().flat_map(|f| f.exchanges.iter())
    }

    /// A target counter by name (0 if absent).
    pub fn target_counter(&self, name: &str) -> u64 {
        self.target_counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    pub fn to_json(&self) -> Value {
        let flows: Vec<Value> = self
            .flows
            .iter()
            .map(|f| {
                json!({
                    "index": f.index,
                    "traced_client": SocketAddr::from(f.traced_client).to_string(),
                    "traced_server": SocketAddr::from(f.traced_server).to_string(),
                    "client_port": f.client_port,
                    "outcome": f.outcome.to_string(),
                    "failed": f.failed(),
                    "segments_sent": f.segments_sent,
                    "segments_received": f.segments_received,
                    "repeats_skipped": f.repeats_skipped,
                    "exchanges": f.exchanges.iter().map(|e| json!({
                        "method": e.method,
                        "target": e.target,
                        "traced_status": e.traced_status,
                        "target_status": e.target_status,
                        "traced_body_len": e.traced_body_len,
                        "target_body_len": e.target_body_len,
                        "failure": e.failure,
                        "notes": e.notes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let counters: serde_json::Map<String, Value> = self
            .target_counters
            .iter()
            .map(|(n, v)| (n.clone(), json!(v)))
            .collect();
        json!({
            "trace": self.trace,
            "target": self.target,
            "ok": self.is_ok(),
            "elapsed_micros": self.elapsed_micros,
            "segments_sent": self.counters.segments_sent,
            "retransmitted": self.counters.retransmitted,
            "synthetic_acks": self.counters.synthetic_acks,
            "redundant_acks_skipped": self.counters.redundant_acks_skipped,
            "junk_sent": self.counters.junk_sent,
            "frames_received": self.counters.frames_received,
            "frames_unmatched": self.counters.frames_unmatched,
            "summary": self.summary_json(),
            "target_counters": counters,
            "flows": flows,
        })
    }

    fn summary_json(&self) -> Value {
        let s = Summary::of(self);
        json!({
            "flows": s.flows,
            "stalled": s.stalled,
            "skipped": s.skipped,
            "exchanges": s.exchanges,
            "failed": s.failed,
            "with_notes": s.with_notes,
        })
    }
}

struct Summary {
    flows: usize,
    stalled: usize,
    skipped: usize,
    exchanges: usize,
    failed: usize,
    with_notes: usize,
}

impl Summary {
    fn of(report: &Report) -> Self {
        let count =
            |p: fn(&FlowOutcome) -> bool| report.flows.iter().filter(|f| p(&f.outcome)).count();
        Summary {
            flows: report.flows.len(),
            stalled: count(|o| matches!(o, FlowOutcome::Stalled(_))),
            skipped: count(|o| matches!(o, FlowOutcome::Skipped(_))),
            exchanges: report.exchanges().count(),
            failed: report.exchanges().filter(|e| e.failure.is_some()).count(),
            with_notes: report
                .exchanges()
                .filter(|e| e.failure.is_none() && !e.notes.is_empty())
                .count(),
        }
    }
}

fn status(code: Option<u16>) -> String {
    code.map_or("-".into(), |c| c.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "replay of {} against {}", self.trace, self.target)?;
        for flow in &self.flows {
            writeln!(
                f,
                "flow {} {} -> {} (replayed from port {}): {}; {} segments sent, {} received{}",
                flow.index + 1,
                SocketAddr::from(flow.traced_client),
                SocketAddr::from(flow.traced_server),
                flow.client_port,
                flow.outcome,
                flow.segments_sent,
                flow.segments_received,
                if flow.repeats_skipped > 0 {
                    format!(", {} traced repeats skipped", flow.repeats_skipped)
                } else {
                    String::new()
                }
            )?;
            for e in &flow.exchanges {
                let verdict = match &e.failure {
                    Some(why) => format!("FAIL: {why}"),
                    None => "ok".into(),
                };
                writeln!(
                    f,
                    "  {} {}  status {} (trace {})  body {} bytes (trace {})  {verdict}",
                    e.method,
                    e.target,
                    status(e.target_status),
                    status(e.traced_status),
                    e.target_body_len.map_or("-".into(), |n| n.to_string()),
                    e.traced_body_len.map_or("-".into(), |n| n.to_string()),
                )?;
                for note in &e.notes {
                    writeln!(f, "      {note}")?;
                }
            }
        }
        let s = Summary::of(self);
        let c = &self.counters;
        writeln!(
            f,
            "summary: {} flows ({} stalled, {} skipped), {} exchanges: {} failed, {} ok ({} with notes); \
             {} segments sent ({} resent, {} synthetic ACKs, {} redundant traced ACKs left out), \
             {} junk frames sent, {} frames received ({} unmatched); {:.3} s",
            s.flows,
            s.stalled,
            s.skipped,
            s.exchanges,
            s.failed,
            s.exchanges - s.failed,
            s.with_notes,
            c.segments_sent,
            c.retransmitted,
            c.synthetic_acks,
            c.redundant_acks_skipped,
            c.junk_sent,
            c.frames_received,
            c.frames_unmatched,
            self.elapsed_micros as f64 / 1e6,
        )?;
        let nonzero: Vec<String> = self
            .target_counters
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        if !nonzero.is_empty() {
            writeln!(f, "target counters: {}", nonzero.join(" "))?;
        }
        write!(f, "result: {}", if self.is_ok() { "PASS" } else { "FAIL" })
    }
}
