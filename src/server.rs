//! The server loop: one driver, one netstack, the HTTP layer and one content cache.
//!
//! [`Server::poll`] is one iteration of the data path in DESIGN.md:
//! receive a burst → [`Stack::handle_burst`] (each frame in turn, with a look-ahead that
//! brings the burst's connections into cache first) → let HTTP serve the cells that became
//! ready → [`Stack::poll_egress`] into the driver's TX slots → one flush. Time is a parameter,
//! so the same loop runs on the wall clock (`sirocco serve`) and on a virtual clock (tests and
//! `sirocco-bench`). Nothing here allocates, logs or makes a syscall per packet; the driver's
//! flush is the only syscall per burst.

use std::sync::Arc;

use sirocco_drivers::{DriverCounters, DriverError, FrameIo};
use sirocco_netstack::{ConfigError, Instant, Stack, StackConfig, StackCounters, TxSink};

use crate::access_log::AccessLog;
use crate::cache::{ContentCache, EngineTree};
use crate::http::{
    self, DateHeader, HttpConn, HttpContext, HttpCounters, HttpLimits, RequestBuffers,
};

/// Frames taken from the driver per iteration: large enough to amortise the ring sync, small
/// enough that the egress of one burst fits the TX ring.
pub const DEFAULT_RX_BATCH: usize = 64;

/// Request buffers made at start: enough for a burst of connections mid-request; the pool
/// grows past it only if more are ever mid-request at once (see `http::RequestBuffers`).
const REQUEST_BUFFERS_AT_START: usize = 256;

/// Everything a [`Server`] needs besides its driver and cache.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub stack: StackConfig,
    pub http: HttpLimits,
    pub rx_batch: usize,
    /// Unix time (seconds) at `Instant::ZERO`, for the `Date` header. The CLI passes the wall
    /// clock; simulations pass a constant so their output is reproducible.
    pub unix_time_at_zero: u64,
}

impl ServerConfig {
    pub fn new(stack: StackConfig) -> Self {
        ServerConfig {
            stack,
            http: HttpLimits::default(),
            rx_batch: DEFAULT_RX_BATCH,
            unix_time_at_zero: 0,
        }
    }
}

/// How a pass of [`Server::poll_with`] hands its frames to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// [`FrameIo::tx_flush`]: the frames are on their way when the pass ends.
    Now,
    /// [`FrameIo::tx_flush_lazy`]: a driver whose kick is a system call may share it with the
    /// next pass, or leave it to the `poll()` of the next wait. For a caller that waits when
    /// idle.
    Lazy,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid stack settings: {0}")]
    Stack(#[from] ConfigError),
    #[error("rx batch must be at least 1")]
    RxBatch,
}

/// A snapshot of every counter, for the stats line and for tests.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub driver: DriverCounters,
    pub stack: StackCounters,
    pub http: HttpCounters,
    /// Cells in use: open connections, whatever their TCP state.
    pub connections: usize,
    /// Of those, the ones idle between requests ([`sirocco_netstack::Stack::idle_connections`]).
    pub idle_connections: usize,
    /// Closed connections in TIME-WAIT, which hold no cell
    /// ([`sirocco_netstack::Stack::time_wait_connections`]).
    pub time_wait_connections: usize,
}

impl Stats {
    /// The totals over several engines' snapshots.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut total = Stats::default();
        for stats in all {
            total.driver += stats.driver;
            total.stack += &stats.stack;
            total.http += &stats.http;
            total.connections += stats.connections;
            total.idle_connections += stats.idle_connections;
            total.time_wait_connections += stats.time_wait_connections;
        }
        total
    }
}

pub struct Server<D: FrameIo> {
    driver: D,
    stack: Stack<HttpConn>,
    /// This engine's handle on the tree in force (see [`EngineTree`]).
    cache: EngineTree,
    date: DateHeader,
    http_counters: HttpCounters,
    config: ServerConfig,
    access_log: Option<AccessLog>,
    request_buffers: RequestBuffers,
}

impl<D: FrameIo> Server<D> {
    /// `seeds` keys the flow table and seeds each connection cell's ISN generator: pass OS
    /// randomness in production ([`os_seeds`]) and a fixed-seed PRNG in simulations.
    pub fn new(
        driver: D,
        cache: Arc<ContentCache>,
        mut config: ServerConfig,
        seeds: Box<dyn FnMut() -> u64>,
    ) -> Result<Self, ServerError> {
        if config.rx_batch == 0 {
            return Err(ServerError::RxBatch);
        }
        let caps = driver.capabilities();
        config.stack.mtu = config.stack.mtu.min(caps.mtu);
        config.stack.rx_checksum_verified = caps.rx_checksum_verified;
        config.stack.tx_checksum_offload = caps.tx_checksum_offload;
        let mut stack = Stack::new(config.stack.clone(), seeds)?;
        stack.set_prefetch(sirocco_drivers::prefetch::prefetch);
        Ok(Server {
            driver,
            stack,
            cache: EngineTree::new(cache),
            date: DateHeader::default(),
            http_counters: HttpCounters::default(),
            request_buffers: RequestBuffers::with_buffers(
                REQUEST_BUFFERS_AT_START,
                config.http.max_request_head.max(1),
            ),
            config,
            access_log: None,
        })
    }

    /// One iteration of the data path at `now`. Returns `Ok(true)` if any frame was received
    /// or sent, so callers can decide whether to wait.
    pub fn poll(&mut self, now: Instant) -> Result<bool, DriverError> {
        self.poll_with(now, Flush::Now)
    }

    /// [`Server::poll`], ending with the driver's flush `flush` asks for. With
    /// [`Flush::Lazy`] the caller must end its run of passes with a
    /// [`FrameIo::wait_rx`] or a [`FrameIo::tx_flush`] (see [`FrameIo::tx_flush_lazy`]).
    pub fn poll_with(&mut self, now: Instant, flush: Flush) -> Result<bool, DriverError> {
        let stack = &mut self.stack;
        let received = self.driver.rx_batch(self.config.rx_batch, &mut |frames| {
            stack.handle_burst(now, frames)
        })?;

        let unix_secs = self
            .config
            .unix_time_at_zero
            .saturating_add(u64::try_from(now.secs()).unwrap_or(0));
        self.date.update(unix_secs);
        if let Some(log) = &mut self.access_log {
            log.tick(unix_secs);
        }
        let mut cx = HttpContext {
            cache: &self.cache,
            draining: self.stack.is_draining(),
            now,
            date: &self.date,
            limits: &self.config.http,
            counters: &mut self.http_counters,
            buffers: &mut self.request_buffers,
            log: self.access_log.as_mut(),
            unix_secs,
        };
        self.stack.serve_ready(now, &mut |conn| {
            http::serve(conn.socket, conn.state, &mut cx)
        });

        let tx_before = self.stack.counters().tx_frames;
        self.stack
            .poll_egress(now, &mut DriverSink(&mut self.driver));
        let sent = self.stack.counters().tx_frames - tx_before;
        match flush {
            Flush::Now => self.driver.tx_flush()?,
            Flush::Lazy => self.driver.tx_flush_lazy()?,
        }
        Ok(received > 0 || sent > 0)
    }

    /// Starts a graceful stop: new connections are refused with an RST, every response from
    /// now on is the last of its connection, and connections waiting for a request are
    /// closed at the next poll. [`Server::connections`] falls to 0 as they finish.
    pub fn begin_drain(&mut self) {
        self.stack.begin_drain();
    }

    /// Connections open, half-closed and lingering ones included.
    pub fn connections(&self) -> usize {
        self.stack.connections()
    }

    /// When the stack next needs [`Server::poll`] even if no frame arrives.
    pub fn poll_at(&self) -> Option<Instant> {
        self.stack.poll_at()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            driver: self.driver.counters(),
            stack: self.stack.counters().clone(),
            http: HttpCounters {
                access_log_dropped: self.access_log.as_ref().map_or(0, AccessLog::dropped_lines),
                ..self.http_counters.clone()
            },
            connections: self.stack.connections(),
            idle_connections: self.stack.idle_connections(),
            time_wait_connections: self.stack.time_wait_connections(),
        }
    }

    pub fn cache(&self) -> &Arc<ContentCache> {
        self.cache.shared()
    }

    /// Logs every request from now on (`--access-log`).
    pub fn set_access_log(&mut self, log: AccessLog) {
        self.access_log = Some(log);
    }

    /// Puts a new tree in force (a reload). Connections adopt it between requests; responses
    /// already started finish from the tree they started with, which lives until the last of
    /// them is sent.
    pub fn set_cache(&mut self, cache: Arc<ContentCache>) {
        self.cache = EngineTree::new(cache);
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    pub fn into_driver(self) -> D {
        self.driver
    }
}

/// The netstack's view of a driver's TX ring.
struct DriverSink<'a, D: FrameIo>(&'a mut D);

impl<D: FrameIo> TxSink for DriverSink<'_, D> {
    fn has_room(&self) -> bool {
        self.0.tx_room() > 0
    }

    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.0.tx_stage(len, fill)
    }
}

/// Seeds from the operating system's CPRNG, for production servers.
pub fn os_seeds() -> Box<dyn FnMut() -> u64> {
    Box::new(|| {
        let mut bytes = [0u8; 8];
        // getrandom only fails when the OS has no entropy source at all; a fixed fallback would
        // make ISNs predictable, so mix in the clock and the address of a stack variable instead.
        if getrandom::fill(&mut bytes).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            bytes = (t ^ (&bytes as *const _ as u64).rotate_left(32)).to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    })
}
