//! A trace split into what a replay needs: the TCP flows to the server port, each with its
//! client segments (what the replay sends) and both reassembled byte streams (what the server
//! sent, to compare with; what the client sent, to know the requests), plus the junk frames.
//!
//! - A **flow** is a 4-tuple whose server side uses the server port. A client SYN with a new
//!   ISN on a 4-tuple that already carried a connection starts a new flow (port reuse).
//! - **Client segments** are kept in trace order. Exact repeats (same sequence, ACK, flags,
//!   window and payload: retransmissions and duplicate ACKs) are dropped and counted; anything
//!   that carries something new is kept, overlaps and out-of-window segments included, so a
//!   hostile trace reaches the target as it was written.
//! - **Junk** is every frame that does not parse as a valid TCP segment (see
//!   [`TcpSegment::parse`]) and is not link housekeeping (ARP; IPv6 neighbor and router
//!   discovery, multicast listener reports) or sent by a traced server: the replay sends it to
//!   the target at its place in the trace, to be counted and dropped.
//!
//! Flows may be over IPv4 or IPv6 (a trace may hold both).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use sirocco_drivers::pcap::PcapSource;

use super::http::{RequestLine, parse_requests};
use super::stream::Reassembly;
use super::wire::{self, ACK, ETHERNET_LEN, Mac, RST, SYN, TcpSegment};

/// Why a trace cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}")]
    Unreadable(String),
    #[error(
        "{path}: no TCP flows to port {port} among its {frames} frames{hint}; \
         pick the server's port with --port"
    )]
    NoFlows {
        path: String,
        port: u16,
        frames: usize,
        hint: String,
    },
}

/// One client segment, with where it stood in the trace.
#[derive(Debug, Clone)]
pub struct TracedSegment {
    /// Index of the frame in the trace: the global order flows are interleaved in.
    pub order: usize,
    /// Time since the trace's first frame.
    pub at: Duration,
    pub segment: TcpSegment,
}

/// One connection to the server port, as the trace shows it.
#[derive(Debug, Clone)]
pub struct TracedFlow {
    pub client_mac: Mac,
    pub server_mac: Mac,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub client_isn: Option<u32>,
    /// From the server's SYN-ACK; without it the flow cannot be replayed.
    pub server_isn: Option<u32>,
    pub client_segments: Vec<TracedSegment>,
    /// Client segments dropped as exact repeats.
    pub repeats: usize,
    pub client_stream: Reassembly,
    pub server_stream: Reassembly,
    pub server_reset: bool,
    pub requests: Vec<RequestLine>,
}

impl TracedFlow {
    fn new(segment: &TcpSegment) -> Self {
        TracedFlow {
            client_mac: segment.src_mac,
            server_mac: segment.dst_mac,
            client: (segment.src_ip, segment.src_port),
            server: (segment.dst_ip, segment.dst_port),
            client_isn: None,
            server_isn: None,
            client_segments: Vec::new(),
            repeats: 0,
            client_stream: Reassembly::default(),
            server_stream: Reassembly::default(),
            server_reset: false,
            requests: Vec::new(),
        }
    }

    fn is_over(&self) -> bool {
        self.server_reset
            || self.server_stream.is_finished()
            || self
                .client_segments
                .iter()
                .any(|s| s.segment.has(RST) || s.segment.has(wire::FIN))
    }
}

/// A frame sent to the target as it is (see the module documentation).
#[derive(Debug, Clone)]
pub struct JunkFrame {
    pub order: usize,
    pub at: Duration,
    pub bytes: Vec<u8>,
    /// The flow whose 4-tuple the frame's headers name, as far as they can be read.
    pub flow: Option<usize>,
}

/// A trace, split into flows and junk.
#[derive(Debug, Clone)]
pub struct Trace {
    pub label: String,
    pub port: u16,
    pub frames: usize,
    pub flows: Vec<TracedFlow>,
    pub junk: Vec<JunkFrame>,
    /// Valid TCP frames to other ports, server frames of unknown flows, ARP.
    pub ignored: usize,
}

impl Trace {
    /// Reads the pcap or pcapng file at `path` and finds its flows to `port`.
    pub fn open(path: &Path, port: u16) -> Result<Trace, TraceError> {
        let source = PcapSource::open(path).map_err(|e| TraceError::Unreadable(e.to_string()))?;
        Trace::from_source(&source, &path.display().to_string(), port)
    }

    /// A trace held in memory; `label` names it in messages.
    pub fn from_bytes(data: &[u8], label: &str, port: u16) -> Result<Trace, TraceError> {
        let source = PcapSource::from_bytes(data, label)
            .map_err(|e| TraceError::Unreadable(e.to_string()))?;
        Trace::from_source(&source, label, port)
    }

    fn from_source(source: &PcapSource, label: &str, port: u16) -> Result<Trace, TraceError> {
        let first = source.frames().next().map(|(t, _)| t).unwrap_or_default();
        let mut trace = Trace {
            label: label.to_string(),
            port,
            frames: source.len(),
            flows: Vec::new(),
            junk: Vec::new(),
            ignored: 0,
        };
        let mut other_ports = std::collections::BTreeMap::<u16, usize>::new();
        let mut unparsed = Vec::new();
        for (order, (time, frame)) in source.frames().enumerate() {
            let at = time.saturating_sub(first);
            match TcpSegment::parse(frame) {
                Some(segment) if segment.dst_port == port => {
                    trace.add_client(order, at, segment);
                }
                Some(segment) if segment.src_port == port => trace.add_server(segment),
                Some(segment) => {
                    *other_ports
                        .entry(segment.dst_port.min(segment.src_port))
                        .or_default() += 1;
                    trace.ignored += 1;
                }
                None => unparsed.push((order, at, frame)),
            }
        }
        trace.classify_junk(unparsed);
        for flow in &mut trace.flows {
            flow.requests = parse_requests(flow.client_stream.bytes());
        }
        if trace.flows.is_empty() {
            let hint = match other_ports.iter().max_by_key(|(_, n)| **n) {
                Some((p, n)) => format!(" (the busiest TCP port is {p}, with {n} frames)"),
                None => " (it holds no valid TCP segment)".into(),
            };
            return Err(TraceError::NoFlows {
                path: label.to_string(),
                port,
                frames: trace.frames,
                hint,
            });
        }
        Ok(trace)
    }

    fn find(&self, client: (IpAddr, u16), server: (IpAddr, u16)) -> Option<usize> {
        self.flows
            .iter()
            .rposition(|f| f.client == client && f.server == server)
    }

    fn add_client(&mut self, order: usize, at: Duration, segment: TcpSegment) {
        let client = (segment.src_ip, segment.src_port);
        let server = (segment.dst_ip, segment.dst_port);
        let opens = segment.has(SYN) && !segment.has(ACK);
        let index = match self.find(client, server) {
            // A new ISN on a connection that is over, or had data: port reuse.
            Some(i)
                if opens
                    && self.flows[i].client_isn != Some(segment.seq)
                    && (self.flows[i].is_over() || !self.flows[i].client_stream.is_empty()) =>
            {
                None
            }
            found => found,
        };
        let index = index.unwrap_or_else(|| {
            self.flows.push(TracedFlow::new(&segment));
            self.flows.len() - 1
        });
        let flow = &mut self.flows[index];
        if opens && flow.client_isn.is_none() {
            flow.client_isn = Some(segment.seq);
            flow.client_stream.start(segment.seq);
        }
        let repeat = flow.client_segments.iter().any(|s| {
            let s = &s.segment;
            (s.seq, s.ack, s.flags, s.window)
                == (segment.seq, segment.ack, segment.flags, segment.window)
                && s.payload == segment.payload
        });
        if repeat {
            flow.repeats += 1;
            return;
        }
        flow.client_stream
            .add(segment.seq, &segment.payload, segment.has(wire::FIN));
        flow.client_segments
            .push(TracedSegment { order, at, segment });
    }

    fn add_server(&mut self, segment: TcpSegment) {
        let client = (segment.dst_ip, segment.dst_port);
        let server = (segment.src_ip, segment.src_port);
        let Some(index) = self.find(client, server) else {
            self.ignored += 1;
            return;
        };
        let flow = &mut self.flows[index];
        if segment.has(SYN) && segment.has(ACK) && flow.server_isn.is_none() {
            flow.server_isn = Some(segment.seq);
            flow.server_stream.start(segment.seq);
            flow.server_mac = segment.src_mac;
        }
        if segment.has(RST) {
            flow.server_reset = true;
        }
        flow.server_stream
            .add(segment.seq, &segment.payload, segment.has(wire::FIN));
    }

    /// Frames that did not parse: link housekeeping and frames from a traced server are
    /// ignored, the rest is junk, tied to a flow when its headers (read as far as they go)
    /// name one.
    fn classify_junk(&mut self, unparsed: Vec<(usize, Duration, &[u8])>) {
        let servers: Vec<(Mac, IpAddr)> = self
            .flows
            .iter()
            .map(|f| (f.server_mac, f.server.0))
            .collect();
        for (order, at, frame) in unparsed {
            let src_mac = wire::mac(frame, 6);
            let (src_ip, dst_ip, tcp) = wire::ip_endpoints(frame);
            // An IPv4 header is assumed when the ethertype names no IP (a damaged frame).
            let (src_ip, dst_ip) = match (src_ip, dst_ip) {
                (None, None) => (
                    wire::ipv4(frame, ETHERNET_LEN + 12).map(IpAddr::V4),
                    wire::ipv4(frame, ETHERNET_LEN + 16).map(IpAddr::V4),
                ),
                found => found,
            };
            let tcp = tcp.unwrap_or(ETHERNET_LEN + wire::IPV4_LEN);
            let from_server = servers
                .iter()
                .any(|(mac, ip)| src_mac == Some(*mac) || src_ip == Some(*ip));
            let housekeeping = wire::be16(frame, 12) == Some(wire::ETHERTYPE_ARP)
                || wire::is_ipv6_housekeeping(frame);
            if housekeeping || from_server {
                self.ignored += 1;
                continue;
            }
            let flow = match (
                src_ip,
                wire::be16(frame, tcp),
                dst_ip,
                wire::be16(frame, tcp + 2),
            ) {
                (Some(cip), Some(cport), Some(sip), Some(sport)) => {
                    self.find((cip, cport), (sip, sport))
                }
                _ => None,
            };
            self.junk.push(JunkFrame {
                order,
                at,
                bytes: frame.to_vec(),
                flow,
            });
        }
    }

    /// Client segments kept, over all flows.
    pub fn client_segments(&self) -> usize {
        self.flows.iter().map(|f| f.client_segments.len()).sum()
    }
}
