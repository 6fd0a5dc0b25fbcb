//! Packet-level tests of the whole stack: a scripted peer sends frames built with smoltcp's
//! `Repr::emit`, and every frame the stack sends is parsed back and checked (checksums included).
//! Time is virtual; seeds come from a fixed PRNG, so every run is identical.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv4Repr,
    Ipv6Address, Ipv6Cidr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::*;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xfe]);
const OUR_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
const PEER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
/// Outside 198.18.0.0/24, reached through a gateway.
const FAR_IP: Ipv4Address = Ipv4Address::new(198, 19, 7, 9);
const PORT: u16 = 80;

pub(super) fn t(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

/// xorshift64*: deterministic seeds and noise.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub(super) fn seeds(seed: u64) -> Box<dyn FnMut() -> u64> {
    let mut rng = Prng(seed);
    Box::new(move || rng.next())
}

/// The application used by the tests: collects what it reads, answers "HELLO" once a request
/// ends with a blank line (and closes first if the request starts with "CLOSE"), and closes
/// when the peer does.
#[derive(Default)]
pub(super) struct App {
    received: Vec<u8>,
    pub(super) replied: bool,
    /// A wake-up the application asked for (see `ConnApp::wake_at`).
    wake: Option<Instant>,
}

impl ConnApp for App {
    fn reset(&mut self) {
        self.received.clear();
        self.replied = false;
        self.wake = None;
    }

    fn wake_at(&self) -> Option<Instant> {
        self.wake
    }

    fn is_idle(&self) -> bool {
        self.replied
    }
}

fn serve(conn: Conn<'_, App>) {
    let Conn { socket, state } = conn;
    while socket.can_recv() {
        let _ = socket.recv(|data| {
            state.received.extend_from_slice(data);
            (data.len(), ())
        });
    }
    if !state.replied && state.received.ends_with(b"\r\n\r\n") {
        state.replied = true;
        let _ = socket.send_slice(b"HELLO");
        if state.received.starts_with(b"CLOSE") {
            // An active close from our side, as after `Connection: close`.
            socket.close();
        }
    }
    if socket.state() == TcpState::CloseWait {
        socket.close();
    }
}

/// A sink that keeps frames, with an optional room limit.
pub(super) struct Wire {
    pub(super) frames: Vec<Vec<u8>>,
    room: usize,
}

impl Wire {
    pub(super) fn new() -> Self {
        Wire {
            frames: Vec::new(),
            room: usize::MAX,
        }
    }
}

impl TxSink for Wire {
    fn has_room(&self) -> bool {
        self.room > 0
    }
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if self.room == 0 {
            return false;
        }
        self.room -= 1;
        let mut buf = vec![0; len];
        fill(&mut buf);
        self.frames.push(buf);
        true
    }
}

/// `len` copies of `byte`, as a buffer a socket sends from by reference: answers larger than
/// the default send buffer.
pub(super) fn repeated(byte: u8, len: usize) -> std::sync::Arc<dyn crate::SharedPayload> {
    struct Repeated(Vec<u8>);
    impl crate::SharedPayload for Repeated {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }
    std::sync::Arc::new(Repeated(vec![byte; len]))
}

fn config() -> StackConfig {
    StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_IP, 24), PORT)
}

fn stack_with(config: StackConfig) -> Stack<App> {
    Stack::new(config, seeds(0x5eed)).unwrap()
}

/// One serve_ready + egress round; returns what was sent.
pub(super) fn pump(stack: &mut Stack<App>, now: Instant) -> Vec<Vec<u8>> {
    stack.serve_ready(now, &mut serve);
    let mut wire = Wire::new();
    stack.poll_egress(now, &mut wire);
    wire.frames
}

pub(super) fn ipv4_frame(
    src_mac: EthernetAddress,
    src_ip: Ipv4Address,
    proto: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: OUR_IP,
        next_header: proto,
        payload_len,
        hop_limit: 64,
    };
    let mut frame = vec![0u8; 14 + 20 + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame);
    eth.set_dst_addr(OUR_MAC);
    eth.set_src_addr(src_mac);
    eth.set_ethertype(EthernetProtocol::Ipv4);
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..34]),
        &ChecksumCapabilities::default(),
    );
    emit(&mut frame[34..]);
    frame
}

/// A scripted TCP peer.
#[derive(Clone, Copy)]
struct Peer {
    mac: EthernetAddress,
    ip: Ipv4Address,
    port: u16,
    /// Next sequence number we send.
    seq: u32,
    /// Next sequence number we expect from the stack.
    ack: u32,
}

impl Peer {
    fn new(port: u16) -> Self {
        Peer {
            mac: PEER_MAC,
            ip: PEER_IP,
            port,
            seq: 1000,
            ack: 0,
        }
    }

    fn segment(
        &self,
        dst_port: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: self.port,
            dst_port,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 65535,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let (src, dst) = (IpAddress::Ipv4(self.ip), IpAddress::Ipv4(OUR_IP));
        ipv4_frame(
            self.mac,
            self.ip,
            IpProtocol::Tcp,
            repr.buffer_len(),
            |buf| {
                repr.emit(
                    &mut TcpPacket::new_unchecked(buf),
                    &src,
                    &dst,
                    &ChecksumCapabilities::default(),
                )
            },
        )
    }

    fn syn(&self) -> Vec<u8> {
        self.segment(PORT, TcpControl::Syn, self.seq, None, &[])
    }

    /// Consumes the SYN-ACK and returns the final ACK of the handshake.
    fn ack_syn(&mut self, synack: &Seg) -> Vec<u8> {
        assert_eq!(synack.control, TcpControl::Syn);
        assert_eq!(synack.ack, Some(self.seq + 1));
        self.seq += 1;
        self.ack = synack.seq + 1;
        self.segment(PORT, TcpControl::None, self.seq, Some(self.ack), &[])
    }

    fn data(&mut self, payload: &[u8]) -> Vec<u8> {
        let f = self.segment(PORT, TcpControl::Psh, self.seq, Some(self.ack), payload);
        self.seq += payload.len() as u32;
        f
    }

    fn fin(&mut self) -> Vec<u8> {
        let f = self.segment(PORT, TcpControl::Fin, self.seq, Some(self.ack), &[]);
        self.seq += 1;
        f
    }

    fn ack_now(&self) -> Vec<u8> {
        self.segment(PORT, TcpControl::None, self.seq, Some(self.ack), &[])
    }
}

/// A TCP segment the stack sent, checked and decoded.
#[derive(Debug)]
struct Seg {
    eth_dst: EthernetAddress,
    ip_dst: Ipv4Address,
    dst_port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: Vec<u8>,
}

fn parse_tcp(frame: &[u8]) -> Seg {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), OUR_MAC);
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 checksum");
    assert_eq!(ip.src_addr(), OUR_IP);
    assert_eq!(ip.next_header(), IpProtocol::Tcp);
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
    let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    Seg {
        eth_dst: eth.dst_addr(),
        ip_dst: ip.dst_addr(),
        dst_port: repr.dst_port,
        control: repr.control,
        seq: repr.seq_number.0 as u32,
        ack: repr.ack_number.map(|a| a.0 as u32),
        payload: repr.payload.to_vec(),
    }
}

fn only_tcp(frames: &[Vec<u8>]) -> Seg {
    assert_eq!(frames.len(), 1, "expected exactly one frame");
    parse_tcp(&frames[0])
}

/// SYN, SYN-ACK, ACK. Returns the peer ready to send data.
fn connect(stack: &mut Stack<App>, peer: &mut Peer, now: Instant) {
    stack.handle_frame(now, &peer.syn());
    let synack = only_tcp(&pump(stack, now));
    assert_eq!(
        synack.eth_dst, peer.mac,
        "SYN-ACK goes to the SYN's source MAC"
    );
    assert_eq!(synack.ip_dst, peer.ip);
    let ack = peer.ack_syn(&synack);
    stack.handle_frame(now, &ack);
    assert!(
        pump(stack, now).is_empty(),
        "nothing to send after the handshake"
    );
}

#[test]
fn config_is_validated() {
    let bad = |f: fn(&mut StackConfig)| {
        let mut c = config();
        f(&mut c);
        Stack::<App>::new(c, seeds(1)).err()
    };
    assert_eq!(
        bad(|c| c.max_connections = 0),
        Some(ConfigError::NoConnections)
    );
    assert_eq!(bad(|c| c.mtu = 100), Some(ConfigError::Mtu(100)));
    assert_eq!(bad(|c| c.port = 0), Some(ConfigError::Port));
    assert!(matches!(
        bad(|c| c.rx_buffer = 10),
        Some(ConfigError::Buffer { which: "rx", .. })
    ));
    assert!(matches!(
        bad(|c| c.ipv4 = Some(Ipv4Cidr::new(Ipv4Address::BROADCAST, 24))),
        Some(ConfigError::Ipv4NotUnicast(_))
    ));
    assert_eq!(bad(|c| c.ipv4 = None), Some(ConfigError::NoAddress));
    for bad_v6 in ["::", "::1", "ff02::1", "fe80::1", "::ffff:198.18.0.1"] {
        let addr: Ipv6Address = bad_v6.parse().unwrap();
        let mut c = config();
        c.ipv6.push(Ipv6Cidr::new(addr, 64));
        assert_eq!(
            Stack::<App>::new(c, seeds(1)).err(),
            Some(ConfigError::Ipv6NotUnicast(addr)),
            "{bad_v6}"
        );
    }
    let mut c = config();
    c.ipv6 = (1..=4)
        .map(|n| Ipv6Cidr::new(Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, n), 64))
        .collect();
    assert_eq!(
        Stack::<App>::new(c, seeds(1)).err(),
        Some(ConfigError::TooManyIpv6 { count: 4, max: 3 })
    );
    assert!(matches!(
        bad(|c| c.mac = EthernetAddress::BROADCAST),
        Some(ConfigError::MacNotUnicast(_))
    ));
    assert!(bad(|_| {}).is_none());
}

fn arp_request(target: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let mut frame = vec![0u8; 14 + arp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame);
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_src_addr(PEER_MAC);
    eth.set_ethertype(EthernetProtocol::Arp);
    arp.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    frame
}

#[test]
fn arp_request_for_us_gets_exact_reply() {
    let mut stack = stack_with(config());
    stack.handle_frame(t(0), &arp_request(OUR_IP));
    assert_eq!(
        stack.poll_at(),
        Some(t(0)),
        "a staged reply wants egress now"
    );
    let frames = pump(&mut stack, t(0));
    assert_eq!(frames.len(), 1);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        // Ethernet: to the requester, from us, ARP.
        0x02, 0, 0, 0, 0, 0x02,  0x02, 0, 0, 0, 0, 0x01,  0x08, 0x06,
        // htype 1, ptype IPv4, hlen 6, plen 4, op 2 (reply)
        0, 1, 0x08, 0x00, 6, 4, 0, 2,
        // sender: our MAC and IP
        0x02, 0, 0, 0, 0, 0x01,  198, 18, 0, 1,
        // target: the requester
        0x02, 0, 0, 0, 0, 0x02,  198, 18, 0, 2,
    ];
    assert_eq!(frames[0], expected);
    assert_eq!(stack.counters().arp_replies, 1);
    assert_eq!(stack.poll_at(), None);
}

#[test]
fn arp_for_another_ip_is_dropped() {
    let mut stack = stack_with(config());
    stack.handle_frame(t(0), &arp_request(Ipv4Address::new(198, 18, 0, 77)));
    assert!(pump(&mut stack, t(0)).is_empty());
    assert_eq!(stack.counters().drop_arp_not_for_us, 1);
    assert_eq!(stack.counters().total_dropped(), 1);
}

#[test]
fn icmp_echo_is_answered_with_same_payload() {
    let mut stack = stack_with(config());
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let req = Icmpv4Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: &data,
    };
    let frame = ipv4_frame(
        PEER_MAC,
        PEER_IP,
        IpProtocol::Icmp,
        req.buffer_len(),
        |buf| {
            req.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            )
        },
    );
    stack.handle_frame(t(0), &frame);
    let frames = pump(&mut stack, t(0));
    assert_eq!(frames.len(), 1);
    let eth = EthernetFrame::new_checked(&frames[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), PEER_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (OUR_IP, PEER_IP));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(
        Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap(),
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: &data,
        }
    );
    assert_eq!(stack.counters().icmp_echo_replies, 1);
}

#[test]
fn bad_frames_are_counted_by_reason() {
    let mut stack = stack_with(config());
    let peer = Peer::new(40000);
    let good = peer.syn();

    // Truncated Ethernet.
    stack.handle_frame(t(0), &good[..10]);
    // Not for our MAC.
    let mut other_mac = good.clone();
    other_mac[0..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    stack.handle_frame(t(0), &other_mac);
    // Group source MAC.
    let mut group_src = good.clone();
    group_src[6] |= 0x01;
    stack.handle_frame(t(0), &group_src);
    // Unknown ethertype.
    let mut unknown = good.clone();
    unknown[12..14].copy_from_slice(&[0x88, 0xb5]);
    stack.handle_frame(t(0), &unknown);
    // IPv6.
    let mut v6 = good.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    stack.handle_frame(t(0), &v6);
    // Truncated IPv4: total length says more than the frame holds.
    stack.handle_frame(t(0), &good[..30]);
    stack.handle_frame(t(0), &good[..good.len() - 4]);
    // Bad IPv4 checksum.
    let mut bad_ip = good.clone();
    bad_ip[14 + 10] ^= 0xff;
    stack.handle_frame(t(0), &bad_ip);
    // Fragment (MF set), checksum fixed so only the fragment rule applies.
    let mut frag = good.clone();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frag[14..]);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    stack.handle_frame(t(0), &frag);
    // Truncated TCP: IP total length cut to 30 (10 bytes of TCP), checksum fixed.
    let mut short_tcp = good.clone();
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut short_tcp[14..]);
        ip.set_total_len(30);
        ip.fill_checksum();
    }
    stack.handle_frame(t(0), &short_tcp);
    // Bad TCP checksum.
    let mut bad_tcp = good.clone();
    bad_tcp[34 + 16] ^= 0x55;
    stack.handle_frame(t(0), &bad_tcp);

    assert!(pump(&mut stack, t(0)).is_empty(), "no answer to garbage");
    let c = stack.counters();
    assert_eq!(c.drop_eth_truncated, 1);
    assert_eq!(c.drop_eth_not_for_us, 1);
    assert_eq!(c.drop_eth_bad_source, 1);
    assert_eq!(c.drop_ethertype_unknown, 1);
    assert_eq!(c.drop_ipv6, 1);
    assert_eq!(c.drop_ipv4_malformed, 2);
    assert_eq!(c.drop_ipv4_checksum, 1);
    assert_eq!(c.drop_ipv4_fragment, 1);
    assert_eq!(c.drop_tcp_malformed, 1);
    assert_eq!(c.drop_tcp_checksum, 1);
    assert_eq!(c.total_dropped(), 11);
    assert_eq!(c.rx_frames, 11);
    assert_eq!(stack.connections(), 0);
}

#[test]
fn syn_to_closed_port_gets_rst_ack() {
    let mut stack = stack_with(config());
    let peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.segment(81, TcpControl::Syn, 5000, None, &[]));
    let rst = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(rst.control, TcpControl::Rst);
    // RFC 9293 §3.10.7.1: no ACK in the segment -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>.
    assert_eq!(rst.seq, 0);
    assert_eq!(rst.ack, Some(5001));
    assert_eq!(rst.dst_port, 40000);
    assert_eq!(rst.eth_dst, PEER_MAC);
    assert_eq!(stack.counters().drop_tcp_port_closed, 1);
    assert_eq!(stack.counters().rst_sent, 1);
    assert_eq!(stack.connections(), 0);
}

#[test]
fn unknown_flow_gets_rst_but_rst_gets_nothing() {
    let mut stack = stack_with(config());
    let peer = Peer::new(40000);
    stack.handle_frame(
        t(0),
        &peer.segment(PORT, TcpControl::None, 7, Some(123_456), b"x"),
    );
    let rst = only_tcp(&pump(&mut stack, t(0)));
    // ACK bit on -> <SEQ=SEG.ACK><CTL=RST>.
    assert_eq!(
        (rst.control, rst.seq, rst.ack),
        (TcpControl::Rst, 123_456, None)
    );
    stack.handle_frame(t(0), &peer.segment(PORT, TcpControl::Rst, 7, None, &[]));
    assert!(pump(&mut stack, t(0)).is_empty(), "never RST an RST");
    assert_eq!(stack.counters().drop_tcp_no_flow, 2);
    assert_eq!(stack.counters().rst_sent, 1);
}

#[test]
fn full_exchange_then_close_recycles_the_cell() {
    let mut stack = stack_with(config());
    let mut peer = Peer::new(40000);
    connect(&mut stack, &mut peer, t(0));
    assert_eq!(stack.connections(), 1);
    assert_eq!(stack.counters().syn_accepted, 1);

    stack.handle_frame(t(1), &peer.data(b"GET / HTTP/1.1\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(1)));
    assert_eq!(reply.payload, b"HELLO");
    assert_eq!(reply.seq, peer.ack);
    assert_eq!(
        reply.ack,
        Some(peer.seq),
        "the request is acknowledged with the response"
    );
    peer.ack += reply.payload.len() as u32;

    // Peer closes; the app closes in turn (CLOSE-WAIT -> LAST-ACK).
    stack.handle_frame(t(2), &peer.fin());
    let fin = only_tcp(&pump(&mut stack, t(2)));
    assert_eq!(fin.control, TcpControl::Fin);
    assert_eq!(fin.ack, Some(peer.seq));
    peer.ack += 1;
    stack.handle_frame(t(3), &peer.ack_now());
    assert!(pump(&mut stack, t(3)).is_empty());
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().connections_closed, 1);
    assert_eq!(stack.poll_at(), None, "an idle stack has nothing pending");

    // The same peer port again: a segment of the old connection now meets no flow.
    stack.handle_frame(t(4), &peer.ack_now());
    assert_eq!(only_tcp(&pump(&mut stack, t(4))).control, TcpControl::Rst);

    // A new connection reuses the pooled cell with fresh application state.
    let mut second = Peer::new(40001);
    connect(&mut stack, &mut second, t(5));
    stack.handle_frame(t(6), &second.data(b"X"));
    let mut seen = Vec::new();
    stack.serve_ready(t(6), &mut |conn: Conn<'_, App>| {
        let Conn { socket, state } = conn;
        serve(Conn {
            socket,
            state: &mut *state,
        });
        seen = state.received.clone();
    });
    assert_eq!(seen, b"X", "A::reset ran before the cell was reused");
    let key = FlowKey {
        peer_ip: PEER_IP.into(),
        peer_port: 40001,
        local: 0,
    };
    assert_eq!(
        stack.flows.get(&key),
        Some(FlowEntry::Cell(0)),
        "the freed cell was reused first"
    );
}

#[test]
fn pool_exhausted_handshake_gets_rst() {
    let mut c = config();
    c.max_connections = 1;
    let mut stack = stack_with(c);
    let mut first = Peer::new(40000);
    connect(&mut stack, &mut first, t(0));
    // The SYN is answered (it takes no cell); the final ACK finds none and gets an RST.
    let mut second = Peer::new(40001);
    stack.handle_frame(t(1), &second.syn());
    let synack = only_tcp(&pump(&mut stack, t(1)));
    stack.handle_frame(t(1), &second.ack_syn(&synack));
    let rst = only_tcp(&pump(&mut stack, t(1)));
    assert_eq!(rst.control, TcpControl::Rst);
    assert_eq!(rst.dst_port, 40001);
    assert_eq!(rst.seq, second.ack);
    assert_eq!(stack.counters().syn_refused_full, 1);
    assert_eq!(stack.connections(), 1);
}

#[test]
fn draining_refuses_new_connections_and_hands_every_open_one_to_the_app() {
    let mut stack = stack_with(config());
    let mut open = Peer::new(40000);
    connect(&mut stack, &mut open, t(0));
    // A handshake half done when the stop begins.
    let mut halfway = Peer::new(40001);
    stack.handle_frame(t(1), &halfway.syn());
    let synack = only_tcp(&pump(&mut stack, t(1)));

    stack.begin_drain();
    assert!(stack.is_draining());
    let mut handed = 0;
    stack.serve_ready(t(2), &mut |_conn| handed += 1);
    assert_eq!(
        handed, 1,
        "the open connection is handed to the application"
    );

    let fresh = Peer::new(40002);
    stack.handle_frame(t(3), &fresh.syn());
    let rst = only_tcp(&pump(&mut stack, t(3)));
    assert_eq!((rst.control, rst.dst_port), (TcpControl::Rst, 40002));
    stack.handle_frame(t(3), &halfway.ack_syn(&synack));
    let rst = only_tcp(&pump(&mut stack, t(3)));
    assert_eq!((rst.control, rst.dst_port), (TcpControl::Rst, 40001));
    assert_eq!(stack.counters().syn_refused_draining, 2);
    assert_eq!(stack.connections(), 1);

    // The open connection is served as before.
    stack.handle_frame(t(4), &open.data(b"GET\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(4)));
    assert_eq!(reply.payload, b"HELLO");
}

#[test]
fn a_syn_takes_no_cell_until_the_final_ack() {
    let mut stack = stack_with(config());
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().syn_cache_entries, 1);
    stack.handle_frame(t(30), &peer.ack_syn(&synack));
    assert!(pump(&mut stack, t(30)).is_empty());
    assert_eq!(stack.connections(), 1);
    assert_eq!(stack.counters().syn_cache_entries, 0);
    assert_eq!(stack.counters().syn_accepted, 1);
    assert_eq!(stack.counters().syncookies_valid, 0);
    stack.handle_frame(t(40), &peer.data(b"GET\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(40)));
    assert_eq!(reply.payload, b"HELLO");
    assert_eq!(reply.seq, synack.seq + 1);
}

#[test]
fn retransmitted_syn_gets_the_same_synack() {
    let mut stack = stack_with(config());
    let peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let first = only_tcp(&pump(&mut stack, t(0)));
    stack.handle_frame(t(500), &peer.syn());
    let again = only_tcp(&pump(&mut stack, t(500)));
    assert_eq!(first.control, TcpControl::Syn);
    assert_eq!((again.control, again.seq), (TcpControl::Syn, first.seq));
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().syn_cache_entries, 1);
    assert_eq!(stack.counters().synack_retransmits, 0);
    // A SYN with another ISN starts the handshake over.
    let mut restarted = peer;
    restarted.seq += 5000;
    stack.handle_frame(t(600), &restarted.syn());
    let fresh = only_tcp(&pump(&mut stack, t(600)));
    assert_eq!(fresh.ack, Some(restarted.seq + 1));
    assert_eq!(stack.counters().syn_cache_entries, 1);
}

#[test]
fn handshake_timeout_forgets_the_half_open_connection() {
    let mut c = config();
    c.handshake_timeout = Duration::from_secs(3);
    let mut stack = stack_with(c);
    let peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    assert_eq!(only_tcp(&pump(&mut stack, t(0))).control, TcpControl::Syn);
    // The peer never ACKs. Follow poll_at like the server loop does.
    let mut now = t(0);
    let mut synacks = 0;
    while let Some(at) = stack.poll_at() {
        assert!(
            at <= t(3_000) + Duration::from_millis(1),
            "deadline past the timeout"
        );
        now = at.max(now);
        for f in pump(&mut stack, now) {
            match parse_tcp(&f).control {
                TcpControl::Syn => synacks += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(synacks, 1, "the SYN-ACK is sent again at 1 s, not at 3 s");
    assert!(now >= t(3_000));
    assert_eq!(stack.counters().handshake_timeouts, 1);
    assert_eq!(stack.counters().syn_cache_entries, 0);
    assert_eq!(
        stack.counters().connections_closed,
        0,
        "it never had a cell"
    );
}

#[test]
fn syn_ack_is_retransmitted_on_linuxs_schedule() {
    // Linux (tcp_synack_retries = 5) resends a SYN-ACK 1, 2, 4, 8 and 16 s after the one
    // before, then waits 32 s more: 63 s, the default handshake timeout. Then it forgets the
    // request without a word, and so do we.
    let mut stack = stack_with(config());
    assert_eq!(config().handshake_timeout, Duration::from_secs(63));
    let peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    assert_eq!(only_tcp(&pump(&mut stack, t(0))).control, TcpControl::Syn);
    let mut now = t(0);
    let mut synacks = vec![];
    while let Some(at) = stack.poll_at() {
        now = at.max(now);
        for f in pump(&mut stack, now) {
            match parse_tcp(&f).control {
                TcpControl::Syn => synacks.push(now),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let secs: Vec<i64> = synacks.iter().map(|at| at.total_millis() / 1000).collect();
    assert_eq!(secs, [1, 3, 7, 15, 31], "SYN-ACKs resent at");
    assert_eq!(now.total_millis() / 1000, 63, "forgotten at");
    assert_eq!(stack.counters().handshake_timeouts, 1);
    assert_eq!(stack.counters().synack_retransmits, 5);
}

/// A SYN with options, as real clients send.
fn syn_with(peer: &Peer, mss: u16, wscale: Option<u8>, sack: bool) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: peer.port,
        dst_port: PORT,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(peer.seq as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: wscale,
        max_seg_size: Some(mss),
        sack_permitted: sack,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let (src, dst) = (IpAddress::Ipv4(peer.ip), IpAddress::Ipv4(OUR_IP));
    ipv4_frame(
        peer.mac,
        peer.ip,
        IpProtocol::Tcp,
        repr.buffer_len(),
        |buf| {
            repr.emit(
                &mut TcpPacket::new_unchecked(buf),
                &src,
                &dst,
                &ChecksumCapabilities::default(),
            )
        },
    )
}

/// The options of a SYN-ACK the stack sent: (MSS, window scale, SACK permitted, window).
fn synack_options(frame: &[u8]) -> (Option<u16>, Option<u8>, bool, u16) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let (src, dst) = (IpAddress::Ipv4(OUR_IP), IpAddress::Ipv4(ip.dst_addr()));
    let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(repr.control, TcpControl::Syn);
    (
        repr.max_seg_size,
        repr.window_scale,
        repr.sack_permitted,
        repr.window_len,
    )
}

#[test]
fn the_synack_offers_what_the_cells_use() {
    let mut c = config();
    c.rx_buffer = 1 << 20;
    let mut stack = stack_with(c);
    let peer = Peer::new(40000);
    stack.handle_frame(t(0), &syn_with(&peer, 1400, Some(7), true));
    let frames = pump(&mut stack, t(0));
    // 1 MiB needs a shift of 5 (smoltcp's rule); the window field of a SYN is not scaled.
    assert_eq!(
        synack_options(&frames[0]),
        (Some(1460), Some(5), true, 65535)
    );
    // No scale offered: none back; SACK off in the config: not offered. The window is the
    // whole (default, 2 KiB) receive buffer.
    let mut c = config();
    c.tcp.sack = false;
    let mut stack = stack_with(c);
    stack.handle_frame(t(0), &syn_with(&peer, 536, None, true));
    let frames = pump(&mut stack, t(0));
    assert_eq!(synack_options(&frames[0]), (Some(1460), None, false, 2048));
}

#[test]
fn a_full_syn_cache_answers_with_cookies_that_open_connections() {
    let mut c = config();
    c.syn_cache_size = 1;
    let mut stack = stack_with(c);
    let mut cached = Peer::new(40000);
    let mut cookie_only = Peer::new(40001);
    stack.handle_frame(t(0), &syn_with(&cached, 1460, Some(7), true));
    let synack_a = only_tcp(&pump(&mut stack, t(0)));
    stack.handle_frame(t(0), &syn_with(&cookie_only, 1400, Some(7), true));
    let synack_b = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(stack.counters().syn_cache_overflow, 1);
    assert_eq!(stack.counters().syncookies_sent, 1);
    assert_eq!(stack.counters().syn_cache_entries, 1);
    // The cookie-only handshake never resends its SYN-ACK: nothing remembers it.
    let mut now = t(0);
    while now < t(1_500) {
        now += Duration::from_millis(100);
        for f in pump(&mut stack, now) {
            assert_eq!(
                parse_tcp(&f).dst_port,
                40000,
                "only the cached one is resent"
            );
        }
    }
    for (peer, synack) in [(&mut cookie_only, &synack_b), (&mut cached, &synack_a)] {
        stack.handle_frame(now, &peer.ack_syn(synack));
        stack.handle_frame(now, &peer.data(b"GET\r\n\r\n"));
        let reply = only_tcp(&pump(&mut stack, now));
        assert_eq!(reply.payload, b"HELLO");
        assert_eq!(reply.ack, Some(peer.seq));
    }
    assert_eq!(stack.counters().syncookies_valid, 1);
    assert_eq!(stack.connections(), 2);
}

#[test]
fn a_final_ack_after_the_entry_expired_opens_through_its_cookie() {
    let mut c = config();
    c.handshake_timeout = Duration::from_secs(3);
    let mut stack = stack_with(c);
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    let mut now = t(0);
    while now < t(5_000) {
        now += Duration::from_millis(100);
        let _ = pump(&mut stack, now);
    }
    assert_eq!(stack.counters().handshake_timeouts, 1);
    assert_eq!(stack.counters().syn_cache_entries, 0);
    stack.handle_frame(now, &peer.ack_syn(&synack));
    assert_eq!(stack.connections(), 1);
    assert_eq!(stack.counters().syncookies_valid, 1);
    stack.handle_frame(now, &peer.data(b"GET\r\n\r\n"));
    assert_eq!(only_tcp(&pump(&mut stack, now)).payload, b"HELLO");
}

#[test]
fn forged_and_stale_acks_get_rst_and_no_cell() {
    let mut stack = stack_with(config());
    let mut peer = Peer::new(40000);
    // A blind ACK with a guessed cookie.
    peer.seq += 1;
    peer.ack = 0x1234_5678;
    stack.handle_frame(t(0), &peer.ack_now());
    let rst = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(rst.control, TcpControl::Rst);
    assert_eq!(stack.counters().syncookies_invalid, 1);
    // A real SYN-ACK's cookie, replayed after the key rotated twice.
    let mut late = Peer::new(40001);
    stack.handle_frame(t(0), &syn_with(&late, 1460, None, false));
    let synack = only_tcp(&pump(&mut stack, t(0)));
    let ack = late.ack_syn(&synack);
    let mut now = t(0);
    while now < t(130_000) {
        now += Duration::from_secs(1);
        let _ = pump(&mut stack, now);
    }
    stack.handle_frame(now, &ack);
    assert_eq!(only_tcp(&pump(&mut stack, now)).control, TcpControl::Rst);
    assert_eq!(stack.counters().syncookies_invalid, 2);
    assert_eq!(stack.connections(), 0);
}

#[test]
fn a_segment_with_neither_syn_nor_ack_gets_nothing() {
    // RFC 9293 §3.10.7.2: LISTEN drops it; Linux sends no RST either.
    let mut stack = stack_with(config());
    let peer = Peer::new(40000);
    for control in [TcpControl::None, TcpControl::Fin, TcpControl::Psh] {
        stack.handle_frame(t(0), &peer.segment(PORT, control, 5, None, b"data"));
    }
    assert!(pump(&mut stack, t(0)).is_empty());
    assert_eq!(stack.counters().drop_tcp_no_ack, 3);
    assert_eq!(stack.counters().rst_sent, 0);
}

#[test]
fn a_peer_address_gets_at_most_its_share_of_connections() {
    let mut c = config();
    c.max_connections_per_ip = Some(2);
    let mut stack = stack_with(c);
    let mut peers: Vec<Peer> = (0..3).map(|i| Peer::new(40000 + i)).collect();
    for peer in &mut peers[..2] {
        connect(&mut stack, peer, t(0));
    }
    let third = &mut peers[2];
    stack.handle_frame(t(0), &third.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    stack.handle_frame(t(0), &third.ack_syn(&synack));
    assert_eq!(only_tcp(&pump(&mut stack, t(0))).control, TcpControl::Rst);
    assert_eq!(stack.counters().conn_limit_per_ip, 1);
    // Another address is not limited.
    let mut other = Peer::new(40000);
    other.ip = Ipv4Address::new(198, 18, 0, 3);
    connect(&mut stack, &mut other, t(0));
    assert_eq!(stack.connections(), 3);
    // When one of the first two goes, the address may connect again.
    stack.handle_frame(t(10), &peers[0].fin());
    let fin = pump(&mut stack, t(10))
        .iter()
        .map(|f| parse_tcp(f))
        .find(|seg| seg.control == TcpControl::Fin)
        .unwrap();
    peers[0].ack = fin.seq + 1;
    stack.handle_frame(t(11), &peers[0].ack_now());
    let _ = pump(&mut stack, t(11));
    assert_eq!(stack.connections(), 2);
    let mut fourth = Peer::new(40010);
    fourth.seq = 9000;
    connect(&mut stack, &mut fourth, t(20));
    assert_eq!(stack.counters().conn_limit_per_ip, 1);
}

#[test]
fn the_longest_idle_keep_alive_connection_makes_room() {
    let mut c = config();
    c.max_connections = 2;
    let mut stack = stack_with(c);
    let mut a = Peer::new(40000);
    let mut b = Peer::new(40001);
    connect(&mut stack, &mut a, t(0));
    connect(&mut stack, &mut b, t(0));
    assert_eq!(stack.idle_connections(), 0);
    // Both served once (and their answers acknowledged): idle between requests, `a` longer.
    for (peer, at) in [(&mut a, 10), (&mut b, 20)] {
        stack.handle_frame(t(at), &peer.data(b"GET\r\n\r\n"));
        let reply = only_tcp(&pump(&mut stack, t(at)));
        peer.ack = reply.seq + reply.payload.len() as u32;
        stack.handle_frame(t(at + 1), &peer.ack_now());
        let _ = pump(&mut stack, t(at + 1));
    }
    assert_eq!(stack.idle_connections(), 2);
    let mut c = Peer::new(40002);
    stack.handle_frame(t(30), &c.syn());
    let synack = only_tcp(&pump(&mut stack, t(30)));
    stack.handle_frame(t(30), &c.ack_syn(&synack));
    let frames = pump(&mut stack, t(30));
    let rst = only_tcp(&frames);
    assert_eq!((rst.control, rst.dst_port), (TcpControl::Rst, 40000));
    assert_eq!(stack.counters().idle_evicted, 1);
    assert_eq!(stack.connections(), 2);
    assert_eq!(stack.idle_connections(), 1, "b is still idle; c is not yet");
    stack.handle_frame(t(40), &c.data(b"GET\r\n\r\n"));
    assert_eq!(only_tcp(&pump(&mut stack, t(40))).payload, b"HELLO");
}

#[test]
fn challenge_acks_are_limited_host_wide() {
    let mut c = config();
    c.challenge_ack_limit = 1;
    let mut stack = stack_with(c);
    let mut peers: Vec<Peer> = (0..2).map(|i| Peer::new(40000 + i)).collect();
    for peer in &mut peers {
        connect(&mut stack, peer, t(0));
    }
    // A blind RST in the window, not exact, against each: one challenge ACK in the second.
    for peer in &peers {
        stack.handle_frame(
            t(100),
            &peer.segment(PORT, TcpControl::Rst, peer.seq + 100, None, &[]),
        );
    }
    let frames = pump(&mut stack, t(100));
    let challenge = only_tcp(&frames);
    assert_eq!(
        (challenge.control, challenge.ack),
        (TcpControl::None, Some(peers[0].seq))
    );
    assert_eq!(stack.counters().challenge_acks, 1);
    assert_eq!(stack.counters().challenge_acks_limited, 1);
    assert_eq!(stack.connections(), 2, "both connections live");
    // The next second, the allowance is back.
    stack.handle_frame(
        t(1_200),
        &peers[1].segment(PORT, TcpControl::Rst, peers[1].seq + 50, None, &[]),
    );
    assert_eq!(only_tcp(&pump(&mut stack, t(1_200))).dst_port, 40001);
    // The exact RST still resets.
    stack.handle_frame(
        t(1_300),
        &peers[1].segment(PORT, TcpControl::Rst, peers[1].seq, None, &[]),
    );
    let _ = pump(&mut stack, t(1_300));
    assert_eq!(stack.connections(), 1);
}

#[test]
fn idle_timeout_sends_rst_and_recycles() {
    let mut c = config();
    c.idle_timeout = Duration::from_secs(5);
    let mut stack = stack_with(c);
    let mut peer = Peer::new(40000);
    connect(&mut stack, &mut peer, t(0));
    // Activity at 2 s pushes the deadline to 7 s.
    stack.handle_frame(t(2_000), &peer.data(b"partial"));
    let _ = pump(&mut stack, t(2_000));
    let deadline = stack.poll_at().unwrap();
    assert!(deadline <= t(7_000));
    assert!(pump(&mut stack, t(6_999)).is_empty());
    assert_eq!(stack.connections(), 1, "not idle yet");
    let mut now = t(6_999);
    let mut rst = None;
    while let Some(at) = stack.poll_at() {
        now = at.max(now);
        for f in pump(&mut stack, now) {
            let seg = parse_tcp(&f);
            if seg.control == TcpControl::Rst {
                rst = Some(seg);
            }
        }
    }
    let rst = rst.expect("the idle connection is reset");
    assert_eq!(rst.seq, peer.ack, "the RST is in the peer's window");
    assert!(now >= t(7_000));
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().idle_timeouts, 1);
}

#[test]
fn peer_outside_the_prefix_is_served_via_its_gateway_mac() {
    let mut stack = stack_with(config());
    let mut peer = Peer {
        mac: GATEWAY_MAC,
        ip: FAR_IP,
        ..Peer::new(50000)
    };
    connect(&mut stack, &mut peer, t(0));
    stack.handle_frame(t(1), &peer.data(b"GET /\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(1)));
    assert_eq!(reply.payload, b"HELLO");
    assert_eq!(reply.eth_dst, GATEWAY_MAC);
    assert_eq!(reply.ip_dst, FAR_IP);
}

#[test]
fn full_sink_loses_nothing() {
    let mut stack = stack_with(config());
    for _ in 0..3 {
        stack.handle_frame(t(0), &arp_request(OUR_IP));
    }
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let mut got = Vec::new();
    for _ in 0..10 {
        let mut wire = Wire {
            frames: Vec::new(),
            room: 1,
        };
        stack.serve_ready(t(0), &mut serve);
        stack.poll_egress(t(0), &mut wire);
        got.extend(wire.frames);
    }
    assert_eq!(
        got.len(),
        4,
        "three ARP replies and one SYN-ACK, one per call"
    );
    assert_eq!(stack.poll_at().map(|at| at > t(0)), Some(true));
    let synack = parse_tcp(&got[3]);
    let ack = peer.ack_syn(&synack);
    stack.handle_frame(t(1), &ack);
    let _ = pump(&mut stack, t(1));
    assert_eq!(stack.counters().tx_frames, 4);
}

#[test]
fn many_connections_are_independent() {
    let mut stack = stack_with(config());
    let mut peers: Vec<Peer> = (0..50).map(|i| Peer::new(41000 + i)).collect();
    for p in &mut peers {
        connect(&mut stack, p, t(0));
    }
    assert_eq!(stack.connections(), 50);
    for p in &mut peers {
        stack.handle_frame(t(1), &p.data(b"GET\r\n\r\n"));
    }
    let frames = pump(&mut stack, t(1));
    assert_eq!(frames.len(), 50);
    for f in &frames {
        assert_eq!(parse_tcp(f).payload, b"HELLO");
    }
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let mut c = config();
    c.max_connections = 8;
    let mut stack = stack_with(c);
    let mut rng = Prng(0xdead_beef);
    let mut peer = Peer::new(40000);
    let templates = [
        peer.syn(),
        peer.data(b"GET / HTTP/1.1\r\n\r\n"),
        peer.fin(),
        arp_request(OUR_IP),
    ];
    let mut now = t(0);
    for i in 0..5000u64 {
        let frame = if i.is_multiple_of(3) {
            let len = (rng.next() % 200) as usize;
            (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            let mut f = templates[(rng.next() % templates.len() as u64) as usize].clone();
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() as usize) % f.len();
                f[at] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(4) {
                f.truncate((rng.next() as usize) % (f.len() + 1));
            }
            // Keep some frames addressed to us so deeper layers get exercised.
            if f.len() >= 14 && rng.next().is_multiple_of(2) {
                f[0..6].copy_from_slice(&OUR_MAC.0);
            }
            f
        };
        stack.handle_frame(now, &frame);
        if i.is_multiple_of(7) {
            now += Duration::from_millis(rng.next() % 2_000);
            let _ = pump(&mut stack, now);
        }
    }
    let c = stack.counters();
    assert_eq!(c.rx_frames, 5000);
    assert!(stack.connections() <= 8);
}

#[test]
fn peer_rst_recycles_and_the_app_never_sees_the_dead_cell() {
    let mut stack = stack_with(config());
    let mut peer = Peer::new(40000);
    connect(&mut stack, &mut peer, t(0));
    stack.handle_frame(t(1), &peer.data(b"GET"));
    stack.handle_frame(
        t(1),
        &peer.segment(PORT, TcpControl::Rst, peer.seq, None, &[]),
    );
    let mut calls = 0;
    stack.serve_ready(t(1), &mut |_conn: Conn<'_, App>| calls += 1);
    assert_eq!(calls, 0, "a reset connection is not handed to the app");
    let mut wire = Wire::new();
    stack.poll_egress(t(1), &mut wire);
    assert!(wire.frames.is_empty(), "never answer an RST");
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().connections_closed, 1);
    stack.serve_ready(t(2), &mut |_conn: Conn<'_, App>| calls += 1);
    assert_eq!(calls, 0);
}

#[test]
fn verified_rx_checksums_are_trusted() {
    let mut c = config();
    c.rx_checksum_verified = true;
    let mut stack = stack_with(c);
    let peer = Peer::new(40000);
    let mut syn = peer.syn();
    syn[34 + 16] ^= 0x55; // TCP checksum: the driver said it checked, so it is not re-checked.
    stack.handle_frame(t(0), &syn);
    assert_eq!(only_tcp(&pump(&mut stack, t(0))).control, TcpControl::Syn);
    assert_eq!(stack.counters().drop_tcp_checksum, 0);
}

#[test]
fn the_application_is_called_back_at_its_own_deadline() {
    let mut stack = stack_with(config());
    let mut peer = Peer::new(40000);
    connect(&mut stack, &mut peer, t(0));
    stack.handle_frame(t(1_000), &peer.data(b"wake me"));
    // The application asks to be called at 5 s, with no segment to come.
    let mut calls = Vec::new();
    let pump_app = |stack: &mut Stack<App>, now: Instant, calls: &mut Vec<Instant>| {
        stack.serve_ready(now, &mut |conn: Conn<'_, App>| {
            calls.push(now);
            serve(Conn {
                socket: &mut *conn.socket,
                state: &mut *conn.state,
            });
            if conn.state.received == b"wake me" && conn.state.wake.is_none() && now < t(5_000) {
                conn.state.wake = Some(t(5_000));
            } else if conn.state.wake.is_some_and(|at| now >= at) {
                conn.state.wake = None;
                let _ = conn.socket.send_slice(b"WOKE");
            }
        });
        let mut wire = Wire::new();
        stack.poll_egress(now, &mut wire);
        wire.frames
    };
    let _ = pump_app(&mut stack, t(1_000), &mut calls);
    assert_eq!(calls, vec![t(1_000)]);
    assert!(stack.poll_at().is_some_and(|at| at <= t(5_000)));
    let mut now = t(1_000);
    let mut woke = None;
    for _ in 0..100 {
        let Some(at) = stack.poll_at() else { break };
        now = at.max(now);
        for frame in pump_app(&mut stack, now, &mut calls) {
            if parse_tcp(&frame).payload == b"WOKE" {
                woke = Some(now);
            }
        }
        if woke.is_some() {
            break;
        }
    }
    assert!(
        woke.is_some_and(|at| at >= t(5_000) && at < t(5_100)),
        "{woke:?}"
    );
    assert!(
        calls.iter().all(|&at| at == t(1_000) || at >= t(5_000)),
        "called early: {calls:?}"
    );
}

/// Our side closes first; the peer's FIN is acknowledged. Returns the peer, whose FIN the
/// stack has acknowledged, with the stack's cell already back in the pool.
fn close_from_our_side(stack: &mut Stack<App>, port: u16) -> (Peer, Vec<u8>) {
    let mut peer = Peer::new(port);
    connect(stack, &mut peer, t(0));
    stack.handle_frame(t(1), &peer.data(b"CLOSE\r\n\r\n"));
    let frames = pump(stack, t(1));
    let segs: Vec<Seg> = frames.iter().map(|f| parse_tcp(f)).collect();
    let payload: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(payload, b"HELLO");
    let last = segs.last().unwrap();
    assert_eq!(last.control, TcpControl::Fin, "{segs:?}");
    peer.ack = last.seq + last.payload.len() as u32 + 1;
    let fin = peer.fin();
    stack.handle_frame(t(2), &fin);
    let ack = only_tcp(&pump(stack, t(2)));
    assert_eq!(ack.control, TcpControl::None);
    assert_eq!((ack.seq, ack.ack), (peer.ack, Some(peer.seq)));
    (peer, fin)
}

#[test]
fn time_wait_frees_the_cell_and_a_tombstone_acks_a_retransmitted_fin() {
    let mut stack = stack_with(config());
    let (peer, fin) = close_from_our_side(&mut stack, 40000);
    assert_eq!(stack.connections(), 0, "TIME-WAIT holds no cell");
    assert_eq!(stack.counters().time_wait_entered, 1);
    assert_eq!(stack.counters().connections_closed, 1);
    assert_eq!(stack.time_wait_connections(), 1);

    // RFC 9293 §3.10.7.4: our ACK was lost, the peer sends its FIN again.
    stack.handle_frame(t(500), &fin);
    let ack = only_tcp(&pump(&mut stack, t(500)));
    assert_eq!(ack.control, TcpControl::None);
    assert_eq!((ack.seq, ack.ack), (peer.ack, Some(peer.seq)));
    assert_eq!(stack.counters().time_wait_acks, 1);

    // A duplicate ACK needs no answer, and a blind RST does not end TIME-WAIT.
    stack.handle_frame(t(501), &peer.ack_now());
    let blind = peer.segment(PORT, TcpControl::Rst, peer.seq + 7, None, &[]);
    stack.handle_frame(t(501), &blind);
    assert!(pump(&mut stack, t(501)).is_empty());
    assert_eq!(stack.counters().drop_tcp_time_wait, 2);
    assert_eq!(stack.counters().rst_sent, 0);

    // An old SYN (sequence below the old connection's) gets a challenge ACK, not a cell.
    let old = Peer::new(40000);
    stack.handle_frame(t(502), &old.syn());
    let challenge = only_tcp(&pump(&mut stack, t(502)));
    assert_eq!((challenge.seq, challenge.ack), (peer.ack, Some(peer.seq)));
    assert_eq!(stack.connections(), 0);

    // The retransmitted FIN restarted the 2 MSL timer at 500 ms; after it the tombstone is
    // gone and the FIN meets no flow.
    // Stray data just before then is out of the window: ACKed, without restarting the timer.
    let expiry = t(500) + stack.config().time_wait;
    let stray = peer.segment(PORT, TcpControl::Psh, peer.seq, Some(peer.ack), b"x");
    stack.handle_frame(expiry - Duration::from_millis(1), &stray);
    assert_eq!(
        only_tcp(&pump(&mut stack, expiry - Duration::from_millis(1))).control,
        TcpControl::None
    );
    stack.handle_frame(expiry, &fin);
    assert_eq!(only_tcp(&pump(&mut stack, expiry)).control, TcpControl::Rst);
    assert_eq!(stack.time_wait_connections(), 0);
}

#[test]
fn a_new_syn_above_the_old_sequence_takes_over_a_time_wait_flow() {
    let mut stack = stack_with(config());
    let (peer, _) = close_from_our_side(&mut stack, 40000);
    let mut next = Peer {
        seq: peer.seq + 100_000,
        ..Peer::new(40000)
    };
    connect(&mut stack, &mut next, t(10));
    assert_eq!(stack.connections(), 1);
    assert_eq!(stack.counters().time_wait_ended, 1);
    stack.handle_frame(t(11), &next.data(b"GET\r\n\r\n"));
    assert_eq!(only_tcp(&pump(&mut stack, t(11))).payload, b"HELLO");
}

#[test]
fn an_exact_rst_ends_time_wait_and_a_full_ring_evicts_the_oldest() {
    let mut c = config();
    c.time_wait_slots = 2;
    let mut stack = stack_with(c);
    let (peer, fin) = close_from_our_side(&mut stack, 40000);
    let rst = peer.segment(PORT, TcpControl::Rst, peer.seq, None, &[]);
    stack.handle_frame(t(3), &rst);
    assert!(pump(&mut stack, t(3)).is_empty());
    assert_eq!(stack.counters().time_wait_ended, 1);
    stack.handle_frame(t(4), &fin);
    assert_eq!(only_tcp(&pump(&mut stack, t(4))).control, TcpControl::Rst);

    // Three more closes into two slots: the first of them is evicted.
    let closed: Vec<(Peer, Vec<u8>)> = (1..=3)
        .map(|i| close_from_our_side(&mut stack, 40000 + i))
        .collect();
    assert_eq!(stack.counters().time_wait_evicted, 1);
    stack.handle_frame(t(5), &closed[0].1);
    assert_eq!(only_tcp(&pump(&mut stack, t(5))).control, TcpControl::Rst);
    for (_, fin) in &closed[1..] {
        stack.handle_frame(t(5), fin);
        assert_eq!(only_tcp(&pump(&mut stack, t(5))).control, TcpControl::None);
    }
}

#[test]
fn a_stack_without_a_syn_cache_runs_on_cookies_alone() {
    let mut c = config();
    c.syn_cache_size = 0;
    let mut stack = stack_with(c);
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &syn_with(&peer, 1460, Some(7), true));
    let synack = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(stack.counters().syncookies_sent, 1);
    assert_eq!(
        stack.poll_at(),
        None,
        "nothing remembered, nothing to resend"
    );
    stack.handle_frame(t(50), &peer.ack_syn(&synack));
    stack.handle_frame(t(50), &peer.data(b"GET\r\n\r\n"));
    assert_eq!(only_tcp(&pump(&mut stack, t(50))).payload, b"HELLO");
    assert_eq!(stack.counters().syncookies_valid, 1);
}

/// A router on the way to the peer.
const ROUTER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 254);

/// A connection whose server sent a 6000-octet answer the peer has not acknowledged: returns
/// the peer and the data frames in flight.
fn connection_with_data_in_flight(stack: &mut Stack<App>, port: u16) -> (Peer, Vec<Vec<u8>>) {
    let mut peer = Peer::new(port);
    connect(stack, &mut peer, t(0));
    stack.handle_frame(t(1), &peer.data(b"GET / HTTP/1.1\r\n\r\n"));
    stack.serve_ready(t(1), &mut |conn: Conn<'_, App>| {
        let Conn { socket, state } = conn;
        while socket.can_recv() {
            let _ = socket.recv(|data| (data.len(), ()));
        }
        if !state.replied {
            state.replied = true;
            assert_eq!(socket.send_shared(repeated(b'x', 6000), 0, 6000), Ok(6000));
        }
    });
    let mut wire = Wire::new();
    stack.poll_egress(t(1), &mut wire);
    let sent: usize = wire.frames.iter().map(|f| parse_tcp(f).payload.len()).sum();
    assert_eq!(sent, 6000, "the whole answer leaves in the first window");
    // Four full-sized segments of 1460 octets, then 160.
    assert_eq!(wire.frames.len(), 5);
    assert!(wire.frames[..4].iter().all(|f| f.len() == 14 + 1500));
    (peer, wire.frames)
}

/// An ICMPv4 Destination Unreachable / Fragmentation Needed from a router, with next-hop
/// `mtu`, quoting `quote` (the start of a packet we sent: IPv4 header and more).
fn frag_needed(mtu: u16, quote: &[u8]) -> Vec<u8> {
    ipv4_frame(
        GATEWAY_MAC,
        ROUTER_IP,
        IpProtocol::Icmp,
        8 + quote.len(),
        |buf| {
            buf[0] = 3;
            buf[1] = 4;
            buf[6..8].copy_from_slice(&mtu.to_be_bytes());
            buf[8..].copy_from_slice(quote);
            Icmpv4Packet::new_unchecked(buf).fill_checksum();
        },
    )
}

/// The quote a router sends back (RFC 792): the IPv4 header and the first 8 octets of TCP.
fn quote_of(frame: &[u8]) -> Vec<u8> {
    frame[14..14 + 20 + 8].to_vec()
}

/// A quote of `frame` rewritten by `f` (IPv4 header bytes 0..20, then TCP).
fn forged_quote(frame: &[u8], f: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut quote = quote_of(frame);
    f(&mut quote);
    quote
}

#[test]
fn fragmentation_needed_lowers_the_mss_and_resends_in_smaller_frames() {
    // RFC 1191: a router on the path carries 1280 octets. The report quotes the first data
    // segment in flight; the stack resends everything in flight at once in frames that fit,
    // and what follows fits too.
    let mut stack = stack_with(config());
    let (mut peer, in_flight) = connection_with_data_in_flight(&mut stack, 40100);
    let first = parse_tcp(&in_flight[0]);
    stack.handle_frame(t(2), &frag_needed(1280, &quote_of(&in_flight[0])));
    assert_eq!(stack.counters().pmtu_lowered, 1);
    assert_eq!(stack.counters().total_dropped(), 0);
    let resent = pump(&mut stack, t(2));
    assert!(
        !resent.is_empty(),
        "the resend goes at once, not after a timeout"
    );
    assert!(
        resent.iter().all(|f| f.len() - 14 <= 1280),
        "every frame fits the path"
    );
    let segs: Vec<Seg> = resent.iter().map(|f| parse_tcp(f)).collect();
    assert_eq!(
        segs[0].seq, first.seq,
        "the resend starts at the oldest octet in flight"
    );
    let mut next = first.seq;
    for seg in &segs {
        assert_eq!(seg.seq, next, "the resends follow one another");
        next += seg.payload.len() as u32;
    }
    assert_eq!(next, first.seq + 6000, "everything in flight is resent");
    assert_eq!(stack.counters().tcp_timeouts, 0);
    assert_eq!(stack.counters().tcp_fast_recoveries, 0);

    // The peer acknowledges it all; the connection goes on with the smaller segments.
    peer.ack = next;
    stack.handle_frame(t(3), &peer.ack_now());
    stack.serve_ready(t(3), &mut |conn: Conn<'_, App>| {
        assert_eq!(
            conn.socket.send_shared(repeated(b'y', 3000), 0, 3000),
            Ok(3000)
        );
    });
    let mut wire = Wire::new();
    stack.poll_egress(t(3), &mut wire);
    assert!(wire.frames.len() >= 3);
    assert!(wire.frames.iter().all(|f| f.len() - 14 <= 1280));
}

#[test]
fn fragmentation_needed_from_an_old_router_uses_the_plateau_table() {
    // A next-hop MTU of 0: RFC 1191's plateau below the rejected 1500 octets, 1492.
    let mut stack = stack_with(config());
    let (_, in_flight) = connection_with_data_in_flight(&mut stack, 40101);
    stack.handle_frame(t(2), &frag_needed(0, &quote_of(&in_flight[1])));
    assert_eq!(stack.counters().pmtu_lowered, 1);
    let resent = pump(&mut stack, t(2));
    assert!(!resent.is_empty());
    assert!(resent.iter().all(|f| f.len() - 14 <= 1492));
    assert!(resent.iter().any(|f| f.len() - 14 > 1400));
}

#[test]
fn forged_or_useless_path_mtu_reports_change_nothing_and_are_counted() {
    let mut stack = stack_with(config());
    let (mut peer, in_flight) = connection_with_data_in_flight(&mut stack, 40102);
    let frame = &in_flight[0];
    let first_seq = parse_tcp(frame).seq;
    let set_seq = |seq: u32| move |q: &mut [u8]| q[24..28].copy_from_slice(&seq.to_be_bytes());
    let reports: Vec<(&str, Vec<u8>)> = vec![
        // RFC 5927 §4.1: sequence numbers below SND.UNA and at or past SND.NXT.
        (
            "below the window",
            frag_needed(1280, &forged_quote(frame, set_seq(first_seq - 1))),
        ),
        (
            "past SND.NXT",
            frag_needed(1280, &forged_quote(frame, set_seq(first_seq + 6000))),
        ),
        (
            "far off",
            frag_needed(1280, &forged_quote(frame, set_seq(first_seq ^ 0x8000_0000))),
        ),
        // Another local port (ours is 80), another peer port, another peer address.
        (
            "our port",
            frag_needed(
                1280,
                &forged_quote(frame, |q| q[20..22].copy_from_slice(&81u16.to_be_bytes())),
            ),
        ),
        (
            "peer port",
            frag_needed(
                1280,
                &forged_quote(frame, |q| {
                    q[22..24].copy_from_slice(&40999u16.to_be_bytes())
                }),
            ),
        ),
        (
            "peer address",
            frag_needed(1280, &forged_quote(frame, |q| q[19] = 77)),
        ),
        // Not from our address, not TCP, too short to hold the sequence number.
        (
            "source",
            frag_needed(1280, &forged_quote(frame, |q| q[15] = 9)),
        ),
        (
            "protocol",
            frag_needed(1280, &forged_quote(frame, |q| q[9] = 17)),
        ),
        ("short", frag_needed(1280, &quote_of(frame)[..24])),
        // A valid report that would not lower the MSS.
        ("not lower", frag_needed(1500, &quote_of(frame))),
    ];
    for (what, report) in &reports {
        stack.handle_frame(t(2), report);
        assert!(
            pump(&mut stack, t(2)).is_empty(),
            "{what}: nothing is resent"
        );
    }
    let c = stack.counters();
    assert_eq!(c.pmtu_lowered, 0);
    assert_eq!(c.drop_pmtu_not_in_flight, 3);
    assert_eq!(c.drop_pmtu_no_flow, 3);
    assert_eq!(c.drop_pmtu_malformed, 3);
    assert_eq!(c.drop_pmtu_not_lower, 1);
    assert_eq!(c.total_dropped(), reports.len() as u64);

    // The connection still sends full-sized segments: its MSS is untouched. The peer
    // acknowledges everything; new data goes at 1460 octets.
    peer.ack = first_seq + 6000;
    stack.handle_frame(t(3), &peer.ack_now());
    stack.serve_ready(t(3), &mut |conn: Conn<'_, App>| {
        assert_eq!(
            conn.socket.send_shared(repeated(b'y', 3000), 0, 3000),
            Ok(3000)
        );
    });
    let mut wire = Wire::new();
    stack.poll_egress(t(3), &mut wire);
    assert!(wire.frames.iter().any(|f| f.len() == 14 + 1500));
}

/// With the driver's TCP checksum offload, every TCP frame the stack sends (the front end's
/// SYN-ACK and a cell's data alike) leaves the TCP checksum zero for the driver, and still
/// carries a good IPv4 header checksum; ICMP stays the stack's.
#[test]
fn with_tcp_checksum_offload_only_the_tcp_checksum_is_left_to_the_driver() {
    let mut c = config();
    c.tx_checksum_offload = true;
    let mut stack = stack_with(c);
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let mut frames = pump(&mut stack, t(0));
    let fill_checksums = |frames: &mut Vec<Vec<u8>>| {
        for frame in frames.iter_mut() {
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            let (src, dst) = (ip.src_addr().into(), ip.dst_addr().into());
            let mut tcp = TcpPacket::new_checked(&mut frame[34..]).unwrap();
            assert_eq!(tcp.checksum(), 0, "left to the driver");
            tcp.fill_checksum(&src, &dst);
        }
    };
    fill_checksums(&mut frames);
    let synack = only_tcp(&frames);
    stack.handle_frame(t(0), &peer.ack_syn(&synack));
    stack.handle_frame(t(1), &peer.data(b"GET / HTTP/1.1\r\n\r\n"));
    stack.serve_ready(t(1), &mut |conn: Conn<'_, App>| {
        assert_eq!(
            conn.socket.send_shared(repeated(b'y', 3000), 0, 3000),
            Ok(3000)
        );
    });
    let mut wire = Wire::new();
    stack.poll_egress(t(1), &mut wire);
    fill_checksums(&mut wire.frames);
    let sent: usize = wire.frames.iter().map(|f| parse_tcp(f).payload.len()).sum();
    assert_eq!(sent, 3000);

    let mut ping = peer.syn();
    ping.truncate(34);
    let echo = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"offload",
    };
    let mut body = vec![0; echo.buffer_len()];
    echo.emit(
        &mut Icmpv4Packet::new_unchecked(&mut body[..]),
        &ChecksumCapabilities::default(),
    );
    let mut ip = Ipv4Packet::new_unchecked(&mut ping[14..]);
    ip.set_next_header(IpProtocol::Icmp);
    ip.set_total_len((20 + body.len()) as u16);
    ip.fill_checksum();
    ping.extend_from_slice(&body);
    stack.handle_frame(t(2), &ping);
    let reply = pump(&mut stack, t(2));
    assert_eq!(reply.len(), 1);
    let ip = Ipv4Packet::new_checked(&reply[0][14..]).unwrap();
    assert!(ip.verify_checksum());
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(), "ICMP checksums are the stack's");
}

/// Minor page faults of the calling thread so far (`/proc/thread-self/stat`, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read the thread's stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    // State is field 3; minflt is field 10.
    after_name
        .split(' ')
        .nth(7)
        .expect("minflt")
        .parse()
        .expect("a count")
}

/// The pools are in memory once the stack is built: its socket buffers' pages were written
/// then, so no connection's first segment takes a page fault on the data path.
#[test]
fn the_socket_buffers_are_paged_in_when_the_stack_is_built() {
    // Buffers above glibc's largest mmap threshold (32 MiB): each is fresh memory, mapped only
    // where written, whatever this process allocated and freed before.
    const CELLS: usize = 2;
    const BUFFER: usize = 40 << 20;
    let mut c = config();
    c.max_connections = CELLS;
    (c.rx_buffer, c.tx_buffer) = (BUFFER, BUFFER);
    let before = minor_faults();
    let stack = stack_with(c);
    let faults = minor_faults() - before;
    drop(stack);
    // Two buffers per cell, 4 KiB pages. Buffers left unwritten take almost no fault here;
    // written ones take one per page, or fewer where the kernel maps more than a page per
    // fault (huge or multi-size pages: one CI run counted three faults for four pages), so
    // half the pages is the line.
    let pages = (CELLS * 2 * BUFFER / 4096) as u64;
    assert!(
        faults >= pages / 2,
        "building {pages} pages of socket buffers took {faults} page faults: not all written"
    );
}

/// Lines hinted by the prefetch hook the look-ahead test installs.
static HINTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn counting_prefetch(_addr: *const u8, _len: usize) {
    HINTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn the_look_ahead_runs_only_with_enough_connections_and_changes_nothing() {
    let mut config = config();
    config.max_connections = 2 * LOOKAHEAD_MIN_CONNECTIONS;
    let mut stack = stack_with(config);
    stack.set_prefetch(counting_prefetch);
    let now = t(0);
    let mut peers: Vec<Peer> = Vec::new();
    let open_up_to = |stack: &mut Stack<App>, peers: &mut Vec<Peer>, n: usize| {
        while peers.len() < n {
            let mut peer = Peer::new(10_000 + peers.len() as u16);
            connect(stack, &mut peer, now);
            peers.push(peer);
        }
    };
    // A burst of first requests from four connections, each answered either way.
    let burst_is_served = |stack: &mut Stack<App>, peers: &mut [Peer]| {
        let frames: Vec<Vec<u8>> = peers
            .iter_mut()
            .map(|p| p.data(b"GET / HTTP/1.1\r\n\r\n"))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        stack.handle_burst(now, &refs);
        let answers: Vec<Seg> = pump(stack, now).iter().map(|f| parse_tcp(f)).collect();
        for peer in &*peers {
            assert!(
                answers
                    .iter()
                    .any(|seg| seg.dst_port == peer.port && seg.payload == b"HELLO"),
                "no answer to port {}",
                peer.port
            );
        }
    };

    open_up_to(&mut stack, &mut peers, LOOKAHEAD_MIN_CONNECTIONS - 1);
    HINTS.store(0, std::sync::atomic::Ordering::Relaxed);
    burst_is_served(&mut stack, &mut peers[4..8]);
    assert_eq!(
        HINTS.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a look-ahead ran with {} connections",
        stack.connections()
    );

    open_up_to(&mut stack, &mut peers, LOOKAHEAD_MIN_CONNECTIONS);
    burst_is_served(&mut stack, &mut peers[..4]);
    assert!(
        HINTS.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no look-ahead with {} connections",
        stack.connections()
    );
}
