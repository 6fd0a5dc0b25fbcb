#[cfg(feature = "proto-ipv4")]
mod ipv4;
#[cfg(feature = "proto-ipv6")]
mod ipv6;
#[cfg(feature = "proto-sixlowpan")]
mod sixlowpan;

#[allow(unused)]
use std::vec::Vec;

use crate::tests::setup;

use rstest::*;

use super::*;

use crate::iface::Interface;
use crate::phy::ChecksumCapabilities;
#[cfg(feature = "alloc")]
use crate::phy::Loopback;
use crate::time::Instant;

#[allow(unused)]
fn fill_slice(s: &mut [u8], val: u8) {
    for x in s.iter_mut() {
        *x = val
    }
}

#[allow(unused)]
fn recv_all(device: &mut crate::tests::TestingDevice, timestamp: Instant) -> Vec<Vec<u8>> {
    let mut pkts = Vec::new();
    while let Some(pkt) = device.tx_queue.pop_front() {
        pkts.push(pkt)
    }
    pkts
}

#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
struct MockTxToken;

impl TxToken for MockTxToken {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut junk = [0; 1536];
        f(&mut junk[..len])
    }
}

#[test]
#[should_panic(expected = "The hardware address does not match the medium of the interface.")]
#[cfg(all(feature = "medium-ip", feature = "medium-ethernet", feature = "alloc"))]
fn test_new_panic() {
    let mut device = Loopback::new(Medium::Ethernet);
    let config = Config::new(HardwareAddress::Ip);
    Interface::new(config, &mut device, Instant::ZERO);
}

#[cfg(feature = "socket-udp")]
#[rstest]
#[case::ip(Medium::Ip)]
#[cfg(feature = "medium-ip")]
#[case::ethernet(Medium::Ethernet)]
#[cfg(feature = "medium-ethernet")]
#[case::ieee802154(Medium::Ieee802154)]
#[cfg(feature = "medium-ieee802154")]
fn test_handle_udp_broadcast(#[case] medium: Medium) {
    use crate::socket::udp;
    use crate::wire::IpEndpoint;

    static UDP_PAYLOAD: [u8; 5] = [0x48, 0x65, 0x6c, 0x6c, 0x6f];

    let (mut iface, mut sockets, _device) = setup(medium);

    let rx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);
    let tx_buffer = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY], vec![0; 15]);

    let udp_socket = udp::Socket::new(rx_buffer, tx_buffer);

    let mut udp_bytes = vec![0u8; 13];
    let mut packet = UdpPacket::new_unchecked(&mut udp_bytes);

    let socket_handle = sockets.add(udp_socket);

    #[cfg(feature = "proto-ipv6")]
    let src_ip = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let src_ip = Ipv4Address::new(0x7f, 0x00, 0x00, 0x02);

    let udp_repr = UdpRepr {
        src_port: 67,
        dst_port: 68,
    };

    #[cfg(feature = "proto-ipv6")]
    let ip_repr = IpRepr::Ipv6(Ipv6Repr {
        src_addr: src_ip,
        dst_addr: IPV6_LINK_LOCAL_ALL_NODES,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    #[cfg(all(not(feature = "proto-ipv6"), feature = "proto-ipv4"))]
    let ip_repr = IpRepr::Ipv4(Ipv4Repr {
        src_addr: src_ip,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_repr.header_len() + UDP_PAYLOAD.len(),
        hop_limit: 0x40,
    });
    let dst_addr = ip_repr.dst_addr();

    // Bind the socket to port 68
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert_eq!(socket.bind(68), Ok(()));
    assert!(!socket.can_recv());
    assert!(socket.can_send());

    udp_repr.emit(
        &mut packet,
        &ip_repr.src_addr(),
        &ip_repr.dst_addr(),
        UDP_PAYLOAD.len(),
        |buf| buf.copy_from_slice(&UDP_PAYLOAD),
        &ChecksumCapabilities::default(),
    );

    // Packet should be handled by bound UDP socket
    assert_eq!(
        iface.inner.process_udp(
            &mut sockets,
            PacketMeta::default(),
            false,
            ip_repr,
            packet.into_inner(),
        ),
        None
    );

    // Make sure the payload to the UDP packet processed by process_udp is
    // appended to the bound sockets rx_buffer
    let socket = sockets.get_mut::<udp::Socket>(socket_handle);
    assert!(socket.can_recv());
    assert_eq!(
        socket.recv(),
        Ok((
            &UDP_PAYLOAD[..],
            udp::UdpMetadata {
                local_address: Some(dst_addr),
                ..IpEndpoint::new(src_ip.into(), 67).into()
            }
        ))
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv6"))]
pub fn tcp_not_accepted() {
    let (mut iface, mut sockets, _) = setup(Medium::Ip);
    let tcp = TcpRepr {
        src_port: 4242,
        dst_port: 4243,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(-10001),
        ack_number: None,
        window_len: 256,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];

    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        Some(Packet::new_ipv6(
            Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                dst_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            },
            IpPayload::Tcp(TcpRepr {
                src_port: 4243,
                dst_port: 4242,
                control: TcpControl::Rst,
                seq_number: TcpSeqNumber(0),
                ack_number: Some(TcpSeqNumber(-10000)),
                window_len: 0,
                window_scale: None,
                max_seg_size: None,
                sack_permitted: false,
                sack_ranges: [None, None, None],
                timestamp: None,
                payload: &[],
            }, &TcpPayloadTail::EMPTY)
        ))
    );
    // Unspecified destination address.
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).into(),
        &Ipv6Address::UNSPECIFIED.into(),
        &ChecksumCapabilities::default(),
    );

    assert_eq!(
        iface.inner.process_tcp(
            &mut sockets,
            false,
            IpRepr::Ipv6(Ipv6Repr {
                src_addr: Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
                dst_addr: Ipv6Address::UNSPECIFIED,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            }),
            &tcp_bytes,
        ),
        None,
    );
}

#[test]
#[cfg(all(feature = "medium-ip", feature = "socket-tcp", feature = "proto-ipv4"))]
pub fn tcp_listen_drops_unspecified_src() {
    use crate::socket::tcp;

    let (mut iface, mut sockets, _) = setup(Medium::Ip);

    let tcp_socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64]),
        tcp::SocketBuffer::new(vec![0; 64]),
    );
    let handle = sockets.add(tcp_socket);
    sockets.get_mut::<tcp::Socket>(handle).listen(1234).unwrap();

    let tcp = TcpRepr {
        src_port: 65000,
        dst_port: 1234,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(0),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None, None, None],
        timestamp: None,
        payload: &[],
    };

    let mut tcp_bytes = vec![0u8; tcp.buffer_len()];
    tcp.emit(
        &mut TcpPacket::new_unchecked(&mut tcp_bytes),
        &Ipv4Address::UNSPECIFIED.into(),
        &Ipv4Address::new(127, 0, 0, 1).into(),
        &ChecksumCapabilities::default(),
    );

    let reply = iface.inner.process_tcp(
        &mut sockets,
        false,
        IpRepr::Ipv4(Ipv4Repr {
            src_addr: Ipv4Address::UNSPECIFIED,
            dst_addr: Ipv4Address::new(127, 0, 0, 1),
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        }),
        &tcp_bytes,
    );

    assert_eq!(reply, None);
    assert!(sockets.get_mut::<tcp::Socket>(handle).is_listening());
}

#[test]
#[cfg(feature = "medium-ethernet")]
fn test_per_packet_fields_lead_the_interface() {
    use core::mem::offset_of;
    let neighbor_cache = offset_of!(Interface, inner) + offset_of!(InterfaceInner, neighbor_cache);
    for field in [
        offset_of!(InterfaceInner, caps),
        offset_of!(InterfaceInner, now),
        offset_of!(InterfaceInner, rand),
        offset_of!(InterfaceInner, hardware_addr),
        offset_of!(InterfaceInner, any_ip),
        offset_of!(InterfaceInner, ip_addrs),
        offset_of!(InterfaceInner, routes),
    ] {
        assert!(offset_of!(Interface, inner) + field < neighbor_cache);
    }
}

/// A segment that follows the first of its train is sent over a copy of that one's recorded
/// headers. The frame must be, octet for octet, the one `dispatch_ip` builds for the same
/// segment: of the first one's length or shorter (new IP length and header checksum), with
/// PSH or FIN, a payload in parts with known sums or not, checksums in software or offloaded.
#[cfg(feature = "socket-tcp")]
#[rstest]
#[case::ip_v4(
    Medium::Ip,
    IpAddress::v4(192, 168, 1, 1),
    IpAddress::v4(192, 168, 1, 2)
)]
#[cfg(all(feature = "medium-ip", feature = "proto-ipv4"))]
#[case::ip_v6(
    Medium::Ip,
    IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, 2)
)]
#[cfg(all(feature = "medium-ip", feature = "proto-ipv6"))]
#[case::ethernet_v4(
    Medium::Ethernet,
    IpAddress::v4(192, 168, 1, 1),
    IpAddress::v4(192, 168, 1, 2)
)]
#[cfg(all(feature = "medium-ethernet", feature = "proto-ipv4"))]
#[case::ethernet_v6(
    Medium::Ethernet,
    IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, 1),
    IpAddress::v6(0xfe80, 0, 0, 0, 0, 0, 0, 2)
)]
#[cfg(all(feature = "medium-ethernet", feature = "proto-ipv6"))]
fn test_train_followers_are_the_frames_dispatch_ip_builds(
    #[case] medium: Medium,
    #[case] src: IpAddress,
    #[case] dst: IpAddress,
) {
    use crate::phy::Checksum;
    use crate::wire::{TcpPayloadTail, TcpTimestampRepr};

    let data: Vec<u8> = (0..3000u32).map(|n| (n * 7 + n / 251) as u8).collect();
    let sum = |part: &[u8]| Some(crate::wire::ip::checksum::data(part));
    let offloaded = ChecksumCapabilities {
        ipv4: Checksum::Rx,
        tcp: Checksum::Rx,
        ..ChecksumCapabilities::default()
    };
    for checksums in [ChecksumCapabilities::default(), offloaded] {
        let (mut iface, _, mut device) = setup(medium);
        iface.inner.caps.checksum = checksums.clone();
        #[cfg(feature = "medium-ethernet")]
        if medium == Medium::Ethernet {
            let mac = HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 0x02]));
            iface.inner.neighbor_cache.fill(dst, mac, Instant::ZERO);
        }
        // Sends `repr` (its payload then `tail`) as `place` in the train of `header`.
        let mut send = |iface: &mut Interface,
                        repr: TcpRepr,
                        tail: TcpPayloadTail,
                        place: TcpTrainPlace,
                        header: Option<&mut TrainHeader>| {
            let len = repr.buffer_len() + tail.len();
            let ip = IpRepr::new(src, dst, IpProtocol::Tcp, len, 64);
            let token = device.transmit(Instant::ZERO).unwrap();
            let packet = Packet::new(ip, IpPayload::Tcp(repr, &tail));
            let meta = PacketMeta::default();
            iface
                .inner
                .dispatch_ip_in_train(token, meta, packet, &mut iface.fragmenter, place, header)
                .unwrap();
            device.tx_queue.pop_back().unwrap()
        };
        let segment = |seq: usize, len: usize, control: TcpControl| TcpRepr {
            src_port: 80,
            dst_port: 49500,
            control,
            seq_number: TcpSeqNumber(1000 + seq as i32),
            ack_number: Some(TcpSeqNumber(5000)),
            window_len: 4000,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestampRepr::new(0x0102_0304, 0x0a0b_0c0d)),
            payload: &data[seq..seq + len],
        };

        let mut header = TrainHeader::new();
        let head = segment(0, 1000, TcpControl::None);
        let whole = TcpPayloadTail::default();
        let leads = TcpTrainPlace::Head;
        let first = send(&mut iface, head, whole, leads, Some(&mut header));
        assert!(header.len > 0, "the first segment's headers are recorded");
        let alone = send(&mut iface, head, whole, TcpTrainPlace::Alone, None);
        assert_eq!(first, alone, "recording changes nothing");

        // (offset, length, control, where the payload is cut into parts, whether their sums
        // are known)
        let followers: [(usize, usize, TcpControl, &[usize], bool); 6] = [
            (1000, 1000, TcpControl::None, &[], false),
            (2000, 1000, TcpControl::None, &[1, 500, 999], true),
            (2000, 1000, TcpControl::Psh, &[333], false),
            (2000, 333, TcpControl::Psh, &[], true),
            (2000, 333, TcpControl::Fin, &[2, 7, 300], true),
            (2999, 1, TcpControl::Fin, &[], false),
        ];
        for (offset, len, control, cuts, known) in followers {
            let mut repr = segment(offset, len, control);
            let mut tail = TcpPayloadTail::default();
            let payload = repr.payload;
            let mut at = cuts.first().copied().unwrap_or(len);
            repr.payload = &payload[..at];
            for &cut in cuts.iter().skip(1).chain([len].iter()) {
                let part = &payload[at..cut];
                tail.push_with_sum(part, if known { sum(part) } else { None });
                at = cut;
            }
            if known {
                tail.payload_sum = sum(repr.payload);
            }
            let built = send(&mut iface, repr, tail, TcpTrainPlace::Alone, None);
            let follows = TcpTrainPlace::Follows;
            let copied = send(&mut iface, repr, tail, follows, Some(&mut header));
            assert_eq!(
                copied, built,
                "{medium:?} {checksums:?}: {len} octets at {offset}, {control:?}, cut at {cuts:?}"
            );
        }
    }
}
