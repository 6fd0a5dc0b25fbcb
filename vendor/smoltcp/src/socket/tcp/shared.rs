//! The transmit stream of a socket: the octets of its ring buffer, and ranges of shared
//! buffers queued between them without a copy
//! ([`Socket::send_shared`](super::Socket::send_shared)).
//!
//! The stream is the ring's octets with the shared chunks inserted among them: each chunk
//! records how many octets of the ring come before it (after the chunk before it), and the
//! ring octets after the last chunk end the stream. A socket that queues no chunk has a stream
//! that is exactly its ring buffer. The chunks are a small ring of their own, of fixed
//! capacity, so queuing one allocates nothing.

use super::SocketBuffer;
use crate::wire::{TCP_MAX_TAIL_PARTS, TcpPayloadTail};

#[cfg(feature = "alloc")]
use alloc::sync::Arc;
#[cfg(feature = "alloc")]
use core::fmt;

/// Shared chunks a socket holds at once. The ring's octets between and around them are at
/// most `SHARED_CHUNKS + 1` runs, one of which may wrap around the end of the ring, so a
/// segment has at most `2 * SHARED_CHUNKS + 2` parts: the first in `TcpRepr::payload`, the
/// others in its tail.
pub(super) const SHARED_CHUNKS: usize = (TCP_MAX_TAIL_PARTS - 1) / 2;

/// A buffer a socket sends from without copying it (see
/// [`Socket::send_shared`](super::Socket::send_shared)), such as a file cached in memory.
///
/// The socket holds a reference to it until every octet it sends from it is acknowledged, and
/// reads it whenever it sends or resends one of them: `bytes` must return the same octets for
/// as long as any reference exists.
#[cfg(feature = "alloc")]
pub trait SharedPayload: Send + Sync {
    /// The octets of the buffer.
    fn bytes(&self) -> &[u8];

    /// The RFC 1071 ones-complement sum of `bytes()[start..start + len]`, taken as if `start`
    /// were at an even offset (its octet is the high octet of the first 16-bit word, and an
    /// odd last octet is padded with a zero), not complemented; `None` if the buffer does not
    /// know it, and the socket sums the octets itself.
    fn sum(&self, start: usize, len: usize) -> Option<u16> {
        let _ = (start, len);
        None
    }
}

/// A segment's payload being gathered: its first part, then the tail (the caller's, so that
/// the few hundred octets of a tail are not copied on the way).
struct Gather<'b, 't> {
    payload: &'b [u8],
    tail: &'t mut TcpPayloadTail<'b>,
}

impl<'b, 't> Gather<'b, 't> {
    fn new(tail: &'t mut TcpPayloadTail<'b>) -> Self {
        tail.clear();
        Gather { payload: &[], tail }
    }

    fn push(&mut self, part: &'b [u8]) {
        self.push_with_sum(part, None)
    }

    /// Appends `part`, with its ones-complement sum if known.
    fn push_with_sum(&mut self, part: &'b [u8], sum: Option<u16>) {
        if self.payload.is_empty() {
            self.payload = part;
            self.tail.payload_sum = sum;
        } else {
            self.tail.push_with_sum(part, sum);
        }
    }

    /// `size` octets of the ring from `offset` in it: one part, or two where they wrap around
    /// the end of its storage.
    fn ring(&mut self, ring: &'b SocketBuffer<'_>, offset: usize, size: usize) {
        let head = ring.get_allocated(offset, size);
        self.push(head);
        if !head.is_empty() && head.len() < size {
            self.push(ring.get_allocated(offset + head.len(), size - head.len()));
        }
    }

    /// The part of a run of `len` ring octets, at `ring_offset` in the ring and `pos` in the
    /// stream, that lies in `[from, to)` of the stream.
    #[cfg(feature = "alloc")]
    fn ring_run(
        &mut self,
        ring: &'b SocketBuffer<'_>,
        (ring_offset, pos, len): (usize, usize, usize),
        (from, to): (usize, usize),
    ) {
        let (start, end) = (from.max(pos), to.min(pos + len));
        if start < end {
            self.ring(ring, ring_offset + (start - pos), end - start);
        }
    }
}

/// A range of a shared buffer in the stream.
#[cfg(feature = "alloc")]
struct Chunk {
    /// Octets of the ring buffer between the chunk before (or the start of the stream) and
    /// this one.
    ring_before: usize,
    payload: Arc<dyn SharedPayload>,
    start: usize,
    len: usize,
}

/// The shared chunks of a socket's transmit stream, oldest first.
#[cfg(feature = "alloc")]
#[derive(Default)]
#[repr(C)]
pub(super) struct SharedChunks {
    first: usize,
    count: usize,
    /// Octets in the chunks.
    len: usize,
    /// The sum of the chunks' `ring_before`.
    ring_before: usize,
    /// Last: a queue that empties starts again at the first chunk, so a connection that
    /// sends one range at a time keeps using the same one.
    chunks: [Option<Chunk>; SHARED_CHUNKS],
}

#[cfg(feature = "alloc")]
impl fmt::Debug for SharedChunks {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SharedChunks")
            .field("count", &self.count)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(feature = "alloc")]
impl SharedChunks {
    /// Octets in the chunks (the stream is these and the ring's).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn iter(&self) -> impl Iterator<Item = &Chunk> {
        (0..self.count).filter_map(move |i| self.chunks[(self.first + i) % SHARED_CHUNKS].as_ref())
    }

    /// Appends `bytes()[start..start + len]` of `payload` to a stream whose ring holds
    /// `ring_len` octets; returns how many octets that is: `len`, less what `payload` does
    /// not have, or 0 when every chunk is in use. A range that continues the last chunk
    /// directly (the same buffer, the next octets, nothing queued in the ring since) extends
    /// it instead of taking a chunk.
    pub(super) fn push(
        &mut self,
        ring_len: usize,
        payload: Arc<dyn SharedPayload>,
        start: usize,
        len: usize,
    ) -> usize {
        let len = len.min(payload.bytes().len().saturating_sub(start));
        if len == 0 {
            return 0;
        }
        let ring_before = ring_len - self.ring_before;
        if ring_before == 0 && self.count > 0 {
            // The range that continues the last chunk, with no ring octets between them (a
            // buffer queued piece by piece), grows it.
            let last = (self.first + self.count - 1) % SHARED_CHUNKS;
            if let Some(chunk) = self.chunks[last].as_mut().filter(|chunk| {
                Arc::ptr_eq(&chunk.payload, &payload) && chunk.start + chunk.len == start
            }) {
                chunk.len += len;
                self.len += len;
                return len;
            }
        }
        if self.count == SHARED_CHUNKS {
            return 0;
        }
        self.chunks[(self.first + self.count) % SHARED_CHUNKS] = Some(Chunk {
            ring_before,
            payload,
            start,
            len,
        });
        self.count += 1;
        self.len += len;
        self.ring_before += ring_before;
        len
    }

    /// Removes the first `count` octets of the stream, from the ring and the chunks; a chunk
    /// removed entirely drops its reference.
    pub(super) fn dequeue(&mut self, ring: &mut SocketBuffer<'_>, mut count: usize) {
        while count > 0 {
            let Some(chunk) = self.chunks[self.first].as_mut() else {
                ring.dequeue_allocated(count);
                return;
            };
            let from_ring = count.min(chunk.ring_before);
            ring.dequeue_allocated(from_ring);
            chunk.ring_before -= from_ring;
            self.ring_before -= from_ring;
            count -= from_ring;
            let from_chunk = count.min(chunk.len);
            chunk.start += from_chunk;
            chunk.len -= from_chunk;
            self.len -= from_chunk;
            count -= from_chunk;
            if chunk.len == 0 {
                self.chunks[self.first] = None;
                self.count -= 1;
                self.first = if self.count == 0 {
                    0
                } else {
                    (self.first + 1) % SHARED_CHUNKS
                };
            }
        }
    }

    /// The `size` octets of the stream at `offset` (fewer if it ends before), as the parts of
    /// one segment's payload: the first one returned, the others in `tail` (cleared first).
    /// With `sums`, those of shared buffers come with their sums when the buffers know them
    /// (for a checksum computed in software).
    pub(super) fn gather<'b>(
        &'b self,
        ring: &'b SocketBuffer<'_>,
        offset: usize,
        size: usize,
        sums: bool,
        tail: &mut TcpPayloadTail<'b>,
    ) -> &'b [u8] {
        let mut gather = Gather::new(tail);
        if self.count == 0 {
            gather.ring(ring, offset, size);
            return gather.payload;
        }
        let range = (offset, offset + size);
        // The stream offset and the ring offset of the run of ring octets being looked at.
        let (mut pos, mut ring_pos) = (0, 0);
        for chunk in self.iter() {
            if pos >= range.1 {
                break;
            }
            gather.ring_run(ring, (ring_pos, pos, chunk.ring_before), range);
            pos += chunk.ring_before;
            ring_pos += chunk.ring_before;
            let (start, end) = (range.0.max(pos), range.1.min(pos + chunk.len));
            if start < end {
                let (at, len) = (chunk.start + (start - pos), end - start);
                let sum = if sums {
                    chunk.payload.sum(at, len)
                } else {
                    None
                };
                gather.push_with_sum(&chunk.payload.bytes()[at..at + len], sum);
            }
            pos += chunk.len;
        }
        gather.ring_run(ring, (ring_pos, pos, ring.len() - ring_pos), range);
        gather.payload
    }

    /// Drops every chunk (the caller empties the ring).
    pub(super) fn clear(&mut self) {
        *self = SharedChunks::default();
    }
}

/// Without `alloc` there are no shared buffers: the stream is the ring.
#[cfg(not(feature = "alloc"))]
#[derive(Debug, Default)]
pub(super) struct SharedChunks;

#[cfg(not(feature = "alloc"))]
impl SharedChunks {
    pub(super) fn len(&self) -> usize {
        0
    }

    pub(super) fn is_empty(&self) -> bool {
        true
    }

    pub(super) fn dequeue(&mut self, ring: &mut SocketBuffer<'_>, count: usize) {
        ring.dequeue_allocated(count);
    }

    pub(super) fn gather<'b>(
        &'b self,
        ring: &'b SocketBuffer<'_>,
        offset: usize,
        size: usize,
        _sums: bool,
        tail: &mut TcpPayloadTail<'b>,
    ) -> &'b [u8] {
        let mut gather = Gather::new(tail);
        gather.ring(ring, offset, size);
        gather.payload
    }

    pub(super) fn clear(&mut self) {}
}

#[cfg(all(test, feature = "alloc"))]
mod test {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    struct Bytes(Vec<u8>);

    impl SharedPayload for Bytes {
        fn bytes(&self) -> &[u8] {
            &self.0
        }
    }

    #[test]
    fn a_queue_that_empties_starts_again_at_the_first_chunk() {
        let payload: Arc<dyn SharedPayload> = Arc::new(Bytes(vec![7; 100]));
        let mut ring = SocketBuffer::new(vec![0; 16]);
        let mut chunks = SharedChunks::default();
        for round in 0..3 {
            // Two ranges that do not continue each other take two chunks.
            assert_eq!(chunks.push(0, payload.clone(), 50, 10), 10);
            assert_eq!(chunks.push(0, payload.clone(), 0, 10), 10);
            assert!(chunks.chunks[0].is_some(), "round {round}");
            assert!(chunks.chunks[1].is_some(), "round {round}");
            chunks.dequeue(&mut ring, 15);
            assert_eq!((chunks.first, chunks.count), (1, 1));
            chunks.dequeue(&mut ring, 5);
            assert_eq!((chunks.first, chunks.count, chunks.len), (0, 0, 0));
            assert!(chunks.chunks.iter().all(Option::is_none));
        }
        assert_eq!(Arc::strong_count(&payload), 1);
    }

    #[test]
    fn the_chunks_end_the_structure() {
        let chunks = core::mem::offset_of!(SharedChunks, chunks);
        for field in [
            core::mem::offset_of!(SharedChunks, first),
            core::mem::offset_of!(SharedChunks, count),
            core::mem::offset_of!(SharedChunks, len),
            core::mem::offset_of!(SharedChunks, ring_before),
        ] {
            assert!(field < chunks);
        }
        assert_eq!(
            chunks + core::mem::size_of::<[Option<Chunk>; SHARED_CHUNKS]>(),
            core::mem::size_of::<SharedChunks>()
        );
    }
}
