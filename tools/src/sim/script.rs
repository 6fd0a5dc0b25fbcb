//! What each simulated client connection asks for, and what it must get back.
//!
//! A [`Script`] is a sequence of [`Request`]s drawn from a shared list, sent in one of two
//! [`Mode`]s: over one keep-alive connection (optionally pipelined), or over a new connection
//! per request (`Connection: close`, like `wrk -H 'Connection: close'`). Each request carries
//! its [`Expect`]ation: the status code, and for bodies either the exact bytes or just a
//! length. The fleet checks every response against it byte for byte.

use std::sync::Arc;

/// The request method. sirocco serves GET and HEAD; anything else is a [`Request::raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
        }
    }
}

/// What the body of a response must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectBody {
    /// Exactly these bytes (for HEAD: a `Content-Length` equal to their length, and no body).
    Exact(Arc<[u8]>),
    /// Any body; it is read (by `Content-Length`, or to the end of the connection) and dropped.
    Any,
}

/// The response a request must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub status: u16,
    pub body: ExpectBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// A well-formed request, rendered when it is sent.
    Normal { method: Method, path: String },
    /// Bytes sent as they are.
    Raw(Box<[u8]>),
}

/// One request and its expected response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    wire: Wire,
    pub expect: Expect,
}

impl Request {
    /// `GET path`, which must answer 200 with exactly `body`.
    pub fn get(path: &str, body: Arc<[u8]>) -> Self {
        Request {
            wire: Wire::Normal {
                method: Method::Get,
                path: path.to_owned(),
            },
            expect: Expect {
                status: 200,
                body: ExpectBody::Exact(body),
            },
        }
    }

    /// `HEAD path`, which must answer 200 with `Content-Length: body.len()` and no body.
    pub fn head(path: &str, body: Arc<[u8]>) -> Self {
        Request {
            wire: Wire::Normal {
                method: Method::Head,
                path: path.to_owned(),
            },
            expect: Expect {
                status: 200,
                body: ExpectBody::Exact(body),
            },
        }
    }

    /// A well-formed request whose response is only checked for `status`.
    pub fn status(method: Method, path: &str, status: u16) -> Self {
        Request {
            wire: Wire::Normal {
                method,
                path: path.to_owned(),
            },
            expect: Expect {
                status,
                body: ExpectBody::Any,
            },
        }
    }

    /// Arbitrary bytes (malformed requests), which must draw a response with `status`.
    pub fn raw(bytes: &[u8], status: u16) -> Self {
        Request {
            wire: Wire::Raw(bytes.into()),
            expect: Expect {
                status,
                body: ExpectBody::Any,
            },
        }
    }

    /// Arbitrary bytes (a request with headers of the test's choosing), which must draw a
    /// response with `status` and exactly `body` (empty for 304).
    pub fn raw_exact(bytes: &[u8], status: u16, body: Arc<[u8]>) -> Self {
        Request {
            wire: Wire::Raw(bytes.into()),
            expect: Expect {
                status,
                body: ExpectBody::Exact(body),
            },
        }
    }

    /// The method the response answers; a raw request is treated as GET (a body is expected).
    pub fn method(&self) -> Method {
        match &self.wire {
            Wire::Normal { method, .. } => *method,
            Wire::Raw(_) => Method::Get,
        }
    }

    /// The path, or `"<raw>"`, for reports.
    pub fn label(&self) -> &str {
        match &self.wire {
            Wire::Normal { path, .. } => path,
            Wire::Raw(_) => "<raw>",
        }
    }

    /// Appends the request bytes to `out`. `close` adds `Connection: close`.
    pub fn render(&self, close: bool, out: &mut Vec<u8>) {
        match &self.wire {
            Wire::Normal { method, path } => {
                out.extend_from_slice(method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(path.as_bytes());
                out.extend_from_slice(
                    b" HTTP/1.1\r\nHost: sirocco.test\r\nUser-Agent: sirocco-sim\r\n",
                );
                if close {
                    out.extend_from_slice(b"Connection: close\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
            Wire::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
}

/// How a script uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One persistent connection; up to `pipeline` requests in flight (1 = no pipelining).
    /// The client closes the connection after the last response. If the server ends the
    /// connection early (after a `Connection: close` response), the rest is sent on a new one.
    KeepAlive { pipeline: usize },
    /// A new connection for every request, sent with `Connection: close`.
    NewConnection,
}

/// The requests of one client connection slot: `count` requests taken in order from
/// `requests`, starting at `first` and wrapping around.
#[derive(Debug, Clone)]
pub struct Script {
    pub requests: Arc<[Request]>,
    pub first: usize,
    pub count: usize,
    pub mode: Mode,
}

impl Script {
    /// Every request of `requests` once, in order.
    pub fn each(requests: Arc<[Request]>, mode: Mode) -> Self {
        let count = requests.len();
        Script {
            requests,
            first: 0,
            count,
            mode,
        }
    }

    /// The `k`-th request of the script, `None` past the end (or if the list is empty).
    pub fn request(&self, k: usize) -> Option<&Request> {
        if k >= self.count || self.requests.is_empty() {
            return None;
        }
        self.requests
            .get(self.first.wrapping_add(k) % self.requests.len())
    }

    /// Requests in flight allowed on one connection.
    pub fn depth(&self) -> usize {
        match self.mode {
            Mode::KeepAlive { pipeline } => pipeline.max(1),
            Mode::NewConnection => 1,
        }
    }

    /// Whether a connection carries at most one request.
    pub fn one_per_connection(&self) -> bool {
        self.mode == Mode::NewConnection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_get_and_head_with_optional_close() {
        let body: Arc<[u8]> = Arc::from(&b"abc"[..]);
        let mut out = Vec::new();
        Request::get("/a.txt", body.clone()).render(false, &mut out);
        assert_eq!(
            out,
            b"GET /a.txt HTTP/1.1\r\nHost: sirocco.test\r\nUser-Agent: sirocco-sim\r\n\r\n"
        );
        out.clear();
        Request::head("/", body).render(true, &mut out);
        assert!(out.starts_with(b"HEAD / HTTP/1.1\r\n"));
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
        out.clear();
        Request::raw(b"junk", 400).render(true, &mut out);
        assert_eq!(out, b"junk");
    }

    #[test]
    fn script_wraps_around_and_stops_at_count() {
        let list: Arc<[Request]> = (0..3)
            .map(|i| Request::status(Method::Get, &format!("/{i}"), 200))
            .collect();
        let script = Script {
            requests: list,
            first: 2,
            count: 4,
            mode: Mode::KeepAlive { pipeline: 0 },
        };
        let labels: Vec<_> = (0..5)
            .map(|k| script.request(k).map(|r| r.label().to_owned()))
            .collect();
        assert_eq!(
            labels,
            [Some("/2"), Some("/0"), Some("/1"), Some("/2"), None].map(|l| l.map(String::from))
        );
        assert_eq!(script.depth(), 1);
        assert!(!script.one_per_connection());
    }
}
