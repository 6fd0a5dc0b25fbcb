//! HTTP/1.x message framing and comparison over reassembled byte streams.
//!
//! - [`parse_requests`] splits a client stream into requests (method and target are what the
//!   responses' framing depends on: a HEAD answer has no body).
//! - [`frame_responses`] finds where each response starts, where its body starts and where it
//!   ends, with the tools' one response-head parser ([`parse_head`], RFC 9112 §6.3: no body
//!   for HEAD, 1xx, 204 and 304; then chunked; then Content-Length; else until the connection
//!   closes). The replay maps the trace's ACK
//!   numbers through these boundaries, because the target's headers are not nginx's length.
//! - [`parse_responses`] decodes each response (status, headers, body) and
//!   [`compare`] judges a target's response against the traced one: status and body must be
//!   equal; differences with a legitimate reason are notes.

/// Headers whose values are expected to differ between two servers of the same files.
const EXPECTED_TO_DIFFER: [&str; 4] = ["date", "server", "etag", "last-modified"];
/// Headers compared by value (a difference is a note, not a failure: the body decides).
const COMPARED: [&str; 6] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "transfer-encoding",
    "location",
];

use sirocco::lab::fetch::header_list;

use crate::sim::reader::{BodyFraming, MAX_HEADERS, parse_head};

/// One request in a client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub target: String,
}

/// Requests in `stream`, in order, up to the first one that is incomplete or unparseable.
pub fn parse_requests(stream: &[u8]) -> Vec<RequestLine> {
    let mut out = Vec::new();
    let mut rest = stream;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = request.parse(rest) else {
            return out;
        };
        let body = content_length(request.headers).unwrap_or(0);
        out.push(RequestLine {
            method: request.method.unwrap_or("?").to_string(),
            target: request.path.unwrap_or("?").to_string(),
        });
        let Some(next) = usize::try_from(body)
            .ok()
            .and_then(|b| rest.get(head_len.checked_add(b)?..))
        else {
            return out;
        };
        rest = next;
    }
}

/// Where one response lies in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    pub start: u64,
    pub body_start: u64,
    /// `None` for a body that runs until the connection closes, or chunked data not yet
    /// complete.
    pub end: Option<u64>,
}

/// Boundaries of the responses in `stream`, each answering the request in `requests` at the
/// same index (a HEAD answer has no body). Stops at the first incomplete header; a body that
/// runs to the close, or an incomplete chunked body, is the last boundary.
pub fn frame_responses(stream: &[u8], requests: &[RequestLine]) -> Vec<Boundary> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut index = 0usize;
    while let Some(rest) = stream.get(start..).filter(|r| !r.is_empty()) {
        let is_head = requests
            .get(index)
            .is_some_and(|r| r.method.eq_ignore_ascii_case("HEAD"));
        let Ok(Some(head)) = parse_head(rest, is_head) else {
            break;
        };
        let status = head.status;
        let body_start = start + head.len;
        let end = match head.body {
            BodyFraming::Length(n) => body_start.checked_add(n),
            BodyFraming::Chunked => stream
                .get(body_start..)
                .and_then(|body| decode_chunked(body).map(|(_, used)| body_start + used)),
            BodyFraming::UntilClose => None,
        };
        out.push(Boundary {
            start: start as u64,
            body_start: body_start as u64,
            end: end.map(|e| e as u64),
        });
        // 1xx responses are followed by the real answer to the same request.
        if !(100..200).contains(&status) {
            index += 1;
        }
        match end {
            Some(end) => start = end,
            None => break,
        }
    }
    out
}

/// A request's `Content-Length`, if it has a valid one.
fn content_length(headers: &[httparse::Header]) -> Option<u64> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A chunked body's decoded bytes and the length it took in the stream, if it is complete.
fn decode_chunked(mut body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = body.len();
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        body = body.get(line_end + 2..)?;
        if size == 0 {
            // Trailers end with an empty line.
            let mut rest = body;
            loop {
                let end = rest.windows(2).position(|w| w == b"\r\n")?;
                rest = rest.get(end + 2..)?;
                if end == 0 {
                    return Some((out, total - rest.len()));
                }
            }
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size.checked_add(2)?..)?;
    }
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole body is here (a trace cut short by the client, or a target that stopped,
    /// leaves it incomplete).
    pub complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The responses in `stream` (see [`frame_responses`]), 1xx interim responses left out.
/// `closed` says the stream ended (FIN or RST), which completes a body that runs to the close.
pub fn parse_responses(stream: &[u8], requests: &[RequestLine], closed: bool) -> Vec<Response> {
    let mut out = Vec::new();
    for boundary in frame_responses(stream, requests) {
        let (Ok(start), Ok(body_start)) = (
            usize::try_from(boundary.start),
            usize::try_from(boundary.body_start),
        ) else {
            break;
        };
        let Some(head) = stream.get(start..body_start) else {
            break;
        };
        let Ok(Some(parsed)) = parse_head(head, false) else {
            break;
        };
        let status = parsed.status;
        if (100..200).contains(&status) {
            continue;
        }
        let is_chunked = parsed.body == BodyFraming::Chunked;
        let available = stream.get(body_start..).unwrap_or_default();
        let (body, complete) = match boundary.end.and_then(|e| usize::try_from(e).ok()) {
            Some(end) if is_chunked => {
                let raw = stream.get(body_start..end).unwrap_or_default();
                (
                    decode_chunked(raw).map(|(b, _)| b).unwrap_or_default(),
                    true,
                )
            }
            Some(end) if end <= stream.len() => (stream[body_start..end].to_vec(), true),
            Some(_) => (available.to_vec(), false),
            None if is_chunked => (Vec::new(), false),
            None => (available.to_vec(), closed),
        };
        out.push(Response {
            status,
            headers: header_list(head),
            body,
            complete,
        });
    }
    out
}

/// What [`compare`] concluded about one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// A mismatch the target must not have: wrong status, wrong body, missing response.
    pub failure: Option<String>,
    /// Differences with a legitimate reason, each `differs: <reason>`.
    pub notes: Vec<String>,
}

/// Judges the `target`'s answer against the `traced` one (nginx's). See the module docs.
pub fn compare(traced: Option<&Response>, target: Option<&Response>) -> Judgement {
    let mut notes = Vec::new();
    let (traced, target) = match (traced, target) {
        (Some(t), Some(g)) => (t, g),
        (None, None) => {
            return Judgement {
                failure: None,
                notes: vec!["differs: unanswered in the trace and by the target".into()],
            };
        }
        (None, Some(_)) => {
            return Judgement {
                failure: None,
                notes: vec![
                    "differs: the target answered a request the trace left unanswered".into(),
                ],
            };
        }
        (Some(_), None) => {
            return Judgement {
                failure: Some("no response from the target".into()),
                notes,
            };
        }
    };
    if traced.status != target.status {
        return Judgement {
            failure: Some(format!(
                "status {} from the target, {} in the trace",
                target.status, traced.status
            )),
            notes,
        };
    }
    let failure = compare_bodies(traced, target, &mut notes);
    compare_headers(traced, target, &mut notes);
    Judgement { failure, notes }
}

fn compare_bodies(traced: &Response, target: &Response, notes: &mut Vec<String>) -> Option<String> {
    let (a, b) = (&traced.body, &target.body);
    let common = a.len().min(b.len());
    let first_difference = a.iter().zip(b.iter()).position(|(x, y)| x != y);
    if traced.status >= 400 {
        if a != b {
            notes.push("differs: error page body (each server writes its own)".into());
        }
        return None;
    }
    if let Some(at) = first_difference {
        return Some(format!("body differs at byte {at}"));
    }
    match (traced.complete, target.complete) {
        (true, true) if a.len() == b.len() => None,
        (true, _) => Some(format!(
            "body has {} bytes from the target{}, {} in the trace",
            b.len(),
            if target.complete { "" } else { " (cut short)" },
            a.len()
        )),
        (false, _) => {
            notes.push(format!(
                "differs: the traced response was cut short by the client; first {common} \
                 bytes compared"
            ));
            None
        }
    }
}

fn compare_headers(traced: &Response, target: &Response, notes: &mut Vec<String>) {
    let differing: Vec<&str> = EXPECTED_TO_DIFFER
        .into_iter()
        .filter(|name| traced.header(name) != target.header(name))
        .collect();
    if !differing.is_empty() {
        notes.push(format!(
            "differs: {} (server identity and time)",
            differing.join(", ")
        ));
    }
    for name in COMPARED {
        let (a, b) = (traced.header(name), target.header(name));
        if a != b && !(name == "content-length" && traced.status >= 400) {
            notes.push(format!(
                "differs: {name} {} in the trace, {} from the target",
                a.map_or("absent".into(), |v| format!("{v:?}")),
                b.map_or("absent".into(), |v| format!("{v:?}"))
            ));
        }
    }
    let order = |r: &Response, other: &Response| -> Vec<String> {
        r.headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| other.header(n).is_some())
            .collect()
    };
    if order(traced, target) != order(target, traced) {
        notes.push("differs: header order".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> RequestLine {
        RequestLine {
            method: "GET".into(),
            target: target.into(),
        }
    }

    #[test]
    fn requests_and_pipelined_responses_are_framed() {
        let requests =
            parse_requests(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].method, "HEAD");
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
            HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        let bounds = frame_responses(stream, &[get("/a"), requests[1].clone(), get("/c")]);
        assert_eq!(bounds.len(), 3);
        assert_eq!(bounds[0].end, Some(41));
        assert_eq!(bounds[1].end, Some(bounds[1].body_start));
        assert_eq!(bounds[2].end, Some(stream.len() as u64));
        let responses =
            parse_responses(stream, &[get("/a"), requests[1].clone(), get("/c")], false);
        assert_eq!(responses[0].body, b"abc");
        assert!(responses[1].body.is_empty());
        assert_eq!(responses[2].body, b"hi");
    }

    #[test]
    fn judgements() {
        let response = |status, body: &[u8], server: &str| Response {
            status,
            headers: vec![
                ("server".into(), server.into()),
                ("content-length".into(), body.len().to_string()),
            ],
            body: body.to_vec(),
            complete: true,
        };
        let nginx = response(200, b"abc", "nginx");
        let same = compare(Some(&nginx), Some(&response(200, b"abc", "sirocco")));
        assert_eq!(same.failure, None);
        assert_eq!(same.notes, ["differs: server (server identity and time)"]);
        let wrong = compare(Some(&nginx), Some(&response(200, b"abd", "nginx")));
        assert_eq!(wrong.failure.as_deref(), Some("body differs at byte 2"));
        let status = compare(Some(&nginx), Some(&response(404, b"abc", "nginx")));
        assert!(status.failure.is_some());
        let error_pages = compare(
            Some(&response(404, b"<html>nginx", "nginx")),
            Some(&response(404, b"<p>not here", "sirocco")),
        );
        assert_eq!(error_pages.failure, None);
        let cut = Response {
            complete: false,
            body: b"ab".to_vec(),
            ..nginx.clone()
        };
        assert_eq!(compare(Some(&cut), Some(&nginx)).failure, None);
        assert!(compare(Some(&nginx), Some(&cut)).failure.is_some());
        assert!(compare(Some(&nginx), None).failure.is_some());
    }
}
