//! TIME-WAIT tombstones: what is left of a connection we closed first, once its cell is free.
//!
//! smoltcp holds TIME-WAIT in the socket for 10 s, which would pin a whole cell (its buffers
//! included) per recently closed connection. Instead the stack frees the cell and keeps a
//! tombstone of a few dozen bytes: the flow, our next sequence number, the peer's (just past
//! its FIN), the peer's MAC and an expiry. The flow table points at it, so the stack can still
//! answer a retransmitted FIN (RFC 9293 §3.10.7.4) and recognise old segments of the flow.
//!
//! Tombstones all live for the same duration, so they sit in a fixed ring in expiry order:
//! expiring is popping the front, and when the ring is full the oldest is evicted early (as
//! Linux does past `tcp_max_tw_buckets`), which is counted. Invariants: the ring never
//! allocates after construction; a slot's `live` is true exactly while the flow table points
//! at it; slots are addressed by a position that is never reused while the flow table could
//! still name it (a stale position finds `live == false` or another key).

use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, TcpSeqNumber};

use crate::flow::FlowKey;

/// One closed connection in TIME-WAIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tombstone {
    pub key: FlowKey,
    pub peer_mac: EthernetAddress,
    /// Our SND.NXT: just past our FIN.
    pub snd_nxt: TcpSeqNumber,
    /// Our RCV.NXT: just past the peer's FIN.
    pub rcv_nxt: TcpSeqNumber,
    pub expires: Instant,
    pub live: bool,
}

pub(crate) struct Tombstones {
    ring: Vec<Tombstone>,
    /// Position of the oldest entry.
    head: usize,
    len: usize,
}

impl Tombstones {
    /// Room for `capacity` tombstones, allocated now. A capacity of 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        let blank = Tombstone {
            key: FlowKey::BLANK,
            peer_mac: EthernetAddress([0; 6]),
            snd_nxt: TcpSeqNumber(0),
            rcv_nxt: TcpSeqNumber(0),
            expires: Instant::ZERO,
            live: false,
        };
        Tombstones {
            ring: vec![blank; capacity],
            head: 0,
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == self.ring.len()
    }

    /// Appends a tombstone; returns its slot. The caller makes room first (see
    /// [`Tombstones::pop_oldest`]). `None` if there is no room (or no capacity at all).
    pub fn push(&mut self, tombstone: Tombstone) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let slot = (self.head + self.len) % self.ring.len();
        *self.ring.get_mut(slot)? = tombstone;
        self.len += 1;
        u32::try_from(slot).ok()
    }

    /// Removes the oldest tombstone if it has expired at `now` (or at once with `force`),
    /// returning it so the caller can drop its flow-table entry if still live.
    pub fn pop_oldest(&mut self, now: Instant, force: bool) -> Option<Tombstone> {
        if self.len == 0 {
            return None;
        }
        let oldest = *self.ring.get(self.head)?;
        if !force && oldest.expires > now {
            return None;
        }
        if let Some(slot) = self.ring.get_mut(self.head) {
            slot.live = false;
        }
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        Some(oldest)
    }

    pub fn get(&self, slot: u32) -> Option<&Tombstone> {
        self.ring.get(slot as usize).filter(|t| t.live)
    }

    /// Marks a slot dead (the flow was taken over by a new connection or re-pushed).
    pub fn kill(&mut self, slot: u32) {
        if let Some(t) = self.ring.get_mut(slot as usize) {
            t.live = false;
        }
    }

    /// Tombstones in the ring, dead ones waiting for their turn included.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv4Address;

    fn stone(port: u16, expires_ms: i64) -> Tombstone {
        Tombstone {
            key: FlowKey {
                peer_ip: Ipv4Address::new(198, 18, 0, 2).into(),
                peer_port: port,
                local: 0,
            },
            peer_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            snd_nxt: TcpSeqNumber(1),
            rcv_nxt: TcpSeqNumber(2),
            expires: Instant::from_millis(expires_ms),
            live: true,
        }
    }

    #[test]
    fn expire_in_order_and_refuse_when_full() {
        let mut t = Tombstones::new(2);
        let a = t.push(stone(1, 10)).unwrap();
        let b = t.push(stone(2, 20)).unwrap();
        assert!(t.push(stone(3, 30)).is_none());
        assert_eq!(t.get(a).unwrap().key.peer_port, 1);
        assert!(t.pop_oldest(Instant::from_millis(9), false).is_none());
        assert_eq!(
            t.pop_oldest(Instant::from_millis(10), false)
                .unwrap()
                .key
                .peer_port,
            1
        );
        assert!(t.get(a).is_none(), "expired slot is dead");
        t.kill(b);
        assert!(t.get(b).is_none());
        let c = t.push(stone(3, 30)).unwrap();
        assert_eq!(c, a, "the ring reuses the expired slot");
        assert_eq!(t.len(), 2);
        assert!(!t.pop_oldest(Instant::from_millis(0), true).unwrap().live);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut t = Tombstones::new(0);
        assert!(t.is_full());
        assert!(t.push(stone(1, 1)).is_none());
        assert!(t.pop_oldest(Instant::from_millis(5), true).is_none());
    }
}
