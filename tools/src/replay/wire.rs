//! The frames a replay reads and writes: Ethernet II + IPv4 or IPv6 + TCP, parsed once into a
//! [`TcpSegment`] and built back with fresh addresses, ports, numbers and checksums.
//!
//! - [`TcpSegment::parse`] accepts only a frame a TCP stack would accept: whole Ethernet,
//!   IPv4 (no options beyond the header length, no fragment, total length within the frame,
//!   valid header checksum) or IPv6 (TCP right after the fixed header, payload length within
//!   the frame), and TCP (valid data offset and checksum, over the pseudo-header of its
//!   family). Anything else is `None`: the replay treats it as junk, never as part of a flow.
//!   It never panics on any input.
//! - [`build_segment`] writes a frame with every checksum computed (RFC 791, RFC 8200 §8.1,
//!   RFC 9293 §3.1).
//! - [`rewrite_junk`] moves a frame that does not parse onto the target's addresses while
//!   keeping what is wrong with it: checksums are updated incrementally (RFC 1624), so a
//!   checksum that was wrong stays wrong by the same amount.
//! - ARP (RFC 826) and neighbor discovery (RFC 4861) find the target's MAC on a live link.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETHERNET_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const TCP_LEN: usize = 20;
const PROTO_TCP: u8 = 6;
const PROTO_ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A MAC address.
pub type Mac = [u8; 6];

/// One valid TCP segment over IPv4 or IPv6 over Ethernet, with the fields a replay uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// Both addresses are of one family; it decides the frame's.
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    /// IPv4 only (0 over IPv6).
    pub ip_id: u16,
    /// The TTL, or the IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 only (IPv6 routers never fragment: `false`).
    pub dont_fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// FIN, SYN, RST, PSH, ACK (and URG, ECE, CWR) as on the wire.
    pub flags: u8,
    pub window: u16,
    /// From the SYN's options; `None` when absent.
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub payload: Vec<u8>,
}

impl TcpSegment {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment takes: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        len.saturating_add(u32::from(self.has(SYN)) + u32::from(self.has(FIN)))
    }

    /// Parses a frame a TCP stack would accept. See the module documentation.
    pub fn parse(frame: &[u8]) -> Option<TcpSegment> {
        let ip = frame.get(ETHERNET_LEN..)?;
        let (src_ip, dst_ip, ip_id, ttl, dont_fragment, tcp) = match be16(frame, 12)? {
            ETHERTYPE_IPV4 => {
                let version_ihl = *ip.first()?;
                let ihl = usize::from(version_ihl & 0x0f) * 4;
                if version_ihl >> 4 != 4 || ihl < IPV4_LEN {
                    return None;
                }
                let total = usize::from(be16(ip, 2)?);
                if total < ihl || total > ip.len() || *ip.get(9)? != PROTO_TCP {
                    return None;
                }
                let fragment = be16(ip, 6)?;
                // More-fragments set or a non-zero offset: not a whole segment.
                if fragment & 0x3fff != 0 || checksum(&[ip.get(..ihl)?]) != 0 {
                    return None;
                }
                (
                    IpAddr::V4(ipv4(ip, 12)?),
                    IpAddr::V4(ipv4(ip, 16)?),
                    be16(ip, 4)?,
                    *ip.get(8)?,
                    fragment & 0x4000 != 0,
                    ip.get(ihl..total)?,
                )
            }
            ETHERTYPE_IPV6 => {
                // TCP right after the fixed header: an extension header (a fragment, say) is
                // not a segment a replay can send back as it is.
                if *ip.first()? >> 4 != 6 || *ip.get(6)? != PROTO_TCP {
                    return None;
                }
                let payload = usize::from(be16(ip, 4)?);
                (
                    IpAddr::V6(ipv6(ip, 8)?),
                    IpAddr::V6(ipv6(ip, 24)?),
                    0,
                    *ip.get(7)?,
                    false,
                    ip.get(IPV6_LEN..IPV6_LEN.checked_add(payload)?)?,
                )
            }
            _ => return None,
        };
        let offset = usize::from(*tcp.get(12)? >> 4) * 4;
        if offset < TCP_LEN || offset > tcp.len() {
            return None;
        }
        if checksum(&[&pseudo_header(src_ip, dst_ip, tcp.len())?, tcp]) != 0 {
            return None;
        }
        let (mss, window_scale) = parse_options(tcp.get(TCP_LEN..offset)?);
        Some(TcpSegment {
            src_mac: mac(frame, 6)?,
            dst_mac: mac(frame, 0)?,
            src_ip,
            dst_ip,
            ip_id,
            ttl,
            dont_fragment,
            src_port: be16(tcp, 0)?,
            dst_port: be16(tcp, 2)?,
            seq: be32(tcp, 4)?,
            ack: be32(tcp, 8)?,
            flags: *tcp.get(13)?,
            window: be16(tcp, 14)?,
            mss,
            window_scale,
            payload: tcp.get(offset..)?.to_vec(),
        })
    }
}

/// MSS and window scale from TCP options; a malformed list ends the scan.
fn parse_options(mut options: &[u8]) -> (Option<u16>, Option<u8>) {
    let (mut mss, mut scale) = (None, None);
    while let Some(&kind) = options.first() {
        match kind {
            0 => break,
            1 => options = options.get(1..).unwrap_or_default(),
            _ => {
                let Some(&len) = options.get(1) else { break };
                let len = usize::from(len);
                let Some(option) = options.get(..len).filter(|_| len >= 2) else {
                    break;
                };
                match (kind, len) {
                    (2, 4) => mss = be16(option, 2),
                    (3, 3) => scale = option.get(2).copied(),
                    _ => {}
                }
                options = options.get(len..).unwrap_or_default();
            }
        }
    }
    (mss, scale)
}

/// Writes `segment` as a frame: Ethernet, a 20-byte IPv4 header (or a 40-byte IPv6 one) and
/// TCP with only the MSS and window-scale options (SYNs only), every checksum computed. A
/// segment whose two addresses are of different families is written as IPv6, the IPv4 one
/// mapped (RFC 4291 §2.5.5.2).
pub fn build_segment(segment: &TcpSegment) -> Vec<u8> {
    let mut options = Vec::new();
    if segment.has(SYN) {
        if let Some(mss) = segment.mss {
            options.extend_from_slice(&[2, 4]);
            options.extend_from_slice(&mss.to_be_bytes());
        }
        if let Some(scale) = segment.window_scale {
            options.extend_from_slice(&[1, 3, 3, scale]);
        }
    }
    let tcp_len = TCP_LEN + options.len() + segment.payload.len();
    let (src_ip, dst_ip) = same_family(segment.src_ip, segment.dst_ip);
    let mut frame = Vec::with_capacity(ETHERNET_LEN + IPV6_LEN + tcp_len);
    frame.extend_from_slice(&segment.dst_mac);
    frame.extend_from_slice(&segment.src_mac);
    let ip_start = ETHERNET_LEN;
    match (src_ip, dst_ip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = IPV4_LEN + tcp_len;
            frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            frame.extend_from_slice(&[0x45, 0]);
            frame.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
            frame.extend_from_slice(&segment.ip_id.to_be_bytes());
            let fragment: u16 = if segment.dont_fragment { 0x4000 } else { 0 };
            frame.extend_from_slice(&fragment.to_be_bytes());
            frame.extend_from_slice(&[segment.ttl, PROTO_TCP, 0, 0]);
            frame.extend_from_slice(&src.octets());
            frame.extend_from_slice(&dst.octets());
            let ip_sum = checksum(&[&frame[ip_start..]]);
            frame[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
        }
        (src, dst) => {
            frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            frame.extend_from_slice(&[0x60, 0, 0, 0]);
            frame.extend_from_slice(&u16::try_from(tcp_len).unwrap_or(u16::MAX).to_be_bytes());
            frame.extend_from_slice(&[PROTO_TCP, segment.ttl]);
            frame.extend_from_slice(&as_ipv6(src).octets());
            frame.extend_from_slice(&as_ipv6(dst).octets());
        }
    }
    let tcp_start = frame.len();
    frame.extend_from_slice(&segment.src_port.to_be_bytes());
    frame.extend_from_slice(&segment.dst_port.to_be_bytes());
    frame.extend_from_slice(&segment.seq.to_be_bytes());
    frame.extend_from_slice(&segment.ack.to_be_bytes());
    let offset_words = u8::try_from((TCP_LEN + options.len()) / 4).unwrap_or(15);
    frame.extend_from_slice(&[offset_words << 4, segment.flags]);
    frame.extend_from_slice(&segment.window.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&options);
    frame.extend_from_slice(&segment.payload);
    let pseudo = pseudo_header(src_ip, dst_ip, tcp_len).unwrap_or_default();
    let tcp_sum = checksum(&[&pseudo, &frame[tcp_start..]]);
    frame[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    frame
}

/// `a` and `b` as they are when of one family, else both as IPv6.
fn same_family(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    match (a, b) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (a, b),
        _ => (IpAddr::V6(as_ipv6(a)), IpAddr::V6(as_ipv6(b))),
    }
}

fn as_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Where [`rewrite_junk`] moves a frame.
#[derive(Debug, Clone, Copy)]
pub struct JunkRewrite {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// (from, to) address pairs: each IP source or destination equal to a `from` becomes `to`
    /// (when both are of the frame's family).
    pub addresses: [(IpAddr, IpAddr); 2],
    /// (from, to) for the TCP source port, if it is to change.
    pub src_port: Option<(u16, u16)>,
}

/// Where an IP frame keeps what [`rewrite_junk`] changes, read from its ethertype and first
/// bytes as far as they go.
struct IpLayout {
    /// Offsets of the source and destination addresses in the frame.
    addresses: [usize; 2],
    address_len: usize,
    /// Offset of the IPv4 header checksum (IPv6 has none).
    header_checksum: Option<usize>,
    /// Offset of the TCP header, if the next protocol is TCP.
    tcp: Option<usize>,
}

fn ip_layout(frame: &[u8]) -> Option<IpLayout> {
    match be16(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let ihl = frame
                .get(ETHERNET_LEN)
                .map_or(IPV4_LEN, |b| usize::from(b & 0x0f) * 4)
                .max(IPV4_LEN);
            Some(IpLayout {
                addresses: [ETHERNET_LEN + 12, ETHERNET_LEN + 16],
                address_len: 4,
                header_checksum: Some(ETHERNET_LEN + 10),
                tcp: (frame.get(ETHERNET_LEN + 9) == Some(&PROTO_TCP))
                    .then_some(ETHERNET_LEN + ihl),
            })
        }
        ETHERTYPE_IPV6 => Some(IpLayout {
            addresses: [ETHERNET_LEN + 8, ETHERNET_LEN + 24],
            address_len: 16,
            header_checksum: None,
            tcp: (frame.get(ETHERNET_LEN + 6) == Some(&PROTO_TCP))
                .then_some(ETHERNET_LEN + IPV6_LEN),
        }),
        _ => None,
    }
}

/// The source and destination addresses of an IPv4 or IPv6 frame, and where its TCP header
/// starts if it carries TCP, as far as the frame holds them.
pub fn ip_endpoints(frame: &[u8]) -> (Option<IpAddr>, Option<IpAddr>, Option<usize>) {
    let Some(layout) = ip_layout(frame) else {
        return (None, None, None);
    };
    let read = |at: usize| match layout.address_len {
        4 => ipv4(frame, at).map(IpAddr::V4),
        _ => ipv6(frame, at).map(IpAddr::V6),
    };
    (
        read(layout.addresses[0]),
        read(layout.addresses[1]),
        layout.tcp,
    )
}

/// Rewrites the MACs of any frame long enough to have them; and, as far as the frame holds
/// them, its IPv4 or IPv6 addresses and TCP source port, with the IPv4 and TCP checksums
/// updated incrementally (RFC 1624 eqn. 3) so that their correctness does not change. See the
/// module documentation.
pub fn rewrite_junk(frame: &mut [u8], rewrite: &JunkRewrite) {
    if let Some(dst) = frame.get_mut(0..6) {
        dst.copy_from_slice(&rewrite.dst_mac);
    }
    if let Some(src) = frame.get_mut(6..12) {
        src.copy_from_slice(&rewrite.src_mac);
    }
    let Some(layout) = ip_layout(frame) else {
        return;
    };
    let (old_src, old_dst, _) = ip_endpoints(frame);
    for (field, old) in layout.addresses.into_iter().zip([old_src, old_dst]) {
        let Some(old) = old else {
            continue;
        };
        let Some(&(_, new)) = rewrite.addresses.iter().find(|(from, _)| *from == old) else {
            continue;
        };
        let (old_bytes, new_bytes) = match (old, new) {
            (IpAddr::V4(o), IpAddr::V4(n)) => (o.octets().to_vec(), n.octets().to_vec()),
            (IpAddr::V6(o), IpAddr::V6(n)) => (o.octets().to_vec(), n.octets().to_vec()),
            // Another family does not fit in the frame's header.
            _ => continue,
        };
        for half in (0..layout.address_len).step_by(2) {
            let (Some(old16), Some(new16)) = (be16(&old_bytes, half), be16(&new_bytes, half))
            else {
                continue;
            };
            if let Some(at) = layout.header_checksum {
                adjust(frame, at, old16, new16);
            }
            if let Some(tcp) = layout.tcp {
                adjust(frame, tcp + 16, old16, new16);
            }
        }
        if let Some(bytes) = frame.get_mut(field..field + layout.address_len) {
            bytes.copy_from_slice(&new_bytes);
        }
    }
    if let (Some(tcp), Some((from, to))) = (layout.tcp, rewrite.src_port)
        && be16(frame, tcp) == Some(from)
    {
        adjust(frame, tcp + 16, from, to);
        if let Some(bytes) = frame.get_mut(tcp..tcp + 2) {
            bytes.copy_from_slice(&to.to_be_bytes());
        }
    }
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for the checksum at `at` if the frame holds it.
fn adjust(frame: &mut [u8], at: usize, old: u16, new: u16) {
    let Some(current) = be16(frame, at) else {
        return;
    };
    let mut sum = u32::from(!current) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let Some(bytes) = frame.get_mut(at..at + 2) {
        bytes.copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071) of the concatenated `parts` (each of even length but the
/// last). Zero over data that includes a correct checksum.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The TCP pseudo-header of IPv4 (RFC 9293 §3.1) or IPv6 (RFC 8200 §8.1); addresses of
/// different families are taken as IPv6.
fn pseudo_header(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Option<Vec<u8>> {
    let mut pseudo = Vec::with_capacity(40);
    match same_family(src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, PROTO_TCP]);
            pseudo.extend_from_slice(&u16::try_from(tcp_len).ok()?.to_be_bytes());
        }
        (s, d) => {
            pseudo.extend_from_slice(&as_ipv6(s).octets());
            pseudo.extend_from_slice(&as_ipv6(d).octets());
            pseudo.extend_from_slice(&u32::try_from(tcp_len).ok()?.to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, PROTO_TCP]);
        }
    }
    Some(pseudo)
}

pub fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

pub fn ipv4(bytes: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

pub fn ipv6(bytes: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

pub fn mac(bytes: &[u8], at: usize) -> Option<Mac> {
    bytes.get(at..at + 6)?.try_into().ok()
}

/// An ARP request (RFC 826) from `sender` for `target`, broadcast.
pub fn arp_request(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// The sender MAC of an ARP reply from `ip`, if `frame` is one.
pub fn arp_reply_from(frame: &[u8], ip: Ipv4Addr) -> Option<Mac> {
    let arp = frame.get(ETHERNET_LEN..)?;
    let is_reply = be16(frame, 12)? == ETHERTYPE_ARP && be16(arp, 6)? == 2;
    (is_reply && ipv4(arp, 14)? == ip)
        .then(|| mac(arp, 8))
        .flatten()
}

/// A neighbor solicitation (RFC 4861 §4.3) from `sender` for `target`, to the target's
/// solicited-node multicast address (RFC 4291 §2.7.1), with our link-layer address.
pub fn neighbor_solicitation(sender_mac: Mac, sender_ip: Ipv6Addr, target_ip: Ipv6Addr) -> Vec<u8> {
    let t = target_ip.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    // Source link-layer address option: type 1, length 1 (8 octets).
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&sender_mac);
    let dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    icmpv6_frame(sender_mac, dst_mac, sender_ip, group, icmp)
}

/// A solicited neighbor advertisement (RFC 4861 §4.4) for `target_ip` at `target_mac`,
/// answering a solicitation from `to_mac`/`to_ip`.
pub fn neighbor_advertisement(
    target_mac: Mac,
    target_ip: Ipv6Addr,
    to_mac: Mac,
    to_ip: Ipv6Addr,
) -> Vec<u8> {
    // Solicited and Override.
    let mut icmp = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
    icmp.extend_from_slice(&target_ip.octets());
    // Target link-layer address option: type 2, length 1.
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&target_mac);
    icmpv6_frame(target_mac, to_mac, target_ip, to_ip, icmp)
}

/// Ethernet + IPv6 (hop limit 255, as neighbor discovery requires) around an ICMPv6 message,
/// its checksum filled in.
fn icmpv6_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let len = u32::try_from(icmp.len()).unwrap_or(u32::MAX);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, PROTO_ICMPV6]);
    let sum = checksum(&[&pseudo, &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = Vec::with_capacity(ETHERNET_LEN + IPV6_LEN + icmp.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(u16::MAX).to_be_bytes());
    frame.extend_from_slice(&[PROTO_ICMPV6, 255]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// A neighbor discovery message in `frame`, checked as RFC 4861 §7.1 asks (hop limit 255,
/// code 0, valid checksum): its type, its target address, and the link-layer address it
/// carries (its option, else the frame's source MAC).
fn neighbor_message(frame: &[u8]) -> Option<(u8, Ipv6Addr, Mac)> {
    let ip = frame.get(ETHERNET_LEN..)?;
    if be16(frame, 12)? != ETHERTYPE_IPV6 || *ip.get(6)? != PROTO_ICMPV6 || *ip.get(7)? != 255 {
        return None;
    }
    let len = usize::from(be16(ip, 4)?);
    let icmp = ip.get(IPV6_LEN..IPV6_LEN + len)?;
    let (src, dst) = (ipv6(ip, 8)?, ipv6(ip, 24)?);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, PROTO_ICMPV6]);
    let kind = *icmp.first()?;
    if icmp.len() < 24 || *icmp.get(1)? != 0 || checksum(&[&pseudo, icmp]) != 0 {
        return None;
    }
    let target = ipv6(icmp, 8)?;
    let wanted_option = if kind == NEIGHBOR_SOLICITATION { 1 } else { 2 };
    let mut options = icmp.get(24..)?;
    let mut lladdr = None;
    while let [option, units, ..] = *options {
        let option_len = usize::from(units) * 8;
        if option_len == 0 {
            return None;
        }
        if option == wanted_option && units == 1 {
            lladdr = mac(options, 2);
        }
        options = options.get(option_len..).unwrap_or_default();
    }
    Some((kind, target, lladdr.or_else(|| mac(frame, 6))?))
}

/// The link-layer address a neighbor advertisement for `ip` gives, if `frame` is one.
pub fn neighbor_advertisement_for(frame: &[u8], ip: Ipv6Addr) -> Option<Mac> {
    match neighbor_message(frame)? {
        (NEIGHBOR_ADVERTISEMENT, target, mac) if target == ip => Some(mac),
        _ => None,
    }
}

/// A neighbor solicitation in `frame`: its target, and the asker's MAC and address.
pub fn neighbor_solicitation_in(frame: &[u8]) -> Option<(Ipv6Addr, Mac, Ipv6Addr)> {
    match neighbor_message(frame)? {
        (NEIGHBOR_SOLICITATION, target, mac) => Some((target, mac, ipv6(frame, ETHERNET_LEN + 8)?)),
        _ => None,
    }
}

/// Whether `frame` is link housekeeping of IPv6 (neighbor and router discovery, multicast
/// listener messages): like ARP, never part of a replay.
pub fn is_ipv6_housekeeping(frame: &[u8]) -> bool {
    let ip = frame.get(ETHERNET_LEN..).unwrap_or_default();
    if be16(frame, 12) != Some(ETHERTYPE_IPV6) {
        return false;
    }
    // MLD reports come behind a hop-by-hop header (RFC 3810 §5) with the router alert.
    let (next, at) = match ip.get(6) {
        Some(0) => (
            ip.get(IPV6_LEN).copied(),
            IPV6_LEN + 8 * (1 + usize::from(ip.get(IPV6_LEN + 1).copied().unwrap_or(0))),
        ),
        next => (next.copied(), IPV6_LEN),
    };
    next == Some(PROTO_ICMPV6) && matches!(ip.get(at), Some(130..=137 | 143))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TcpSegment {
        TcpSegment {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1).into(),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2).into(),
            ip_id: 7,
            ttl: 64,
            dont_fragment: true,
            src_port: 40000,
            dst_port: 80,
            seq: 0xdead_beef,
            ack: 0,
            flags: SYN,
            window: 64240,
            mss: Some(1460),
            window_scale: Some(7),
            payload: b"odd".to_vec(),
        }
    }

    #[test]
    fn build_then_parse_round_trips_and_smoltcp_agrees_on_checksums() {
        let segment = sample();
        let frame = build_segment(&segment);
        assert_eq!(TcpSegment::parse(&frame), Some(segment.clone()));
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&frame[ETHERNET_LEN..]).unwrap();
        assert!(ip.verify_checksum());
        let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        assert_eq!(segment.seq_len(), 4);
    }

    #[test]
    fn damaged_frames_do_not_parse_and_never_panic() {
        let frame = build_segment(&sample());
        for len in 0..frame.len() {
            assert_eq!(TcpSegment::parse(&frame[..len]), None, "cut to {len}");
        }
        for byte in 0..frame.len() {
            let mut bad = frame.clone();
            bad[byte] ^= 0x40;
            // Any single flip outside the MACs breaks a checksum, a length or a type.
            if byte >= 12 {
                assert_eq!(TcpSegment::parse(&bad), None, "flipped byte {byte}");
            }
        }
    }

    #[test]
    fn junk_rewrite_keeps_good_checksums_good_and_bad_ones_bad() {
        let (old_src, old_dst) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let (new_src, new_dst) = (ip("198.19.0.1"), ip("198.18.0.1"));
        junk_rewrite_round_trip(old_src, old_dst, new_src, new_dst);
        let (old_src, old_dst) = (ip("fd00::1"), ip("fd00::2"));
        let (new_src, new_dst) = (ip("2001:2::1:1"), ip("2001:2::2"));
        junk_rewrite_round_trip(old_src, old_dst, new_src, new_dst);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn v6_sample() -> TcpSegment {
        TcpSegment {
            src_ip: ip("2001:2::1"),
            dst_ip: ip("2001:2::2"),
            ip_id: 0,
            dont_fragment: false,
            mss: Some(1440),
            ..sample()
        }
    }

    fn junk_rewrite_round_trip(old_src: IpAddr, old_dst: IpAddr, new_src: IpAddr, new_dst: IpAddr) {
        let original = TcpSegment {
            src_ip: old_src,
            dst_ip: old_dst,
            ..sample()
        };
        let rewrite = JunkRewrite {
            src_mac: [9; 6],
            dst_mac: [8; 6],
            addresses: [(old_src, new_src), (old_dst, new_dst)],
            src_port: Some((40000, 20001)),
        };
        let mut good = build_segment(&original);
        rewrite_junk(&mut good, &rewrite);
        let parsed = TcpSegment::parse(&good).expect("still valid");
        assert_eq!((parsed.src_ip, parsed.dst_ip), (new_src, new_dst));
        assert_eq!((parsed.src_port, parsed.src_mac), (20001, [9; 6]));
        let mut bad = build_segment(&original);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        rewrite_junk(&mut bad, &rewrite);
        assert_eq!(TcpSegment::parse(&bad), None);
        bad[last] ^= 1;
        assert!(
            TcpSegment::parse(&bad).is_some(),
            "wrong by exactly as much"
        );
        let mut short = good[..20].to_vec();
        rewrite_junk(&mut short, &rewrite);
    }

    #[test]
    fn ipv6_segments_round_trip_and_smoltcp_agrees_on_the_checksum() {
        let segment = v6_sample();
        let frame = build_segment(&segment);
        assert_eq!(be16(&frame, 12), Some(ETHERTYPE_IPV6));
        assert_eq!(frame.len(), ETHERNET_LEN + IPV6_LEN + TCP_LEN + 8 + 3);
        assert_eq!(TcpSegment::parse(&frame), Some(segment));
        let ip = smoltcp::wire::Ipv6Packet::new_checked(&frame[ETHERNET_LEN..]).unwrap();
        let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(&ip.src_addr().into(), &ip.dst_addr().into()));
        for len in 0..frame.len() {
            assert_eq!(TcpSegment::parse(&frame[..len]), None, "cut to {len}");
        }
        for byte in 12..frame.len() {
            let mut bad = frame.clone();
            bad[byte] ^= 0x40;
            // The traffic class, flow label and hop limit are not covered by any checksum.
            if !(ETHERNET_LEN..ETHERNET_LEN + 4).contains(&byte) && byte != ETHERNET_LEN + 7 {
                assert_eq!(TcpSegment::parse(&bad), None, "flipped byte {byte}");
            }
        }
        // An extension header before TCP (here a fragment header) is not a whole segment.
        let mut fragment = frame.clone();
        fragment[ETHERNET_LEN + 6] = 44;
        assert_eq!(TcpSegment::parse(&fragment), None);
    }

    #[test]
    fn mixed_families_are_written_as_ipv6_with_the_ipv4_address_mapped() {
        let segment = TcpSegment {
            dst_ip: ip("198.18.0.2"),
            ..v6_sample()
        };
        let parsed = TcpSegment::parse(&build_segment(&segment)).unwrap();
        assert_eq!(parsed.dst_ip, ip("::ffff:198.18.0.2"));
    }

    #[test]
    fn neighbor_solicitation_and_advertisement() {
        let (client, server) = (ip6("2001:2::1"), ip6("2001:2::2"));
        let ns = neighbor_solicitation([1; 6], client, server);
        assert_eq!(&ns[..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
        // smoltcp reads it as a valid solicitation for the server's address.
        let ip = smoltcp::wire::Ipv6Packet::new_checked(&ns[ETHERNET_LEN..]).unwrap();
        assert_eq!(ip.dst_addr(), ip6("ff02::1:ff00:2"));
        assert_eq!(ip.hop_limit(), 255);
        let icmp = smoltcp::wire::Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(
            neighbor_solicitation_in(&ns),
            Some((server, [1; 6], client))
        );
        assert_eq!(neighbor_advertisement_for(&ns, server), None);
        assert!(is_ipv6_housekeeping(&ns));

        let na = neighbor_advertisement([5; 6], server, [1; 6], client);
        assert_eq!(&na[..6], &[1; 6]);
        assert_eq!(neighbor_advertisement_for(&na, server), Some([5; 6]));
        assert_eq!(neighbor_advertisement_for(&na, client), None);
        assert_eq!(neighbor_solicitation_in(&na), None);
        let mut bad = na.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            neighbor_advertisement_for(&bad, server),
            None,
            "bad checksum"
        );
        let mut routed = na.clone();
        routed[ETHERNET_LEN + 7] = 64;
        assert_eq!(
            neighbor_advertisement_for(&routed, server),
            None,
            "hop limit"
        );
        for len in 0..na.len() {
            assert_eq!(neighbor_advertisement_for(&na[..len], server), None);
        }
        assert!(!is_ipv6_housekeeping(&build_segment(&v6_sample())));
    }

    fn ip6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    #[test]
    fn arp_request_and_reply() {
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        let request = arp_request([1; 6], Ipv4Addr::new(198, 18, 0, 1), ip);
        assert_eq!(request.len(), 42);
        let mut reply = request.clone();
        reply[ETHERNET_LEN + 7] = 2;
        reply[ETHERNET_LEN + 8..ETHERNET_LEN + 14].copy_from_slice(&[5; 6]);
        reply[ETHERNET_LEN + 14..ETHERNET_LEN + 18].copy_from_slice(&ip.octets());
        assert_eq!(arp_reply_from(&reply, ip), Some([5; 6]));
        assert_eq!(arp_reply_from(&request, ip), None);
    }
}
