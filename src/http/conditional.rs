//! Conditional requests (RFC 9110 §13) and single byte ranges (RFC 9110 §14) against a cached
//! file. Header values arrive as raw bytes; anything that does not parse is treated as absent,
//! never as an error.
//!
//! Supported: `If-None-Match`, `If-Modified-Since`, `Range: bytes=<range set>` (one range, or
//! several answered as `multipart/byteranges`, as nginx does), `If-Range`. Not supported
//! (ignored): `If-Match`, `If-Unmodified-Since`.

use crate::cache::CachedFile;

/// Whether the client's cached copy is current, so a GET or HEAD gets 304.
pub fn not_modified(
    file: &CachedFile<'_>,
    if_none_match: Option<&[u8]>,
    if_modified_since: Option<&[u8]>,
) -> bool {
    if let Some(list) = if_none_match {
        // RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and when it is present
        // If-Modified-Since MUST be ignored (§13.1.3).
        return entity_tags(list).any(|tag| tag == b"*" || weak_eq(tag, file.etag.as_bytes()));
    }
    match (
        if_modified_since.and_then(http_date_secs),
        file.last_modified,
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole file with 200.
    Full,
    /// 206 with `body[start..end]`.
    Partial { start: usize, end: usize },
    /// 206 `multipart/byteranges` with the ranges appended to the caller's list.
    Multipart,
    /// 416.
    Unsatisfiable,
}

/// Most ranges answered as `multipart/byteranges`; a longer range set gets the whole file
/// (nginx's `max_ranges` is unlimited by default; a bound keeps a request from costing more
/// than its answer).
pub const MAX_RANGES: usize = 16;

/// Evaluates `Range` (and its `If-Range` guard) for a GET of `file`, as nginx does
/// (RFC 9110 §14.2): a range set that does not parse is ignored (200); ranges that start past
/// the end are dropped, and if none is left the answer is 416; one range left gets a plain 206,
/// several a multipart 206, in the order asked, with their `(start, end)` appended to `out`. A
/// set whose ranges add up to more than the file, or has more than [`MAX_RANGES`], gets the
/// whole file.
pub fn range(
    file: &CachedFile<'_>,
    range: Option<&[u8]>,
    if_range: Option<&[u8]>,
    out: &mut Vec<(usize, usize)>,
) -> RangeAnswer {
    let Some(range) = range else {
        return RangeAnswer::Full;
    };
    if let Some(validator) = if_range
        && !if_range_matches(file, trim(validator))
    {
        // RFC 9110 §13.1.5: a failed If-Range means the Range header MUST be ignored.
        return RangeAnswer::Full;
    }
    let len = file.body.len();
    let Some(set) = byte_range_set(trim(range)) else {
        return RangeAnswer::Full;
    };
    let mut count = 0usize;
    let mut total = 0usize;
    let mut single = None;
    let mark = out.len();
    for spec in set {
        let Some(spec) = spec else {
            out.truncate(mark);
            return RangeAnswer::Full;
        };
        let (start, end) = match spec {
            Spec::Suffix(0) => continue,
            Spec::Suffix(_) if len == 0 => continue,
            Spec::Suffix(n) => (len.saturating_sub(n), len),
            Spec::From(first, _) if first >= len => continue,
            Spec::From(first, last) => (first, last.map_or(len, |l| l.saturating_add(1).min(len))),
        };
        count += 1;
        total = total.saturating_add(end - start);
        if count > MAX_RANGES || total > len {
            out.truncate(mark);
            return RangeAnswer::Full;
        }
        single.get_or_insert((start, end));
        out.push((start, end));
    }
    match (count, single) {
        (0, _) => {
            out.truncate(mark);
            RangeAnswer::Unsatisfiable
        }
        (1, Some((start, end))) => {
            out.truncate(mark);
            RangeAnswer::Partial { start, end }
        }
        _ => RangeAnswer::Multipart,
    }
}

enum Spec {
    /// `first-` or `first-last`.
    From(usize, Option<usize>),
    /// `-n`: the last n bytes.
    Suffix(usize),
}

/// Splits `bytes=<range>, <range>...` into its specs (`None` for one that does not parse).
/// `None` for another unit or an empty set: RFC 9110 §14.2 lets a server ignore those.
fn byte_range_set(value: &[u8]) -> Option<impl Iterator<Item = Option<Spec>>> {
    let eq = value.iter().position(|&b| b == b'=')?;
    // RFC 9110 §14.1: range units are case-insensitive.
    if !trim(value.get(..eq)?).eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let set = trim(value.get(eq + 1..)?);
    if set.is_empty() {
        return None;
    }
    // RFC 9110 §5.6.1: empty list elements are allowed and ignored.
    Some(
        set.split(|&b| b == b',')
            .map(trim)
            .filter(|spec| !spec.is_empty())
            .map(byte_range_spec),
    )
}

/// Parses one `first-last`, `first-` or `-suffix`.
fn byte_range_spec(spec: &[u8]) -> Option<Spec> {
    let dash = spec.iter().position(|&b| b == b'-')?;
    let first = spec.get(..dash)?;
    let last = spec.get(dash + 1..)?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = digits(last)?;
    // RFC 9110 §14.1.1: a range whose last is below its first is invalid.
    (last >= first).then_some(Spec::From(first, Some(last)))
}

/// A non-empty run of ASCII digits, saturating at `usize::MAX`.
fn digits(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

fn if_range_matches(file: &CachedFile<'_>, validator: &[u8]) -> bool {
    if validator.first() == Some(&b'"') {
        // RFC 9110 §13.1.5: If-Range compares entity tags with the strong comparison.
        return validator == file.etag.as_bytes();
    }
    if validator.starts_with(b"W/") {
        return false;
    }
    // RFC 9110 §13.1.5: a date validator must match Last-Modified exactly.
    match (http_date_secs(validator), file.last_modified) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// Entity tags in a comma-separated list (`W/` prefixes kept).
fn entity_tags(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// RFC 9110 §8.8.3.2 weak comparison: opaque tags equal, `W/` ignored on both sides.
fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    a.strip_prefix(b"W/").unwrap_or(a) == b.strip_prefix(b"W/").unwrap_or(b)
}

fn http_date_secs(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(trim(value)).ok()?;
    let time = httpdate::parse_http_date(text).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"00112233445566ff\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const MODIFIED: u64 = 784_111_777;

    fn file(body: &[u8]) -> CachedFile<'_> {
        CachedFile {
            head: b"",
            partial_head: b"",
            not_modified_head: b"",
            multipart_head: b"",
            body,
            etag: ETAG,
            last_modified: Some(MODIFIED),
            content_type: "text/plain",
        }
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_beats_if_modified_since() {
        let f = file(b"x");
        let tag = ETAG.as_bytes();
        assert!(not_modified(&f, Some(tag), None));
        assert!(not_modified(&f, Some(b"W/\"00112233445566ff\""), None));
        assert!(not_modified(&f, Some(b"\"a\", \"00112233445566ff\""), None));
        assert!(not_modified(&f, Some(b"*"), None));
        assert!(!not_modified(&f, Some(b"\"other\""), None));
        let later = b"Mon, 07 Nov 1994 08:49:37 GMT";
        assert!(!not_modified(&f, Some(b"\"other\""), Some(later)));
    }

    #[test]
    fn if_modified_since_compares_dates() {
        let f = file(b"x");
        assert!(not_modified(
            &f,
            None,
            Some(b"Sun, 06 Nov 1994 08:49:37 GMT")
        ));
        assert!(not_modified(
            &f,
            None,
            Some(b"Mon, 07 Nov 1994 08:49:37 GMT")
        ));
        assert!(!not_modified(
            &f,
            None,
            Some(b"Sat, 05 Nov 1994 08:49:37 GMT")
        ));
        assert!(!not_modified(&f, None, Some(b"yesterday")));
        assert!(!not_modified(&f, None, None));
    }

    #[test]
    fn single_byte_ranges() {
        let f = file(b"0123456789");
        let r = |v: &[u8]| range(&f, Some(v), None, &mut Vec::new());
        assert_eq!(r(b"bytes=0-3"), RangeAnswer::Partial { start: 0, end: 4 });
        assert_eq!(r(b"Bytes = 5-"), RangeAnswer::Partial { start: 5, end: 10 });
        assert_eq!(r(b"bytes=-3"), RangeAnswer::Partial { start: 7, end: 10 });
        assert_eq!(r(b"bytes=-30"), RangeAnswer::Partial { start: 0, end: 10 });
        assert_eq!(
            r(b"bytes=8-99999999999999999999999"),
            RangeAnswer::Partial { start: 8, end: 10 }
        );
        assert_eq!(r(b"bytes=10-"), RangeAnswer::Unsatisfiable);
        assert_eq!(r(b"bytes=-0"), RangeAnswer::Unsatisfiable);
        assert_eq!(r(b"bytes=5-2"), RangeAnswer::Full);
        assert_eq!(r(b"items=0-1"), RangeAnswer::Full);
        assert_eq!(r(b"bytes=a-b"), RangeAnswer::Full);
        assert_eq!(r(b"bytes="), RangeAnswer::Full);
        assert_eq!(range(&f, None, None, &mut Vec::new()), RangeAnswer::Full);
        assert_eq!(
            range(&file(b""), Some(b"bytes=-5"), None, &mut Vec::new()),
            RangeAnswer::Unsatisfiable
        );
    }

    #[test]
    fn range_sets() {
        let f = file(b"0123456789");
        let mut out = vec![(99, 99)];
        let mut r = |v: &[u8]| {
            out.truncate(1);
            let answer = range(&f, Some(v), None, &mut out);
            (answer, out[1..].to_vec())
        };
        assert_eq!(
            r(b"bytes=0-1,5-6"),
            (RangeAnswer::Multipart, vec![(0, 2), (5, 7)])
        );
        // Asked order is kept; suffixes and open ends work inside a set.
        assert_eq!(
            r(b"bytes=-2, 0-0"),
            (RangeAnswer::Multipart, vec![(8, 10), (0, 1)])
        );
        // Ranges past the end are dropped; one left is a plain 206, none a 416.
        assert_eq!(
            r(b"bytes=2-3,50-60"),
            (RangeAnswer::Partial { start: 2, end: 4 }, vec![])
        );
        assert_eq!(r(b"bytes=50-,60-70"), (RangeAnswer::Unsatisfiable, vec![]));
        // One bad spec spoils the set; so do ranges adding up to more than the file.
        assert_eq!(r(b"bytes=0-1,x-2"), (RangeAnswer::Full, vec![]));
        assert_eq!(r(b"bytes=0-8,1-9"), (RangeAnswer::Full, vec![]));
        let hundred = [b'x'; 100];
        let big = file(&hundred);
        let set = |n: usize| {
            let specs: Vec<String> = (0..n).map(|i| format!("{i}-{i}")).collect();
            format!("bytes={}", specs.join(","))
        };
        let mut list = Vec::new();
        let sixteen = range(&big, Some(set(MAX_RANGES).as_bytes()), None, &mut list);
        assert_eq!((sixteen, list.len()), (RangeAnswer::Multipart, MAX_RANGES));
        list.clear();
        let more = range(&big, Some(set(MAX_RANGES + 1).as_bytes()), None, &mut list);
        assert_eq!((more, list.len()), (RangeAnswer::Full, 0));
        // Empty list elements are ignored.
        assert_eq!(
            r(b"bytes=0-0,,2-2,"),
            (RangeAnswer::Multipart, vec![(0, 1), (2, 3)])
        );
    }

    #[test]
    fn if_range_guards_the_range() {
        let f = file(b"0123456789");
        let partial = RangeAnswer::Partial { start: 0, end: 1 };
        let r = |guard: &[u8]| range(&f, Some(b"bytes=0-0"), Some(guard), &mut Vec::new());
        assert_eq!(r(ETAG.as_bytes()), partial);
        assert_eq!(r(b"W/\"00112233445566ff\""), RangeAnswer::Full);
        assert_eq!(r(b"\"stale\""), RangeAnswer::Full);
        assert_eq!(r(b"Sun, 06 Nov 1994 08:49:37 GMT"), partial);
        assert_eq!(r(b"Mon, 07 Nov 1994 08:49:37 GMT"), RangeAnswer::Full);
    }
}
