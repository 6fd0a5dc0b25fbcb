//! HTTP/1.1 over a connection's byte stream, answered from the [`ContentCache`].
//!
//! [`serve`] is called by the netstack whenever a connection became ready (new data, new send
//! space, peer closed). Each call:
//! 1. drops request-body bytes still owed from an earlier request, then parses as many complete
//!    request heads as the buffer holds (pipelining), up to [`HttpLimits::max_pipelined`]
//!    unanswered responses;
//! 2. writes queued responses, strictly in request order, as far as the send window allows.
//!    A response only partly accepted keeps its offset, so a large file streams across calls;
//! 3. reads more from the socket (only as much as the request buffer has room for: a client
//!    that sends faster than it reads is held back by its own TCP window) and repeats.
//!
//! A connection is two halves and a phase: the `RequestReader` (`reader.rs`: the request
//! buffer, the body bytes to skip, the head deadline) and the `ResponseQueue` (`queue.rs`: the
//! queued responses, the front one's head lines, its multipart pieces), and `Phase::Open`,
//! `Closing` or `Closed`.
//!
//! A response that must end the connection (`Connection: close`, errors that leave framing in
//! doubt) stops all further parsing (`Closing`), and so do a timeout, a foreign protocol or a
//! peer that has finished sending with nothing left to answer. There is one close path: at the
//! end of [`serve`], a `Closing` connection whose queue is empty is closed (FIN after the
//! data). A closed connection then lingers (see `linger.rs`): what the peer still sends is read
//! and dropped, and the connection is reset if the peer has not finished within nginx's
//! `lingering_time`/`lingering_timeout`.
//!
//! Timers (each lends the connection back through [`ConnApp::wake_at`]), as nginx's:
//! - keep-alive ([`HttpLimits::keepalive_timeout`]): from the end of the last response (its last
//!   byte handed to the socket), or from the handshake before the first request, to the first
//!   byte of the next request. Segments without data (TCP keepalives, ACKs, window probes) do
//!   not restart it. When it fires the connection is closed (FIN, then lingering);
//! - request head ([`HttpLimits::header_timeout`]): from that first byte to the end of the head;
//!   late, 408 and close;
//! - lingering, on a closed connection: see `linger.rs`.
//!
//! Steady state allocates nothing: the response queue and the scratch for per-response lines
//! keep their capacity for the life of the connection cell, across [`ConnApp::reset`]. The
//! request buffer is lent from a shared [`RequestBuffers`] pool only while a connection holds
//! unparsed bytes, and returned as soon as everything it received is parsed: an idle
//! keep-alive connection holds none (8 KiB less per idle connection), and the few buffers in
//! use stay hot in the cache.
//!
//! The protocol core is generic over [`ByteStream`], so it is tested without smoltcp.

mod buffers;
mod conditional;
mod counters;
mod date;
mod latency;
mod linger;
mod queue;
mod reader;
mod request;
mod response;
mod stream;
mod target;

use std::mem::MaybeUninit;
use std::net::IpAddr;

use sirocco_netstack::{ConnApp, Duration, Instant};

pub use buffers::RequestBuffers;
pub use counters::HttpCounters;
pub use date::DateHeader;
pub use latency::{BUCKET_BOUNDS_MICROS, LatencyHistogram};
pub use stream::ByteStream;
pub use target::{TargetError, normalize_target};

use crate::access_log::{AccessLog, LogEntry};
use crate::cache::{ContentCache, EngineTree, Status};
use linger::Linger;
use queue::{ResponseQueue, Sent};
use reader::RequestReader;
use response::{ConnectionHeader, Reply, Response};

/// Header slots on the stack for one parse; [`HttpLimits::max_headers`] is capped to this.
const HEADER_SLOTS: usize = 128;

/// Limits on everything a client controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus headers, bytes. Longer: 414 (line alone) or 431, then close. This is
    /// also the request buffer per connection.
    pub max_request_head: usize,
    /// Header lines per request (at most 128). More: 431, then close.
    pub max_headers: usize,
    /// Parsed but not fully sent responses per connection; further pipelined requests wait in
    /// the buffer (and then in the TCP window).
    pub max_pipelined: usize,
    /// Largest request body (`Content-Length`) read and dropped. Larger: 413 (405 for other
    /// methods), then close.
    pub max_discarded_body: usize,
    /// How long a client may take to send a whole request head once its first byte has
    /// arrived (nginx's `client_header_timeout`). Slower: 408, then close (slowloris).
    pub header_timeout: Duration,
    /// Requests served on one connection before it is closed (nginx's `keepalive_requests`);
    /// the last response carries `Connection: close`. 0: no limit.
    pub max_requests_per_connection: u32,
    /// How long a connection waits for the first byte of its next request: from the end of
    /// the last response (its last byte handed to the socket), or from the handshake before
    /// the first request (nginx's `keepalive_timeout`). Then it is closed. Body bytes of the
    /// last request still being dropped restart it; segments without data do not.
    pub keepalive_timeout: Duration,
    /// Most time a closed connection keeps reading and dropping input once the peer has
    /// acknowledged the whole response, before it is reset (nginx's `lingering_time`); also
    /// how long it waits for a reader that acknowledges nothing more of the response.
    pub lingering_time: Duration,
    /// How long a closed connection waits for more input before it is reset (nginx's
    /// `lingering_timeout`).
    pub lingering_timeout: Duration,
    /// Most bytes of responses a connection has in its socket unacknowledged, sent or not:
    /// what it may have in flight. Bodies go to the socket by reference, so the socket's own
    /// send buffer (`--tx-buffer`, the heads) no longer bounds it; this does, as the send
    /// buffer did when the bodies were copied into it.
    pub send_window: usize,
}

impl Default for HttpLimits {
    /// nginx-like: an 8 KiB header buffer (`large_client_header_buffers 4 8k` per line),
    /// 64 headers, 16 pipelined requests, 64 KiB of discarded body, 60 s to send a head
    /// (`client_header_timeout 60s`), `keepalive_timeout 75s`, `lingering_time 30s`,
    /// `lingering_timeout 5s`, a 16 KiB send window. No limit on requests per connection here;
    /// the CLI sets nginx's `keepalive_requests 1000`.
    fn default() -> Self {
        HttpLimits {
            max_request_head: 8 * 1024,
            max_headers: 64,
            max_pipelined: 16,
            max_discarded_body: 64 * 1024,
            header_timeout: Duration::from_secs(60),
            max_requests_per_connection: 0,
            keepalive_timeout: Duration::from_secs(75),
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            send_window: 16 * 1024,
        }
    }
}

/// What [`serve`] needs besides the connection.
pub struct HttpContext<'a> {
    /// The tree in force. A connection adopts it between requests (when nothing of its own is
    /// queued), so a reload never changes a response that has started.
    pub cache: &'a EngineTree,
    /// The server is stopping: every response is the last of its connection
    /// (`Connection: close`), and connections waiting for a request are closed.
    pub draining: bool,
    pub now: Instant,
    pub date: &'a DateHeader,
    pub limits: &'a HttpLimits,
    pub counters: &'a mut HttpCounters,
    /// The request buffers connections borrow while they hold unparsed bytes.
    pub buffers: &'a mut RequestBuffers,
    /// Where each answered request is logged (`--access-log`), and the wall-clock second.
    pub log: Option<&'a mut AccessLog>,
    pub unix_secs: u64,
}

/// Where a connection is in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading requests and answering them.
    #[default]
    Open,
    /// Nothing more is read or parsed: a response that ends the connection is queued, or the
    /// connection is to close without one (timeouts, the peer done, a foreign protocol). The
    /// socket is closed once the queue is empty.
    Closing,
    /// The socket is closed: lingering until the peer has finished, or until the deadline
    /// (`None` once it has passed).
    Closed(Option<Linger>),
}

/// Per-connection HTTP state, kept in the netstack's connection cell: the receiving half, the
/// sending half, and where the connection is in its life.
#[derive(Debug, Default)]
pub struct HttpConn {
    reader: RequestReader,
    queue: ResponseQueue,
    phase: Phase,
    /// When the connection is closed if no byte of a next request has come.
    keepalive_deadline: Option<Instant>,
    /// The tree this connection's queued responses come from (see [`HttpContext::cache`]).
    cache: Option<EngineTree>,
    /// Requests parsed on this connection.
    requests: u32,
}

impl ConnApp for HttpConn {
    fn reset(&mut self) {
        self.reader.reset();
        self.queue.clear();
        self.phase = Phase::Open;
        self.keepalive_deadline = None;
        // A pooled cell must not keep an old tree alive after a reload.
        self.cache = None;
        self.requests = 0;
    }

    /// Waiting for a request (the keep-alive timer runs) with nothing of a body left to drop:
    /// a connection the stack may close to make room for a new one, as nginx's reusable
    /// connections.
    fn is_idle(&self) -> bool {
        self.keepalive_deadline.is_some() && self.reader.body_to_skip == 0
    }

    fn wake_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed(linger) => linger.as_ref().map(Linger::deadline),
            // The closing answer is being sent; lingering starts when it is all in the socket.
            Phase::Closing => None,
            Phase::Open => match (self.reader.head_deadline, self.keepalive_deadline) {
                (Some(head), Some(idle)) => Some(head.min(idle)),
                (head, idle) => head.or(idle),
            },
        }
    }
}

/// Serves one ready connection: a netstack socket (`serve(conn.socket, conn.state, cx)`) or,
/// in the tests, any [`ByteStream`]. See the module documentation.
pub fn serve<S: ByteStream + ?Sized>(
    stream: &mut S,
    conn: &mut HttpConn,
    cx: &mut HttpContext<'_>,
) {
    if !matches!(conn.phase, Phase::Closed(_)) {
        // Adopt the tree in force when nothing of this connection's is queued. Moving the Arc
        // out and back costs nothing; only adopting a new tree touches its count.
        let cache = match conn.cache.take() {
            Some(mine) if EngineTree::same(&mine, cx.cache) || !conn.queue.is_empty() => mine,
            _ => cx.cache.clone(),
        };
        conn.reader
            .lend(cx.buffers, cx.limits.max_request_head.max(1));
        conn.exchange(stream, &cache, cx);
        if conn.phase == Phase::Closing && conn.queue.is_empty() {
            conn.close(stream, cx);
        }
        conn.reader.give_back(cx.buffers);
        conn.cache = Some(cache);
    }
    if let Phase::Closed(linger) = &mut conn.phase {
        linger_on(linger, stream, cx);
    }
}

impl HttpConn {
    /// Parses, answers and reads until the socket has nothing more to give or take, then
    /// looks at the timers. Leaves the connection [`Phase::Closing`] when it is to close.
    fn exchange<S: ByteStream + ?Sized>(
        &mut self,
        stream: &mut S,
        cache: &EngineTree,
        cx: &mut HttpContext<'_>,
    ) {
        let max_pipelined = cx.limits.max_pipelined.max(1);
        let peer = if cx.log.is_some() {
            stream.peer()
        } else {
            None
        };
        let mut parsed = 0usize;
        loop {
            // Parse until the buffer holds no complete request, or the pipelining limit.
            let mut at_limit = false;
            while self.phase == Phase::Open {
                if self.queue.len() >= max_pipelined {
                    at_limit = true;
                    break;
                }
                if !self.parse_next(cache, cx, parsed, peer) {
                    break;
                }
                parsed += 1;
            }
            if self.send(stream, cache, cx) == Sent::Blocked {
                self.update_deadlines(stream, cx);
                return;
            }
            if self.phase != Phase::Open {
                // Everything is sent, the closing answer too (or there was none to send).
                return;
            }
            // The queue is empty. Complete requests may be buffered behind the pipelining
            // limit: parse again before reading, because no new event may ever come to call us
            // back for them. Otherwise parsing again finds what it found: read first.
            if !at_limit && !self.reader.fill(stream, cx.now) {
                break;
            }
        }
        if !stream.may_recv() {
            // The peer has finished sending and everything it asked for is answered; a partial
            // request left in the buffer can never complete.
            self.phase = Phase::Closing;
            return;
        }
        if self.reader.head_deadline.is_some_and(|at| cx.now >= at) && self.reader.head_pending() {
            // Slowloris: the head did not complete in time. Answer 408 and close.
            self.reader.clear();
            cx.counters.requests += 1;
            cx.counters.header_timeouts += 1;
            self.phase = Phase::Closing;
            let timeout = Response {
                reply: Reply::Status(Status::RequestTimeout),
                head_only: false,
                connection: ConnectionHeader::Close,
                interim_continue: false,
            };
            self.queue.push(timeout, None, false, cache, cx.date);
            self.send(stream, cache, cx);
            return;
        }
        self.update_deadlines(stream, cx);
        if self.keepalive_deadline.is_some_and(|at| cx.now >= at) {
            // No request came in time: close, as nginx does at its keepalive_timeout.
            cx.counters.keepalive_timeouts += 1;
            self.phase = Phase::Closing;
        } else if cx.draining && self.keepalive_deadline.is_some() {
            // Stopping, and this connection waits for a request: close it with a FIN, as
            // nginx closes idle keep-alive connections on a graceful stop.
            cx.counters.drain_closes += 1;
            self.phase = Phase::Closing;
        }
    }

    /// Writes queued responses as far as the socket takes them (see [`ResponseQueue::send`]).
    fn send<S: ByteStream + ?Sized>(
        &mut self,
        stream: &mut S,
        cache: &EngineTree,
        cx: &mut HttpContext<'_>,
    ) -> Sent {
        let window = cx.limits.send_window;
        self.queue
            .send(stream, cache, cx.date, cx.now, window, cx.counters)
    }

    /// Starts the head timer when the first bytes of a head are buffered and nothing is owed
    /// to the client; stops it otherwise (a client still receiving answers is not slow).
    /// Starts the keep-alive timer when the connection waits for a request: established,
    /// nothing owed to the client, no byte of a head buffered; stops it otherwise. Neither
    /// restarts while it runs.
    fn update_deadlines<S: ByteStream + ?Sized>(&mut self, stream: &S, cx: &HttpContext<'_>) {
        let open = self.phase == Phase::Open;
        let head_pending = self.reader.head_pending();
        if !head_pending || !open || !self.queue.is_empty() {
            self.reader.head_deadline = None;
        } else if self.reader.head_deadline.is_none() {
            self.reader.head_deadline = Some(cx.now + cx.limits.header_timeout);
        }
        let waiting = open && self.queue.is_empty() && !head_pending;
        if !waiting {
            self.keepalive_deadline = None;
        } else if self.keepalive_deadline.is_none() && stream.established() {
            self.keepalive_deadline = Some(cx.now + cx.limits.keepalive_timeout);
        }
    }

    /// The one place a connection is closed: our side (FIN after anything queued), then
    /// lingering. Unparsed input is dropped (so the request buffer goes back to the pool).
    fn close<S: ByteStream + ?Sized>(&mut self, stream: &mut S, cx: &HttpContext<'_>) {
        stream.close();
        self.reader.clear();
        self.keepalive_deadline = None;
        self.phase = Phase::Closed(Some(Linger::new(cx.now, stream.unacked(), cx.limits)));
    }

    /// Parses the next request in the buffer and queues its response. `false` when the buffer
    /// holds no complete request head.
    fn parse_next(
        &mut self,
        cache: &ContentCache,
        cx: &mut HttpContext<'_>,
        parsed_before: usize,
        peer: Option<IpAddr>,
    ) -> bool {
        if self.reader.skip_body() > 0 {
            // Body bytes of the last request: the client is not idle.
            self.keepalive_deadline = None;
        }
        if self.reader.body_to_skip > 0 {
            return false;
        }
        let available = self.reader.unparsed();
        if available.is_empty() {
            return false;
        }
        match foreign_protocol(available) {
            Foreign::No => {}
            Foreign::Maybe => return false,
            Foreign::Yes => {
                // Not HTTP/1: an HTTP/1 error page would be garbage to this client. Close
                // cleanly without a byte.
                cx.counters.foreign_protocol += 1;
                self.reader.clear();
                self.phase = Phase::Closing;
                return false;
            }
        }
        // Uninitialised slots: httparse writes only those it fills, so no per-request memset.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
        let slots = headers
            .get_mut(..cx.limits.max_headers.clamp(1, HEADER_SLOTS))
            .unwrap_or_default();
        let mut request = httparse::Request::new(&mut []);
        let ranges = &mut self.queue.ranges;
        let mut logged = false;
        let (outcome, consumed) = match request.parse_with_uninit_headers(available, slots) {
            Ok(httparse::Status::Complete(head_len)) => {
                let path = cx.buffers.path_scratch();
                let outcome = request::respond(&request, path, ranges, cache, cx.limits);
                if let Some(log) = cx.log.as_deref_mut() {
                    let body = response::body_len(&outcome.response, cache, ranges);
                    log_request(log, cx.unix_secs, peer, Some(&request), &outcome, body);
                    logged = true;
                }
                (outcome, head_len)
            }
            Ok(httparse::Status::Partial) => {
                if !self.reader.is_full() {
                    return false;
                }
                // The head does not fit in the buffer. nginx tells the two cases apart too.
                let status = if available.contains(&b'\n') {
                    Status::HeaderFieldsTooLarge
                } else {
                    Status::UriTooLong
                };
                (failure(status), available.len())
            }
            Err(error) => (
                failure(parse_error_status(error, available)),
                available.len(),
            ),
        };
        if !logged && let Some(log) = cx.log.as_deref_mut() {
            let body = response::body_len(&outcome.response, cache, ranges);
            log_request(log, cx.unix_secs, peer, None, &outcome, body);
        }
        self.reader.consume(consumed, outcome.body_to_skip);
        // A request came: the keep-alive clock starts again after its response.
        self.keepalive_deadline = None;
        self.requests = self.requests.saturating_add(1);
        let mut response = outcome.response;
        let limit = cx.limits.max_requests_per_connection;
        if (limit > 0 && self.requests >= limit) || cx.draining {
            // nginx's keepalive_requests, or a graceful stop: this is the last request of the
            // connection.
            response.connection = ConnectionHeader::Close;
        }
        cx.counters.requests += 1;
        if parsed_before > 0 || !self.queue.is_empty() {
            cx.counters.pipelined_requests += 1;
        }
        if response.closes() {
            self.phase = Phase::Closing;
        }
        let arrived = self.reader.last_read.or(Some(cx.now));
        self.queue
            .push(response, arrived, outcome.malformed, cache, cx.date);
        true
    }
}

/// A closed connection: reads and drops its input, and resets it at the lingering deadline if
/// the peer has not finished by then (once finished, the netstack frees it).
fn linger_on<S: ByteStream + ?Sized>(
    linger: &mut Option<Linger>,
    stream: &mut S,
    cx: &mut HttpContext<'_>,
) {
    let Some(state) = linger.as_mut() else {
        return;
    };
    let input = stream.discard() > 0;
    state.observe(
        cx.now,
        input,
        stream.unacked(),
        !stream.may_recv(),
        cx.limits,
    );
    if cx.now >= state.deadline() {
        *linger = None;
        if stream.abort() {
            cx.counters.lingering_aborts += 1;
        }
    }
}

/// Writes the access-log line of one answered request (`request` is `None` when its head
/// could not be parsed).
fn log_request(
    log: &mut AccessLog,
    unix_secs: u64,
    peer: Option<IpAddr>,
    request: Option<&httparse::Request<'_, '_>>,
    outcome: &request::Outcome,
    body_bytes: usize,
) {
    let header = |name: &str| {
        request
            .and_then(|r| r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)))
            .map(|h| h.value)
    };
    log.record(
        unix_secs,
        &LogEntry {
            peer,
            method: request.and_then(|r| r.method),
            target: request.and_then(|r| r.path),
            version: request.and_then(|r| r.version),
            status: outcome.response.reply.code(),
            body_bytes,
            referer: header("referer"),
            user_agent: header("user-agent"),
        },
    );
}

/// A response that closes the connection, for a request that could not be parsed.
fn failure(status: Status) -> request::Outcome {
    request::Outcome {
        response: Response {
            reply: Reply::Status(status),
            head_only: false,
            connection: ConnectionHeader::Close,
            interim_continue: false,
        },
        body_to_skip: 0,
        malformed: true,
    }
}

/// Whether a connection opened with a protocol other than HTTP/1.
#[derive(Debug, PartialEq, Eq)]
enum Foreign {
    No,
    /// Too few bytes to tell.
    Maybe,
    Yes,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4), sent by prior-knowledge clients.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Recognises a TLS handshake record (type 22, version 3.x: RFC 8446 §5.1) or an SSLv2-style
/// hello (high bit set), and the HTTP/2 preface, at the start of a request.
fn foreign_protocol(bytes: &[u8]) -> Foreign {
    match bytes {
        [0x16] => Foreign::Maybe,
        [0x16, 0x03, ..] => Foreign::Yes,
        [first, ..] if *first >= 0x80 => Foreign::Yes,
        _ if bytes.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(bytes) => Foreign::Maybe,
        _ if bytes.starts_with(H2_PREFACE) => Foreign::Yes,
        _ => Foreign::No,
    }
}

/// The status for an httparse error. httparse reports any version other than HTTP/1.0 and
/// HTTP/1.1 as a version error; a well-formed `HTTP/x.y` gets 505 (RFC 9110 §15.6.6), anything
/// else 400.
fn parse_error_status(error: httparse::Error, head: &[u8]) -> Status {
    match error {
        httparse::Error::TooManyHeaders => Status::HeaderFieldsTooLarge,
        httparse::Error::Version if looks_like_http_version(head) => Status::VersionNotSupported,
        _ => Status::BadRequest,
    }
}

/// Whether the request line (after any leading blank lines) ends in `HTTP/<digit>.<digit>`.
fn looks_like_http_version(head: &[u8]) -> bool {
    let Some(first) = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| !line.is_empty())
    else {
        return false;
    };
    let version = first.rsplit(|&b| b == b' ').next().unwrap_or_default();
    matches!(
        version,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit()
    )
}

#[cfg(test)]
mod tests;
