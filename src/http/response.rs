//! What a request is answered with, and how the bytes of that answer are found.
//!
//! A [`Response`] is a few words: which prebuilt head and body in the [`ContentCache`] it uses,
//! plus the facts for the per-response lines. Its bytes are a few pieces (see [`pieces`]),
//! sent in order:
//! 1. an interim `100 Continue`, when the client asked for one;
//! 2. the prebuilt, unterminated head (from the cache);
//! 3. the head lines written per response ([`write_head_lines`]): `Location`,
//!    `Content-Range`/`Content-Length` for ranges, `Date`, `Connection`, and the blank line
//!    ending the head;
//! 4. the body (from the cache), empty for HEAD and 304. A multipart answer has instead, for
//!    each range, a part header (written with the head lines) and the range of the file, then
//!    the closing delimiter.

use std::io::Write;

use super::DateHeader;
use crate::cache::{ContentCache, DirId, FileId, Status};

/// Which cached answer a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the whole file.
    Full(FileId),
    /// 206 with `body[start..end]`.
    Partial {
        file: FileId,
        start: usize,
        end: usize,
    },
    /// 206 `multipart/byteranges` with `count` ranges from the connection's range list,
    /// starting at `first`.
    Multipart {
        file: FileId,
        first: u16,
        count: u16,
    },
    /// 304.
    NotModified(FileId),
    /// 301 to the directory's slash-terminated path.
    Redirect(DirId),
    /// 416 with `Content-Range: bytes */<file length>`.
    Unsatisfiable(FileId),
    /// Any other prebuilt status page.
    Status(Status),
}

impl Reply {
    pub fn code(self) -> u16 {
        match self {
            Reply::Full(_) => 200,
            Reply::Partial { .. } | Reply::Multipart { .. } => 206,
            Reply::NotModified(_) => 304,
            Reply::Redirect(_) => Status::MovedPermanently.code(),
            Reply::Unsatisfiable(_) => Status::RangeNotSatisfiable.code(),
            Reply::Status(status) => status.code(),
        }
    }
}

/// The `Connection` line a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// HTTP/1.1 persistence is the default: no line.
    Omit,
    /// `Connection: close`; the connection closes once this response is sent.
    Close,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub reply: Reply,
    /// HEAD: send the head only (Content-Length still says what GET would send).
    pub head_only: bool,
    pub connection: ConnectionHeader,
    /// Send `100 Continue` ahead of the answer (`Expect: 100-continue` with a body to read).
    pub interim_continue: bool,
}

/// The interim response to `Expect: 100-continue` (RFC 9110 §15.2.1).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Response {
    /// What goes before the head: the interim `100 Continue`, or nothing.
    pub fn interim(&self) -> &'static [u8] {
        if self.interim_continue { CONTINUE } else { &[] }
    }

    pub fn closes(&self) -> bool {
        self.connection == ConnectionHeader::Close
    }

    /// The prebuilt head and the body this response sends.
    pub fn static_parts<'c>(&self, cache: &'c ContentCache) -> (&'c [u8], &'c [u8]) {
        let (head, body) = match self.reply {
            Reply::Full(id) => {
                let file = cache.file(id);
                (file.head, file.body)
            }
            Reply::Partial { file, start, end } => {
                let file = cache.file(file);
                (
                    file.partial_head,
                    file.body.get(start..end).unwrap_or_default(),
                )
            }
            Reply::NotModified(id) => (cache.file(id).not_modified_head, &[][..]),
            // The parts are interleaved by `pieces`.
            Reply::Multipart { file, .. } => (cache.file(file).multipart_head, &[][..]),
            Reply::Redirect(_) => cache.status_page(Status::MovedPermanently),
            Reply::Unsatisfiable(_) => cache.status_page(Status::RangeNotSatisfiable),
            Reply::Status(status) => cache.status_page(status),
        };
        if self.head_only {
            (head, &[])
        } else {
            (head, body)
        }
    }
}

/// Appends the per-response head lines of `response`, and the blank line ending the head.
/// For a multipart answer it goes on with every part's header and the closing delimiter,
/// recording in `part_ends` where the head lines and each of those end (see [`pieces`]);
/// `ranges` is the connection's range list.
pub fn write_head_lines(
    out: &mut Vec<u8>,
    part_ends: &mut Vec<usize>,
    response: &Response,
    cache: &ContentCache,
    date: &DateHeader,
    ranges: &[(usize, usize)],
) {
    part_ends.clear();
    match response.reply {
        Reply::Redirect(dir) => {
            out.extend_from_slice(b"Location: ");
            out.extend_from_slice(cache.redirect_location(dir).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Reply::Partial { file, start, end } => {
            let total = cache.file(file).body.len();
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                "Content-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\n",
                end.saturating_sub(1),
                end.saturating_sub(start)
            );
        }
        Reply::Unsatisfiable(file) => {
            // RFC 9110 §15.5.17: a 416 to a byte-range request SHOULD carry the current length.
            let _ = write!(
                out,
                "Content-Range: bytes */{}\r\n",
                cache.file(file).body.len()
            );
        }
        Reply::Multipart { file, first, count } => {
            let file = cache.file(file);
            let parts = multipart_ranges(ranges, first, count);
            let boundary = file.etag.trim_matches('"');
            let mut length = Counter(0);
            for &(start, end) in parts {
                write_part_header(
                    &mut length,
                    boundary,
                    file.content_type,
                    start,
                    end,
                    file.body.len(),
                );
                length.0 += end - start;
            }
            let _ = write!(length, "\r\n--{boundary}--\r\n");
            let _ = write!(
                out,
                "Content-Type: multipart/byteranges; boundary={boundary}\r\nContent-Length: {}\r\n",
                length.0
            );
        }
        Reply::Full(_) | Reply::NotModified(_) | Reply::Status(_) => {}
    }
    out.extend_from_slice(date.bytes());
    match response.connection {
        ConnectionHeader::Omit => {}
        ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if let Reply::Multipart { file, first, count } = response.reply {
        let file = cache.file(file);
        let boundary = file.etag.trim_matches('"');
        part_ends.push(out.len());
        for &(start, end) in multipart_ranges(ranges, first, count) {
            write_part_header(
                out,
                boundary,
                file.content_type,
                start,
                end,
                file.body.len(),
            );
            part_ends.push(out.len());
        }
        let _ = write!(out, "\r\n--{boundary}--\r\n");
        part_ends.push(out.len());
    }
}

/// The body bytes `response` carries: the file slice, or the ranges of a multipart answer.
pub fn body_len(response: &Response, cache: &ContentCache, ranges: &[(usize, usize)]) -> usize {
    match response.reply {
        Reply::Multipart { first, count, .. } => multipart_ranges(ranges, first, count)
            .iter()
            .map(|(start, end)| end - start)
            .sum(),
        _ => response.static_parts(cache).1.len(),
    }
}

/// The ranges of a multipart answer.
fn multipart_ranges(ranges: &[(usize, usize)], first: u16, count: u16) -> &[(usize, usize)] {
    let first = usize::from(first);
    ranges
        .get(first..first + usize::from(count))
        .unwrap_or_default()
}

/// One part's delimiter and header (RFC 9110 §14.6), in the shape nginx writes.
fn write_part_header(
    out: &mut impl Write,
    boundary: &str,
    content_type: &str,
    start: usize,
    end: usize,
    total: usize,
) {
    let _ = write!(
        out,
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{total}\r\n\r\n",
        end.saturating_sub(1)
    );
}

/// Counts the bytes written to it (to size a multipart body before writing it).
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A response's bytes, in sending order, as slices of the cache and of its `head_lines` (see
/// [`write_head_lines`]): the interim answer (often empty), the prebuilt head, the head lines,
/// then the body; or, for a multipart answer, each part's header and range of the file, then
/// the closing delimiter. `part_ends` splits the head lines of a multipart answer.
pub fn pieces<'a>(
    response: &Response,
    cache: &'a ContentCache,
    head_lines: &'a [u8],
    part_ends: &'a [usize],
    ranges: &'a [(usize, usize)],
) -> impl Iterator<Item = &'a [u8]> + 'a {
    let (head, body) = response.static_parts(cache);
    let lines = |from: usize, to: usize| head_lines.get(from..to).unwrap_or_default();
    // A plain answer is a multipart one with no parts whose "closing delimiter" is its body.
    let (ranges, file_body, tail) = match response.reply {
        Reply::Multipart { file, first, count } => {
            let tail = match part_ends {
                [.., before, last] => lines(*before, *last),
                _ => &[][..],
            };
            (
                multipart_ranges(ranges, first, count),
                cache.file(file).body,
                tail,
            )
        }
        _ => (&[][..], &[][..], body),
    };
    let first_end = part_ends.first().copied().unwrap_or(head_lines.len());
    let parts = part_ends
        .windows(2)
        .zip(ranges)
        .flat_map(move |(ends, &(start, end))| {
            let header = match ends {
                [from, to] => lines(*from, *to),
                _ => &[][..],
            };
            [header, file_body.get(start..end).unwrap_or_default()]
        });
    [response.interim(), head, lines(0, first_end)]
        .into_iter()
        .chain(parts)
        .chain(std::iter::once(tail))
}
