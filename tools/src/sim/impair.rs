//! Chosen faults, frame by frame: a port that drops or delays exactly the TCP segments a test
//! names, where the memory link's [`FaultConfig`](sirocco_drivers::memory::FaultConfig) draws
//! them at random.
//!
//! [`Impaired`] wraps the port that *receives* the segments: wrapping the client's end impairs
//! what the server sends, wrapping the server's end impairs the client's ACKs. A rule sees
//! each TCP segment as a [`SegmentView`], with its sequence number relative to the sender's
//! initial one and the number of times that sequence number has been sent, so "lose the first
//! transmission of the third data segment" is one comparison. Frames that are not TCP pass
//! untouched.
//!
//! Every segment and its fate are logged with the virtual time it arrived
//! ([`Impaired::log`]), so a test can count retransmissions and time them from the wire
//! rather than from the stack's own accounts.
//!
//! Delayed frames are held and delivered once the clock reaches their release time; the port
//! reports that time as a frame arrival ([`SimPort::next_arrival_micros`]), so a simulation
//! never stalls on them.
//!
//! This is a test instrument: it copies each frame it judges and keeps a log that grows with
//! the run, which the data path never does.

use std::collections::HashMap;
use std::time::Duration;

use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::FaultCounters;
use sirocco_drivers::{Capabilities, DriverCounters, DriverError, FrameIo};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpOption, TcpPacket,
};

use super::SimPort;

/// What happens to one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    /// Held back this long, then delivered (after the frames that arrived meanwhile).
    Delay(Duration),
}

/// One TCP segment as an impairment rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentView {
    /// The sender's TCP port (80 for the server).
    pub src_port: u16,
    pub dst_port: u16,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// The sequence number, relative to the sender's initial one: its SYN is 0, its first
    /// data octet 1. (Relative to the first sequence number seen if the SYN was not.)
    pub seq: u32,
    /// Payload octets.
    pub len: usize,
    /// The acknowledgment number as sent (this port sees one direction only, so it cannot
    /// be made relative).
    pub raw_ack: u32,
    /// The advertised window field, unscaled.
    pub window: u16,
    /// The segment carries a SACK-permitted or a SACK option.
    pub sack: bool,
    /// How many times a segment with this sequence number and at least one octet (or a SYN or
    /// FIN) has arrived at this port, this one included: 1 for a first transmission.
    pub transmission: u32,
}

impl SegmentView {
    /// Carries data.
    pub fn is_data(&self) -> bool {
        self.len > 0
    }
}

/// One logged segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    /// Virtual time it reached the port, in microseconds.
    pub at_micros: u64,
    pub segment: SegmentView,
    pub fate: Fate,
}

/// A port that applies a rule to every TCP segment it receives. See the module documentation.
pub struct Impaired<D> {
    inner: D,
    clock: VirtualClock,
    rule: Box<dyn FnMut(&SegmentView) -> Fate>,
    /// Initial sequence number of each sender (by source port), from its SYN or first segment.
    isn: HashMap<(u16, u16), u32>,
    /// Transmissions seen per (flow, relative sequence number).
    sent: HashMap<(u16, u16, u32), u32>,
    /// Frames held back: release time in microseconds, arrival order, bytes.
    held: Vec<(u64, u64, Vec<u8>)>,
    order: u64,
    log: Vec<Logged>,
}

impl<D: FrameIo> Impaired<D> {
    pub fn new(
        inner: D,
        clock: VirtualClock,
        rule: impl FnMut(&SegmentView) -> Fate + 'static,
    ) -> Self {
        Impaired {
            inner,
            clock,
            rule: Box::new(rule),
            isn: HashMap::new(),
            sent: HashMap::new(),
            held: Vec::new(),
            order: 0,
            log: Vec::new(),
        }
    }

    /// Every TCP segment that reached this port, in order, with its fate.
    pub fn log(&self) -> &[Logged] {
        &self.log
    }

    /// Decides the fate of one frame, logging it if it is TCP.
    fn judge(&mut self, frame: &[u8]) -> Fate {
        let Some(mut view) = parse(frame) else {
            return Fate::Deliver;
        };
        let flow = (view.src_port, view.dst_port);
        let isn = self.isn.entry(flow).or_insert(view.seq);
        if view.syn {
            *isn = view.seq;
        }
        view.seq = view.seq.wrapping_sub(*isn);
        if view.len > 0 || view.syn || view.fin {
            let count = self.sent.entry((flow.0, flow.1, view.seq)).or_insert(0);
            *count += 1;
            view.transmission = *count;
        }
        let fate = (self.rule)(&view);
        self.log.push(Logged {
            at_micros: self.clock.now_micros(),
            segment: view,
            fate,
        });
        fate
    }
}

/// The TCP segment in an Ethernet frame, if it holds one.
fn parse(frame: &[u8]) -> Option<SegmentView> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(SegmentView {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        seq: tcp.seq_number().0 as u32,
        len: tcp.payload().len(),
        raw_ack: tcp.ack_number().0 as u32,
        window: tcp.window_len(),
        sack: has_sack_option(tcp.options()),
        transmission: 0,
    })
}

fn has_sack_option(mut options: &[u8]) -> bool {
    while !options.is_empty() {
        match TcpOption::parse(options) {
            Ok((_, TcpOption::EndOfList)) | Err(_) => return false,
            Ok((_, TcpOption::SackPermitted | TcpOption::SackRange(_))) => return true,
            Ok((rest, _)) => options = rest,
        }
    }
    false
}

impl<D: FrameIo> FrameIo for Impaired<D> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let now = self.clock.now_micros();
        let mut delivered = 0;
        // Held frames whose time has come, in the order they arrived.
        self.held.sort_by_key(|&(at, order, _)| (at, order));
        while delivered < max && self.held.first().is_some_and(|&(at, _, _)| at <= now) {
            let (_, _, frame) = self.held.remove(0);
            on_frame(&frame);
            delivered += 1;
        }
        let mut arrivals: Vec<Vec<u8>> = Vec::new();
        self.inner
            .rx_burst(max - delivered, &mut |frame| arrivals.push(frame.to_vec()))?;
        for frame in arrivals {
            match self.judge(&frame) {
                Fate::Deliver => {
                    on_frame(&frame);
                    delivered += 1;
                }
                Fate::Drop => {}
                Fate::Delay(by) => {
                    let release = now + u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
                    self.order += 1;
                    self.held.push((release.max(now + 1), self.order, frame));
                }
            }
        }
        Ok(delivered)
    }

    fn tx_room(&self) -> usize {
        self.inner.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.inner.tx_stage(len, fill)
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.inner.tx_flush()
    }

    fn counters(&self) -> DriverCounters {
        self.inner.counters()
    }
}

impl<D: SimPort> SimPort for Impaired<D> {
    fn next_arrival_micros(&self) -> Option<u64> {
        let held = self.held.iter().map(|&(at, _, _)| at).min();
        match (self.inner.next_arrival_micros(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fault_counters(&self) -> FaultCounters {
        self.inner.fault_counters()
    }
}
