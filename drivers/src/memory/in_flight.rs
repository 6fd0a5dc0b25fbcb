//! Frames on the wire in one direction of a memory link, and the pool their buffers live in.
//!
//! Owns [`InFlightQueue`], which hands frames out in order of arrival time, ties broken by the
//! order they were pushed, and never before their arrival time; and [`FramePool`], the free
//! list that lets buffers go round staging → in flight → receive → staging without allocating
//! once the link has warmed up.
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
    pub fn push(&mut self, arrival_ns: u64, frame: Vec<u8>) {
        uncounted(|| self.push_frame(arrival_ns, frame));
    }

    fn push_frame(&mut self, arrival_ns: u64, frame: Vec<u8>) {
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
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Vec<u8>> {
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
///
/// Like a NIC's or an AF_XDP UMEM's frames, a reused buffer is not cleared: it holds what the
/// last frame left in it, and the sender writes every byte of the new one. The free buffers
/// are kept in two lists by the length of the frame they last held, so that a full-sized
/// frame takes a buffer that last held a full-sized one and has nothing to zero.
#[derive(Debug)]
pub(super) struct FramePool {
    /// Free buffers that last held a frame of at most `SMALL_FRAME` bytes (ACKs, requests).
    small: Vec<Vec<u8>>,
    /// Free buffers that last held a longer frame.
    large: Vec<Vec<u8>>,
    /// Capacity of each new buffer: the largest frame either direction accepts.
    frame_capacity: usize,
}

/// The longest frame the pool counts as small: an ACK with options, a short request.
const SMALL_FRAME: usize = 256;

/// Bytes of the next free buffer hinted into the cache at each `take`: the headers and the
/// start of the payload.
const NEXT_FRAME_HINT_BYTES: usize = 256;

impl FramePool {
    pub fn new(frame_capacity: usize) -> Self {
        FramePool {
            small: Vec::new(),
            large: Vec::new(),
            frame_capacity,
        }
    }

    /// A buffer of exactly `len` bytes, reused when one is free. Its bytes are stale, as in
    /// a NIC ring: what the buffer's last frame left there, and zeros past that frame's end.
    ///
    /// The pool's buffers are the wire's, not the heap of whichever party's poll happens to
    /// send or receive: they are allocated and freed outside any heap measurement
    /// ([`crate::alloc_count`]).
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        uncounted(|| {
            let (first, second) = if len > SMALL_FRAME {
                (&mut self.large, &mut self.small)
            } else {
                (&mut self.small, &mut self.large)
            };
            let mut buf = first
                .pop()
                .or_else(|| second.pop())
                .unwrap_or_else(|| Vec::with_capacity(self.frame_capacity));
            // The next frame of this size likely takes the next buffer of this list: bring
            // its start into the cache now, as the AF_XDP driver does with its next chunk.
            if let Some(next) = first.last() {
                crate::prefetch::prefetch(next.as_ptr(), NEXT_FRAME_HINT_BYTES);
            }
            // `resize` zeroes only what the buffer's last frame did not reach.
            buf.truncate(len);
            buf.resize(len, 0);
            buf
        })
    }

    pub fn give(&mut self, buf: Vec<u8>) {
        uncounted(|| {
            if buf.len() > SMALL_FRAME {
                self.large.push(buf);
            } else {
                self.small.push(buf);
            }
        });
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
            q.push(at, vec![id]);
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
        assert_eq!(a.capacity(), 1514);
        assert_eq!(a, [0; 4], "a new buffer is zeroed");
        a.copy_from_slice(&[9, 9, 9, 9]);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(6);
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is reused");
        assert_eq!(
            b,
            [9, 9, 9, 9, 0, 0],
            "stale where a frame was, zero beyond"
        );
    }

    #[test]
    fn pool_gives_full_sized_frames_the_buffers_of_full_sized_frames() {
        let mut pool = FramePool::new(1514);
        let mut full = pool.take(1514);
        full.fill(7);
        let ack = pool.take(66);
        let (full_at, ack_at) = (full.as_ptr(), ack.as_ptr());
        pool.give(full);
        pool.give(ack);
        // The ACK went back last, but the next full-sized frame takes the full-sized buffer:
        // nothing to zero, every byte the last frame's.
        let next = pool.take(1514);
        assert_eq!(next.as_ptr(), full_at);
        assert!(next.iter().all(|&b| b == 7));
        let small = pool.take(66);
        assert_eq!(small.as_ptr(), ack_at);
        // With one list empty, the other serves.
        pool.give(small);
        let other = pool.take(1514);
        assert_eq!((other.as_ptr(), other.len()), (ack_at, 1514));
    }
}
