//! Packet-level tests of the whole stack over IPv6: neighbor discovery, ICMPv6 echo, header
//! and extension-header validation, TCP connections and SYN cookies, the link-local address,
//! and IPv4 and IPv6 side by side. Frames are built with smoltcp's `Repr::emit`; every frame
//! the stack sends is parsed back and its checksums verified. Time is virtual and seeds fixed.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, Ipv6Address, Ipv6Cidr,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber,
};

use super::tests::{App, Wire, ipv4_frame, pump, repeated, seeds, t};
use super::*;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const OTHER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x03]);
const OUR_V4: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
const PEER_V4: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);
const OUR_V6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const PEER_V6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const OTHER_V6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 9);
const ALL_NODES: Ipv6Address = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: EthernetAddress = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);
const PORT: u16 = 80;

/// IPv4 and IPv6 (2001:2::2/64 and the link-local).
fn dual_config() -> StackConfig {
    let mut c = StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_V4, 24), PORT);
    c.ipv6.push(Ipv6Cidr::new(OUR_V6, 64));
    c
}

/// A dual stack with its start-up advertisements already sent.
fn dual_stack(config: StackConfig) -> Stack<App> {
    let mut stack = Stack::new(config, seeds(0x5eed)).unwrap();
    let at_start = pump(&mut stack, t(0));
    assert_eq!(at_start.len(), 2, "one unsolicited NA per IPv6 address");
    stack
}

fn our_link_local() -> Ipv6Address {
    crate::frontend::link_local(OUR_MAC)
}

fn solicited_node(a: Ipv6Address) -> Ipv6Address {
    let o = a.octets();
    Ipv6Address::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

fn group_mac(g: Ipv6Address) -> EthernetAddress {
    let o = g.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The header fields of an IPv6 frame a test sends.
#[derive(Clone, Copy)]
struct V6 {
    eth_dst: EthernetAddress,
    eth_src: EthernetAddress,
    src: Ipv6Address,
    dst: Ipv6Address,
    hop_limit: u8,
}

impl V6 {
    /// From the peer to our global address.
    fn to_us() -> Self {
        V6 {
            eth_dst: OUR_MAC,
            eth_src: PEER_MAC,
            src: PEER_V6,
            dst: OUR_V6,
            hop_limit: 64,
        }
    }

    fn ndp(mut self) -> Self {
        self.hop_limit = 255;
        self
    }

    /// An Ethernet frame carrying an IPv6 header with `next_header` and `payload`.
    fn frame(&self, next_header: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 40 + payload.len()];
        let mut eth = EthernetFrame::new_unchecked(&mut frame);
        eth.set_dst_addr(self.eth_dst);
        eth.set_src_addr(self.eth_src);
        eth.set_ethertype(EthernetProtocol::Ipv6);
        Ipv6Repr {
            src_addr: self.src,
            dst_addr: self.dst,
            next_header,
            payload_len: payload.len(),
            hop_limit: self.hop_limit,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut frame[14..54]));
        frame[54..].copy_from_slice(payload);
        frame
    }

    fn icmp(&self, repr: &Icmpv6Repr) -> Vec<u8> {
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(
            &self.src,
            &self.dst,
            &mut Icmpv6Packet::new_unchecked(&mut bytes[..]),
            &ChecksumCapabilities::default(),
        );
        self.frame(IpProtocol::Icmpv6, &bytes)
    }
}

fn tcp_bytes(src: Ipv6Address, dst: Ipv6Address, repr: &TcpRepr) -> Vec<u8> {
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut bytes[..]),
        &IpAddress::Ipv6(src),
        &IpAddress::Ipv6(dst),
        &ChecksumCapabilities::default(),
    );
    bytes
}

/// A scripted IPv6 TCP peer.
struct Peer {
    v6: V6,
    port: u16,
    seq: u32,
    ack: u32,
    /// Extension headers put in front of every segment: (first next header, bytes whose
    /// last header's next header is TCP).
    ext: Option<(IpProtocol, Vec<u8>)>,
}

impl Peer {
    fn new(port: u16) -> Self {
        Peer {
            v6: V6::to_us(),
            port,
            seq: 1000,
            ack: 0,
            ext: None,
        }
    }

    fn segment(&self, control: TcpControl, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: self.port,
            dst_port: PORT,
            control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 65535,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1440),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let tcp = tcp_bytes(self.v6.src, self.v6.dst, &repr);
        match &self.ext {
            None => self.v6.frame(IpProtocol::Tcp, &tcp),
            Some((first, ext)) => {
                let mut payload = ext.clone();
                payload.extend_from_slice(&tcp);
                self.v6.frame(*first, &payload)
            }
        }
    }

    fn syn(&self) -> Vec<u8> {
        self.segment(TcpControl::Syn, None, &[])
    }

    fn ack_syn(&mut self, synack: &Seg) -> Vec<u8> {
        assert_eq!(synack.control, TcpControl::Syn);
        assert_eq!(synack.ack, Some(self.seq + 1));
        self.seq += 1;
        self.ack = synack.seq + 1;
        self.segment(TcpControl::None, Some(self.ack), &[])
    }

    fn data(&mut self, payload: &[u8]) -> Vec<u8> {
        let f = self.segment(TcpControl::Psh, Some(self.ack), payload);
        self.seq += payload.len() as u32;
        f
    }

    fn fin(&mut self) -> Vec<u8> {
        let f = self.segment(TcpControl::Fin, Some(self.ack), &[]);
        self.seq += 1;
        f
    }
}

/// A TCP segment the stack sent over IPv6, checked and decoded.
#[derive(Debug)]
struct Seg {
    eth_dst: EthernetAddress,
    src: Ipv6Address,
    dst: Ipv6Address,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    mss: Option<u16>,
    payload: Vec<u8>,
}

fn parse_tcp(frame: &[u8]) -> Seg {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), OUR_MAC);
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.next_header(), IpProtocol::Tcp);
    assert_eq!(usize::from(ip.payload_len()), ip.payload().len());
    let (src, dst) = (
        IpAddress::Ipv6(ip.src_addr()),
        IpAddress::Ipv6(ip.dst_addr()),
    );
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
    let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).unwrap();
    Seg {
        eth_dst: eth.dst_addr(),
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        control: repr.control,
        seq: repr.seq_number.0 as u32,
        ack: repr.ack_number.map(|a| a.0 as u32),
        mss: repr.max_seg_size,
        payload: repr.payload.to_vec(),
    }
}

fn only_tcp(frames: &[Vec<u8>]) -> Seg {
    assert_eq!(frames.len(), 1, "expected exactly one frame");
    parse_tcp(&frames[0])
}

/// An ICMPv6 message the stack sent: Ethernet destination, IPv6 source, destination and hop
/// limit, and the message, its checksum verified.
fn parse_icmp(
    frame: &[u8],
) -> (
    EthernetAddress,
    Ipv6Address,
    Ipv6Address,
    u8,
    Icmpv6Repr<'_>,
) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.src_addr(), OUR_MAC);
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
    assert_eq!(ip.next_header(), IpProtocol::Icmpv6);
    let (src, dst, hops) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let icmp = Icmpv6Packet::new_checked(&frame[54..]).unwrap();
    assert!(icmp.verify_checksum(&src, &dst), "ICMPv6 checksum");
    let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::default()).unwrap();
    (eth.dst_addr(), src, dst, hops, repr)
}

fn ns(target: Ipv6Address, lladdr: Option<EthernetAddress>) -> Icmpv6Repr<'static> {
    Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: lladdr.map(RawHardwareAddress::from),
    })
}

fn na(target: Ipv6Address, flags: NdiscNeighborFlags) -> Icmpv6Repr<'static> {
    Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(OTHER_MAC.into()),
    })
}

/// A neighbor solicitation from the peer for `target`, to `target`'s solicited-node group.
fn ns_frame(target: Ipv6Address) -> Vec<u8> {
    let group = solicited_node(target);
    let v6 = V6 {
        eth_dst: group_mac(group),
        dst: group,
        ..V6::to_us().ndp()
    };
    v6.icmp(&ns(target, Some(PEER_MAC)))
}

/// The advertisement we expect for our `target`, byte for byte.
fn expected_advert(
    target: Ipv6Address,
    to: (EthernetAddress, Ipv6Address),
    flags: NdiscNeighborFlags,
) -> Vec<u8> {
    let v6 = V6 {
        eth_dst: to.0,
        eth_src: OUR_MAC,
        src: target,
        dst: to.1,
        hop_limit: 255,
    };
    v6.icmp(&Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags,
        target_addr: target,
        lladdr: Some(OUR_MAC.into()),
    }))
}

#[test]
fn every_ipv6_address_is_announced_at_start() {
    let mut stack = Stack::<App>::new(dual_config(), seeds(0x5eed)).unwrap();
    let frames = pump(&mut stack, t(0));
    let flags = NdiscNeighborFlags::OVERRIDE;
    let to = (ALL_NODES_MAC, ALL_NODES);
    assert_eq!(
        frames,
        vec![
            expected_advert(OUR_V6, to, flags),
            expected_advert(our_link_local(), to, flags),
        ]
    );
    assert_eq!(stack.counters().ndp_adverts_sent, 2);
    // Once only; and an IPv4-only stack announces nothing.
    assert!(pump(&mut stack, t(1000)).is_empty());
    let v4 = StackConfig::new(OUR_MAC, Ipv4Cidr::new(OUR_V4, 24), PORT);
    let mut v4_only = Stack::<App>::new(v4, seeds(0x5eed)).unwrap();
    assert!(pump(&mut v4_only, t(0)).is_empty());
}

#[test]
fn a_solicitation_for_our_address_gets_an_exact_advertisement() {
    let mut stack = dual_stack(dual_config());
    stack.handle_frame(t(0), &ns_frame(OUR_V6));
    let frames = pump(&mut stack, t(0));
    let flags = NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE;
    assert_eq!(
        frames,
        vec![expected_advert(OUR_V6, (PEER_MAC, PEER_V6), flags)]
    );
    let (eth_dst, src, dst, hops, repr) = parse_icmp(&frames[0]);
    assert_eq!((eth_dst, src, dst, hops), (PEER_MAC, OUR_V6, PEER_V6, 255));
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: got,
        target_addr,
        lladdr,
    }) = repr
    else {
        panic!("not an NA: {repr:?}");
    };
    assert_eq!((got, target_addr), (flags, OUR_V6));
    assert_eq!(lladdr.unwrap().as_bytes(), OUR_MAC.as_bytes());
    // A unicast solicitation (neighbour unreachability detection) is answered the same way.
    let unicast = V6::to_us().ndp().icmp(&ns(OUR_V6, Some(PEER_MAC)));
    stack.handle_frame(t(1), &unicast);
    assert_eq!(pump(&mut stack, t(1)), frames);
    assert_eq!(stack.counters().ndp_adverts_sent, 2 + 2);
}

#[test]
fn a_duplicate_address_probe_is_answered_to_all_nodes() {
    let mut stack = dual_stack(dual_config());
    let group = solicited_node(OUR_V6);
    let probe = V6 {
        eth_dst: group_mac(group),
        src: Ipv6Address::UNSPECIFIED,
        dst: group,
        ..V6::to_us().ndp()
    };
    stack.handle_frame(t(0), &probe.icmp(&ns(OUR_V6, None)));
    let frames = pump(&mut stack, t(0));
    let to = (ALL_NODES_MAC, ALL_NODES);
    assert_eq!(
        frames,
        vec![expected_advert(OUR_V6, to, NdiscNeighborFlags::OVERRIDE)]
    );
    // A probe with a source link-layer option is invalid (RFC 4861 §7.1.1), and so is one sent
    // to our unicast address.
    stack.handle_frame(t(1), &probe.icmp(&ns(OUR_V6, Some(PEER_MAC))));
    let unicast_probe = V6 {
        src: Ipv6Address::UNSPECIFIED,
        ..V6::to_us().ndp()
    };
    stack.handle_frame(t(1), &unicast_probe.icmp(&ns(OUR_V6, None)));
    assert!(pump(&mut stack, t(1)).is_empty());
    assert_eq!(stack.counters().drop_ndp_invalid, 2);
    // The unspecified source is allowed on a probe only.
    let echo = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"x",
    };
    stack.handle_frame(t(2), &unicast_probe.icmp(&echo));
    assert_eq!(stack.counters().drop_ipv6_bad_source, 1);
}

#[test]
fn solicitations_that_are_not_ours_or_not_valid_are_dropped() {
    let mut stack = dual_stack(dual_config());
    // Another target whose solicited-node group is ours (the same low 24 bits).
    let colliding = Ipv6Address::new(0x2001, 3, 0, 0, 0, 0, 0, 2);
    stack.handle_frame(t(0), &ns_frame(colliding));
    // Forwarded (hop limit 64): not from the link.
    let forwarded = V6::to_us().icmp(&ns(OUR_V6, Some(PEER_MAC)));
    stack.handle_frame(t(0), &forwarded);
    // A multicast target.
    stack.handle_frame(t(0), &V6::to_us().ndp().icmp(&ns(ALL_NODES, None)));
    // A bad checksum.
    let mut corrupt = ns_frame(OUR_V6);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    stack.handle_frame(t(0), &corrupt);
    // An option of length 0.
    let mut zero_option = ns_frame(OUR_V6);
    zero_option[54 + 24 + 1] = 0;
    let fixed = {
        let group = solicited_node(OUR_V6);
        let mut p = Icmpv6Packet::new_unchecked(&mut zero_option[54..]);
        p.fill_checksum(&PEER_V6, &group);
        zero_option
    };
    stack.handle_frame(t(0), &fixed);
    // To a group we do not listen to.
    let other_group = solicited_node(OTHER_V6);
    let elsewhere = V6 {
        eth_dst: group_mac(other_group),
        dst: other_group,
        ..V6::to_us().ndp()
    };
    stack.handle_frame(t(0), &elsewhere.icmp(&ns(OUR_V6, Some(PEER_MAC))));
    assert!(pump(&mut stack, t(0)).is_empty());
    let c = stack.counters();
    assert_eq!(c.drop_ndp_not_for_us, 1);
    assert_eq!(c.drop_ndp_invalid, 3);
    assert_eq!(c.drop_icmpv6_malformed, 1);
    assert_eq!(c.drop_ipv6_multicast, 1);
    assert_eq!(c.ndp_adverts_sent, 2, "the start-up ones only");
}

#[test]
fn an_advertisement_for_our_address_is_a_conflict_and_gets_no_answer() {
    let mut stack = dual_stack(dual_config());
    // Another node claims our address (its source being that address, as it would be).
    let claim = V6 {
        eth_dst: ALL_NODES_MAC,
        eth_src: OTHER_MAC,
        src: OUR_V6,
        dst: ALL_NODES,
        hop_limit: 255,
    };
    stack.handle_frame(t(0), &claim.icmp(&na(OUR_V6, NdiscNeighborFlags::OVERRIDE)));
    // The peer advertising its own address: nothing learned, nothing answered.
    let own = V6 {
        eth_dst: ALL_NODES_MAC,
        dst: ALL_NODES,
        ..V6::to_us().ndp()
    };
    stack.handle_frame(t(0), &own.icmp(&na(PEER_V6, NdiscNeighborFlags::OVERRIDE)));
    // Solicited set on an advertisement to a group: invalid (RFC 4861 §7.1.2).
    stack.handle_frame(t(0), &own.icmp(&na(PEER_V6, NdiscNeighborFlags::SOLICITED)));
    // A router solicitation.
    let rs = Icmpv6Repr::Ndisc(NdiscRepr::RouterSolicit { lladdr: None });
    stack.handle_frame(t(0), &V6::to_us().ndp().icmp(&rs));
    assert!(pump(&mut stack, t(0)).is_empty());
    let c = stack.counters();
    assert_eq!(c.ndp_address_conflicts, 1);
    assert_eq!(c.drop_ndp_other, 2);
    assert_eq!(c.drop_ndp_invalid, 1);
    // Our own address as the source of anything but an advertisement is spoofed.
    let spoofed = V6 {
        src: OUR_V6,
        ..V6::to_us().ndp()
    };
    stack.handle_frame(t(1), &spoofed.icmp(&ns(OUR_V6, None)));
    assert_eq!(stack.counters().drop_ipv6_bad_source, 1);
}

#[test]
fn an_echo_request_is_answered_from_the_address_it_was_sent_to() {
    let mut stack = dual_stack(dual_config());
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let request = Icmpv6Repr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: &data,
    };
    stack.handle_frame(t(0), &V6::to_us().icmp(&request));
    let frames = pump(&mut stack, t(0));
    assert_eq!(frames.len(), 1);
    let (eth_dst, src, dst, hops, repr) = parse_icmp(&frames[0]);
    assert_eq!((eth_dst, src, dst, hops), (PEER_MAC, OUR_V6, PEER_V6, 64));
    let expected = Icmpv6Repr::EchoReply {
        ident: 0x1234,
        seq_no: 7,
        data: &data,
    };
    assert_eq!(repr, expected);
    assert_eq!(stack.counters().icmpv6_echo_replies, 1);

    // Ethernet padding is trimmed: a small request padded to 60 bytes gets an exact reply.
    let small = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 2,
        data: b"hi",
    };
    let mut padded = V6::to_us().icmp(&small);
    padded.resize(padded.len() + 20, 0xaa);
    stack.handle_frame(t(1), &padded);
    let frames = pump(&mut stack, t(1));
    let reply = Icmpv6Repr::EchoReply {
        ident: 1,
        seq_no: 2,
        data: b"hi",
    };
    assert_eq!(parse_icmp(&frames[0]).4, reply);

    // To a group: never answered.
    let group = solicited_node(OUR_V6);
    let to_group = V6 {
        eth_dst: group_mac(group),
        dst: group,
        ..V6::to_us()
    };
    stack.handle_frame(t(2), &to_group.icmp(&small));
    let to_all = V6 {
        eth_dst: ALL_NODES_MAC,
        dst: ALL_NODES,
        ..V6::to_us()
    };
    stack.handle_frame(t(2), &to_all.icmp(&small));
    // A reply bigger than the MTU is not sent.
    let big = vec![0u8; 1500 - 40 - 8 + 1];
    let oversize = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 3,
        data: &big,
    };
    stack.handle_frame(t(2), &V6::to_us().icmp(&oversize));
    // Errors and echo replies are counted, not answered.
    let unreachable = V6::to_us().frame(IpProtocol::Icmpv6, &{
        let mut b = [1u8, 4, 0, 0, 0, 0, 0, 0];
        Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&PEER_V6, &OUR_V6);
        b
    });
    stack.handle_frame(t(2), &unreachable);
    assert!(pump(&mut stack, t(2)).is_empty());
    let c = stack.counters();
    assert_eq!(c.drop_ipv6_multicast, 2);
    assert_eq!(c.drop_icmp_oversize, 1);
    assert_eq!(c.drop_icmpv6_other, 1);
    assert_eq!(c.icmpv6_echo_replies, 2);
}

#[test]
fn malformed_ipv6_is_counted_by_reason() {
    let mut stack = dual_stack(dual_config());
    let echo = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"ping",
    };
    let good = V6::to_us().icmp(&echo);
    // Shorter than the IPv6 header.
    stack.handle_frame(t(0), &good[..14 + 30]);
    // Payload length past the frame.
    let mut long = good.clone();
    long[14 + 5] += 1;
    stack.handle_frame(t(0), &long);
    // Version 4 in an IPv6 ethertype.
    let mut version = good.clone();
    version[14] = 0x40;
    stack.handle_frame(t(0), &version);
    assert_eq!(stack.counters().drop_ipv6_malformed, 3);
    // A multicast source.
    let multicast_source = V6 {
        src: ALL_NODES,
        ..V6::to_us()
    };
    stack.handle_frame(t(0), &multicast_source.icmp(&echo));
    assert_eq!(stack.counters().drop_ipv6_bad_source, 1);
    // Another unicast destination, and our unicast address inside an Ethernet group frame.
    let other = V6 {
        dst: OTHER_V6,
        ..V6::to_us()
    };
    stack.handle_frame(t(0), &other.icmp(&echo));
    let wrong_group = V6 {
        eth_dst: ALL_NODES_MAC,
        ..V6::to_us()
    };
    stack.handle_frame(t(0), &wrong_group.icmp(&echo));
    assert_eq!(stack.counters().drop_ipv6_not_for_us, 2);
    // No next header, and a protocol we do not speak.
    stack.handle_frame(t(0), &V6::to_us().frame(IpProtocol::Ipv6NoNxt, &[]));
    stack.handle_frame(t(0), &V6::to_us().frame(IpProtocol::Udp, &[0; 8]));
    assert_eq!(stack.counters().drop_ip_protocol_unknown, 2);
    assert!(pump(&mut stack, t(0)).is_empty());
    assert_eq!(stack.counters().total_dropped(), 8);
}

/// A hop-by-hop or destination options header of 8 bytes: `next`, length 0, and 6 bytes of
/// options.
fn options_header(next: IpProtocol, options: [u8; 6]) -> Vec<u8> {
    let mut h = vec![u8::from(next), 0];
    h.extend_from_slice(&options);
    h
}

/// PadN of 4 data bytes: 6 bytes of padding.
const PADN: [u8; 6] = [1, 4, 0, 0, 0, 0];

#[test]
fn tcp_behind_a_skippable_hop_by_hop_header_reaches_the_socket() {
    let mut stack = dual_stack(dual_config());
    let mut peer = Peer::new(40000);
    // PadN, then an unknown option of type 0x1e (action 00: skip), 0 bytes of data... padded.
    let hbh = options_header(IpProtocol::Tcp, [0x1e, 0, 1, 2, 0, 0]);
    peer.ext = Some((IpProtocol::HopByHop, hbh));
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    let ack = peer.ack_syn(&synack);
    stack.handle_frame(t(0), &ack);
    peer.ext = Some((IpProtocol::HopByHop, options_header(IpProtocol::Tcp, PADN)));
    stack.handle_frame(t(0), &peer.data(b"GET / HTTP/1.1\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(reply.payload, b"HELLO");
    assert_eq!(reply.ack, Some(peer.seq));
    assert_eq!(stack.counters().total_dropped(), 0);
}

#[test]
fn extension_headers_that_may_not_be_skipped_are_dropped() {
    let mut stack = dual_stack(dual_config());
    let mut peer = Peer::new(40000);
    let cases: [(&str, IpProtocol, Vec<u8>); 6] = [
        (
            // Option type 0x80: action 10, discard and send an error.
            "unskippable option",
            IpProtocol::HopByHop,
            options_header(IpProtocol::Tcp, [0x80, 0, 1, 2, 0, 0]),
        ),
        (
            "routing type 0",
            IpProtocol::Ipv6Route,
            vec![u8::from(IpProtocol::Tcp), 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "routing with segments left",
            IpProtocol::Ipv6Route,
            vec![u8::from(IpProtocol::Tcp), 0, 4, 1, 0, 0, 0, 0],
        ),
        (
            "hop-by-hop not first",
            IpProtocol::Ipv6Opts,
            [
                options_header(IpProtocol::HopByHop, PADN),
                options_header(IpProtocol::Tcp, PADN),
            ]
            .concat(),
        ),
        (
            "fragment",
            IpProtocol::Ipv6Frag,
            vec![u8::from(IpProtocol::Tcp), 0, 0, 1, 0, 0, 0, 7],
        ),
        (
            // A skippable chain, but one the cells' smoltcp would answer with a Parameter
            // Problem: dropped and counted instead.
            "destination options before TCP",
            IpProtocol::Ipv6Opts,
            options_header(IpProtocol::Tcp, PADN),
        ),
    ];
    for (what, first, ext) in cases {
        peer.ext = Some((first, ext));
        stack.handle_frame(t(0), &peer.syn());
        assert!(pump(&mut stack, t(0)).is_empty(), "{what}");
    }
    // A truncated extension header.
    stack.handle_frame(
        t(0),
        &V6::to_us().frame(IpProtocol::Ipv6Opts, &[6, 1, 0, 0]),
    );
    let c = stack.counters();
    assert_eq!(c.drop_ipv6_ext_header, 5);
    assert_eq!(c.drop_ipv6_fragment, 1);
    assert_eq!(c.drop_ipv6_ext_tcp, 1);
    assert_eq!(c.syn_received, 0);
    // A skippable routing header (type 4, no segments left) before an echo request is fine.
    let echo = Icmpv6Repr::EchoRequest {
        ident: 9,
        seq_no: 9,
        data: b"routed",
    };
    let mut icmp = vec![0u8; echo.buffer_len()];
    echo.emit(
        &PEER_V6,
        &OUR_V6,
        &mut Icmpv6Packet::new_unchecked(&mut icmp[..]),
        &ChecksumCapabilities::default(),
    );
    let routing = vec![u8::from(IpProtocol::Icmpv6), 0, 4, 0, 0, 0, 0, 0];
    let payload = [routing, icmp].concat();
    stack.handle_frame(t(1), &V6::to_us().frame(IpProtocol::Ipv6Route, &payload));
    let frames = pump(&mut stack, t(1));
    assert_eq!(frames.len(), 1);
    assert!(matches!(
        parse_icmp(&frames[0]).4,
        Icmpv6Repr::EchoReply { ident: 9, .. }
    ));
}

#[test]
fn a_complete_ipv6_connection() {
    let mut stack = dual_stack(dual_config());
    let mut peer = Peer::new(40000);
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(
        (synack.eth_dst, synack.src, synack.dst),
        (PEER_MAC, OUR_V6, PEER_V6)
    );
    assert_eq!(synack.mss, Some(1500 - 60), "MSS = MTU - 60 over IPv6");
    let ack = peer.ack_syn(&synack);
    stack.handle_frame(t(0), &ack);
    assert!(pump(&mut stack, t(0)).is_empty());
    assert_eq!(stack.connections(), 1);
    stack.handle_frame(t(1), &peer.data(b"GET / HTTP/1.1\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(1)));
    assert_eq!(reply.payload, b"HELLO");
    assert_eq!((reply.src, reply.dst), (OUR_V6, PEER_V6));
    peer.ack += reply.payload.len() as u32;
    stack.handle_frame(t(2), &peer.fin());
    let fin = only_tcp(&pump(&mut stack, t(2)));
    assert_eq!(fin.control, TcpControl::Fin);
    assert_eq!(fin.ack, Some(peer.seq));
    peer.ack += 1;
    stack.handle_frame(t(3), &peer.segment(TcpControl::None, Some(peer.ack), &[]));
    pump(&mut stack, t(3));
    assert_eq!(stack.connections(), 0);
    assert_eq!(stack.counters().connections_closed, 1);
    assert_eq!(stack.counters().total_dropped(), 0);
}

#[test]
fn a_full_syn_cache_answers_ipv6_with_cookies() {
    let mut c = dual_config();
    c.syn_cache_size = 1;
    let mut stack = dual_stack(c);
    let mut cached = Peer::new(40000);
    let mut cookie_only = Peer::new(40001);
    stack.handle_frame(t(0), &cached.syn());
    let synack_a = only_tcp(&pump(&mut stack, t(0)));
    stack.handle_frame(t(0), &cookie_only.syn());
    let synack_b = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!(synack_b.src, OUR_V6);
    assert_eq!(stack.counters().syn_cache_overflow, 1);
    assert_eq!(stack.counters().syncookies_sent, 1);
    for (peer, synack) in [(&mut cookie_only, &synack_b), (&mut cached, &synack_a)] {
        stack.handle_frame(t(1), &peer.ack_syn(synack));
        stack.handle_frame(t(1), &peer.data(b"GET\r\n\r\n"));
        let reply = only_tcp(&pump(&mut stack, t(1)));
        assert_eq!(reply.payload, b"HELLO");
        assert_eq!(reply.dst, PEER_V6);
    }
    assert_eq!(stack.counters().syncookies_valid, 1);
    assert_eq!(stack.connections(), 2);
}

#[test]
fn the_link_local_address_answers() {
    // IPv6 only: the global address and the link-local one.
    let mut c = dual_config();
    c.ipv4 = None;
    let mut stack = dual_stack(c);
    let ours = our_link_local();
    let peer_ll = crate::frontend::link_local(PEER_MAC);
    stack.handle_frame(t(0), &ns_frame(ours));
    let v6 = V6 {
        src: peer_ll,
        dst: ours,
        ..V6::to_us()
    };
    let mut peer = Peer::new(40000);
    peer.v6 = v6;
    let flags = NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE;
    assert_eq!(
        pump(&mut stack, t(0)),
        vec![expected_advert(ours, (PEER_MAC, PEER_V6), flags)]
    );
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!((synack.src, synack.dst), (ours, peer_ll));
    stack.handle_frame(t(0), &peer.ack_syn(&synack));
    stack.handle_frame(t(0), &peer.data(b"GET\r\n\r\n"));
    let reply = only_tcp(&pump(&mut stack, t(0)));
    assert_eq!((reply.src, reply.payload.as_slice()), (ours, &b"HELLO"[..]));
    // IPv4 frames to an IPv6-only stack are not for us.
    let arp_for_nothing = {
        let mut f = vec![0u8; 60];
        let mut eth = EthernetFrame::new_unchecked(&mut f);
        eth.set_dst_addr(OUR_MAC);
        eth.set_src_addr(PEER_MAC);
        eth.set_ethertype(EthernetProtocol::Ipv4);
        f
    };
    stack.handle_frame(t(1), &arp_for_nothing);
    assert!(pump(&mut stack, t(1)).is_empty());
}

#[test]
fn ipv4_and_ipv6_side_by_side() {
    let mut stack = dual_stack(dual_config());
    let mut v6 = Peer::new(40000);
    // The IPv4 peer uses the same port: the flows differ by family.
    let v4_segment = |control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]| {
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: PORT,
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
        let (src, dst) = (IpAddress::Ipv4(PEER_V4), IpAddress::Ipv4(OUR_V4));
        ipv4_frame(
            PEER_MAC,
            PEER_V4,
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
    };
    stack.handle_frame(t(0), &v4_segment(TcpControl::Syn, 5000, None, &[]));
    stack.handle_frame(t(0), &v6.syn());
    let frames = pump(&mut stack, t(0));
    assert_eq!(frames.len(), 2);
    let v4_synack = {
        let ip = Ipv4Packet::new_checked(&frames[0][14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (OUR_V4, PEER_V4));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.ack_number(), TcpSeqNumber(5001));
        tcp.seq_number().0 as u32
    };
    let v6_synack = parse_tcp(&frames[1]);
    let ack4 = Some(v4_synack + 1);
    stack.handle_frame(t(1), &v4_segment(TcpControl::None, 5001, ack4, &[]));
    stack.handle_frame(t(1), &v6.ack_syn(&v6_synack));
    stack.handle_frame(
        t(1),
        &v4_segment(TcpControl::Psh, 5001, ack4, b"v4\r\n\r\n"),
    );
    stack.handle_frame(t(1), &v6.data(b"v6\r\n\r\n"));
    // An echo of each family too.
    let echo4 = Icmpv4Repr::EchoRequest {
        ident: 4,
        seq_no: 4,
        data: b"four",
    };
    let echo4_frame = ipv4_frame(
        PEER_MAC,
        PEER_V4,
        IpProtocol::Icmp,
        echo4.buffer_len(),
        |buf| {
            echo4.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            )
        },
    );
    stack.handle_frame(t(1), &echo4_frame);
    let echo6 = Icmpv6Repr::EchoRequest {
        ident: 6,
        seq_no: 6,
        data: b"six",
    };
    stack.handle_frame(t(1), &V6::to_us().icmp(&echo6));
    let frames = pump(&mut stack, t(1));
    assert_eq!(frames.len(), 4, "two echo replies, two HELLOs");
    let ethertypes: Vec<_> = frames
        .iter()
        .map(|f| EthernetFrame::new_checked(&f[..]).unwrap().ethertype())
        .collect();
    assert_eq!(
        ethertypes
            .iter()
            .filter(|&&e| e == EthernetProtocol::Ipv6)
            .count(),
        2
    );
    let hello6 = frames
        .iter()
        .filter(|f| {
            EthernetFrame::new_checked(&f[..]).unwrap().ethertype() == EthernetProtocol::Ipv6
        })
        .map(|f| f.as_slice())
        .find(|f| Ipv6Packet::new_checked(&f[14..]).unwrap().next_header() == IpProtocol::Tcp)
        .map(parse_tcp)
        .unwrap();
    assert_eq!(hello6.payload, b"HELLO");
    assert_eq!(stack.connections(), 2);
    let c = stack.counters();
    assert_eq!((c.icmp_echo_replies, c.icmpv6_echo_replies), (1, 1));
    assert_eq!(c.total_dropped(), 0);
}

#[test]
fn icmpv6_checksums_are_filled_even_with_transmit_offload() {
    let mut c = dual_config();
    c.tx_checksum_offload = true;
    let mut stack = Stack::<App>::new(c, seeds(0x5eed)).unwrap();
    for frame in pump(&mut stack, t(0)) {
        parse_icmp(&frame); // verifies the checksum
    }
    stack.handle_frame(t(1), &ns_frame(OUR_V6));
    let echo = Icmpv6Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"offload",
    };
    stack.handle_frame(t(1), &V6::to_us().icmp(&echo));
    let frames = pump(&mut stack, t(1));
    assert_eq!(frames.len(), 2);
    for frame in &frames {
        parse_icmp(frame);
    }
}

/// A connected peer, and the 6000 octets the application answered with, in flight in five
/// frames (four full ones of 1440 octets of TCP payload).
fn ipv6_connection_with_data_in_flight(stack: &mut Stack<App>, port: u16) -> Vec<Vec<u8>> {
    let mut peer = Peer::new(port);
    stack.handle_frame(t(0), &peer.syn());
    let synack = only_tcp(&pump(stack, t(0)));
    stack.handle_frame(t(0), &peer.ack_syn(&synack));
    stack.handle_frame(t(0), &peer.data(b"GET\r\n\r\n"));
    stack.serve_ready(t(1), &mut |conn: Conn<'_, App>| {
        conn.state.replied = true;
        assert_eq!(
            conn.socket.send_shared(repeated(b'x', 6000), 0, 6000),
            Ok(6000)
        );
    });
    let mut wire = Wire::new();
    stack.poll_egress(t(1), &mut wire);
    assert_eq!(wire.frames.len(), 5);
    assert!(wire.frames[..4].iter().all(|f| f.len() == 14 + 1500));
    wire.frames
}

const ROUTER_V6: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 0xfe);

/// A Packet Too Big from a router on the path, reporting `mtu` and quoting `quote` (the start
/// of an IPv6 packet we sent).
fn packet_too_big(mtu: u32, quote: &[u8]) -> Vec<u8> {
    let mut icmp = vec![2u8, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let v6 = V6 {
        src: ROUTER_V6,
        ..V6::to_us()
    };
    Icmpv6Packet::new_unchecked(&mut icmp[..]).fill_checksum(&v6.src, &v6.dst);
    v6.frame(IpProtocol::Icmpv6, &icmp)
}

/// What a router quotes: as much of the packet as fits in 1280 octets with its own headers.
fn quote_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].iter().copied().take(1280 - 48).collect()
}

#[test]
fn packet_too_big_lowers_the_mss_and_resends_in_smaller_frames() {
    let mut stack = dual_stack(dual_config());
    let in_flight = ipv6_connection_with_data_in_flight(&mut stack, 40100);
    let first = parse_tcp(&in_flight[0]);
    stack.handle_frame(t(2), &packet_too_big(1280, &quote_of(&in_flight[0])));
    assert_eq!(stack.counters().pmtu_lowered, 1);
    assert_eq!(stack.counters().total_dropped(), 0);
    let resent = pump(&mut stack, t(2));
    assert!(!resent.is_empty(), "the resend goes at once");
    assert!(
        resent.iter().all(|f| f.len() - 14 <= 1280),
        "every frame fits"
    );
    let segs: Vec<Seg> = resent.iter().map(|f| parse_tcp(f)).collect();
    let mut next = first.seq;
    for seg in &segs {
        assert_eq!(seg.seq, next, "the resends follow one another");
        next += seg.payload.len() as u32;
    }
    assert_eq!(next, first.seq + 6000, "everything in flight is resent");

    // RFC 8201 §4: an MTU below 1280 is taken as 1280.
    let in_flight = ipv6_connection_with_data_in_flight(&mut stack, 40101);
    stack.handle_frame(t(3), &packet_too_big(600, &quote_of(&in_flight[1])));
    assert_eq!(stack.counters().pmtu_lowered, 2);
    let resent = pump(&mut stack, t(3));
    assert!(!resent.is_empty());
    assert!(resent.iter().all(|f| f.len() - 14 <= 1280));
    assert!(resent.iter().any(|f| f.len() - 14 > 1200), "not below 1280");
}

#[test]
fn forged_or_useless_packet_too_big_changes_nothing_and_is_counted() {
    let mut stack = dual_stack(dual_config());
    let in_flight = ipv6_connection_with_data_in_flight(&mut stack, 40102);
    let frame = &in_flight[0];
    let first_seq = parse_tcp(frame).seq;
    let forged = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut q = quote_of(frame);
        f(&mut q);
        q
    };
    let set_seq = |seq: u32| move |q: &mut Vec<u8>| q[44..48].copy_from_slice(&seq.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "before SND.UNA",
            packet_too_big(1280, &forged(&set_seq(first_seq - 1))),
        ),
        (
            "after SND.NXT",
            packet_too_big(1280, &forged(&set_seq(first_seq + 6000))),
        ),
        // Another peer port: no such connection.
        ("no flow", packet_too_big(1280, &forged(&|q| q[42] ^= 1))),
        // Quoted from another source, another protocol, too short.
        (
            "not from us",
            packet_too_big(1280, &forged(&|q| q[23] ^= 1)),
        ),
        ("not TCP", packet_too_big(1280, &forged(&|q| q[6] = 17))),
        ("short", packet_too_big(1280, &quote_of(frame)[..44])),
        ("not lower", packet_too_big(1500, &quote_of(frame))),
    ];
    for (what, report) in &cases {
        stack.handle_frame(t(2), report);
        assert!(pump(&mut stack, t(2)).is_empty(), "{what}");
    }
    // To a group: never.
    let mut to_group = packet_too_big(1280, &quote_of(frame));
    let group = solicited_node(OUR_V6);
    to_group[..6].copy_from_slice(&group_mac(group).0);
    to_group[14 + 24..14 + 40].copy_from_slice(&group.octets());
    let mut icmp = Icmpv6Packet::new_unchecked(&mut to_group[54..]);
    icmp.fill_checksum(&ROUTER_V6, &group);
    stack.handle_frame(t(2), &to_group);
    let c = stack.counters();
    assert_eq!(c.pmtu_lowered, 0);
    assert_eq!(c.drop_pmtu_not_in_flight, 2);
    assert_eq!(c.drop_pmtu_no_flow, 1);
    assert_eq!(c.drop_pmtu_malformed, 3);
    assert_eq!(c.drop_pmtu_not_lower, 1);
    assert_eq!(c.drop_ipv6_multicast, 1);
}
