//! `sirocco serve`: load the tree, open the driver the user chose, drop privileges (`--user`)
//! and install the system-call filter (`--seccomp`, `sirocco_drivers::sandbox`), run the loop
//! until Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sirocco_drivers::FrameIo;
use sirocco_drivers::afxdp::{self, AfXdp, AfXdpConfig, AttachMode};
use sirocco_drivers::capture::{Capture, CaptureDirection};
use sirocco_drivers::netmap::{self, Netmap, NetmapConfig};
use sirocco_drivers::pcap::{PcapDriver, PcapSink, PcapSource, Timestamps};
use sirocco_drivers::sandbox::{self, User};
use sirocco_drivers::tap::TapDevice;

use super::{http_limits, load_cache, load_options, stack_config, stop_on_signals};
use crate::access_log::AccessLog;
use crate::cli::{DriverKind, SeccompMode, ServeArgs, XdpMode, default_mac};
use crate::lab;
use crate::reload::Reloader;
use crate::runner::{self, RunOptions};
use crate::server::{Server, ServerConfig, os_seeds};

/// Where netmap's character device appears once its kernel module is loaded.
const NETMAP_DEVICE: &str = "/dev/netmap";

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // First, so that a wrong --user fails before anything is attached or loaded.
    let sandbox = Sandbox::plan(&args)?;
    let driver = match args.driver {
        DriverKind::Auto if Path::new(NETMAP_DEVICE).exists() => {
            eprintln!("driver: netmap ({NETMAP_DEVICE} exists)");
            DriverKind::Netmap
        }
        DriverKind::Auto => {
            eprintln!("driver: afxdp (no {NETMAP_DEVICE}: the netmap module is not loaded)");
            DriverKind::Afxdp
        }
        chosen => chosen,
    };
    // Fail fast, before loading a large tree, on what can be checked without the device.
    if driver == DriverKind::Netmap && !Path::new(NETMAP_DEVICE).exists() {
        bail!("{}", netmap::real::NO_NETMAP_MESSAGE);
    }
    if matches!(driver, DriverKind::Afxdp | DriverKind::Netmap) {
        let name = required_iface(&args, driver)?;
        if !lab::interface_exists(name) {
            bail!(
                "interface {name} not found; available: {}",
                lab::interface_names().join(", ")
            );
        }
    }
    let holders = lab::kernel_interfaces_with(args.ip.addr);
    if !holders.is_empty() && driver != DriverKind::Pcap {
        bail!(
            "{} is already an address of this host's kernel (on {}): sirocco answers for its address itself, so give the kernel another one, or pick another --ip",
            args.ip.addr,
            holders.join(", ")
        );
    }

    let cache = load_cache(&args.common)?;
    let mac = match (args.mac, driver) {
        (Some(mac), _) => mac,
        // On a NIC, answer with the NIC's own MAC, so switches and peers need no new entry.
        (None, DriverKind::Afxdp | DriverKind::Netmap) => {
            lab::interface_mac(required_iface(&args, driver)?)
                .unwrap_or_else(|| default_mac(args.ip.addr))
        }
        (None, _) => default_mac(args.ip.addr),
    };
    let mut config = ServerConfig::new(stack_config(args.ip, mac, &args.common));
    config.http = http_limits(&args.common);
    config.unix_time_at_zero = unix_now();

    match driver {
        DriverKind::Auto => unreachable!("resolved above"),
        DriverKind::Afxdp => {
            let name = required_iface(&args, driver)?;
            let mut xdp = AfXdpConfig::new(name);
            xdp.queue = u32::from(args.queue.unwrap_or(0));
            xdp.mode = match args.xdp_mode {
                XdpMode::Auto => AttachMode::Auto,
                XdpMode::Native => AttachMode::Native,
                XdpMode::Skb => AttachMode::Skb,
            };
            xdp.filter = if args.xdp_redirect_all {
                afxdp::Filter::RedirectAll
            } else {
                afxdp::Filter::ServerIpv4(args.ip.addr)
            };
            let driver = AfXdp::open(xdp).with_context(|| format!("opening AF_XDP on {name}"))?;
            eprintln!(
                "serving {} on {name} ({}) at http://{}:{}/",
                args.common.root.display(),
                driver.mode_description(),
                args.ip.addr,
                args.common.port
            );
            serve_on(driver, config, cache, &args, &sandbox)
        }
        DriverKind::Netmap => {
            let name = required_iface(&args, driver)?;
            let mut nm = NetmapConfig::new(name);
            nm.queue = args.queue;
            nm.host_rings = !args.netmap_nic_only;
            nm.filter = netmap::Filter::ServerIpv4(args.ip.addr);
            nm.busy_poll = !args.common.idle_wait;
            let driver = Netmap::open(nm).with_context(|| format!("opening netmap on {name}"))?;
            eprintln!(
                "serving {} on netmap:{name} at http://{}:{}/",
                args.common.root.display(),
                args.ip.addr,
                args.common.port
            );
            serve_on(driver, config, cache, &args, &sandbox)
        }
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
            serve_on(tap, config, cache, &args, &sandbox)
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
            serve_on(
                PcapDriver::new(Some(source), sink),
                config,
                cache,
                &args,
                &sandbox,
            )
        }
    }
}

fn required_iface(args: &ServeArgs, driver: DriverKind) -> anyhow::Result<&str> {
    match args.iface.as_deref() {
        Some(name) => Ok(name),
        None => bail!(
            "--driver {} needs --iface NAME: the interface to serve on (available: {})",
            format!("{driver:?}").to_lowercase(),
            lab::interface_names().join(", ")
        ),
    }
}

/// Wraps the driver in a capture if asked, builds the server and runs it.
fn serve_on<D: FrameIo>(
    driver: D,
    config: ServerConfig,
    cache: std::sync::Arc<crate::cache::ContentCache>,
    args: &ServeArgs,
    sandbox: &Sandbox,
) -> anyhow::Result<()> {
    match args.common.capture.as_deref() {
        Some(path) => {
            let sink = open_capture(path)?;
            let captured = Capture::new(driver, sink, CaptureDirection::Both);
            run_server(captured, config, cache, args, sandbox)
        }
        None => run_server(driver, config, cache, args, sandbox),
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
    sandbox: &Sandbox,
) -> anyhow::Result<()> {
    let mut server = Server::new(driver, cache, config, os_seeds())?;
    if let Some(path) = &args.common.access_log {
        let log = AccessLog::open(path)
            .with_context(|| format!("opening the access log {}", path.display()))?;
        server.set_access_log(log);
    }
    let options = RunOptions {
        idle_wait: args.common.idle_wait,
        stats_interval: (args.common.stats_interval > 0)
            .then(|| Duration::from_secs(args.common.stats_interval)),
        stop: stop_on_signals()?,
    };
    let mut reloader = Reloader::on_sighup(args.common.root.clone(), load_options(&args.common))
        .context("installing the SIGHUP (reload) handler")?;
    let mut stdout = std::io::stdout();
    // Set-up is over: the driver is attached, the tree loaded, every file and handler open.
    sandbox.enter()?;
    runner::run(&mut server, &options, Some(&mut reloader), &mut stdout)?;
    let stats = server.stats();
    let _ = writeln!(
        stdout,
        "stopped: {} requests, {} frames in, {} frames out, {} dropped{}{}{}",
        stats.http.requests,
        stats.driver.rx_frames,
        stats.driver.tx_frames,
        stats.stack.total_dropped(),
        runner::drop_reasons(&stats.stack),
        runner::loss_recovery(&stats.stack),
        runner::defences(&stats.stack)
    );
    Ok(())
}

/// What `--user` and `--seccomp` asked for, checked before set-up and entered after it.
struct Sandbox {
    user: Option<User>,
    seccomp: bool,
    /// `--seccomp selftest-kill` (hidden): make a forbidden call once the filter is in.
    selftest_kill: bool,
}

impl Sandbox {
    fn plan(args: &ServeArgs) -> anyhow::Result<Sandbox> {
        let user = match args.user.as_deref() {
            None => None,
            Some(name) => {
                if !sandbox::is_root() {
                    bail!(
                        "--user {name} needs root: sirocco starts as root to attach the driver and then switches to {name}; run it as root, or leave out --user"
                    );
                }
                Some(User::lookup(name).with_context(|| format!("--user {name}"))?)
            }
        };
        let seccomp = match args.seccomp {
            Some(SeccompMode::Off) => false,
            None if !sandbox::SECCOMP_SUPPORTED => {
                eprintln!(
                    "note: no seccomp system-call filter: it is built for Linux on x86_64 and aarch64 only"
                );
                false
            }
            None => true,
            Some(SeccompMode::On | SeccompMode::SelftestKill) => {
                if !sandbox::SECCOMP_SUPPORTED {
                    bail!(
                        "--seccomp on: the system-call filter is built for Linux on x86_64 and aarch64 only; use --seccomp off here"
                    );
                }
                true
            }
        };
        Ok(Sandbox {
            user,
            seccomp,
            selftest_kill: args.seccomp == Some(SeccompMode::SelftestKill),
        })
    }

    /// Drops to the user, then installs the filter (which forbids the calls of the drop), and
    /// says what it did.
    fn enter(&self) -> anyhow::Result<()> {
        let mut done = Vec::new();
        if let Some(user) = &self.user {
            sandbox::drop_privileges(user)?;
            done.push(format!(
                "running as {} (uid {}, gid {}) with no capabilities",
                user.name, user.uid, user.gid
            ));
        }
        if self.seccomp {
            let calls = sandbox::install_seccomp_filter()?;
            done.push(format!(
                "seccomp filter on ({calls} system calls allowed; any other kills the process)"
            ));
        }
        if !done.is_empty() {
            eprintln!("sandbox: {}", done.join("; "));
        }
        if self.selftest_kill {
            sandbox::forbidden_syscall();
            bail!(
                "--seccomp selftest-kill: the filter let a forbidden system call (socket) through"
            );
        }
        Ok(())
    }
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
