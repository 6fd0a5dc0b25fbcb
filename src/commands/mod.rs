//! The CLI's commands: `serve`, `demo`, `lab`, `check-config`, `doctor`, `completions` and
//! `man`. This is the application's outer layer, so errors here carry `anyhow` context written
//! for the person at the terminal.

pub mod check_config;
pub mod demo;
pub mod docs;
pub mod doctor;
pub mod lab;
pub mod serve;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use sirocco_netstack::{Duration, EthernetAddress, StackConfig, TcpTuning};

use crate::cache::{ContentCache, LoadOptions, LoadProgress};
use crate::cli::{CommonArgs, ServerIps};
use crate::http::HttpLimits;

/// Loads the tree under `common.root` into memory with the user's cache options, drawing a
/// progress line on a terminal, and reports what was loaded (and what was refused) on stderr.
pub fn load_cache(common: &CommonArgs) -> anyhow::Result<Arc<ContentCache>> {
    let root = &common.root;
    let started = std::time::Instant::now();
    let mut progress = ProgressLine::new(std::io::stderr().is_terminal());
    let cache = ContentCache::load_with(root, &load_options(common), &mut |p| progress.show(p))?;
    progress.finish();
    let report = cache.load_report();
    for link in &report.refused_symlinks {
        eprintln!(
            "warning: not serving {}: it is a symlink that leads outside {}",
            link.display(),
            root.display()
        );
    }
    let variants = match cache.variant_count() {
        0 => String::new(),
        n => format!(", {n} precompressed variants"),
    };
    eprintln!(
        "loaded {} files ({} bytes{variants}) from {} in {:.1} ms",
        cache.file_count(),
        cache.total_bytes(),
        root.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(Arc::new(cache))
}

/// The cache options the user chose.
pub fn load_options(common: &CommonArgs) -> LoadOptions {
    LoadOptions {
        cache_control: common.cache_control.clone(),
        compress: common.compress,
        max_bytes: common.max_cache_bytes,
    }
}

/// The HTTP limits the user chose.
pub fn http_limits(common: &CommonArgs) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(common.header_timeout),
        max_requests_per_connection: common.max_requests_per_connection,
        keepalive_timeout: Duration::from_secs(common.keepalive_timeout),
        lingering_time: Duration::from_secs(common.lingering_time),
        lingering_timeout: Duration::from_secs(common.lingering_timeout),
        send_window: common.send_window as usize,
        ..HttpLimits::default()
    }
}

/// A one-line progress display for loading a large tree: redrawn in place at most ten times a
/// second, and only on a terminal (a log file gets the summary line alone). Hand-written: it is
/// one line of text, not worth a dependency.
struct ProgressLine {
    enabled: bool,
    last_draw: Option<std::time::Instant>,
    drawn: bool,
}

impl ProgressLine {
    /// Trees smaller than this load too fast to need a progress line.
    const MIN_BYTES: u64 = 64 << 20;

    fn new(enabled: bool) -> ProgressLine {
        ProgressLine {
            enabled,
            last_draw: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: &LoadProgress) {
        if !self.enabled || p.bytes_total < Self::MIN_BYTES {
            return;
        }
        let now = std::time::Instant::now();
        let due = self
            .last_draw
            .is_none_or(|at| now.duration_since(at).as_millis() >= 100);
        if !due && p.files_done < p.files_total {
            return;
        }
        self.last_draw = Some(now);
        self.drawn = true;
        const WIDTH: u64 = 30;
        let filled = (p.bytes_done * WIDTH)
            .checked_div(p.bytes_total)
            .unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        eprint!(
            "\rloading [{bar}] {}/{} files, {}/{} MiB ",
            p.files_done,
            p.files_total,
            p.bytes_done >> 20,
            p.bytes_total >> 20
        );
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// The netstack settings for serving `ips` with `mac` under the user's common options. The
/// stack adds the link-local IPv6 address derived from `mac` itself when `ips` has IPv6.
pub fn stack_config(ips: &ServerIps, mac: [u8; 6], common: &CommonArgs) -> StackConfig {
    // `StackConfig::new` wants an IPv4 address; it is replaced just below.
    let placeholder = sirocco_netstack::Ipv4Cidr::new(std::net::Ipv4Addr::UNSPECIFIED, 32);
    let mut config = StackConfig::new(EthernetAddress(mac), placeholder, common.port);
    config.ipv4 = ips
        .ipv4
        .map(|v4| sirocco_netstack::Ipv4Cidr::new(v4.addr, v4.prefix_len));
    config.ipv6 = ips
        .ipv6
        .iter()
        .map(|v6| sirocco_netstack::Ipv6Cidr::new(v6.addr, v6.prefix_len))
        .collect();
    config.max_connections = common.max_connections as usize;
    config.syn_cache_size = common.syn_cache_size as usize;
    config.max_connections_per_ip = common.max_connections_per_ip;
    config.challenge_ack_limit = common.challenge_ack_limit;
    config.rx_buffer = common.rx_buffer as usize;
    config.tx_buffer = common.tx_buffer as usize;
    config.idle_timeout = Duration::from_secs(common.idle_timeout);
    config.handshake_timeout = Duration::from_secs(common.handshake_timeout);
    config.tcp = TcpTuning {
        rto_min: Duration::from_millis(common.rto_min),
        initial_window: common.initial_window,
        sack: common.sack.is_on(),
        rack: common.rack.is_on(),
        tail_loss_probe: common.tail_loss_probe.is_on(),
    };
    config
}

/// For `serve`: a flag that the first SIGINT or SIGTERM sets, for a graceful stop (the
/// engines stop taking connections and end when theirs have finished); a second one ends the
/// process at once, with exit status 1, as nginx's fast shutdown after a graceful one. The
/// XDP program goes with the process: its link closes with it.
pub fn drain_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let drain = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it runs before the flag is set: it acts only when the flag is
        // already set, that is on the second signal.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&drain))
            .context("installing the stop handler")?;
        signal_hook::flag::register(signal, Arc::clone(&drain))
            .context("installing the stop handler")?;
    }
    Ok(drain)
}

/// A flag that SIGINT and SIGTERM set, for the run loop to stop cleanly (and the lab to be
/// removed by its `Drop`).
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }
    Ok(stop)
}
