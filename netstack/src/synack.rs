//! Prebuilt SYN-ACKs, as Sandstorm prebuilds its packets: the SYN-ACKs of a server differ only
//! in the peer's MAC, address and port, the two sequence numbers and the checksums, so each of
//! the four kinds (window scale offered or not, SACK offered or not) is built once, through the
//! same code as every other segment the front end sends ([`FrontEnd::stage_synack`]), and then
//! copied and patched per SYN.
//!
//! Written by hand because it is the hot path of a SYN flood: building a SYN-ACK through
//! smoltcp's `TcpRepr::emit` (options encoded one by one, lengths computed twice) cost about a
//! fifth of the time the stack spends on a SYN. `same_bytes_as_the_builder` checks that a
//! patched template is byte for byte what the builder makes.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, IpAddress, Ipv4Address, Ipv4Packet, TcpPacket, TcpSeqNumber,
};

use crate::cookie::SynOptions;
use crate::flow::FlowKey;
use crate::frontend::FrontEnd;
use crate::reply_queue::{ETH_HEADER_LEN, ReplyQueue};
use crate::syncache::Pending;

/// What every SYN-ACK of a stack has in common.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SynAckShape {
    pub port: u16,
    /// The window, unscaled (RFC 7323 §2.2).
    pub window: u16,
    /// The window scale offered to peers that offer one.
    pub wscale: u8,
    /// SACK may be offered (to peers that offer it).
    pub sack: bool,
}

pub(crate) struct SynAcks {
    /// Indexed by `wscale offered | sack offered << 1`.
    frames: [Vec<u8>; 4],
    caps: ChecksumCapabilities,
    our_ip: Ipv4Address,
}

fn kind(options: &SynOptions, shape: &SynAckShape) -> usize {
    usize::from(options.wscale.is_some()) | usize::from(options.sack && shape.sack) << 1
}

impl SynAcks {
    pub fn new(front: &FrontEnd, shape: SynAckShape) -> Self {
        let build = |kind: usize| {
            let placeholder = Pending {
                key: FlowKey {
                    peer_ip: Ipv4Address::new(0, 0, 0, 1),
                    peer_port: 1,
                },
                peer_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                peer_isn: TcpSeqNumber(0),
                isn: TcpSeqNumber(0),
                options: SynOptions {
                    mss: 1460,
                    wscale: (kind & 1 == 1).then_some(0),
                    sack: kind & 2 == 2,
                },
                synacks: 1,
                created: smoltcp::time::Instant::ZERO,
                sent: smoltcp::time::Instant::ZERO,
            };
            let mut replies = ReplyQueue::new(1, ETH_HEADER_LEN + front.mtu);
            front.stage_synack(&placeholder, shape, &mut replies);
            replies.take_front().unwrap_or_default()
        };
        SynAcks {
            frames: [build(0), build(1), build(2), build(3)],
            caps: front.tx_caps.clone(),
            our_ip: front.ipv4,
        }
    }

    /// Stages the SYN-ACK of `pending`. `false` (nothing staged) when the ring is full.
    pub fn stage(&self, pending: &Pending, shape: &SynAckShape, replies: &mut ReplyQueue) -> bool {
        let Some(template) = self.frames.get(kind(&pending.options, shape)) else {
            return false;
        };
        let Some(frame) = replies.reserve(template.len()) else {
            return false;
        };
        frame.copy_from_slice(template);
        EthernetFrame::new_unchecked(&mut *frame).set_dst_addr(pending.peer_mac);
        let Some(ip_bytes) = frame.get_mut(ETH_HEADER_LEN..) else {
            return true;
        };
        let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
        ip.set_dst_addr(pending.key.peer_ip);
        if self.caps.ipv4.tx() {
            ip.fill_checksum();
        }
        let header_len = usize::from(ip.header_len());
        let Some(tcp_bytes) = ip.into_inner().get_mut(header_len..) else {
            return true;
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        tcp.set_dst_port(pending.key.peer_port);
        tcp.set_seq_number(pending.isn);
        tcp.set_ack_number(pending.peer_isn + 1);
        if self.caps.tcp.tx() {
            tcp.fill_checksum(
                &IpAddress::Ipv4(self.our_ip),
                &IpAddress::Ipv4(pending.key.peer_ip),
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::time::Instant;
    use smoltcp::wire::Ipv4Cidr;

    fn front(offload: bool) -> FrontEnd {
        let ip = Ipv4Address::new(198, 18, 0, 1);
        FrontEnd {
            mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            ipv4: ip,
            subnet: Ipv4Cidr::new(ip, 15),
            verify_rx: true,
            tx_caps: if offload {
                ChecksumCapabilities::ignored()
            } else {
                ChecksumCapabilities::default()
            },
            mtu: 1500,
        }
    }

    #[test]
    fn same_bytes_as_the_builder() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for offload in [false, true] {
            for sack in [false, true] {
                let front = front(offload);
                let shape = SynAckShape {
                    port: 80,
                    window: 4096,
                    wscale: 5,
                    sack,
                };
                let synacks = SynAcks::new(&front, shape);
                for _ in 0..200 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let pending = Pending {
                        key: FlowKey {
                            peer_ip: Ipv4Address::from_bits(x as u32 | 1),
                            peer_port: (x >> 32) as u16 | 1,
                        },
                        peer_mac: EthernetAddress([2, (x >> 8) as u8, 3, 4, 5, (x >> 16) as u8]),
                        peer_isn: TcpSeqNumber((x >> 13) as i32),
                        isn: TcpSeqNumber((x >> 29) as i32),
                        options: SynOptions {
                            mss: 1400,
                            wscale: (x & 1 == 1).then_some(7),
                            sack: x & 2 == 2,
                        },
                        synacks: 1,
                        created: Instant::ZERO,
                        sent: Instant::ZERO,
                    };
                    let mut built = ReplyQueue::new(1, 1514);
                    assert!(front.stage_synack(&pending, shape, &mut built));
                    let mut patched = ReplyQueue::new(1, 1514);
                    assert!(synacks.stage(&pending, &shape, &mut patched));
                    assert_eq!(patched.take_front(), built.take_front(), "{pending:?}");
                }
            }
        }
    }

    #[test]
    fn a_full_ring_stages_nothing() {
        let front = front(false);
        let shape = SynAckShape {
            port: 80,
            window: 4096,
            wscale: 0,
            sack: true,
        };
        let synacks = SynAcks::new(&front, shape);
        let mut replies = ReplyQueue::new(1, 1514);
        assert!(replies.reserve(60).is_some());
        let pending = Pending {
            key: FlowKey {
                peer_ip: Ipv4Address::new(198, 18, 0, 2),
                peer_port: 4000,
            },
            peer_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            peer_isn: TcpSeqNumber(1),
            isn: TcpSeqNumber(2),
            options: SynOptions {
                mss: 1460,
                wscale: None,
                sack: false,
            },
            synacks: 1,
            created: Instant::ZERO,
            sent: Instant::ZERO,
        };
        assert!(!synacks.stage(&pending, &shape, &mut replies));
        assert_eq!(replies.len(), 1);
    }
}
