//! `sirocco-replay`: replays the client side of a pcap/pcapng trace against sirocco and checks
//! every HTTP answer against the one in the trace.
//!
//! ```text
//! sirocco-replay TRACE --target inprocess --root DIR          # virtual clock, deterministic
//! sirocco-replay TRACE --target afxdp --iface veth-cli \
//!     --client-ip 198.18.0.1 --server-ip 198.18.0.2          # a live server, AF_XDP
//! sirocco-replay TRACE --target afxdp --iface veth-cli \
//!     --client-ip 2001:2::1 --server-ip 2001:2::2            # the same over IPv6
//! ```
//!
//! Prints a report per flow and a summary (or JSON with `--json`); exits 0 when every status
//! and body matched and no flow stalled, 1 on a mismatch, 2 when the replay could not run
//! (bad arguments, unreadable trace, no flows to the port, no server).

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sirocco::cache::ContentCache;
use sirocco_drivers::afxdp::{AfXdp, AfXdpConfig, Filter};
use sirocco_drivers::capture::CaptureDirection;
use sirocco_tools::replay::{
    Addresses, InProcessOptions, Pacing, ReplayOptions, Report, Trace, replay_in_process,
    replay_live, resolve_mac,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// A sirocco server in this process, on the memory link and a virtual clock.
    Inprocess,
    /// A live server, through AF_XDP on --iface (every frame on it is taken: use a link
    /// dedicated to the test, such as the lab's veth-cli).
    Afxdp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CaptureWhat {
    /// What the server sent (the golden-file format).
    Tx,
    /// Both directions, as the server saw them.
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "sirocco-replay",
    about = "Replay the client side of a pcap trace against sirocco and compare every HTTP answer",
    after_help = "Exit status: 0 all answers match, 1 a mismatch or a stalled flow, 2 the replay could not run."
)]
struct Args {
    /// The trace (pcap or pcapng, Ethernet).
    trace: PathBuf,
    /// The server's TCP port in the trace (and on the target).
    #[arg(long, default_value_t = 80)]
    port: u16,
    #[arg(long, value_enum, default_value_t = TargetKind::Inprocess)]
    target: TargetKind,
    /// Document root to serve (in-process target).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Seed of the in-process server (ISNs, flow-table key).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// In-process: record the server's traffic to this pcap (virtual timestamps).
    #[arg(long)]
    capture: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = CaptureWhat::Tx)]
    capture_what: CaptureWhat,
    /// Live target: the interface to send and receive on.
    #[arg(long)]
    iface: Option<String>,
    /// Live target: the address the replayed client uses (IPv4 or IPv6, the family of
    /// --server-ip).
    #[arg(long, default_value = "198.18.0.1")]
    client_ip: IpAddr,
    /// Live target: the server's address (IPv4, or IPv6 such as 2001:2::2).
    #[arg(long, default_value = "198.18.0.2")]
    server_ip: IpAddr,
    /// Send client segments as fast as the target's answers allow (the default).
    #[arg(long, conflicts_with = "original_timing")]
    as_fast_as_possible: bool,
    /// Send client segments no earlier than at the trace's pace.
    #[arg(long)]
    original_timing: bool,
    /// Limit on the whole run, in seconds (virtual in process, wall-clock live).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// A flow with no progress for this many seconds is given up as stalled.
    #[arg(long, default_value_t = 10)]
    stall: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!("{:#}", report.to_json());
            } else {
                println!("{report}");
            }
            ExitCode::from(if report.is_ok() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("sirocco-replay: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    if args.stall == 0 || args.timeout == 0 {
        bail!("--timeout and --stall must be at least 1 second");
    }
    // Check the target's arguments before reading a large trace.
    match args.target {
        TargetKind::Inprocess if args.root.is_none() => {
            bail!("--target inprocess needs --root DIR, the document root to serve")
        }
        TargetKind::Afxdp if args.iface.is_none() => {
            bail!("--target afxdp needs --iface IFACE, e.g. --iface veth-cli in the lab")
        }
        _ => {}
    }
    let trace = Trace::open(&args.trace, args.port)?;
    let replay = ReplayOptions {
        pacing: if args.original_timing {
            Pacing::OriginalTiming
        } else {
            Pacing::AsFastAsPossible
        },
        stall_micros: args.stall.saturating_mul(1_000_000),
        ..ReplayOptions::default()
    };
    match args.target {
        TargetKind::Inprocess => {
            let root = args.root.as_ref().context("--root is required")?;
            if !root.is_dir() {
                bail!("--root {}: not a directory", root.display());
            }
            let cache = ContentCache::load(root)
                .with_context(|| format!("cannot load the document root {}", root.display()))?;
            let options = InProcessOptions {
                seed: args.seed,
                capture: args.capture.clone().map(|path| {
                    let direction = match args.capture_what {
                        CaptureWhat::Tx => CaptureDirection::Tx,
                        CaptureWhat::Both => CaptureDirection::Both,
                    };
                    (path, direction)
                }),
                deadline_micros: args.timeout.saturating_mul(1_000_000),
                ..InProcessOptions::default()
            };
            Ok(replay_in_process(
                &trace,
                Arc::new(cache),
                replay,
                &options,
            )?)
        }
        TargetKind::Afxdp => {
            if args.capture.is_some() {
                bail!("--capture works with --target inprocess only");
            }
            let iface = args.iface.as_deref().context("--iface is required")?;
            let client_mac = interface_mac(iface)?;
            let mut config = AfXdpConfig::new(iface);
            config.filter = Filter::RedirectAll;
            let mut driver =
                AfXdp::open(config).with_context(|| format!("cannot open AF_XDP on {iface}"))?;
            let server_mac = resolve_mac(
                &mut driver,
                client_mac,
                args.client_ip,
                args.server_ip,
                Duration::from_secs(5),
            )?;
            let addresses = Addresses {
                client_mac,
                client_ip: args.client_ip,
                server_mac,
                server_ip: args.server_ip,
                server_port: args.port,
                first_client_port: 20_000,
            };
            let label = format!(
                "{} via AF_XDP on {iface} ({})",
                std::net::SocketAddr::from((args.server_ip, args.port)),
                driver.mode_description()
            );
            Ok(replay_live(
                &trace,
                &mut driver,
                addresses,
                replay,
                Duration::from_secs(args.timeout),
                label,
            )?)
        }
    }
}

/// The MAC address of `iface`, from sysfs.
fn interface_mac(iface: &str) -> anyhow::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("interface {iface} not found (no {path}); list interfaces with `ip link`")
    })?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read the MAC address {:?} of {iface}", text.trim()))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{iface} has no Ethernet MAC address ({})", text.trim()))
}
