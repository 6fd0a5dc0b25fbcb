//! The flow table: which cell owns a TCP connection, which SYN-cache entry holds its handshake,
//! or which TIME-WAIT tombstone is left of it.
//!
//! Our port is fixed, so a flow is identified by the peer's address and port and by which of our
//! addresses it reached (an IPv4 address, a global IPv6 address, or the link-local one).
//! The table is an `ahash` map keyed from a seed given at construction (no OS reads here), so a
//! peer cannot choose 4-tuples that collide (hash flooding). Invariant: a key maps to at most
//! one cell or tombstone, and a cell (tombstone) is in the table exactly while it owns that
//! flow. Twice the largest number of entries (cells, SYN-cache entries and tombstones) is
//! reserved up front:
//! hashbrown rehashes in place, without allocating, only while at most half its capacity is in
//! use, so the headroom keeps deletions from ever forcing a reallocation.

use std::collections::HashMap;

use smoltcp::wire::IpAddress;

/// A connection to our port: the peer's address and port, and which of our addresses it
/// reached, as an index into the front end's list of them ([`crate::frontend::Locals`]; always
/// of the peer's family). An index, not the address, keeps the key at 22 bytes, so a SYN-cache
/// entry still fits in 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    pub peer_ip: IpAddress,
    pub peer_port: u16,
    pub local: u8,
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

pub(crate) struct FlowTable {
    map: HashMap<FlowKey, FlowEntry, ahash::RandomState>,
}

impl FlowTable {
    /// `keys` key the hasher, so a peer cannot choose 4-tuples that collide (hash flooding).
    pub fn new(capacity: usize, keys: [u64; 4]) -> Self {
        let [k0, k1, k2, k3] = keys;
        let hasher = ahash::RandomState::with_seeds(k0, k1, k2, k3);
        FlowTable {
            map: HashMap::with_capacity_and_hasher(capacity.saturating_mul(2), hasher),
        }
    }

    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.map.get(key).copied()
    }

    pub fn insert(&mut self, key: FlowKey, entry: FlowEntry) {
        self.map.insert(key, entry);
    }

    pub fn remove(&mut self, key: &FlowKey) {
        self.map.remove(key);
    }

    /// Removes `key` only if it still maps to `entry`.
    pub fn remove_if(&mut self, key: &FlowKey, entry: FlowEntry) {
        if self.map.get(key) == Some(&entry) {
            self.map.remove(key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
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
        assert_ne!(a.map.hasher().hash_one(key), b.map.hasher().hash_one(key));
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
}
