//! The wall-clock driver of the engines: one [`Server`] per NIC queue, each on a thread of its
//! own that busy-polls (or sleeps when idle) until told to stop, and a supervisor on the calling
//! thread that hands out reloads and prints a stats line at a fixed interval.
//!
//! # Shared nothing on the packet path
//!
//! Each engine owns its driver (one queue), its stack (flow table, cells, pools, timer wheel)
//! and its HTTP state; the only thing engines share is the read-only [`ContentCache`] behind an
//! `Arc`. Engine and supervisor meet in a `Mailbox`, touched once per loop iteration at most
//! (a relaxed load of a flag that changes on a reload) and never per packet:
//!
//! - a reload puts the new tree in the mailbox and raises the flag; the engine adopts it at the
//!   top of its next iteration, between requests as before;
//! - the engine publishes a snapshot of its counters every [`PUBLISH_INTERVAL`], which the
//!   supervisor sums for the stats line (so a line is at most that much behind);
//! - with `--metrics-listen`, the supervisor also puts the engines' latest snapshots on a
//!   [`MetricsBoard`] every [`metrics::PUBLISH_INTERVAL`], for the metrics thread to render
//!   (the engines do nothing more for it);
//! - the stop flag is shared by all: a signal, a failed engine, or the end of a finite source
//!   (a pcap trace) on every engine ends the run.
//!
//! # Clocks
//!
//! The clock is read once per iteration (a vDSO call, not a syscall), from one start instant
//! shared by all engines. An iteration that moved no frame is followed, when busy-polling, by
//! up to `IDLE_SPINS` cheap looks at the driver's RX ring ([`FrameIo::rx_pending`], no
//! syscall) before the next iteration and its clock read: so an idle engine reads the clock
//! every few microseconds rather than on every turn, a burst is taken as soon as it lands, and
//! a timer fires at most those few microseconds late. In idle mode an engine sleeps in its
//! driver's `wait_rx` instead, only when an iteration moved no frame, and never past its
//! stack's next deadline.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration as StdDuration;

use sirocco_drivers::{DriverError, FrameIo, host};
use sirocco_netstack::{Instant, StackCounters};

use crate::cache::ContentCache;
use crate::http::HttpCounters;
use crate::metrics::{self, MetricsBoard, Snapshot};
use crate::reload::{Reloaded, Reloader};
use crate::server::{Flush, Server, Stats};

/// Longest single sleep in idle mode, and of the supervisor, so a stop request is noticed
/// promptly.
const MAX_IDLE_SLEEP: StdDuration = StdDuration::from_millis(50);
/// After a finite source (a pcap trace) runs dry, keep serving this long for the answers.
const DRAIN_AFTER_EXHAUSTED: StdDuration = StdDuration::from_millis(200);
/// Looks at the RX ring, with a spin-loop hint (x86 PAUSE, tens to about 140 cycles) between
/// them, after an iteration that moved nothing and before the next one: a few microseconds.
const IDLE_SPINS: u32 = 64;
/// How often an engine publishes its counters for the supervisor.
pub const PUBLISH_INTERVAL: StdDuration = StdDuration::from_millis(100);

pub struct RunOptions {
    /// Sleep in the driver when idle instead of spinning.
    pub sleep_when_idle: bool,
    /// Print a stats line this often (None: never).
    pub stats_interval: Option<StdDuration>,
    /// With the total line, one line per engine (`--stats-per-queue`).
    pub stats_per_queue: bool,
    /// Set by a signal handler for a graceful stop ([`Server::begin_drain`]): every engine
    /// refuses new connections and ends once its own have finished, or after
    /// `shutdown_timeout`, whichever is first.
    pub drain: Arc<AtomicBool>,
    pub shutdown_timeout: StdDuration,
    /// Set to end at once: an engine failed, or a caller wants out.
    pub stop: Arc<AtomicBool>,
    /// Where to publish counters for the metrics endpoint (`--metrics-listen`), if anywhere.
    pub metrics: Option<Arc<MetricsBoard>>,
}

/// One engine to run: a server on one NIC queue, and the CPU its thread is pinned to (`None`:
/// wherever the scheduler puts it).
pub struct Engine<D: FrameIo> {
    pub queue: u32,
    pub cpu: Option<usize>,
    pub server: Server<D>,
}

/// How an engine ended.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("engine of queue {queue}: {source}")]
    Driver {
        queue: u32,
        #[source]
        source: DriverError,
    },
    #[error("engine of queue {queue}: cannot pin its thread to CPU {cpu}: {source}")]
    Pin {
        queue: u32,
        cpu: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("engine of queue {queue} panicked")]
    Panicked { queue: u32 },
    #[error("cannot start the thread of the engine of queue {queue}: {source}")]
    Spawn {
        queue: u32,
        #[source]
        source: std::io::Error,
    },
}

/// Where an engine and the supervisor meet. See the module documentation. Aligned to two
/// cache lines (the adjacent-line prefetcher pairs them), so no two engines' mailboxes share
/// one: the flag an engine reads every iteration sits on lines no other engine writes.
#[derive(Default)]
#[repr(align(128))]
struct Mailbox {
    /// A reloaded tree the engine has not adopted yet.
    cache: Mutex<Option<Arc<ContentCache>>>,
    cache_posted: AtomicBool,
    /// The engine's counters as last published.
    stats: Mutex<Stats>,
    /// The engine's loop has ended (stop, drained source, or error).
    done: AtomicBool,
}

impl Mailbox {
    fn post_cache(&self, cache: Arc<ContentCache>) {
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(cache);
        self.cache_posted.store(true, Ordering::Release);
    }

    fn take_cache(&self) -> Option<Arc<ContentCache>> {
        if !self.cache_posted.load(Ordering::Relaxed) {
            return None;
        }
        self.cache_posted.store(false, Ordering::Relaxed);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn publish(&self, stats: Stats) {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = stats;
    }

    fn snapshot(&self) -> Stats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Runs every engine on a thread of its own until `options.stop` is set, an engine fails, or
/// every engine's finite source has been drained. With a `reloader`, a requested reload is
/// handed to every engine once it has loaded (and reported on stderr). Returns each engine's
/// queue and final counters, in the order given.
pub fn run<D: FrameIo + Send>(
    engines: Vec<Engine<D>>,
    options: &RunOptions,
    reloader: Option<&mut Reloader>,
    stats_out: &mut dyn Write,
) -> Result<Vec<(u32, Stats)>, RunError> {
    let start = std::time::Instant::now();
    let queues: Vec<u32> = engines.iter().map(|e| e.queue).collect();
    let tree = engines.first().map(|e| Arc::clone(e.server.cache()));
    let mailboxes: Vec<Mailbox> = engines.iter().map(|_| Mailbox::default()).collect();
    let stop = &options.stop;
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(engines.len());
        for (engine, mailbox) in engines.into_iter().zip(&mailboxes) {
            let queue = engine.queue;
            let spawned = std::thread::Builder::new()
                .name(format!("sirocco-q{queue}"))
                .spawn_scoped(scope, move || {
                    let _done = Done { mailbox, stop };
                    let result = engine_thread(engine, mailbox, options, start);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                });
            match spawned {
                Ok(handle) => handles.push((queue, handle)),
                Err(source) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(RunError::Spawn { queue, source });
                }
            }
        }

        supervise(
            &mailboxes,
            &queues,
            options,
            reloader,
            stats_out,
            start,
            tree.as_deref(),
        );
        stop.store(true, Ordering::Relaxed);

        let mut finals = Vec::with_capacity(handles.len());
        let mut first_error = None;
        for (queue, handle) in handles {
            match handle.join() {
                Ok(Ok(stats)) => finals.push((queue, stats)),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(RunError::Panicked { queue });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(finals),
        }
    })
}

/// Marks an engine done when its thread ends, by return or by panic; a panic stops the
/// others too, so the supervisor returns and reports it.
struct Done<'a> {
    mailbox: &'a Mailbox,
    stop: &'a AtomicBool,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.mailbox.done.store(true, Ordering::Release);
    }
}

/// Puts the tree in force into the metrics snapshot's cache figures.
fn note_tree(snapshot: &mut Snapshot, tree: &ContentCache) {
    snapshot.cache_files = tree.file_count() as u64;
    snapshot.cache_bytes = tree.total_bytes() as u64;
}

/// The calling thread's part: reloads, stats lines, metrics snapshots, and noticing that every
/// engine is done.
fn supervise(
    mailboxes: &[Mailbox],
    queues: &[u32],
    options: &RunOptions,
    mut reloader: Option<&mut Reloader>,
    stats_out: &mut dyn Write,
    start: std::time::Instant,
    tree: Option<&ContentCache>,
) {
    // What the supervisor knows beyond the engines' counters (the tree, the reloads); the
    // engines' own go in at each publish.
    let mut outside = Snapshot::default();
    if let Some(tree) = tree {
        note_tree(&mut outside, tree);
    }
    // The first snapshot at once (all zeroes), so a scrape never finds the board empty.
    let mut next_metrics = options.metrics.as_ref().map(|_| StdDuration::ZERO);
    let mut next_stats = options.stats_interval;
    let mut last: Vec<Stats> = mailboxes.iter().map(|_| Stats::default()).collect();
    let mut last_total = Stats::default();
    let mut drain_said = false;
    while !options.stop.load(Ordering::Relaxed) {
        if mailboxes.iter().all(|m| m.done.load(Ordering::Acquire)) {
            break;
        }
        if !drain_said && options.drain.load(Ordering::Relaxed) {
            drain_said = true;
            let open: usize = mailboxes.iter().map(|m| m.snapshot().connections).sum();
            eprintln!(
                "stopping: refusing new connections; waiting up to {} s for {open} open to finish (a second Ctrl-C or SIGTERM stops at once)",
                options.shutdown_timeout.as_secs()
            );
        }
        if let Some(reloaded) = reloader.as_deref_mut().and_then(Reloader::poll) {
            match reloaded {
                Reloaded::Loaded(cache, took) => {
                    eprintln!(
                        "reloaded: {} files ({} bytes) in {:.1} ms; connections move to the new tree between requests",
                        cache.file_count(),
                        cache.total_bytes(),
                        took.as_secs_f64() * 1e3
                    );
                    note_tree(&mut outside, &cache);
                    outside.reloads_ok += 1;
                    for mailbox in mailboxes {
                        mailbox.post_cache(Arc::clone(&cache));
                    }
                }
                Reloaded::Failed(why) => {
                    outside.reloads_failed += 1;
                    eprintln!("reload failed, still serving the previous tree: {why}");
                }
            }
        }
        let elapsed = start.elapsed();
        if let (Some(due), Some(board)) = (next_metrics, &options.metrics)
            && elapsed >= due
        {
            board.publish(Snapshot {
                queues: queues
                    .iter()
                    .copied()
                    .zip(mailboxes.iter().map(Mailbox::snapshot))
                    .collect(),
                ..outside.clone()
            });
            next_metrics = Some(due + metrics::PUBLISH_INTERVAL);
        }
        if let (Some(due), Some(interval)) = (next_stats, options.stats_interval)
            && elapsed >= due
        {
            let now: Vec<Stats> = mailboxes.iter().map(Mailbox::snapshot).collect();
            let total = Stats::sum(&now);
            // A failed write of a stats line (closed stdout) must not stop the server.
            let _ = writeln!(stats_out, "{}", stats_line(elapsed, &last_total, &total));
            if options.stats_per_queue {
                for ((queue, before), now) in queues.iter().zip(&last).zip(&now) {
                    let line = stats_line(elapsed, before, now);
                    let _ = writeln!(stats_out, "  queue {queue}: {}", without_time(&line));
                }
            }
            last = now;
            last_total = total;
            next_stats = Some(due + interval);
        }
        let until = |next: Option<StdDuration>| {
            next.map_or(MAX_IDLE_SLEEP, |due| due.saturating_sub(elapsed))
        };
        std::thread::sleep(
            until(next_stats)
                .min(until(next_metrics))
                .min(MAX_IDLE_SLEEP)
                .max(StdDuration::from_millis(1)),
        );
    }
}

/// A stats line without its `[  12.0s] ` time stamp, for the per-queue lines under it.
fn without_time(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, rest)| rest)
}

/// One engine's thread: pin, run the loop, publish the final counters.
fn engine_thread<D: FrameIo>(
    mut engine: Engine<D>,
    mailbox: &Mailbox,
    options: &RunOptions,
    start: std::time::Instant,
) -> Result<Stats, RunError> {
    let queue = engine.queue;
    if let Some(cpu) = engine.cpu {
        host::pin_current_thread(cpu).map_err(|source| RunError::Pin { queue, cpu, source })?;
    }
    let result = engine_loop(&mut engine.server, mailbox, options, start);
    let stats = engine.server.stats();
    mailbox.publish(stats.clone());
    result.map_err(|source| RunError::Driver { queue, source })?;
    Ok(stats)
}

/// The data path of one engine on the wall clock, until `stop`, the end of a graceful stop, or
/// a drained finite source.
fn engine_loop<D: FrameIo>(
    server: &mut Server<D>,
    mailbox: &Mailbox,
    options: &RunOptions,
    start: std::time::Instant,
) -> Result<(), DriverError> {
    let mut next_publish = PUBLISH_INTERVAL;
    let mut exhausted_at: Option<StdDuration> = None;
    let mut drain_until: Option<StdDuration> = None;
    // Sleeping when idle, a pass may leave its TX kick to the next pass or to the `poll()` of
    // the wait: the passes of one wake-up then share one system call (see
    // `FrameIo::tx_flush_lazy`). Busy-polling never waits, so it kicks every pass.
    let flush = if options.sleep_when_idle {
        Flush::Lazy
    } else {
        Flush::Now
    };
    while !options.stop.load(Ordering::Relaxed) {
        let elapsed = start.elapsed();
        let now = Instant::from_micros(i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX));
        if let Some(cache) = mailbox.take_cache() {
            server.set_cache(cache);
        }
        if drain_until.is_none() && options.drain.load(Ordering::Relaxed) {
            server.begin_drain();
            drain_until = Some(elapsed + options.shutdown_timeout);
        }
        let moved = server.poll_with(now, flush)?;
        if let Some(until) = drain_until
            && (server.connections() == 0 || elapsed >= until)
        {
            break;
        }

        if elapsed >= next_publish {
            mailbox.publish(server.stats());
            next_publish = elapsed + PUBLISH_INTERVAL;
        }

        if server.driver().rx_exhausted() {
            let since = *exhausted_at.get_or_insert(elapsed);
            if !moved && elapsed - since >= DRAIN_AFTER_EXHAUSTED {
                break;
            }
        }
        if !moved && options.sleep_when_idle {
            let until_deadline = server
                .poll_at()
                .map(|at| StdDuration::from_micros((at - now).total_micros()))
                .unwrap_or(MAX_IDLE_SLEEP);
            server
                .driver_mut()
                .wait_rx(until_deadline.min(MAX_IDLE_SLEEP))?;
        } else if !moved {
            spin_for_rx(server.driver());
        }
    }
    // A kick a lazy pass left owed.
    server.driver_mut().tx_flush()
}

/// Busy-polling while idle: up to [`IDLE_SPINS`] looks at the RX ring, returning as soon as a
/// frame may be waiting. Returns how many looks it took.
fn spin_for_rx<D: FrameIo>(driver: &D) -> u32 {
    for spin in 1..=IDLE_SPINS {
        if driver.rx_pending() {
            return spin;
        }
        std::hint::spin_loop();
    }
    IDLE_SPINS
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
    line.push_str(&address_conflicts(&now.stack));
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
/// path that loses tails shows timeouts, one that loses inside windows fast recoveries, one
/// with a smaller MTU than ours `pmtu_lowered`.
pub fn loss_recovery(counters: &StackCounters) -> String {
    join_nonzero(
        counters
            .fields()
            .filter(|(name, _)| name.starts_with("tcp_") || *name == "pmtu_lowered"),
    )
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

/// Another host claiming one of our addresses, if one did, as ` (ndp_address_conflicts=...)`:
/// an operator must hear of it, since that host's replies then steal our clients.
pub fn address_conflicts(counters: &StackCounters) -> String {
    join_nonzero(
        counters
            .fields()
            .filter(|(name, _)| *name == "ndp_address_conflicts"),
    )
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
    use crate::server::ServerConfig;
    use sirocco_drivers::pcap::PcapDriver;
    use sirocco_drivers::{Capabilities, DriverCounters};
    use sirocco_netstack::{EthernetAddress, Ipv4Address, Ipv4Cidr, StackConfig};

    fn config() -> ServerConfig {
        let mut stack = StackConfig::new(
            EthernetAddress([2, 0, 198, 18, 0, 2]),
            Ipv4Cidr::new(Ipv4Address::new(198, 18, 0, 2), 24),
            80,
        );
        stack.max_connections = 4;
        ServerConfig::new(stack)
    }

    fn cache() -> Arc<ContentCache> {
        static UNIQUE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sirocco-runner-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hello").unwrap();
        let cache = ContentCache::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Arc::new(cache)
    }

    fn engine<D: FrameIo>(queue: u32, driver: D) -> Engine<D> {
        let mut n = u64::from(queue) << 32;
        let seeds = Box::new(move || {
            n += 1;
            n
        });
        Engine {
            queue,
            cpu: None,
            server: Server::new(driver, cache(), config(), seeds).unwrap(),
        }
    }

    fn options(stop: &Arc<AtomicBool>) -> RunOptions {
        RunOptions {
            sleep_when_idle: true,
            stats_interval: Some(StdDuration::from_millis(20)),
            stats_per_queue: true,
            drain: Arc::new(AtomicBool::new(false)),
            shutdown_timeout: StdDuration::from_secs(10),
            stop: Arc::clone(stop),
            metrics: None,
        }
    }

    #[test]
    fn engines_run_on_threads_of_their_own_and_end_when_every_source_is_drained() {
        let stop = Arc::new(AtomicBool::new(false));
        let engines = vec![
            engine(0, PcapDriver::new(None, None)),
            engine(3, PcapDriver::new(None, None)),
        ];
        let mut out = Vec::new();
        let finals = run(engines, &options(&stop), None, &mut out).expect("a clean run");
        assert_eq!(finals.iter().map(|f| f.0).collect::<Vec<_>>(), vec![0, 3]);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("conns=0"), "{out}");
        assert!(out.contains("  queue 0: conns=0"), "{out}");
        assert!(out.contains("  queue 3: conns=0"), "{out}");
    }

    /// A link that is up and quiet: no frame ever comes, and it never runs dry. A broken one
    /// panics on receive: a bug in an engine.
    struct Quiet {
        broken: bool,
    }

    const QUIET: Quiet = Quiet { broken: false };

    impl FrameIo for Quiet {
        fn capabilities(&self) -> Capabilities {
            Capabilities::ethernet(1500)
        }
        fn rx_burst(
            &mut self,
            _max: usize,
            _on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, DriverError> {
            assert!(!self.broken, "a broken engine");
            Ok(0)
        }
        fn tx_room(&self) -> usize {
            64
        }
        fn tx_stage(&mut self, _len: usize, _fill: &mut dyn FnMut(&mut [u8])) -> bool {
            true
        }
        fn tx_flush(&mut self) -> Result<(), DriverError> {
            Ok(())
        }
        fn counters(&self) -> DriverCounters {
            DriverCounters::default()
        }
    }

    /// Says a frame is waiting from its `after`-th look on.
    struct Pending {
        looks: std::cell::Cell<u32>,
        after: u32,
    }

    impl FrameIo for Pending {
        fn capabilities(&self) -> Capabilities {
            Capabilities::ethernet(1500)
        }
        fn rx_burst(
            &mut self,
            _max: usize,
            _on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, DriverError> {
            Ok(0)
        }
        fn rx_pending(&self) -> bool {
            self.looks.set(self.looks.get() + 1);
            self.looks.get() >= self.after
        }
        fn tx_room(&self) -> usize {
            64
        }
        fn tx_stage(&mut self, _len: usize, _fill: &mut dyn FnMut(&mut [u8])) -> bool {
            true
        }
        fn tx_flush(&mut self) -> Result<(), DriverError> {
            Ok(())
        }
        fn counters(&self) -> DriverCounters {
            DriverCounters::default()
        }
    }

    /// Records how the loop flushes and waits, and asks it to stop after a few passes.
    struct Recorder {
        calls: Vec<&'static str>,
        stop: Arc<AtomicBool>,
    }

    impl Recorder {
        fn record(&mut self, call: &'static str) {
            self.calls.push(call);
            if self.calls.len() >= 6 {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    impl FrameIo for Recorder {
        fn capabilities(&self) -> Capabilities {
            Capabilities::ethernet(1500)
        }
        fn rx_burst(
            &mut self,
            _max: usize,
            _on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, DriverError> {
            Ok(0)
        }
        fn tx_room(&self) -> usize {
            64
        }
        fn tx_stage(&mut self, _len: usize, _fill: &mut dyn FnMut(&mut [u8])) -> bool {
            true
        }
        fn tx_flush(&mut self) -> Result<(), DriverError> {
            self.record("flush");
            Ok(())
        }
        fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
            self.record("lazy");
            Ok(())
        }
        fn wait_rx(&mut self, _timeout: StdDuration) -> Result<(), DriverError> {
            self.record("wait");
            Ok(())
        }
        fn counters(&self) -> DriverCounters {
            DriverCounters::default()
        }
    }

    /// The calls `engine_loop` makes on a [`Recorder`], sleeping when idle or not.
    fn loop_calls(sleep_when_idle: bool) -> Vec<&'static str> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut options = options(&stop);
        options.sleep_when_idle = sleep_when_idle;
        let recorder = Recorder {
            calls: Vec::new(),
            stop: Arc::clone(&stop),
        };
        let mut engine = engine(0, recorder);
        let mailbox = Mailbox::default();
        engine_loop(
            &mut engine.server,
            &mailbox,
            &options,
            std::time::Instant::now(),
        )
        .unwrap();
        std::mem::take(&mut engine.server.driver_mut().calls)
    }

    #[test]
    fn sleeping_when_idle_passes_flush_lazily_and_the_loop_ends_with_a_real_flush() {
        assert_eq!(
            loop_calls(true),
            ["lazy", "wait", "lazy", "wait", "lazy", "wait", "flush"]
        );
        // Busy-polling never waits, so every pass kicks.
        assert_eq!(loop_calls(false), ["flush"; 7]);
    }

    #[test]
    fn an_idle_spin_ends_at_the_first_pending_frame_or_after_its_bound() {
        let soon = Pending {
            looks: std::cell::Cell::new(0),
            after: 5,
        };
        assert_eq!(spin_for_rx(&soon), 5);
        assert_eq!(soon.looks.get(), 5);
        let never = Pending {
            looks: std::cell::Cell::new(0),
            after: u32::MAX,
        };
        assert_eq!(spin_for_rx(&never), IDLE_SPINS);
        assert_eq!(never.looks.get(), IDLE_SPINS);
        // A backend that cannot tell says "maybe": no spinning at all.
        assert_eq!(spin_for_rx(&QUIET), 1);
    }

    #[test]
    fn a_graceful_stop_ends_engines_with_no_connection_at_once() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut options = options(&stop);
        options.shutdown_timeout = StdDuration::from_secs(60);
        let drain = Arc::clone(&options.drain);
        let engines = vec![engine(0, QUIET), engine(1, QUIET)];
        let started = std::time::Instant::now();
        let signal = std::thread::spawn(move || {
            std::thread::sleep(StdDuration::from_millis(50));
            drain.store(true, Ordering::Relaxed);
        });
        let finals = run(engines, &options, None, &mut Vec::new()).expect("a clean stop");
        signal.join().unwrap();
        assert_eq!(finals.len(), 2);
        assert!(
            started.elapsed() < StdDuration::from_secs(30),
            "engines with nothing open must not wait for the shutdown timeout"
        );
    }

    #[test]
    fn the_supervisor_publishes_metrics_with_the_tree_and_the_reloads() {
        let stop = Arc::new(AtomicBool::new(false));
        let board = Arc::new(MetricsBoard::new());
        let mut options = options(&stop);
        options.metrics = Some(Arc::clone(&board));
        let dir = std::env::temp_dir().join(format!("sirocco-runner-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.html"), "aaa").unwrap();
        std::fs::write(dir.join("b.html"), "bb").unwrap();
        // One good reload (the two-file tree), then one that fails (the tree is gone).
        let requested = Arc::new(AtomicBool::new(true));
        let mut reloader = Reloader::new(
            Arc::clone(&requested),
            dir.clone(),
            crate::cache::LoadOptions::default(),
        );
        let engines = vec![engine(0, QUIET), engine(3, QUIET)];
        let (stopper, path) = (Arc::clone(&stop), dir.clone());
        let script = std::thread::spawn(move || {
            std::thread::sleep(StdDuration::from_millis(300));
            std::fs::remove_dir_all(&path).unwrap();
            requested.store(true, Ordering::Relaxed);
            std::thread::sleep(StdDuration::from_millis(1_500));
            stopper.store(true, Ordering::Relaxed);
        });
        run(engines, &options, Some(&mut reloader), &mut Vec::new()).expect("a clean run");
        script.join().unwrap();
        let latest = board.latest();
        assert_eq!(
            latest.queues.iter().map(|q| q.0).collect::<Vec<_>>(),
            vec![0, 3]
        );
        assert_eq!((latest.reloads_ok, latest.reloads_failed), (1, 1));
        assert_eq!((latest.cache_files, latest.cache_bytes), (2, 5));
        assert!(crate::metrics::render(&latest).contains("sirocco_cache_files 2\n"));
    }

    #[test]
    fn a_panicking_engine_stops_the_others_and_is_reported() {
        let stop = Arc::new(AtomicBool::new(false));
        let engines: Vec<Engine<Box<dyn FrameIo + Send>>> = vec![
            engine(
                0,
                Box::new(PcapDriver::new(None, None)) as Box<dyn FrameIo + Send>,
            ),
            engine(
                1,
                Box::new(Quiet { broken: true }) as Box<dyn FrameIo + Send>,
            ),
        ];
        let mut out = Vec::new();
        match run(engines, &options(&stop), None, &mut out) {
            Err(RunError::Panicked { queue: 1 }) => {}
            other => panic!("expected queue 1 reported as panicked, got {other:?}"),
        }
        assert!(stop.load(Ordering::Relaxed));
    }

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
        assert_eq!(address_conflicts(&some), "");
        let claimed = StackCounters {
            ndp_address_conflicts: 2,
            ..some.clone()
        };
        assert_eq!(address_conflicts(&claimed), " (ndp_address_conflicts=2)");
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
            pmtu_lowered: 1,
            ..some
        };
        assert_eq!(
            loss_recovery(&lossy),
            " (tcp_retransmits=5 tcp_fast_recoveries=2 pmtu_lowered=1)"
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
