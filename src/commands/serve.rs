//! `sirocco serve`: load the tree, open the driver the user chose, drop privileges (`--user`)
//! and install the system-call filter (`--seccomp`, `sirocco_drivers::sandbox`), run the loop
//! until Ctrl-C. With `--metrics-listen`, the metrics socket is bound first of all (a bad or
//! busy address fails before anything is attached) and served from a thread of its own.

use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sirocco_drivers::afxdp::{AfXdp, AfXdpConfig, AttachMode, TxChecksumOffload};
use sirocco_drivers::capture::{Capture, CaptureDirection};
use sirocco_drivers::faults::{FaultConfig, Faults};
use sirocco_drivers::netmap::{self, Netmap, NetmapConfig};
use sirocco_drivers::pcap::{PcapDriver, PcapSink, PcapSource, Timestamps};
use sirocco_drivers::sandbox::{self, User};
use sirocco_drivers::tap::TapDevice;
use sirocco_drivers::{ETHERNET_HEADER_LEN, FrameIo, host};
use sirocco_drivers::{Filter, ServerAddresses};

use super::{drain_on_signals, http_limits, load_cache, load_options, stack_config};
use crate::access_log::AccessLog;
use crate::cli::{
    DriverKind, MAX_ENGINES, SeccompMode, ServeArgs, ServerIps, TxChecksumMode, XdpMode,
    default_mac,
};
use crate::lab;
use crate::metrics::{self, MetricsBoard};
use crate::reload::Reloader;
use crate::runner::{self, Engine, RunOptions};
use crate::server::{Server, ServerConfig, Stats, os_seeds};

/// Where netmap's character device appears once its kernel module is loaded.
const NETMAP_DEVICE: &str = "/dev/netmap";

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The command line's parser checked them already; a caller that built `args` otherwise
    // gets the same message.
    let ips = args
        .ips()
        .map_err(|message| anyhow::anyhow!("--ip: {message}"))?;
    // First, so that a wrong --user fails before anything is attached or loaded.
    let sandbox = Sandbox::plan(&args)?;
    let metrics = args.metrics_listen.map(metrics::bind).transpose()?;
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
    let offload = match args.tx_checksum_offload {
        TxChecksumMode::On => Some("on"),
        TxChecksumMode::KernelSoftware => Some("kernel-software"),
        TxChecksumMode::Auto | TxChecksumMode::Off => None,
    };
    if let Some(offload) = offload {
        if driver != DriverKind::Afxdp {
            bail!(
                "--tx-checksum-offload {offload} needs --driver afxdp: the other drivers take \
                 whole checksums from sirocco"
            );
        }
        // Both wrap the driver: they would see (and the faults corrupt) frames whose TCP
        // checksum the device has yet to fill in.
        for (given, flag) in [
            (args.common.capture.is_some(), "--capture"),
            (args.common.tx_faults.is_some(), "--tx-faults"),
        ] {
            if given {
                bail!(
                    "--tx-checksum-offload {offload} does not go with {flag}, which needs \
                     whole checksums: leave the offload to auto (which keeps them with \
                     {flag}) or off"
                );
            }
        }
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
    // An address the kernel also holds would be answered twice (or, behind the XDP filter,
    // taken from the kernel): refuse it, except when replaying a trace.
    let ours = ips
        .ipv4
        .iter()
        .map(|v4| IpAddr::V4(v4.addr))
        .chain(ips.ipv6.iter().map(|v6| IpAddr::V6(v6.addr)));
    for addr in ours {
        let holders = lab::kernel_interfaces_with(addr);
        if !holders.is_empty() && driver != DriverKind::Pcap {
            bail!(
                "{addr} is already an address of this host's kernel (on {}): sirocco answers for its address itself, so give the kernel another one, or pick another --ip",
                holders.join(", ")
            );
        }
    }

    let cache = load_cache(&args.common)?;
    let mac = match (args.mac, driver) {
        (Some(mac), _) => mac,
        // On a NIC, answer with the NIC's own MAC, so switches and peers need no new entry.
        (None, DriverKind::Afxdp | DriverKind::Netmap) => {
            lab::interface_mac(required_iface(&args, driver)?).unwrap_or_else(|| default_mac(&ips))
        }
        (None, _) => default_mac(&ips),
    };
    let mut config = ServerConfig::new(stack_config(&ips, mac, &args.common));
    if !ips.ipv6.is_empty() {
        let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!(
            "IPv6 link-local address: {} (fe80::/64 and the modified EUI-64 of the MAC {})",
            sirocco_netstack::link_local(sirocco_netstack::EthernetAddress(mac)),
            hex.join(":")
        );
    }
    config.http = http_limits(&args.common);
    config.unix_time_at_zero = unix_now();

    let engines = plan_engines(&args, driver)?;
    let queues: Vec<u32> = engines.iter().map(|e| e.queue).collect();
    let setup = Setup {
        engines: &engines,
        interface_mtu: matches!(
            driver,
            DriverKind::Afxdp | DriverKind::Netmap | DriverKind::Tap
        ),
        config,
        cache,
        args: &args,
        sandbox: &sandbox,
        metrics,
    };
    match driver {
        DriverKind::Auto => unreachable!("resolved above"),
        DriverKind::Afxdp => {
            let name = required_iface(&args, driver)?;
            let mut xdp = AfXdpConfig::new(name);
            xdp.mode = match args.xdp_mode {
                XdpMode::Auto => AttachMode::Auto,
                XdpMode::Native => AttachMode::Native,
                XdpMode::Skb => AttachMode::Skb,
            };
            xdp.tx_checksum = tx_checksum_offload(
                args.tx_checksum_offload,
                args.common.capture.is_some() || args.common.tx_faults.is_some(),
            );
            xdp.filter = if args.dedicated_nic {
                Filter::RedirectAll
            } else {
                server_filter(&ips, mac)
            };
            let drivers = AfXdp::open_queues(xdp, &queues)
                .with_context(|| format!("opening AF_XDP on {name}"))?;
            eprintln!(
                "serving {} on {name} ({}) at {} {}",
                args.common.root.display(),
                drivers[0].mode_description(),
                ips.urls(args.common.port),
                describe(&engines)
            );
            serve_on(drivers, setup)
        }
        DriverKind::Netmap => {
            let name = required_iface(&args, driver)?;
            let mut drivers = Vec::with_capacity(engines.len());
            for engine in &engines {
                let mut nm = NetmapConfig::new(name);
                // One engine with the host rings binds every NIC ring (netmap:IFACE*).
                nm.queue = (args.dedicated_nic || args.queue.is_some())
                    .then(|| u16::try_from(engine.queue).unwrap_or(u16::MAX));
                nm.host_rings = !args.dedicated_nic;
                nm.filter = server_filter(&ips, mac);
                nm.busy_poll = !args.common.sleep_when_idle;
                drivers
                    .push(Netmap::open(nm).with_context(|| format!("opening netmap on {name}"))?);
            }
            eprintln!(
                "serving {} on netmap:{name} at {} {}",
                args.common.root.display(),
                ips.urls(args.common.port),
                describe(&engines)
            );
            serve_on(drivers, setup)
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
                "serving {} on tap {name} at {} (the kernel side of {name} is the client: {})",
                args.common.root.display(),
                ips.urls(args.common.port),
                tap_hint(&ips, name)
            );
            serve_on(vec![tap], setup)
        }
        DriverKind::Pcap => {
            let Some(input) = args.pcap_in.as_deref() else {
                bail!("--driver pcap needs --pcap-in FILE: the trace to read frames from");
            };
            if args.common.tx_faults.is_some() {
                bail!(
                    "--tx-faults does not apply to --driver pcap: a replay answers a fixed trace; record it with faults on a live driver instead"
                );
            }
            let source = PcapSource::open(input)?;
            // The frames received are the input trace already: --capture gets the answers
            // alone, written by the driver itself rather than by a Capture around it.
            let sink = match args.common.capture.as_deref() {
                Some(path) => Some(open_capture(path)?),
                None => None,
            };
            eprintln!(
                "replaying {} against {} (answers to {})",
                input.display(),
                ips.cidrs(),
                args.common
                    .capture
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "nowhere".into())
            );
            run_server(vec![PcapDriver::new(Some(source), sink)], setup)
        }
    }
}

/// The frames the driver hands to sirocco when it shares the NIC with the kernel: ARP and IPv4
/// for the IPv4 address, IPv6 and Neighbor Solicitations for every IPv6 address, the
/// link-local one the stack derives from `mac` included.
fn server_filter(ips: &ServerIps, mac: [u8; 6]) -> Filter {
    Filter::Server(server_addresses(ips, mac))
}

/// The addresses of [`server_filter`].
fn server_addresses(ips: &ServerIps, mac: [u8; 6]) -> ServerAddresses {
    let mut ipv6: Vec<std::net::Ipv6Addr> = ips.ipv6.iter().map(|v6| v6.addr).collect();
    if !ipv6.is_empty() {
        ipv6.push(sirocco_netstack::link_local(
            sirocco_netstack::EthernetAddress(mac),
        ));
    }
    ServerAddresses {
        ipv4: ips.ipv4.map(|v4| v4.addr),
        ipv6,
    }
}

/// One engine to start: the NIC queue it serves and the CPU it is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnginePlan {
    queue: u32,
    cpu: Option<usize>,
}

/// For the start-up line: "(2 engines: queue 0 on CPU 0, queue 1 on CPU 1)".
fn describe(engines: &[EnginePlan]) -> String {
    let each: Vec<String> = engines
        .iter()
        .map(|e| match e.cpu {
            Some(cpu) => format!("queue {} on CPU {cpu}", e.queue),
            None => format!("queue {}", e.queue),
        })
        .collect();
    let count = match engines.len() {
        1 => "1 engine".to_string(),
        n => format!("{n} engines"),
    };
    format!("({count}: {})", each.join(", "))
}

/// Which queues get an engine, and where each engine runs: `--queue`, `--queues`, `--cores`
/// and `--cpus` against what the interface and this process have.
fn plan_engines(args: &ServeArgs, driver: DriverKind) -> anyhow::Result<Vec<EnginePlan>> {
    let allowed = host::allowed_cpus().context("reading this process's CPU affinity")?;
    let asked: Option<Vec<u32>> = match (&args.queues, args.queue) {
        (Some(queues), _) => Some(queues.to_list()),
        (None, Some(queue)) => Some(vec![u32::from(queue)]),
        (None, None) => None,
    };
    let queues: Vec<u32> = match driver {
        DriverKind::Tap | DriverKind::Pcap => {
            if asked.as_ref().is_some_and(|q| q != &[0]) {
                bail!(
                    "--driver {} has one queue (0) and runs one engine: leave out --queues/--queue",
                    format!("{driver:?}").to_lowercase()
                );
            }
            vec![0]
        }
        // Only one descriptor can bind the host rings, and it binds every NIC ring with them.
        DriverKind::Netmap if !args.dedicated_nic => match asked {
            Some(q) if q.len() > 1 => bail!(
                "netmap binds the host rings together with every NIC ring on one descriptor, so it runs one engine: add --dedicated-nic to run one engine per queue (frames that are not for the server are then dropped, not passed to the kernel)"
            ),
            // A single --queue with host rings: NetmapConfig explains why not.
            Some(q) => q,
            None => vec![0],
        },
        DriverKind::Afxdp | DriverKind::Netmap | DriverKind::Auto => {
            let iface = required_iface(args, driver)?;
            let available = nic_queues(iface);
            match asked {
                Some(queues) => {
                    if let Some(&beyond) = queues.iter().find(|&&q| q >= available) {
                        bail!(
                            "{iface} has {available} queue{} (0 to {}), and queue {beyond} was asked for: give it more with `ethtool -L {iface} combined {}`, or serve fewer",
                            if available == 1 { "" } else { "s" },
                            available.saturating_sub(1),
                            beyond + 1
                        );
                    }
                    queues
                }
                None => {
                    let cores = args
                        .cores
                        .map(usize::from)
                        .or(args.cpus.as_ref().map(|cpus| cpus.0.len()))
                        .unwrap_or(allowed.len())
                        .max(1);
                    let count = (available as usize).min(cores).min(MAX_ENGINES);
                    (0..count as u32).collect()
                }
            }
        }
    };
    let cpus: Vec<Option<usize>> = match args.cpus.as_ref().map(|cpus| &cpus.0) {
        Some(cpus) => {
            if cpus.len() < queues.len() {
                bail!(
                    "--cpus lists {} CPU{} for {} engines: list one CPU per engine (queue), e.g. --cpus 0-{}",
                    cpus.len(),
                    if cpus.len() == 1 { "" } else { "s" },
                    queues.len(),
                    queues.len() - 1
                );
            }
            if let Some(bad) = cpus.iter().find(|cpu| !allowed.contains(cpu)) {
                bail!(
                    "--cpus: CPU {bad} is not one this process may run on (it may use {})",
                    cpu_list(&allowed)
                );
            }
            cpus.iter().map(|&cpu| Some(cpu)).collect()
        }
        None if queues.len() > 1 => {
            if queues.len() > allowed.len() {
                eprintln!(
                    "note: {} engines on {} CPUs: engines share cores, so each runs slower; serve fewer queues (--queues) for one core each",
                    queues.len(),
                    allowed.len()
                );
            }
            (0..queues.len())
                .map(|i| allowed.get(i % allowed.len().max(1)).copied())
                .collect()
        }
        None => vec![None],
    };
    Ok(queues
        .into_iter()
        .zip(cpus)
        .map(|(queue, cpu)| EnginePlan { queue, cpu })
        .collect())
}

/// The receive queues `iface` has: its combined and RX-only channels where the driver reports
/// them (`ethtool -l`), else the RX queues the kernel registered, else one.
fn nic_queues(iface: &str) -> u32 {
    host::channels(iface)
        .ok()
        .map(|c| c.receive_queues())
        .filter(|&n| n > 0)
        .or_else(|| host::rx_queue_count(iface).filter(|&n| n > 0))
        .unwrap_or(1)
}

/// `0-3,6` for a person to read.
fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
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

/// What every engine is built from, whatever its driver: the plan, the server's
/// configuration, the tree, the flags, the sandbox to enter and the metrics socket.
struct Setup<'a> {
    engines: &'a [EnginePlan],
    /// The driver serves an interface (AF_XDP, netmap, tap): without --mtu, serve with the
    /// interface's MTU.
    interface_mtu: bool,
    config: ServerConfig,
    cache: std::sync::Arc<crate::cache::ContentCache>,
    args: &'a ServeArgs,
    sandbox: &'a Sandbox,
    metrics: Option<TcpListener>,
}

/// The IP MTU to serve with: `--mtu` if given (refused above what the driver carries), else
/// the interface's (`driver_mtu`, at most the netstack's 9000) for a driver on an interface,
/// else 1500.
fn served_mtu(asked: Option<u32>, driver_mtu: usize, interface: bool) -> anyhow::Result<usize> {
    const NETSTACK_MAX: usize = 9000;
    match asked {
        Some(mtu) if mtu as usize > driver_mtu => bail!(
            "--mtu {mtu} is above the {driver_mtu} bytes the interface carries: raise its MTU \
             (`ip link set dev IFACE mtu {mtu}`, on both ends of the link) or ask for less"
        ),
        Some(mtu) => Ok(mtu as usize),
        None if interface => {
            if driver_mtu < 576 {
                bail!(
                    "the interface's MTU of {driver_mtu} is below the 576 bytes sirocco needs: \
                     raise it, e.g. `ip link set dev IFACE mtu 1500`"
                );
            }
            Ok(driver_mtu.min(NETSTACK_MAX))
        }
        None => Ok(1500.min(driver_mtu)),
    }
}

/// Wraps each driver in fault injection (`--tx-faults`) and a capture if asked, builds one
/// server per driver and runs them. The capture sits outside the faults, so it records what
/// the server sent, before the faults decide what the link carries.
fn serve_on<D: FrameIo + Send>(drivers: Vec<D>, mut setup: Setup<'_>) -> anyhow::Result<()> {
    if let Some(driver) = drivers.first() {
        let caps = driver.capabilities();
        let carried = caps
            .mtu
            .min(caps.max_frame_len.saturating_sub(ETHERNET_HEADER_LEN));
        setup.config.stack.mtu = served_mtu(setup.args.common.mtu, carried, setup.interface_mtu)?;
    }
    match &setup.args.common.tx_faults {
        Some(faults) => {
            // One seed per queue, so two engines do not lose the same frames in step.
            let faulty = drivers
                .into_iter()
                .zip(setup.engines)
                .map(|(driver, engine)| {
                    let seed = faults.seed.wrapping_add(u64::from(engine.queue));
                    Faults::new(driver, &FaultConfig { seed, ..*faults })
                })
                .collect();
            capture_and_serve(faulty, setup)
        }
        None => capture_and_serve(drivers, setup),
    }
}

/// The capture half of [`serve_on`].
fn capture_and_serve<D: FrameIo + Send>(drivers: Vec<D>, setup: Setup<'_>) -> anyhow::Result<()> {
    match setup.args.common.capture.as_deref() {
        Some(path) => {
            let engines = setup.engines;
            let mut captured = Vec::with_capacity(drivers.len());
            for (driver, engine) in drivers.into_iter().zip(engines) {
                let path = capture_path(path, engine.queue, engines.len());
                let sink = open_capture(&path)?;
                captured.push(Capture::new(driver, sink, CaptureDirection::Both));
            }
            run_server(captured, setup)
        }
        None => run_server(drivers, setup),
    }
}

/// With one engine, `path`; with several, one file per queue: `web.pcap` → `web.q1.pcap`.
fn capture_path(path: &Path, queue: u32, engines: usize) -> std::path::PathBuf {
    if engines == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, path.extension()) {
        (Some(stem), Some(ext)) => format!("{stem}.q{queue}.{}", ext.to_string_lossy()),
        (Some(stem), None) => format!("{stem}.q{queue}"),
        (None, _) => format!("capture.q{queue}.pcap"),
    };
    path.with_file_name(name)
}

fn open_capture(path: &Path) -> anyhow::Result<PcapSink> {
    PcapSink::create(path, Timestamps::Wall)
        .with_context(|| format!("opening capture file {}", path.display()))
}

fn run_server<D: FrameIo + Send>(drivers: Vec<D>, setup: Setup<'_>) -> anyhow::Result<()> {
    let Setup {
        engines: plan,
        config,
        cache,
        args,
        sandbox,
        metrics,
        interface_mtu: _,
    } = setup;
    let mut engines = Vec::with_capacity(drivers.len());
    for (driver, engine) in drivers.into_iter().zip(plan) {
        let mut server = Server::new(driver, Arc::clone(&cache), config.clone(), os_seeds())?;
        // Every engine appends whole batches of lines to the same file.
        if let Some(path) = &args.common.access_log {
            let log = AccessLog::open(path)
                .with_context(|| format!("opening the access log {}", path.display()))?;
            server.set_access_log(log);
        }
        engines.push(Engine {
            queue: engine.queue,
            cpu: engine.cpu,
            server,
        });
    }
    let mut options = RunOptions {
        sleep_when_idle: args.common.sleep_when_idle,
        stats_interval: (args.common.stats_interval > 0)
            .then(|| Duration::from_secs(args.common.stats_interval)),
        stats_per_queue: args.stats_per_queue,
        drain: drain_on_signals()?,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        metrics: None,
    };
    let mut reloader = Reloader::on_sighup(args.common.root.clone(), load_options(&args.common))
        .context("installing the SIGHUP (reload) handler")?;
    let mut stdout = std::io::stdout();
    if let Some(listener) = metrics {
        let board = Arc::new(MetricsBoard::new());
        let at = listener
            .local_addr()
            .context("the metrics socket's address")?;
        metrics::spawn_endpoint(listener, Arc::clone(&board))?;
        eprintln!("metrics: http://{at}/metrics");
        options.metrics = Some(board);
    }
    // Set-up is over: the drivers are attached, the tree loaded, every file and handler open.
    sandbox.enter()?;
    let finals = runner::run(engines, &options, Some(&mut reloader), &mut stdout)?;
    let stats = Stats::sum(finals.iter().map(|(_, stats)| stats));
    let _ = writeln!(stdout, "stopped: {}", stopped_summary(&stats));
    if finals.len() > 1 && args.stats_per_queue {
        for (queue, stats) in &finals {
            let _ = writeln!(stdout, "  queue {queue}: {}", stopped_summary(stats));
        }
    }
    Ok(())
}

/// `12 requests, 40 frames in, 38 frames out, 0 dropped (...)`.
fn stopped_summary(stats: &Stats) -> String {
    format!(
        "{} requests, {} frames in, {} frames out, {} dropped{}{}{}",
        stats.http.requests,
        stats.driver.rx_frames,
        stats.driver.tx_frames,
        stats.stack.total_dropped(),
        runner::drop_reasons(&stats.stack),
        runner::loss_recovery(&stats.stack),
        runner::defences(&stats.stack)
    )
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

/// [`neighbour_of`] for IPv6: the same address with its last group 1, or 2 if it is 1.
fn neighbour_of_v6(addr: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let mut groups = addr.segments();
    groups[7] = if groups[7] == 1 { 2 } else { 1 };
    std::net::Ipv6Addr::from(groups)
}

/// What to give the kernel side of the tap, per family: "give it an address in
/// 198.18.0.2/24, e.g. `ip addr add 198.18.0.1/24 dev tap0`, and one in 2001:2::2/64, e.g.
/// `ip addr add 2001:2::1/64 dev tap0 nodad`". `nodad`: the kernel would otherwise wait for
/// duplicate address detection before it may use the address.
fn tap_hint(ips: &ServerIps, tap: &str) -> String {
    let mut each: Vec<String> = Vec::new();
    if let Some(v4) = ips.ipv4 {
        each.push(format!(
            "an address in {v4}, e.g. `ip addr add {}/{} dev {tap}`",
            neighbour_of(v4.addr),
            v4.prefix_len
        ));
    }
    for v6 in &ips.ipv6 {
        each.push(format!(
            "{} in {v6}, e.g. `ip addr add {}/{} dev {tap} nodad`",
            if each.is_empty() { "an address" } else { "one" },
            neighbour_of_v6(v6.addr),
            v6.prefix_len
        ));
    }
    format!("give it {}", each.join(", and "))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The driver's TX checksum setting for `--tx-checksum-offload`. With a wrapper that needs
/// whole checksums (`--capture`, `--tx-faults`: they see, and the faults corrupt, the frames
/// before the driver), `auto` keeps them with sirocco; `on` with one is refused earlier.
fn tx_checksum_offload(mode: TxChecksumMode, wrapped: bool) -> TxChecksumOffload {
    match mode {
        TxChecksumMode::Auto if wrapped => TxChecksumOffload::Off,
        TxChecksumMode::Auto => TxChecksumOffload::Auto,
        TxChecksumMode::On => TxChecksumOffload::On,
        TxChecksumMode::Off => TxChecksumOffload::Off,
        TxChecksumMode::KernelSoftware => TxChecksumOffload::KernelSoftware,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use sirocco_netstack::{ConnApp, EthernetAddress, Stack};

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::commands::stack_config;

    fn serve_args(ips: &[&str]) -> ServeArgs {
        let mut args = vec!["sirocco", "serve", "--max-connections", "1"];
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        match Cli::try_parse_from(args).unwrap().command {
            Command::Serve(serve) => *serve,
            _ => unreachable!("serve parses as serve"),
        }
    }

    #[derive(Default)]
    struct NoApp;

    #[test]
    fn the_mtu_is_the_interfaces_unless_asked_and_never_above_it() {
        // An interface driver serves with the interface's MTU, up to the netstack's 9000.
        assert_eq!(served_mtu(None, 1500, true).unwrap(), 1500);
        assert_eq!(served_mtu(None, 9000, true).unwrap(), 9000);
        assert_eq!(served_mtu(None, 65536, true).unwrap(), 9000);
        let low = served_mtu(None, 500, true).unwrap_err().to_string();
        assert!(low.contains("MTU of 500 is below the 576"), "{low}");
        // Other drivers keep 1500.
        assert_eq!(served_mtu(None, 65535, false).unwrap(), 1500);
        // --mtu runs below the interface, never above.
        assert_eq!(served_mtu(Some(1500), 9000, true).unwrap(), 1500);
        assert_eq!(served_mtu(Some(9000), 9000, true).unwrap(), 9000);
        let high = served_mtu(Some(9000), 1500, true).unwrap_err().to_string();
        assert!(
            high.starts_with("--mtu 9000 is above the 1500 bytes the interface carries"),
            "{high}"
        );
    }

    #[test]
    fn mtu_option_is_checked_at_parse_time() {
        let parse = |mtu: &str| {
            Cli::try_parse_from(["sirocco", "serve", "--ip", "198.18.0.2/24", "--mtu", mtu])
        };
        let Command::Serve(args) = parse("9000").unwrap().command else {
            unreachable!("serve parses as serve")
        };
        assert_eq!(args.common.mtu, Some(9000));
        for bad in ["575", "9001", "jumbo"] {
            let e = parse(bad).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("--mtu"), "{bad}: {e}");
        }
        assert_eq!(serve_args(&["198.18.0.2/24"]).common.mtu, None);
    }

    impl ConnApp for NoApp {
        fn reset(&mut self) {}
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn the_most_addresses_fit_the_stack_and_the_filter() {
        let args = serve_args(&[
            "198.18.0.2/24",
            "2001:2::2/64",
            "2001:2::3/64",
            "fd00::2/64",
        ]);
        let ips = args.ips().unwrap();
        let config = stack_config(&ips, MAC, &args.common);
        assert_eq!(
            config.ipv4.map(|c| c.to_string()),
            Some("198.18.0.2/24".into())
        );
        assert_eq!(config.ipv6.len(), 3);
        assert_eq!(config.ipv6[2].to_string(), "fd00::2/64");
        assert!(Stack::<NoApp>::new(config.clone(), Box::new(|| 7)).is_ok());
        // One IPv6 more is what the stack refuses too: MAX_IPV6 matches it.
        let mut more = config;
        more.ipv6.push(sirocco_netstack::Ipv6Cidr::new(
            "2001:2::9".parse().unwrap(),
            64,
        ));
        assert!(Stack::<NoApp>::new(more, Box::new(|| 7)).is_err());

        let addresses = server_addresses(&ips, MAC);
        assert_eq!(addresses.ipv4, Some(std::net::Ipv4Addr::new(198, 18, 0, 2)));
        let link_local: std::net::Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(addresses.ipv6.len(), 4);
        assert_eq!(addresses.ipv6[3], link_local);
        assert_eq!(
            link_local,
            sirocco_netstack::link_local(EthernetAddress(MAC))
        );
        addresses.check().unwrap();
        assert!(matches!(server_filter(&ips, MAC), Filter::Server(a) if a == addresses));
    }

    #[test]
    fn ipv6_alone_and_ipv4_alone() {
        let args = serve_args(&["2001:2::2/64"]);
        let ips = args.ips().unwrap();
        let config = stack_config(&ips, default_mac(&ips), &args.common);
        assert_eq!(config.ipv4, None);
        assert!(Stack::<NoApp>::new(config, Box::new(|| 7)).is_ok());
        let addresses = server_addresses(&ips, MAC);
        assert_eq!(addresses.ipv4, None);
        assert_eq!(
            addresses.ipv6.len(),
            2,
            "the address and the link-local one"
        );
        addresses.check().unwrap();

        // IPv4 alone: no IPv6, not even the link-local address.
        let ips = serve_args(&["198.18.0.2/24"]).ips().unwrap();
        assert_eq!(
            server_addresses(&ips, MAC),
            ServerAddresses::ipv4(std::net::Ipv4Addr::new(198, 18, 0, 2))
        );
    }

    #[test]
    fn the_tap_hint_gives_the_kernel_side_an_address_per_family() {
        let ips = serve_args(&["198.18.0.2/24", "2001:2::2/64"])
            .ips()
            .unwrap();
        assert_eq!(
            tap_hint(&ips, "tap0"),
            "give it an address in 198.18.0.2/24, e.g. `ip addr add 198.18.0.1/24 dev tap0`, \
             and one in 2001:2::2/64, e.g. `ip addr add 2001:2::1/64 dev tap0 nodad`"
        );
        let ips = serve_args(&["2001:2::1/64"]).ips().unwrap();
        assert_eq!(
            tap_hint(&ips, "tap0"),
            "give it an address in 2001:2::1/64, e.g. `ip addr add 2001:2::2/64 dev tap0 nodad`"
        );
    }

    #[test]
    fn auto_keeps_tcp_checksums_with_sirocco_under_a_capture_or_faults() {
        use super::{TxChecksumMode as Mode, TxChecksumOffload as Driver, tx_checksum_offload};
        assert_eq!(tx_checksum_offload(Mode::Auto, false), Driver::Auto);
        assert_eq!(tx_checksum_offload(Mode::Auto, true), Driver::Off);
        for (mode, driver) in [
            (Mode::On, Driver::On),
            (Mode::Off, Driver::Off),
            (Mode::KernelSoftware, Driver::KernelSoftware),
        ] {
            assert_eq!(tx_checksum_offload(mode, false), driver);
        }
    }
}
