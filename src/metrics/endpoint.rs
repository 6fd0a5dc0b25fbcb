//! The metrics endpoint: a listening kernel socket and the thread that answers scrapes.
//!
//! [`bind`] runs at start-up, before the driver is attached, so a bad or busy address is a
//! clear error before anything else happens; [`spawn_endpoint`] starts the thread once set-up
//! is over. The thread answers one connection at a time, each bounded by timeouts
//! ([`IO_TIMEOUT`], [`CONNECTION_DEADLINE`]): `GET /metrics` (or `HEAD`) gets the latest
//! snapshot rendered, another path 404, another method 405, then the connection is closed.
//! It makes no system call outside `accept4`, `setsockopt` (the two timeouts), `recvfrom`,
//! `sendto` and `close`, which the seccomp filter allows.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{MetricsBoard, render};

/// Longest wait for a scraper's next bytes, or for it to take ours.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a scraper may take over its whole request.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Longest request head read; longer ones get 431.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the metrics socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "--metrics-listen {addr}: the address is in use (another sirocco, or another exporter?): pick another port"
    )]
    InUse { addr: SocketAddr },
    #[error(
        "--metrics-listen {addr}: no interface of this host (in this network namespace) has that address: use one it has, e.g. 127.0.0.1 or the management interface's"
    )]
    NotLocal { addr: SocketAddr },
    #[error("--metrics-listen {addr}: binding a port below 1024 needs root: use a higher port")]
    Privileged { addr: SocketAddr },
    #[error("--metrics-listen {addr}: {source}")]
    Other {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the metrics thread: {0}")]
    Spawn(#[source] io::Error),
}

/// Opens the listening socket, with a clear error for the usual mistakes.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => MetricsError::InUse { addr },
        io::ErrorKind::AddrNotAvailable => MetricsError::NotLocal { addr },
        io::ErrorKind::PermissionDenied => MetricsError::Privileged { addr },
        _ => MetricsError::Other { addr, source },
    })
}

/// Starts the thread that answers scrapes on `listener` from `board`. It runs until the
/// process exits.
pub fn spawn_endpoint(
    listener: TcpListener,
    board: Arc<MetricsBoard>,
) -> Result<JoinHandle<()>, MetricsError> {
    std::thread::Builder::new()
        .name("sirocco-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    // A failed answer concerns that scraper alone.
                    Ok(stream) => {
                        let _ = answer(stream, &board);
                    }
                    // Out of descriptors, or a connection reset before it was accepted: try
                    // again a little later rather than spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
        .map_err(MetricsError::Spawn)
}

/// An answer to a scrape.
struct Reply {
    status: &'static str,
    body: String,
    /// `HEAD`: the head alone.
    head_only: bool,
}

impl Reply {
    fn error(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            head_only: false,
        }
    }
}

/// Reads one request from `stream` and answers it; then the connection is closed.
fn answer(mut stream: TcpStream, board: &MetricsBoard) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let reply = match read_head(&mut stream)? {
        None => Reply::error(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        Some(head) => route(&head, board),
    };
    let ok = reply.status.starts_with("200");
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        reply.status,
        if ok {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        },
        reply.body.len(),
        if reply.status.starts_with("405") {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        },
    );
    stream.write_all(response.as_bytes())?;
    if !reply.head_only {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()
}

/// The answer to a request head.
fn route(head: &[u8], board: &MetricsBoard) -> Reply {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Reply::error("400 Bad Request", "bad request\n");
    };
    if !version.starts_with(b"HTTP/1.") {
        return Reply::error("400 Bad Request", "bad request\n");
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path != b"/metrics" {
        return Reply::error("404 Not Found", "not found: the metrics are at /metrics\n");
    }
    match method {
        b"GET" | b"HEAD" => Reply {
            status: "200 OK",
            body: render(&board.latest()),
            head_only: method == b"HEAD",
        },
        _ => Reply::error("405 Method Not Allowed", "method not allowed: use GET\n"),
    }
}

/// Reads until the blank line that ends a request head. `None` if the head is longer than
/// [`MAX_REQUEST_HEAD`]; an error on a timeout, or a peer that closed before its head ended.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + CONNECTION_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let got = stream.read(&mut chunk)?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(chunk.get(..got).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::snapshot;

    /// A GET over a real socket on the loopback.
    fn fetch(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn the_endpoint_answers_metrics_404_and_405() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let board = Arc::new(MetricsBoard::new());
        board.publish(snapshot());
        spawn_endpoint(listener, Arc::clone(&board)).unwrap();

        let ok = fetch(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert_eq!(body, render(&snapshot()));

        let with_query = fetch(addr, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(with_query.starts_with("HTTP/1.1 200 OK\r\n"));
        let head_only = fetch(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
        let other = fetch(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
        let post = fetch(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(post.contains("Allow: GET, HEAD\r\n"));
        let garbage = fetch(addr, "\u{1}\u{2}\r\n\r\n");
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );
        // A head that never ends within the limit (sent whole: a client that sends more than
        // is read may see its connection reset instead).
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}",
            "a".repeat(MAX_REQUEST_HEAD)
        );
        assert!(fetch(addr, &huge).starts_with("HTTP/1.1 431 "));

        // A new snapshot shows on the next scrape.
        let mut next = snapshot();
        next.reloads_ok = 40;
        board.publish(next);
        let ok = fetch(addr, "GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.contains("sirocco_reloads_total{result=\"ok\"} 40\n"));
    }

    #[test]
    fn a_used_address_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let error = bind(addr).unwrap_err();
        assert!(matches!(error, MetricsError::InUse { .. }));
        assert!(error.to_string().contains("in use"), "{error}");
        let error = bind("192.0.2.77:9100".parse().unwrap()).unwrap_err();
        assert!(matches!(error, MetricsError::NotLocal { .. }), "{error}");
    }
}
