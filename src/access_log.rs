//! The access log (`--access-log FILE`): one line per request in the combined log format that
//! nginx and Apache write, kept off the data path.
//!
//! The loop formats each line into an in-memory batch (no allocation once the batch buffers
//! have their capacity, no syscall). A full batch, or one older than a second, is handed to a
//! writer thread over a bounded channel, and the thread hands the emptied buffer back for
//! reuse. If the writer falls behind (a slow disk) and the channel is full, the batch is
//! dropped and its lines are counted ([`AccessLog::dropped_lines`]): the log never blocks the
//! server. On drop, the last batch is written and the file flushed.
//!
//! The `$body_bytes_sent` field is the size of the body the response carries (0 for HEAD and
//! 304), written when the request is answered; nginx writes the bytes actually sent, which
//! differs only for downloads the client aborts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// A batch is handed to the writer when it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;
/// Batches in flight to the writer before new ones are dropped.
const BATCHES_IN_FLIGHT: usize = 8;

/// What one line says about one request.
pub struct LogEntry<'a> {
    pub peer: Option<IpAddr>,
    /// The request line as received: method, target and version, or `None` when it could not
    /// be parsed.
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
    pub version: Option<u8>,
    pub status: u16,
    pub body_bytes: usize,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

pub struct AccessLog {
    batch: Vec<u8>,
    lines_in_batch: u64,
    /// Unix second the batch was started in.
    batch_started: u64,
    to_writer: Option<SyncSender<Vec<u8>>>,
    from_writer: Receiver<Vec<u8>>,
    writer: Option<JoinHandle<()>>,
    dropped_lines: u64,
    /// `[10/Oct/2000:13:55:36 +0000]` for `time_secs`, formatted once per second.
    time: Vec<u8>,
    time_secs: Option<u64>,
}

impl AccessLog {
    /// Opens (appends to, or creates) `path` and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (to_writer, batches) = mpsc::sync_channel::<Vec<u8>>(BATCHES_IN_FLIGHT);
        let (give_back, from_writer) = mpsc::sync_channel::<Vec<u8>>(BATCHES_IN_FLIGHT + 1);
        let writer = std::thread::Builder::new()
            .name("sirocco-access-log".into())
            .spawn(move || write_batches(file, &batches, &give_back))?;
        Ok(AccessLog {
            batch: Vec::with_capacity(BATCH_BYTES + 1024),
            lines_in_batch: 0,
            batch_started: 0,
            to_writer: Some(to_writer),
            from_writer,
            writer: Some(writer),
            dropped_lines: 0,
            time: Vec::with_capacity(32),
            time_secs: None,
        })
    }

    /// Appends one line for a request answered at `unix_secs`.
    pub fn record(&mut self, unix_secs: u64, entry: &LogEntry<'_>) {
        if self.time_secs != Some(unix_secs) {
            self.time.clear();
            write_time(&mut self.time, unix_secs);
            self.time_secs = Some(unix_secs);
        }
        if self.lines_in_batch == 0 {
            self.batch_started = unix_secs;
        }
        let out = &mut self.batch;
        // Writing into a Vec cannot fail.
        match entry.peer {
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - ");
        out.extend_from_slice(&self.time);
        out.extend_from_slice(b" \"");
        match (entry.method, entry.target) {
            (Some(method), Some(target)) => {
                escape(out, method.as_bytes());
                out.push(b' ');
                escape(out, target.as_bytes());
                if let Some(minor) = entry.version {
                    let _ = write!(out, " HTTP/1.{minor}");
                }
            }
            _ => out.push(b'-'),
        }
        let _ = write!(out, "\" {} {} \"", entry.status, entry.body_bytes);
        escape(out, entry.referer.unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        escape(out, entry.user_agent.unwrap_or(b"-"));
        out.extend_from_slice(b"\"\n");
        self.lines_in_batch += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.hand_off();
        }
    }

    /// Hands a batch older than a second to the writer. Call it now and then (once per loop
    /// iteration is cheap: one comparison).
    pub fn tick(&mut self, unix_secs: u64) {
        if self.lines_in_batch > 0 && unix_secs > self.batch_started {
            self.hand_off();
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    fn hand_off(&mut self) {
        let Some(to_writer) = &self.to_writer else {
            return;
        };
        let next = self
            .from_writer
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES + 1024));
        let full = std::mem::replace(&mut self.batch, next);
        match to_writer.try_send(full) {
            Ok(()) => {}
            Err(TrySendError::Full(mut full) | TrySendError::Disconnected(mut full)) => {
                self.dropped_lines += self.lines_in_batch;
                full.clear();
                self.batch = full;
            }
        }
        self.lines_in_batch = 0;
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if self.lines_in_batch > 0
            && let Some(to_writer) = &self.to_writer
        {
            // At exit, wait for room rather than drop the last lines.
            let _ = to_writer.send(std::mem::take(&mut self.batch));
        }
        self.to_writer = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: writes batches in order, gives the buffers back, flushes at the end.
fn write_batches(mut file: File, batches: &Receiver<Vec<u8>>, give_back: &SyncSender<Vec<u8>>) {
    let mut failed = false;
    for mut batch in batches {
        if !failed && let Err(error) = file.write_all(&batch) {
            eprintln!("access log: write failed, no more lines will be written: {error}");
            failed = true;
        }
        batch.clear();
        let _ = give_back.try_send(batch);
    }
    let _ = file.flush();
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xHH` in log variables.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// `[10/Oct/2000:13:55:36 +0000]`: nginx's `$time_local`, in UTC.
fn write_time(out: &mut Vec<u8>, unix_secs: u64) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "[{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000]",
        MONTHS.get(month as usize - 1).unwrap_or(&"Jan"),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_calendar() {
        let mut out = Vec::new();
        write_time(&mut out, 0);
        assert_eq!(out, b"[01/Jan/1970:00:00:00 +0000]");
        out.clear();
        // 2000-02-29T13:55:36Z, a leap day.
        write_time(&mut out, 951_832_536);
        assert_eq!(out, b"[29/Feb/2000:13:55:36 +0000]");
        out.clear();
        write_time(&mut out, 1_796_040_000);
        assert_eq!(out, b"[30/Nov/2026:12:00:00 +0000]");
    }

    #[test]
    fn lines_are_combined_format_and_reach_the_file_in_order() {
        let path = std::env::temp_dir().join(format!("sirocco-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let mut log = AccessLog::open(&path).expect("open log");
            for i in 0..3000u64 {
                log.record(
                    951_832_536 + i / 1000,
                    &LogEntry {
                        peer: Some("198.18.0.1".parse().expect("ip")),
                        method: Some("GET"),
                        target: Some("/a\"b"),
                        version: Some(1),
                        status: 200,
                        body_bytes: i as usize,
                        referer: None,
                        user_agent: Some(b"curl/8.0"),
                    },
                );
                log.tick(951_832_536 + i / 1000);
            }
            assert_eq!(log.dropped_lines(), 0);
        }
        let text = std::fs::read_to_string(&path).expect("read log");
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3000);
        assert_eq!(
            lines[0],
            "198.18.0.1 - - [29/Feb/2000:13:55:36 +0000] \"GET /a\\x22b HTTP/1.1\" 200 0 \"-\" \"curl/8.0\""
        );
        assert!(lines[2999].contains("\" 200 2999 \""));
    }

    #[test]
    fn an_ipv6_peer_is_written_as_nginx_writes_remote_addr() {
        let path = std::env::temp_dir().join(format!("sirocco-access6-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let mut log = AccessLog::open(&path).expect("open log");
            log.record(
                951_832_536,
                &LogEntry {
                    peer: Some("2001:2::1".parse().expect("ip")),
                    method: Some("GET"),
                    target: Some("/"),
                    version: Some(1),
                    status: 200,
                    body_bytes: 5,
                    referer: None,
                    user_agent: None,
                },
            );
        }
        let text = std::fs::read_to_string(&path).expect("read log");
        let _ = std::fs::remove_file(&path);
        // nginx's $remote_addr: the address alone, no brackets.
        assert_eq!(
            text,
            "2001:2::1 - - [29/Feb/2000:13:55:36 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"\n"
        );
    }
}
