//! The CLI's commands: `serve` and `demo`. This is the application's outer layer, so errors here
//! carry `anyhow` context written for the person at the terminal.

pub mod demo;
pub mod lab;
pub mod serve;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use sirocco_netstack::{Duration, EthernetAddress, StackConfig};

use crate::cache::ContentCache;
use crate::cli::{CommonArgs, Ipv4Cidr};

/// Loads `root` into memory and reports what was loaded (and what was refused) on stderr.
pub fn load_cache(root: &Path) -> anyhow::Result<Arc<ContentCache>> {
    let started = std::time::Instant::now();
    let cache = ContentCache::load(root)?;
    let report = cache.load_report();
    for link in &report.refused_symlinks {
        eprintln!(
            "warning: not serving {}: it is a symlink that leads outside {}",
            link.display(),
            root.display()
        );
    }
    eprintln!(
        "loaded {} files ({} bytes) from {} in {:.1} ms",
        cache.file_count(),
        cache.total_bytes(),
        root.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(Arc::new(cache))
}

/// The netstack settings for serving `ip` with `mac` under the user's common options.
pub fn stack_config(ip: Ipv4Cidr, mac: [u8; 6], common: &CommonArgs) -> StackConfig {
    let mut config = StackConfig::new(EthernetAddress(mac), ip.addr, ip.prefix_len, common.port);
    config.max_connections = common.max_connections as usize;
    config.rx_buffer = common.rx_buffer as usize;
    config.tx_buffer = common.tx_buffer as usize;
    config.idle_timeout = Duration::from_secs(common.idle_timeout);
    config
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
