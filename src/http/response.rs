//! What a request is answered with, and how the bytes of that answer are found.
//!
//! A [`Response`] is a few words: which prebuilt head and body in the [`ContentCache`] it uses,
//! plus the facts for the per-response lines. Its bytes are four slices, sent in order:
//! 0. an interim `100 Continue`, when the client asked for one;
//! 1. the prebuilt, unterminated head (from the cache);
//! 2. the per-response lines ([`write_dynamic`]): `Location`, `Content-Range`/`Content-Length`
//!    for ranges, `Date`, `Connection`, and the blank line ending the head;
//! 3. the body (from the cache), empty for HEAD and 304.

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
            Reply::Partial { .. } => 206,
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
pub fn write_dynamic(
    out: &mut Vec<u8>,
    response: &Response,
    cache: &ContentCache,
    date: &DateHeader,
) {
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
        Reply::Full(_) | Reply::NotModified(_) | Reply::Status(_) => {}
    }
    out.extend_from_slice(date.bytes());
    match response.connection {
        ConnectionHeader::Omit => {}
        ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}
