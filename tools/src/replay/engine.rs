//! [`Replayer`]: the client side of every traced flow, replayed against a live target, with
//! no I/O and no clock of its own (time comes in as `now`, in microseconds).
//!
//! # Calling order
//!
//! Per loop iteration: [`Replayer::handle_frame`] for every frame the target sent, then
//! [`Replayer::poll`], which sends whatever became sendable; when nothing moved, wait until
//! [`Replayer::poll_at`] (or the next frame). [`Replayer::is_done`] ends the run, and
//! [`Replayer::finish`] judges it.
//!
//! # What is sent, and when
//!
//! - Each flow gets its own client port (`first_client_port + flow index`); MACs and IPs are
//!   the target's, the client's sequence numbers are the trace's.
//! - A client segment that acknowledges server data is sent only once the target has sent the
//!   data it acknowledges. The ACK number is moved from the traced server's sequence space to
//!   the target's: the target's ISN comes from its SYN-ACK, and an offset into nginx's byte
//!   stream is mapped through the response boundaries of both streams (same response, same
//!   place in the header or body), because the two servers' headers differ in length. An ACK of
//!   the traced server's FIN waits for the target's FIN.
//! - Flows interleave in trace order: each time, the ready segment (or junk frame) that came
//!   first in the trace goes next. A flow that waits does not hold up the others; a junk frame
//!   waits for every client segment before it (of flows still running).
//! - With [`Pacing::OriginalTiming`] nothing is sent before its time in the trace (measured
//!   from the start of the replay); the target can only make it later.
//! - A flow that waits on the target resends its last segment after `retransmit_micros` of
//!   silence (a lost frame on a live link), a few times; a flow with no progress for
//!   `stall_micros` is given up as stalled. A reset from the target ends its flow.

use std::net::IpAddr;

use super::http::{self, Boundary};
use super::report::{ExchangeReport, FlowOutcome, FlowReport};
use super::stream::Reassembly;
use super::trace::{Trace, TracedFlow};
use super::wire::{self, ACK, JunkRewrite, Mac, RST, SYN, TcpSegment};

/// How fast client segments go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// As soon as the target's answers allow.
    #[default]
    AsFastAsPossible,
    /// No earlier than at the trace's pace.
    OriginalTiming,
}

/// Addresses of the replay's client side and of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub client_mac: Mac,
    pub client_ip: IpAddr,
    pub server_mac: Mac,
    pub server_ip: IpAddr,
    pub server_port: u16,
    /// Flow `i` uses client port `first_client_port + i`.
    pub first_client_port: u16,
}

/// Timing of a replay, in microseconds of whatever clock drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOptions {
    pub pacing: Pacing,
    pub stall_micros: u64,
    pub retransmit_micros: u64,
    pub max_retransmits: u32,
    /// After its last segment, a flow whose answers are all in waits this long for the
    /// target's FIN before it counts as done.
    pub linger_micros: u64,
}

impl Default for ReplayOptions {
    /// As fast as possible; 10 s to stall, 1 s to resend (5 times), 200 ms linger.
    fn default() -> Self {
        ReplayOptions {
            pacing: Pacing::AsFastAsPossible,
            stall_micros: 10_000_000,
            retransmit_micros: 1_000_000,
            max_retransmits: 5,
            linger_micros: 200_000,
        }
    }
}

/// Totals over a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayCounters {
    pub segments_sent: u64,
    pub retransmitted: u64,
    /// ACKs the trace does not hold, sent while a flow waited on the target with
    /// unacknowledged data (see the module documentation).
    pub synthetic_acks: u64,
    /// Traced pure ACKs left out because an earlier ACK already covered them.
    pub redundant_acks_skipped: u64,
    pub junk_sent: u64,
    pub frames_received: u64,
    /// Frames from the target that belong to no flow, or that do not parse.
    pub frames_unmatched: u64,
}

/// Whether a client segment can go now.
enum Gate {
    Ready(u32),
    Wait(String),
    /// It never can: the target closed or reset.
    Never(String),
}

#[derive(Debug)]
struct FlowRun {
    port: u16,
    next: usize,
    target_isn: Option<u32>,
    rx: Reassembly,
    target_reset: bool,
    target_bounds: Vec<Boundary>,
    traced_bounds: Vec<Boundary>,
    last_activity: u64,
    last_sent: Option<Vec<u8>>,
    retransmits: u32,
    sent: u64,
    received: u64,
    /// Target sequence space acknowledged so far (relative to its ISN), and the window and
    /// next client sequence number of the last segment sent: what a synthetic ACK carries.
    acked: u64,
    window: u16,
    client_next: Option<u32>,
    ip_id: u16,
    end: Option<FlowOutcome>,
    /// Why the next segment waits, for the stall message.
    waiting: Option<String>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Replayer<'t> {
    trace: &'t Trace,
    addresses: Addresses,
    options: ReplayOptions,
    flows: Vec<FlowRun>,
    next_junk: usize,
    start: Option<u64>,
    counters: ReplayCounters,
}

impl<'t> Replayer<'t> {
    pub fn new(trace: &'t Trace, addresses: Addresses, options: ReplayOptions) -> Self {
        let flows = trace
            .flows
            .iter()
            .enumerate()
            .map(|(i, flow)| {
                let offset = u16::try_from(i).unwrap_or(u16::MAX);
                FlowRun {
                    port: addresses.first_client_port.wrapping_add(offset),
                    next: 0,
                    target_isn: None,
                    rx: Reassembly::default(),
                    target_reset: false,
                    target_bounds: Vec::new(),
                    traced_bounds: http::frame_responses(
                        flow.server_stream.bytes(),
                        &flow.requests,
                    ),
                    last_activity: 0,
                    last_sent: None,
                    retransmits: 0,
                    sent: 0,
                    received: 0,
                    acked: 0,
                    window: 0,
                    client_next: None,
                    ip_id: 0,
                    end: (flow.client_isn.is_none() || flow.server_isn.is_none()).then(|| {
                        FlowOutcome::Skipped("the trace does not hold its handshake".into())
                    }),
                    waiting: None,
                }
            })
            .collect();
        Replayer {
            trace,
            addresses,
            options,
            flows,
            next_junk: 0,
            start: None,
            counters: ReplayCounters::default(),
        }
    }

    pub fn counters(&self) -> ReplayCounters {
        self.counters
    }

    /// Takes in one frame from the target.
    pub fn handle_frame(&mut self, now: u64, frame: &[u8]) {
        self.counters.frames_received += 1;
        let Some(segment) = TcpSegment::parse(frame) else {
            self.counters.frames_unmatched += 1;
            return;
        };
        let index = usize::from(
            segment
                .dst_port
                .wrapping_sub(self.addresses.first_client_port),
        );
        let matches = segment.src_ip == self.addresses.server_ip
            && segment.dst_ip == self.addresses.client_ip
            && segment.src_port == self.addresses.server_port;
        let Some(flow) = self.flows.get_mut(index).filter(|_| matches) else {
            self.counters.frames_unmatched += 1;
            return;
        };
        flow.received += 1;
        if segment.has(SYN) && segment.has(ACK) && flow.target_isn.is_none() {
            flow.target_isn = Some(segment.seq);
            flow.rx.start(segment.seq);
            flow.last_activity = now;
        }
        if segment.has(RST) && !flow.target_reset {
            flow.target_reset = true;
            flow.last_activity = now;
        }
        let (before, was_finished) = (flow.rx.len(), flow.rx.is_finished());
        flow.rx
            .add(segment.seq, &segment.payload, segment.has(wire::FIN));
        if flow.rx.len() > before || flow.rx.is_finished() != was_finished {
            flow.last_activity = now;
            flow.retransmits = 0;
            if flow.rx.len() > before {
                let requests = &self.trace.flows[index].requests;
                flow.target_bounds = http::frame_responses(flow.rx.bytes(), requests);
            }
        }
    }

    /// Sends what is sendable at `now` through `send`, which returns `false` when the target's
    /// TX ring is full (the frame is then offered again later). Returns whether anything went.
    pub fn poll(&mut self, now: u64, send: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let start = *self.start.get_or_insert(now);
        let mut moved = false;
        loop {
            let due = |at: std::time::Duration| match self.options.pacing {
                Pacing::AsFastAsPossible => true,
                Pacing::OriginalTiming => {
                    start.saturating_add(u64::try_from(at.as_micros()).unwrap_or(u64::MAX)) <= now
                }
            };
            // The earliest ready flow segment in trace order.
            let mut best: Option<(usize, usize, u32)> = None;
            let mut first_pending = usize::MAX;
            for (i, run) in self.flows.iter_mut().enumerate() {
                if run.end.is_some() {
                    continue;
                }
                let traced = &self.trace.flows[i];
                let Some(next) = traced.client_segments.get(run.next) else {
                    continue;
                };
                first_pending = first_pending.min(next.order);
                if !due(next.at) || best.is_some_and(|(order, _, _)| order < next.order) {
                    continue;
                }
                match gate(traced, run, &next.segment) {
                    Gate::Ready(ack) => best = Some((next.order, i, ack)),
                    Gate::Wait(why) => run.waiting = Some(why),
                    Gate::Never(why) => run.end = Some(FlowOutcome::TargetClosedEarly(why)),
                }
            }
            let junk = self
                .trace
                .junk
                .get(self.next_junk)
                .filter(|j| j.order < first_pending && due(j.at));
            match (junk, best) {
                (Some(j), b) if b.is_none_or(|(order, _, _)| j.order < order) => {
                    let frame = self.junk_frame(self.next_junk);
                    if !send(&frame) {
                        break;
                    }
                    let _ = j;
                    self.next_junk += 1;
                    self.counters.junk_sent += 1;
                }
                (_, Some((_, i, ack))) => {
                    let segment = &self.trace.flows[i].client_segments[self.flows[i].next].segment;
                    let run = &self.flows[i];
                    let acked = run
                        .target_isn
                        .filter(|_| segment.has(ACK))
                        .map(|isn| u64::from(ack.wrapping_sub(isn)));
                    let pure_ack = segment.flags & !wire::PSH == ACK && segment.payload.is_empty();
                    if pure_ack
                        && acked.is_some_and(|a| a <= run.acked)
                        && segment.window == run.window
                    {
                        self.flows[i].next += 1;
                        self.counters.redundant_acks_skipped += 1;
                        moved = true;
                        continue;
                    }
                    let frame = self.client_frame(i, ack);
                    if !send(&frame) {
                        break;
                    }
                    let run = &mut self.flows[i];
                    run.next += 1;
                    run.sent += 1;
                    run.last_activity = now;
                    run.last_sent = Some(frame);
                    run.retransmits = 0;
                    run.waiting = None;
                    run.acked = run.acked.max(acked.unwrap_or(0));
                    run.window = segment.window;
                    run.ip_id = segment.ip_id;
                    // The client's next sequence number follows its contiguous stream only:
                    // a hostile segment far ahead must not drag synthetic ACKs along.
                    let end = segment.seq.wrapping_add(segment.seq_len());
                    let contiguous = |next: u32| {
                        next.wrapping_sub(segment.seq) < 1 << 31
                            && end.wrapping_sub(next).wrapping_sub(1) < 1 << 31
                    };
                    match run.client_next {
                        None if segment.has(SYN) => run.client_next = Some(end),
                        Some(next) if contiguous(next) => run.client_next = Some(end),
                        _ => {}
                    }
                    self.counters.segments_sent += 1;
                }
                _ => break,
            }
            moved = true;
        }
        moved |= self.check_flows(now, send);
        moved
    }

    /// Ends flows that are over, resends after silence, gives up on stalls.
    fn check_flows(&mut self, now: u64, send: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let mut moved = false;
        for (i, run) in self.flows.iter_mut().enumerate() {
            if run.end.is_some() {
                continue;
            }
            let traced = &self.trace.flows[i];
            let quiet = now.saturating_sub(run.last_activity);
            if run.target_reset {
                run.end = Some(FlowOutcome::ResetByTarget);
                continue;
            }
            if run.next >= traced.client_segments.len() {
                let traced_done =
                    complete_responses(&run.traced_bounds, traced.server_stream.len());
                let target_done = complete_responses(&run.target_bounds, run.rx.len());
                if run.rx.is_finished()
                    || (target_done >= traced_done && quiet >= self.options.linger_micros)
                {
                    run.end = Some(FlowOutcome::Complete);
                } else if quiet >= self.options.stall_micros {
                    run.end = Some(FlowOutcome::Stalled(format!(
                        "after its last segment, the target sent {target_done} complete \
                         responses of the trace's {traced_done}"
                    )));
                }
                continue;
            }
            if run.waiting.is_some() && run.rx.acked_len() > run.acked {
                // The target waits for an ACK the trace only sends later (its congestion
                // window is not nginx's): acknowledge what arrived, as the client would have.
                if let Some(frame) = synthetic_ack(&self.addresses, run)
                    && send(&frame)
                {
                    run.acked = run.rx.acked_len();
                    run.last_sent = Some(frame);
                    self.counters.synthetic_acks += 1;
                    moved = true;
                }
                continue;
            }
            if quiet >= self.options.stall_micros {
                let why = run.waiting.clone().unwrap_or_else(|| "no progress".into());
                run.end = Some(FlowOutcome::Stalled(format!(
                    "segment {} of {}: {why}",
                    run.next + 1,
                    traced.client_segments.len()
                )));
                continue;
            }
            let resend_due =
                quiet >= self.options.retransmit_micros * u64::from(run.retransmits + 1);
            if run.waiting.is_some()
                && resend_due
                && run.retransmits < self.options.max_retransmits
                && let Some(frame) = &run.last_sent
                && send(frame)
            {
                run.retransmits += 1;
                self.counters.retransmitted += 1;
                moved = true;
            }
        }
        moved
    }

    /// When [`Replayer::poll`] next has something to do without a frame arriving.
    pub fn poll_at(&self) -> Option<u64> {
        let start = self.start.unwrap_or(0);
        let mut at: Option<u64> = None;
        let mut consider = |t: u64| at = Some(at.map_or(t, |a| a.min(t)));
        let paced = |d: std::time::Duration| {
            start.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        };
        for (i, run) in self.flows.iter().enumerate() {
            if run.end.is_some() {
                continue;
            }
            let traced = &self.trace.flows[i];
            if let (Pacing::OriginalTiming, Some(next)) =
                (self.options.pacing, traced.client_segments.get(run.next))
            {
                consider(paced(next.at));
            }
            consider(run.last_activity.saturating_add(self.options.stall_micros));
            consider(run.last_activity.saturating_add(self.options.linger_micros));
            if run.waiting.is_some() && run.retransmits < self.options.max_retransmits {
                let wait = self.options.retransmit_micros * u64::from(run.retransmits + 1);
                consider(run.last_activity.saturating_add(wait));
            }
        }
        if let (Pacing::OriginalTiming, Some(junk)) =
            (self.options.pacing, self.trace.junk.get(self.next_junk))
        {
            consider(paced(junk.at));
        }
        at
    }

    /// Every flow has ended and every junk frame has gone.
    pub fn is_done(&self) -> bool {
        self.flows.iter().all(|f| f.end.is_some()) && self.next_junk >= self.trace.junk.len()
    }

    /// Flows not yet ended, for progress messages.
    pub fn active_flows(&self) -> usize {
        self.flows.iter().filter(|f| f.end.is_none()).count()
    }

    /// Ends every flow still running as stalled (the run's deadline passed), with `why`.
    pub fn give_up(&mut self, why: &str) {
        for run in &mut self.flows {
            if run.end.is_none() {
                let waiting = run.waiting.clone().unwrap_or_else(|| "no progress".into());
                run.end = Some(FlowOutcome::Stalled(format!("{why}; {waiting}")));
            }
        }
    }

    /// Judges every flow: the target's responses against the trace's.
    pub fn finish(&self) -> (Vec<FlowReport>, ReplayCounters) {
        let flows = self
            .flows
            .iter()
            .zip(&self.trace.flows)
            .enumerate()
            .map(|(index, (run, traced))| judge_flow(index, run, traced))
            .collect();
        (flows, self.counters)
    }

    fn client_frame(&self, index: usize, ack: u32) -> Vec<u8> {
        let run = &self.flows[index];
        let traced = &self.trace.flows[index];
        let mut segment = traced.client_segments[run.next].segment.clone();
        segment.src_mac = self.addresses.client_mac;
        segment.dst_mac = self.addresses.server_mac;
        segment.src_ip = self.addresses.client_ip;
        segment.dst_ip = self.addresses.server_ip;
        segment.src_port = run.port;
        segment.dst_port = self.addresses.server_port;
        segment.ack = ack;
        wire::build_segment(&segment)
    }

    fn junk_frame(&self, index: usize) -> Vec<u8> {
        let junk = &self.trace.junk[index];
        let flow = junk.flow.or((!self.trace.flows.is_empty()).then_some(0));
        let mut frame = junk.bytes.clone();
        let Some(flow) = flow else { return frame };
        let traced = &self.trace.flows[flow];
        let rewrite = JunkRewrite {
            src_mac: self.addresses.client_mac,
            dst_mac: self.addresses.server_mac,
            addresses: [
                (traced.client.0, self.addresses.client_ip),
                (traced.server.0, self.addresses.server_ip),
            ],
            src_port: junk
                .flow
                .map(|f| (self.trace.flows[f].client.1, self.flows[f].port)),
        };
        wire::rewrite_junk(&mut frame, &rewrite);
        frame
    }
}

/// A pure ACK of everything received in order from the target, with the flow's current
/// client sequence number and window.
fn synthetic_ack(addresses: &Addresses, run: &FlowRun) -> Option<Vec<u8>> {
    let isn = run.target_isn?;
    let acked = u32::try_from(run.rx.acked_len() & 0xffff_ffff).ok()?;
    let segment = TcpSegment {
        src_mac: addresses.client_mac,
        dst_mac: addresses.server_mac,
        src_ip: addresses.client_ip,
        dst_ip: addresses.server_ip,
        ip_id: run.ip_id,
        ttl: 64,
        dont_fragment: true,
        src_port: run.port,
        dst_port: addresses.server_port,
        seq: run.client_next?,
        ack: isn.wrapping_add(acked),
        flags: ACK,
        window: run.window,
        mss: None,
        window_scale: None,
        payload: Vec::new(),
    };
    Some(wire::build_segment(&segment))
}

/// Responses whose end is known and within `len` bytes.
fn complete_responses(bounds: &[Boundary], len: u64) -> usize {
    bounds
        .iter()
        .filter(|b| b.end.is_some_and(|e| e <= len))
        .count()
}

/// Whether `segment` can go now, and with which ACK number (see the module documentation).
fn gate(traced: &TracedFlow, run: &FlowRun, segment: &TcpSegment) -> Gate {
    if !segment.has(ACK) {
        return Gate::Ready(if segment.has(RST) { 0 } else { segment.ack });
    }
    if run.target_reset {
        return Gate::Never("the target reset the connection".into());
    }
    let (Some(server_isn), Some(target_isn)) = (traced.server_isn, run.target_isn) else {
        return Gate::Wait("waiting for the target's SYN-ACK".into());
    };
    let relative = u64::from(segment.ack.wrapping_sub(server_isn));
    // An ACK below the ISN (a hostile or broken trace): acknowledge the SYN only.
    let relative = if relative > u64::from(i32::MAX as u32) {
        1
    } else {
        relative.max(1)
    };
    let offset = relative - 1;
    if traced
        .server_stream
        .fin_at()
        .is_some_and(|fin| offset > fin)
    {
        if run.rx.is_finished() {
            let acked = u32::try_from(run.rx.acked_len() & 0xffff_ffff).unwrap_or(0);
            return Gate::Ready(target_isn.wrapping_add(acked));
        }
        return Gate::Wait("waiting for the target's FIN".into());
    }
    let Some(mapped) = map_offset(&run.traced_bounds, &run.target_bounds, offset) else {
        return closed_or_wait(
            run,
            format!("waiting for the response holding traced byte {offset}"),
        );
    };
    if mapped > run.rx.len() {
        return closed_or_wait(
            run,
            format!(
                "waiting for target byte {mapped} (traced byte {offset}); {} received",
                run.rx.len()
            ),
        );
    }
    let acked = u32::try_from((mapped + 1) & 0xffff_ffff).unwrap_or(0);
    Gate::Ready(target_isn.wrapping_add(acked))
}

fn closed_or_wait(run: &FlowRun, why: String) -> Gate {
    if run.rx.is_finished() {
        Gate::Never(format!("the target closed first ({why})"))
    } else {
        Gate::Wait(why)
    }
}

/// Moves an offset in the traced server stream to the same place in the target's: the same
/// response, the same distance into its header (at most the target's header length) or body.
/// `None` while the target has not sent that response's header.
fn map_offset(traced: &[Boundary], target: &[Boundary], offset: u64) -> Option<u64> {
    let Some(k) = traced.iter().rposition(|b| b.start <= offset) else {
        // Before any parsed response: bytes are bytes.
        return Some(offset);
    };
    let t = traced[k];
    if offset == t.start {
        // The end of the previous response: needs nothing of response k.
        return match k.checked_sub(1) {
            None => Some(0),
            Some(previous) => target.get(previous)?.end,
        };
    }
    let g = target.get(k)?;
    if offset < t.body_start {
        return Some(g.start + (offset - t.start).min(g.body_start - g.start));
    }
    match t.end {
        Some(end) if offset >= end => Some(g.end? + (offset - end)),
        _ => {
            let mapped = g.body_start + (offset - t.body_start);
            Some(g.end.map_or(mapped, |e| mapped.min(e)))
        }
    }
}

fn judge_flow(index: usize, run: &FlowRun, traced: &TracedFlow) -> FlowReport {
    let traced_closed = traced.server_reset || traced.server_stream.is_finished();
    let target_closed = run.target_reset || run.rx.is_finished();
    let traced_responses = http::parse_responses(
        traced.server_stream.bytes(),
        &traced.requests,
        traced_closed,
    );
    let target_responses = http::parse_responses(run.rx.bytes(), &traced.requests, target_closed);
    let skipped = matches!(run.end, Some(FlowOutcome::Skipped(_)));
    let count = traced.requests.len().max(traced_responses.len());
    let exchanges = if skipped {
        Vec::new()
    } else {
        (0..count)
            .map(|i| {
                let request = traced.requests.get(i);
                let (a, b) = (traced_responses.get(i), target_responses.get(i));
                let judgement = http::compare(a, b);
                ExchangeReport {
                    method: request.map_or("?".into(), |r| r.method.clone()),
                    target: request.map_or("?".into(), |r| r.target.clone()),
                    traced_status: a.map(|r| r.status),
                    target_status: b.map(|r| r.status),
                    traced_body_len: a.map(|r| r.body.len()),
                    target_body_len: b.map(|r| r.body.len()),
                    failure: judgement.failure,
                    notes: judgement.notes,
                }
            })
            .collect()
    };
    FlowReport {
        index,
        traced_client: traced.client,
        traced_server: traced.server,
        client_port: run.port,
        outcome: run
            .end
            .clone()
            .unwrap_or_else(|| FlowOutcome::Stalled("the run ended first".into())),
        segments_sent: run.sent,
        segments_received: run.received,
        repeats_skipped: traced.repeats,
        exchanges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(start: u64, body_start: u64, end: Option<u64>) -> Boundary {
        Boundary {
            start,
            body_start,
            end,
        }
    }

    #[test]
    fn offsets_map_through_response_boundaries() {
        // nginx: 250-byte header + 512 body, then 240 + 1000. Target: 200 + 512, 190 + 1000.
        let traced = [b(0, 250, Some(762)), b(762, 1002, Some(2002))];
        let target = [b(0, 200, Some(712)), b(712, 902, Some(1902))];
        assert_eq!(map_offset(&traced, &target, 0), Some(0));
        assert_eq!(map_offset(&traced, &target, 100), Some(100));
        assert_eq!(map_offset(&traced, &target, 240), Some(200));
        assert_eq!(map_offset(&traced, &target, 260), Some(210));
        assert_eq!(map_offset(&traced, &target, 762), Some(712));
        assert_eq!(map_offset(&traced, &target, 2002), Some(1902));
        assert_eq!(map_offset(&traced, &target, 2010), Some(1910));
        // The end of response 1 needs only response 1 from the target.
        assert_eq!(map_offset(&traced, &target[..1], 762), Some(712));
        assert_eq!(map_offset(&traced, &target[..1], 800), None);
    }
}
