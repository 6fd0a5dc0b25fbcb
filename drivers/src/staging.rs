//! [`StagingRing`]: the one TX staging ring of the backends whose transmit is a copy out of
//! process memory (tap's `write`, pcap's file writer).
//!
//! The other backends stage into memory that is already the kernel's or the peer's, so they
//! have no ring of their own to share this one with:
//!
//! - AF_XDP stages straight into UMEM chunks and claims slots on the kernel's TX ring
//!   (`afxdp::queue`); netmap writes into the slots of the NIC's TX ring (`netmap`).
//! - The memory link stages whole `Vec<u8>` frames from its pool, because a flush hands each
//!   frame over to the receiving end's inbox by moving it; a ring of fixed slots would mean a
//!   copy per frame there.

use crate::DriverCounters;

/// A fixed ring of preallocated transmit buffers: frames are staged at the tail and sent from
/// the head, so a partial flush keeps the rest in order. No allocation after [`StagingRing::new`].
pub(crate) struct StagingRing {
    buf: Box<[u8]>,
    lens: Box<[usize]>,
    slot_len: usize,
    head: usize,
    staged: usize,
}

impl std::fmt::Debug for StagingRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagingRing")
            .field("slots", &self.lens.len())
            .field("slot_len", &self.slot_len)
            .field("head", &self.head)
            .field("staged", &self.staged)
            .finish()
    }
}

impl StagingRing {
    /// `slots` buffers of `slot_len` bytes each.
    pub(crate) fn new(slots: usize, slot_len: usize) -> Self {
        StagingRing {
            buf: vec![0; slots * slot_len].into_boxed_slice(),
            lens: vec![0; slots].into_boxed_slice(),
            slot_len,
            head: 0,
            staged: 0,
        }
    }

    pub(crate) fn room(&self) -> usize {
        self.lens.len() - self.staged
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.staged == 0
    }

    /// Lends the next free slot, cut to `len` bytes, to `fill`. Returns `false` without calling
    /// `fill` if the ring is full or `len` exceeds the slot size.
    /// [`FrameIo::tx_stage`] for a backend whose TX is this ring: a frame over `max_frame_len`
    /// counts as `tx_dropped`, a full ring as `tx_ring_full`.
    pub(crate) fn stage_counted(
        &mut self,
        counters: &mut DriverCounters,
        max_frame_len: usize,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        if len > max_frame_len {
            counters.tx_dropped += 1;
            return false;
        }
        if !self.stage(len, fill) {
            counters.tx_ring_full += 1;
            return false;
        }
        true
    }

    pub(crate) fn stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        if self.room() == 0 || len > self.slot_len {
            return false;
        }
        let slot = (self.head + self.staged) % self.lens.len();
        let start = slot * self.slot_len;
        let Some(buf) = self.buf.get_mut(start..start + len) else {
            return false;
        };
        fill(buf);
        self.lens[slot] = len;
        self.staged += 1;
        true
    }

    /// The oldest staged frame.
    pub(crate) fn front(&self) -> Option<&[u8]> {
        if self.staged == 0 {
            return None;
        }
        let start = self.head * self.slot_len;
        self.buf.get(start..start + self.lens[self.head])
    }

    /// Forgets the oldest staged frame (sent or dropped).
    pub(crate) fn pop_front(&mut self) {
        if self.staged > 0 {
            self.head = (self.head + 1) % self.lens.len();
            self.staged -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_ring_keeps_order_across_partial_drains_and_wraps() {
        let mut ring = StagingRing::new(3, 8);
        assert_eq!(ring.room(), 3);
        for i in 0..3u8 {
            assert!(ring.stage(usize::from(i) + 1, &mut |b| b.fill(i)));
        }
        assert!(!ring.stage(1, &mut |_| panic!("full ring must not call fill")));
        assert_eq!(ring.front(), Some(&[0u8][..]));
        ring.pop_front();
        assert!(ring.stage(4, &mut |b| b.fill(9)));
        let mut seen = Vec::new();
        while let Some(frame) = ring.front() {
            seen.push(frame.to_vec());
            ring.pop_front();
        }
        assert_eq!(seen, vec![vec![1; 2], vec![2; 3], vec![9; 4]]);
        assert!(ring.is_empty());
        assert!(!ring.stage(9, &mut |_| panic!("oversize must not call fill")));
    }
}
