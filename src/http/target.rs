//! Request-target → normalized path.
//!
//! [`normalize_target`] accepts the origin form (`/path?query`) and the absolute form
//! (`http://host/path`, RFC 9112 §3.2.2), drops the query and any fragment, percent-decodes,
//! and removes dot segments (RFC 3986 §5.2.4) without ever climbing above the root. Runs of
//! slashes collapse to one, like nginx's `merge_slashes`. The result always starts with `/`, and
//! a trailing slash (or a trailing `.`/`..` segment, which names a directory) is kept. It never
//! allocates beyond the capacity `out` already has once it has seen a target this long.

/// Why a target cannot name a file: the request is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Neither origin form nor `http(s)://` absolute form (asterisk and authority forms too).
    Form,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00` (NUL) or `%2F` (an encoded `/`, which would change the path's segments).
    ForbiddenEscape,
}

/// Writes the normalized path of `target` into `out` (cleared first).
pub fn normalize_target(target: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    out.clear();
    let path = path_of(target)?;
    let path = match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(end) => path.get(..end).unwrap_or_default(),
        None => path,
    };
    if already_normal(path) {
        out.extend_from_slice(path);
        return Ok(());
    }
    percent_decode(path, out)?;
    remove_dot_segments(out);
    Ok(())
}

/// Whether decoding and dot removal leave `path` (query cut) as it is: it starts with `/`,
/// has no escape, no empty segment but a trailing one, and no segment starting with a dot (a
/// stricter test than no `.` or `..` segment, so `/.well-known` takes the long way). Most
/// request paths pass, and skip the byte-at-a-time copy of both steps.
fn already_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut after_slash = false;
    for &byte in path {
        if byte == b'%' || (after_slash && (byte == b'/' || byte == b'.')) {
            return false;
        }
        after_slash = byte == b'/';
    }
    true
}

/// The path part of an origin-form or absolute-form target (query still attached).
fn path_of(target: &[u8]) -> Result<&[u8], TargetError> {
    if target.first() == Some(&b'/') {
        return Ok(target);
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(TargetError::Form)?;
    match rest
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
    {
        Some(at) if rest.get(at) == Some(&b'/') => Ok(rest.get(at..).unwrap_or(b"/")),
        // `http://host` or `http://host?q`: the path is empty, which means `/`.
        _ => Ok(b"/"),
    }
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| bytes.get(prefix.len()..))
        .flatten()
}

fn percent_decode(path: &[u8], out: &mut Vec<u8>) -> Result<(), TargetError> {
    let mut bytes = path.iter();
    while let Some(&byte) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let high = bytes.next().and_then(|&b| hex_value(b));
        let low = bytes.next().and_then(|&b| hex_value(b));
        let (Some(high), Some(low)) = (high, low) else {
            return Err(TargetError::BadEscape);
        };
        let decoded = high << 4 | low;
        if decoded == 0 || decoded == b'/' {
            return Err(TargetError::ForbiddenEscape);
        }
        out.push(decoded);
    }
    Ok(())
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4 on a path that starts with `/`, in place. `..` at the root stays at the root.
fn remove_dot_segments(path: &mut Vec<u8>) {
    let len = path.len();
    // Output is path[..written]: empty or `/seg(/seg)*`. It never overtakes the read position,
    // because each output byte is preceded by at least one consumed input byte.
    let mut written = 0;
    let mut read = 0;
    let mut trailing_slash = false;
    loop {
        let slashes_from = read;
        while path.get(read) == Some(&b'/') {
            read += 1;
        }
        if read >= len {
            if read > slashes_from {
                trailing_slash = true;
            }
            break;
        }
        let start = read;
        while read < len && path.get(read) != Some(&b'/') {
            read += 1;
        }
        match path.get(start..read).unwrap_or_default() {
            b"." => trailing_slash = true,
            b".." => {
                written = path
                    .get(..written)
                    .and_then(|out| out.iter().rposition(|&b| b == b'/'))
                    .unwrap_or(0);
                trailing_slash = true;
            }
            _ => {
                if let Some(slot) = path.get_mut(written) {
                    *slot = b'/';
                }
                written += 1;
                for from in start..read {
                    let byte = path.get(from).copied().unwrap_or(b'/');
                    if let Some(slot) = path.get_mut(written) {
                        *slot = byte;
                    }
                    written += 1;
                }
                trailing_slash = false;
            }
        }
    }
    path.truncate(written);
    if trailing_slash || written == 0 {
        path.push(b'/');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(target: &str) -> Result<String, TargetError> {
        let mut out = Vec::new();
        normalize_target(target.as_bytes(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The long way: decoding and dot removal, with no shortcut.
    fn long_way(path: &[u8]) -> Result<Vec<u8>, TargetError> {
        let mut out = Vec::new();
        percent_decode(path, &mut out)?;
        remove_dot_segments(&mut out);
        Ok(out)
    }

    #[test]
    fn the_shortcut_for_normal_paths_agrees_with_the_long_way() {
        // Every path up to 7 bytes over an alphabet of the bytes that matter, after the `/`.
        const ALPHABET: &[u8] = b"/.a%2F";
        let mut shortcuts = 0;
        let mut path = vec![b'/'];
        let mut digits: Vec<usize> = Vec::new();
        loop {
            path.truncate(1);
            path.extend(digits.iter().map(|&d| ALPHABET[d]));
            if already_normal(&path) {
                shortcuts += 1;
                assert_eq!(
                    long_way(&path).as_deref(),
                    Ok(&path[..]),
                    "{:?}",
                    String::from_utf8_lossy(&path)
                );
            }
            // The next combination, shortest first.
            match digits.iter().rposition(|&d| d + 1 < ALPHABET.len()) {
                Some(at) => {
                    digits[at] += 1;
                    digits[at + 1..].fill(0);
                }
                None if digits.len() < 7 => digits = vec![0; digits.len() + 1],
                None => break,
            }
        }
        assert!(shortcuts > 1000, "{shortcuts}");
        for normal in ["/", "/index.html", "/a/b/", "/a.b/c..d/e.", "/x-y_z~1"] {
            assert!(already_normal(normal.as_bytes()), "{normal}");
        }
        for not in [
            "",
            "a",
            "//",
            "/a//b",
            "/./a",
            "/a/..",
            "/a/.",
            "/%41",
            "/.well-known",
        ] {
            assert!(!already_normal(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn origin_form_strips_query_and_fragment() {
        assert_eq!(norm("/"), Ok("/".into()));
        assert_eq!(norm("/a/b.html?x=1&y=/../"), Ok("/a/b.html".into()));
        assert_eq!(norm("/a#frag"), Ok("/a".into()));
        assert_eq!(norm("/dir/"), Ok("/dir/".into()));
    }

    #[test]
    fn absolute_form_uses_the_path() {
        assert_eq!(norm("http://example.com/a/b"), Ok("/a/b".into()));
        assert_eq!(norm("HTTP://example.com"), Ok("/".into()));
        assert_eq!(norm("https://h:8080?q"), Ok("/".into()));
        assert_eq!(norm("*"), Err(TargetError::Form));
        assert_eq!(norm("example.com:80"), Err(TargetError::Form));
        assert_eq!(norm("ftp://h/x"), Err(TargetError::Form));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(norm("/a%20b"), Ok("/a b".into()));
        assert_eq!(norm("/%C3%a9"), Ok("/é".into()));
        assert_eq!(norm("/a%2Fb"), Err(TargetError::ForbiddenEscape));
        assert_eq!(norm("/a%2fb"), Err(TargetError::ForbiddenEscape));
        assert_eq!(norm("/a%00"), Err(TargetError::ForbiddenEscape));
        assert_eq!(norm("/a%2"), Err(TargetError::BadEscape));
        assert_eq!(norm("/a%zz"), Err(TargetError::BadEscape));
    }

    #[test]
    fn dot_segments_never_climb_above_root() {
        assert_eq!(norm("/../../etc/passwd"), Ok("/etc/passwd".into()));
        assert_eq!(norm("/%2e%2e/%2E%2E/etc/passwd"), Ok("/etc/passwd".into()));
        assert_eq!(norm("/a/b/../c"), Ok("/a/c".into()));
        assert_eq!(norm("/a/./b/."), Ok("/a/b/".into()));
        assert_eq!(norm("/a/.."), Ok("/".into()));
        assert_eq!(norm("/a/b/.."), Ok("/a/".into()));
        assert_eq!(norm("/.."), Ok("/".into()));
        assert_eq!(norm("/..."), Ok("/...".into()));
        assert_eq!(norm("/.hidden"), Ok("/.hidden".into()));
        assert_eq!(norm("//a///b//"), Ok("/a/b/".into()));
        assert_eq!(norm("/a/..%2e/x"), Ok("/a/..%2e/x".replace("%2e", ".")));
    }
}
