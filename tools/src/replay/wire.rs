//! The frames a replay reads and writes: Ethernet II + IPv4 + TCP, parsed once into a
//! [`TcpSegment`] and built back with fresh addresses, ports, numbers and checksums.
//!
//! - [`TcpSegment::parse`] accepts only a frame a TCP stack would accept: whole Ethernet,
//!   IPv4 (no options beyond the header length, no fragment, total length within the frame,
//!   valid header checksum) and TCP (valid data offset and checksum). Anything else is `None`:
//!   the replay treats it as junk, never as part of a flow. It never panics on any input.
//! - [`build_segment`] writes a frame with both checksums computed (RFC 791, RFC 9293 §3.1).
//! - [`rewrite_junk`] moves a frame that does not parse onto the target's addresses while
//!   keeping what is wrong with it: checksums are updated incrementally (RFC 1624), so a
//!   checksum that was wrong stays wrong by the same amount.

use std::net::Ipv4Addr;

pub const ETHERNET_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const IPV4_LEN: usize = 20;
pub const TCP_LEN: usize = 20;
const PROTO_TCP: u8 = 6;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// A MAC address.
pub type Mac = [u8; 6];

/// One valid TCP segment over IPv4 over Ethernet, with the fields a replay uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ip_id: u16,
    pub ttl: u8,
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
        if be16(frame, 12)? != ETHERTYPE_IPV4 {
            return None;
        }
        let ip = frame.get(ETHERNET_LEN..)?;
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
        let src_ip = ipv4(ip, 12)?;
        let dst_ip = ipv4(ip, 16)?;
        let tcp = ip.get(ihl..total)?;
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
            ip_id: be16(ip, 4)?,
            ttl: *ip.get(8)?,
            dont_fragment: fragment & 0x4000 != 0,
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

/// Writes `segment` as a frame: Ethernet, a 20-byte IPv4 header and TCP with only the MSS and
/// window-scale options (SYNs only), both checksums computed.
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
    let total = IPV4_LEN + tcp_len;
    let mut frame = Vec::with_capacity(ETHERNET_LEN + total);
    frame.extend_from_slice(&segment.dst_mac);
    frame.extend_from_slice(&segment.src_mac);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = frame.len();
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    frame.extend_from_slice(&segment.ip_id.to_be_bytes());
    frame.extend_from_slice(&(if segment.dont_fragment { 0x4000u16 } else { 0 }).to_be_bytes());
    frame.extend_from_slice(&[segment.ttl, PROTO_TCP, 0, 0]);
    frame.extend_from_slice(&segment.src_ip.octets());
    frame.extend_from_slice(&segment.dst_ip.octets());
    let ip_sum = checksum(&[&frame[ip_start..]]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());
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
    let pseudo = pseudo_header(segment.src_ip, segment.dst_ip, tcp_len).unwrap_or_default();
    let tcp_sum = checksum(&[&pseudo, &frame[tcp_start..]]);
    frame[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    frame
}

/// Where [`rewrite_junk`] moves a frame.
#[derive(Debug, Clone, Copy)]
pub struct JunkRewrite {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    /// (from, to) address pairs: each IPv4 source or destination equal to a `from` becomes `to`.
    pub addresses: [(Ipv4Addr, Ipv4Addr); 2],
    /// (from, to) for the TCP source port, if it is to change.
    pub src_port: Option<(u16, u16)>,
}

/// Rewrites the MACs of any frame long enough to have them; and, as far as the frame holds
/// them, its IPv4 addresses and TCP source port, with IPv4 and TCP checksums updated
/// incrementally (RFC 1624 eqn. 3) so that their correctness does not change. See the module
/// documentation.
pub fn rewrite_junk(frame: &mut [u8], rewrite: &JunkRewrite) {
    if let Some(dst) = frame.get_mut(0..6) {
        dst.copy_from_slice(&rewrite.dst_mac);
    }
    if let Some(src) = frame.get_mut(6..12) {
        src.copy_from_slice(&rewrite.src_mac);
    }
    if be16(frame, 12) != Some(ETHERTYPE_IPV4) {
        return;
    }
    let ihl = frame
        .get(ETHERNET_LEN)
        .map_or(IPV4_LEN, |b| usize::from(b & 0x0f) * 4)
        .max(IPV4_LEN);
    let is_tcp = frame.get(ETHERNET_LEN + 9) == Some(&PROTO_TCP);
    let tcp = ETHERNET_LEN + ihl;
    for field in [ETHERNET_LEN + 12, ETHERNET_LEN + 16] {
        let Some(old) = frame.get(field..field + 4).and_then(|b| ipv4(b, 0)) else {
            continue;
        };
        let Some(&(_, new)) = rewrite.addresses.iter().find(|(from, _)| *from == old) else {
            continue;
        };
        for half in [0, 2] {
            let (old16, new16) = (be16(&old.octets(), half), be16(&new.octets(), half));
            let (Some(old16), Some(new16)) = (old16, new16) else {
                continue;
            };
            adjust(frame, ETHERNET_LEN + 10, old16, new16);
            if is_tcp {
                adjust(frame, tcp + 16, old16, new16);
            }
        }
        if let Some(bytes) = frame.get_mut(field..field + 4) {
            bytes.copy_from_slice(&new.octets());
        }
    }
    if let (true, Some((from, to))) = (is_tcp, rewrite.src_port)
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

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, tcp_len: usize) -> Option<[u8; 12]> {
    let len = u16::try_from(tcp_len).ok()?.to_be_bytes();
    let (s, d) = (src.octets(), dst.octets());
    Some([
        s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], 0, PROTO_TCP, len[0], len[1],
    ])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TcpSegment {
        TcpSegment {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
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
        let (old_src, old_dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let (new_src, new_dst) = (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 18, 0, 1));
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
