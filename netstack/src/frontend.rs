//! The front end: layer 2 and everything that is not an established flow.
//!
//! It turns untrusted frames into typed values once ("parse, don't validate"): Ethernet, ARP,
//! IPv4, ICMP and TCP are checked here, IPv6, NDP and ICMPv6 in [`ipv6`], and every frame is
//! either answered (ARP request for our address, ICMP echo, neighbor solicitation), handed on
//! as a validated [`TcpSegment`] or [`PathMtuReport`], or dropped and counted in exactly one
//! `drop_*` counter. It also builds the RSTs the stack sends for segments no cell owns.
//! Invariants: no accessor is called on a wire view before `new_checked` succeeded, so no input
//! can panic; replies go only to the reply queue; nothing is learned from ARP or neighbor
//! discovery.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Address, Ipv4Cidr,
    Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use crate::StackCounters;
use crate::flow::FlowKey;
use crate::reply_queue::{ETH_HEADER_LEN, EthHeader, ReplyQueue};
use crate::synack::SynAckShape;
use crate::syncache::Pending;

mod ipv6;

/// Hop limit of packets we originate (RFC 1700 / IANA default).
const HOP_LIMIT: u8 = 64;
pub(crate) const IPV4_HEADER_LEN: usize = 20;
pub(crate) const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;

/// Most IPv6 addresses a stack serves, besides its link-local one.
pub(crate) const MAX_IPV6: usize = 3;

/// Our addresses, in the order a [`FlowKey`](crate::flow::FlowKey)'s `local` index names them:
/// the IPv4 address if we have one, then the IPv6 ones, the link-local last. At most five, so
/// a linear scan finds one.
pub(crate) struct Locals {
    addrs: Vec<IpAddress>,
    ipv4: Option<Ipv4Address>,
}

impl Locals {
    pub fn new(ipv4: Option<Ipv4Address>, ipv6: &[Ipv6Address]) -> Self {
        let addrs = ipv4
            .map(IpAddress::Ipv4)
            .into_iter()
            .chain(ipv6.iter().copied().map(IpAddress::Ipv6))
            .collect();
        Locals { addrs, ipv4 }
    }

    /// The index of `addr` if it is ours.
    pub fn index_of(&self, addr: IpAddress) -> Option<u8> {
        self.addrs
            .iter()
            .position(|&a| a == addr)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// Our address at `index` (the unspecified IPv4 address for an index we never gave out).
    pub fn get(&self, index: u8) -> IpAddress {
        self.addrs
            .get(usize::from(index))
            .copied()
            .unwrap_or(IpAddress::Ipv4(Ipv4Address::UNSPECIFIED))
    }

    pub fn ipv4(&self) -> Option<Ipv4Address> {
        self.ipv4
    }

    /// Our IPv6 addresses, the link-local one included.
    pub fn ipv6(&self) -> impl Iterator<Item = Ipv6Address> + '_ {
        self.addrs.iter().filter_map(|a| match a {
            IpAddress::Ipv6(a) => Some(*a),
            IpAddress::Ipv4(_) => None,
        })
    }
}

/// The link-local address of an interface with this MAC: fe80::/64 with the modified EUI-64
/// interface identifier (RFC 4291 §2.5.1 and appendix A).
pub(crate) fn link_local(mac: EthernetAddress) -> Ipv6Address {
    let m = mac.0;
    Ipv6Address::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// A TCP segment addressed to us, with valid IP and TCP headers and checksums.
pub(crate) struct TcpSegment<'f> {
    pub peer_mac: EthernetAddress,
    pub peer_ip: IpAddress,
    /// Which of our addresses it was sent to ([`Locals`]).
    pub local: u8,
    /// The IP packet, trimmed to its length (Ethernet padding removed).
    pub ip_packet: &'f [u8],
    pub repr: TcpRepr<'f>,
}

/// What became of a received frame.
pub(crate) enum Verdict<'f> {
    /// Answered or dropped; counted either way.
    Done,
    /// A TCP segment for the stack to route.
    Tcp(TcpSegment<'f>),
    /// A path MTU report (ICMPv4 Fragmentation Needed, ICMPv6 Packet Too Big) quoting a
    /// segment we sent, for the stack to check against the flow and apply.
    PathMtu(PathMtuReport),
}

/// What an ICMP error says about one of our connections: the path to `peer_ip` carries
/// packets of `mtu` octets at most. Taken from the quoted segment (its destination is the
/// peer, its source our address and port) and the ICMP header; nothing is checked against the
/// flow yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathMtuReport {
    pub peer_ip: IpAddress,
    /// Our address the quoted segment left from (the one the ICMP message came to).
    pub local_ip: IpAddress,
    pub peer_port: u16,
    pub local_port: u16,
    /// The quoted segment's sequence number (RFC 5927 §4.1: must be in flight).
    pub seq: TcpSeqNumber,
    pub mtu: u16,
}

/// RFC 1191 §7 table 7-1's plateaus, highest first: a router that predates RFC 1191 sends a
/// next-hop MTU of 0, and the largest plateau below the rejected datagram's length is the best
/// guess.
const MTU_PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// ICMPv4 Destination Unreachable code 4, "fragmentation needed and DF set" (RFC 792,
/// RFC 1191 §4).
const ICMP_CODE_FRAG_NEEDED: u8 = 4;

/// A segment with no payload and no options from our port back to `seg`'s sender.
fn bare_segment<'a>(
    seg: &TcpSegment,
    control: TcpControl,
    seq_number: TcpSeqNumber,
    ack_number: Option<TcpSeqNumber>,
) -> TcpRepr<'a> {
    TcpRepr {
        src_port: seg.repr.dst_port,
        dst_port: seg.repr.src_port,
        control,
        seq_number,
        ack_number,
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

/// Our addresses and checksum policy.
pub(crate) struct FrontEnd {
    pub mac: EthernetAddress,
    pub locals: Locals,
    /// Our IPv4 subnet (for its broadcast address), when we serve IPv4.
    pub subnet: Option<Ipv4Cidr>,
    /// Verify IPv4/ICMP/TCP checksums on receive.
    pub verify_rx: bool,
    /// Checksums to fill on transmit.
    pub tx_caps: ChecksumCapabilities,
    /// Largest IP packet we send.
    pub mtu: usize,
}

impl FrontEnd {
    /// The flow a frame seems to belong to, from a quick look at its headers (an Ethernet
    /// frame carrying TCP in IPv4, or in IPv6 with no extension header, to one of our
    /// addresses): nothing is checked beyond that. Only a hint for looking ahead across a
    /// burst ([`crate::Stack::handle_burst`]); [`FrontEnd::classify`] decides.
    pub fn flow_hint(&self, frame: &[u8]) -> Option<FlowKey> {
        const TCP: u8 = 6;
        let ip = frame.get(ETH_HEADER_LEN..)?;
        let (peer_ip, local_ip, tcp) = match frame.get(12..14)? {
            [0x08, 0x00] => {
                let header_len = usize::from(ip.first()? & 0x0f) * 4;
                if *ip.get(9)? != TCP {
                    return None;
                }
                let addr = |at: usize| -> Option<IpAddress> {
                    let bytes: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
                    Some(IpAddress::Ipv4(Ipv4Address::from(bytes)))
                };
                (addr(12)?, addr(16)?, ip.get(header_len..)?)
            }
            [0x86, 0xdd] => {
                if *ip.get(6)? != TCP {
                    return None;
                }
                let addr = |at: usize| -> Option<IpAddress> {
                    let bytes: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
                    Some(IpAddress::Ipv6(Ipv6Address::from(bytes)))
                };
                (addr(8)?, addr(24)?, ip.get(40..)?)
            }
            _ => return None,
        };
        Some(FlowKey {
            peer_ip,
            peer_port: u16::from_be_bytes(tcp.get(..2)?.try_into().ok()?),
            local: self.locals.index_of(local_ip)?,
        })
    }

    /// Classifies one received frame. Replies are staged; drops are counted.
    pub fn classify<'f>(
        &self,
        frame: &'f [u8],
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> Verdict<'f> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            counters.drop_eth_truncated += 1;
            return Verdict::Done;
        };
        let dst = eth.dst_addr();
        // IPv6 groups map to 33:33:xx:xx:xx:xx (RFC 2464 §7); `ipv6` checks which.
        let ipv6_group = dst.0[..2] == [0x33, 0x33] && eth.ethertype() == EthernetProtocol::Ipv6;
        if dst != self.mac && !dst.is_broadcast() && !ipv6_group {
            counters.drop_eth_not_for_us += 1;
            return Verdict::Done;
        }
        let peer_mac = eth.src_addr();
        // Replies go back to the source MAC: never to a group address.
        if !peer_mac.is_unicast() {
            counters.drop_eth_bad_source += 1;
            return Verdict::Done;
        }
        let payload = frame.get(ETH_HEADER_LEN..).unwrap_or_default();
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                self.arp(payload, counters, replies);
                Verdict::Done
            }
            EthernetProtocol::Ipv4 => self.ipv4(peer_mac, payload, counters, replies),
            EthernetProtocol::Ipv6 => self.ipv6(peer_mac, dst, payload, counters, replies),
            _ => {
                counters.drop_ethertype_unknown += 1;
                Verdict::Done
            }
        }
    }

    fn arp(&self, payload: &[u8], counters: &mut StackCounters, replies: &mut ReplyQueue) {
        let Ok(packet) = ArpPacket::new_checked(payload) else {
            counters.drop_arp_malformed += 1;
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            counters.drop_arp_malformed += 1;
            return;
        };
        if operation != ArpOperation::Request {
            counters.drop_arp_other += 1;
            return;
        }
        let Some(ours) = self.locals.ipv4().filter(|&a| a == target_protocol_addr) else {
            counters.drop_arp_not_for_us += 1;
            return;
        };
        if !source_hardware_addr.is_unicast() {
            counters.drop_arp_malformed += 1;
            return;
        }
        // RFC 826 "Packet Reception": swap sender and target, fill in our hardware address,
        // set the opcode to reply and send it to the requester's hardware address.
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.mac,
            source_protocol_addr: ours,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let header = EthHeader {
            dst: source_hardware_addr,
            src: self.mac,
            ethertype: EthernetProtocol::Arp,
        };
        let staged = replies
            .reserve(ETH_HEADER_LEN + reply.buffer_len())
            .and_then(|frame| header.write(frame))
            .map(|rest| reply.emit(&mut ArpPacket::new_unchecked(rest)));
        match staged {
            Some(()) => counters.arp_replies += 1,
            None => counters.tx_staging_full += 1,
        }
    }

    fn ipv4<'f>(
        &self,
        peer_mac: EthernetAddress,
        payload: &'f [u8],
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> Verdict<'f> {
        // `new_checked` bounds header and total length by the buffer: after it, no accessor
        // panics.
        let Ok(packet) = Ipv4Packet::new_checked(payload) else {
            counters.drop_ipv4_malformed += 1;
            return Verdict::Done;
        };
        if packet.version() != 4 {
            counters.drop_ipv4_malformed += 1;
            return Verdict::Done;
        }
        if self.verify_rx && !packet.verify_checksum() {
            counters.drop_ipv4_checksum += 1;
            return Verdict::Done;
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            counters.drop_ipv4_fragment += 1;
            return Verdict::Done;
        }
        let dst = packet.dst_addr();
        let (Some(ours), Some(local)) = (
            self.locals.ipv4().filter(|&a| a == dst),
            self.locals.index_of(IpAddress::Ipv4(dst)),
        ) else {
            counters.drop_ipv4_not_for_us += 1;
            return Verdict::Done;
        };
        let src = packet.src_addr();
        // RFC 1122 §3.2.1.3: a source address must be a host address; never answer broadcast,
        // multicast, unspecified or our own address.
        if src.is_unspecified()
            || src.is_broadcast()
            || src.is_multicast()
            || src == ours
            || self.subnet.and_then(|s| s.broadcast()) == Some(src)
        {
            counters.drop_ipv4_bad_source += 1;
            return Verdict::Done;
        }
        let total = usize::from(packet.total_len());
        let header = usize::from(packet.header_len());
        let (Some(ip_packet), Some(ip_payload)) =
            (payload.get(..total), payload.get(header..total))
        else {
            counters.drop_ipv4_malformed += 1;
            return Verdict::Done;
        };
        match packet.next_header() {
            IpProtocol::Icmp => self.icmp(peer_mac, src, ours, ip_payload, counters, replies),
            IpProtocol::Tcp => {
                let peer_ip = IpAddress::Ipv4(src);
                self.tcp(peer_mac, peer_ip, local, ip_packet, ip_payload, counters)
            }
            _ => {
                counters.drop_ip_protocol_unknown += 1;
                Verdict::Done
            }
        }
    }

    fn icmp<'f>(
        &self,
        peer_mac: EthernetAddress,
        peer_ip: Ipv4Address,
        ours: Ipv4Address,
        ip_payload: &[u8],
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> Verdict<'f> {
        let Ok(packet) = Icmpv4Packet::new_checked(ip_payload) else {
            counters.drop_icmp_malformed += 1;
            return Verdict::Done;
        };
        if self.verify_rx && !packet.verify_checksum() {
            counters.drop_icmp_malformed += 1;
            return Verdict::Done;
        }
        if packet.msg_type() == Icmpv4Message::DstUnreachable
            && packet.msg_code() == ICMP_CODE_FRAG_NEEDED
        {
            // (smoltcp's `Icmpv4Repr` wants the whole quoted datagram and drops the next-hop
            // MTU; the quote is usually cut after 8 octets of TCP.)
            return match Self::frag_needed(ours, ip_payload) {
                Some(report) => Verdict::PathMtu(report),
                None => {
                    counters.drop_pmtu_malformed += 1;
                    Verdict::Done
                }
            };
        }
        self.echo(peer_mac, peer_ip, ours, &packet, counters, replies);
        Verdict::Done
    }

    /// RFC 1191 §4: a Fragmentation Needed quoting the IPv4 header and at least the first 8
    /// octets of a TCP segment we sent (RFC 792). `None` if the quote is short, not IPv4 or
    /// not TCP from `ours`, our address the ICMP message came to. `icmp` is the whole ICMP
    /// message, at least its 8-octet header (checked by `Icmpv4Packet::new_checked`).
    fn frag_needed(ours: Ipv4Address, icmp: &[u8]) -> Option<PathMtuReport> {
        let be16 = |bytes: &[u8], at: usize| -> Option<u16> {
            Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
        };
        // ICMP header: type, code, checksum, unused (2), next-hop MTU (2); then the quote.
        let next_hop_mtu = be16(icmp, 6)?;
        let quote = icmp.get(8..)?;
        let (&version_ihl, &protocol) = (quote.first()?, quote.get(9)?);
        let ihl = usize::from(version_ihl & 0x0f) * 4;
        if version_ihl >> 4 != 4 || ihl < 20 || protocol != u8::from(IpProtocol::Tcp) {
            return None;
        }
        let src: [u8; 4] = quote.get(12..16)?.try_into().ok()?;
        let dst: [u8; 4] = quote.get(16..20)?.try_into().ok()?;
        if Ipv4Address::from(src) != ours {
            return None;
        }
        let tcp = quote.get(ihl..ihl + 8)?;
        let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
        let mtu = match next_hop_mtu {
            // A router older than RFC 1191: guess from the length of what it rejected.
            0 => {
                let rejected = be16(quote, 2)?;
                *MTU_PLATEAUS.iter().find(|&&plateau| plateau < rejected)?
            }
            mtu => mtu,
        };
        Some(PathMtuReport {
            peer_ip: IpAddress::Ipv4(Ipv4Address::from(dst)),
            local_ip: IpAddress::Ipv4(ours),
            peer_port: be16(tcp, 2)?,
            local_port: be16(tcp, 0)?,
            seq: TcpSeqNumber(seq as i32),
            mtu,
        })
    }

    /// Answers an echo request (RFC 792); any other ICMP message is dropped.
    fn echo(
        &self,
        peer_mac: EthernetAddress,
        peer_ip: Ipv4Address,
        ours: Ipv4Address,
        packet: &Icmpv4Packet<&[u8]>,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        let repr = match Icmpv4Repr::parse(packet, &ChecksumCapabilities::ignored()) {
            Ok(repr) => repr,
            // Unknown types and codes fail to parse: not an echo request either way.
            Err(_) => {
                counters.drop_icmp_other += 1;
                return;
            }
        };
        let Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = repr
        else {
            counters.drop_icmp_other += 1;
            return;
        };
        // RFC 792 "Echo or Echo Reply Message": the reply carries the request's identifier,
        // sequence number and data.
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let (src, dst) = (IpAddress::Ipv4(ours), IpAddress::Ipv4(peer_ip));
        let len = reply.buffer_len();
        if IPV4_HEADER_LEN + len > self.mtu {
            counters.drop_icmp_oversize += 1;
            return;
        }
        let staged = self.stage_ip(
            replies,
            peer_mac,
            (src, dst),
            IpProtocol::Icmp,
            len,
            |buf, caps| reply.emit(&mut Icmpv4Packet::new_unchecked(buf), caps),
        );
        match staged {
            true => counters.icmp_echo_replies += 1,
            false => counters.tx_staging_full += 1,
        }
    }

    /// Checks a TCP segment from `peer_ip` to our address `local` and hands it on.
    pub(crate) fn tcp<'f>(
        &self,
        peer_mac: EthernetAddress,
        peer_ip: IpAddress,
        local: u8,
        ip_packet: &'f [u8],
        ip_payload: &'f [u8],
        counters: &mut StackCounters,
    ) -> Verdict<'f> {
        let Ok(packet) = TcpPacket::new_checked(ip_payload) else {
            counters.drop_tcp_malformed += 1;
            return Verdict::Done;
        };
        let (src, dst) = (peer_ip, self.locals.get(local));
        if self.verify_rx && !packet.verify_checksum(&src, &dst) {
            counters.drop_tcp_checksum += 1;
            return Verdict::Done;
        }
        match TcpRepr::parse(&packet, &src, &dst, &ChecksumCapabilities::ignored()) {
            Ok(repr) => Verdict::Tcp(TcpSegment {
                peer_mac,
                peer_ip,
                local,
                ip_packet,
                repr,
            }),
            Err(_) => {
                counters.drop_tcp_malformed += 1;
                Verdict::Done
            }
        }
    }

    /// Stages an RST answering `seg`, unless `seg` is itself an RST. Counts `rst_sent` or
    /// `tx_staging_full`.
    pub fn stage_rst(
        &self,
        seg: &TcpSegment,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        // RFC 9293 §3.10.7.1 (CLOSED state): "An incoming segment containing a RST is
        // discarded. An incoming segment not containing a RST causes a RST to be sent in
        // response. ... If the ACK bit is off, sequence number zero is used,
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. If the ACK bit is on,
        // <SEQ=SEG.ACK><CTL=RST>."
        if seg.repr.control == TcpControl::Rst {
            return;
        }
        let (seq_number, ack_number) = match seg.repr.ack_number {
            Some(ack) => (ack, None),
            None => (
                TcpSeqNumber(0),
                Some(seg.repr.seq_number + seg.repr.segment_len()),
            ),
        };
        let rst = bare_segment(seg, TcpControl::Rst, seq_number, ack_number);
        let ips = (self.locals.get(seg.local), seg.peer_ip);
        match self.stage_tcp(replies, seg.peer_mac, ips, &rst) {
            true => counters.rst_sent += 1,
            false => counters.tx_staging_full += 1,
        }
    }

    /// Stages the SYN-ACK of a handshake in the SYN cache. It offers what the cells would: our
    /// MSS, `shape.wscale` if the peer offered a scale, SACK if the peer offered it and
    /// `shape.sack` allows it; the window is `shape.window`, unscaled (RFC 7323 §2.2). The stack
    /// sends copies of what this builds (`synack.rs`). `false` when the ring is full.
    pub fn stage_synack(
        &self,
        pending: &Pending,
        shape: SynAckShape,
        replies: &mut ReplyQueue,
    ) -> bool {
        let options = pending.options;
        let synack = TcpRepr {
            src_port: shape.port,
            dst_port: pending.key.peer_port,
            control: TcpControl::Syn,
            seq_number: pending.isn,
            ack_number: Some(pending.peer_isn + 1),
            window_len: shape.window,
            window_scale: options.wscale.map(|_| shape.wscale),
            max_seg_size: Some(self.mss(pending.key.peer_ip)),
            sack_permitted: options.sack && shape.sack,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ips = (self.locals.get(pending.key.local), pending.key.peer_ip);
        self.stage_tcp(replies, pending.peer_mac, ips, &synack)
    }

    /// The MSS we offer a peer of `peer_ip`'s family: our MTU less the IP and TCP headers.
    pub fn mss(&self, peer_ip: IpAddress) -> u16 {
        let headers = match peer_ip {
            IpAddress::Ipv4(_) => IPV4_HEADER_LEN + TCP_HEADER_LEN,
            IpAddress::Ipv6(_) => IPV6_HEADER_LEN + TCP_HEADER_LEN,
        };
        u16::try_from(self.mtu.saturating_sub(headers)).unwrap_or(u16::MAX)
    }

    /// Stages a bare ACK answering `seg` with our `seq` and `ack` (a TIME-WAIT tombstone
    /// speaking for a closed connection). The window is 0: nothing more will be received.
    /// Counts `tx_staging_full` when the ring is full; `false` then.
    pub fn stage_ack(
        &self,
        seg: &TcpSegment,
        seq: TcpSeqNumber,
        ack: TcpSeqNumber,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> bool {
        let reply = bare_segment(seg, TcpControl::None, seq, Some(ack));
        let ips = (self.locals.get(seg.local), seg.peer_ip);
        let staged = self.stage_tcp(replies, seg.peer_mac, ips, &reply);
        if !staged {
            counters.tx_staging_full += 1;
        }
        staged
    }

    /// Stages `tcp` from `ips.0` (ours) to `ips.1` (the peer's).
    fn stage_tcp(
        &self,
        replies: &mut ReplyQueue,
        peer_mac: EthernetAddress,
        ips: (IpAddress, IpAddress),
        tcp: &TcpRepr,
    ) -> bool {
        let (src, dst) = ips;
        self.stage_ip(
            replies,
            peer_mac,
            ips,
            IpProtocol::Tcp,
            tcp.buffer_len(),
            |buf, caps| tcp.emit(&mut TcpPacket::new_unchecked(buf), &src, &dst, caps),
        )
    }

    /// Stages Ethernet, an IPv4 or IPv6 header from `ips.0` to `ips.1` (both of one family),
    /// and `payload_len` bytes written by `emit`. `false` if the ring is full or the addresses
    /// are of two families.
    pub(crate) fn stage_ip(
        &self,
        replies: &mut ReplyQueue,
        peer_mac: EthernetAddress,
        ips: (IpAddress, IpAddress),
        next_header: IpProtocol,
        payload_len: usize,
        emit: impl FnOnce(&mut [u8], &ChecksumCapabilities),
    ) -> bool {
        let protocol = (next_header, HOP_LIMIT);
        self.stage_ip_hops(replies, peer_mac, ips, protocol, payload_len, emit)
    }

    /// [`FrontEnd::stage_ip`] with the hop limit given next to the protocol (`protocol.1`):
    /// neighbor discovery sends 255.
    fn stage_ip_hops(
        &self,
        replies: &mut ReplyQueue,
        peer_mac: EthernetAddress,
        ips: (IpAddress, IpAddress),
        protocol: (IpProtocol, u8),
        payload_len: usize,
        emit: impl FnOnce(&mut [u8], &ChecksumCapabilities),
    ) -> bool {
        let (next_header, hop_limit) = protocol;
        let (ethertype, header_len) = match ips {
            (IpAddress::Ipv4(_), IpAddress::Ipv4(_)) => (EthernetProtocol::Ipv4, IPV4_HEADER_LEN),
            (IpAddress::Ipv6(_), IpAddress::Ipv6(_)) => (EthernetProtocol::Ipv6, IPV6_HEADER_LEN),
            _ => return false,
        };
        let header = EthHeader {
            dst: peer_mac,
            src: self.mac,
            ethertype,
        };
        let len = ETH_HEADER_LEN + header_len + payload_len;
        let Some(rest) = replies.reserve(len).and_then(|f| header.write(f)) else {
            return false;
        };
        let (ip_header, ip_payload) = rest.split_at_mut(header_len.min(rest.len()));
        match ips {
            (IpAddress::Ipv4(src_addr), IpAddress::Ipv4(dst_addr)) => Ipv4Repr {
                src_addr,
                dst_addr,
                next_header,
                payload_len,
                hop_limit,
            }
            .emit(&mut Ipv4Packet::new_unchecked(ip_header), &self.tx_caps),
            (IpAddress::Ipv6(src_addr), IpAddress::Ipv6(dst_addr)) => Ipv6Repr {
                src_addr,
                dst_addr,
                next_header,
                payload_len,
                hop_limit,
            }
            .emit(&mut Ipv6Packet::new_unchecked(ip_header)),
            _ => {}
        }
        emit(ip_payload, &self.tx_caps);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
    const OUR_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
    const PEER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);

    fn front() -> FrontEnd {
        FrontEnd {
            mac: OUR_MAC,
            locals: Locals::new(Some(OUR_IP), &[]),
            subnet: Some(Ipv4Cidr::new(OUR_IP, 24)),
            verify_rx: true,
            tx_caps: ChecksumCapabilities::default(),
            mtu: 1500,
        }
    }

    fn ipv4_frame(dst: Ipv4Address, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let ip = Ipv4Repr {
            src_addr: PEER_IP,
            dst_addr: dst,
            next_header: proto,
            payload_len: payload.len(),
            hop_limit: 64,
        };
        let mut frame = vec![0u8; 14 + 20 + payload.len()];
        let hdr = EthHeader {
            dst: OUR_MAC,
            src: PEER_MAC,
            ethertype: EthernetProtocol::Ipv4,
        };
        let rest = hdr.write(&mut frame).unwrap();
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut rest[..20]),
            &ChecksumCapabilities::default(),
        );
        rest[20..].copy_from_slice(payload);
        frame
    }

    #[test]
    fn unknown_ip_protocol_is_counted() {
        let (fe, mut c, mut s) = (front(), StackCounters::default(), ReplyQueue::new(4, 1514));
        let frame = ipv4_frame(OUR_IP, IpProtocol::Udp, &[0; 8]);
        assert!(matches!(fe.classify(&frame, &mut c, &mut s), Verdict::Done));
        assert_eq!(c.drop_ip_protocol_unknown, 1);
        assert!(s.is_empty());
    }

    #[test]
    fn subnet_broadcast_source_is_dropped() {
        let (mut fe, mut c, mut s) = (front(), StackCounters::default(), ReplyQueue::new(4, 1514));
        fe.subnet = Some(Ipv4Cidr::new(OUR_IP, 30)); // broadcast 198.18.0.3
        let mut frame = ipv4_frame(OUR_IP, IpProtocol::Tcp, &[0; 20]);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_src_addr(Ipv4Address::new(198, 18, 0, 3));
        ip.fill_checksum();
        fe.classify(&frame, &mut c, &mut s);
        assert_eq!(c.drop_ipv4_bad_source, 1);
    }

    #[test]
    fn unknown_icmp_type_is_counted() {
        let (fe, mut c, mut s) = (front(), StackCounters::default(), ReplyQueue::new(4, 1514));
        // Type 13 (timestamp), code 0, checksum over the 8 bytes.
        let mut icmp = [13u8, 0, 0, 0, 0, 0, 0, 0];
        let mut p = Icmpv4Packet::new_unchecked(&mut icmp[..]);
        p.fill_checksum();
        let frame = ipv4_frame(OUR_IP, IpProtocol::Icmp, &icmp);
        fe.classify(&frame, &mut c, &mut s);
        assert_eq!(c.drop_icmp_other, 1);
    }

    /// A Fragmentation Needed from a router with next-hop `mtu`, quoting a TCP segment from
    /// us (port 80) to the peer's port 40000 at sequence number 7, of `total_len` octets.
    fn frag_needed(mtu: u16, total_len: u16) -> Vec<u8> {
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0, 0];
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
        let quoted = Ipv4Repr {
            src_addr: OUR_IP,
            dst_addr: PEER_IP,
            next_header: IpProtocol::Tcp,
            payload_len: usize::from(total_len) - 20,
            hop_limit: 64,
        };
        let mut header = [0u8; 20];
        quoted.emit(
            &mut Ipv4Packet::new_unchecked(&mut header[..]),
            &ChecksumCapabilities::default(),
        );
        icmp.extend_from_slice(&header);
        icmp.extend_from_slice(&[0, 80, 0x9c, 0x40, 0, 0, 0, 7]);
        Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
        let mut frame = ipv4_frame(OUR_IP, IpProtocol::Icmp, &icmp);
        // From a router, not the peer.
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        ip.set_src_addr(Ipv4Address::new(198, 18, 0, 254));
        ip.fill_checksum();
        frame
    }

    #[test]
    fn fragmentation_needed_becomes_a_path_mtu_report() {
        let (fe, mut c, mut s) = (front(), StackCounters::default(), ReplyQueue::new(4, 1514));
        let frame = frag_needed(1400, 1500);
        let Verdict::PathMtu(report) = fe.classify(&frame, &mut c, &mut s) else {
            panic!("not a path MTU report");
        };
        assert_eq!(
            report,
            PathMtuReport {
                peer_ip: IpAddress::Ipv4(PEER_IP),
                local_ip: IpAddress::Ipv4(OUR_IP),
                peer_port: 40000,
                local_port: 80,
                seq: TcpSeqNumber(7),
                mtu: 1400,
            }
        );
        assert_eq!(c.total_dropped(), 0);
        assert!(s.is_empty());
    }

    #[test]
    fn a_next_hop_mtu_of_zero_takes_the_plateau_below_the_rejected_length() {
        // RFC 1191 §7: 1500 -> 1492, 1492 -> 1006, 4000 -> 2002; nothing below 68.
        let fe = front();
        for (total_len, plateau) in [(1500, 1492), (1492, 1006), (4000, 2002), (576, 508)] {
            let (mut c, mut s) = (StackCounters::default(), ReplyQueue::new(4, 1514));
            match fe.classify(&frag_needed(0, total_len), &mut c, &mut s) {
                Verdict::PathMtu(report) => assert_eq!(report.mtu, plateau, "{total_len}"),
                _ => panic!("{total_len}: no report"),
            }
        }
        let (mut c, mut s) = (StackCounters::default(), ReplyQueue::new(4, 1514));
        assert!(matches!(
            fe.classify(&frag_needed(0, 68), &mut c, &mut s),
            Verdict::Done
        ));
        assert_eq!(c.drop_pmtu_malformed, 1);
    }

    #[test]
    fn rst_for_rst_is_never_sent() {
        let (fe, mut c, mut s) = (front(), StackCounters::default(), ReplyQueue::new(4, 1514));
        let seg = TcpSegment {
            peer_mac: PEER_MAC,
            peer_ip: PEER_IP.into(),
            local: 0,
            ip_packet: &[],
            repr: TcpRepr {
                src_port: 1,
                dst_port: 2,
                control: TcpControl::Rst,
                seq_number: TcpSeqNumber(5),
                ack_number: None,
                window_len: 0,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload: &[],
            },
        };
        fe.stage_rst(&seg, &mut c, &mut s);
        assert!(s.is_empty());
        assert_eq!(c.rst_sent, 0);
    }

    #[test]
    fn link_local_is_the_modified_eui64_of_the_mac() {
        // RFC 4291 appendix A: 02:00:00:00:00:01 -> fe80::ff:fe00:1 (the U/L bit flipped).
        let ll = link_local(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
        assert_eq!(ll, "fe80::ff:fe00:1".parse::<Ipv6Address>().unwrap());
        let ll = link_local(EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(
            ll,
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Address>().unwrap()
        );
    }

    #[test]
    fn locals_index_both_families() {
        let v6 = "2001:2::2".parse::<Ipv6Address>().unwrap();
        let ll = link_local(OUR_MAC);
        let locals = Locals::new(Some(OUR_IP), &[v6, ll]);
        assert_eq!(locals.index_of(OUR_IP.into()), Some(0));
        assert_eq!(locals.index_of(v6.into()), Some(1));
        assert_eq!(locals.index_of(ll.into()), Some(2));
        assert_eq!(locals.index_of(PEER_IP.into()), None);
        assert_eq!(locals.get(1), IpAddress::Ipv6(v6));
        assert_eq!(locals.ipv6().collect::<Vec<_>>(), vec![v6, ll]);
        let v6_only = Locals::new(None, &[v6]);
        assert_eq!(v6_only.index_of(v6.into()), Some(0));
        assert_eq!(v6_only.ipv4(), None);
    }

    #[test]
    fn an_rst_to_an_ipv6_peer_is_an_ipv6_frame() {
        let v6 = "2001:2::2".parse::<Ipv6Address>().unwrap();
        let peer = "2001:2::1".parse::<Ipv6Address>().unwrap();
        let mut fe = front();
        fe.locals = Locals::new(Some(OUR_IP), &[v6]);
        let (mut c, mut s) = (StackCounters::default(), ReplyQueue::new(4, 1514));
        let seg = TcpSegment {
            peer_mac: PEER_MAC,
            peer_ip: peer.into(),
            local: 1,
            ip_packet: &[],
            repr: TcpRepr {
                src_port: 40000,
                dst_port: 80,
                control: TcpControl::Syn,
                seq_number: TcpSeqNumber(5),
                ack_number: None,
                window_len: 0,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None; 3],
                timestamp: None,
                payload: &[],
            },
        };
        fe.stage_rst(&seg, &mut c, &mut s);
        assert_eq!(c.rst_sent, 1);
        let frame = s.take_front().unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (v6, peer));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.rst() && tcp.ack());
        assert_eq!(tcp.ack_number(), TcpSeqNumber(6));
        assert!(tcp.verify_checksum(&v6.into(), &peer.into()));
    }

    #[test]
    fn the_flow_hint_is_the_flow_classify_finds() {
        let v6 = "2001:2::2".parse::<Ipv6Address>().unwrap();
        let peer6 = "2001:2::1".parse::<Ipv6Address>().unwrap();
        let mut fe = front();
        fe.locals = Locals::new(Some(OUR_IP), &[v6]);
        // The peer's side: a front end with the peer's addresses, answering a segment of ours
        // with an RST, which is a frame from the peer to us.
        let mut peer = front();
        peer.mac = PEER_MAC;
        peer.locals = Locals::new(Some(PEER_IP), &[peer6]);
        let pairs: [(IpAddress, IpAddress, u8); 2] = [
            (OUR_IP.into(), PEER_IP.into(), 0),
            (v6.into(), peer6.into(), 1),
        ];
        for (ours, theirs, local) in pairs {
            let (mut c, mut s) = (StackCounters::default(), ReplyQueue::new(4, 1514));
            let seg = TcpSegment {
                peer_mac: OUR_MAC,
                peer_ip: ours,
                local: peer.locals.index_of(theirs).unwrap(),
                ip_packet: &[],
                repr: TcpRepr {
                    src_port: 80,
                    dst_port: 40000,
                    control: TcpControl::None,
                    seq_number: TcpSeqNumber(5),
                    ack_number: Some(TcpSeqNumber(9)),
                    window_len: 0,
                    window_scale: None,
                    max_seg_size: None,
                    sack_permitted: false,
                    sack_ranges: [None; 3],
                    timestamp: None,
                    payload: &[],
                },
            };
            peer.stage_rst(&seg, &mut c, &mut s);
            let frame = s.take_front().unwrap();
            let hint = fe.flow_hint(&frame).expect("a TCP frame has a hint");
            let Verdict::Tcp(got) = fe.classify(&frame, &mut c, &mut s) else {
                panic!("the frame is a TCP segment for us: {c:?}");
            };
            let key = FlowKey {
                peer_ip: got.peer_ip,
                peer_port: got.repr.src_port,
                local: got.local,
            };
            assert_eq!(hint, key);
            assert_eq!(
                (hint.peer_ip, hint.peer_port, hint.local),
                (theirs, 40000, local)
            );
        }
        let udp = ipv4_frame(OUR_IP, IpProtocol::Udp, &[0; 8]);
        assert_eq!(fe.flow_hint(&udp), None);
        let elsewhere = ipv4_frame(Ipv4Address::new(198, 18, 0, 9), IpProtocol::Tcp, &[0; 20]);
        assert_eq!(fe.flow_hint(&elsewhere), None);
        let tcp = ipv4_frame(OUR_IP, IpProtocol::Tcp, &[0; 20]);
        assert!(fe.flow_hint(&tcp).is_some());
        assert_eq!(fe.flow_hint(&tcp[..35]), None, "truncated in the TCP port");
    }
}
