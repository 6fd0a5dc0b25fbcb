//! The SYN cache (RFC 4987 §3.4): half-open connections, held in a few dozen bytes each
//! instead of a cell.
//!
//! The front end answers a SYN itself: it remembers the handshake here (the peer's options
//! exactly, our ISN, the peer's MAC) and sends the SYN-ACK, again on Linux's schedule (after 1,
//! 2, 4, 8 and 16 s more) until the final ACK comes or the handshake times out. A cell is taken
//! only when that ACK validates. When the cache is full, a SYN is answered from nothing but its
//! SYN cookie (`cookie.rs`): every SYN-ACK's ISN is a cookie anyway, so an ACK still opens its
//! connection after the entry is gone.
//!
//! Invariants: the slots are allocated once (`capacity` of them) and recycled through a free
//! list; an entry is in the flow table exactly while it is live; every live entry has exactly
//! one deadline in the cache's own timer wheel (its next SYN-ACK, or its expiry). Entries all
//! live the same `handshake_timeout`, so the oldest always goes first.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, TcpSeqNumber};

use crate::cookie::SynOptions;
use crate::flow::FlowKey;
use crate::timers::TimerWheel;

/// The first SYN-ACK retransmission timeout: RFC 6298 (2.1)'s initial RTO, Linux's
/// `TCP_TIMEOUT_INIT`. It doubles after each.
const SYNACK_RTO: Duration = Duration::from_secs(1);

/// One half-open connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub key: FlowKey,
    pub peer_mac: EthernetAddress,
    /// The peer's ISN (its SYN's sequence number).
    pub peer_isn: TcpSeqNumber,
    /// Ours (the SYN-ACK's), a cookie.
    pub isn: TcpSeqNumber,
    /// The options of the peer's SYN, exactly.
    pub options: SynOptions,
    /// SYN-ACKs sent so far, the first included.
    pub synacks: u8,
    /// When the SYN arrived.
    pub created: Instant,
    /// When the last SYN-ACK went.
    pub sent: Instant,
}

pub(crate) struct SynCache {
    slots: Vec<Option<Pending>>,
    free: Vec<u32>,
    timers: TimerWheel,
}

/// What a due deadline of the cache asks for.
pub(crate) enum Due {
    /// Send the SYN-ACK of this entry again (its counters are already updated).
    Resend(Pending),
    /// The handshake timed out; the entry is gone.
    Expired(Pending),
}

impl SynCache {
    pub fn new(capacity: usize, now: Instant) -> Self {
        SynCache {
            slots: vec![None; capacity],
            // Reversed, so slot 0 goes first.
            free: (0..capacity as u32).rev().collect(),
            timers: TimerWheel::new(capacity, now),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn get(&self, slot: u32) -> Option<&Pending> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Remembers a handshake whose first SYN-ACK goes now. `None` when the cache is full.
    pub fn insert(&mut self, entry: Pending) -> Option<u32> {
        let slot = self.free.pop()?;
        let place = self.slots.get_mut(slot as usize)?;
        *place = Some(entry);
        self.timers.arm(slot, entry.sent + SYNACK_RTO);
        Some(slot)
    }

    /// Forgets an entry (its handshake completed, or the peer reset it).
    pub fn remove(&mut self, slot: u32) -> Option<Pending> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        self.timers.cancel(slot);
        self.free.push(slot);
        Some(entry)
    }

    /// Notes that the SYN-ACK of `slot` was sent again now (for a retransmitted SYN).
    pub fn resent(&mut self, slot: u32, now: Instant) {
        if let Some(Some(entry)) = self.slots.get_mut(slot as usize) {
            entry.synacks = entry.synacks.saturating_add(1);
            entry.sent = now;
        }
    }

    /// The next due deadline, if any: a SYN-ACK to send again, or an entry that timed out
    /// after `timeout` (and is removed here, with its slot freed).
    pub fn pop_due(&mut self, now: Instant, timeout: Duration) -> Option<(u32, Due)> {
        loop {
            let slot = self.timers.pop_due(now)?;
            let Some(Some(entry)) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            let expires = entry.created + timeout;
            if now >= expires {
                let entry = *entry;
                self.remove(slot);
                return Some((slot, Due::Expired(entry)));
            }
            // The n-th SYN-ACK goes 1, 2, 4... s after the one before (1, 3, 7, 15, 31 s after
            // the SYN); the entry expires `timeout` after the SYN.
            entry.synacks = entry.synacks.saturating_add(1);
            entry.sent = now;
            let next = now + SYNACK_RTO * (1u32 << entry.synacks.min(16).saturating_sub(1));
            let entry = *entry;
            self.timers.arm(slot, next.min(expires));
            return Some((slot, Due::Resend(entry)));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.timers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv4Address;

    fn pending(port: u16, now: Instant) -> Pending {
        Pending {
            key: FlowKey {
                peer_ip: Ipv4Address::new(198, 18, 0, 2).into(),
                peer_port: port,
                local: 0,
            },
            peer_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            peer_isn: TcpSeqNumber(1),
            isn: TcpSeqNumber(2),
            options: SynOptions {
                mss: 1460,
                wscale: Some(7),
                sack: true,
            },
            synacks: 1,
            created: now,
            sent: now,
        }
    }

    #[test]
    fn an_entry_fits_in_64_bytes() {
        assert!(std::mem::size_of::<Option<Pending>>() <= 64);
    }

    #[test]
    fn synacks_go_on_linux_schedule_then_the_entry_expires() {
        let t0 = Instant::from_secs(10);
        let mut cache = SynCache::new(4, t0);
        let slot = cache.insert(pending(1, t0)).unwrap();
        let timeout = Duration::from_secs(63);
        let mut resent = vec![];
        let mut now = t0;
        let expired = loop {
            now += Duration::from_millis(10);
            match cache.pop_due(now, timeout) {
                Some((s, Due::Resend(entry))) => {
                    assert_eq!(s, slot);
                    resent.push(((now - t0).total_millis() + 5) / 1000);
                    assert_eq!(entry.sent, now);
                }
                Some((_, Due::Expired(entry))) => break (now - entry.created).total_millis(),
                None => {}
            }
        };
        assert_eq!(resent, vec![1, 3, 7, 15, 31]);
        assert!((63_000..63_100).contains(&expired), "{expired}");
        assert_eq!(cache.len(), 0);
        assert!(cache.get(slot).is_none());
    }

    #[test]
    fn a_full_cache_refuses_and_a_freed_slot_is_reused() {
        let t0 = Instant::ZERO;
        let mut cache = SynCache::new(2, t0);
        let a = cache.insert(pending(1, t0)).unwrap();
        let _b = cache.insert(pending(2, t0)).unwrap();
        assert!(cache.insert(pending(3, t0)).is_none());
        assert_eq!(cache.remove(a).map(|e| e.key.peer_port), Some(1));
        assert!(cache.remove(a).is_none());
        let c = cache.insert(pending(3, t0)).unwrap();
        assert_eq!(c, a);
        assert_eq!(cache.len(), 2);
        // A removed entry's timer is gone with it: only the other two fire.
        let mut fired = 0;
        let mut now = t0;
        while now < Instant::from_secs(2) {
            now += Duration::from_millis(100);
            while cache.pop_due(now, Duration::from_secs(63)).is_some() {
                fired += 1;
            }
        }
        assert_eq!(fired, 2);
    }
}
