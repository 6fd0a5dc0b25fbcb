//! Tests for the memory link: timing, queueing, staging and fault injection, all on a virtual
//! clock and fixed seeds.

use std::collections::HashSet;

use super::*;

/// A frame of `len` bytes (at least 4) whose first four bytes carry `tag`, the rest a pattern.
fn tagged(tag: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0x5a)
        .collect();
    f[..4].copy_from_slice(&tag.to_be_bytes());
    f
}

fn tag_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]])
}

fn send(port: &mut MemoryPort, frames: &[Vec<u8>]) {
    for f in frames {
        assert!(port.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(f)));
    }
    port.tx_flush().unwrap();
}

fn send_tags(port: &mut MemoryPort, tags: std::ops::Range<u32>, len: usize) {
    let frames: Vec<Vec<u8>> = tags.map(|t| tagged(t, len)).collect();
    send(port, &frames);
}

fn receive_all(port: &mut MemoryPort) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    port.rx_burst(usize::MAX, &mut |f| out.push(f.to_vec()))
        .unwrap();
    out
}

fn tags(frames: &[Vec<u8>]) -> Vec<u32> {
    frames.iter().map(|f| tag_of(f)).collect()
}

fn link(config: LinkConfig) -> (VirtualClock, MemoryPort, MemoryPort) {
    let clock = VirtualClock::new();
    let (a, b) = MemoryLink::pair(config, clock.clone());
    (clock, a, b)
}

fn with_faults(faults: FaultConfig) -> LinkConfig {
    LinkConfig {
        faults,
        ..LinkConfig::default()
    }
}

/// Sends `count` tagged frames A→B in flushes of 100, letting each batch arrive before the next,
/// and returns what B received with the virtual time it was received at.
fn run(config: LinkConfig, count: u32) -> (Vec<(u64, Vec<u8>)>, MemoryPort) {
    let (clock, mut a, mut b) = link(config);
    let mut got = Vec::new();
    for start in (0..count).step_by(100) {
        send_tags(&mut a, start..(start + 100).min(count), 64);
        while let Some(at) = b.next_arrival_micros() {
            clock.set_micros(at);
            let now = clock.now_micros();
            b.rx_burst(usize::MAX, &mut |f| got.push((now, f.to_vec())))
                .unwrap();
        }
    }
    (got, a)
}

#[test]
fn frames_pass_both_ways_byte_exact() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    let a_frames = vec![tagged(1, 60), tagged(2, 1514), tagged(3, 4)];
    let b_frames = vec![tagged(10, 98), tagged(11, 1000)];
    send(&mut a, &a_frames);
    send(&mut b, &b_frames);
    clock.advance_micros(10);
    assert_eq!(receive_all(&mut b), a_frames);
    assert_eq!(receive_all(&mut a), b_frames);

    let ca = a.counters();
    assert_eq!((ca.tx_frames, ca.tx_bytes), (3, 60 + 1514 + 4));
    assert_eq!((ca.rx_frames, ca.rx_bytes), (2, 98 + 1000));
    assert_eq!(ca.kicks, 1);
    let cb = b.counters();
    assert_eq!((cb.rx_frames, cb.rx_bytes), (3, 60 + 1514 + 4));
    assert_eq!((cb.tx_frames, cb.tx_bytes), (2, 98 + 1000));
    assert_eq!((ca.tx_dropped, ca.rx_dropped, cb.tx_dropped), (0, 0, 0));
}

#[test]
fn nothing_is_delivered_before_its_arrival_time() {
    let (clock, mut a, mut b) = link(LinkConfig {
        latency_us: 10,
        ..LinkConfig::default()
    });
    clock.set_micros(100);
    send_tags(&mut a, 0..1, 60);
    clock.set_micros(109);
    assert!(receive_all(&mut b).is_empty());
    assert!(receive_all(&mut a).is_empty(), "nothing echoes back");
    clock.set_micros(110);
    assert_eq!(tags(&receive_all(&mut b)), [0]);
}

#[test]
fn rate_limited_frames_leave_back_to_back() {
    // 1500 bytes at 12 Mbit/s = 12_000 bits / 12 bits per µs = 1 ms each.
    let (clock, mut a, mut b) = link(LinkConfig {
        latency_us: 10,
        rate_bits_per_sec: Some(12_000_000),
        ..LinkConfig::default()
    });
    send_tags(&mut a, 0..3, 1500);
    for (arrival, tag) in [(1010, 0), (2010, 1), (3010, 2)] {
        assert_eq!(b.next_arrival_micros(), Some(arrival));
        clock.set_micros(arrival - 1);
        assert!(receive_all(&mut b).is_empty(), "frame {tag} early");
        clock.set_micros(arrival);
        assert_eq!(tags(&receive_all(&mut b)), [tag]);
    }

    // Flushed while the wire is still busy: waits for it, then serializes.
    clock.set_micros(10_000);
    send_tags(&mut a, 3..4, 1500); // leaves 11_000, arrives 11_010
    clock.set_micros(10_500);
    send_tags(&mut a, 4..5, 1500); // wire free at 11_000: leaves 12_000, arrives 12_010
    assert_eq!(b.next_arrival_micros(), Some(11_010));
    clock.set_micros(12_009);
    assert_eq!(tags(&receive_all(&mut b)), [3]);
    assert_eq!(b.next_arrival_micros(), Some(12_010));

    clock.set_micros(12_010);
    assert_eq!(tags(&receive_all(&mut b)), [4]);

    // An idle wire does not bank time: a later flush starts from now.
    clock.set_micros(50_000);
    send_tags(&mut a, 5..6, 1500);
    assert_eq!(b.next_arrival_micros(), Some(51_010));
    clock.set_micros(51_010);
    assert_eq!(tags(&receive_all(&mut b)), [5]);
}

#[test]
fn sub_microsecond_serialization_adds_up_and_rounds_arrival_up() {
    // 64 bytes at 1 Gbit/s = 512 ns: arrivals at 10.512 µs and 11.024 µs.
    let (clock, mut a, mut b) = link(LinkConfig {
        latency_us: 10,
        rate_bits_per_sec: Some(1_000_000_000),
        ..LinkConfig::default()
    });
    send_tags(&mut a, 0..2, 64);
    assert_eq!(b.next_arrival_micros(), Some(11));
    clock.set_micros(10);
    assert!(receive_all(&mut b).is_empty());
    clock.set_micros(11);
    assert_eq!(tags(&receive_all(&mut b)), [0]);
    assert_eq!(b.next_arrival_micros(), Some(12));
    clock.set_micros(12);
    assert_eq!(tags(&receive_all(&mut b)), [1]);
}

#[test]
fn a_full_queue_tail_drops_and_counts() {
    let (clock, mut a, mut b) = link(LinkConfig {
        queue_limit: 4,
        ..LinkConfig::default()
    });
    send_tags(&mut a, 0..6, 60);
    let c = a.counters();
    assert_eq!((c.tx_frames, c.tx_dropped, c.kicks), (4, 2, 1));
    assert_eq!(a.fault_counters().queue_dropped, 2);

    // Arrived but unread frames still fill the queue, as on a ring nobody polls.
    clock.advance_micros(1_000);
    send_tags(&mut a, 6..7, 60);
    assert_eq!(a.fault_counters().queue_dropped, 3);
    assert_eq!(tags(&receive_all(&mut b)), [0, 1, 2, 3]);

    send_tags(&mut a, 7..11, 60);
    clock.advance_micros(1_000);
    assert_eq!(tags(&receive_all(&mut b)), [7, 8, 9, 10]);
    assert_eq!(a.fault_counters().queue_dropped, 3);
}

#[test]
fn the_staging_area_fills_and_a_flush_empties_it() {
    let (_clock, mut a, _b) = link(LinkConfig::default());
    assert_eq!(a.tx_room(), TX_STAGING_FRAMES);
    for t in 0..TX_STAGING_FRAMES as u32 {
        assert!(a.tx_stage(60, &mut |buf| buf.copy_from_slice(&tagged(t, 60))));
    }
    assert_eq!(a.tx_room(), 0);
    let mut called = false;
    assert!(!a.tx_stage(60, &mut |_| called = true));
    assert!(!called, "fill must not run when the ring is full");
    assert_eq!(a.counters().tx_ring_full, 1);
    assert_eq!(a.counters().tx_frames, 0, "nothing leaves before a flush");

    a.tx_flush().unwrap();
    assert_eq!(a.tx_room(), TX_STAGING_FRAMES);
    assert_eq!(a.counters().kicks, 1);
    a.tx_flush().unwrap();
    assert_eq!(a.counters().kicks, 1, "an empty flush is not a kick");
    assert_eq!(a.counters().tx_frames, TX_STAGING_FRAMES as u64);
}

#[test]
fn oversize_frames_are_refused() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    assert_eq!(a.capabilities(), Capabilities::ethernet(1500));
    let mut called = false;
    assert!(!a.tx_stage(1515, &mut |_| called = true));
    assert!(!called);
    assert_eq!(a.counters().tx_dropped, 1);
    assert_eq!(a.tx_room(), TX_STAGING_FRAMES);
    send_tags(&mut a, 0..1, 1514);
    clock.advance_micros(10);
    assert_eq!(receive_all(&mut b)[0].len(), 1514);

    let (_clock, mut jumbo, _peer) = link(LinkConfig {
        mtu: 9000,
        ..LinkConfig::default()
    });
    assert!(jumbo.tx_stage(9014, &mut |_| {}));
    assert!(!jumbo.tx_stage(9015, &mut |_| {}));
}

#[test]
fn rx_burst_respects_max() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    send_tags(&mut a, 0..10, 60);
    clock.advance_micros(10);
    let mut got = Vec::new();
    assert_eq!(b.rx_burst(0, &mut |f| got.push(tag_of(f))).unwrap(), 0);
    assert_eq!(b.rx_burst(3, &mut |f| got.push(tag_of(f))).unwrap(), 3);
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(b.counters().rx_frames, 3);
    assert_eq!(tags(&receive_all(&mut b)), [3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(b.rx_burst(8, &mut |_| {}).unwrap(), 0);
}

#[test]
fn rx_batch_lends_frames_in_order_in_bursts_of_at_most_the_lend_limit() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    send_tags(&mut a, 0..150, 60);
    clock.advance_micros(10);
    let mut bursts = Vec::new();
    let mut got = Vec::new();
    let n = b
        .rx_batch(140, &mut |frames| {
            bursts.push(frames.len());
            got.extend(frames.iter().map(|f| tag_of(f)));
            // No borrow of the link is held: the other end can send from inside.
            send_tags(&mut a, 0..1, 60);
        })
        .unwrap();
    assert_eq!(n, 140);
    assert_eq!(bursts, [64, 64, 12]);
    assert_eq!(got, (0..140).collect::<Vec<_>>());
    assert_eq!(b.counters().rx_frames, 140);
    assert_eq!(b.counters().rx_bytes, 140 * 60);
    assert_eq!(tags(&receive_all(&mut b)), (140..150).collect::<Vec<_>>());
    assert_eq!(b.rx_batch(8, &mut |_| panic!("nothing is due")).unwrap(), 0);
}

#[test]
fn rx_pending_says_whether_a_frame_has_arrived() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    assert!(!b.rx_pending());
    send_tags(&mut a, 0..1, 60);
    assert!(!b.rx_pending(), "still on the wire");
    clock.advance_micros(10);
    assert!(b.rx_pending());
    assert!(!a.rx_pending(), "nothing travels the other way");
    assert_eq!(tags(&receive_all(&mut b)), [0]);
    assert!(!b.rx_pending());
}

#[test]
fn next_arrival_micros_reports_the_earliest_frame_in_flight() {
    let (clock, mut a, mut b) = link(LinkConfig {
        latency_us: 25,
        ..LinkConfig::default()
    });
    assert_eq!(b.next_arrival_micros(), None);
    clock.set_micros(5);
    send_tags(&mut a, 0..1, 60);
    clock.set_micros(7);
    send_tags(&mut a, 1..2, 60);
    assert_eq!(b.next_arrival_micros(), Some(30));
    assert_eq!(
        a.next_arrival_micros(),
        None,
        "each port sees only frames toward it"
    );
    clock.set_micros(31);
    let mut first = Vec::new();
    b.rx_burst(1, &mut |f| first.push(tag_of(f))).unwrap();
    assert_eq!(first, [0]);
    assert_eq!(b.next_arrival_micros(), Some(32));
    clock.set_micros(32);
    assert_eq!(tags(&receive_all(&mut b)), [1]);
    assert_eq!(b.next_arrival_micros(), None);
}

#[test]
fn loss_follows_its_probability_and_keeps_order() {
    let (got, a) = run(with_faults(FaultConfig::lossy(7, 0.1, 0.0, 0.0)), 10_000);
    let lost = a.fault_counters().lost;
    assert!(
        (850..=1150).contains(&lost),
        "lost {lost} of 10000 at p=0.1"
    );
    assert_eq!(got.len() as u64, 10_000 - lost);
    assert_eq!(a.counters().tx_dropped, lost);
    assert_eq!(a.counters().tx_frames, 10_000 - lost);
    let delivered: Vec<u32> = got.iter().map(|(_, f)| tag_of(f)).collect();
    assert!(delivered.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn same_seed_same_delivery_other_seed_differs() {
    let config = |seed| LinkConfig {
        rate_bits_per_sec: Some(100_000_000),
        faults: FaultConfig {
            seed,
            loss: 0.05,
            reorder: 0.05,
            duplicate: 0.05,
            corrupt: 0.05,
        },
        ..LinkConfig::default()
    };
    let (first, a1) = run(config(1), 2_000);
    let (again, a2) = run(config(1), 2_000);
    let (other, _) = run(config(2), 2_000);
    assert_eq!(first, again);
    assert_eq!(a1.fault_counters(), a2.fault_counters());
    assert_ne!(first, other);
}

#[test]
fn the_two_directions_of_a_pair_fault_independently() {
    let (clock, mut a, mut b) = link(with_faults(FaultConfig::lossy(21, 0.5, 0.0, 0.0)));
    send_tags(&mut a, 0..64, 60);
    send_tags(&mut b, 0..64, 60);
    clock.advance_micros(10);
    let a_to_b = tags(&receive_all(&mut b));
    let b_to_a = tags(&receive_all(&mut a));
    assert_ne!(a_to_b, b_to_a);
}

#[test]
fn reordered_frames_are_overtaken() {
    let rate_limited = LinkConfig {
        rate_bits_per_sec: Some(100_000_000),
        ..with_faults(FaultConfig::lossy(11, 0.0, 0.2, 0.0))
    };
    // Zero latency and infinite rate: the minimum hold alone must still let frames pass.
    let instant = LinkConfig {
        latency_us: 0,
        ..with_faults(FaultConfig::lossy(11, 0.0, 0.2, 0.0))
    };
    for config in [rate_limited, instant] {
        let (got, a) = run(config, 1_000);
        let delivered: Vec<u32> = got.iter().map(|(_, f)| tag_of(f)).collect();
        let mut sorted = delivered.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..1_000).collect::<Vec<u32>>(),
            "none lost or added"
        );
        // A frame was overtaken if some frame sent after it was delivered before it.
        let mut highest_so_far = 0;
        let mut overtaken = 0;
        for &t in &delivered {
            if t < highest_so_far {
                overtaken += 1;
            }
            highest_so_far = highest_so_far.max(t);
        }
        let reordered = a.fault_counters().reordered;
        assert!(reordered > 100, "{config:?}: reordered {reordered}");
        assert!(
            overtaken * 10 >= reordered * 8,
            "{config:?}: {overtaken} of {reordered} held-back frames overtaken"
        );
    }
}

#[test]
fn duplicates_arrive_twice_back_to_back() {
    let (got, a) = run(with_faults(FaultConfig::lossy(5, 0.0, 0.0, 1.0)), 50);
    assert_eq!(got.len(), 100);
    for (i, pair) in got.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1]);
        assert_eq!(tag_of(&pair[0].1), i as u32);
    }
    assert_eq!(a.fault_counters().duplicated, 50);
    assert_eq!(
        a.counters().tx_frames,
        50,
        "the sender sent each frame once"
    );

    let (got, a) = run(with_faults(FaultConfig::lossy(5, 0.0, 0.0, 0.3)), 1_000);
    let duplicated = a.fault_counters().duplicated;
    assert!((200..=400).contains(&duplicated), "duplicated {duplicated}");
    assert_eq!(got.len() as u64, 1_000 + duplicated);
}

#[test]
fn corruption_flips_exactly_one_bit() {
    let (clock, mut a, mut b) = link(with_faults(FaultConfig {
        seed: 3,
        corrupt: 1.0,
        ..FaultConfig::none()
    }));
    let sent: Vec<Vec<u8>> = (0..200)
        .map(|t| tagged(t, 4 + (t as usize * 7) % 1500))
        .collect();
    send(&mut a, &sent[..100]);
    send(&mut a, &sent[100..]);
    clock.advance_micros(10);
    let got = receive_all(&mut b);
    assert_eq!(got.len(), sent.len());
    let mut flipped_bytes = HashSet::new();
    for (s, g) in sent.iter().zip(&got) {
        assert_eq!(s.len(), g.len());
        let flipped: u32 = s.iter().zip(g).map(|(x, y)| (x ^ y).count_ones()).sum();
        assert_eq!(flipped, 1);
        flipped_bytes.insert(s.iter().zip(g).position(|(x, y)| x != y));
    }
    assert!(
        flipped_bytes.len() > 100,
        "the bit is picked anywhere in the frame"
    );
    assert_eq!(a.fault_counters().corrupted, 200);
}

#[test]
fn asymmetric_directions_follow_their_own_config() {
    let clock = VirtualClock::new();
    let fast = LinkConfig {
        latency_us: 10,
        ..LinkConfig::default()
    };
    let slow_jumbo = LinkConfig {
        mtu: 9000,
        latency_us: 1_000,
        ..LinkConfig::default()
    };
    let (mut a, mut b) = MemoryLink::pair_asymmetric(fast, slow_jumbo, clock.clone());
    assert_eq!(a.capabilities().mtu, 1500);
    assert_eq!(b.capabilities().mtu, 9000);
    send_tags(&mut a, 0..1, 60);
    send_tags(&mut b, 1..2, 9014);
    assert_eq!(b.next_arrival_micros(), Some(10));
    assert_eq!(a.next_arrival_micros(), Some(1_000));
    clock.set_micros(1_000);
    assert_eq!(receive_all(&mut a)[0], tagged(1, 9014));
}

#[test]
fn a_receive_closure_may_use_the_other_port() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    send_tags(&mut a, 0..3, 60);
    clock.advance_micros(10);
    // Echo from inside B's burst through A itself: both touch the shared link state.
    b.rx_burst(usize::MAX, &mut |f| {
        assert!(a.next_arrival_micros().is_none());
        assert!(a.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(f)));
    })
    .unwrap();
    a.tx_flush().unwrap();
    clock.advance_micros(10);
    assert_eq!(tags(&receive_all(&mut b)), [0, 1, 2]);
}

#[test]
fn buffers_are_reused_in_steady_state() {
    let (clock, mut a, mut b) = link(LinkConfig::default());
    let mut buffers = HashSet::new();
    for round in 0..100u32 {
        send_tags(&mut a, round * 8..round * 8 + 8, 1514);
        clock.advance_micros(10);
        b.rx_burst(usize::MAX, &mut |f| {
            buffers.insert(f.as_ptr() as usize);
        })
        .unwrap();
    }
    assert!(
        buffers.len() <= 8,
        "{} distinct buffers for 8 in flight",
        buffers.len()
    );
}

#[test]
fn only_flushes_that_put_frames_on_the_wire_count_as_wire_time() {
    let (_clock, mut a, b) = link(LinkConfig::default());
    assert_eq!(a.wire_ns(), 0);
    // Staging is the driver's work, not the network's.
    assert!(a.tx_stage(64, &mut |buf| buf.fill(1)));
    assert_eq!(a.wire_ns(), 0);
    a.tx_flush().unwrap();
    let after_one = a.wire_ns();
    assert!(after_one > 0, "a flush of a frame takes the wire some time");
    // A flush with nothing staged hands nothing over, and the other end has sent nothing.
    a.tx_flush().unwrap();
    assert_eq!((a.wire_ns(), b.wire_ns()), (after_one, 0));
    send_tags(&mut a, 0..100, 200);
    assert!(a.wire_ns() > after_one);
}
