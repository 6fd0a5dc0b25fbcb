//! The `Date` header line, formatted at most once per second (RFC 9110 §6.6.1: an origin server
//! with a clock MUST send `Date` in 2xx, 3xx and 4xx responses, and MAY in 5xx; we send it in
//! all of them).

use std::io::Write;

use crate::cache::http_date;

/// `Date: ` + 29-byte IMF-fixdate + CRLF.
const LINE_LEN: usize = 6 + 29 + 2;

/// The current `Date: <IMF-fixdate>\r\n` line. Starts at the Unix epoch until the first
/// [`DateHeader::update`].
#[derive(Debug, Clone)]
pub struct DateHeader {
    secs: u64,
    line: [u8; LINE_LEN],
}

impl Default for DateHeader {
    fn default() -> Self {
        let mut header = DateHeader {
            secs: 0,
            line: [0; LINE_LEN],
        };
        header.format(0);
        header
    }
}

impl DateHeader {
    /// Sets the clock to `unix_secs`; reformats only when the second changed.
    pub fn update(&mut self, unix_secs: u64) {
        if unix_secs != self.secs {
            self.format(unix_secs);
        }
    }

    /// The full header line, CRLF included.
    pub fn bytes(&self) -> &[u8] {
        &self.line
    }

    /// The second the line shows.
    pub fn unix_secs(&self) -> u64 {
        self.secs
    }

    fn format(&mut self, unix_secs: u64) {
        self.secs = unix_secs;
        let mut out = &mut self.line[..];
        // An IMF-fixdate is always 29 bytes and http_date clamps to year 9999, so this fits.
        let _ = write!(out, "Date: {}\r\n", http_date(unix_secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_imf_fixdate_and_changes_with_the_second() {
        let mut date = DateHeader::default();
        assert_eq!(date.bytes(), b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        date.update(784_111_777);
        assert_eq!(date.bytes(), b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        date.update(784_111_778);
        assert_eq!(date.bytes(), b"Date: Sun, 06 Nov 1994 08:49:38 GMT\r\n");
        date.update(u64::MAX);
        assert_eq!(date.bytes(), b"Date: Fri, 31 Dec 9999 23:59:59 GMT\r\n");
    }
}
