//! Frames on the wire in one direction of a memory link, and the pool their buffers live in.
//!
//! Owns [`InFlightQueue`], which hands frames out in order of arrival time, ties broken by the
//! order they were pushed, and never before their arrival time; [`FramePool`], the free list
//! that lets buffers go round staging → in flight → receive → staging without allocating once
//! the link has warmed up; and [`Frame`], one frame in one of those buffers.
//!
//! Arrival times are monotone in push order on a plain wire (fixed latency, serialization in
//! send order), so frames go into a FIFO while they are; only a frame that would arrive
//! earlier than the FIFO's last (reordering, which holds frames back, makes later ones
//! overtake them) goes into a `BinaryHeap`. Popping takes the earlier of the two heads by
//! (arrival, push order), which is exactly the order one heap would give: with 100,000 frames
//! in flight the heap's O(log n) cache-missing sift on every pop was most of a simulated
//! server's receive cost, which a NIC ring does not have.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::{Deref, DerefMut};

use crate::alloc_count::uncounted;

/// Frames in flight, earliest arrival first. Times are nanoseconds of virtual time.
/// Invariant: `fifo` is sorted by (arrival, seq), and so is every frame in it relative to the
/// frames pushed after it into `fifo`; frames in `heap` may be anywhere in between.
#[derive(Debug, Default)]
pub(super) struct InFlightQueue {
    fifo: VecDeque<InFlight>,
    heap: BinaryHeap<InFlight>,
    next_seq: u64,
}

impl InFlightQueue {
    pub fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    /// The queue is the wire's memory, like the frame pool's: grown outside any heap
    /// measurement.
    pub fn push(&mut self, arrival_ns: u64, frame: Frame) {
        uncounted(|| self.push_frame(arrival_ns, frame));
    }

    fn push_frame(&mut self, arrival_ns: u64, frame: Frame) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let item = InFlight {
            arrival_ns,
            seq,
            frame,
        };
        // `seq` only grows, so a frame arriving no earlier than the FIFO's last sorts after it.
        if self
            .fifo
            .back()
            .is_none_or(|last| last.arrival_ns <= arrival_ns)
        {
            self.fifo.push_back(item);
        } else {
            self.heap.push(item);
        }
    }

    /// Whether the earliest frame is at the FIFO's head (else the heap's top), if any.
    fn head_in_fifo(&self) -> Option<bool> {
        match (self.fifo.front(), self.heap.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(f), Some(h)) => Some(f.key() < h.key()),
        }
    }

    pub fn next_arrival_ns(&self) -> Option<u64> {
        let head = if self.head_in_fifo()? {
            self.fifo.front()
        } else {
            self.heap.peek()
        };
        head.map(|f| f.arrival_ns)
    }

    /// The next frame, if it has arrived by `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Frame> {
        if self.next_arrival_ns()? > now_ns {
            return None;
        }
        let head = if self.head_in_fifo()? {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        };
        head.map(|f| f.frame)
    }
}

#[derive(Debug)]
struct InFlight {
    arrival_ns: u64,
    seq: u64,
    frame: Frame,
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

/// One frame: the first `len` bytes of a buffer that keeps its whole size for life, as a NIC
/// ring's or an AF_XDP UMEM's frame does. Reads as the frame's bytes.
#[derive(Debug)]
pub(super) struct Frame {
    /// Every byte initialised once, when the pool made the buffer; never shrunk.
    buf: Vec<u8>,
    len: usize,
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Frame {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

#[cfg(test)]
impl From<Vec<u8>> for Frame {
    fn from(buf: Vec<u8>) -> Frame {
        let len = buf.len();
        Frame { buf, len }
    }
}

/// Free frame buffers, shared by both directions of a link.
///
/// Like a NIC's or an AF_XDP UMEM's frames, a buffer has one size for life and a reused one is
/// not cleared: it holds what its earlier frames left in it, and the sender writes every byte
/// of the new frame. A buffer is zeroed once, when it is made, so taking one never writes to
/// it: a memset of every frame would be charged to whichever party's poll sends it, and no
/// NIC has one.
#[derive(Debug)]
pub(super) struct FramePool {
    /// Free buffers, the most recently freed (warmest) last.
    free: Vec<Vec<u8>>,
    /// Size of each new buffer: the largest frame either direction accepts.
    frame_capacity: usize,
}

/// Bytes of the next free buffer hinted into the cache at each `take`: the headers and the
/// start of the payload.
const NEXT_FRAME_HINT_BYTES: usize = 256;

impl FramePool {
    pub fn new(frame_capacity: usize) -> Self {
        FramePool {
            free: Vec::new(),
            frame_capacity,
        }
    }

    /// A frame of exactly `len` bytes, in a reused buffer when one is free. Its bytes are
    /// stale, as in a NIC ring: what the buffer's earlier frames left there (zeros in a new
    /// buffer).
    ///
    /// The pool's buffers are the wire's, not the heap of whichever party's poll happens to
    /// send or receive: they are allocated and freed outside any heap measurement
    /// ([`crate::alloc_count`]).
    pub fn take(&mut self, len: usize) -> Frame {
        uncounted(|| {
            let mut buf = self
                .free
                .pop()
                .unwrap_or_else(|| vec![0; self.frame_capacity]);
            // The next frame likely takes the next buffer: bring its start into the cache
            // now, as the AF_XDP driver does with its next chunk.
            if let Some(next) = self.free.last() {
                crate::prefetch::prefetch(next.as_ptr(), NEXT_FRAME_HINT_BYTES);
            }
            // Only a frame longer than any the pool was sized for grows its buffer, once.
            if buf.len() < len {
                buf.resize(len, 0);
            }
            Frame { buf, len }
        })
    }

    pub fn give(&mut self, frame: Frame) {
        uncounted(|| self.free.push(frame.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_arrival_then_push_order_and_never_early() {
        let mut q = InFlightQueue::default();
        q.push(300, vec![3].into());
        q.push(100, vec![1].into());
        q.push(300, vec![4].into());
        q.push(200, vec![2].into());
        assert_eq!(q.next_arrival_ns(), Some(100));
        assert!(q.pop_due(99).is_none());
        assert_eq!(q.pop_due(100).as_deref(), Some(&[1][..]));
        assert_eq!(q.pop_due(299).as_deref(), Some(&[2][..]));
        assert!(q.pop_due(299).is_none());
        assert_eq!(q.pop_due(1000).as_deref(), Some(&[3][..]));
        assert_eq!(q.pop_due(1000).as_deref(), Some(&[4][..]));
        assert!(q.pop_due(1000).is_none());
        assert_eq!(q.next_arrival_ns(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn overtaking_frames_pop_in_the_order_one_heap_gives() {
        // Reordered frames (held back) interleave with in-order ones, ties included.
        let pushes = [
            (100, 1),
            (500, 2),
            (200, 3),
            (200, 4),
            (600, 5),
            (500, 6),
            (700, 7),
            (150, 8),
            (700, 9),
        ];
        let mut q = InFlightQueue::default();
        for (at, id) in pushes {
            q.push(at, vec![id].into());
        }
        assert!(
            !q.heap.is_empty() && !q.fifo.is_empty(),
            "both paths are used"
        );
        let mut expected: Vec<(u64, usize, u8)> = pushes
            .iter()
            .enumerate()
            .map(|(seq, &(at, id))| (at, seq, id))
            .collect();
        expected.sort();
        let mut got = Vec::new();
        while let Some(frame) = q.pop_due(u64::MAX) {
            got.push(frame[0]);
        }
        let want: Vec<u8> = expected.iter().map(|e| e.2).collect();
        assert_eq!(got, want);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn pool_reuses_buffers_with_their_stale_bytes() {
        let mut pool = FramePool::new(1514);
        let mut a = pool.take(4);
        assert_eq!(*a, [0; 4], "a new buffer is zeroed");
        a.copy_from_slice(&[9, 9, 9, 9]);
        let ptr = a.as_ptr();
        pool.give(a);
        let mut b = pool.take(6);
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is reused");
        assert_eq!(*b, [9, 9, 9, 9, 0, 0], "stale where a frame was");
        b.fill(7);
        pool.give(b);
        // A shorter frame and then a longer one: the bytes past the short one are still the
        // long one's, as in a NIC ring, and nothing was zeroed in between.
        let short = pool.take(2);
        assert_eq!(short.as_ptr(), ptr);
        pool.give(short);
        let long = pool.take(8);
        assert_eq!(long.as_ptr(), ptr);
        assert_eq!(*long, [7, 7, 7, 7, 7, 7, 0, 0]);
    }

    #[test]
    fn pool_buffers_keep_their_size_and_grow_only_for_a_longer_frame() {
        let mut pool = FramePool::new(1514);
        let ack = pool.take(66);
        let at = ack.as_ptr();
        pool.give(ack);
        // A full-sized frame fits the buffer an ACK used: no new allocation.
        let full = pool.take(1514);
        assert_eq!((full.as_ptr(), full.len()), (at, 1514));
        pool.give(full);
        // Longer than the pool was sized for: the buffer grows, zeros past its old end.
        let jumbo = pool.take(2000);
        assert_eq!(jumbo.len(), 2000);
        assert!(jumbo[1514..].iter().all(|&b| b == 0));
    }
}
