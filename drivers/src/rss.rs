//! Receive-side scaling as a NIC does it: the Toeplitz hash of a frame's addresses (and ports),
//! and the indirection table that turns the hash into a receive queue.
//!
//! Owns [`toeplitz`], the per-header hash inputs ([`hash_ipv4`], [`hash_tcp_ipv4`]),
//! [`IndirectionTable`] and [`Rss`], which steers a raw Ethernet frame to a queue. The memory
//! NIC ([`crate::memory::MemoryLink::rss_nic`]) steers with it, so simulated engines see the
//! same split of flows a real multi-queue NIC with the same key and table would make.
//!
//! # What is hashed (the Microsoft RSS specification, and what Intel and Mellanox NICs do)
//!
//! - TCP over IPv4, not a fragment: source address, destination address, source port,
//!   destination port, concatenated in that order as they appear on the wire (12 bytes).
//! - Any other IPv4 packet (UDP, ICMP, a fragment, a header too short to hold the ports):
//!   source and destination address (8 bytes).
//! - Anything else (ARP, IPv6, a VLAN-tagged frame, a frame too short for an IPv4 header): no
//!   hash; the frame goes to queue 0, as a NIC puts unhashed traffic on its default queue.
//!
//! Every input is read with bounds checks: a truncated or odd frame is steered, never a panic.
//! Nothing allocates; [`Rss::queue_for_frame`] costs one pass over at most 12 bytes.
//!
//! # Why no crate
//!
//! The hash is a dozen lines, it sits on the memory NIC's per-frame path, and its output must
//! never change under a dependency update (a simulation's flows would move between engines).
//! No well-kept crate offers exactly the Toeplitz hash with the standard key and table.

/// Length of an RSS secret key: 40 bytes, enough for the 36-byte TCP/IPv6 input.
pub const KEY_LEN: usize = 40;

/// The standard key from Microsoft's RSS specification, which many drivers also use as their
/// default (and which the published verification vectors are computed with).
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries in the indirection table: 128, the size of the Intel 82599 and most 10G NICs' table.
pub const INDIRECTION_ENTRIES: usize = 128;

/// The Toeplitz hash of `input` under `key`: for every input bit set, from the most significant
/// bit of `input[0]` on, XOR in the 32 key bits that start at that bit's position.
///
/// Inputs longer than `KEY_LEN - 4` bytes run past the key; the missing key bits count as zero.
pub fn toeplitz(key: &[u8; KEY_LEN], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The 32 key bits aligned with the current input bit, and the key byte to shift in next.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    let mut next_key_bytes = key[4..].iter().copied();
    for &byte in input {
        let incoming = next_key_bytes.next().unwrap_or(0);
        for bit in (0..8).rev() {
            if byte >> bit & 1 == 1 {
                hash ^= window;
            }
            window = window << 1 | u32::from(incoming >> bit & 1);
        }
    }
    hash
}

/// The IPv4 (2-tuple) hash: source address, then destination address.
pub fn hash_ipv4(key: &[u8; KEY_LEN], src: [u8; 4], dst: [u8; 4]) -> u32 {
    let mut input = [0u8; 8];
    input[..4].copy_from_slice(&src);
    input[4..].copy_from_slice(&dst);
    toeplitz(key, &input)
}

/// The TCP/IPv4 (4-tuple) hash: source address, destination address, source port,
/// destination port, ports in network byte order.
pub fn hash_tcp_ipv4(
    key: &[u8; KEY_LEN],
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
) -> u32 {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&src);
    input[4..8].copy_from_slice(&dst);
    input[8..10].copy_from_slice(&src_port.to_be_bytes());
    input[10..].copy_from_slice(&dst_port.to_be_bytes());
    toeplitz(key, &input)
}

/// Maps a hash to a queue: entry `hash % 128` (the hash's low seven bits) names the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndirectionTable {
    entries: [u16; INDIRECTION_ENTRIES],
    queues: usize,
}

impl IndirectionTable {
    /// Entries filled round-robin over `queues` queues, as `ethtool -X <dev> equal <queues>`
    /// and the Linux default table do: entry `i` is queue `i % queues`. `queues` is clamped to
    /// `1..=128`: a table of 128 entries cannot reach more.
    pub fn equal(queues: usize) -> Self {
        let queues = queues.clamp(1, INDIRECTION_ENTRIES);
        let mut entries = [0u16; INDIRECTION_ENTRIES];
        for (i, entry) in entries.iter_mut().enumerate() {
            // `i % queues` < 128 by the clamp above.
            *entry = u16::try_from(i % queues).unwrap_or(0);
        }
        IndirectionTable { entries, queues }
    }

    /// How many queues the table spreads over: one more than its largest entry.
    pub fn queues(&self) -> usize {
        self.queues
    }

    /// The queue a frame with RSS hash `hash` goes to.
    pub fn queue(&self, hash: u32) -> usize {
        usize::from(self.entries[hash as usize % INDIRECTION_ENTRIES])
    }

    pub fn entries(&self) -> &[u16; INDIRECTION_ENTRIES] {
        &self.entries
    }
}

/// A NIC's RSS configuration: the key and the indirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rss {
    pub key: [u8; KEY_LEN],
    pub table: IndirectionTable,
}

/// Offsets in an Ethernet II frame and the IPv4 and TCP headers after it.
const ETHERTYPE: std::ops::Range<usize> = 12..14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const IP_START: usize = crate::ETHERNET_HEADER_LEN;
const IPV4_MIN_HEADER: usize = 20;
const IPV4_TOTAL_LEN: std::ops::Range<usize> = 2..4;
const IPV4_FLAGS_FRAGMENT: std::ops::Range<usize> = 6..8;
/// More-fragments flag and fragment offset: either set means the packet is a fragment.
const IPV4_FRAGMENT_MASK: u16 = 0x3fff;
const IPV4_PROTOCOL: usize = 9;
const IPV4_SRC: std::ops::Range<usize> = 12..16;
const IPV4_DST: std::ops::Range<usize> = 16..20;
const PROTOCOL_TCP: u8 = 6;

impl Rss {
    /// The standard key and an equal table over `queues` queues.
    pub fn new(queues: usize) -> Self {
        Rss {
            key: MICROSOFT_KEY,
            table: IndirectionTable::equal(queues),
        }
    }

    pub fn queues(&self) -> usize {
        self.table.queues()
    }

    /// The RSS hash of a raw Ethernet frame, or `None` for a frame a NIC does not hash (see
    /// the module documentation).
    pub fn hash_frame(&self, frame: &[u8]) -> Option<u32> {
        if frame.get(ETHERTYPE)? != ETHERTYPE_IPV4 {
            return None;
        }
        let ip = frame.get(IP_START..)?;
        let version_ihl = *ip.first()?;
        let header_len = usize::from(version_ihl & 0x0f) * 4;
        if version_ihl >> 4 != 4 || header_len < IPV4_MIN_HEADER || ip.len() < header_len {
            return None;
        }
        let src = <[u8; 4]>::try_from(ip.get(IPV4_SRC)?).ok()?;
        let dst = <[u8; 4]>::try_from(ip.get(IPV4_DST)?).ok()?;
        let total_len = usize::from(u16::from_be_bytes(ip.get(IPV4_TOTAL_LEN)?.try_into().ok()?));
        let fragment = u16::from_be_bytes(ip.get(IPV4_FLAGS_FRAGMENT)?.try_into().ok()?);
        let packet = ip.get(..total_len.min(ip.len()))?;
        let ports = packet.get(header_len..header_len + 4);
        match ports {
            Some(ports)
                if ip.get(IPV4_PROTOCOL) == Some(&PROTOCOL_TCP)
                    && fragment & IPV4_FRAGMENT_MASK == 0 =>
            {
                let src_port = u16::from_be_bytes([ports[0], ports[1]]);
                let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
                Some(hash_tcp_ipv4(&self.key, src, dst, src_port, dst_port))
            }
            _ => Some(hash_ipv4(&self.key, src, dst)),
        }
    }

    /// The receive queue of a raw Ethernet frame: through the table if it hashes, else 0.
    pub fn queue_for_frame(&self, frame: &[u8]) -> usize {
        self.hash_frame(frame)
            .map_or(0, |hash| self.table.queue(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of Microsoft's "Verifying the RSS Hash Calculation" table for IPv4 (also the
    /// Intel 82599 datasheet's RSS verification suite), hashed under [`MICROSOFT_KEY`].
    struct Vector {
        dst: [u8; 4],
        dst_port: u16,
        src: [u8; 4],
        src_port: u16,
        /// The IPv4 (2-tuple) hash.
        ipv4: u32,
        /// The TCP/IPv4 (4-tuple) hash.
        tcp: u32,
    }

    const VECTORS: [Vector; 5] = [
        Vector {
            dst: [161, 142, 100, 80],
            dst_port: 1766,
            src: [66, 9, 149, 187],
            src_port: 2794,
            ipv4: 0x323e_8fc2,
            tcp: 0x51cc_c178,
        },
        Vector {
            dst: [65, 69, 140, 83],
            dst_port: 4739,
            src: [199, 92, 111, 2],
            src_port: 14230,
            ipv4: 0xd718_262a,
            tcp: 0xc626_b0ea,
        },
        Vector {
            dst: [12, 22, 207, 184],
            dst_port: 38024,
            src: [24, 19, 198, 95],
            src_port: 12898,
            ipv4: 0xd2d0_a5de,
            tcp: 0x5c2b_394a,
        },
        Vector {
            dst: [209, 142, 163, 6],
            dst_port: 2217,
            src: [38, 27, 205, 30],
            src_port: 48228,
            ipv4: 0x8298_9176,
            tcp: 0xafc7_327f,
        },
        Vector {
            dst: [202, 188, 127, 2],
            dst_port: 1303,
            src: [153, 39, 163, 191],
            src_port: 44251,
            ipv4: 0x5d18_09c5,
            tcp: 0x10e8_28a2,
        },
    ];

    /// An Ethernet frame carrying an IPv4 packet with protocol `protocol` from `src` to `dst`,
    /// whose payload starts with `src_port`, `dst_port` and a few more bytes.
    fn ipv4_frame(
        protocol: u8,
        src: [u8; 4],
        dst: [u8; 4],
        src_port: u16,
        dst_port: u16,
    ) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 20];
        frame[ETHERTYPE].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut frame[IP_START..];
        ip[0] = 0x45;
        ip[IPV4_TOTAL_LEN].copy_from_slice(&40u16.to_be_bytes());
        ip[IPV4_FLAGS_FRAGMENT].copy_from_slice(&0x4000u16.to_be_bytes()); // DF only
        ip[IPV4_PROTOCOL] = protocol;
        ip[IPV4_SRC].copy_from_slice(&src);
        ip[IPV4_DST].copy_from_slice(&dst);
        ip[20..22].copy_from_slice(&src_port.to_be_bytes());
        ip[22..24].copy_from_slice(&dst_port.to_be_bytes());
        frame
    }

    #[test]
    fn matches_the_published_verification_vectors() {
        for Vector {
            dst,
            dst_port,
            src,
            src_port,
            ipv4,
            tcp,
        } in VECTORS
        {
            assert_eq!(
                hash_ipv4(&MICROSOFT_KEY, src, dst),
                ipv4,
                "{src:?} -> {dst:?}"
            );
            assert_eq!(
                hash_tcp_ipv4(&MICROSOFT_KEY, src, dst, src_port, dst_port),
                tcp,
                "{src:?}:{src_port} -> {dst:?}:{dst_port}"
            );
        }
    }

    #[test]
    fn frames_hash_like_their_headers() {
        let rss = Rss::new(4);
        for Vector {
            dst,
            dst_port,
            src,
            src_port,
            ipv4,
            tcp,
        } in VECTORS
        {
            let frame = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
            assert_eq!(rss.hash_frame(&frame), Some(tcp));
            assert_eq!(rss.queue_for_frame(&frame), tcp as usize % 128 % 4);
            // UDP (and anything not TCP) hashes the addresses alone.
            let udp = ipv4_frame(17, src, dst, src_port, dst_port);
            assert_eq!(rss.hash_frame(&udp), Some(ipv4));
        }
    }

    #[test]
    fn fragments_and_short_tcp_headers_hash_the_addresses_only() {
        let rss = Rss::new(8);
        let Vector {
            dst,
            dst_port,
            src,
            src_port,
            ipv4,
            ..
        } = VECTORS[0];
        let mut more_fragments = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
        more_fragments[IP_START + 6] = 0x20; // MF
        assert_eq!(rss.hash_frame(&more_fragments), Some(ipv4));
        let mut later_fragment = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
        later_fragment[IP_START + 7] = 0x10; // offset 128 bytes
        assert_eq!(rss.hash_frame(&later_fragment), Some(ipv4));
        // The IP total length says the ports are not there: they are not read from padding.
        let mut short = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
        short[IP_START + 2..IP_START + 4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(rss.hash_frame(&short), Some(ipv4));
        let cut = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
        assert_eq!(rss.hash_frame(&cut[..14 + 22]), Some(ipv4));
    }

    #[test]
    fn arp_ipv6_and_broken_frames_go_to_queue_zero() {
        let rss = Rss::new(4);
        let Vector {
            dst,
            dst_port,
            src,
            src_port,
            ..
        } = VECTORS[1];
        let good = ipv4_frame(PROTOCOL_TCP, src, dst, src_port, dst_port);
        assert_ne!(
            rss.queue_for_frame(&good),
            0,
            "this vector must not land on 0 by chance"
        );
        let mut arp = good.clone();
        arp[ETHERTYPE].copy_from_slice(&[0x08, 0x06]);
        let mut ipv6 = good.clone();
        ipv6[ETHERTYPE].copy_from_slice(&[0x86, 0xdd]);
        let mut version6 = good.clone();
        version6[IP_START] = 0x65;
        let mut ihl_too_small = good.clone();
        ihl_too_small[IP_START] = 0x44;
        let mut ihl_past_end = good.clone();
        ihl_past_end[IP_START] = 0x4f;
        for frame in [
            &arp[..],
            &ipv6,
            &version6,
            &ihl_too_small,
            &ihl_past_end[..14 + 40],
            &good[..14 + 19],
            &good[..13],
            &[],
        ] {
            assert_eq!(rss.hash_frame(frame), None, "{frame:02x?}");
            assert_eq!(rss.queue_for_frame(frame), 0);
        }
    }

    #[test]
    fn the_equal_table_is_round_robin() {
        let table = IndirectionTable::equal(3);
        assert_eq!(table.queues(), 3);
        assert_eq!(&table.entries()[..7], &[0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(table.queue(0), 0);
        assert_eq!(table.queue(127), 127 % 3);
        // Only the low seven bits pick the entry.
        assert_eq!(table.queue(128 + 4), 1);
        assert_eq!(table.queue(0xffff_ff80 | 5), 2);
        assert_eq!(IndirectionTable::equal(0).queues(), 1);
        assert!(IndirectionTable::equal(0).entries().iter().all(|&q| q == 0));
        let widest = IndirectionTable::equal(1000);
        assert_eq!(widest.queues(), 128);
        assert_eq!(widest.queue(127), 127);
    }

    #[test]
    fn many_flows_spread_over_every_queue() {
        let rss = Rss::new(4);
        let mut per_queue = [0u32; 4];
        for port in 1024..5120u16 {
            let frame = ipv4_frame(PROTOCOL_TCP, [198, 19, 0, 1], [198, 18, 0, 1], port, 80);
            per_queue[rss.queue_for_frame(&frame)] += 1;
        }
        // 4096 flows: each queue within 20% of its fair share of 1024.
        assert!(
            per_queue.iter().all(|&n| (820..=1230).contains(&n)),
            "{per_queue:?}"
        );
    }
}
