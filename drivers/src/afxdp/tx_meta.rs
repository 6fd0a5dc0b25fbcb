//! TCP checksum offload through AF_XDP TX metadata (Linux 6.11+,
//! Documentation/networking/xsk-tx-metadata.rst).
//!
//! A UMEM registered with `tx_metadata_len` (and the `XDP_UMEM_TX_METADATA_LEN` flag) keeps
//! that many bytes in front of every TX frame for a `struct xsk_tx_metadata`. A descriptor
//! flagged `XDP_TX_METADATA` whose metadata asks for `XDP_TXMD_FLAGS_CHECKSUM` is sent the way
//! Linux sends its own `CHECKSUM_PARTIAL` packets: the TCP checksum field holds the folded
//! pseudo-header sum, and the device sums the segment from `csum_start` and writes the result
//! `csum_offset` bytes further on. With `XDP_UMEM_TX_SW_CSUM` the kernel does that sum itself
//! (its debugging aid, and how the lab checks the requests on a veth pair).
//!
//! This module is the byte work, on plain slices: finding the TCP header of a frame, writing
//! the pseudo-header sum, the metadata request, and the software completion used where the
//! kernel's cannot be.

/// Bytes kept in front of every TX frame for the metadata: `sizeof(struct xsk_tx_metadata)`
/// in Linux 6.14+ (flags, then `csum_start`, `csum_offset` and a `launch_time`), a multiple of
/// 8 as the kernel requires.
pub(crate) const TX_METADATA_LEN: u32 = 24;

/// Who completes the TCP checksums of the frames a queue sends, and so how its UMEM is
/// registered ([`Umem::registration`](super::umem::Umem::registration)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxChecksum {
    /// The stack filled in every checksum: frames go as they are.
    Stack,
    /// Each TCP frame goes with a checksum request in its TX metadata that the device
    /// completes.
    Device,
    /// As `Device`, on a UMEM registered with `XDP_UMEM_TX_SW_CSUM`: the kernel completes the
    /// checksums in software.
    KernelSoftware,
}

const ETHERNET_HEADER_LEN: usize = crate::ETHERNET_HEADER_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
/// Where the checksum sits in a TCP header.
const TCP_CHECKSUM_OFFSET: u16 = 16;
const TCP_HEADER_MIN: usize = 20;

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

// The sums are written here rather than taken from smoltcp's `wire::checksum`: the drivers
// do not depend on the TCP/IP stack, and these few lines are all they need of it.

/// Ones-complement sum of `bytes` as big-endian 16-bit words (an odd last byte is the high
/// half of a word), added to `sum`, not folded.
fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Prepares an Ethernet frame for TCP checksum offload: if it holds a whole TCP segment over
/// IPv4 (not a fragment) or IPv6 (TCP as the first next header), writes the folded
/// pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1) into the TCP checksum field and returns
/// `(csum_start, csum_offset)`: where, from the frame's first byte, the device starts summing,
/// and where from there it writes the checksum. `None` (the frame untouched) for anything
/// else, whose checksums the stack filled in itself.
pub(crate) fn prepare_tcp(frame: &mut [u8]) -> Option<(u16, u16)> {
    let ip = ETHERNET_HEADER_LEN;
    let (start, sum) = match be16(frame, 12)? {
        ETHERTYPE_IPV4 => {
            let header = frame.get(ip..ip + 20)?;
            let ihl = usize::from(header[0] & 0x0f) * 4;
            let total = usize::from(be16(header, 2)?);
            let fragment = be16(header, 6)? & 0x3fff != 0;
            if header[0] >> 4 != 4 || ihl < 20 || header[9] != PROTO_TCP || fragment {
                return None;
            }
            let tcp_len = total.checked_sub(ihl)?;
            if tcp_len < TCP_HEADER_MIN || ip + total > frame.len() {
                return None;
            }
            // Source and destination, zero and protocol, TCP length.
            let sum = sum_words(0, &header[12..20]) + u64::from(PROTO_TCP) + tcp_len as u64;
            (ip + ihl, sum)
        }
        ETHERTYPE_IPV6 => {
            let header = frame.get(ip..ip + 40)?;
            let tcp_len = usize::from(be16(header, 4)?);
            if header[0] >> 4 != 6 || header[6] != PROTO_TCP {
                return None;
            }
            if tcp_len < TCP_HEADER_MIN || ip + 40 + tcp_len > frame.len() {
                return None;
            }
            let sum = sum_words(0, &header[8..40]) + u64::from(PROTO_TCP) + tcp_len as u64;
            (ip + 40, sum)
        }
        _ => return None,
    };
    let field = start + usize::from(TCP_CHECKSUM_OFFSET);
    frame
        .get_mut(field..field + 2)?
        .copy_from_slice(&fold(sum).to_be_bytes());
    Some((u16::try_from(start).ok()?, TCP_CHECKSUM_OFFSET))
}

/// Completes in software what [`prepare_tcp`] left to the device: the ones-complement of the
/// sum of the frame from `start` to its end (the pseudo-header sum in the field included),
/// written `offset` bytes after `start`. What the device would do; used where it cannot.
pub(crate) fn complete(frame: &mut [u8], start: u16, offset: u16) {
    let start = usize::from(start);
    let field = start + usize::from(offset);
    let Some(segment) = frame.get(start..) else {
        return;
    };
    let checksum = !fold(sum_words(0, segment));
    if let Some(out) = frame.get_mut(field..field + 2) {
        out.copy_from_slice(&checksum.to_be_bytes());
    }
}

/// Writes the metadata that asks for the checksum: `flags = XDP_TXMD_FLAGS_CHECKSUM`, then
/// `csum_start` and `csum_offset` (native byte order, as `struct xsk_tx_metadata` is), and
/// zeroes the rest of the area.
pub(crate) fn write_request(meta: &mut [u8], start: u16, offset: u16) {
    meta.fill(0);
    if meta.len() < 12 {
        return;
    }
    meta[..8].copy_from_slice(&u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM).to_ne_bytes());
    meta[8..10].copy_from_slice(&start.to_ne_bytes());
    meta[10..12].copy_from_slice(&offset.to_ne_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
        Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl,
        TcpPacket, TcpRepr, TcpSeqNumber,
    };

    fn tcp_repr(payload: &[u8]) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(7),
            ack_number: Some(TcpSeqNumber(9)),
            window_len: 1000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        }
    }

    /// An Ethernet frame with a TCP segment whose checksums smoltcp filled in.
    pub(crate) fn frame(v6: bool, payload: &[u8]) -> Vec<u8> {
        let tcp = tcp_repr(payload);
        let caps = ChecksumCapabilities::default();
        let (ethertype, ip_len) = if v6 {
            (EthernetProtocol::Ipv6, 40)
        } else {
            (EthernetProtocol::Ipv4, 20)
        };
        let mut buf = vec![0u8; 14 + ip_len + tcp.buffer_len()];
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        let (src, dst): (IpAddress, IpAddress) = if v6 {
            let src = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
            let dst = Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
            Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut buf[14..]));
            (src.into(), dst.into())
        } else {
            let src = Ipv4Address::new(198, 18, 0, 2);
            let dst = Ipv4Address::new(198, 18, 0, 1);
            Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..]), &caps);
            (src.into(), dst.into())
        };
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut buf[14 + ip_len..]),
            &src,
            &dst,
            &caps,
        );
        buf
    }

    #[test]
    fn prepared_then_completed_gives_back_the_real_checksum() {
        for v6 in [false, true] {
            for len in [0, 1, 7, 512, 1448] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let real = frame(v6, &payload);
                let mut offloaded = real.clone();
                let (start, offset) = prepare_tcp(&mut offloaded).expect("a TCP frame");
                assert_eq!((start, offset), (if v6 { 54 } else { 34 }, 16));
                assert_ne!(offloaded, real, "the field holds the pseudo-header sum");
                complete(&mut offloaded, start, offset);
                assert_eq!(offloaded, real, "v6={v6} len={len}");
            }
        }
    }

    #[test]
    fn the_field_holds_the_pseudo_header_sum_whatever_was_there() {
        let real = frame(false, b"hello");
        let mut zeroed = real.clone();
        zeroed[34 + 16..34 + 18].fill(0);
        let mut a = real.clone();
        prepare_tcp(&mut a).unwrap();
        prepare_tcp(&mut zeroed).unwrap();
        assert_eq!(a, zeroed);
        // 198.18.0.2 + 198.18.0.1 + 6 + 25: c612 + 0002 + c612 + 0001 + 0006 + 0019 = 1_8c46,
        // folded 8c47.
        assert_eq!(&a[50..52], &0x8c47u16.to_be_bytes());
    }

    #[test]
    fn anything_but_a_whole_tcp_segment_is_left_alone() {
        let real = frame(false, b"data");
        let mut udp = real.clone();
        udp[14 + 9] = 17;
        let mut fragment = real.clone();
        fragment[14 + 6] = 0x20; // more fragments
        let mut arp = real.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut short = real.clone();
        short.truncate(40);
        let mut long_ip = real.clone();
        long_ip[16..18].copy_from_slice(&2000u16.to_be_bytes());
        for mut f in [udp, fragment, arp, short, long_ip] {
            let before = f.clone();
            assert_eq!(prepare_tcp(&mut f), None);
            assert_eq!(f, before);
        }
        assert_eq!(prepare_tcp(&mut []), None);
    }

    #[test]
    fn the_request_is_the_kernels_struct() {
        let mut meta = [0xaau8; TX_METADATA_LEN as usize];
        write_request(&mut meta, 34, 16);
        assert_eq!(u64::from_ne_bytes(meta[..8].try_into().unwrap()), 2);
        assert_eq!(u16::from_ne_bytes([meta[8], meta[9]]), 34);
        assert_eq!(u16::from_ne_bytes([meta[10], meta[11]]), 16);
        assert!(meta[12..].iter().all(|&b| b == 0));
    }
}
