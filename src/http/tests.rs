//! End-to-end tests of the HTTP layer over a fake byte stream with a tiny send window.

use std::collections::VecDeque;
use std::sync::Arc;

use super::*;
use crate::cache::Lookup;
use crate::cache::tests::TempTree;
use sirocco_netstack::Duration;

/// Sun, 06 Nov 1994 08:49:37 GMT
const NOW: u64 = 784_111_777;
const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

/// The client side: bytes it sent that the server has not read, a send window that only an
/// explicit `ack` reopens, and everything the server wrote.
struct FakeStream {
    inbound: VecDeque<u8>,
    /// Most bytes one `recv` hands out.
    recv_chunk: usize,
    window: usize,
    in_flight: usize,
    out: Vec<u8>,
    peer_closed: bool,
    closed: bool,
    /// The handshake is complete.
    established: bool,
    aborted: bool,
    /// What `send_cached` took: (arena offset, bytes).
    cached: Vec<(usize, usize)>,
}

impl FakeStream {
    fn new(window: usize) -> FakeStream {
        FakeStream {
            inbound: VecDeque::new(),
            recv_chunk: usize::MAX,
            window,
            in_flight: 0,
            out: Vec::new(),
            peer_closed: false,
            closed: false,
            established: true,
            aborted: false,
            cached: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.inbound.extend(bytes);
    }
}

impl ByteStream for FakeStream {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.recv_chunk).min(self.inbound.len());
        for slot in buf.iter_mut().take(n) {
            *slot = self.inbound.pop_front().unwrap_or(0);
        }
        n
    }

    fn send(&mut self, data: &[u8]) -> usize {
        assert!(!self.closed, "send after close");
        let n = data.len().min(self.window - self.in_flight);
        self.out.extend_from_slice(&data[..n]);
        self.in_flight += n;
        n
    }

    fn send_cached(&mut self, tree: &EngineTree, start: usize, body: &[u8]) -> usize {
        let arena = tree.payload();
        assert_eq!(
            arena.bytes().get(start..start + body.len()),
            Some(body),
            "the body is the arena's bytes at its offset"
        );
        let n = self.send(body);
        self.cached.push((start, n));
        n
    }

    fn may_recv(&self) -> bool {
        !(self.peer_closed && self.inbound.is_empty())
    }

    fn close(&mut self) {
        // One close path: a connection is closed once.
        assert!(!self.closed, "closed twice");
        self.closed = true;
    }

    fn established(&self) -> bool {
        self.established
    }

    fn unacked(&self) -> usize {
        self.in_flight
    }

    fn abort(&mut self) -> bool {
        assert!(!self.aborted, "aborted twice");
        self.aborted = true;
        true
    }
}

/// A site, a connection and its context, driven like the netstack would drive them.
struct Harness {
    _tree: TempTree,
    cache: EngineTree,
    /// The netstack's clock, as `serve` sees it.
    now: Instant,
    date: DateHeader,
    limits: HttpLimits,
    counters: HttpCounters,
    conn: HttpConn,
    stream: FakeStream,
    calls: usize,
    /// The bytes `take_output` returned last, unconverted.
    last_raw: Vec<u8>,
    log: Option<crate::access_log::AccessLog>,
    buffers: RequestBuffers,
    /// Passed as `HttpContext::draining`.
    draining: bool,
}

/// What follows the first response head in `out`.
fn after_head(out: &[u8]) -> &[u8] {
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    &out[at + 4..]
}

fn big_body() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// A stylesheet long enough for a gzip variant to pay.
fn stylesheet() -> Vec<u8> {
    b"body { margin: 0; padding: 0; font-family: sans-serif; }\n".repeat(40)
}

impl Harness {
    fn new(window: usize) -> Harness {
        Harness::with_options(window, &crate::cache::LoadOptions::default())
    }

    fn with_options(window: usize, options: &crate::cache::LoadOptions) -> Harness {
        let tree = TempTree::new("http");
        tree.write("site.css", &stylesheet());
        tree.write("app.js", &b"console.log('sirocco');\n".repeat(30));
        tree.write(
            "app.js.gz",
            &crate::cache::encoding_for_tests::gzip(&b"console.log('sirocco');\n".repeat(30)),
        );
        tree.write("index.html", b"<h1>home</h1>\n");
        tree.write("hello.txt", b"hello, world\n");
        tree.write("café.txt", b"au lait\n");
        tree.write("big.bin", &big_body());
        tree.write("docs/index.html", b"docs");
        tree.mkdir("empty");
        for i in 0..10 {
            tree.write(&format!("p/{i}.txt"), format!("page {i}").as_bytes());
        }
        let cache = ContentCache::load_with(&tree.0, options, &mut |_| {}).expect("load site");
        let mut date = DateHeader::default();
        date.update(NOW);
        Harness {
            _tree: tree,
            cache: EngineTree::new(Arc::new(cache)),
            now: Instant::from_secs(0),
            date,
            limits: HttpLimits::default(),
            counters: HttpCounters::default(),
            conn: HttpConn::default(),
            stream: FakeStream::new(window),
            calls: 0,
            last_raw: Vec::new(),
            log: None,
            buffers: RequestBuffers::default(),
            draining: false,
        }
    }

    /// One netstack `serve_ready` call.
    fn serve_once(&mut self) {
        let mut cx = HttpContext {
            cache: &self.cache,
            draining: self.draining,
            now: self.now,
            date: &self.date,
            limits: &self.limits,
            counters: &mut self.counters,
            buffers: &mut self.buffers,
            log: self.log.as_mut(),
            unix_secs: NOW,
        };
        serve(&mut self.stream, &mut self.conn, &mut cx);
        self.calls += 1;
    }

    /// Serves, ACKs everything sent, and repeats until nothing changes.
    fn run(&mut self) {
        for _ in 0..100_000 {
            let before = (
                self.stream.out.len(),
                self.stream.inbound.len(),
                self.stream.closed,
            );
            self.serve_once();
            self.stream.in_flight = 0;
            let after = (
                self.stream.out.len(),
                self.stream.inbound.len(),
                self.stream.closed,
            );
            if before == after {
                return;
            }
        }
        panic!("connection never settled");
    }

    fn request(&mut self, bytes: &str) -> String {
        self.stream.push(bytes.as_bytes());
        self.run();
        self.take_output()
    }

    /// The raw bytes of a body taken from `take_output`'s lossy text: re-read from the
    /// stream instead, since gzip is not UTF-8.
    fn stream_bytes_of(&self, _lossy_body: &str) -> Vec<u8> {
        let out = &self.last_raw;
        let at = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        out[at..].to_vec()
    }

    fn take_output(&mut self) -> String {
        self.last_raw = std::mem::take(&mut self.stream.out);
        String::from_utf8_lossy(&self.last_raw).into_owned()
    }

    fn file(&self, path: &str) -> crate::cache::CachedFile<'_> {
        match self.cache.lookup(path.as_bytes()) {
            Lookup::File(id) => self.cache.file(id),
            other => panic!("{path}: {other:?}"),
        }
    }

    /// The exact 200 response for `path`, with `connection` lines before the blank line.
    fn full(&self, path: &str, connection: &str, with_body: bool) -> Vec<u8> {
        let file = self.file(path);
        let mut out = file.head.to_vec();
        out.extend_from_slice(DATE.as_bytes());
        out.extend_from_slice(connection.as_bytes());
        out.extend_from_slice(b"\r\n");
        if with_body {
            out.extend_from_slice(file.body);
        }
        out
    }

    fn status(&self, status: Status, extra: &str, connection: &str) -> String {
        let (head, body) = self.cache.status_page(status);
        format!(
            "{}{extra}{DATE}{connection}\r\n{}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(body)
        )
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CLOSE: &str = "Connection: close\r\n";

#[test]
fn get_returns_head_date_and_body_byte_exact() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert!(out.contains("Content-Type: text/plain; charset=utf-8\r\n"));
    assert!(!h.stream.closed, "HTTP/1.1 keeps the connection open");
    assert_eq!(h.counters.requests, 1);
    assert_eq!(h.counters.responses_2xx, 1);
    assert_eq!(h.counters.bytes_sent, out.len() as u64);
}

#[test]
fn responses_are_counted_when_sent_not_when_parsed() {
    // A 1 MiB answer through a window of 1 KiB: parsed at once, counted only when its last
    // byte is in the socket.
    let mut h = Harness::new(1024);
    h.stream.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    h.serve_once();
    assert_eq!(h.counters.requests, 1);
    assert_eq!(h.counters.responses_2xx, 0, "nothing is sent yet but 1 KiB");
    // The client ACKs the first KiB; the rest streams out.
    h.stream.in_flight = 0;
    h.run();
    assert_eq!(h.counters.responses_2xx, 1);
    assert_eq!(h.stream.out, h.full("/big.bin", "", true));
}

#[test]
fn head_sends_no_body_but_keeps_content_length() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", false)));
    assert!(out.contains("Content-Length: 13\r\n"));
    assert!(out.ends_with("\r\n\r\n"));
}

#[test]
fn keep_alive_serves_sequential_requests_on_one_connection() {
    let mut h = Harness::new(64 * 1024);
    for path in ["/hello.txt", "/", "/docs/"] {
        let out = h.request(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {out}");
        assert!(!h.stream.closed);
    }
    assert_eq!(h.counters.responses_2xx, 3);
    assert_eq!(h.counters.pipelined_requests, 0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut h = Harness::new(64 * 1024);
    let requests: String = (0..10)
        .map(|i| format!("GET /p/{i}.txt HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    let out = h.request(&requests);
    let expected: Vec<u8> = (0..10)
        .flat_map(|i| h.full(&format!("/p/{i}.txt"), "", true))
        .collect();
    assert_eq!(out, text(&expected));
    assert_eq!(h.counters.requests, 10);
    assert_eq!(h.counters.pipelined_requests, 9);
}

#[test]
fn pipelining_beyond_the_queue_limit_still_answers_everything() {
    let requests: String = (0..10)
        .map(|i| format!("GET /p/{i}.txt HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    // A window that holds everything: one call must answer all ten, since the netstack has no
    // reason to call again.
    let mut h = Harness::new(64 * 1024);
    h.limits.max_pipelined = 2;
    h.stream.push(requests.as_bytes());
    h.serve_once();
    let expected: Vec<u8> = (0..10)
        .flat_map(|i| h.full(&format!("/p/{i}.txt"), "", true))
        .collect();
    assert_eq!(text(&h.stream.out), text(&expected));

    // A small window: answered across calls as ACKs arrive.
    let mut h = Harness::new(300);
    h.limits.max_pipelined = 2;
    let out = h.request(&requests);
    assert_eq!(out, text(&expected));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked_for() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        out,
        text(&h.full("/hello.txt", "Connection: keep-alive\r\n", true))
    );
    assert!(!h.stream.closed);

    let out = h.request("GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", CLOSE, true)));
    assert!(h.stream.closed);
}

#[test]
fn connection_close_closes_after_the_body_and_ignores_what_follows() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n\r\n\
         GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(out, text(&h.full("/hello.txt", CLOSE, true)));
    assert!(h.stream.closed);
    assert_eq!(h.counters.requests, 1);
}

#[test]
fn other_methods_get_405_with_allow_and_the_connection_continues() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(out, h.status(Status::MethodNotAllowed, "", ""));
    assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"));
    assert!(!h.stream.closed);
    // Methods unknown to HTTP get the same answer: a static site allows only these.
    let out = h.request("BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::MethodNotAllowed, "", ""));
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn unsupported_versions_get_505_and_garbage_gets_400() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::VersionNotSupported, "", CLOSE));
    assert!(h.stream.closed);

    let mut h = Harness::new(64 * 1024);
    let out = h.request("\u{1}\u{2}garbage\r\n\r\n");
    assert_eq!(out, h.status(Status::BadRequest, "", CLOSE));
    assert!(h.stream.closed);
    assert_eq!(h.counters.parse_errors, 1);

    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET / FOO/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::BadRequest, "", CLOSE));
}

#[test]
fn parse_errors_are_counted_when_their_answer_is_sent() {
    // A 400 through a window of 16 bytes: parsed at once, counted (and the connection
    // closed) only when its last byte is in the socket.
    let mut h = Harness::new(16);
    h.stream.push(b"\x01\x02garbage\r\n\r\n");
    h.serve_once();
    assert_eq!(h.counters.requests, 1);
    assert_eq!(
        (h.counters.parse_errors, h.counters.responses_4xx),
        (0, 0),
        "only 16 bytes of the 400 are sent"
    );
    assert!(!h.stream.closed);
    // The client ACKs those; the rest goes out.
    h.stream.in_flight = 0;
    h.run();
    assert_eq!(h.counters.parse_errors, 1);
    assert_eq!(h.counters.responses_4xx, 1);
    assert!(h.stream.closed);
}

#[test]
fn bad_framing_and_host_get_400_and_close() {
    for request in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        "GET nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a%4 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut h = Harness::new(64 * 1024);
        let out = h.request(request);
        assert_eq!(out, h.status(Status::BadRequest, "", CLOSE), "{request:?}");
        assert!(h.stream.closed, "{request:?}");
    }
    // HTTP/1.0 may omit Host.
    let mut h = Harness::new(64 * 1024);
    assert!(
        h.request("GET / HTTP/1.0\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
}

#[test]
fn transfer_encoding_gets_501_and_close() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(out, h.status(Status::NotImplemented, "", CLOSE));
    assert!(h.stream.closed);
}

#[test]
fn dot_segments_never_escape_the_root() {
    let mut h = Harness::new(64 * 1024);
    for target in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/docs/../../../etc/passwd",
        "/..%2f..%2fetc/passwd",
    ] {
        let out = h.request(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(
            out.starts_with("HTTP/1.1 404 ") || out.starts_with("HTTP/1.1 400 "),
            "{target}: {out}"
        );
        assert!(!out.contains("root:"), "{target}");
        h.stream.closed = false;
        h.conn.reset();
    }
    let out = h.request("GET /docs/../../hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    let out = h.request("GET http://x/%2e%2e/hello.txt?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
}

#[test]
fn directories_redirect_forbid_and_missing_files_404() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET /docs HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        out,
        h.status(Status::MovedPermanently, "Location: /docs/\r\n", "")
    );
    let out = h.request("GET /empty/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::Forbidden, "", ""));
    let out = h.request("GET /nope.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::NotFound, "", ""));
    assert!(out.contains("<title>404 Not Found</title>"));
    let out = h.request("HEAD /nope.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.ends_with("\r\n\r\n") && !out.contains("<html>"));
    assert!(!h.stream.closed);
    assert_eq!(h.counters.responses_3xx, 1);
    assert_eq!(h.counters.responses_4xx, 3);
}

#[test]
fn large_file_streams_through_a_small_window_byte_exact() {
    let mut h = Harness::new(1000);
    h.stream.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    h.run();
    assert_eq!(h.stream.out, h.full("/big.bin", "", true));
    assert_eq!(h.file("/big.bin").body, &big_body()[..]);
    assert!(h.calls > 1000, "streamed in {} calls", h.calls);
    h.stream.out.clear();
    // The connection is still usable afterwards.
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
}

#[test]
fn bodies_go_by_reference_and_heads_are_copied() {
    let mut h = Harness::new(64 * 1024);
    let body = h.file("/hello.txt").body;
    let at = h.cache.arena_offset(body).expect("bodies are in the arena");
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.stream.cached, [(at, 13)]);
    // A range, and each range of a multipart answer.
    h.stream.cached.clear();
    h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\n\r\n");
    assert_eq!(h.stream.cached, [(at + 2, 3)]);
    h.stream.cached.clear();
    h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,5-7\r\n\r\n");
    assert_eq!(h.stream.cached, [(at, 2), (at + 5, 3)]);
    // Heads, HEAD answers and status pages are copied.
    h.stream.cached.clear();
    h.request("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    h.request("GET /missing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(h.stream.cached, []);
}

#[test]
fn the_send_window_bounds_what_is_unacknowledged() {
    // The socket would take everything; the window lets 1000 bytes out per ACK.
    let mut h = Harness::new(1 << 20);
    h.limits.send_window = 1000;
    h.stream.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    h.serve_once();
    assert_eq!(h.stream.out.len(), 1000);
    h.serve_once();
    assert_eq!(h.stream.out.len(), 1000, "nothing more until an ACK");
    h.stream.in_flight = 400;
    h.serve_once();
    assert_eq!(h.stream.out.len(), 1600);
    h.stream.in_flight = 0;
    h.run();
    let full = h.full("/big.bin", "", true);
    assert!(
        h.stream.out == full,
        "{} of {} bytes",
        h.stream.out.len(),
        full.len()
    );
}

#[test]
fn request_arriving_one_byte_at_a_time() {
    let mut h = Harness::new(64 * 1024);
    h.stream.recv_chunk = 1;
    let request = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    for byte in request {
        assert!(h.stream.out.is_empty());
        h.stream.push(&[*byte]);
        h.serve_once();
    }
    assert_eq!(h.stream.out, h.full("/hello.txt", "", true));
}

#[test]
fn oversized_heads_get_431_or_414_and_close() {
    let mut h = Harness::new(64 * 1024);
    let huge = "a".repeat(10_000);
    let out = h.request(&format!(
        "GET / HTTP/1.1\r\nHost: x\r\nCookie: {huge}\r\n\r\n"
    ));
    assert_eq!(out, h.status(Status::HeaderFieldsTooLarge, "", CLOSE));
    assert!(h.stream.closed);

    let mut h = Harness::new(64 * 1024);
    let out = h.request(&format!("GET /{huge} HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(out, h.status(Status::UriTooLong, "", CLOSE));

    let mut h = Harness::new(64 * 1024);
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    let out = h.request(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"));
    assert_eq!(out, h.status(Status::HeaderFieldsTooLarge, "", CLOSE));
}

#[test]
fn request_bodies_are_discarded_up_to_the_limit() {
    let mut h = Harness::new(64 * 1024);
    let body = "z".repeat(20_000);
    let out = h.request(&format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}\
         GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    ));
    let once = text(&h.full("/hello.txt", "", true));
    assert_eq!(out, format!("{once}{once}"));

    let out = h.request("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    assert_eq!(out, h.status(Status::ContentTooLarge, "", CLOSE));
    assert!(h.stream.closed);
}

#[test]
fn conditional_and_range_requests() {
    let mut h = Harness::new(64 * 1024);
    let etag = h.file("/hello.txt").etag.to_owned();
    let out = h.request(&format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    let not_modified = text(h.file("/hello.txt").not_modified_head);
    assert_eq!(out, format!("{not_modified}{DATE}\r\n"));
    assert_eq!(h.counters.responses_3xx, 1);

    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n");
    let partial = text(h.file("/hello.txt").partial_head);
    assert_eq!(
        out,
        format!("{partial}Content-Range: bytes 0-4/13\r\nContent-Length: 5\r\n{DATE}\r\nhello")
    );

    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=99-\r\n\r\n");
    assert_eq!(
        out,
        h.status(
            Status::RangeNotSatisfiable,
            "Content-Range: bytes */13\r\n",
            ""
        )
    );

    // HEAD ignores Range.
    let out = h.request("HEAD /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", false)));
}

#[test]
fn peer_half_close_is_answered_then_closed() {
    let mut h = Harness::new(64 * 1024);
    h.stream
        .push(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hel");
    h.stream.peer_closed = true;
    h.run();
    assert_eq!(h.stream.out, h.full("/hello.txt", "", true));
    assert!(h.stream.closed);
}

#[test]
fn reset_clears_state_and_keeps_buffers() {
    let mut h = Harness::new(10);
    h.stream
        .push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /");
    h.serve_once();
    // "GET /" is not parsed yet: the connection still holds its request buffer.
    let capacity = h.conn.reader.buf.capacity();
    assert!(capacity > 0);
    assert!(!h.conn.queue.is_empty());
    h.conn.reset();
    assert!(h.conn.queue.is_empty());
    assert_eq!(
        (
            h.conn.reader.start,
            h.conn.reader.end,
            h.conn.reader.body_to_skip
        ),
        (0, 0, 0)
    );
    assert_eq!(h.conn.reader.buf.capacity(), capacity);
}

#[test]
fn the_request_buffer_is_lent_only_while_bytes_are_unparsed() {
    let mut h = Harness::new(64 * 1024);
    h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        h.conn.reader.buf.is_empty(),
        "an idle connection holds no buffer"
    );
    assert_eq!(h.buffers.idle(), 1);
    h.request("GET /hello.txt HTTP/1.1\r\nHo");
    assert_eq!(h.conn.reader.buf.len(), h.limits.max_request_head);
    assert_eq!(h.buffers.idle(), 0);
    let out = h.request("st: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert!(h.conn.reader.buf.is_empty());
    assert_eq!(h.buffers.idle(), 1, "the same buffer came back");
}

#[test]
fn counter_fields_name_every_counter() {
    let counters = HttpCounters {
        requests: 1,
        responses_4xx: 2,
        ..HttpCounters::default()
    };
    let fields: Vec<_> = counters.fields().collect();
    assert_eq!(fields.len(), 14);
    assert!(fields.contains(&("requests", 1)));
    assert!(fields.contains(&("responses_4xx", 2)));
}

#[test]
fn time_to_first_byte_runs_from_the_request_to_its_first_response_byte() {
    // A one-byte window that reopens each millisecond: the second of two pipelined requests
    // gets its first byte once every byte of the first response is out.
    let mut h = Harness::new(1);
    let get = "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    h.stream.push(format!("{get}{get}").as_bytes());
    h.now = Instant::from_millis(7);
    h.serve_once();
    let first = h.counters.time_to_first_byte.clone();
    assert_eq!(first.count(), 1, "the first response started at once");
    assert_eq!(first.sum_micros(), 0);
    let one = h.full("/hello.txt", "", true).len() as i64;
    for ms in 1..=one {
        h.now = Instant::from_millis(7 + ms);
        h.stream.in_flight = 0;
        h.serve_once();
    }
    let ttfb = &h.counters.time_to_first_byte;
    assert_eq!(ttfb.count(), 2);
    assert_eq!(ttfb.sum_micros(), one as u64 * 1000);
    assert_eq!(
        h.counters.responses_2xx, 1,
        "the second is still being sent"
    );
    // 0 is at most 50 µs; `one` ms (a hundred or so) is above 50 ms and at most 250 ms.
    let buckets: Vec<_> = ttfb.cumulative().collect();
    assert_eq!(buckets[0], (Some(50), 1));
    assert_eq!(buckets[9], (Some(50_000), 1));
    assert_eq!(buckets[11], (Some(250_000), 2));
}

#[test]
fn a_408_is_not_a_time_to_first_byte() {
    let mut h = Harness::new(64 * 1024);
    h.stream.push(b"GET /hello.txt HTTP/1.1\r\nHo");
    h.serve_once();
    h.now += h.limits.header_timeout;
    h.serve_once();
    assert_eq!(h.counters.header_timeouts, 1);
    assert_eq!(h.counters.responses_4xx, 1);
    assert_eq!(h.counters.time_to_first_byte.count(), 0);
}

#[test]
fn version_sniffing_for_505() {
    assert!(looks_like_http_version(b"GET / HTTP/2.0\r\n"));
    assert!(looks_like_http_version(b"\r\nGET / HTTP/1.2\r\nHost: x"));
    assert!(!looks_like_http_version(b"GET / FOO/1.1\r\n"));
    assert!(!looks_like_http_version(b""));
}

#[test]
fn random_input_never_panics_and_always_settles() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: [&[u8]; 12] = [
        b"GET ",
        b"HEAD ",
        b"/hello.txt",
        b"/%2e%2e/",
        b"%",
        b" HTTP/1.1\r\n",
        b" HTTP/1.0\r\n",
        b"Host: x\r\n",
        b"Content-Length: 3\r\n",
        b"Range: bytes=1-\r\n",
        b"\r\n",
        b"\0\xff:",
    ];
    let mut h = Harness::new(512);
    for _ in 0..300 {
        h.conn.reset();
        h.stream = FakeStream::new(1 + (next() % 2000) as usize);
        h.stream.recv_chunk = 1 + (next() % 64) as usize;
        for _ in 0..(next() % 40) {
            h.stream.push(pieces[(next() % 12) as usize]);
        }
        h.stream.peer_closed = next() % 2 == 0;
        h.run();
    }
    assert!(h.counters.requests > 0);
}

#[test]
fn options_answers_204_with_allow_for_a_path_and_for_the_server() {
    let mut h = Harness::new(64 * 1024);
    for target in ["/hello.txt", "*", "/no/such/file"] {
        let out = h.request(&format!("OPTIONS {target} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(out, h.status(Status::Options, "", ""), "{target}");
        assert!(out.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(out.contains("Allow: GET, HEAD, OPTIONS\r\n"));
        assert!(!out.contains("Content-Length"));
    }
    assert!(!h.stream.closed);
    // `*` names no resource for GET.
    let out = h.request("GET * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::BadRequest, "", CLOSE));
}

#[test]
fn malformed_transfer_encoding_gets_400_and_http10_transfer_encoding_too() {
    for request in [
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n",
        "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let mut h = Harness::new(64 * 1024);
        let out = h.request(request);
        assert_eq!(out, h.status(Status::BadRequest, "", CLOSE), "{request:?}");
        assert!(h.stream.closed);
    }
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(out, h.status(Status::NotImplemented, "", CLOSE));
}

#[test]
fn expect_100_continue_sends_the_interim_answer_then_reads_the_body() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let expected = format!(
        "HTTP/1.1 100 Continue\r\n\r\n{}",
        text(&h.full("/hello.txt", "", true))
    );
    assert_eq!(out, expected);
    // The body comes after the 100; it is dropped and the next request is served.
    let out = h.request("abcdeGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));

    // No body, or HTTP/1.0: no interim answer.
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    let out = h.request(
        "GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\nz",
    );
    assert_eq!(
        out,
        text(&h.full("/hello.txt", "Connection: keep-alive\r\n", true))
    );

    // Any other expectation: 417.
    let out = h.request("GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n");
    assert_eq!(out, h.status(Status::ExpectationFailed, "", CLOSE));
    assert!(h.stream.closed);
}

#[test]
fn a_head_that_does_not_complete_in_time_gets_408_and_close() {
    let mut h = Harness::new(64 * 1024);
    h.limits.header_timeout = Duration::from_secs(10);
    h.now = Instant::from_secs(100);
    assert_eq!(h.request("GET /hello.txt HTTP/1.1\r\nHo"), "");
    assert_eq!(h.conn.wake_at(), Some(Instant::from_secs(110)));
    // More bytes do not restart the clock (slowloris sends a byte at a time).
    h.now = Instant::from_secs(105);
    assert_eq!(h.request("s"), "");
    assert_eq!(h.conn.wake_at(), Some(Instant::from_secs(110)));
    // The netstack calls back at the deadline.
    h.now = Instant::from_secs(110);
    h.serve_once();
    let out = h.take_output();
    assert_eq!(out, h.status(Status::RequestTimeout, "", CLOSE));
    assert!(h.stream.closed);
    assert_eq!(h.counters.header_timeouts, 1);
    // Closed, the connection lingers: the 408 is not acknowledged yet, so the wake-up is
    // `lingering_time` away.
    assert_eq!(
        h.conn.wake_at(),
        Some(Instant::from_secs(110) + h.limits.lingering_time)
    );

    // A head that completes in time clears the deadline; an idle connection has only the
    // keep-alive one, from the end of the response.
    let mut h = Harness::new(64 * 1024);
    h.limits.header_timeout = Duration::from_secs(10);
    h.now = Instant::from_secs(100);
    assert_eq!(h.request("GET /hello.txt HTTP/1.1\r\n"), "");
    assert_eq!(h.conn.wake_at(), Some(Instant::from_secs(110)));
    h.now = Instant::from_secs(104);
    let out = h.request("Host: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.conn.reader.head_deadline, None);
    assert_eq!(h.conn.wake_at(), Some(Instant::from_secs(179)));
}

#[test]
fn tls_and_http2_prefaces_are_closed_without_a_byte() {
    let client_hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for opening in [&client_hello[..], preface.as_bytes()] {
        let mut h = Harness::new(64 * 1024);
        h.stream.push(opening);
        h.run();
        assert_eq!(h.take_output(), "", "{opening:?}");
        assert!(h.stream.closed);
        assert_eq!(h.counters.foreign_protocol, 1);
        assert_eq!(h.counters.requests, 0);
    }
    // A prefix of the preface waits for more.
    let mut h = Harness::new(64 * 1024);
    assert_eq!(h.request("PRI * HT"), "");
    assert!(!h.stream.closed);
    // When it turns out to be HTTP/1.1, "PRI" is just a method we do not allow.
    let out = h.request("TP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::MethodNotAllowed, "", ""));
}

#[test]
fn max_requests_per_connection_closes_after_the_last() {
    let mut h = Harness::new(64 * 1024);
    h.limits.max_requests_per_connection = 2;
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    let out = h.request(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(out, text(&h.full("/hello.txt", CLOSE, true)));
    assert!(h.stream.closed);
    assert_eq!(h.counters.requests, 2);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).expect("gunzip");
    out
}

#[test]
fn precompressed_variants_go_to_clients_that_accept_them() {
    let mut h = Harness::new(64 * 1024);
    let plain = b"console.log('sirocco');\n".repeat(30);
    let out = h.request("GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("\r\nContent-Encoding: gzip\r\n"), "{head}");
    assert!(head.contains("\r\nVary: Accept-Encoding\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/javascript"), "{head}");
    assert_eq!(gunzip(&h.stream_bytes_of(body)), plain);

    // Without Accept-Encoding, or with gzip refused: the file itself, still with Vary.
    for accept in ["", "Accept-Encoding: gzip;q=0, identity\r\n"] {
        let out = h.request(&format!("GET /app.js HTTP/1.1\r\nHost: x\r\n{accept}\r\n"));
        let (head, body) = out.split_once("\r\n\r\n").expect("a head");
        assert!(!head.contains("Content-Encoding"), "{head}");
        assert!(head.contains("\r\nVary: Accept-Encoding\r\n"), "{head}");
        assert_eq!(body.as_bytes(), &plain[..]);
    }
    // The .gz is also a file of its own; a file without variants has no Vary.
    let out = h.request("GET /app.js.gz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && !out.contains("Vary"));
    let out = h.request("GET /site.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    assert!(!out.contains("Vary") && !out.contains("Content-Encoding"));
}

#[test]
fn compress_builds_gzip_variants_and_cache_control_reaches_every_file_head() {
    let options = crate::cache::LoadOptions {
        cache_control: Some("public, max-age=60".into()),
        compress: true,
        max_bytes: None,
    };
    let mut h = Harness::with_options(64 * 1024, &options);
    let out = h.request("GET /site.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("\r\nContent-Encoding: gzip\r\n"), "{head}");
    assert!(
        head.contains("\r\nCache-Control: public, max-age=60\r\n"),
        "{head}"
    );
    assert_eq!(gunzip(&h.stream_bytes_of(body)), stylesheet());
    // Small files are not worth it.
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    assert!(!out.contains("Content-Encoding"));
    assert!(out.contains("\r\nCache-Control: public, max-age=60\r\n"));
    let etag = h.file("/hello.txt").etag.to_owned();
    let out = h.request(&format!(
        "GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
    ));
    assert!(out.starts_with("HTTP/1.1 304 "));
    assert!(out.contains("\r\nCache-Control: public, max-age=60\r\n"));
}

#[test]
fn a_new_tree_is_adopted_between_requests_never_inside_a_response() {
    let mut h = Harness::new(4096);
    // Start a 1 MiB download through a 4 KiB window, then swap in a tree where big.bin differs.
    h.stream.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..10 {
        h.serve_once();
        h.stream.in_flight = 0;
    }
    let tree = TempTree::new("http-reloaded");
    tree.write("big.bin", b"new content");
    let new_cache = Arc::new(ContentCache::load(&tree.0).expect("load new tree"));
    h.cache = EngineTree::new(Arc::clone(&new_cache));
    h.run();
    let out = std::mem::take(&mut h.stream.out);
    assert_eq!(
        after_head(&out),
        &big_body()[..],
        "the started download changed"
    );
    // The next request sees the new tree, and the connection holds the new cache only.
    let out = h.request("GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.ends_with("\r\n\r\nnew content"), "{out}");
    assert!(
        h.conn
            .cache
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c.shared(), &new_cache))
    );
}

#[test]
fn every_answered_request_gets_an_access_log_line() {
    let path = std::env::temp_dir().join(format!("sirocco-http-log-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut h = Harness::new(64 * 1024);
    h.log = Some(crate::access_log::AccessLog::open(&path).expect("open log"));
    h.request(
        "GET /hello.txt?x=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: test/1.0\r\nReferer: http://r/\r\n\r\n\
         HEAD /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\n\r\n\
         GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    h.request("\u{1}garbage\r\n\r\n");
    h.log = None;
    let text = std::fs::read_to_string(&path).expect("read log");
    let _ = std::fs::remove_file(&path);
    let lines: Vec<&str> = text.lines().collect();
    let time = "[06/Nov/1994:08:49:37 +0000]";
    assert_eq!(
        lines,
        [
            format!(
                "- - - {time} \"GET /hello.txt?x=1 HTTP/1.1\" 200 13 \"http://r/\" \"test/1.0\""
            ),
            format!("- - - {time} \"HEAD /hello.txt HTTP/1.1\" 200 0 \"-\" \"-\""),
            format!("- - - {time} \"GET /hello.txt HTTP/1.1\" 206 5 \"-\" \"-\""),
            format!(
                "- - - {time} \"GET /nope HTTP/1.1\" 404 {} \"-\" \"-\"",
                h.cache.status_page(Status::NotFound).1.len()
            ),
            format!(
                "- - - {time} \"-\" 400 {} \"-\" \"-\"",
                h.cache.status_page(Status::BadRequest).1.len()
            ),
        ]
    );
}

#[test]
fn several_ranges_get_multipart_byteranges_like_nginx() {
    let mut h = Harness::new(7); // a tiny window: every piece crosses send calls
    let file = h.file("/hello.txt");
    let (etag, modified_head) = (file.etag.to_owned(), text(file.multipart_head));
    let boundary = etag.trim_matches('"').to_owned();
    let body = format!(
        "\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/13\r\n\r\nhe\
         \r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 7-11/13\r\n\r\nworld\
         \r\n--{boundary}--\r\n"
    );
    let expected = format!(
        "{modified_head}Content-Type: multipart/byteranges; boundary={boundary}\r\nContent-Length: {}\r\n{DATE}\r\n{body}",
        body.len()
    );
    assert!(modified_head.starts_with("HTTP/1.1 206 Partial Content\r\n"));
    let request = "GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1, 7-11\r\n\r\n";
    let out = h.request(request);
    assert_eq!(out, expected);

    // Pipelined behind each other and behind a plain answer, each still exact.
    let out = h.request(&format!(
        "{request}GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n{request}"
    ));
    assert_eq!(
        out,
        format!(
            "{expected}{}{expected}",
            text(&h.full("/hello.txt", "", true))
        )
    );
    assert!(
        h.conn.queue.ranges.is_empty(),
        "the range list empties with the queue"
    );

    // Ranges that add up to more than the file get the whole file, as in nginx.
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,2-12\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s as i64)
}

const GET_HELLO: &str = "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn keep_alive_clock_starts_at_the_handshake_and_ignores_segments_without_data() {
    let mut h = Harness::new(64 * 1024);
    // The SYN is lent to the application too; the clock starts when the handshake completes.
    h.stream.established = false;
    h.serve_once();
    assert_eq!(h.conn.wake_at(), None);
    h.now = secs(2);
    h.stream.established = true;
    h.serve_once();
    assert_eq!(h.conn.wake_at(), Some(secs(77)));
    // TCP keepalive probes, ACKs and window probes call the application with no data: the
    // deadline stays where it is.
    for t in (12..77).step_by(10) {
        h.now = secs(t);
        h.serve_once();
        assert_eq!(h.conn.wake_at(), Some(secs(77)), "at {t} s");
        assert!(!h.stream.closed);
    }
    h.now = secs(77) - Duration::from_millis(1);
    h.serve_once();
    assert!(!h.stream.closed);
    // At the deadline: closed without a byte, counted, and lingering (nothing is unacked and
    // the peer is quiet, so `lingering_timeout` away).
    h.now = secs(77);
    h.serve_once();
    assert!(h.stream.closed);
    assert!(h.stream.out.is_empty());
    assert_eq!(h.counters.keepalive_timeouts, 1);
    assert_eq!(h.counters.requests, 0);
    assert_eq!(h.conn.wake_at(), Some(secs(82)));
}

#[test]
fn keep_alive_clock_runs_from_the_last_byte_of_the_last_response() {
    let mut h = Harness::new(64 * 1024);
    h.serve_once();
    assert_eq!(h.conn.wake_at(), Some(secs(75)));
    // A request at 70 s is served, and the clock starts again from its response.
    h.now = secs(70);
    let out = h.request(GET_HELLO);
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.conn.wake_at(), Some(secs(145)));
    // A large file through a small window: no keep-alive clock while it is being sent.
    h.now = secs(100);
    h.stream.push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    h.serve_once();
    assert_eq!(h.conn.wake_at(), None);
    let mut t = 100;
    while !h.conn.queue.is_empty() {
        t += 1;
        h.now = secs(t);
        h.stream.in_flight = 0;
        h.serve_once();
    }
    assert!(t > 110, "the file took {} s", t - 100);
    // Its last byte went into the socket at `t`.
    assert_eq!(h.conn.wake_at(), Some(secs(t + 75)));
    assert_eq!(h.counters.responses_2xx, 2);
    assert!(!h.stream.closed);
    h.now = secs(t + 75);
    h.serve_once();
    assert!(h.stream.closed);
    assert_eq!(h.counters.keepalive_timeouts, 1);
}

#[test]
fn the_first_byte_of_a_request_hands_over_to_the_head_timer() {
    let mut h = Harness::new(64 * 1024);
    h.serve_once();
    assert_eq!(h.conn.wake_at(), Some(secs(75)));
    h.now = secs(70);
    assert_eq!(h.request("GET /hel"), "");
    assert_eq!(h.conn.keepalive_deadline, None);
    // The head now has `header_timeout` (60 s) from its first byte, past the keep-alive
    // deadline it arrived under.
    assert_eq!(h.conn.wake_at(), Some(secs(130)));
    h.now = secs(100);
    let out = h.request("lo.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.conn.wake_at(), Some(secs(175)));
    assert_eq!(h.counters.keepalive_timeouts, 0);
}

#[test]
fn body_bytes_being_dropped_restart_the_keep_alive_clock() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.conn.wake_at(), Some(secs(75)));
    h.now = secs(50);
    assert_eq!(h.request("defg"), "");
    assert_eq!(h.conn.wake_at(), Some(secs(125)));
    h.now = secs(120);
    let out = h.request(&format!("hij{GET_HELLO}"));
    assert_eq!(out, text(&h.full("/hello.txt", "", true)));
    assert_eq!(h.conn.wake_at(), Some(secs(195)));
}

#[test]
fn a_closed_connection_drains_its_input_and_is_reset_within_the_lingering_bounds() {
    let mut h = Harness::new(64 * 1024);
    h.now = secs(10);
    h.stream
        .push(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /x");
    h.serve_once();
    let out = h.take_output();
    assert_eq!(out, text(&h.full("/hello.txt", CLOSE, true)));
    assert!(h.stream.closed);
    assert!(h.stream.inbound.is_empty(), "what followed was dropped");
    assert!(
        h.conn.reader.buf.is_empty(),
        "the request buffer went back to the pool"
    );
    // The answer is not acknowledged yet: lingering waits for it, `lingering_time` at most
    // without progress.
    assert_eq!(h.conn.wake_at(), Some(secs(40)));
    // Input is read and dropped at once, whatever it is: the window never closes.
    h.now = secs(12);
    h.stream.push(&[0x16; 3000]);
    h.serve_once();
    assert!(h.stream.inbound.is_empty());
    assert_eq!(h.conn.wake_at(), Some(secs(40)));
    // The answer is acknowledged at 15 s: from now on `lingering_timeout` of quiet, and
    // `lingering_time` in all.
    h.now = secs(15);
    h.stream.in_flight = 0;
    h.serve_once();
    assert_eq!(h.conn.wake_at(), Some(secs(20)));
    for t in (18..45).step_by(4) {
        h.now = secs(t);
        h.stream.push(b"more");
        h.serve_once();
        assert!(h.stream.inbound.is_empty());
        assert_eq!(h.conn.wake_at(), Some(secs(t + 5).min(secs(45))), "at {t}");
    }
    assert!(!h.stream.aborted);
    h.now = secs(45);
    h.stream.push(b"more");
    h.serve_once();
    assert!(h.stream.aborted);
    assert_eq!(h.counters.lingering_aborts, 1);
    assert_eq!(h.conn.wake_at(), None);
    assert!(h.stream.out.is_empty(), "nothing is sent after the close");
    // Later calls (the netstack frees the cell after the reset) do nothing.
    h.now = secs(46);
    h.serve_once();
    assert_eq!(h.counters.lingering_aborts, 1);
}

#[test]
fn a_quiet_peer_is_reset_after_the_lingering_timeout_and_a_finished_one_is_not() {
    for (peer_finishes, wake) in [(false, 105), (true, 130)] {
        let mut h = Harness::new(64 * 1024);
        h.limits.lingering_timeout = Duration::from_secs(5);
        h.limits.lingering_time = Duration::from_secs(30);
        h.now = secs(100);
        let out = h.request("GET /nothing HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(h.stream.closed);
        // `request` acknowledged the answer at once.
        assert_eq!(h.conn.wake_at(), Some(secs(105)));
        if peer_finishes {
            // The peer's FIN is in; only the acknowledgement of ours is awaited.
            h.now = secs(101);
            h.stream.peer_closed = true;
            h.serve_once();
        }
        assert_eq!(h.conn.wake_at(), Some(secs(wake)));
        h.now = secs(wake) - Duration::from_millis(1);
        h.serve_once();
        assert!(!h.stream.aborted);
        h.now = secs(wake);
        h.serve_once();
        assert!(h.stream.aborted);
        assert_eq!(h.counters.lingering_aborts, 1);
    }
}

#[test]
fn every_kind_of_close_lingers() {
    let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let mut h = Harness::new(64 * 1024);
    h.stream.push(&client_hello);
    h.serve_once();
    assert!(h.stream.closed);
    // The rest of the ClientHello is read and dropped.
    h.stream.push(&[0xab; 500]);
    h.serve_once();
    assert!(h.stream.inbound.is_empty());
    assert_eq!(h.conn.wake_at(), Some(secs(5)));

    // A peer that half-closes after its request: answered, closed, lingering for our FIN.
    let mut h = Harness::new(64 * 1024);
    h.stream.push(GET_HELLO.as_bytes());
    h.stream.peer_closed = true;
    h.run();
    assert!(h.stream.closed);
    assert_eq!(h.conn.wake_at(), Some(secs(30)));

    // The keep-alive timeout, with the netstack lending the connection at its deadline.
    let mut h = Harness::new(64 * 1024);
    h.limits.keepalive_timeout = Duration::from_secs(3);
    h.serve_once();
    h.now = h.conn.wake_at().expect("a keep-alive deadline");
    assert_eq!(h.now, secs(3));
    h.serve_once();
    assert!(h.stream.closed);
    h.now = h.conn.wake_at().expect("a lingering deadline");
    assert_eq!(h.now, secs(8));
    h.serve_once();
    assert!(h.stream.aborted);
    assert_eq!(
        (h.counters.keepalive_timeouts, h.counters.lingering_aborts),
        (1, 1)
    );
}

#[test]
fn a_graceful_stop_closes_idle_connections_and_ends_busy_ones_after_their_response() {
    // Idle: waiting for a request when the stop begins. Closed at once, with a FIN, nothing
    // sent.
    let mut idle = Harness::new(64 * 1024);
    let first = idle.request("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(first.contains("Connection: keep-alive") || !first.contains("Connection: close"));
    assert!(!idle.stream.closed);
    idle.draining = true;
    idle.serve_once();
    assert!(
        idle.stream.closed,
        "an idle keep-alive connection is closed"
    );
    assert!(idle.stream.out.is_empty(), "closed without a byte");
    assert_eq!(idle.counters.drain_closes, 1);

    // Busy: a download through a small window. It finishes whole; then the connection closes.
    let mut busy = Harness::new(4096);
    busy.stream
        .push(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    busy.serve_once();
    busy.draining = true;
    busy.serve_once();
    assert!(!busy.stream.closed, "a response in flight is not cut");
    busy.stream.in_flight = 0;
    busy.run();
    assert!(
        busy.stream.closed,
        "closed once its response is out: queue {} phase {:?} keepalive {:?} out {}",
        busy.conn.queue.len(),
        busy.conn.phase,
        busy.conn.keepalive_deadline,
        busy.stream.out.len()
    );
    let out = std::mem::take(&mut busy.stream.out);
    assert_eq!(
        after_head(&out),
        &big_body()[..],
        "the download completed whole"
    );

    // A request that comes while stopping is answered, as the connection's last.
    let mut late = Harness::new(64 * 1024);
    late.draining = true;
    let answer = late.request("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
    assert!(late.stream.closed);
}

#[test]
fn names_are_found_by_their_utf8_bytes_and_other_bytes_find_nothing() {
    let mut h = Harness::new(64 * 1024);
    let out = h.request("GET /caf%C3%A9.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nau lait\n"), "{out}");
    // The same name in Latin-1: a valid path whose bytes are not UTF-8, so no name matches.
    let out = h.request("GET /caf%E9.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::NotFound, "", ""));
    let out = h.request("GET /%FF/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(out, h.status(Status::NotFound, "", ""));
    assert!(!h.stream.closed);
}
