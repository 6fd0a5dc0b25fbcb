//! The sending half of a connection: the responses queued in request order, and the bytes of
//! the one being sent.
//!
//! Invariant: `head_lines` and `part_ends` always describe the front response. They are
//! written when a response becomes the front (pushed onto an empty queue, or the one before it
//! sent), in the same call that starts sending it, so the `Date` line is the one of that call.
//! The response counters are counted here, as bytes go out: a response stuck behind a stalled
//! connection is not a response the client got.

use std::collections::VecDeque;

use sirocco_netstack::Instant;

use super::response::{self, Response};
use super::stream::ByteStream;
use super::{DateHeader, HttpCounters};
use crate::cache::{ContentCache, EngineTree};

/// A response in the queue, with how many of its bytes the socket has taken.
#[derive(Debug, Clone, Copy)]
struct Pending {
    response: Response,
    sent: usize,
    /// When the request was complete: the engine's time of the read that brought its last
    /// bytes. `None` for an answer to no complete request (408).
    arrived: Option<Instant>,
    /// It answers a request that could not be parsed (counted in
    /// [`HttpCounters::parse_errors`] once sent).
    malformed: bool,
}

/// What [`ResponseQueue::send`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Every queued response is in the socket.
    All,
    /// The send window is full: the netstack calls again when ACKs free space.
    Blocked,
}

/// Responses not yet fully in the socket, oldest first. Keeps its capacity across
/// [`ResponseQueue::clear`], so steady state allocates nothing.
#[derive(Debug, Default)]
pub(super) struct ResponseQueue {
    queue: VecDeque<Pending>,
    /// The per-response head lines of the front response (and, for a multipart answer, its
    /// part headers and closing delimiter).
    head_lines: Vec<u8>,
    /// Where the head lines and each part header of a multipart front response end.
    pub(super) part_ends: Vec<usize>,
    /// The ranges of queued multipart answers (`Reply::Multipart` names them by position).
    pub(super) ranges: Vec<(usize, usize)>,
}

impl ResponseQueue {
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `response` (its multipart ranges, if any, are already in `ranges`).
    pub(super) fn push(
        &mut self,
        response: Response,
        arrived: Option<Instant>,
        malformed: bool,
        cache: &ContentCache,
        date: &DateHeader,
    ) {
        self.queue.push_back(Pending {
            response,
            sent: 0,
            arrived,
            malformed,
        });
        if self.queue.len() == 1 {
            self.write_front_lines(cache, date);
        }
    }

    /// Writes queued responses in order, as far as the socket takes them. Bodies (slices of
    /// the arena) go by reference to the tree; the heads are copied.
    pub(super) fn send<S: ByteStream + ?Sized>(
        &mut self,
        stream: &mut S,
        cache: &EngineTree,
        date: &DateHeader,
        now: Instant,
        window: usize,
        counters: &mut HttpCounters,
    ) -> Sent {
        while let Some(front) = self.queue.front_mut() {
            let mut skip = front.sent;
            let pieces = response::pieces(
                &front.response,
                cache,
                &self.head_lines,
                &self.part_ends,
                &self.ranges,
            );
            for piece in pieces {
                let Some(rest) = piece.get(skip..).filter(|rest| !rest.is_empty()) else {
                    skip = skip.saturating_sub(piece.len());
                    continue;
                };
                skip = 0;
                // At most `window` bytes unacknowledged in the socket.
                let room = window.saturating_sub(stream.unacked());
                let part = &rest[..rest.len().min(room)];
                let taken = match cache.arena_offset(part) {
                    _ if part.is_empty() => 0,
                    Some(start) => stream.send_cached(cache, start, part),
                    None => stream.send(part),
                }
                .min(part.len());
                if front.sent == 0
                    && taken > 0
                    && let Some(arrived) = front.arrived
                {
                    let waited = (now - arrived).total_micros();
                    counters.time_to_first_byte.record(waited);
                }
                front.sent += taken;
                counters.bytes_sent += taken as u64;
                if taken < rest.len() {
                    return Sent::Blocked;
                }
            }
            count_response(counters, front);
            self.queue.pop_front();
            if self.queue.is_empty() {
                // No queued answer names a range any more.
                self.ranges.clear();
            } else {
                self.write_front_lines(cache, date);
            }
        }
        Sent::All
    }

    /// Drops every queued response.
    pub(super) fn clear(&mut self) {
        self.queue.clear();
        self.head_lines.clear();
        self.part_ends.clear();
        self.ranges.clear();
    }

    fn write_front_lines(&mut self, cache: &ContentCache, date: &DateHeader) {
        self.head_lines.clear();
        if let Some(front) = self.queue.front() {
            response::write_head_lines(
                &mut self.head_lines,
                &mut self.part_ends,
                &front.response,
                cache,
                date,
                &self.ranges,
            );
        }
    }
}

/// Counts a response whose last byte is in the socket.
fn count_response(counters: &mut HttpCounters, sent: &Pending) {
    match sent.response.reply.code() / 100 {
        2 => counters.responses_2xx += 1,
        3 => counters.responses_3xx += 1,
        4 => counters.responses_4xx += 1,
        _ => counters.responses_5xx += 1,
    }
    if sent.malformed {
        counters.parse_errors += 1;
    }
}
