//! Deadlines of cells: when each one must be polled even with no input.
//!
//! A binary heap of `(deadline, cell, generation)` with lazy invalidation: entries are never
//! removed early. The stack keeps, per cell, the deadline it last armed; an entry is live only if
//! the cell's generation and armed deadline still match when it pops, and a stale entry is simply
//! dropped. A cell pushes a new entry only when its deadline moves *earlier*; a later deadline
//! waits for the armed entry to fire and re-arm. This keeps the heap near one entry per cell.
//! The interface (`arm`, `pop_due`, `next`) is small so a timer wheel can replace it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smoltcp::time::Instant;

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub cell: u32,
    pub generation: u32,
}

pub(crate) struct DeadlineQueue {
    heap: BinaryHeap<Reverse<Deadline>>,
}

impl DeadlineQueue {
    pub fn with_capacity(capacity: usize) -> Self {
        DeadlineQueue {
            heap: BinaryHeap::with_capacity(capacity),
        }
    }

    pub fn arm(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
    }

    /// The earliest entry, live or stale. A stale one only causes an early, harmless poll.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// The earliest entry, live or stale.
    pub fn peek(&self) -> Option<&Deadline> {
        self.heap.peek().map(|Reverse(d)| d)
    }

    /// Removes the earliest entry.
    pub fn pop(&mut self) -> Option<Deadline> {
        self.heap.pop().map(|Reverse(d)| d)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        match self.heap.peek() {
            Some(Reverse(d)) if d.at <= now => self.heap.pop().map(|Reverse(d)| d),
            _ => None,
        }
    }

    /// Drops entries for which `live` is false. Called when stale entries pile up.
    pub fn retain(&mut self, mut live: impl FnMut(&Deadline) -> bool) {
        self.heap.retain(|Reverse(d)| live(d));
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: i64, cell: u32) -> Deadline {
        Deadline {
            at: Instant::from_millis(ms),
            cell,
            generation: 0,
        }
    }

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut q = DeadlineQueue::with_capacity(4);
        q.arm(d(30, 3));
        q.arm(d(10, 1));
        q.arm(d(20, 2));
        assert_eq!(q.next(), Some(Instant::from_millis(10)));
        assert_eq!(q.pop_due(Instant::from_millis(5)), None);
        assert_eq!(q.pop_due(Instant::from_millis(20)), Some(d(10, 1)));
        assert_eq!(q.pop_due(Instant::from_millis(20)), Some(d(20, 2)));
        assert_eq!(q.pop_due(Instant::from_millis(20)), None);
        q.retain(|e| e.cell != 3);
        assert_eq!(q.len(), 0);
    }
}
