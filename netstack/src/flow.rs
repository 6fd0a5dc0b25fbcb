//! The flow table: which cell owns a TCP connection, which SYN-cache entry holds its handshake,
//! or which TIME-WAIT tombstone is left of it.
//!
//! Our port is fixed, so a flow is identified by the peer's address and port and by which of our
//! addresses it reached (an IPv4 address, a global IPv6 address, or the link-local one).
//! The table is keyed by an `ahash` hasher seeded at construction (no OS reads here), so a
//! peer cannot choose 4-tuples that collide (hash flooding). Invariant: a key maps to at most
//! one cell or tombstone, and a cell (tombstone) is in the table exactly while it owns that
//! flow.
//!
//! Layout: one flat array of 32-byte slots, key and entry side by side, two to a cache line,
//! with linear probing and backward-shift deletion (no deletion markers, so probe lengths stay
//! those of the live entries). At 100,000 connections the table is far larger than the caches,
//! and a lookup is one cache miss, where `hashbrown` (control bytes in one array, buckets in
//! another) takes two dependent ones. Twice the largest number of entries (cells, SYN-cache
//! entries and tombstones) is reserved up front, rounded up to a power of two, so the load
//! stays at most one half and a probe ends at an empty slot within a slot or two on average;
//! the table only grows (doubles, allocating) if ever asked to hold more than that.

use std::hash::{Hash, Hasher};

use smoltcp::wire::IpAddress;

use crate::Prefetch;

/// A connection to our port: the peer's address and port, and which of our addresses it
/// reached, as an index into the front end's list of them ([`crate::frontend::Locals`]; always
/// of the peer's family). An index, not the address, keeps the key at 22 bytes, so a SYN-cache
/// entry still fits in 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub peer_ip: IpAddress,
    pub peer_port: u16,
    pub local: u8,
}

/// Hashed as two words (the address, then family, port and local index together) rather
/// than field by field: a lookup hashes every received frame's key, twice with the look-ahead.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (family, addr) = match self.peer_ip {
            IpAddress::Ipv4(a) => (4u32, u128::from(u32::from_be_bytes(a.octets()))),
            IpAddress::Ipv6(a) => (6u32, u128::from_be_bytes(a.octets())),
        };
        state.write_u128(addr);
        state.write_u32(family << 24 | u32::from(self.peer_port) << 8 | u32::from(self.local));
    }
}

impl FlowKey {
    /// A key that matches no real flow (unspecified address, port 0), for blank slots.
    pub const BLANK: FlowKey = FlowKey {
        peer_ip: IpAddress::Ipv4(smoltcp::wire::Ipv4Address::UNSPECIFIED),
        peer_port: 0,
        local: 0,
    };
}

/// What a flow maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowEntry {
    /// A live connection, by cell index.
    Cell(u32),
    /// A connection in TIME-WAIT, by tombstone slot.
    Tombstone(u32),
    /// A half-open connection in the SYN cache, by slot.
    Pending(u32),
}

/// One slot: a key and, if the slot is in use, what it maps to.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FlowKey,
    entry: Option<FlowEntry>,
}

const EMPTY: Slot = Slot {
    key: FlowKey::BLANK,
    entry: None,
};

/// Two slots in one cache line, so no slot straddles two lines.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([Slot; 2]);

pub(crate) struct FlowTable {
    lines: Vec<Line>,
    /// Slots − 1 (a power of two minus one).
    mask: usize,
    len: usize,
    hasher: ahash::RandomState,
}

impl FlowTable {
    /// `keys` key the hasher, so a peer cannot choose 4-tuples that collide (hash flooding).
    pub fn new(capacity: usize, keys: [u64; 4]) -> Self {
        let [k0, k1, k2, k3] = keys;
        let hasher = ahash::RandomState::with_seeds(k0, k1, k2, k3);
        let slots = capacity.saturating_mul(2).max(4).next_power_of_two();
        FlowTable {
            lines: vec![Line([EMPTY; 2]); slots / 2],
            mask: slots - 1,
            len: 0,
            hasher,
        }
    }

    fn home(&self, key: &FlowKey) -> usize {
        self.home_of(self.hash(key))
    }

    /// The key's hash, for [`FlowTable::prefetch`] and [`FlowTable::get_hashed`].
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    fn home_of(&self, hash: u64) -> usize {
        // Truncating the hash is the point: its low bits pick the slot.
        (hash as usize) & self.mask
    }

    /// Hints the cache line where a lookup of the key with this hash starts.
    pub fn prefetch(&self, hash: u64, prefetch: Prefetch) {
        prefetch(
            std::ptr::from_ref(&self.lines[self.home_of(hash) >> 1]).cast(),
            1,
        );
    }

    /// [`FlowTable::get`] with the key's hash already at hand.
    pub fn get_hashed(&self, key: &FlowKey, hash: u64) -> Option<FlowEntry> {
        self.find_from(key, self.home_of(hash)).1
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.lines[i >> 1].0[i & 1]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.lines[i >> 1].0[i & 1]
    }

    /// Where `key` is, or the empty slot that ends its probe.
    fn find(&self, key: &FlowKey) -> (usize, Option<FlowEntry>) {
        self.find_from(key, self.home(key))
    }

    fn find_from(&self, key: &FlowKey, home: usize) -> (usize, Option<FlowEntry>) {
        let mut i = home;
        loop {
            let slot = self.slot(i);
            match slot.entry {
                None => return (i, None),
                Some(entry) if slot.key == *key => return (i, Some(entry)),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.find(key).1
    }

    pub fn insert(&mut self, key: FlowKey, entry: FlowEntry) {
        let (i, old) = self.find(&key);
        *self.slot_mut(i) = Slot {
            key,
            entry: Some(entry),
        };
        if old.is_none() {
            self.len += 1;
            if self.len * 2 > self.mask + 1 {
                self.grow();
            }
        }
    }

    pub fn remove(&mut self, key: &FlowKey) {
        if let (i, Some(_)) = self.find(key) {
            self.remove_at(i);
        }
    }

    /// Removes `key` only if it still maps to `entry`.
    pub fn remove_if(&mut self, key: &FlowKey, entry: FlowEntry) {
        if let (i, Some(found)) = self.find(key)
            && found == entry
        {
            self.remove_at(i);
        }
    }

    /// Empties slot `hole` and shifts back every entry of the run after it that may move
    /// there (one whose home is not between the hole and itself), so that no probe for a key
    /// still in the table crosses an empty slot before reaching it.
    fn remove_at(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let slot = *self.slot(j);
            if slot.entry.is_none() {
                break;
            }
            let home = self.home(&slot.key);
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                *self.slot_mut(hole) = slot;
                hole = j;
            }
        }
        *self.slot_mut(hole) = EMPTY;
        self.len -= 1;
    }

    /// Doubles the slots and re-inserts everything: only past the capacity reserved up front.
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.lines);
        let slots = (self.mask + 1) * 2;
        self.lines = vec![Line([EMPTY; 2]); slots / 2];
        self.mask = slots - 1;
        self.len = 0;
        for slot in old.iter().flat_map(|line| line.0) {
            if let Some(entry) = slot.entry {
                self.insert(slot.key, entry);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    #[test]
    fn insert_get_remove() {
        let mut t = FlowTable::new(4, [1, 2, 3, 4]);
        let a = FlowKey {
            peer_ip: IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 2)),
            peer_port: 40000,
            local: 0,
        };
        let b = FlowKey {
            peer_port: 40001,
            ..a
        };
        t.insert(a, FlowEntry::Cell(1));
        t.insert(b, FlowEntry::Tombstone(2));
        assert_eq!(t.get(&a), Some(FlowEntry::Cell(1)));
        assert_eq!(t.get(&b), Some(FlowEntry::Tombstone(2)));
        t.remove(&a);
        assert_eq!(t.get(&a), None);
        t.remove_if(&b, FlowEntry::Tombstone(3));
        assert_eq!(t.len(), 1, "a different entry is kept");
        t.remove_if(&b, FlowEntry::Tombstone(2));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn different_keys_hash_the_same_flow_differently() {
        let key = FlowKey {
            peer_ip: IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 1)),
            peer_port: 40000,
            local: 0,
        };
        let a = FlowTable::new(1, [1, 2, 3, 4]);
        let b = FlowTable::new(1, [5, 6, 7, 8]);
        assert_ne!(a.hasher.hash_one(key), b.hasher.hash_one(key));
    }

    #[test]
    fn the_same_peer_on_two_of_our_addresses_is_two_flows() {
        let mut t = FlowTable::new(4, [1, 2, 3, 4]);
        let peer = IpAddress::Ipv6(Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 1));
        let global = FlowKey {
            peer_ip: peer,
            peer_port: 40000,
            local: 1,
        };
        let other = FlowKey { local: 2, ..global };
        t.insert(global, FlowEntry::Cell(1));
        t.insert(other, FlowEntry::Cell(2));
        assert_eq!(t.get(&global), Some(FlowEntry::Cell(1)));
        assert_eq!(t.get(&other), Some(FlowEntry::Cell(2)));
    }

    #[test]
    fn a_slot_is_half_a_cache_line() {
        assert!(std::mem::size_of::<Slot>() <= 32);
        assert_eq!(std::mem::size_of::<Line>(), 64);
    }

    fn key(n: u32) -> FlowKey {
        let [a, b, c, d] = n.to_be_bytes();
        FlowKey {
            peer_ip: IpAddress::Ipv4(Ipv4Address::new(10, b, c, d)),
            peer_port: 1024 + u16::from(a),
            local: 0,
        }
    }

    /// Inserts and removes in a pseudo-random order against a `HashMap`, in a table small
    /// enough that probe runs collide and wrap around, and past its reserved capacity so it
    /// grows: every key still present is found, every removed one is not.
    #[test]
    fn matches_a_hash_map_through_collisions_removals_and_growth() {
        let mut t = FlowTable::new(8, [9, 8, 7, 6]);
        let mut model = std::collections::HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Up to 48 keys live at once: more than the 16 slots made at first.
            let k = key((x % 48) as u32);
            match x % 5 {
                0 | 1 => {
                    t.insert(k, FlowEntry::Cell(step % 4));
                    model.insert(k, FlowEntry::Cell(step % 4));
                }
                2 => {
                    t.remove(&k);
                    model.remove(&k);
                }
                3 => {
                    let e = FlowEntry::Cell((x >> 8) as u32 % 4);
                    t.remove_if(&k, e);
                    if model.get(&k) == Some(&e) {
                        model.remove(&k);
                    }
                }
                _ => {}
            }
            assert_eq!(t.len(), model.len(), "step {step}");
            if step % 64 == 0 {
                for n in 0..48 {
                    assert_eq!(
                        t.get(&key(n)),
                        model.get(&key(n)).copied(),
                        "step {step} key {n}"
                    );
                }
            }
        }
        assert!(t.mask + 1 > 16, "the table grew");
    }
}
