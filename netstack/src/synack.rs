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
    EthernetAddress, EthernetFrame, IpAddress, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet,
    TcpPacket, TcpSeqNumber,
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
    /// IPv4 SYN-ACKs, indexed by `wscale offered | sack offered << 1` (empty without IPv4).
    frames4: [Vec<u8>; 4],
    /// IPv6 SYN-ACKs, the same way (empty without IPv6). Their source address is patched too:
    /// a stack has several IPv6 addresses.
    frames6: [Vec<u8>; 4],
    caps: ChecksumCapabilities,
}

fn kind(options: &SynOptions, shape: &SynAckShape) -> usize {
    usize::from(options.wscale.is_some()) | usize::from(options.sack && shape.sack) << 1
}

impl SynAcks {
    pub fn new(front: &FrontEnd, shape: SynAckShape) -> Self {
        let build = |kind: usize, peer_ip: IpAddress| {
            let local = front.locals.index_of(match peer_ip {
                IpAddress::Ipv4(_) => front.locals.ipv4().map(IpAddress::Ipv4),
                IpAddress::Ipv6(_) => front.locals.ipv6().next().map(IpAddress::Ipv6),
            }?)?;
            let placeholder = Pending {
                key: FlowKey {
                    peer_ip,
                    peer_port: 1,
                    local,
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
            replies.take_front()
        };
        let v4 = IpAddress::Ipv4(Ipv4Address::new(0, 0, 0, 1));
        let v6 = IpAddress::Ipv6(Ipv6Address::new(0, 0, 0, 0, 0, 0, 0, 1));
        let family = |peer| [0, 1, 2, 3].map(|kind| build(kind, peer).unwrap_or_default());
        SynAcks {
            frames4: family(v4),
            frames6: family(v6),
            caps: front.tx_caps.clone(),
        }
    }

    /// Stages the SYN-ACK of `pending`, from `local` (our address the SYN was sent to).
    /// `false` (nothing staged) when the ring is full.
    pub fn stage(
        &self,
        pending: &Pending,
        local: IpAddress,
        shape: &SynAckShape,
        replies: &mut ReplyQueue,
    ) -> bool {
        let frames = match pending.key.peer_ip {
            IpAddress::Ipv4(_) => &self.frames4,
            IpAddress::Ipv6(_) => &self.frames6,
        };
        let Some(template) = frames.get(kind(&pending.options, shape)) else {
            return false;
        };
        if template.is_empty() {
            return false;
        }
        let Some(frame) = replies.reserve(template.len()) else {
            return false;
        };
        frame.copy_from_slice(template);
        EthernetFrame::new_unchecked(&mut *frame).set_dst_addr(pending.peer_mac);
        let Some(ip_bytes) = frame.get_mut(ETH_HEADER_LEN..) else {
            return true;
        };
        let tcp_bytes = match (local, pending.key.peer_ip) {
            (IpAddress::Ipv4(_), IpAddress::Ipv4(peer)) => {
                let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
                ip.set_dst_addr(peer);
                if self.caps.ipv4.tx() {
                    ip.fill_checksum();
                }
                let header_len = usize::from(ip.header_len());
                ip.into_inner().get_mut(header_len..)
            }
            (IpAddress::Ipv6(ours), IpAddress::Ipv6(peer)) => {
                let mut ip = Ipv6Packet::new_unchecked(ip_bytes);
                ip.set_src_addr(ours);
                ip.set_dst_addr(peer);
                ip.into_inner().get_mut(crate::frontend::IPV6_HEADER_LEN..)
            }
            _ => None,
        };
        let Some(tcp_bytes) = tcp_bytes else {
            return true;
        };
        let mut tcp = TcpPacket::new_unchecked(tcp_bytes);
        tcp.set_dst_port(pending.key.peer_port);
        tcp.set_seq_number(pending.isn);
        tcp.set_ack_number(pending.peer_isn + 1);
        if self.caps.tcp.tx() {
            tcp.fill_checksum(&local, &pending.key.peer_ip);
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
        let v6 = [
            Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
            Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 7),
        ];
        FrontEnd {
            mac: EthernetAddress([2, 0, 0, 0, 0, 9]),
            locals: crate::frontend::Locals::new(Some(ip), &v6),
            subnet: Some(Ipv4Cidr::new(ip, 15)),
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
                    // Every third one is an IPv6 peer, on either of our IPv6 addresses.
                    let (peer_ip, local) = match x % 3 {
                        0 => (Ipv4Address::from_bits(x as u32 | 1).into(), 0),
                        n => (
                            Ipv6Address::from_bits(u128::from(x) << 17 | 1).into(),
                            n as u8,
                        ),
                    };
                    let pending = Pending {
                        key: FlowKey {
                            peer_ip,
                            peer_port: (x >> 32) as u16 | 1,
                            local,
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
                    let ours = front.locals.get(local);
                    assert!(synacks.stage(&pending, ours, &shape, &mut patched));
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
                peer_ip: Ipv4Address::new(198, 18, 0, 2).into(),
                peer_port: 4000,
                local: 0,
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
        let ours = front.locals.get(0);
        assert!(!synacks.stage(&pending, ours, &shape, &mut replies));
        assert_eq!(replies.len(), 1);
    }
}
