//! `sirocco serve`: load the tree, open the driver the user chose, run the loop until Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sirocco_drivers::FrameIo;
use sirocco_drivers::capture::{Capture, CaptureDirection};
use sirocco_drivers::pcap::{PcapDriver, PcapSink, PcapSource, Timestamps};
use sirocco_drivers::tap::TapDevice;

use super::{load_cache, stack_config, stop_on_signals};
use crate::cli::{DriverKind, ServeArgs, default_mac};
use crate::lab;
use crate::runner::{self, RunOptions};
use crate::server::{Server, ServerConfig, os_seeds};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cache = load_cache(&args.common.root)?;
    let mac = args.mac.unwrap_or_else(|| default_mac(args.ip.addr));
    let mut config = ServerConfig::new(stack_config(args.ip, mac, &args.common));
    config.unix_time_at_zero = unix_now();

    match args.driver {
        DriverKind::Tap => {
            let Some(name) = args.iface.as_deref() else {
                bail!(
                    "--driver tap needs --iface NAME: the tap device to create or attach to, e.g. --iface tap0"
                );
            };
            if lab::interface_exists(name) && !lab::is_tun_device(name) {
                bail!(
                    "interface {name} exists and is not a tap device: give --iface a new name and sirocco will create the tap (existing interfaces: {})",
                    lab::interface_names().join(", ")
                );
            }
            let holders = lab::kernel_interfaces_with(args.ip.addr);
            if !holders.is_empty() {
                bail!(
                    "{} is already an address of this host's kernel (on {}): sirocco answers for its address itself, so give the kernel another one, or pick another --ip",
                    args.ip.addr,
                    holders.join(", ")
                );
            }
            let tap = TapDevice::open(name).with_context(|| format!("opening tap {name}"))?;
            eprintln!(
                "serving {} on tap {name} at http://{}:{}/ (the kernel side of {name} is the client: give it an address in {}, e.g. `ip addr add {}/{} dev {name}`)",
                args.common.root.display(),
                args.ip.addr,
                args.common.port,
                args.ip,
                neighbour_of(args.ip.addr),
                args.ip.prefix_len,
            );
            serve_on(tap, config, cache, &args)
        }
        DriverKind::Pcap => {
            let Some(input) = args.pcap_in.as_deref() else {
                bail!("--driver pcap needs --pcap-in FILE: the trace to read frames from");
            };
            let source = PcapSource::open(input)?;
            let sink = match args.pcap_out.as_deref() {
                Some(path) => Some(PcapSink::create(path, Timestamps::Wall)?),
                None => None,
            };
            eprintln!(
                "replaying {} against {} (answers to {})",
                input.display(),
                args.ip,
                args.pcap_out
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "nowhere".into())
            );
            serve_on(PcapDriver::new(Some(source), sink), config, cache, &args)
        }
    }
}

/// Wraps the driver in a capture if asked, builds the server and runs it.
fn serve_on<D: FrameIo>(
    driver: D,
    config: ServerConfig,
    cache: std::sync::Arc<crate::cache::ContentCache>,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    match args.common.capture.as_deref() {
        Some(path) => {
            let sink = open_capture(path)?;
            let captured = Capture::new(driver, sink, CaptureDirection::Both);
            run_server(captured, config, cache, args)
        }
        None => run_server(driver, config, cache, args),
    }
}

fn open_capture(path: &Path) -> anyhow::Result<PcapSink> {
    PcapSink::create(path, Timestamps::Wall)
        .with_context(|| format!("opening capture file {}", path.display()))
}

fn run_server<D: FrameIo>(
    driver: D,
    config: ServerConfig,
    cache: std::sync::Arc<crate::cache::ContentCache>,
    args: &ServeArgs,
) -> anyhow::Result<()> {
    let mut server = Server::new(driver, cache, config, os_seeds())?;
    let options = RunOptions {
        idle_wait: args.common.idle_wait,
        stats_interval: (args.common.stats_interval > 0)
            .then(|| Duration::from_secs(args.common.stats_interval)),
        stop: stop_on_signals()?,
    };
    let mut stdout = std::io::stdout();
    runner::run(&mut server, &options, &mut stdout)?;
    let stats = server.stats();
    let _ = writeln!(
        stdout,
        "stopped: {} requests, {} frames in, {} frames out, {} dropped",
        stats.http.requests,
        stats.driver.rx_frames,
        stats.driver.tx_frames,
        stats.stack.total_dropped()
    );
    Ok(())
}

/// Another address in the same subnet, to suggest for the kernel side.
fn neighbour_of(addr: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    let [a, b, c, d] = addr.octets();
    std::net::Ipv4Addr::new(a, b, c, if d == 1 { 2 } else { 1 })
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
