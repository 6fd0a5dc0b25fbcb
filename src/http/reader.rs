//! The receiving half of a connection: the request buffer, the body bytes still to skip, and
//! the request-head deadline.
//!
//! The buffer is lent from the shared [`RequestBuffers`] pool for the length of one call and
//! kept only while it holds unparsed bytes (see [`RequestReader::give_back`]). Unparsed bytes
//! are `buf[start..end]`; [`RequestReader::fill`] moves them to the front before reading more,
//! so a head never wraps.

use sirocco_netstack::Instant;

use super::RequestBuffers;
use super::stream::ByteStream;

/// Request bytes received and not yet parsed, and what is owed of the last request's body.
#[derive(Debug, Default)]
pub(super) struct RequestReader {
    /// `max_request_head` long while lent from [`RequestBuffers`], empty otherwise.
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Body bytes of the last request still to be read and dropped.
    pub(super) body_to_skip: usize,
    /// When the request head now being received must be complete.
    pub(super) head_deadline: Option<Instant>,
    /// When the last bytes were read from the socket: when a request parsed now arrived.
    pub(super) last_read: Option<Instant>,
}

impl RequestReader {
    /// Takes a buffer of `size` bytes from the pool when none is held, or resizes the one held
    /// (the limits changed while bytes were pending).
    pub(super) fn lend(&mut self, buffers: &mut RequestBuffers, size: usize) {
        if self.buf.is_empty() {
            self.buf = buffers.take(size);
        } else if self.buf.len() != size {
            self.buf.resize(size, 0);
            self.start = self.start.min(size);
            self.end = self.end.min(size);
        }
    }

    /// Returns the buffer to the pool once everything received is parsed.
    pub(super) fn give_back(&mut self, buffers: &mut RequestBuffers) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            buffers.give(std::mem::take(&mut self.buf));
        }
    }

    /// Reads from the stream into the free end of the buffer. `true` if any byte arrived (at
    /// `now`).
    pub(super) fn fill<S: ByteStream + ?Sized>(&mut self, stream: &mut S, now: Instant) -> bool {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(free) = self.buf.get_mut(self.end..).filter(|free| !free.is_empty()) else {
            return false;
        };
        let got = stream.recv(free).min(free.len());
        self.end += got;
        if got > 0 {
            self.last_read = Some(now);
        }
        got > 0
    }

    /// Drops buffered bytes of the last request's body; returns how many. While more are
    /// owed ([`RequestReader::body_to_skip`] is not 0), nothing else is buffered.
    pub(super) fn skip_body(&mut self) -> usize {
        let dropped = self.body_to_skip.min(self.end - self.start);
        self.start += dropped;
        self.body_to_skip -= dropped;
        if self.body_to_skip > 0 {
            self.start = 0;
            self.end = 0;
        }
        dropped
    }

    /// The bytes received and not parsed yet.
    pub(super) fn unparsed(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// The unparsed bytes fill the whole buffer: a head that does not fit.
    pub(super) fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len()
    }

    /// Marks `len` bytes as parsed; the request they were owes `body_to_skip` bytes of body.
    pub(super) fn consume(&mut self, len: usize, body_to_skip: usize) {
        self.start += len;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
        self.body_to_skip = body_to_skip;
        self.head_deadline = None;
    }

    /// Whether part of a request head is buffered (and not body bytes being dropped).
    pub(super) fn head_pending(&self) -> bool {
        self.body_to_skip == 0 && self.start < self.end
    }

    /// Drops everything unparsed and owed, and stops the head timer.
    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.body_to_skip = 0;
        self.head_deadline = None;
    }

    /// For a pooled cell: forgets everything, keeps the buffer's capacity.
    pub(super) fn reset(&mut self) {
        self.clear();
        self.last_read = None;
    }
}
