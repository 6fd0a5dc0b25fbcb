//! The wall-clock driver of a [`Server`]: busy-poll (or idle-wait) until told to stop, and print
//! a stats line at a fixed interval.
//!
//! The clock is read once per iteration (a vDSO call, not a syscall). In idle mode the loop
//! sleeps in the driver's `wait_rx` only when an iteration moved no frame, and never past the
//! stack's next deadline.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use sirocco_drivers::{DriverError, FrameIo};
use sirocco_netstack::{Instant, StackCounters};

use crate::http::HttpCounters;
use crate::reload::{Reloaded, Reloader};
use crate::server::{Server, Stats};

/// Longest single sleep in idle mode, so a stop request is noticed promptly.
const MAX_IDLE_SLEEP: StdDuration = StdDuration::from_millis(50);
/// After a finite source (a pcap trace) runs dry, keep serving this long for the answers.
const DRAIN_AFTER_EXHAUSTED: StdDuration = StdDuration::from_millis(200);

pub struct RunOptions {
    /// Sleep in the driver when idle instead of spinning.
    pub idle_wait: bool,
    /// Print a stats line this often (None: never).
    pub stats_interval: Option<StdDuration>,
    /// Set from another thread or a signal handler to end the loop.
    pub stop: Arc<AtomicBool>,
}

/// Runs `server` until `options.stop` is set, or until a finite driver has been drained.
/// With a `reloader`, a requested reload swaps the server's cache when it has loaded (and
/// reports on stderr).
pub fn run<D: FrameIo>(
    server: &mut Server<D>,
    options: &RunOptions,
    mut reloader: Option<&mut Reloader>,
    stats_out: &mut dyn Write,
) -> Result<(), DriverError> {
    let start = std::time::Instant::now();
    let mut next_stats = options.stats_interval;
    let mut last = server.stats();
    let mut exhausted_at: Option<StdDuration> = None;
    while !options.stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed();
        let now = Instant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
        let moved = server.poll(now)?;

        if let Some(reloaded) = reloader.as_deref_mut().and_then(Reloader::poll) {
            match reloaded {
                Reloaded::Loaded(cache, took) => {
                    eprintln!(
                        "reloaded: {} files ({} bytes) in {:.1} ms; connections move to the new tree between requests",
                        cache.file_count(),
                        cache.total_bytes(),
                        took.as_secs_f64() * 1e3
                    );
                    server.set_cache(cache);
                }
                Reloaded::Failed(why) => {
                    eprintln!("reload failed, still serving the previous tree: {why}");
                }
            }
        }

        if let (Some(due), Some(interval)) = (next_stats, options.stats_interval)
            && elapsed >= due
        {
            let stats = server.stats();
            // A failed write of a stats line (closed stdout) must not stop the server.
            let _ = writeln!(stats_out, "{}", stats_line(elapsed, &last, &stats));
            last = stats;
            next_stats = Some(due + interval);
        }

        if server.driver().rx_exhausted() {
            let since = *exhausted_at.get_or_insert(elapsed);
            if !moved && elapsed - since >= DRAIN_AFTER_EXHAUSTED {
                break;
            }
        }
        if !moved && options.idle_wait {
            let until_deadline = server
                .poll_at()
                .map(|at| StdDuration::from_micros((at - now).total_micros()))
                .unwrap_or(MAX_IDLE_SLEEP);
            server
                .driver_mut()
                .wait_rx(until_deadline.min(MAX_IDLE_SLEEP))?;
        }
    }
    Ok(())
}

/// One line of counters: totals, and requests per second over the last interval.
pub fn stats_line(elapsed: StdDuration, before: &Stats, now: &Stats) -> String {
    let mut line = format!(
        "[{:>6.1}s] conns={} rx={} tx={} req={} (+{}) 2xx={} 4xx={} 5xx={} dropped={} syn_refused={} tx_ring_full={}",
        elapsed.as_secs_f64(),
        now.connections,
        now.driver.rx_frames,
        now.driver.tx_frames,
        now.http.requests,
        now.http.requests.saturating_sub(before.http.requests),
        now.http.responses_2xx,
        now.http.responses_4xx,
        now.http.responses_5xx,
        now.stack.total_dropped(),
        now.stack.syn_refused_full,
        now.driver.tx_ring_full,
    );
    line.push_str(&http_timeouts(&now.http));
    line.push_str(&loss_recovery(&now.stack));
    line.push_str(&defences(&now.stack));
    line.push_str(&drop_reasons(&now.stack));
    line
}

/// The HTTP timers that fired, if any, as ` (header_timeouts=... keepalive_timeouts=...
/// lingering_aborts=...)`: slow heads answered 408, idle connections closed, and closed
/// connections reset because the peer did not finish.
pub fn http_timeouts(counters: &HttpCounters) -> String {
    join_nonzero(counters.fields().filter(|(name, _)| {
        matches!(
            *name,
            "header_timeouts" | "keepalive_timeouts" | "lingering_aborts"
        )
    }))
}

/// The drop counters that are not zero, as ` (name=value ...)`, or nothing when none are: what
/// a person needs to tell an offload left on (`drop_tcp_checksum`) from traffic for another
/// host (`drop_ipv4_not_for_us`).
pub fn drop_reasons(counters: &StackCounters) -> String {
    nonzero(counters, "drop_")
}

/// What TCP loss recovery did, if anything, as ` (tcp_retransmits=... tcp_timeouts=...)`: a
/// path that loses tails shows timeouts, one that loses inside windows fast recoveries.
pub fn loss_recovery(counters: &StackCounters) -> String {
    nonzero(counters, "tcp_")
}

/// What the SYN-flood and blind-attack defences did, if anything, as ` (syn_cache_entries=...
/// syncookies_sent=... challenge_acks=...)`: a flood shows as cookies sent with the cache full.
pub fn defences(counters: &StackCounters) -> String {
    const NAMES: [&str; 10] = [
        "syn_cache_entries",
        "syn_cache_overflow",
        "syncookies_sent",
        "syncookies_valid",
        "syncookies_invalid",
        "synack_retransmits",
        "challenge_acks",
        "challenge_acks_limited",
        "conn_limit_per_ip",
        "idle_evicted",
    ];
    join_nonzero(counters.fields().filter(|(name, _)| NAMES.contains(name)))
}

fn nonzero(counters: &StackCounters, prefix: &str) -> String {
    join_nonzero(
        counters
            .fields()
            .filter(|(name, _)| name.starts_with(prefix)),
    )
}

fn join_nonzero(fields: impl Iterator<Item = (&'static str, u64)>) -> String {
    let fields: Vec<String> = fields
        .filter(|(_, value)| *value > 0)
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if fields.is_empty() {
        String::new()
    } else {
        format!(" ({})", fields.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_names_only_the_nonzero_drops() {
        let none = StackCounters {
            rx_frames: 9,
            ..Default::default()
        };
        assert_eq!(drop_reasons(&none), "");
        let some = StackCounters {
            rx_frames: 9,
            syn_accepted: 4,
            drop_tcp_checksum: 3,
            drop_ipv6: 1,
            ..Default::default()
        };
        assert_eq!(drop_reasons(&some), " (drop_ipv6=1 drop_tcp_checksum=3)");
        assert_eq!(loss_recovery(&some), "");
        assert_eq!(defences(&some), "");
        let flooded = StackCounters {
            syn_cache_entries: 16384,
            syncookies_sent: 7,
            ..some.clone()
        };
        assert_eq!(
            defences(&flooded),
            " (syn_cache_entries=16384 syncookies_sent=7)"
        );
        let lossy = StackCounters {
            tcp_retransmits: 5,
            tcp_fast_recoveries: 2,
            ..some
        };
        assert_eq!(
            loss_recovery(&lossy),
            " (tcp_retransmits=5 tcp_fast_recoveries=2)"
        );
    }

    #[test]
    fn http_timeouts_name_only_the_timers_that_fired() {
        let quiet = HttpCounters {
            requests: 7,
            responses_2xx: 7,
            ..Default::default()
        };
        assert_eq!(http_timeouts(&quiet), "");
        let fired = HttpCounters {
            keepalive_timeouts: 3,
            lingering_aborts: 1,
            ..quiet
        };
        assert_eq!(
            http_timeouts(&fired),
            " (keepalive_timeouts=3 lingering_aborts=1)"
        );
    }
}
