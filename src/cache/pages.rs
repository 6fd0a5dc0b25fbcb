//! Prebuilt response heads: per-file heads (200, 206, 304) and the status pages (301 and the
//! 4xx/5xx errors), all built once at load so a response never formats more than its `Date` and
//! a few range numbers.
//!
//! Every head built here is **unterminated**: it ends after its last header line's CRLF, without
//! `Date`, `Connection` and the blank line that ends the head. The HTTP layer appends those per
//! response.

use std::io::Write;

use httpdate::HttpDate;

/// Value of the `Server` header on every response.
pub const SERVER_NAME: &str = "sirocco";

/// The latest instant an IMF-fixdate can express (9999-12-31T23:59:59Z); later times are clamped
/// so formatting never panics.
const LAST_FORMATTABLE_SECS: u64 = 253_402_300_799;

/// An [`HttpDate`] for `unix_secs`, clamped to the years an IMF-fixdate can express.
pub fn http_date(unix_secs: u64) -> HttpDate {
    let secs = unix_secs.min(LAST_FORMATTABLE_SECS);
    HttpDate::from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The statuses the server answers with something other than a file, each with a prebuilt page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// 204 to `OPTIONS`, with `Allow`.
    Options,
    MovedPermanently,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    UriTooLong,
    RangeNotSatisfiable,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    /// Every status, in index order.
    pub const ALL: [Status; 14] = [
        Status::Options,
        Status::MovedPermanently,
        Status::BadRequest,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::RangeNotSatisfiable,
        Status::ExpectationFailed,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::Options => 204,
            Status::MovedPermanently => 301,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::ExpectationFailed => 417,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 §15 names; 413 and 431 use the titles nginx users know).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Options => "No Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Request Entity Too Large",
            Status::UriTooLong => "Request-URI Too Large",
            Status::RangeNotSatisfiable => "Requested Range Not Satisfiable",
            Status::ExpectationFailed => "Expectation Failed",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Position in [`Status::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Status::Options => 0,
            Status::MovedPermanently => 1,
            Status::BadRequest => 2,
            Status::Forbidden => 3,
            Status::NotFound => 4,
            Status::MethodNotAllowed => 5,
            Status::RequestTimeout => 6,
            Status::ContentTooLarge => 7,
            Status::UriTooLong => 8,
            Status::RangeNotSatisfiable => 9,
            Status::ExpectationFailed => 10,
            Status::HeaderFieldsTooLarge => 11,
            Status::NotImplemented => 12,
            Status::VersionNotSupported => 13,
        }
    }
}

/// A prebuilt status response: unterminated head and a small HTML body.
#[derive(Debug, Clone)]
pub struct StatusPage {
    pub head: Box<[u8]>,
    pub body: Box<[u8]>,
}

/// The methods every resource allows, for `Allow` on 405 and on the answer to `OPTIONS`.
pub const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

/// Builds the page for `status`, in the shape of nginx's built-in error pages.
pub fn status_page(status: Status) -> StatusPage {
    if status == Status::Options {
        // RFC 9110 §9.3.7 and §8.6: no content, so no body and no Content-Length.
        let head = format!(
            "HTTP/1.1 204 No Content\r\nServer: {SERVER_NAME}\r\nAllow: {ALLOWED_METHODS}\r\n"
        );
        return StatusPage {
            head: head.into_bytes().into_boxed_slice(),
            body: Box::default(),
        };
    }
    let title = format!("{} {}", status.code(), status.reason());
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{SERVER_NAME}</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut head = format!(
        "HTTP/1.1 {title}\r\nServer: {SERVER_NAME}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status == Status::MethodNotAllowed {
        // RFC 9110 §15.5.6: a 405 MUST carry Allow with the target's supported methods.
        head.push_str(&format!("Allow: {ALLOWED_METHODS}\r\n"));
    }
    StatusPage {
        head: head.into_bytes().into_boxed_slice(),
        body: body.into_bytes().into_boxed_slice(),
    }
}

/// The media type nginx would send for `path` (its `types` map plus `charset utf-8`).
pub fn content_type(path: &std::path::Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || essence == "application/javascript"
        || essence == "application/xml"
        || essence == "application/rss+xml";
    if textual {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

/// What a file's heads say about it.
pub struct FileFacts<'a> {
    pub content_type: &'a str,
    pub len: usize,
    pub last_modified: Option<u64>,
    pub etag: &'a str,
    /// `Content-Encoding` of a precompressed variant.
    pub content_encoding: Option<&'a str>,
    /// The file has variants by content coding: `Vary: Accept-Encoding`.
    pub vary: bool,
    pub cache_control: Option<&'a str>,
}

/// Appends the four unterminated heads of a file to `out` and returns their lengths:
/// 200 (full), 206 (without `Content-Range`/`Content-Length`, which depend on the range), 304,
/// and a multipart 206 (without `Content-Type` and `Content-Length`).
pub fn write_file_heads(out: &mut Vec<u8>, facts: &FileFacts<'_>) -> [usize; 4] {
    let mut validators = Vec::new();
    if let Some(secs) = facts.last_modified {
        let _ = write!(validators, "Last-Modified: {}\r\n", http_date(secs));
    }
    let _ = write!(validators, "ETag: {}\r\n", facts.etag);
    // RFC 9110 §15.4.5: a 304 also carries Cache-Control and Vary when a 200 would.
    if let Some(value) = facts.cache_control {
        let _ = write!(validators, "Cache-Control: {value}\r\n");
    }
    if facts.vary {
        validators.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    let mut coding = Vec::new();
    if let Some(name) = facts.content_encoding {
        let _ = write!(coding, "Content-Encoding: {name}\r\n");
    }

    let start = out.len();
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nServer: {SERVER_NAME}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        facts.content_type, facts.len
    );
    out.extend_from_slice(&coding);
    out.extend_from_slice(&validators);
    out.extend_from_slice(b"Accept-Ranges: bytes\r\n");
    let full = out.len() - start;

    let start = out.len();
    let _ = write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nServer: {SERVER_NAME}\r\nContent-Type: {}\r\n",
        facts.content_type
    );
    out.extend_from_slice(&coding);
    out.extend_from_slice(&validators);
    let partial = out.len() - start;

    // RFC 9110 §15.4.5: a 304 carries the validators a 200 would have, and no content.
    let start = out.len();
    let _ = write!(
        out,
        "HTTP/1.1 304 Not Modified\r\nServer: {SERVER_NAME}\r\n"
    );
    out.extend_from_slice(&validators);
    let not_modified = out.len() - start;

    // A multipart/byteranges 206: the HTTP layer adds its Content-Type (with the boundary) and
    // Content-Length; each part names the file's own type.
    let start = out.len();
    let _ = write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nServer: {SERVER_NAME}\r\n"
    );
    out.extend_from_slice(&coding);
    out.extend_from_slice(&validators);
    let multipart = out.len() - start;

    [full, partial, not_modified, multipart]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_page_is_self_consistent() {
        for status in Status::ALL {
            assert_eq!(Status::ALL[status.index()], status);
            let page = status_page(status);
            let head = String::from_utf8(page.head.to_vec()).unwrap_or_default();
            assert!(head.starts_with(&format!("HTTP/1.1 {} ", status.code())));
            if status != Status::Options {
                assert!(head.contains(&format!("Content-Length: {}\r\n", page.body.len())));
            }
            assert!(head.ends_with("\r\n") && !head.ends_with("\r\n\r\n"));
        }
        for status in [Status::MethodNotAllowed, Status::Options] {
            let page = status_page(status);
            let allow = b"Allow: GET, HEAD, OPTIONS\r\n";
            assert!(page.head.windows(allow.len()).any(|w| w == allow));
        }
        assert!(status_page(Status::Options).body.is_empty());
    }

    #[test]
    fn content_types_follow_nginx_charset_rules() {
        use std::path::Path;
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn http_date_clamps_instead_of_panicking() {
        assert_eq!(http_date(0).to_string(), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(u64::MAX).to_string(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }
}
