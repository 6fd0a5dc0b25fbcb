//! Frames on the wire in one direction of a memory link, and the pool their buffers live in.
//!
//! Owns [`InFlightQueue`], which hands frames out in order of arrival time, ties broken by the
//! order they were pushed, and never before their arrival time; and [`FramePool`], the free
//! list that lets buffers go round staging → in flight → receive → staging without allocating
//! once the link has warmed up.
//!
//! A `BinaryHeap` rather than a `VecDeque`: reordering and duplication make arrival times
//! non-monotone in push order, and the heap keeps both the common and the faulty case simple.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Frames in flight, earliest arrival first. Times are nanoseconds of virtual time.
#[derive(Debug, Default)]
pub(super) struct InFlightQueue {
    heap: BinaryHeap<InFlight>,
    next_seq: u64,
}

impl InFlightQueue {
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn push(&mut self, arrival_ns: u64, frame: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(InFlight {
            arrival_ns,
            seq,
            frame,
        });
    }

    pub fn next_arrival_ns(&self) -> Option<u64> {
        self.heap.peek().map(|f| f.arrival_ns)
    }

    /// The next frame, if it has arrived by `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        if self.next_arrival_ns()? > now_ns {
            return None;
        }
        self.heap.pop().map(|f| f.frame)
    }
}

#[derive(Debug)]
struct InFlight {
    arrival_ns: u64,
    seq: u64,
    frame: Vec<u8>,
}

impl InFlight {
    fn key(&self) -> (u64, u64) {
        (self.arrival_ns, self.seq)
    }
}

// `BinaryHeap` is a max-heap; reversing the key makes the earliest (arrival, seq) the top.
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for InFlight {}

/// Free frame buffers, shared by both directions of a link.
#[derive(Debug)]
pub(super) struct FramePool {
    free: Vec<Vec<u8>>,
    /// Capacity of each new buffer: the largest frame either direction accepts.
    frame_capacity: usize,
}

impl FramePool {
    pub fn new(frame_capacity: usize) -> Self {
        FramePool {
            free: Vec::new(),
            frame_capacity,
        }
    }

    /// A zeroed buffer of exactly `len` bytes, reused when one is free.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.frame_capacity));
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    pub fn give(&mut self, buf: Vec<u8>) {
        self.free.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_arrival_then_push_order_and_never_early() {
        let mut q = InFlightQueue::default();
        q.push(300, vec![3]);
        q.push(100, vec![1]);
        q.push(300, vec![4]);
        q.push(200, vec![2]);
        assert_eq!(q.next_arrival_ns(), Some(100));
        assert_eq!(q.pop_due(99), None);
        assert_eq!(q.pop_due(100), Some(vec![1]));
        assert_eq!(q.pop_due(299), Some(vec![2]));
        assert_eq!(q.pop_due(299), None);
        assert_eq!(q.pop_due(1000), Some(vec![3]));
        assert_eq!(q.pop_due(1000), Some(vec![4]));
        assert_eq!(q.pop_due(1000), None);
        assert_eq!(q.next_arrival_ns(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn pool_reuses_buffers_and_hands_them_out_zeroed() {
        let mut pool = FramePool::new(1514);
        let mut a = pool.take(4);
        assert_eq!(a.capacity(), 1514);
        a.copy_from_slice(&[9, 9, 9, 9]);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(6);
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is reused");
        assert_eq!(b, [0; 6]);
    }
}
