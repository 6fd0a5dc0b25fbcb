//! One parsed request head → the [`Response`] it gets, nginx-style.
//!
//! [`respond`] looks at each header once, then checks, in order: `Host` (RFC 9112 §3.2),
//! framing (`Transfer-Encoding`, `Content-Length`), `Expect`, the method (`OPTIONS` answers
//! 204 with `Allow`, every method but GET and HEAD otherwise 405), the target, and finally the
//! cache (content-coding negotiation, then conditionals and ranges). It never allocates once the path buffer has grown to
//! the longest target the connection has seen.

use super::HttpLimits;
use super::conditional::{self, RangeAnswer, trim};
use super::response::{ConnectionHeader, Reply, Response};
use super::target::normalize_target;
use crate::cache::{ContentCache, Lookup, Status};

/// How one request is answered, and what to do with the bytes after its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub response: Response,
    /// Body bytes that follow the head and are read and dropped before the next request.
    pub body_to_skip: usize,
    /// The request was malformed (400, or a status that stands for a parse failure).
    pub malformed: bool,
}

/// The headers that matter, found in one pass.
#[derive(Default)]
struct Fields<'b> {
    hosts: usize,
    host: &'b [u8],
    content_lengths: usize,
    content_length: &'b [u8],
    /// `Transfer-Encoding` lines seen, and whether every one was a well-formed coding list.
    transfer_encodings: usize,
    transfer_encoding_valid: bool,
    expect: Option<&'b [u8]>,
    accept_encoding: Option<&'b [u8]>,
    close: bool,
    keep_alive: bool,
    if_none_match: Option<&'b [u8]>,
    if_modified_since: Option<&'b [u8]>,
    range: Option<&'b [u8]>,
    if_range: Option<&'b [u8]>,
}

impl<'b> Fields<'b> {
    fn scan(headers: &[httparse::Header<'b>]) -> Fields<'b> {
        let mut fields = Fields {
            transfer_encoding_valid: true,
            ..Fields::default()
        };
        for header in headers {
            let name = header.name.as_bytes();
            let value = header.value;
            if name.eq_ignore_ascii_case(b"host") {
                fields.hosts += 1;
                fields.host = trim(value);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                fields.content_lengths += 1;
                fields.content_length = trim(value);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                fields.transfer_encodings += 1;
                fields.transfer_encoding_valid &= valid_coding_list(value);
            } else if name.eq_ignore_ascii_case(b"expect") {
                fields.expect = Some(trim(value));
            } else if name.eq_ignore_ascii_case(b"accept-encoding") {
                fields.accept_encoding = Some(value);
            } else if name.eq_ignore_ascii_case(b"connection") {
                // RFC 9110 §7.6.1: a comma-separated list of case-insensitive options.
                for option in value.split(|&b| b == b',').map(trim) {
                    if option.eq_ignore_ascii_case(b"close") {
                        fields.close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        fields.keep_alive = true;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"if-none-match") {
                fields.if_none_match = Some(value);
            } else if name.eq_ignore_ascii_case(b"if-modified-since") {
                fields.if_modified_since = Some(value);
            } else if name.eq_ignore_ascii_case(b"range") {
                fields.range = Some(value);
            } else if name.eq_ignore_ascii_case(b"if-range") {
                fields.if_range = Some(value);
            }
        }
        fields
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Options,
    /// Any other method, known or not: 405 with `Allow` (a static site has no other).
    NotAllowed,
}

fn method(name: &str) -> Method {
    // RFC 9110 §9.1: method names are case-sensitive.
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        _ => Method::NotAllowed,
    }
}

/// Answers one complete, syntactically valid request head. `path` is scratch space.
/// `ranges` is the connection's list of multipart ranges: a multipart answer appends its
/// ranges and names them by position.
pub fn respond(
    request: &httparse::Request<'_, '_>,
    path: &mut Vec<u8>,
    ranges: &mut Vec<(usize, usize)>,
    cache: &ContentCache,
    limits: &HttpLimits,
) -> Outcome {
    let fields = Fields::scan(request.headers);
    let http11 = request.version == Some(1);
    let method = method(request.method.unwrap_or_default());
    let head_only = method == Method::Head;
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close" is sent; HTTP/1.0 only with keep-alive.
    let persistent = !fields.close && (http11 || fields.keep_alive);
    let connection = match (persistent, http11) {
        (false, _) => ConnectionHeader::Close,
        (true, true) => ConnectionHeader::Omit,
        (true, false) => ConnectionHeader::KeepAlive,
    };
    let answer = |reply: Reply, body_to_skip: usize| Outcome {
        response: Response {
            reply,
            head_only,
            connection,
            interim_continue: false,
        },
        body_to_skip,
        malformed: false,
    };
    let fail = |status: Status, malformed: bool| Outcome {
        response: Response {
            reply: Reply::Status(status),
            head_only,
            connection: ConnectionHeader::Close,
            interim_continue: false,
        },
        body_to_skip: 0,
        malformed,
    };

    // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host, and to any
    // request with more than one Host line or an invalid Host value.
    if (http11 && fields.hosts == 0) || fields.hosts > 1 || !valid_host(fields.host) {
        return fail(Status::BadRequest, true);
    }
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing (400), as
    // does a coding list that does not parse; a well-formed coding we do not implement gets
    // 501. Either way the body's framing is unknown, so the connection must close.
    if fields.transfer_encodings > 0 {
        let status = if !http11 || !fields.transfer_encoding_valid {
            Status::BadRequest
        } else {
            Status::NotImplemented
        };
        return fail(status, status == Status::BadRequest);
    }
    // RFC 9112 §6.3 (5): an invalid Content-Length is unrecoverable framing: 400 and close.
    // nginx also refuses repeated Content-Length lines, identical or not.
    let body_len = match fields.content_lengths {
        0 => 0,
        1 => match decimal(fields.content_length) {
            Some(len) => len,
            None => return fail(Status::BadRequest, true),
        },
        _ => return fail(Status::BadRequest, true),
    };
    let too_long = body_len > limits.max_discarded_body;
    // RFC 9110 §10.1.1: "100-continue" is the only expectation; any other gets 417. An HTTP/1.0
    // request's Expect is ignored. A client that waits for the 100 before sending its body
    // gets it just ahead of the final answer, and the body is then read and dropped.
    let mut interim_continue = false;
    if let Some(expect) = fields.expect.filter(|_| http11) {
        if !expect.eq_ignore_ascii_case(b"100-continue") {
            return fail(Status::ExpectationFailed, false);
        }
        interim_continue = body_len > 0 && !too_long;
    }

    match method {
        Method::Get | Method::Head | Method::Options if too_long => {
            return fail(Status::ContentTooLarge, false);
        }
        Method::Get | Method::Head | Method::Options => {}
        Method::NotAllowed if too_long => return fail(Status::MethodNotAllowed, false),
        Method::NotAllowed => {
            let mut outcome = answer(Reply::Status(Status::MethodNotAllowed), body_len);
            outcome.response.interim_continue = interim_continue;
            return outcome;
        }
    }
    let target = request.path.unwrap_or_default();
    if method == Method::Options {
        // RFC 9110 §9.3.7: `OPTIONS *` asks about the server, `OPTIONS /path` about a
        // resource; every resource here allows the same methods.
        if target != "*" && normalize_target(target.as_bytes(), path).is_err() {
            return fail(Status::BadRequest, true);
        }
        let mut outcome = answer(Reply::Status(Status::Options), body_len);
        outcome.response.interim_continue = interim_continue;
        return outcome;
    }

    if normalize_target(target.as_bytes(), path).is_err() {
        return fail(Status::BadRequest, true);
    }
    let reply = match cache.lookup(path) {
        Lookup::File(id) => {
            let id = cache.negotiate(id, fields.accept_encoding);
            let file = cache.file(id);
            if conditional::not_modified(&file, fields.if_none_match, fields.if_modified_since) {
                Reply::NotModified(id)
            } else if method == Method::Get {
                // RFC 9110 §14.2: Range is defined for GET only; other methods MUST ignore it.
                let first = ranges.len();
                match conditional::range(&file, fields.range, fields.if_range, ranges) {
                    RangeAnswer::Full => Reply::Full(id),
                    RangeAnswer::Multipart => Reply::Multipart {
                        file: id,
                        first: u16::try_from(first).unwrap_or(u16::MAX),
                        count: u16::try_from(ranges.len() - first).unwrap_or(0),
                    },
                    RangeAnswer::Partial { start, end } => Reply::Partial {
                        file: id,
                        start,
                        end,
                    },
                    RangeAnswer::Unsatisfiable => Reply::Unsatisfiable(id),
                }
            } else {
                Reply::Full(id)
            }
        }
        Lookup::RedirectToDir(dir) => Reply::Redirect(dir),
        Lookup::Forbidden => Reply::Status(Status::Forbidden),
        Lookup::NotFound => Reply::Status(Status::NotFound),
    };
    let mut outcome = answer(reply, body_len);
    outcome.response.interim_continue = interim_continue;
    outcome
}

/// RFC 9112 §6.1 / RFC 9110 §5.6.1: `Transfer-Encoding` is a non-empty list of codings, each a
/// token optionally followed by parameters. An empty member (`chunked, `) or a non-token makes
/// the framing unreadable.
fn valid_coding_list(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|member| {
        let coding = trim(member.split(|&b| b == b';').next().unwrap_or_default());
        !coding.is_empty() && coding.iter().all(|&b| is_tchar(b))
    })
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A plain decimal with no sign, at most 19 digits (so it fits in u64 and usize on 64-bit).
fn decimal(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    text.parse().ok()
}

/// RFC 9110 §7.2 / RFC 3986 §3.2.2: `host[:port]` with no whitespace, slashes or userinfo.
/// Empty is allowed (RFC 9112 §3.2, for a target with no authority).
fn valid_host(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b) || b >= 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_must_be_plain_decimal() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"123"), Some(123));
        assert_eq!(decimal(b"+1"), None);
        assert_eq!(decimal(b"-1"), None);
        assert_eq!(decimal(b"1 2"), None);
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"99999999999999999999"), None);
    }

    #[test]
    fn host_values() {
        assert!(valid_host(b"example.com"));
        assert!(valid_host(b"198.18.0.1:8080"));
        assert!(valid_host(b"[2001:2::1]:80"));
        assert!(valid_host(b""));
        assert!(!valid_host(b"a b"));
        assert!(!valid_host(b"a/b"));
        assert!(!valid_host(b"user@host"));
    }

    #[test]
    fn transfer_coding_lists() {
        assert!(valid_coding_list(b"chunked"));
        assert!(valid_coding_list(b"gzip, chunked"));
        assert!(valid_coding_list(b"foo;a=1"));
        assert!(!valid_coding_list(b""));
        assert!(!valid_coding_list(b"foo, "));
        assert!(!valid_coding_list(b"a b"));
        assert!(!valid_coding_list(b",chunked"));
    }
}
