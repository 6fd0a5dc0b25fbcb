//! The IPv6 input path: header validation, extension headers, neighbor discovery (RFC 4861)
//! and ICMPv6 echo (RFC 4443).
//!
//! Every IPv6 frame is parsed with smoltcp's wire views (`new_checked` first, accessors after)
//! and either answered (a Neighbor Advertisement, an echo reply), handed on as a validated
//! [`TcpSegment`](super::TcpSegment) or, for a Packet Too Big quoting a TCP segment we sent
//! (RFC 8201), a [`PathMtuReport`], or dropped and counted in exactly one `drop_*` counter.
//! Other ICMPv6 errors are counted (`drop_icmpv6_other`).
//!
//! What is accepted:
//! - the header: version 6, the payload length within the frame (Ethernet padding is trimmed);
//!   any hop limit outside NDP (RFC 8200 §3 bounds it only for forwarding), exactly 255 for
//!   NDP (RFC 4861 §7.1);
//! - the source: never multicast; our own address only on a Neighbor Advertisement (a node
//!   that took one of our addresses, counted in `ndp_address_conflicts`); the unspecified
//!   address only on a duplicate address detection probe (a Neighbor Solicitation);
//! - the destination: one of our addresses (the link-local one included) for everything; a
//!   group only for neighbor discovery: the solicited-node group of one of our addresses, and
//!   all-nodes `ff02::1`, where the advertisements of a node claiming one of our addresses
//!   arrive. A frame sent to an Ethernet group must carry the IPv6 group it maps to
//!   (RFC 2464 §7);
//! - extension headers (RFC 8200 §4): hop-by-hop (only first) and destination options are
//!   skipped when every option says "skip if unrecognised" (action bits 00: Pad1, PadN, Router
//!   Alert, unknown ones); a routing header is skipped when its segments left is 0, except
//!   type 0 which is always dropped (RFC 5095); a fragment header is dropped (no reassembly).
//!
//! TCP behind extension headers: a cell is fed the whole IP packet, and smoltcp's IPv6 ingress
//! skips a lone hop-by-hop header (with the same option rules as here) but answers any other
//! extension header before TCP with a Parameter Problem, losing the segment. So a segment behind
//! one hop-by-hop header reaches its socket, and one behind any other chain is dropped and
//! counted (`drop_ipv6_ext_tcp`), never silently lost.
//!
//! Neighbor discovery: a solicitation for one of our addresses is answered with an
//! advertisement (Solicited, Override, our MAC as the target link-layer address) to its source
//! at its Ethernet source; a duplicate address detection probe (source `::`) for one of ours is
//! answered to all-nodes with Solicited clear, defending the address (§7.2.4). The stack
//! announces every address once at start (§7.2.6, [`FrontEnd::stage_unsolicited_adverts`]).
//! sirocco never sends a Neighbor Solicitation: every frame it sends answers one the peer sent,
//! whose source MAC it keeps (the SYN's for a connection, the request's for a reply), so it never
//! needs to resolve a neighbour. Nothing is learned from neighbor discovery.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, Icmpv6Message, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv6Address,
    Ipv6ExtHeader, Ipv6ExtHeaderRepr, Ipv6OptionFailureType, Ipv6OptionRepr, Ipv6OptionsIterator,
    Ipv6Packet, Ipv6RoutingHeader, Ipv6RoutingType, NdiscNeighborFlags, NdiscOption,
    NdiscOptionType, NdiscRepr, TcpSeqNumber,
};

use super::{FrontEnd, HOP_LIMIT, IPV6_HEADER_LEN, PathMtuReport, Verdict};
use crate::StackCounters;
use crate::reply_queue::ReplyQueue;

/// Hop limit of every neighbor discovery message, sent and accepted (RFC 4861 §7.1).
const NDP_HOP_LIMIT: u8 = 255;
/// The link-local all-nodes group (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Address = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// Checksums for the ICMPv6 we send: always filled, transmit offload or not (NICs offload
/// TCP and UDP, not ICMPv6).
fn fill() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

/// The solicited-node group of `addr` (RFC 4291 §2.7.1): `ff02::1:ff00:0/104` and its low 24
/// bits.
fn solicited_node(addr: Ipv6Address) -> Ipv6Address {
    let o = addr.octets();
    Ipv6Address::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet group an IPv6 group is sent to: `33:33` and its low 32 bits (RFC 2464 §7).
fn group_mac(group: Ipv6Address) -> EthernetAddress {
    let o = group.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Where a packet was sent.
#[derive(Clone, Copy)]
enum Dest {
    /// One of our addresses, with its [`Locals`](super::Locals) index.
    Local(u8, Ipv6Address),
    /// A group we listen to for neighbor discovery: all-nodes or one of our solicited-node
    /// groups.
    Group(Ipv6Address),
}

impl Dest {
    fn addr(self) -> Ipv6Address {
        match self {
            Dest::Local(_, a) | Dest::Group(a) => a,
        }
    }
}

/// The extension headers in front of the upper-layer header.
struct Chain {
    /// The upper-layer protocol.
    next_header: IpProtocol,
    /// Where its header starts in the IP payload.
    offset: usize,
    /// How many extension headers were skipped.
    headers: u8,
}

/// `true` when every option of a hop-by-hop or destination options header may be skipped:
/// its action bits are 00 (RFC 8200 §4.2), Pad1 and PadN included. An option that does not
/// parse makes the header unskippable.
fn options_skippable(data: &[u8]) -> bool {
    Ipv6OptionsIterator::new(data).all(|option| match option {
        Ok(Ipv6OptionRepr::Pad1 | Ipv6OptionRepr::PadN(_) | Ipv6OptionRepr::RouterAlert(_)) => true,
        Ok(Ipv6OptionRepr::Unknown { type_, .. }) => {
            Ipv6OptionFailureType::from(type_) == Ipv6OptionFailureType::Skip
        }
        _ => false,
    })
}

/// `true` when a routing header may be skipped: not type 0 (RFC 5095 §3) and no segments left
/// (RFC 8200 §4.4: with segments left, an unrecognised type is an error, and we route nothing).
fn routing_skippable(data: &[u8]) -> bool {
    let Ok(header) = Ipv6RoutingHeader::new_checked(data) else {
        return false;
    };
    header.routing_type() != Ipv6RoutingType::Type0 && header.segments_left() == 0
}

/// Walks the extension headers from `first` over `payload`, the IP payload. `None` when one
/// must not be skipped (counted).
fn skip_extension_headers(
    first: IpProtocol,
    payload: &[u8],
    counters: &mut StackCounters,
) -> Option<Chain> {
    let mut chain = Chain {
        next_header: first,
        offset: 0,
        headers: 0,
    };
    // Each header is at least 8 bytes and within `payload`: the walk ends.
    loop {
        let kind = chain.next_header;
        match kind {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {}
            IpProtocol::Ipv6Frag => {
                counters.drop_ipv6_fragment += 1;
                return None;
            }
            _ => return Some(chain),
        }
        let rest = payload.get(chain.offset..).unwrap_or_default();
        let parsed = Ipv6ExtHeader::new_checked(rest)
            .ok()
            .and_then(|header| Ipv6ExtHeaderRepr::parse(&header).ok());
        let skippable = match (kind, parsed) {
            // RFC 8200 §4.1: hop-by-hop options only right after the IPv6 header.
            (IpProtocol::HopByHop, _) if chain.headers > 0 => None,
            (IpProtocol::Ipv6Route, Some(repr)) => routing_skippable(repr.data).then_some(repr),
            (_, Some(repr)) => options_skippable(repr.data).then_some(repr),
            (_, None) => None,
        };
        let Some(repr) = skippable else {
            counters.drop_ipv6_ext_header += 1;
            return None;
        };
        chain.offset += 8 * (usize::from(repr.length) + 1);
        chain.next_header = repr.next_header;
        chain.headers += 1;
    }
}

/// RFC 4443 §3.2 and RFC 8201 §4: a Packet Too Big (`icmp`, the whole message, at least its
/// 8-octet header) quoting the IPv6 header and at least the first 8 octets of a TCP segment we
/// sent from `ours`, the address the message came to. `None` when the quote is short, not
/// IPv6, not TCP right after the header (we send no extension headers), or from another
/// address. The MTU is passed on as given (clamped to 16 bits); the cell raises one below the
/// IPv6 minimum of 1280.
fn packet_too_big(ours: Ipv6Address, icmp: &[u8]) -> Option<PathMtuReport> {
    let be16 = |bytes: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    };
    // ICMPv6 header: type, code, checksum, MTU (4); then the quote.
    let mtu = u32::from_be_bytes(icmp.get(4..8)?.try_into().ok()?);
    let quote = icmp.get(8..)?;
    // The quoted IPv6 header, read by offset: `Ipv6Packet::new_checked` would want its whole
    // payload. Version (high nibble of octet 0), next header (6), source (8..24), destination
    // (24..40).
    let version = quote.first()? >> 4;
    let next_header = IpProtocol::from(*quote.get(6)?);
    let src: [u8; 16] = quote.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = quote.get(24..40)?.try_into().ok()?;
    if version != 6 || next_header != IpProtocol::Tcp || Ipv6Address::from(src) != ours {
        return None;
    }
    let tcp = quote.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + 8)?;
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    Some(PathMtuReport {
        peer_ip: IpAddress::Ipv6(Ipv6Address::from(dst)),
        local_ip: IpAddress::Ipv6(ours),
        peer_port: be16(tcp, 2)?,
        local_port: be16(tcp, 0)?,
        seq: TcpSeqNumber(seq as i32),
        mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
    })
}

impl FrontEnd {
    /// `true` when `group` is one we listen to: all-nodes or a solicited-node group of ours.
    fn listens_to(&self, group: Ipv6Address) -> bool {
        group == ALL_NODES || self.locals.ipv6().any(|a| solicited_node(a) == group)
    }

    /// Classifies an IPv6 packet (`payload`, the Ethernet payload) from `peer_mac`, sent to
    /// the Ethernet address `eth_dst` (ours, or a group).
    pub(super) fn ipv6<'f>(
        &self,
        peer_mac: EthernetAddress,
        eth_dst: EthernetAddress,
        payload: &'f [u8],
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> Verdict<'f> {
        if self.locals.ipv6().next().is_none() {
            counters.drop_ipv6 += 1;
            return Verdict::Done;
        }
        // `new_checked` bounds the header and the payload length by the buffer: after it, no
        // accessor panics.
        let Ok(packet) = Ipv6Packet::new_checked(payload) else {
            counters.drop_ipv6_malformed += 1;
            return Verdict::Done;
        };
        let total = IPV6_HEADER_LEN + usize::from(packet.payload_len());
        let (true, Some(ip_packet)) = (packet.version() == 6, payload.get(..total)) else {
            counters.drop_ipv6_malformed += 1;
            return Verdict::Done;
        };
        let ip_payload = ip_packet.get(IPV6_HEADER_LEN..).unwrap_or_default();
        let (src, dst) = (packet.src_addr(), packet.dst_addr());

        // The source: a host that is not us, but for the two neighbor discovery cases.
        let src_ours = self.locals.index_of(IpAddress::Ipv6(src)).is_some();
        let allowed = |icmp_type: u8| {
            packet.next_header() == IpProtocol::Icmpv6 && ip_payload.first() == Some(&icmp_type)
        };
        if src.is_multicast()
            || (src.is_unspecified() && !allowed(ICMPV6_NEIGHBOR_SOLICIT))
            || (src_ours && !allowed(ICMPV6_NEIGHBOR_ADVERT))
        {
            counters.drop_ipv6_bad_source += 1;
            return Verdict::Done;
        }

        let dest = if dst.is_multicast() {
            if !self.listens_to(dst) {
                counters.drop_ipv6_multicast += 1;
                return Verdict::Done;
            }
            Dest::Group(dst)
        } else {
            match self.locals.index_of(IpAddress::Ipv6(dst)) {
                Some(local) => Dest::Local(local, dst),
                None => {
                    counters.drop_ipv6_not_for_us += 1;
                    return Verdict::Done;
                }
            }
        };
        // A frame to an Ethernet group carries the IPv6 group that maps to it.
        if eth_dst != self.mac && !(matches!(dest, Dest::Group(_)) && eth_dst == group_mac(dst)) {
            counters.drop_ipv6_not_for_us += 1;
            return Verdict::Done;
        }

        let Some(chain) = skip_extension_headers(packet.next_header(), ip_payload, counters) else {
            return Verdict::Done;
        };
        let upper = ip_payload.get(chain.offset..).unwrap_or_default();
        match chain.next_header {
            IpProtocol::Icmpv6 => {
                let hop_limit = packet.hop_limit();
                self.icmpv6(peer_mac, src, dest, hop_limit, upper, counters, replies)
            }
            IpProtocol::Tcp => {
                let Dest::Local(local, _) = dest else {
                    counters.drop_ipv6_multicast += 1;
                    return Verdict::Done;
                };
                // See the module docs: the cell's smoltcp skips one hop-by-hop header, no more.
                let lone_hop_by_hop =
                    chain.headers == 1 && packet.next_header() == IpProtocol::HopByHop;
                if chain.headers > 0 && !lone_hop_by_hop {
                    counters.drop_ipv6_ext_tcp += 1;
                    return Verdict::Done;
                }
                let peer_ip = IpAddress::Ipv6(src);
                self.tcp(peer_mac, peer_ip, local, ip_packet, upper, counters)
            }
            _ => {
                counters.drop_ip_protocol_unknown += 1;
                Verdict::Done
            }
        }
    }

    /// Handles an ICMPv6 message: echo, neighbor discovery, Packet Too Big. A valid Packet Too
    /// Big becomes a [`Verdict::PathMtu`]; everything else is answered or dropped here.
    #[allow(clippy::too_many_arguments)]
    fn icmpv6<'f>(
        &self,
        peer_mac: EthernetAddress,
        src: Ipv6Address,
        dest: Dest,
        hop_limit: u8,
        bytes: &[u8],
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) -> Verdict<'f> {
        let Ok(packet) = Icmpv6Packet::new_checked(bytes) else {
            counters.drop_icmpv6_malformed += 1;
            return Verdict::Done;
        };
        // Always verified, whatever the driver checked: drivers offload TCP and UDP checksums,
        // and neighbor discovery must not be spoofable by a corrupted frame.
        if !packet.verify_checksum(&src, &dest.addr()) {
            counters.drop_icmpv6_malformed += 1;
            return Verdict::Done;
        }
        if packet.msg_type() == Icmpv6Message::PktTooBig {
            let Dest::Local(_, ours) = dest else {
                counters.drop_ipv6_multicast += 1;
                return Verdict::Done;
            };
            // (smoltcp's `Icmpv6Repr` wants the whole quoted packet; the quote is cut.)
            return match packet_too_big(ours, bytes) {
                Some(report) => Verdict::PathMtu(report),
                None => {
                    counters.drop_pmtu_malformed += 1;
                    Verdict::Done
                }
            };
        }
        match packet.msg_type() {
            Icmpv6Message::EchoRequest => {
                self.echo6(peer_mac, src, dest, &packet, counters, replies)
            }
            Icmpv6Message::NeighborSolicit
            | Icmpv6Message::NeighborAdvert
            | Icmpv6Message::RouterSolicit
            | Icmpv6Message::RouterAdvert
            | Icmpv6Message::Redirect => {
                self.ndp(peer_mac, src, dest, hop_limit, &packet, counters, replies)
            }
            _ => counters.drop_icmpv6_other += 1,
        }
        Verdict::Done
    }

    /// Answers an echo request (RFC 4443 §4.2) to one of our unicast addresses.
    fn echo6(
        &self,
        peer_mac: EthernetAddress,
        src: Ipv6Address,
        dest: Dest,
        packet: &Icmpv6Packet<&[u8]>,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        let Dest::Local(_, ours) = dest else {
            counters.drop_ipv6_multicast += 1;
            return;
        };
        let ignored = ChecksumCapabilities::ignored();
        let Ok(Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv6Repr::parse(&src, &ours, packet, &ignored)
        else {
            // A code other than 0.
            counters.drop_icmpv6_malformed += 1;
            return;
        };
        // RFC 4443 §4.2: the reply carries the request's identifier, sequence number and data,
        // from the unicast address the request was sent to.
        let reply = Icmpv6Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let len = reply.buffer_len();
        if IPV6_HEADER_LEN + len > self.mtu {
            counters.drop_icmp_oversize += 1;
            return;
        }
        let staged = self.stage_ip_hops(
            replies,
            peer_mac,
            (IpAddress::Ipv6(ours), IpAddress::Ipv6(src)),
            (IpProtocol::Icmpv6, HOP_LIMIT),
            len,
            |buf, _| reply.emit(&ours, &src, &mut Icmpv6Packet::new_unchecked(buf), &fill()),
        );
        match staged {
            true => counters.icmpv6_echo_replies += 1,
            false => counters.tx_staging_full += 1,
        }
    }

    /// Validates a neighbor discovery message (RFC 4861 §7.1) and answers a solicitation for
    /// one of our addresses.
    #[allow(clippy::too_many_arguments)]
    fn ndp(
        &self,
        peer_mac: EthernetAddress,
        src: Ipv6Address,
        dest: Dest,
        hop_limit: u8,
        packet: &Icmpv6Packet<&[u8]>,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        // §7.1.1 / §7.1.2: hop limit 255 (so it was not forwarded), code 0, every option of
        // non-zero length within the message. A link-layer address option on Ethernet is 8
        // bytes (RFC 4861 §4.6.1).
        if hop_limit != NDP_HOP_LIMIT || packet.msg_code() != 0 {
            counters.drop_ndp_invalid += 1;
            return;
        }
        let bytes: &[u8] = packet.as_ref();
        let mut options = bytes.get(packet.header_len()..).unwrap_or_default();
        let mut source_lladdr = false;
        while !options.is_empty() {
            let Ok(option) = NdiscOption::new_checked(options) else {
                counters.drop_ndp_invalid += 1;
                return;
            };
            let kind = option.option_type();
            let lladdr = matches!(
                kind,
                NdiscOptionType::SourceLinkLayerAddr | NdiscOptionType::TargetLinkLayerAddr
            );
            if lladdr && option.data_len() != 1 {
                counters.drop_ndp_invalid += 1;
                return;
            }
            source_lladdr |= kind == NdiscOptionType::SourceLinkLayerAddr;
            let len = usize::from(option.data_len()) * 8;
            options = options.get(len..).unwrap_or_default();
        }
        let Ok(repr) = NdiscRepr::parse(packet) else {
            counters.drop_ndp_invalid += 1;
            return;
        };
        match repr {
            NdiscRepr::NeighborSolicit { target_addr, .. } => {
                // §7.1.1: the target is not multicast; from the unspecified address, the
                // message goes to a solicited-node group and has no source link-layer option.
                let dad = src.is_unspecified();
                let to_solicited = matches!(dest, Dest::Group(g) if g != ALL_NODES);
                if target_addr.is_multicast()
                    || (dad && (source_lladdr || !to_solicited))
                    || dest.addr() == ALL_NODES
                {
                    counters.drop_ndp_invalid += 1;
                    return;
                }
                if self.locals.index_of(IpAddress::Ipv6(target_addr)).is_none() {
                    counters.drop_ndp_not_for_us += 1;
                    return;
                }
                // §7.2.4: to the solicitation's source, Solicited set; a duplicate address
                // detection probe gets it to all-nodes, Solicited clear: we defend the address.
                let (dst_ip, dst_mac, solicited) = match dad {
                    true => (ALL_NODES, group_mac(ALL_NODES), false),
                    false => (src, peer_mac, true),
                };
                self.stage_advert(target_addr, (dst_ip, dst_mac), solicited, counters, replies);
            }
            NdiscRepr::NeighborAdvert {
                flags, target_addr, ..
            } => {
                // §7.1.2: the target is not multicast; to a group, Solicited is clear.
                let to_group = matches!(dest, Dest::Group(_));
                if target_addr.is_multicast()
                    || (to_group && flags.contains(NdiscNeighborFlags::SOLICITED))
                {
                    counters.drop_ndp_invalid += 1;
                    return;
                }
                let ours = self.locals.index_of(IpAddress::Ipv6(target_addr)).is_some();
                if ours && peer_mac != self.mac {
                    // Another node claims one of our addresses (§7.2.5 has a host log it).
                    counters.ndp_address_conflicts += 1;
                } else {
                    counters.drop_ndp_other += 1;
                }
            }
            _ => counters.drop_ndp_other += 1,
        }
    }

    /// Stages a Neighbor Advertisement for our address `target` to `to` (IP and Ethernet),
    /// Override set, our MAC as the target link-layer address. Counts `ndp_adverts_sent` or
    /// `tx_staging_full`.
    fn stage_advert(
        &self,
        target: Ipv6Address,
        to: (Ipv6Address, EthernetAddress),
        solicited: bool,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        let (dst, dst_mac) = to;
        let mut flags = NdiscNeighborFlags::OVERRIDE;
        if solicited {
            flags |= NdiscNeighborFlags::SOLICITED;
        }
        let advert = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr: target,
            lladdr: Some(self.mac.into()),
        });
        let staged = self.stage_ip_hops(
            replies,
            dst_mac,
            (IpAddress::Ipv6(target), IpAddress::Ipv6(dst)),
            (IpProtocol::Icmpv6, NDP_HOP_LIMIT),
            advert.buffer_len(),
            |buf, _| {
                advert.emit(
                    &target,
                    &dst,
                    &mut Icmpv6Packet::new_unchecked(buf),
                    &fill(),
                )
            },
        );
        match staged {
            true => counters.ndp_adverts_sent += 1,
            false => counters.tx_staging_full += 1,
        }
    }

    /// Stages one unsolicited Neighbor Advertisement for each of our IPv6 addresses, to
    /// all-nodes with Override set and Solicited clear (RFC 4861 §7.2.6), so neighbours that
    /// cached another MAC for them learn ours. [`crate::Stack::new`] calls it, so the first
    /// `poll_egress` sends them.
    pub(crate) fn stage_unsolicited_adverts(
        &self,
        counters: &mut StackCounters,
        replies: &mut ReplyQueue,
    ) {
        for addr in self.locals.ipv6() {
            let to = (ALL_NODES, group_mac(ALL_NODES));
            self.stage_advert(addr, to, false, counters, replies);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::{Locals, link_local};
    use crate::reply_queue::ETH_HEADER_LEN;
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv6Repr};

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
    const OURS: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    const PEER: Ipv6Address = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

    fn front(ipv6: &[Ipv6Address]) -> FrontEnd {
        FrontEnd {
            mac: OUR_MAC,
            locals: Locals::new(None, ipv6),
            subnet: None,
            verify_rx: true,
            tx_caps: ChecksumCapabilities::default(),
            mtu: 1500,
        }
    }

    fn frame(next_header: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HEADER_LEN + IPV6_HEADER_LEN + payload.len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f);
        eth.set_dst_addr(OUR_MAC);
        eth.set_src_addr(PEER_MAC);
        eth.set_ethertype(EthernetProtocol::Ipv6);
        Ipv6Repr {
            src_addr: PEER,
            dst_addr: OURS,
            next_header,
            payload_len: payload.len(),
            hop_limit: 64,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut f[14..54]));
        f[54..].copy_from_slice(payload);
        f
    }

    #[test]
    fn groups_and_their_ethernet_addresses() {
        // RFC 4291 §2.7.1 and RFC 2464 §7.
        let group = solicited_node(OURS);
        assert_eq!(group, "ff02::1:ff00:2".parse::<Ipv6Address>().unwrap());
        assert_eq!(
            group_mac(group),
            EthernetAddress([0x33, 0x33, 0xff, 0, 0, 2])
        );
        assert_eq!(
            group_mac(ALL_NODES),
            EthernetAddress([0x33, 0x33, 0, 0, 0, 1])
        );
        let fe = front(&[OURS, link_local(OUR_MAC)]);
        assert!(fe.listens_to(group));
        assert!(fe.listens_to(solicited_node(link_local(OUR_MAC))));
        assert!(fe.listens_to(ALL_NODES));
        // (::1 would share the link-local fe80::ff:fe00:1 group.)
        let other = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 7);
        assert!(!fe.listens_to(solicited_node(other)));
    }

    #[test]
    fn options_are_skippable_only_with_action_00() {
        assert!(options_skippable(&[0, 1, 4, 0, 0, 0, 0, 0][2..])); // PadN
        assert!(options_skippable(&[0, 0, 0, 0, 0, 0])); // Pad1 x6
        assert!(options_skippable(&[5, 2, 0, 0, 1, 0])); // Router Alert, PadN
        assert!(options_skippable(&[0x3e, 0, 1, 2, 0, 0])); // unknown, action 00
        for action in [0x40u8, 0x80, 0xc0] {
            assert!(!options_skippable(&[action | 0x1e, 0, 1, 2, 0, 0]));
        }
        // An option running past the header, and a Router Alert of the wrong length.
        assert!(!options_skippable(&[1, 9, 0, 0, 0, 0]));
        assert!(!options_skippable(&[5, 4, 0, 0, 0, 0]));
    }

    #[test]
    fn routing_headers_are_skippable_with_no_segments_left_unless_type_0() {
        assert!(routing_skippable(&[4, 0, 0, 0, 0, 0]));
        assert!(!routing_skippable(&[4, 1, 0, 0, 0, 0]));
        assert!(!routing_skippable(&[0, 0, 0, 0, 0, 0]));
        // Type 2 (mobile IPv6) shorter than its home address.
        assert!(!routing_skippable(&[2, 0, 0, 0, 0, 0]));
        assert!(!routing_skippable(&[]));
    }

    #[test]
    fn the_walk_finds_the_upper_layer_header() {
        let mut c = StackCounters::default();
        let hbh = [u8::from(IpProtocol::Ipv6Opts), 0, 1, 4, 0, 0, 0, 0];
        let dst = [u8::from(IpProtocol::Tcp), 1, 1, 12, 0, 0, 0, 0];
        let payload = [&hbh[..], &dst[..], &[0; 8], &[0xaa; 20]].concat();
        let chain = skip_extension_headers(IpProtocol::HopByHop, &payload, &mut c).unwrap();
        assert_eq!(chain.next_header, IpProtocol::Tcp);
        assert_eq!((chain.offset, chain.headers), (24, 2));
        let none = skip_extension_headers(IpProtocol::Tcp, &payload, &mut c).unwrap();
        assert_eq!((none.offset, none.headers), (0, 0));
        // Truncated: the destination options header says 16 bytes, 12 are there.
        assert!(skip_extension_headers(IpProtocol::HopByHop, &payload[..20], &mut c).is_none());
        assert_eq!(c.drop_ipv6_ext_header, 1);
    }

    #[test]
    fn a_packet_too_big_quoting_our_segment_is_a_report() {
        let mut icmp = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00]; // MTU 1280
        let quoted = Ipv6Repr {
            src_addr: OURS,
            dst_addr: PEER,
            next_header: IpProtocol::Tcp,
            payload_len: 1460,
            hop_limit: 64,
        };
        let mut header = [0u8; 40];
        quoted.emit(&mut Ipv6Packet::new_unchecked(&mut header[..]));
        icmp.extend_from_slice(&header);
        icmp.extend_from_slice(&[0, 80, 0x9c, 0x40, 0, 0, 0, 7]);
        let report = packet_too_big(OURS, &icmp).unwrap();
        assert_eq!(
            report,
            PathMtuReport {
                peer_ip: IpAddress::Ipv6(PEER),
                local_ip: IpAddress::Ipv6(OURS),
                peer_port: 40000,
                local_port: 80,
                seq: TcpSeqNumber(7),
                mtu: 1280,
            }
        );
        // An MTU over 16 bits is clamped; the quote must be from the address it came to,
        // TCP, IPv6, and hold 8 octets of TCP.
        let mut jumbo = icmp.clone();
        jumbo[4..8].copy_from_slice(&100_000u32.to_be_bytes());
        assert_eq!(packet_too_big(OURS, &jumbo).map(|r| r.mtu), Some(u16::MAX));
        assert_eq!(packet_too_big(PEER, &icmp), None);
        assert_eq!(packet_too_big(OURS, &icmp[..8 + 40 + 7]), None);
        let mut udp = icmp.clone();
        udp[8 + 6] = 17;
        assert_eq!(packet_too_big(OURS, &udp), None);
        let mut v4 = icmp.clone();
        v4[8] = 0x45;
        assert_eq!(packet_too_big(OURS, &v4), None);
        for len in 0..icmp.len() {
            let _ = packet_too_big(OURS, &icmp[..len]);
        }
    }

    #[test]
    fn ipv6_without_an_ipv6_address_is_counted_as_before() {
        let mut fe = front(&[]);
        fe.locals = Locals::new(Some(smoltcp::wire::Ipv4Address::new(198, 18, 0, 1)), &[]);
        let (mut c, mut q) = (StackCounters::default(), ReplyQueue::new(4, 1514));
        let f = frame(IpProtocol::Tcp, &[0; 20]);
        assert!(matches!(fe.classify(&f, &mut c, &mut q), Verdict::Done));
        // A frame to an IPv6 Ethernet group too.
        let mut group = f.clone();
        group[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
        fe.classify(&group, &mut c, &mut q);
        assert_eq!(c.drop_ipv6, 2);
        assert_eq!(c.total_dropped(), 2);
        // An IPv4 frame to an IPv6 group MAC is not for us.
        let mut v4 = group.clone();
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        fe.classify(&v4, &mut c, &mut q);
        assert_eq!(c.drop_eth_not_for_us, 1);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_counted_never_a_panic() {
        use smoltcp::wire::{NdiscRepr, RawHardwareAddress};
        let fe = front(&[OURS, link_local(OUR_MAC)]);
        let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: OURS,
            lladdr: Some(RawHardwareAddress::from(PEER_MAC)),
        });
        let mut icmp = vec![0u8; ns.buffer_len()];
        ns.emit(
            &PEER,
            &OURS,
            &mut Icmpv6Packet::new_unchecked(&mut icmp[..]),
            &ChecksumCapabilities::default(),
        );
        let hbh = [u8::from(IpProtocol::Icmpv6), 0, 1, 4, 0, 0, 0, 0];
        let mut seeds = [
            frame(IpProtocol::Icmpv6, &icmp),
            frame(IpProtocol::HopByHop, &[&hbh[..], &icmp].concat()),
            frame(IpProtocol::Ipv6Route, &[4, 0, 4, 0, 0, 0, 0, 0, 1, 2, 3]),
        ];
        for seed in &mut seeds {
            seed[ETH_HEADER_LEN + 7] = NDP_HOP_LIMIT;
        }
        let mut q = ReplyQueue::new(1024, 1514);
        for seed in &seeds {
            for len in 0..=seed.len() {
                let mut c = StackCounters::default();
                let _ = fe.classify(&seed[..len], &mut c, &mut q);
                let answered = c.ndp_adverts_sent + c.tx_staging_full;
                assert_eq!(c.total_dropped() + answered, 1, "length {len}");
            }
            for i in 14..seed.len() {
                for bit in [0x01u8, 0x80] {
                    let mut f = seed.clone();
                    f[i] ^= bit;
                    let mut c = StackCounters::default();
                    let verdict = fe.classify(&f, &mut c, &mut q);
                    let handed_on = matches!(verdict, Verdict::Tcp(_)) as u64;
                    let events = c.ndp_adverts_sent
                        + c.ndp_address_conflicts
                        + c.icmpv6_echo_replies
                        + c.tx_staging_full;
                    assert_eq!(c.total_dropped() + events + handed_on, 1, "byte {i}");
                }
                while q.take_front().is_some() {}
            }
        }
    }
}
