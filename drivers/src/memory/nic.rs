//! A multi-queue NIC in memory: one client end, and one server end per receive queue, with the
//! client's frames steered among the queues by RSS ([`Rss`]), as a real NIC steers them among
//! its rings. Each queue end is an ordinary [`MemoryPort`], so one engine (a `Server`) runs on
//! each queue unchanged.
//!
//! Owns [`MemoryLink::rss_nic`] and [`RssNic`]. The model, in the terms of the parent module:
//!
//! - **Client → NIC** is one direction: one wire (the client's cable: its rate and latency),
//!   one fault stream, and one inbox per queue, each bounded by the direction's `queue_limit`
//!   like a NIC's receive ring. A frame goes to the queue [`Rss::queue_for_frame`] names.
//! - **NIC → client** is one direction shared by every queue port: the NIC has one port, so
//!   the queues' frames serialize on one wire and draw their faults from one stream, in the
//!   order the queues flush. The client receives them merged, in arrival order.
//! - Counters stay per port: each queue's [`DriverCounters`](crate::DriverCounters) and
//!   fault counters are that queue's.
//!
//! With one queue the NIC is exactly [`MemoryLink::pair`] (queue as `a`, client as `b`): same
//! seeds, same timing, same frames.

use std::rc::Rc;

use super::{LinkConfig, MemoryLink, MemoryPort, Route, SharedLink};
use crate::clock::VirtualClock;
use crate::rss::Rss;

/// The ports of a multi-queue memory NIC.
#[derive(Debug)]
pub struct RssNic {
    /// One port per receive queue, in queue order: where the engines run.
    pub queues: Vec<MemoryPort>,
    /// The other end of the cable: where the clients run.
    pub client: MemoryPort,
}

/// Direction of the frames every queue sends.
const TO_CLIENT: usize = 0;
/// Direction of the frames the client sends.
const TO_QUEUES: usize = 1;

impl MemoryLink {
    /// A NIC with `rss.queues()` queues and `config` in both directions. Frames toward the
    /// client draw their faults from `config.faults.seed` and frames toward the queues from its
    /// bitwise complement, as [`MemoryLink::pair`] does with the queues as end A.
    pub fn rss_nic(config: LinkConfig, rss: Rss, clock: VirtualClock) -> RssNic {
        let mut to_queues = config;
        to_queues.faults.seed = !config.faults.seed;
        Self::rss_nic_asymmetric(config, to_queues, rss, clock)
    }

    /// A NIC whose queues send with `to_client` and whose client sends with `to_queues`.
    pub fn rss_nic_asymmetric(
        to_client: LinkConfig,
        to_queues: LinkConfig,
        rss: Rss,
        clock: VirtualClock,
    ) -> RssNic {
        let queue_count = rss.queues();
        let client_end = queue_count;
        let shared = SharedLink::new(queue_count + 1, [to_client, to_queues]);
        let queues = (0..queue_count)
            .map(|queue| {
                MemoryPort::new(
                    queue,
                    TO_CLIENT,
                    Route::To(client_end),
                    &to_client,
                    Rc::clone(&shared),
                    clock.clone(),
                )
            })
            .collect();
        let steered = Route::Steered {
            first: 0,
            rss: Box::new(rss),
        };
        let client = MemoryPort::new(client_end, TO_QUEUES, steered, &to_queues, shared, clock);
        RssNic { queues, client }
    }
}

impl MemoryPort {
    /// The RSS configuration this port steers its frames with: `Some` for the client end of
    /// an [`RssNic`], `None` for every other port.
    pub fn steering(&self) -> Option<&Rss> {
        match &self.route {
            Route::Steered { rss, .. } => Some(rss),
            Route::To(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::FaultConfig;
    use super::*;
    use crate::FrameIo;

    /// An Ethernet + IPv4 + TCP frame (headers only, then `pad` bytes) from client port
    /// `port` to 198.18.0.1:80; the first padding bytes carry `port` again, as a tag.
    fn tcp_frame(port: u16, pad: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + pad.max(2)];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        let ip_len = u16::try_from(f.len() - 14).unwrap();
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[14 + 9] = 6;
        f[26..30].copy_from_slice(&[198, 19, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 1]);
        f[34..36].copy_from_slice(&port.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[54..56].copy_from_slice(&port.to_be_bytes());
        f
    }

    fn tag(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[54], frame[55]])
    }

    fn send(port: &mut MemoryPort, frames: &[Vec<u8>]) {
        for f in frames {
            assert!(port.tx_stage(f.len(), &mut |buf| buf.copy_from_slice(f)));
        }
        port.tx_flush().unwrap();
    }

    /// Everything `port` receives from now until nothing is left in flight toward it, with the
    /// virtual time each frame was received at.
    fn drain(clock: &VirtualClock, port: &mut MemoryPort) -> Vec<(u64, Vec<u8>)> {
        let mut got = Vec::new();
        while let Some(at) = port.next_arrival_micros() {
            clock.set_micros(at);
            let now = clock.now_micros();
            port.rx_burst(usize::MAX, &mut |f| got.push((now, f.to_vec())))
                .unwrap();
        }
        got
    }

    #[test]
    fn client_frames_reach_the_queue_their_hash_names() {
        let clock = VirtualClock::new();
        let rss = Rss::new(4);
        let mut nic = MemoryLink::rss_nic(LinkConfig::default(), rss.clone(), clock.clone());
        assert_eq!(nic.queues.len(), 4);
        assert_eq!(nic.client.steering(), Some(&rss));
        assert!(nic.queues.iter().all(|q| q.steering().is_none()));
        let frames: Vec<Vec<u8>> = (40_000..40_200).map(|p| tcp_frame(p, 10)).collect();
        // Tagged after every TCP frame, so each queue's tags still rise in send order.
        let mut arp = tcp_frame(65_000, 10);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        send(&mut nic.client, &frames);
        send(&mut nic.client, &[arp]);
        let mut total = 0;
        for (i, queue) in nic.queues.iter_mut().enumerate() {
            let got = drain(&clock, queue);
            assert!(got.len() >= 20, "queue {i} got {} of 201", got.len());
            for (_, frame) in &got {
                assert_eq!(rss.queue_for_frame(frame), i, "port {}", tag(frame));
            }
            // Each queue gets its frames in the order they were sent.
            let tags: Vec<u16> = got.iter().map(|(_, f)| tag(f)).collect();
            let mut sorted = tags.clone();
            sorted.sort_unstable();
            assert_eq!(tags, sorted, "queue {i}");
            assert_eq!(queue.counters().rx_frames, got.len() as u64);
            total += got.len();
        }
        assert_eq!(total, 201);
        assert_eq!(nic.client.counters().tx_frames, 201);
    }

    #[test]
    fn non_ip_frames_go_to_queue_zero() {
        let clock = VirtualClock::new();
        let mut nic = MemoryLink::rss_nic(LinkConfig::default(), Rss::new(3), clock.clone());
        let mut arp = tcp_frame(7, 10);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        send(&mut nic.client, &[arp.clone(), arp.clone(), arp]);
        assert_eq!(drain(&clock, &mut nic.queues[0]).len(), 3);
        assert!(drain(&clock, &mut nic.queues[1]).is_empty());
        assert!(drain(&clock, &mut nic.queues[2]).is_empty());
    }

    #[test]
    fn queues_share_one_wire_toward_the_client_and_merge_in_arrival_order() {
        let clock = VirtualClock::new();
        // 8 Mbit/s: a 1000-byte frame takes 1000 µs on the wire.
        let config = LinkConfig {
            rate_bits_per_sec: Some(8_000_000),
            latency_us: 50,
            ..LinkConfig::default()
        };
        let mut nic = MemoryLink::rss_nic(config, Rss::new(2), clock.clone());
        let big = |t: u16| tcp_frame(t, 1000 - 54);
        send(&mut nic.queues[1], &[big(1)]);
        send(&mut nic.queues[0], &[big(2), big(3)]);
        let got = drain(&clock, &mut nic.client);
        let seen: Vec<(u64, u16)> = got.iter().map(|(at, f)| (*at, tag(f))).collect();
        assert_eq!(seen, [(1050, 1), (2050, 2), (3050, 3)]);
        assert_eq!(nic.queues[0].counters().tx_frames, 2);
        assert_eq!(nic.queues[1].counters().tx_frames, 1);
        assert_eq!(nic.client.counters().rx_frames, 3);
    }

    #[test]
    fn each_queue_ring_has_its_own_limit() {
        let clock = VirtualClock::new();
        let config = LinkConfig {
            queue_limit: 5,
            ..LinkConfig::default()
        };
        let rss = Rss::new(2);
        let mut nic = MemoryLink::rss_nic(config, rss.clone(), clock.clone());
        let mut by_queue = [Vec::new(), Vec::new()];
        for port in 50_000..50_100 {
            let frame = tcp_frame(port, 10);
            let queue = rss.queue_for_frame(&frame);
            if by_queue[queue].len() < 8 {
                by_queue[queue].push(frame);
            }
        }
        send(&mut nic.client, &by_queue[0]);
        send(&mut nic.client, &by_queue[1]);
        // Eight frames for each ring of five: three tail-dropped per queue, not six from one.
        assert_eq!(nic.client.fault_counters().queue_dropped, 6);
        assert_eq!(nic.client.counters().tx_dropped, 6);
        assert_eq!(drain(&clock, &mut nic.queues[0]).len(), 5);
        assert_eq!(drain(&clock, &mut nic.queues[1]).len(), 5);
    }

    #[test]
    fn one_queue_is_the_plain_pair_bit_for_bit() {
        let config = LinkConfig {
            rate_bits_per_sec: Some(100_000_000),
            faults: FaultConfig::lossy(9, 0.1, 0.1, 0.1),
            ..LinkConfig::default()
        };
        let run = |mut server: MemoryPort, mut client: MemoryPort, clock: VirtualClock| {
            let mut log = Vec::new();
            for round in 0..20u16 {
                let frames: Vec<Vec<u8>> =
                    (0..10).map(|i| tcp_frame(round * 10 + i, 300)).collect();
                send(&mut client, &frames);
                send(&mut server, &frames);
                log.extend(drain(&clock, &mut server));
                log.extend(drain(&clock, &mut client));
            }
            (log, server.fault_counters(), client.fault_counters())
        };
        let clock = VirtualClock::new();
        let (a, b) = MemoryLink::pair(config, clock.clone());
        let paired = run(a, b, clock);
        let clock = VirtualClock::new();
        let mut nic = MemoryLink::rss_nic(config, Rss::new(1), clock.clone());
        let queue = nic.queues.pop().unwrap();
        let via_nic = run(queue, nic.client, clock);
        assert!(paired.1.lost > 0 && paired.2.reordered > 0, "{paired:?}");
        assert_eq!(paired, via_nic);
    }
}
