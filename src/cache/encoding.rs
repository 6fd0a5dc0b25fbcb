//! Content codings (RFC 9110 §8.4): which variants the cache knows, which clients accept them
//! (`Accept-Encoding`, §12.5.3), and gzip at load time.

use std::io::Write;

/// A content coding the cache can hold a variant in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    pub const ALL: [Coding; 2] = [Coding::Gzip, Coding::Brotli];

    /// The token in `Content-Encoding` and `Accept-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }

    /// The suffix of a precompressed file next to the original (nginx's `gzip_static`).
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Gzip => ".gz",
            Coding::Brotli => ".br",
        }
    }
}

/// Whether the `Accept-Encoding` value `list` allows `coding`: named (or `x-gzip` for gzip)
/// with a non-zero weight, or matched by `*` with a non-zero weight when not named at all.
pub fn accepts(list: &[u8], coding: Coding) -> bool {
    let mut star = false;
    for member in list.split(|&b| b == b',') {
        let mut parts = member.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let weight_zero = parts.any(|param| {
            let param = param.trim_ascii();
            match param.split_first() {
                Some((q, rest)) if q.eq_ignore_ascii_case(&b'q') => {
                    let value = rest.strip_prefix(b"=").unwrap_or(b"1").trim_ascii();
                    is_zero_weight(value)
                }
                _ => false,
            }
        });
        let named = name.eq_ignore_ascii_case(coding.name().as_bytes())
            || (coding == Coding::Gzip && name.eq_ignore_ascii_case(b"x-gzip"));
        if named {
            return !weight_zero;
        }
        if name == b"*" {
            star = !weight_zero;
        }
    }
    star
}

/// RFC 9110 §12.4.2: `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`; zero
/// means "not acceptable".
fn is_zero_weight(value: &[u8]) -> bool {
    match value.split_first() {
        Some((b'0', rest)) => match rest.split_first() {
            None => true,
            Some((b'.', digits)) => digits.iter().all(|&d| d == b'0'),
            Some(_) => false,
        },
        _ => false,
    }
}

/// Files smaller than this are not worth a gzip variant (nginx's `gzip_min_length` is 20;
/// below a few hundred bytes the gzip header and trailer eat most of the gain).
const MIN_COMPRESS_LEN: usize = 256;

/// Whether a file of this type and length gets a gzip variant under `--compress`: text and
/// the structured text formats; never formats that are compressed already (images, archives).
pub fn worth_compressing(content_type: &str, len: usize) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let textual = essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        );
    textual && len >= MIN_COMPRESS_LEN
}

/// gzip at the best compression level: done once at load, so the time is well spent.
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::best(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_lists() {
        assert!(accepts(b"gzip", Coding::Gzip));
        assert!(accepts(b"deflate, gzip;q=1.0, *;q=0.5", Coding::Gzip));
        assert!(accepts(b"GZIP", Coding::Gzip));
        assert!(accepts(b"x-gzip", Coding::Gzip));
        assert!(!accepts(b"gzip;q=0", Coding::Gzip));
        assert!(!accepts(b"gzip; q=0.000", Coding::Gzip));
        assert!(accepts(b"gzip;q=0.001", Coding::Gzip));
        assert!(!accepts(b"br", Coding::Gzip));
        assert!(accepts(b"br", Coding::Brotli));
        assert!(accepts(b"*", Coding::Brotli));
        assert!(!accepts(b"*;q=0", Coding::Gzip));
        assert!(!accepts(b"*, gzip;q=0", Coding::Gzip));
        assert!(!accepts(b"identity", Coding::Gzip));
        assert!(!accepts(b"", Coding::Gzip));
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"hello hello hello hello hello hello".repeat(20);
        let packed = gzip(&body).expect("gzip");
        assert!(packed.len() < body.len());
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&packed[..]);
        std::io::Read::read_to_end(&mut decoder, &mut out).expect("gunzip");
        assert_eq!(out, body);
    }

    #[test]
    fn only_textual_types_of_some_size_are_compressed() {
        assert!(worth_compressing("text/html; charset=utf-8", 1000));
        assert!(worth_compressing("image/svg+xml", 1000));
        assert!(!worth_compressing("text/html; charset=utf-8", 100));
        assert!(!worth_compressing("image/png", 100_000));
        assert!(!worth_compressing("application/gzip", 100_000));
    }
}
