//! The one HTTP/1.1 response reader of the tools: [`parse_head`] (from `sirocco::lab::fetch`,
//! which the demo's client uses too) parses a response head and says how its body is framed, and [`ResponseReader`] reads responses off a client
//! connection's byte stream with it, checking each one against its
//! [`Expect`](super::script::Expect)ation byte for byte, without buffering bodies. The trace
//! replay (`crate::replay::http`) frames whole recorded streams with the same [`parse_head`].
//!
//! Bytes are fed in whatever chunks TCP delivers. The head is gathered (at most
//! [`MAX_RESPONSE_HEAD`] bytes) and parsed with `httparse`; the body is framed as RFC 9112 §6.3
//! says: none for HEAD, 1xx, 204 and 304, then chunked, then `Content-Length`, else it runs to
//! the end of the connection. Body bytes are compared against the expected bytes as they
//! arrive, so a 4 MiB file costs no extra memory. (sirocco never sends a chunked body, so the
//! reader treats one as a framing error.)
//!
//! A response that does not match its expectation is still read to its end, so the next one on
//! the connection can be checked; only a response whose framing cannot be trusted (an
//! unparseable head, a bad `Content-Length`) is a [`FramingError`] that ends the connection.

pub use sirocco::lab::fetch::{BodyFraming, FramingError, MAX_HEADERS, ResponseHead, parse_head};

use super::script::{ExpectBody, Method, Request};

/// Longest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// A response that was read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub status: u16,
    /// The server said it closes the connection after this response.
    pub closes: bool,
    /// Body bytes received.
    pub body_len: usize,
    /// The first way the response differed from its expectation, if it did.
    pub problem: Option<String>,
}

#[derive(Debug)]
enum State {
    Head,
    /// `remaining` body bytes to go, of a response framed by `Content-Length`.
    Body {
        remaining: usize,
    },
    /// The body runs until the server closes the connection.
    UntilClose,
}

#[derive(Debug)]
struct Current {
    status: u16,
    closes: bool,
    /// Compare the body against the expected bytes.
    compare: bool,
    received: usize,
    problem: Option<String>,
}

/// Per-connection response reader; reusable across connections with [`ResponseReader::reset`].
#[derive(Debug)]
pub struct ResponseReader {
    head: Vec<u8>,
    state: State,
    current: Current,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader {
            head: Vec::new(),
            state: State::Head,
            current: Current {
                status: 0,
                closes: false,
                compare: false,
                received: 0,
                problem: None,
            },
        }
    }
}

impl ResponseReader {
    /// Forgets any partial response (the connection it came from is gone).
    pub fn reset(&mut self) {
        self.head.clear();
        self.state = State::Head;
    }

    /// `true` between responses, with no partial response bytes held.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.head.is_empty()
    }

    /// Feeds bytes of the response to `request`. Returns how many bytes of `data` belonged to
    /// it, and the response if it ended within them. Call again with the rest (for the next
    /// request) while bytes remain.
    pub fn feed(
        &mut self,
        data: &[u8],
        request: &Request,
    ) -> Result<(usize, Option<Completed>), FramingError> {
        match self.state {
            State::Head => self.feed_head(data, request),
            State::Body { remaining } => {
                let take = remaining.min(data.len());
                self.check_body(data.get(..take).unwrap_or_default(), request);
                let remaining = remaining - take;
                if remaining == 0 {
                    Ok((take, Some(self.complete())))
                } else {
                    self.state = State::Body { remaining };
                    Ok((take, None))
                }
            }
            State::UntilClose => {
                self.check_body(data, request);
                Ok((data.len(), None))
            }
        }
    }

    /// The server closed the connection: a response framed by the close ends here.
    pub fn finish_at_close(&mut self, request: &Request) -> Option<Completed> {
        if !matches!(self.state, State::UntilClose) {
            return None;
        }
        if let ExpectBody::Exact(body) = &request.expect.body
            && self.current.compare
            && self.current.received != body.len()
        {
            self.note(format!(
                "body ended at the close after {} bytes, expected {}",
                self.current.received,
                body.len()
            ));
        }
        Some(self.complete())
    }

    fn feed_head(
        &mut self,
        data: &[u8],
        request: &Request,
    ) -> Result<(usize, Option<Completed>), FramingError> {
        let before = self.head.len();
        let room = MAX_RESPONSE_HEAD - before;
        let taken = data.len().min(room);
        self.head
            .extend_from_slice(data.get(..taken).unwrap_or_default());

        let head = match parse_head(&self.head, request.method() == Method::Head)? {
            Some(head) => head,
            None if self.head.len() < MAX_RESPONSE_HEAD => return Ok((taken, None)),
            None => {
                return Err(FramingError(format!(
                    "response head longer than {MAX_RESPONSE_HEAD} bytes"
                )));
            }
        };
        let ResponseHead {
            len: head_len,
            status,
            closes,
            content_length,
            body,
        } = head;
        // The bytes of `data` that belonged to the head; the rest is body (or the next response).
        let used = head_len.saturating_sub(before).min(taken);
        self.head.clear();

        self.current = Current {
            status,
            closes,
            compare: false,
            received: 0,
            problem: None,
        };
        if status != request.expect.status {
            self.note(format!(
                "status {status}, expected {}",
                request.expect.status
            ));
        } else if let ExpectBody::Exact(body) = &request.expect.body {
            if content_length != Some(body.len()) {
                self.note(format!(
                    "Content-Length {content_length:?}, expected {}",
                    body.len()
                ));
            }
            self.current.compare = request.method() != Method::Head;
        }
        self.state = match body {
            BodyFraming::Length(0) => {
                self.state = State::Head;
                return Ok((used, Some(self.complete())));
            }
            BodyFraming::Length(len) => State::Body { remaining: len },
            BodyFraming::UntilClose => State::UntilClose,
            BodyFraming::Chunked => {
                return Err(FramingError(format!(
                    "status {status}: a chunked body, which sirocco never sends"
                )));
            }
        };
        Ok((used, None))
    }

    fn check_body(&mut self, chunk: &[u8], request: &Request) {
        let offset = self.current.received;
        self.current.received += chunk.len();
        if !self.current.compare || self.current.problem.is_some() {
            return;
        }
        let ExpectBody::Exact(body) = &request.expect.body else {
            return;
        };
        let expected = body.get(offset..).unwrap_or_default();
        if let Some(at) = chunk
            .iter()
            .zip(expected)
            .position(|(got, want)| got != want)
        {
            self.note(format!("body differs at byte {}", offset + at));
        } else if chunk.len() > expected.len() {
            self.note(format!(
                "body longer than the expected {} bytes",
                body.len()
            ));
        }
    }

    fn note(&mut self, problem: String) {
        if self.current.problem.is_none() {
            self.current.problem = Some(problem);
        }
    }

    fn complete(&mut self) -> Completed {
        self.state = State::Head;
        Completed {
            status: self.current.status,
            closes: self.current.closes,
            body_len: self.current.received,
            problem: self.current.problem.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn feed_all(reader: &mut ResponseReader, mut data: &[u8], request: &Request) -> Vec<Completed> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let (used, done) = reader.feed(data, request).expect("framing");
            data = &data[used..];
            out.extend(done);
            assert!(used > 0 || out.last().is_some());
        }
        out
    }

    #[test]
    fn reads_pipelined_responses_in_small_chunks() {
        let body: Arc<[u8]> = Arc::from(&b"hello"[..]);
        let request = Request::get("/h", body);
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for chunk in [1, 3, 7, wire.len()] {
            let mut reader = ResponseReader::default();
            let mut done = Vec::new();
            for piece in wire.chunks(chunk) {
                done.extend(feed_all(&mut reader, piece, &request));
            }
            assert_eq!(done.len(), 2, "chunk {chunk}");
            assert!(done.iter().all(|c| c.problem.is_none() && c.body_len == 5));
            assert!(reader.is_idle());
        }
    }

    #[test]
    fn reports_body_and_status_differences() {
        let request = Request::get("/h", Arc::from(&b"hello"[..]));
        let mut reader = ResponseReader::default();
        let done = feed_all(
            &mut reader,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhellx",
            &request,
        );
        assert_eq!(done[0].problem.as_deref(), Some("body differs at byte 4"));
        let done = feed_all(
            &mut reader,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnop",
            &request,
        );
        assert_eq!(done[0].status, 404);
        assert!(done[0].closes);
        assert_eq!(done[0].problem.as_deref(), Some("status 404, expected 200"));
    }

    #[test]
    fn head_has_no_body_and_close_framed_bodies_end_at_close() {
        let body: Arc<[u8]> = Arc::from(&b"abc"[..]);
        let mut reader = ResponseReader::default();
        let done = feed_all(
            &mut reader,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            &Request::head("/x", body),
        );
        assert_eq!(done[0].problem, None);
        assert_eq!(done[0].body_len, 0);

        let raw = Request::raw(b"junk", 400);
        assert!(feed_all(&mut reader, b"HTTP/1.1 400 Bad\r\n\r\nsome", &raw).is_empty());
        let done = reader.finish_at_close(&raw).expect("complete at close");
        assert_eq!((done.status, done.body_len), (400, 4));
    }

    #[test]
    fn broken_heads_are_framing_errors() {
        let request = Request::raw(b"", 200);
        let mut reader = ResponseReader::default();
        assert!(reader.feed(b"NOT HTTP AT ALL\r\n\r\n", &request).is_err());
        let mut reader = ResponseReader::default();
        let bad = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
        assert!(reader.feed(bad, &request).is_err());
        let mut reader = ResponseReader::default();
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(reader.feed(two, &request).is_err());
    }

    #[test]
    fn heads_are_framed_as_rfc_9112_says() {
        let framing = |head: &[u8], answers_head| {
            parse_head(head, answers_head)
                .unwrap()
                .map(|h| (h.status, h.closes, h.body))
        };
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        assert_eq!(
            framing(cl, false),
            Some((200, false, BodyFraming::Length(7)))
        );
        assert_eq!(
            framing(cl, true),
            Some((200, false, BodyFraming::Length(0)))
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
        assert_eq!(
            framing(chunked, false),
            Some((200, false, BodyFraming::Chunked))
        );
        for status in [
            b"100 Continue".as_slice(),
            b"204 No Content",
            b"304 Not Modified",
        ] {
            let head = [
                b"HTTP/1.1 ".as_slice(),
                status,
                b"\r\nContent-Length: 9\r\n\r\n",
            ]
            .concat();
            assert_eq!(framing(&head, false).unwrap().2, BodyFraming::Length(0));
        }
        let old = b"HTTP/1.0 200 OK\r\n\r\n";
        assert_eq!(
            framing(old, false),
            Some((200, true, BodyFraming::UntilClose))
        );
        let close = b"HTTP/1.1 400 Bad\r\nConnection: keep-alive, close\r\n\r\n";
        assert_eq!(
            framing(close, false),
            Some((400, true, BodyFraming::UntilClose))
        );
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\nContent-", false), None);
    }
}
