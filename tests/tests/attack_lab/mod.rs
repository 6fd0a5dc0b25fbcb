//! What the attack lab tests (`lab_synflood.rs`, `lab_injection.rs`) share: the real `sirocco`
//! serving over AF_XDP in a veth lab with a stats line every second, the counters read from
//! that line, bounded curl fetches from the client namespace, and the check that a Python
//! interpreter with scapy is there.
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::veth::VethLab;
use sirocco_tests::lab::{LabServer, server_url, stats_lines};

/// The counters of the stats line worth quoting after an attack: the pool (`conns`), frames
/// received (`rx`), SYNs refused for want of a cell, and the SYN cache, SYN cookie, RFC 5961 and
/// per-address counters (absent from the line of a server that does not have them).
pub const ATTACK_COUNTERS: [&str; 11] = [
    "conns",
    "rx",
    "dropped",
    "syn_refused",
    "syn_cache_entries",
    "syn_cache_overflow",
    "syncookies_sent",
    "syncookies_valid",
    "syncookies_invalid",
    "challenge_acks",
    "conn_limit_per_ip",
];

/// The value of `key=` on a stats line, also inside the parenthesised groups; `None` when the
/// line does not have it.
pub fn stat(line: &str, key: &str) -> Option<u64> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .map(|word| word.trim_matches(|c| c == '(' || c == ')'))
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
}

/// `name=value` for each of [`ATTACK_COUNTERS`] on `line` (`name=absent` when missing).
pub fn attack_counters(line: &str) -> String {
    ATTACK_COUNTERS
        .iter()
        .map(|name| match stat(line, name) {
            Some(v) => format!("{name}={v}"),
            None => format!("{name}=absent"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sirocco serve --driver afxdp` in the lab's server namespace, idle mode, a stats line every
/// second, with `extra` options; started, and answering ping (at most 30 s). Dropping it kills
/// the server: declare it after the lab.
pub fn start_server(lab: &VethLab, root: &Path, extra: &[&str]) -> LabServer {
    LabServer::afxdp(root)
        .args(["--stats-interval", "1"])
        .args(extra)
        .start(lab)
}

/// The latest stats line of `server`, if one was printed yet.
pub fn latest_stats(server: &LabServer) -> Option<String> {
    stats_lines(&server.stdout_now())
        .last()
        .map(|l| l.to_string())
}

/// Waits (at most 5 s) for a stats line printed after this call, and returns it.
pub fn next_stats(server: &mut LabServer) -> String {
    let count = |s: &LabServer| stats_lines(&s.stdout_now()).len();
    let seen = count(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        server.assert_running("printing stats");
        if count(server) > seen {
            return latest_stats(server).expect("a stats line");
        }
        assert!(
            Instant::now() < deadline,
            "sirocco printed no stats line within 5 s: {}",
            server.stdout_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One curl fetch of `path` from the client namespace, bounded by `max_secs`: `Ok(())` when
/// the body is byte-equal to `expected`, otherwise what went wrong.
pub fn fetch(lab: &VethLab, path: &str, expected: &[u8], max_secs: u32) -> Result<(), String> {
    let url = server_url(path);
    let output = lab
        .client_command("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time"])
        .arg(max_secs.to_string())
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    if output.stdout != expected {
        let first = output.stdout.iter().zip(expected).position(|(a, b)| a != b);
        return Err(format!(
            "{url}: {} bytes, expected {} (first difference at {first:?})",
            output.stdout.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// Outcomes of a series of fetches.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub total: u64,
    /// Each distinct error, with how often it came.
    pub errors: Vec<(String, u64)>,
}

impl Tally {
    pub fn record(&mut self, outcome: Result<(), String>) {
        self.total += 1;
        match outcome.map_err(|e| without_times(&e)) {
            Ok(()) => self.ok += 1,
            Err(e) => match self.errors.iter_mut().find(|(seen, _)| *seen == e) {
                Some((_, n)) => *n += 1,
                None => self.errors.push((e, 1)),
            },
        }
    }

    pub fn failed(&self) -> u64 {
        self.total - self.ok
    }

    /// "ok/total", with the errors when there were any.
    pub fn summary(&self) -> String {
        let mut s = format!("{}/{} OK", self.ok, self.total);
        for (e, n) in self.errors.iter().take(5) {
            s.push_str(&format!("; {n} x {e}"));
        }
        s
    }
}

/// `error` with curl's "after 12 ms" turned into "after N ms", so that the same failure
/// is counted as one.
fn without_times(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut rest = error;
    while let Some(at) = rest.find("after ") {
        let (head, tail) = rest.split_at(at + "after ".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(" ms") {
            out.push('N');
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// A Python interpreter that imports scapy: `python3`, or else the distribution's own
/// interpreter, which Debian's python3-scapy installs for (a python3 from pyenv or a virtual
/// environment earlier on PATH does not see it). When there is none, the test cannot run: a
/// failure with `SIROCCO_REQUIRE_LAB=1`, otherwise a notice and `None`.
pub fn scapy_python(test: &str) -> Option<String> {
    for candidate in ["python3", "/usr/bin/python3"] {
        let imports = Command::new(candidate)
            .args(["-c", "import scapy.all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if imports {
            return Some(candidate.to_string());
        }
    }
    let why = format!(
        "lab test {test} cannot run: needs scapy for python3 (Debian package python3-scapy)"
    );
    if std::env::var_os("SIROCCO_REQUIRE_LAB").is_some_and(|v| v == "1") {
        panic!("{why} (SIROCCO_REQUIRE_LAB=1)");
    }
    eprintln!("NOT RUN: {why}; set SIROCCO_REQUIRE_LAB=1 to make this a failure");
    None
}
