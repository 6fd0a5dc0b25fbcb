//! The netmap driver over the emulated netmap region: layout against the C structs, and the
//! data path (bursts, wrap-around, full rings, buffer swaps, bad slots, host rings) between two
//! emulated ports. The real module is not on these machines; `Netmap::open` is checked for the
//! error that says so.

use std::mem::{offset_of, size_of};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use netmap_sys::netmap::{netmap_if, netmap_ring, netmap_slot, nmreq};
use netmap_sys::netmap_user::{NETMAP_BUF, NETMAP_RXRING, NETMAP_TXRING};
use sirocco_drivers::netmap::region::RingId;
use sirocco_drivers::netmap::ring::NetmapRing;
use sirocco_drivers::netmap::{
    EmulatedConfig, EmulatedNetmap, Filter, Netmap, NetmapConfig, NetmapPort, RegisterMode,
    SlotFault,
};
use sirocco_drivers::{FrameIo, ServerAddresses};

/// A frame of `len` bytes (at least 18) carrying `seq`; bytes 26..38 vary with `flow` so the
/// emulated RSS hash spreads flows over rings.
fn frame(seq: u32, len: usize, flow: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32 ^ seq.wrapping_mul(31)) as u8)
        .collect();
    if len >= 18 {
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14..18].copy_from_slice(&seq.to_be_bytes());
    }
    if len >= 38 {
        f[26..30].copy_from_slice(&flow.to_be_bytes());
        f[34..38].copy_from_slice(&flow.rotate_left(7).to_be_bytes());
    }
    f
}

fn ipv4_frame(dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut f = vec![0x5a; len.max(34)];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[30..34].copy_from_slice(&dst.octets());
    f
}

fn arp_for(tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[38..42].copy_from_slice(&tpa.octets());
    f
}

fn small(slots: u32) -> EmulatedConfig {
    EmulatedConfig {
        num_slots: slots,
        ..EmulatedConfig::default()
    }
}

/// Stages `frame`; `true` if accepted.
fn stage(port: &mut impl FrameIo, frame: &[u8]) -> bool {
    port.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame))
}

/// Receives everything `port` will give in one burst of up to `max`.
fn receive(port: &mut impl FrameIo, max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let n = port.rx_burst(max, &mut |f| got.push(f.to_vec())).unwrap();
    assert_eq!(n, got.len());
    got
}

/// Receives until a burst comes back empty.
fn receive_all(port: &mut impl FrameIo) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let got = receive(port, 64);
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

#[test]
fn struct_layouts_match_the_netmap_headers() {
    // Offsets from net/netmap.h on LP64 (the kernel ABI the module publishes).
    assert_eq!(size_of::<netmap_slot>(), 16);
    assert_eq!(offset_of!(netmap_slot, buf_idx), 0);
    assert_eq!(offset_of!(netmap_slot, len), 4);
    assert_eq!(offset_of!(netmap_slot, flags), 6);
    assert_eq!(offset_of!(netmap_slot, ptr), 8);

    assert_eq!(offset_of!(netmap_ring, buf_ofs), 0);
    assert_eq!(offset_of!(netmap_ring, num_slots), 8);
    assert_eq!(offset_of!(netmap_ring, nr_buf_size), 12);
    assert_eq!(offset_of!(netmap_ring, ringid), 16);
    assert_eq!(offset_of!(netmap_ring, dir), 18);
    assert_eq!(offset_of!(netmap_ring, head), 20);
    assert_eq!(offset_of!(netmap_ring, cur), 24);
    assert_eq!(offset_of!(netmap_ring, tail), 28);
    assert_eq!(offset_of!(netmap_ring, flags), 32);
    assert_eq!(offset_of!(netmap_ring, ts), 40);
    // `sem` is __aligned__(NM_CACHE_ALIGN = 128); the slots follow it.
    assert_eq!(offset_of!(netmap_ring, sem), 128);
    assert_eq!(offset_of!(netmap_ring, slot), 256);
    assert_eq!(size_of::<netmap_ring>(), 256);

    assert_eq!(offset_of!(netmap_if, ni_name), 0);
    assert_eq!(offset_of!(netmap_if, ni_version), 16);
    assert_eq!(offset_of!(netmap_if, ni_tx_rings), 24);
    assert_eq!(offset_of!(netmap_if, ni_rx_rings), 28);
    assert_eq!(offset_of!(netmap_if, ni_bufs_head), 32);
    assert_eq!(offset_of!(netmap_if, ring_ofs), 56);
    assert_eq!(size_of::<netmap_if>(), 56);

    // NIOCREGIF encodes sizeof(struct nmreq) in bits 16..30.
    let encoded = (netmap_sys::netmap::NIOCREGIF >> 16) & 0x3fff;
    assert_eq!(encoded as usize, size_of::<nmreq>());
}

#[test]
fn emulated_offsets_agree_with_the_netmap_user_macros_and_the_driver() {
    let config = EmulatedConfig {
        nic_rings: 2,
        num_slots: 32,
        ..EmulatedConfig::default()
    };
    let (mut port, _peer) = EmulatedNetmap::port_pair(config);
    let registration = port.register("emu-a", RegisterMode::NicAndHost).unwrap();
    let layout = port.layout().clone();
    assert_eq!(registration.nifp_offset, layout.nifp_offset);
    assert_eq!(registration.region.len(), layout.len);
    let base = registration.region.base().as_ptr();
    // SAFETY: `port` owns the region and outlives `nif`.
    let nif = unsafe { registration.region.interface(registration.nifp_offset) }.unwrap();
    assert_eq!(
        (nif.tx_rings(), nif.rx_rings(), nif.name()),
        (2, 2, "emu-a")
    );

    let rings = [
        RingId::Tx(0),
        RingId::Tx(1),
        RingId::HostTx,
        RingId::Rx(0),
        RingId::Rx(1),
        RingId::HostRx,
    ];
    for (index, id) in rings.into_iter().enumerate() {
        // Way 1: the emulation's own arithmetic (pools back to back, as netmap_mem2.c).
        let expected = layout.ring_offsets[index];
        // Way 2: netmap_user.h's macros over the mapped bytes.
        // SAFETY: `base` is the live region; `nifp_offset` and every `ring_ofs[]` entry the
        // macros read were written by the emulation inside it.
        let by_macro = unsafe {
            let nifp = base.add(layout.nifp_offset).cast::<netmap_if>();
            let ring = match id {
                RingId::Tx(n) => NETMAP_TXRING(nifp, n as isize),
                RingId::HostTx => NETMAP_TXRING(nifp, 2),
                RingId::Rx(n) => NETMAP_RXRING(nifp, n as isize),
                RingId::HostRx => NETMAP_RXRING(nifp, 2),
            };
            ring.cast::<u8>().offset_from(base) as usize
        };
        // Way 3: the driver's checked reading of ring_ofs[].
        let by_driver = nif.ring_offset(id).unwrap();
        assert_eq!((by_macro, by_driver), (expected, expected), "{id:?}");

        // SAFETY: `port` owns the region and outlives `ring`.
        let ring = unsafe { NetmapRing::new(registration.region, expected) }.unwrap();
        assert_eq!((ring.num_slots(), ring.buf_size()), (32, 2048));
        // buf_ofs is relative to each ring: buffer k is at the pool start + k * 2048.
        for k in [2u32, 77, layout.buf_count - 1] {
            // SAFETY: the ring header is inside the region; NETMAP_BUF only does arithmetic.
            let by_macro = unsafe {
                let r = base.add(expected).cast::<netmap_ring>();
                NETMAP_BUF(r, k as isize).cast::<u8>().offset_from(base) as usize
            };
            assert_eq!(by_macro, layout.buf_pool_offset + k as usize * 2048);
        }
        assert_eq!(ring.buf_count(), layout.buf_count);
    }
}

#[test]
fn unbound_rings_have_zero_offsets_and_are_refused() {
    let config = EmulatedConfig {
        nic_rings: 3,
        ..small(8)
    };
    let (mut port, _peer) = EmulatedNetmap::port_pair(config);
    let registration = port.register("emu-a", RegisterMode::OneNic(1)).unwrap();
    // SAFETY: `port` owns the region and outlives `nif`.
    let nif = unsafe { registration.region.interface(registration.nifp_offset) }.unwrap();
    assert!(nif.ring_offset(RingId::Rx(1)).is_ok());
    assert!(nif.ring_offset(RingId::Rx(0)).is_err());
    assert!(nif.ring_offset(RingId::HostTx).is_err());
    assert!(nif.ring_offset(RingId::Tx(3)).is_err());
}

#[test]
fn frames_cross_byte_exact_in_both_directions() {
    let (mut a, mut b) = EmulatedNetmap::pair(EmulatedConfig::default()).unwrap();
    let sent: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 60 + 37 * i as usize, 0)).collect();
    for f in &sent {
        assert!(stage(&mut a, f));
    }
    assert_eq!(b.counters().rx_frames, 0);
    a.tx_flush().unwrap();
    assert_eq!(receive_all(&mut b), sent);

    let back = frame(9, 1514, 0);
    assert!(stage(&mut b, &back));
    b.tx_flush().unwrap();
    assert_eq!(receive_all(&mut a), vec![back]);

    let counters = a.counters();
    assert_eq!(counters.tx_frames, 40);
    assert_eq!(
        counters.tx_bytes,
        sent.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(counters.rx_frames, 1);
    assert_eq!(b.counters().rx_frames, 40);
    a.port().check_buffers().unwrap();
    b.port().check_buffers().unwrap();
}

#[test]
fn one_sync_per_burst_each_way() {
    let (mut a, mut b) = EmulatedNetmap::pair(EmulatedConfig::default()).unwrap();
    for i in 0..6 {
        assert!(stage(&mut a, &frame(i, 64, 0)));
    }
    a.tx_flush().unwrap();
    a.tx_flush().unwrap(); // nothing staged: no kick
    assert_eq!(a.port().stats().tx_syncs, 1);
    assert_eq!(a.counters().kicks, 1);

    // Three bursts of two: the ring is synced once, when it was empty.
    for _ in 0..3 {
        assert_eq!(receive(&mut b, 2).len(), 2);
    }
    assert_eq!(b.port().stats().rx_syncs, 1);
    // Now empty: the next burst syncs again and finds nothing.
    assert!(receive(&mut b, 2).is_empty());
    assert_eq!(b.port().stats().rx_syncs, 2);
    assert_eq!(b.counters().kicks, 2);
}

#[test]
fn rings_wrap_around_over_many_bursts() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(8)).unwrap();
    let mut next = 0u32;
    let mut received = Vec::new();
    for round in 0..40 {
        let burst = 1 + round % 7;
        for _ in 0..burst {
            assert!(stage(&mut a, &frame(next, 64 + next as usize % 50, 0)));
            next += 1;
        }
        a.tx_flush().unwrap();
        received.extend(receive_all(&mut b));
    }
    assert!(next > 8 * 10, "the 8-slot rings wrapped many times");
    let expected: Vec<Vec<u8>> = (0..next)
        .map(|i| frame(i, 64 + i as usize % 50, 0))
        .collect();
    assert_eq!(received, expected);
    a.port().check_buffers().unwrap();
    b.port().check_buffers().unwrap();
}

#[test]
fn a_full_tx_ring_refuses_counts_and_loses_nothing() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(8)).unwrap();
    assert_eq!(a.tx_room(), 7, "one slot always stays with the kernel");
    for i in 0..7 {
        assert!(stage(&mut a, &frame(i, 100, 0)));
    }
    assert_eq!(a.tx_room(), 0);
    let mut called = false;
    assert!(!a.tx_stage(100, &mut |_| called = true));
    assert!(!called, "fill is not called when the ring is full");
    assert_eq!(a.counters().tx_ring_full, 1);
    a.tx_flush().unwrap();
    assert_eq!(a.tx_room(), 7);
    assert!(stage(&mut a, &frame(7, 100, 0)));
    a.tx_flush().unwrap();
    let got = receive_all(&mut b);
    assert_eq!(got, (0..8).map(|i| frame(i, 100, 0)).collect::<Vec<_>>());
}

#[test]
fn a_stalled_nic_fills_the_ring_and_flush_keeps_reclaiming() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(8)).unwrap();
    a.emulation().set_tx_completions_paused(true);
    for i in 0..7 {
        assert!(stage(&mut a, &frame(i, 80, 0)));
    }
    a.tx_flush().unwrap();
    assert_eq!(a.tx_room(), 0, "sent but not completed");
    assert!(!stage(&mut a, &frame(7, 80, 0)));
    let kicks = a.counters().kicks;
    a.tx_flush().unwrap();
    assert_eq!(
        a.counters().kicks,
        kicks + 1,
        "a refused stage makes the next flush sync"
    );
    assert_eq!(a.tx_room(), 0);
    a.emulation().set_tx_completions_paused(false);
    assert!(!stage(&mut a, &frame(7, 80, 0)));
    a.tx_flush().unwrap();
    assert_eq!(a.tx_room(), 7);
    assert!(stage(&mut a, &frame(7, 80, 0)));
    a.tx_flush().unwrap();
    assert_eq!(
        receive_all(&mut b),
        (0..8).map(|i| frame(i, 80, 0)).collect::<Vec<_>>()
    );
    assert_eq!(a.counters().tx_ring_full, 2);
}

#[test]
fn bursts_larger_than_the_ring_arrive_in_ring_sized_pieces() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(8)).unwrap();
    let sent: Vec<Vec<u8>> = (0..50).map(|i| frame(i, 200, 0)).collect();
    let mut pending = sent.iter().peekable();
    let mut received = Vec::new();
    for _ in 0..100 {
        while let Some(f) = pending.peek() {
            if !stage(&mut a, f) {
                break;
            }
            pending.next();
        }
        a.tx_flush().unwrap();
        let got = receive(&mut b, 1000);
        assert!(got.len() <= 7, "an 8-slot RX ring holds at most 7 frames");
        received.extend(got);
        if received.len() == sent.len() {
            break;
        }
    }
    assert_eq!(received, sent);
    assert!(a.counters().tx_ring_full >= 6);
}

#[test]
fn zero_length_and_buffer_sized_frames() {
    let config = EmulatedConfig {
        mtu: 2048 - 14,
        ..small(16)
    };
    let (mut a, mut b) = EmulatedNetmap::pair(config).unwrap();
    assert_eq!(a.capabilities().max_frame_len, 2048);
    let largest = frame(1, 2048, 0);
    assert!(stage(&mut a, &[]));
    assert!(stage(&mut a, &largest));
    assert!(!a.tx_stage(2049, &mut |_| panic!("oversize must not be lent")));
    assert_eq!(a.counters().tx_dropped, 1);
    a.tx_flush().unwrap();
    assert_eq!(receive_all(&mut b), vec![Vec::new(), largest]);
}

#[test]
fn frames_longer_than_the_receivers_mtu_are_dropped_and_counted() {
    let (port_a, mut port_b) = EmulatedNetmap::port_pair(EmulatedConfig {
        mtu: 2034,
        ..small(16)
    });
    port_b.set_interface_mtu(1500);
    let nic_only = |iface: &str| NetmapConfig {
        host_rings: false,
        ..NetmapConfig::new(iface)
    };
    let mut a = Netmap::with_port(port_a, nic_only("emu-a")).unwrap();
    let mut b = Netmap::with_port(port_b, nic_only("emu-b")).unwrap();
    assert_eq!(b.capabilities().max_frame_len, 1514);
    assert!(stage(&mut a, &frame(0, 2000, 0)));
    assert!(stage(&mut a, &frame(1, 1514, 0)));
    a.tx_flush().unwrap();
    assert_eq!(receive_all(&mut b), vec![frame(1, 1514, 0)]);
    assert_eq!(b.netmap_counters().oversize_dropped, 1);
    assert_eq!(b.counters().rx_dropped, 1);
}

#[test]
fn kernel_buffer_swaps_on_rx_and_tx_are_honoured() {
    let config = EmulatedConfig {
        swap_buffers: true,
        spare_buffers: 5,
        ..small(8)
    };
    let (mut a, mut b) = EmulatedNetmap::pair(config).unwrap();
    let mut next = 0;
    let mut received = Vec::new();
    for _ in 0..12 {
        for _ in 0..5 {
            assert!(stage(&mut a, &frame(next, 300 + next as usize, 0)));
            next += 1;
        }
        a.tx_flush().unwrap();
        received.extend(receive_all(&mut b));
    }
    let expected: Vec<Vec<u8>> = (0..next).map(|i| frame(i, 300 + i as usize, 0)).collect();
    assert_eq!(received, expected);
    assert!(
        a.port().stats().kernel_swaps >= 60,
        "every TX slot got a new buffer"
    );
    assert!(
        b.port().stats().kernel_swaps >= 60,
        "every RX slot got a new buffer"
    );
    a.port().check_buffers().unwrap();
    b.port().check_buffers().unwrap();
}

#[test]
fn bad_slots_from_the_kernel_are_counted_and_dropped() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(16)).unwrap();
    b.emulation().inject_rx_fault(SlotFault::BufIdxOutOfRange);
    b.emulation().inject_rx_fault(SlotFault::ReservedBufIdx);
    b.emulation().inject_rx_fault(SlotFault::LenOverBufSize);
    for i in 0..5 {
        assert!(stage(&mut a, &frame(i, 90, 0)));
    }
    a.tx_flush().unwrap();
    let got = receive_all(&mut b);
    assert_eq!(got, vec![frame(3, 90, 0), frame(4, 90, 0)]);
    let counters = b.counters();
    assert_eq!((counters.rx_frames, counters.rx_dropped), (2, 3));
    assert_eq!(b.netmap_counters().bad_rx_slots, 3);

    // The ring keeps working afterwards, and no buffer went astray.
    for i in 5..30 {
        assert!(stage(&mut a, &frame(i, 90, 0)));
        if i % 7 == 0 {
            a.tx_flush().unwrap();
        }
    }
    a.tx_flush().unwrap();
    let got = receive_all(&mut b);
    assert_eq!(got, (5..30).map(|i| frame(i, 90, 0)).collect::<Vec<_>>());
    b.port().check_buffers().unwrap();
}

#[test]
fn host_rings_carry_frames_the_server_does_not_want_both_ways() {
    let server = Ipv4Addr::new(198, 18, 0, 1);
    let server6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    let (mut a, mut b) = EmulatedNetmap::pair_with(
        small(16),
        NetmapConfig {
            filter: Filter::Server(ServerAddresses {
                ipv4: Some(server),
                ipv6: vec![server6],
            }),
            ..NetmapConfig::new("emu-a")
        },
        NetmapConfig {
            host_rings: false,
            ..NetmapConfig::new("emu-b")
        },
    )
    .unwrap();
    let for_server = ipv4_frame(server, 80);
    let arp = arp_for(server);
    let for_host = ipv4_frame(Ipv4Addr::new(198, 18, 0, 2), 120);
    let mut ipv6 = vec![0x33; 90];
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    // IPv6 to the server's address (destination at 38..54).
    let mut ipv6_for_server = ipv6.clone();
    ipv6_for_server[38..54].copy_from_slice(&server6.octets());
    for f in [&for_server, &for_host, &arp, &ipv6, &ipv6_for_server] {
        assert!(stage(&mut b, f));
    }
    b.tx_flush().unwrap();

    assert_eq!(
        receive_all(&mut a),
        vec![for_server.clone(), arp, ipv6_for_server]
    );
    assert!(
        a.emulation().take_host_frames().is_empty(),
        "not before the flush"
    );
    a.tx_flush().unwrap();
    assert_eq!(a.emulation().take_host_frames(), vec![for_host, ipv6]);
    assert_eq!(a.netmap_counters().to_host, 2);
    assert!(
        a.port().stats().user_buf_changes >= 2,
        "forwarding swaps buffers and says so with NS_BUF_CHANGED"
    );

    // The host stack answers: its frame goes out on the NIC, untouched by the server.
    let reply = ipv4_frame(Ipv4Addr::new(198, 18, 0, 99), 150);
    a.emulation().host_send(&reply);
    assert!(receive_all(&mut a).is_empty());
    a.tx_flush().unwrap();
    assert_eq!(receive_all(&mut b), vec![reply]);
    assert_eq!(a.netmap_counters().from_host, 1);
    assert_eq!(
        a.counters().tx_frames,
        0,
        "forwarded frames are not the server's"
    );

    // And the server's own traffic still flows, with buffers all accounted for.
    assert!(stage(&mut a, &for_server));
    a.tx_flush().unwrap();
    assert_eq!(receive_all(&mut b), vec![for_server]);
    a.port().check_buffers().unwrap();
}

#[test]
fn without_host_rings_every_frame_goes_to_the_server() {
    let (mut a, mut b) = EmulatedNetmap::pair_with(
        small(16),
        NetmapConfig {
            host_rings: false,
            filter: Filter::Server(ServerAddresses::ipv4(Ipv4Addr::new(198, 18, 0, 1))),
            ..NetmapConfig::new("emu-a")
        },
        NetmapConfig {
            host_rings: false,
            ..NetmapConfig::new("emu-b")
        },
    )
    .unwrap();
    let other = ipv4_frame(Ipv4Addr::new(198, 18, 0, 2), 64);
    assert!(stage(&mut b, &other));
    b.tx_flush().unwrap();
    assert_eq!(receive_all(&mut a), vec![other]);
}

#[test]
fn all_queues_of_a_multi_queue_nic_are_served() {
    let config = EmulatedConfig {
        nic_rings: 4,
        ..small(16)
    };
    let (mut a, mut b) = EmulatedNetmap::pair(config).unwrap();
    let sent: Vec<Vec<u8>> = (0..40).map(|i| frame(i, 100, i * 7919)).collect();
    for f in &sent {
        assert!(stage(&mut a, f));
    }
    a.tx_flush().unwrap();
    let mut got = receive_all(&mut b);
    assert_eq!(got.len(), sent.len());
    assert_ne!(
        got, sent,
        "flows were spread over several rings and read round-robin"
    );
    got.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(got, expected);
}

#[test]
fn idle_wait_polls_only_when_the_rings_are_empty() {
    let (mut a, mut b) = EmulatedNetmap::pair(small(16)).unwrap();
    b.wait_rx(std::time::Duration::from_millis(5)).unwrap();
    assert_eq!(b.port().stats().polls, 1);
    assert!(stage(&mut a, &frame(0, 64, 0)));
    a.tx_flush().unwrap();
    b.wait_rx(std::time::Duration::from_millis(5)).unwrap();
    assert_eq!(b.port().stats().polls, 2);
    // The poll already synced: the burst needs no further sync.
    assert_eq!(receive(&mut b, 8).len(), 1);
    assert_eq!(b.port().stats().rx_syncs, 0);

    let (mut busy, _peer) = EmulatedNetmap::pair_with(
        small(16),
        NetmapConfig {
            host_rings: false,
            busy_poll: true,
            ..NetmapConfig::new("emu-a")
        },
        NetmapConfig {
            host_rings: false,
            ..NetmapConfig::new("emu-b")
        },
    )
    .unwrap();
    busy.wait_rx(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(busy.port().stats().polls, 0);
}

#[test]
fn pair_drives_as_boxed_frame_io_ping_pong() {
    let (a, b) = EmulatedNetmap::pair(small(8)).unwrap();
    let mut ends: [Box<dyn FrameIo>; 2] = [Box::new(a), Box::new(b)];
    assert!(stage(&mut ends[0], &frame(0, 64, 0)));
    ends[0].tx_flush().unwrap();
    // Each side answers what it receives with seq + 1, 100 times.
    for round in 0..100u32 {
        let rx = if round % 2 == 0 { 1 } else { 0 };
        let got = receive(&mut ends[rx], 8);
        assert_eq!(got, vec![frame(round, 64, 0)]);
        assert!(stage(&mut ends[rx], &frame(round + 1, 64, 0)));
        ends[rx].tx_flush().unwrap();
    }
    assert_eq!(
        ends[0].counters().rx_frames + ends[1].counters().rx_frames,
        100
    );
}

#[test]
fn open_without_the_netmap_module_says_how_to_get_it() {
    if Path::new("/dev/netmap").exists() {
        // A host with netmap cannot show the missing-module message (the unit test of
        // `RealPort::open_device` covers it with a path that does not exist).
        eprintln!("/dev/netmap exists on this host: the module is loaded, nothing to check");
        return;
    }
    let err = Netmap::open(NetmapConfig::new("eth0")).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("no /dev/netmap"), "{message}");
    assert!(
        message.contains("netmap kernel module is not loaded"),
        "{message}"
    );
    assert!(message.contains("--driver afxdp"), "{message}");
}
