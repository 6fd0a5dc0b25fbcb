//! A tiny HTTP/1.1 client for `sirocco demo --check`: one `GET` per connection over a kernel
//! TCP socket, so the demo needs no curl.
//!
//! It sends `GET PATH HTTP/1.1` with `Host` and `Connection: close` (an IPv6 literal in
//! brackets, as RFC 9110 §7.2 and RFC 3986 §3.2.2 write it: [`host_for`]), reads the status line and
//! headers, then the body by `Content-Length`, by chunked transfer coding, or until the server
//! closes, all within one deadline. [`parse_head`], which frames the body, is also the one
//! response-head parser of the simulator and the trace replay (`sirocco-tools`). Run it on a thread inside a namespace
//! ([`sirocco_drivers::netns::in_namespace`]) to fetch from that namespace's side of a lab.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest status line plus headers accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Header lines parsed per response head.
pub const MAX_HEADERS: usize = 64;

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0 for a response that has no body).
    Length(usize),
    Chunked,
    /// The body runs until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, up to and including its empty line.
    pub len: usize,
    pub status: u16,
    /// HTTP/1.0, or `Connection: close`: the server closes the connection after this response.
    pub closes: bool,
    /// The `Content-Length` header's value, whatever the framing.
    pub content_length: Option<usize>,
    pub body: BodyFraming,
}

/// Parses the response head at the start of `bytes`, the answer to a HEAD request if
/// `answers_head`. `Ok(None)` if the head is not complete yet. An unparseable head, or a
/// `Content-Length` that is not a number (or two that disagree), is a [`FramingError`].
pub fn parse_head(bytes: &[u8], answers_head: bool) -> Result<Option<ResponseHead>, FramingError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(FramingError(format!(
                "unparseable response head ({error}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
    };
    let status = response.code.unwrap_or(0);
    let mut closes = response.version == Some(0);
    let mut content_length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match (parsed, content_length) {
                (Some(len), None) => content_length = Some(len),
                (Some(len), Some(seen)) if len == seen => {}
                _ => {
                    return Err(FramingError(format!(
                        "bad Content-Length {:?}",
                        String::from_utf8_lossy(header.value)
                    )));
                }
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            closes |= has_token(header.value, b"close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= has_token(header.value, b"chunked");
        }
    }
    let bodiless = answers_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = match (bodiless, chunked, content_length) {
        (true, _, _) => BodyFraming::Length(0),
        (false, true, _) => BodyFraming::Chunked,
        (false, false, Some(len)) => BodyFraming::Length(len),
        (false, false, None) => BodyFraming::UntilClose,
    };
    Ok(Some(ResponseHead {
        len,
        status,
        closes,
        content_length,
        body,
    }))
}

/// Whether the comma-separated header `value` lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The response stream can no longer be framed; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FramingError {}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A connection with one deadline for everything read from it.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Reads more into `buf`; `Ok(false)` at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?;
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 16 * 1024];
        let n = match self.stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    /// Takes the first `n` bytes, reading as needed.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(invalid(format!(
                    "the connection closed {} bytes short of the body",
                    n - self.buf.len()
                )));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.drain(..end + 2).take(end).collect();
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("a line longer than 64 KiB"));
            }
            if !self.fill()? {
                return Err(invalid("the connection closed in the middle of a line"));
            }
        }
    }
}

/// The `Host` header's value for a server at `addr`: the address, an IPv6 one in brackets
/// (`[2001:2::2]`), and `:PORT` unless the port is 80.
pub fn host_for(addr: SocketAddr) -> String {
    match (addr, addr.port()) {
        (SocketAddr::V4(v4), 80) => v4.ip().to_string(),
        (SocketAddr::V6(v6), 80) => format!("[{}]", v6.ip()),
        (addr, _) => addr.to_string(),
    }
}

/// `host` as a `Host` header carries it: a bare IPv6 literal (`2001:2::2`) gets its brackets,
/// anything else is sent as given.
fn bracketed(host: &str) -> Cow<'_, str> {
    if host.parse::<Ipv6Addr>().is_ok() {
        Cow::Owned(format!("[{host}]"))
    } else {
        Cow::Borrowed(host)
    }
}

/// `GET path` from `addr` (IPv4 or IPv6), with `Host: host` (a bare IPv6 literal is put in
/// brackets; [`host_for`] makes the value from `addr`); everything within `timeout`.
pub fn get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let host = bracketed(host);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sirocco-demo\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut conn = Conn {
        stream,
        deadline,
        buf: Vec::new(),
        eof: false,
    };

    // The head, gathered until `parse_head` finds it complete; it also says how the body is
    // framed (RFC 9112 §6.3), as it does for the simulator's and the replay's readers.
    let head = loop {
        if let Some(head) = parse_head(&conn.buf, false).map_err(|e| invalid(e.0))? {
            break head;
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(invalid("a response head larger than 64 KiB"));
        }
        if !conn.fill()? {
            return Err(invalid("the connection closed before a full response head"));
        }
    };
    let head_bytes: Vec<u8> = conn.buf.drain(..head.len).collect();
    let body = match head.body {
        BodyFraming::Length(length) => conn.take(length)?,
        BodyFraming::Chunked => read_chunked(&mut conn)?,
        BodyFraming::UntilClose => {
            while conn.fill()? {}
            std::mem::take(&mut conn.buf)
        }
    };
    let response = Response {
        status: head.status,
        headers: header_list(&head_bytes),
        body,
    };
    Ok(response)
}

/// The header lines of a head `parse_head` accepted, names in lower case, values as sent: what
/// [`Response::header`] and the trace replay look up, and `parse_head` (allocation-free, for
/// the simulator) does not keep.
pub fn header_list(head: &[u8]) -> Vec<(String, String)> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    if parsed.parse(head).is_err() {
        return Vec::new();
    }
    parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

/// A chunked body (RFC 9112 §7.1): hex size lines, data, and a last chunk of size 0 followed
/// by optional trailers.
fn read_chunked(conn: &mut Conn) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = conn.line()?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("an unreadable chunk size: {text}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !conn.line()?.is_empty() {}
            return Ok(body);
        }
        body.extend(conn.take(size)?);
        if !conn.take(2)?.eq(b"\r\n") {
            return Err(invalid("a chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `reply` after reading the request head; returns the address
    /// and the request it read.
    fn serve_once(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        serve_once_on(TcpListener::bind("127.0.0.1:0").unwrap(), reply)
    }

    fn serve_once_on(
        listener: TcpListener,
        reply: &'static [u8],
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply).unwrap();
            request
        });
        (addr, handle)
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn a_content_length_body_and_the_request_it_sent() {
        let (addr, server) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA");
        let r = get(addr, "example.test", "/a%20b", T).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.header("x-a"), Some("b"));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /a%20b HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nHost: example.test\r\n"), "{request}");
    }

    #[test]
    fn an_ipv6_server_is_fetched_with_its_literal_in_brackets() {
        let listener = match TcpListener::bind("[::1]:0") {
            Ok(listener) => listener,
            // A host without IPv6 on its loopback (ipv6.disable=1, some containers): nothing
            // to connect to, which says nothing about the client.
            Err(e) => {
                eprintln!("skipped: no IPv6 loopback to listen on ([::1]: {e})");
                return;
            }
        };
        let (addr, server) =
            serve_once_on(listener, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6");
        assert!(addr.is_ipv6(), "{addr}");
        let r = get(addr, "::1", "/six", T).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"v6"[..]));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(request.starts_with("GET /six HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nHost: [::1]\r\n"), "{request}");

        // The value made from the address names the port when it is not 80.
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let (addr, server) = serve_once_on(listener, b"HTTP/1.1 204 No Content\r\n\r\n");
        let host = host_for(addr);
        assert_eq!(host, format!("[::1]:{}", addr.port()));
        assert_eq!(get(addr, &host, "/", T).unwrap().status, 204);
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(
            request.contains(&format!("\r\nHost: {host}\r\n")),
            "{request}"
        );
    }

    #[test]
    fn host_values_for_both_families() {
        assert_eq!(host_for("198.18.0.2:80".parse().unwrap()), "198.18.0.2");
        assert_eq!(host_for("[2001:2::2]:80".parse().unwrap()), "[2001:2::2]");
        assert_eq!(
            host_for("[2001:2::2]:8080".parse().unwrap()),
            "[2001:2::2]:8080"
        );
        assert_eq!(
            host_for("198.18.0.2:8080".parse().unwrap()),
            "198.18.0.2:8080"
        );
        assert_eq!(bracketed("2001:2::2"), "[2001:2::2]");
        assert_eq!(bracketed("[2001:2::2]"), "[2001:2::2]");
        assert_eq!(bracketed("198.18.0.2"), "198.18.0.2");
        assert_eq!(bracketed("example.test:8080"), "example.test:8080");
    }

    #[test]
    fn a_chunked_body_and_a_body_until_close() {
        let (addr, _server) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n",
        );
        assert_eq!(get(addr, "h", "/", T).unwrap().body, b"wikipedia");
        let (addr, _server) = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\nno such file");
        let r = get(addr, "h", "/", T).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"no such file"[..]));
    }

    #[test]
    fn a_short_body_or_a_bad_head_is_an_error() {
        let (addr, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
        let err = get(addr, "h", "/", T).unwrap_err().to_string();
        assert!(err.contains("7 bytes short"), "{err}");
        let (addr, _server) = serve_once(b"NOT HTTP\r\n\r\n");
        assert!(get(addr, "h", "/", T).is_err());
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let err = get(addr, "h", "/", Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
