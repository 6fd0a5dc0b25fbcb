//! Command-line interface: what a user can type, parsed once into typed values.
//!
//! Every mistake a user can make here gets a message that says what was wrong and what to do;
//! clap reports syntax errors, and the value parsers below report bad addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use sirocco_drivers::faults::FaultConfig;

#[derive(Debug, Parser)]
#[command(
    name = "sirocco",
    version,
    about = "Kernel-bypass HTTP/1.1 static-file server: raw frames -> smoltcp cells -> in-memory cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory from a dedicated interface, a tap device or a pcap trace.
    Serve(Box<ServeArgs>),
    /// Build a throwaway veth lab (two network namespaces), serve the sample site in it over
    /// AF_XDP, and print how to fetch from it. Ctrl-C stops the server and removes the lab.
    Demo(DemoArgs),
    /// Manage the veth lab: two network namespaces joined by a veth pair.
    Lab(LabArgs),
    /// Check a configuration file for `serve --config` without serving, as `nginx -t` does.
    ///
    /// Checks its keys and values, and that the tree under `root` loads. Prints `FILE: ok` and a
    /// summary, or the error and exits 1.
    CheckConfig {
        /// The TOML file, e.g. /etc/sirocco/sirocco.toml.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check that this machine and an interface are ready for `serve`, and say how to fix
    /// what is not.
    ///
    /// Checks privileges and the locked-memory limit, the XDP attach modes (native, generic)
    /// and AF_XDP with zero-copy by trying them, whether an XDP program is already attached,
    /// the MTU, queues, offloads (GRO, LRO, checksums), IRQ affinity and irqbalance, and
    /// netmap. Each line is ok, warn or fail; a failure gives the command that fixes it. Exits
    /// 0 when no check failed, 1 when one did, 2 when the interface does not exist.
    Doctor(DoctorArgs),
    /// Print a completion script for a shell, e.g.
    /// `sirocco completions bash > /etc/bash_completion.d/sirocco`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): sirocco(1), or with a command, that command's page, e.g.
    /// `sirocco man serve > /usr/local/share/man/man1/sirocco-serve.1`.
    Man {
        /// The command (and subcommand) whose page to print, e.g. `serve` or `lab up`.
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The interface to check, as given to `serve --iface`.
    #[arg(long, value_name = "NAME")]
    pub iface: String,
    /// The queue the AF_XDP trial binds to.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub queue: u32,
    /// Print the checks as a JSON array of {check, status, detail, fix} instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Do not try attaching an XDP program or binding an AF_XDP socket (on some hardware NICs
    /// attaching native XDP resets the link for a moment); those checks then warn "skipped".
    #[arg(long)]
    pub no_trial: bool,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create the lab and print its namespaces, interfaces and addresses.
    Up {
        /// Prefix of the lab's namespace names.
        #[arg(long, default_value = "sirocco-lab")]
        name: String,
        /// sirocco hosts. 1: the plain lab, a client namespace and a server namespace joined
        /// by a veth pair. 2 to 8: an ECMP lab, a client, a router and that many host
        /// namespaces that all serve one anycast address; the router spreads connections
        /// over the hosts by hashing (see README, "Serving from many machines").
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
        servers: u8,
        /// Plain lab only: RX and TX queues on each end of the veth pair (default 1). The
        /// client's connections spread over the server's queues by flow hash, as RSS spreads
        /// them on a NIC.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        queues: Option<u16>,
    },
    /// Remove the lab (a plain or an ECMP lab: whichever has namespaces by that name).
    Down {
        #[arg(long, default_value = "sirocco-lab")]
        name: String,
    },
    /// Say whether the lab exists and show its interfaces and XDP programs.
    Status {
        #[arg(long, default_value = "sirocco-lab")]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// netmap if /dev/netmap exists, otherwise AF_XDP. The choice is printed at start.
    Auto,
    /// AF_XDP on a NIC queue (any Linux NIC; zero-copy where the driver supports it).
    Afxdp,
    /// netmap (needs the netmap kernel module: see README, "Running on a dedicated NIC").
    Netmap,
    /// A tap device (/dev/net/tun): works everywhere, no XDP needed.
    Tap,
    /// Read frames from a pcap trace (--pcap-in) and write answers to --capture.
    Pcap,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, value_enum, default_value_t = DriverKind::Auto)]
    pub driver: DriverKind,
    /// Interface to serve on. With --driver tap, the tap device to create or attach to.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    /// Serve this one NIC queue with one engine (the same as `--queues N-N`).
    #[arg(long, value_name = "N", conflicts_with = "queues")]
    pub queue: Option<u16>,
    /// NIC queues to serve, one engine (thread) each: a count (`4`: queues 0 to 3) or a list
    /// (`0-3`, `0,2,5-7`). Default: every queue the NIC has (its combined channel count,
    /// `ethtool -l`), at most --cores. The NIC's RSS spreads connections over its queues.
    #[arg(long, value_name = "N|LIST", value_parser = parse_queues)]
    pub queues: Option<Queues>,
    /// At most this many engines when --queues is not given. Default: the CPUs this process
    /// may run on (or the number of --cpus).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub cores: Option<u16>,
    /// Pin engine i to the i-th CPU of this list (`2-5`, `0,2`). Default: with more than one
    /// engine, the CPUs this process may run on, in order; one engine is not pinned.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,
    /// Under each stats line, one line per engine (queue).
    #[arg(long)]
    pub stats_per_queue: bool,
    /// On SIGTERM or SIGINT, refuse new connections and let open ones finish for at most
    /// this many seconds, closing idle keep-alive connections at once; then exit 0. A second
    /// signal stops at once.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_timeout: u64,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics, on an ordinary kernel socket (the
    /// management interface, not the NIC sirocco serves on), refreshed about once a second.
    /// E.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// AF_XDP attach mode: native XDP in the NIC driver, generic SKB XDP, or native falling
    /// back to SKB.
    #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
    pub xdp_mode: XdpMode,
    /// AF_XDP: who computes the TCP checksums of what sirocco sends. `auto`: the NIC, through
    /// TX metadata (Linux 6.11+), in copy mode on a NIC (not veth) with `tx-checksumming` on,
    /// unless --capture or --tx-faults is given; else sirocco. `on`: the NIC, or fail at
    /// start (in zero-copy mode the NIC driver must support the request). `off`: sirocco.
    /// `kernel-software`: the kernel, in software (a test aid). IPv4 header checksums are
    /// always sirocco's.
    #[arg(long, value_enum, default_value_t = TxChecksumMode::Auto)]
    pub tx_checksum_offload: TxChecksumMode,
    /// The NIC belongs to sirocco alone: take every frame of its queues. With AF_XDP every
    /// frame is redirected to sirocco; with netmap only the NIC rings are bound, which allows
    /// one engine per ring. By default only ARP for the server's address and IPv4 to it are
    /// taken, and the kernel keeps the rest (AF_XDP's filter, netmap's host rings).
    // The old names, hidden, for one release: --xdp-redirect-all and --netmap-nic-only.
    #[arg(long, aliases = ["xdp-redirect-all", "netmap-nic-only"])]
    pub dedicated_nic: bool,
    /// The server's address and prefix, IPv4 or IPv6, e.g. 198.18.0.2/24 or 2001:2::2/64.
    /// Give it once per address, at most one IPv4 and three IPv6 addresses:
    /// `--ip 198.18.0.2/24 --ip 2001:2::2/64`. With IPv6, the link-local address derived from
    /// the MAC (fe80::/64, modified EUI-64) is served as well.
    #[arg(long, value_name = "ADDR/PREFIX", required = true, action = ArgAction::Append, value_parser = parse_ip_cidr)]
    pub ip: Vec<IpCidr>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// The server's MAC address (default on a NIC: the NIC's; elsewhere 02:00 followed by the
    /// IPv4 address, or without IPv4, 02:06 followed by the last four bytes of the first IPv6
    /// address).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub mac: Option<[u8; 6]>,
    /// With --driver pcap: the trace whose frames are received.
    #[arg(long, value_name = "FILE")]
    pub pcap_in: Option<PathBuf>,
    /// Once the driver is attached and the tree loaded, switch to this unprivileged user (its
    /// uid, gid and groups) and keep no capabilities. Needs root. SIGHUP reloads then read the
    /// tree as this user, so it must be readable by it.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Once set up, allow only the system calls the running server makes (seccomp); any other
    /// kills the process. Default: on where supported (Linux on x86_64 and aarch64).
    #[arg(long, value_enum)]
    pub seccomp: Option<SeccompMode>,
    // The configuration file (src/config.rs reads it before clap sees the command line).
    /// Read options from this TOML file: each key is a long flag of `serve` without its dashes
    /// (`iface = "eth1"`, `max-connections = 10000`, `sleep-when-idle = true`). Flags on the command
    /// line win over the file. `sirocco check-config FILE` checks a file without serving.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Fetch every file of the site from the lab's client side with curl, compare the bytes,
    /// and exit 0 if all match, 1 otherwise.
    #[arg(long)]
    pub check: bool,
    /// Site to serve (default: the sample site built into this binary's source tree).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print a stats line every this many seconds (0: never).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub stats_interval: u64,
}

/// Which NIC queues `--queues` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queues {
    /// Queues 0 to N - 1.
    Count(u32),
    /// These queues, in the order given.
    List(Vec<u32>),
}

impl Queues {
    pub fn to_list(&self) -> Vec<u32> {
        match self {
            Queues::Count(n) => (0..*n).collect(),
            Queues::List(list) => list.clone(),
        }
    }
}

/// Most engines one server runs; also bounds the lists a person can type.
pub const MAX_ENGINES: usize = 256;

/// `loss=0.02,reorder=0.01,duplicate=0,corrupt=0,seed=7`: any of the keys, in any order.
fn parse_faults(text: &str) -> Result<FaultConfig, String> {
    let mut faults = FaultConfig::none();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "'{part}' is not KEY=VALUE: write e.g. loss=0.02,seed=7"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "seed" {
            faults.seed = value
                .parse()
                .map_err(|_| format!("seed '{value}' is not a whole number"))?;
            continue;
        }
        let probability: f64 = value
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("{key} '{value}' is not a probability from 0 to 1"))?;
        match key {
            "loss" => faults.loss = probability,
            "reorder" => faults.reorder = probability,
            "duplicate" => faults.duplicate = probability,
            "corrupt" => faults.corrupt = probability,
            _ => {
                return Err(format!(
                    "unknown fault '{key}': use loss, reorder, duplicate, corrupt or seed"
                ));
            }
        }
    }
    Ok(faults)
}

/// `4` (a count) or `0-3`, `0,2,5-7` (a list).
fn parse_queues(text: &str) -> Result<Queues, String> {
    let text = text.trim();
    if !text.contains([',', '-']) {
        let n: u32 = text.parse().map_err(|_| {
            format!("'{text}' is not a queue count or list: use e.g. 4, or 0-3, or 0,2")
        })?;
        if n == 0 || n as usize > MAX_ENGINES {
            return Err(format!(
                "{n} queues: serve from 1 to {MAX_ENGINES} queues, e.g. --queues 4"
            ));
        }
        return Ok(Queues::Count(n));
    }
    let list = parse_list(text, "queue")?;
    Ok(Queues::List(
        list.into_iter().map(|q| q as u32).collect::<Vec<_>>(),
    ))
}

/// The CPUs `--cpus` listed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `2-5` or `0,2` or `1,4-6`.
fn parse_metrics_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = text.trim();
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        format!(
            "'{text}' is not ADDR:PORT: use e.g. 127.0.0.1:9100, 0.0.0.0:9100 or [::1]:9100 (an address, not a host name)"
        )
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "'{text}': port 0 would pick a random port no scraper knows: give one, e.g. {}",
            std::net::SocketAddr::new(addr.ip(), 9100)
        ));
    }
    Ok(addr)
}

fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    parse_list(text.trim(), "CPU").map(CpuList)
}

/// A comma-separated list of numbers and inclusive ranges, none twice.
fn parse_list(text: &str, what: &str) -> Result<Vec<usize>, String> {
    let bad =
        || format!("'{text}' is not a {what} list: use numbers and ranges, e.g. 0-3 or 0,2,5-7");
    let mut list: Vec<usize> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u32>().map_err(|_| bad())?,
                b.trim().parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!(
                "'{part}' is an empty {what} range: write the lower number first, e.g. {last}-{first}"
            ));
        }
        for n in first..=last {
            let n = n as usize;
            if list.contains(&n) {
                return Err(format!("{what} {n} appears twice in '{text}'"));
            }
            list.push(n);
            if list.len() > MAX_ENGINES {
                return Err(format!("'{text}' lists more than {MAX_ENGINES} {what}s"));
            }
        }
    }
    Ok(list)
}

/// A header value a person typed: visible ASCII and spaces, no line breaks.
fn parse_header_value(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value.is_empty() {
        return Err("the value is empty".into());
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(format!(
            "{bad:?} is not allowed in a header value (use printable ASCII)"
        ));
    }
    Ok(value.to_string())
}

/// `1234`, `64K`, `512M`, `2G` (binary multiples, like nginx's sizes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "'{text}' is not a size: use a number with an optional K, M or G, e.g. 512M"
            ));
        }
    };
    let number: u64 = digits.parse().map_err(|_| {
        format!("'{text}' is not a size: use a number with an optional K, M or G, e.g. 512M")
    })?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpMode {
    Auto,
    Native,
    Skb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TxChecksumMode {
    Auto,
    On,
    Off,
    KernelSoftware,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeccompMode {
    On,
    Off,
    /// Hidden, for the lab test: install the filter as `on` does, then make one system call it
    /// forbids, so that the process must die of SIGSYS before it serves.
    #[value(hide = true)]
    SelftestKill,
}

/// Options shared by every way of serving.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Directory tree to load into memory and serve.
    #[arg(long, default_value = "www", value_name = "DIR")]
    pub root: PathBuf,
    /// Most concurrent connections. Half-open ones wait in the SYN cache and do not count.
    /// When all are taken, the connection idle longest between requests is closed to make room;
    /// if none is idle, a completed handshake gets an RST.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Half-open connections remembered in the SYN cache (about 64 bytes each). Beyond it,
    /// SYNs are answered with a SYN cookie alone, so a SYN flood never refuses a client.
    #[arg(long, default_value_t = 16_384, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
    pub syn_cache_size: u32,
    /// Most connections from one client address, like nginx's limit_conn. Off by default.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: Option<u32>,
    /// Challenge ACKs (RFC 5961) sent per second at most, host-wide, as Linux's
    /// tcp_challenge_ack_limit.
    #[arg(long, default_value_t = 1000, value_name = "PER_SEC")]
    pub challenge_ack_limit: u32,
    /// TCP receive buffer per connection, bytes: the window a request arrives through (the
    /// HTTP layer gathers a longer request head, up to its 8 KiB limit).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub rx_buffer: u32,
    /// TCP send buffer per connection, bytes (also its retransmission queue). It holds the
    /// response heads only: bodies are sent from the cache by reference.
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub tx_buffer: u32,
    /// IP MTU to serve with, from 576 to 9000: at most the interface's MTU. By default, the
    /// interface's own MTU with --driver afxdp, netmap and tap (up to 9000: jumbo frames over
    /// AF_XDP use multi-buffer sockets, Linux 6.6+), else 1500.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(576..=9000))]
    pub mtu: Option<u32>,
    /// Most bytes of responses a connection has unacknowledged (in flight or waiting to be
    /// sent), bodies included: what the send buffer bounded when bodies were copied into it.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
    pub send_window: u32,
    /// Reset connections that send nothing at all for this many seconds: the outer bound
    /// under the HTTP timers (--keepalive-timeout and lingering close).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,
    /// Seconds a client has to complete the TCP handshake. The default leaves room for the
    /// SYN-ACK to be resent after 1, 2, 4, 8 and 16 s, as Linux does (tcp_synack_retries 5).
    #[arg(long, default_value_t = 63, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout: u64,
    /// Smallest TCP retransmission timeout, in milliseconds (Linux: 200; RFC 6298: 1000).
    #[arg(long, default_value_t = 200, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub rto_min: u64,
    /// TCP initial congestion window, in segments (RFC 6928 and Linux: 10).
    #[arg(long, default_value_t = 10, value_name = "SEGMENTS", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub initial_window: u16,
    /// TCP selective acknowledgements (RFC 2018). Off, loss recovery is NewReno (RFC 6582),
    /// as Linux with net.ipv4.tcp_sack=0.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub sack: OnOff,
    /// RACK, time-based TCP loss detection that tolerates reordering (RFC 8985). Off, a loss
    /// is inferred from three duplicate ACKs (RFC 6675).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub rack: OnOff,
    /// TCP tail loss probes (RFC 8985): a lost end of a response is found after about two
    /// round trips instead of a retransmission timeout.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub tail_loss_probe: OnOff,
    /// Also write every frame received and sent to this pcap file (with several engines, one
    /// file per queue: `web.pcap` becomes `web.q1.pcap`...). With --driver pcap, only the
    /// frames sent: the ones received are the --pcap-in trace.
    // The old name of the pcap driver's output, hidden, for one release: --pcap-out.
    #[arg(long, value_name = "FILE", alias = "pcap-out")]
    pub capture: Option<PathBuf>,
    /// Testing aid: lose, reorder, duplicate or corrupt frames sirocco sends, over any driver,
    /// e.g. `loss=0.02,seed=7` (keys loss, reorder, duplicate, corrupt: probabilities from 0
    /// to 1; seed: a number). Off by default; it never touches received frames.
    #[arg(long, value_name = "SPEC", value_parser = parse_faults)]
    pub tx_faults: Option<FaultConfig>,
    /// Sleep in poll() when there is nothing to do, instead of busy-polling a core.
    // The old name, hidden, for one release: --idle-wait.
    #[arg(long, alias = "idle-wait")]
    pub sleep_when_idle: bool,
    /// Print a stats line every this many seconds (0: never).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub stats_interval: u64,
    /// Seconds a client has to send a whole request head once it has started (nginx's
    /// client_header_timeout). Slower clients get 408 and are closed.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Requests served on one keep-alive connection before it is closed (nginx's
    /// keepalive_requests); 0 for no limit.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_requests_per_connection: u32,
    /// Seconds a connection waits for its next request, from the end of the last response (or
    /// from the handshake, before the first), then is closed (nginx's keepalive_timeout). TCP
    /// keepalives and other segments without data do not restart it.
    #[arg(long, default_value_t = 75, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub keepalive_timeout: u64,
    /// Most seconds a connection the server closed keeps reading and dropping the client's
    /// input before it is reset (nginx's lingering_time).
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lingering_time: u64,
    /// Seconds a connection the server closed waits for more input from the client before it
    /// is reset (nginx's lingering_timeout).
    #[arg(long, default_value_t = 5, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lingering_timeout: u64,
    /// Cache-Control value sent with every file, e.g. "public, max-age=3600".
    #[arg(long, value_name = "VALUE", value_parser = parse_header_value)]
    pub cache_control: Option<String>,
    /// Build a gzip variant of every compressible file at load (text, JS, JSON, SVG, ...), for
    /// clients that accept gzip. Files with a .gz or .br beside them use those instead.
    #[arg(long)]
    pub compress: bool,
    /// Most bytes of content the cache may hold, e.g. 512M or 2G (K, M, G: powers of 1024).
    /// A tree that does not fit is refused at start (and on reload).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_cache_bytes: Option<u64>,
    /// Append one line per request to this file, in the combined log format (as nginx's
    /// access_log). Written in batches by a separate thread; never slows the server down.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An IPv6 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl std::fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One `--ip`: an IPv4 or an IPv6 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpCidr {
    V4(Ipv4Cidr),
    V6(Ipv6Cidr),
}

impl IpCidr {
    pub fn addr(&self) -> IpAddr {
        match self {
            IpCidr::V4(cidr) => IpAddr::V4(cidr.addr),
            IpCidr::V6(cidr) => IpAddr::V6(cidr.addr),
        }
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpCidr::V4(cidr) => cidr.fmt(f),
            IpCidr::V6(cidr) => cidr.fmt(f),
        }
    }
}

/// Most IPv6 addresses `--ip` may give: the netstack serves at most three besides the
/// link-local one (its `ConfigError::TooManyIpv6`).
pub const MAX_IPV6: usize = 3;

/// The addresses `serve` answers on: every `--ip`, checked together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIps {
    pub ipv4: Option<Ipv4Cidr>,
    /// Global or unique-local addresses, in the order given; the link-local one is not here.
    pub ipv6: Vec<Ipv6Cidr>,
}

impl ServerIps {
    /// Checks the `--ip` values together: at most one IPv4 and [`MAX_IPV6`] IPv6 addresses,
    /// none twice, at least one.
    pub fn from_list(list: &[IpCidr]) -> Result<ServerIps, String> {
        let mut ips = ServerIps {
            ipv4: None,
            ipv6: Vec::new(),
        };
        for (i, cidr) in list.iter().enumerate() {
            if let Some(first) = list[..i].iter().find(|c| c.addr() == cidr.addr()) {
                return Err(format!(
                    "{} is given twice (as {first} and {cidr}): give each address once",
                    cidr.addr()
                ));
            }
            match *cidr {
                IpCidr::V4(v4) => {
                    if let Some(first) = ips.ipv4 {
                        return Err(format!(
                            "two IPv4 addresses, {first} and {v4}: sirocco serves at most one IPv4 address (and up to {MAX_IPV6} IPv6 ones); give --ip once for IPv4"
                        ));
                    }
                    ips.ipv4 = Some(v4);
                }
                IpCidr::V6(v6) => ips.ipv6.push(v6),
            }
        }
        if ips.ipv6.len() > MAX_IPV6 {
            let all: Vec<String> = ips.ipv6.iter().map(Ipv6Cidr::to_string).collect();
            return Err(format!(
                "{} IPv6 addresses ({}): sirocco serves at most {MAX_IPV6}, besides the link-local one it derives from the MAC; give fewer",
                ips.ipv6.len(),
                all.join(", ")
            ));
        }
        if ips.ipv4.is_none() && ips.ipv6.is_empty() {
            return Err(
                "no address to serve: give --ip ADDR/PREFIX, e.g. --ip 198.18.0.2/24 or --ip 2001:2::2/64"
                    .to_string(),
            );
        }
        Ok(ips)
    }

    /// Every address, IPv4 first, as given.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .iter()
            .map(|c| IpAddr::V4(c.addr))
            .chain(self.ipv6.iter().map(|c| IpAddr::V6(c.addr)))
    }

    /// Every address with its prefix, IPv4 first: `198.18.0.2/24, 2001:2::2/64`.
    pub fn cidrs(&self) -> String {
        let all: Vec<String> = self
            .ipv4
            .iter()
            .map(Ipv4Cidr::to_string)
            .chain(self.ipv6.iter().map(Ipv6Cidr::to_string))
            .collect();
        all.join(", ")
    }

    /// The server's URL on each address: `http://198.18.0.2:80/ and http://[2001:2::2]:80/`.
    pub fn urls(&self, port: u16) -> String {
        let all: Vec<String> = self
            .addrs()
            .map(|ip| format!("http://{}/", std::net::SocketAddr::new(ip, port)))
            .collect();
        all.join(" and ")
    }
}

impl ServeArgs {
    /// The `--ip` values, checked together (see [`ServerIps::from_list`]).
    pub fn ips(&self) -> Result<ServerIps, String> {
        ServerIps::from_list(&self.ip)
    }
}

const IP_EXAMPLE: &str = "expected ADDR/PREFIX, e.g. 198.18.0.2/24 or 2001:2::2/64";

/// One `--ip`: `198.18.0.2/24` or `2001:2::2/64`.
pub fn parse_ip_cidr(text: &str) -> Result<IpCidr, String> {
    let (addr, _) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}' has no prefix length: {IP_EXAMPLE}"))?;
    if addr.contains(':') {
        parse_ipv6_cidr(text).map(IpCidr::V6)
    } else {
        parse_ipv4_cidr(text).map(IpCidr::V4)
    }
}

pub fn parse_ipv4_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}' has no prefix length: {IP_EXAMPLE}"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv4 address: {IP_EXAMPLE}"))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| {
            format!("prefix length '{prefix}' must be a number from 1 to 32 for IPv4")
        })?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!(
            "{addr} cannot be a server address: use a unicast address, e.g. 198.18.0.2/24"
        ));
    }
    Ok(Ipv4Cidr { addr, prefix_len })
}

pub fn parse_ipv6_cidr(text: &str) -> Result<Ipv6Cidr, String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("'{text}' has no prefix length: {IP_EXAMPLE}"))?;
    // `[2001:2::2]/64`, as some people write it for URLs.
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: Ipv6Addr = bare
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv6 address: {IP_EXAMPLE}"))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=128).contains(p))
        .ok_or_else(|| {
            format!("prefix length '{prefix}' must be a number from 1 to 128 for IPv6")
        })?;
    let example = "use a global or unique-local unicast address, e.g. 2001:2::2/64";
    let what = if addr.is_unspecified() {
        Some("the unspecified address")
    } else if addr.is_loopback() {
        Some("the loopback address")
    } else if addr.is_multicast() {
        Some("a multicast address")
    } else if addr.is_unicast_link_local() {
        return Err(format!(
            "{addr} is a link-local address: sirocco derives its link-local address from the MAC (fe80::/64 and the modified EUI-64 of the MAC) and serves it by itself; {example}"
        ));
    } else if addr.to_ipv4_mapped().is_some() {
        Some("an IPv4-mapped address (give the IPv4 address as it is, e.g. --ip 198.18.0.2/24)")
    } else {
        None
    };
    if let Some(what) = what {
        return Err(format!(
            "{addr} cannot be a server address: it is {what}; {example}"
        ));
    }
    Ok(Ipv6Cidr { addr, prefix_len })
}

pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad =
        || format!("'{text}' is not a MAC address: expected six hex bytes like 02:00:c6:12:00:02");
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in mac.iter_mut() {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 == 1 {
        return Err(format!(
            "{text} is a multicast MAC: a server needs a unicast one"
        ));
    }
    Ok(mac)
}

/// The default MAC for a server on a link without a hardware MAC of ours (tap, pcap):
/// locally administered and the same on every run. `02:00` and the IPv4 address when there is
/// one; without IPv4, `02:06` and the last four bytes of the first IPv6 address (its interface
/// identifier's low half, which usually tells hosts of one prefix apart).
pub fn default_mac(ips: &ServerIps) -> [u8; 6] {
    match (ips.ipv4, ips.ipv6.first()) {
        (Some(v4), _) => {
            let [a, b, c, d] = v4.addr.octets();
            [0x02, 0x00, a, b, c, d]
        }
        (None, Some(v6)) => {
            let o = v6.addr.octets();
            [0x02, 0x06, o[12], o[13], o[14], o[15]]
        }
        // `ServerIps::from_list` refuses an empty list; any fixed local MAC will do.
        (None, None) => [0x02, 0x00, 0, 0, 0, 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_faults_parse_every_key_and_refuse_mistakes() {
        let f = parse_faults("loss=0.02, reorder=0.5,duplicate=0,corrupt=1,seed=7").unwrap();
        assert_eq!(
            (f.loss, f.reorder, f.duplicate, f.corrupt, f.seed),
            (0.02, 0.5, 0.0, 1.0, 7)
        );
        assert_eq!(parse_faults("").unwrap(), FaultConfig::none());
        for (bad, says) in [
            ("loss", "is not KEY=VALUE"),
            ("loss=2", "not a probability"),
            ("loss=-0.1", "not a probability"),
            ("loss=NaN", "not a probability"),
            ("seed=x", "not a whole number"),
            ("jitter=0.1", "unknown fault 'jitter'"),
        ] {
            let err = parse_faults(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn queues_are_a_count_or_a_list_and_mistakes_are_explained() {
        assert_eq!(parse_queues("4"), Ok(Queues::Count(4)));
        assert_eq!(Queues::Count(3).to_list(), vec![0, 1, 2]);
        assert_eq!(parse_queues("0-3"), Ok(Queues::List(vec![0, 1, 2, 3])));
        assert_eq!(parse_queues("2-2"), Ok(Queues::List(vec![2])));
        assert_eq!(parse_queues("0,2,5-6"), Ok(Queues::List(vec![0, 2, 5, 6])));
        assert!(parse_queues("0").unwrap_err().contains("from 1 to"));
        assert!(parse_queues("x").unwrap_err().contains("e.g. 4"));
        assert!(
            parse_queues("3-1")
                .unwrap_err()
                .contains("lower number first")
        );
        assert!(parse_queues("0,1,1").unwrap_err().contains("twice"));
        assert!(parse_queues("0-100000").unwrap_err().contains("more than"));
        assert_eq!(parse_cpu_list("2-5"), Ok(CpuList(vec![2, 3, 4, 5])));
        let cli = Cli::try_parse_from([
            "sirocco",
            "serve",
            "--ip",
            "198.18.0.2/24",
            "--queues",
            "0-1",
            "--cpus",
            "2,3",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.queues, Some(Queues::List(vec![0, 1])));
        assert_eq!(args.cpus, Some(CpuList(vec![2, 3])));
        assert!(parse_cpu_list("a-b").unwrap_err().contains("CPU list"));
    }

    #[test]
    fn metrics_listen_is_an_address_and_a_port() {
        assert_eq!(
            parse_metrics_listen("127.0.0.1:9100"),
            Ok("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_listen("[::1]:9100"),
            Ok("[::1]:9100".parse().unwrap())
        );
        assert!(
            parse_metrics_listen("localhost:9100")
                .unwrap_err()
                .contains("e.g. 127.0.0.1:9100")
        );
        assert!(
            parse_metrics_listen("9100")
                .unwrap_err()
                .contains("ADDR:PORT")
        );
        assert!(
            parse_metrics_listen("10.0.0.1:0")
                .unwrap_err()
                .contains("10.0.0.1:9100")
        );
    }

    #[test]
    fn cidr_parses_and_explains_mistakes() {
        let ok = parse_ipv4_cidr("198.18.0.2/24").unwrap();
        assert_eq!(ok.addr, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(ok.prefix_len, 24);
        assert!(
            parse_ipv4_cidr("198.18.0.2")
                .unwrap_err()
                .contains("no prefix")
        );
        assert!(
            parse_ipv4_cidr("198.18.0.300/24")
                .unwrap_err()
                .contains("not an IPv4")
        );
        assert!(
            parse_ipv4_cidr("198.18.0.2/33")
                .unwrap_err()
                .contains("1 to 32")
        );
        assert!(
            parse_ipv4_cidr("0.0.0.0/8")
                .unwrap_err()
                .contains("unicast")
        );
    }

    /// `sirocco serve --ip A --ip B ...`: the `--ip` values, or clap's message.
    fn ips_of(list: &[&str]) -> Result<Vec<IpCidr>, String> {
        let mut args = vec!["sirocco", "serve"];
        for ip in list {
            args.extend(["--ip", ip]);
        }
        match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Serve(serve),
            }) => Ok(serve.ip),
            Ok(_) => unreachable!("serve parses as serve"),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn ip_takes_both_families_and_explains_each_mistake() {
        let both = ips_of(&["198.18.0.2/24", "2001:2::2/64"]).unwrap();
        let ips = ServerIps::from_list(&both).unwrap();
        assert_eq!(ips.ipv4.unwrap().to_string(), "198.18.0.2/24");
        assert_eq!(ips.ipv6.len(), 1);
        assert_eq!(ips.ipv6[0].addr, "2001:2::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ips.ipv6[0].prefix_len, 64);
        assert_eq!(ips.cidrs(), "198.18.0.2/24, 2001:2::2/64");
        assert_eq!(
            ips.urls(80),
            "http://198.18.0.2:80/ and http://[2001:2::2]:80/"
        );
        // IPv6 alone, a /128, a unique-local address, brackets.
        let only6 = ips_of(&["2001:2::2/128", "fd00::2/64", "[2001:db8::1]/48"]).unwrap();
        let ips = ServerIps::from_list(&only6).unwrap();
        assert_eq!(ips.ipv4, None);
        assert_eq!(ips.ipv6.len(), 3);
        assert_eq!(ips.urls(8080).matches("http://[").count(), 3);

        for (bad, says) in [
            ("2001:2::2", "has no prefix length"),
            ("198.18.0.2", "has no prefix length"),
            ("2001:2::2/129", "from 1 to 128"),
            ("2001:2::2/0", "from 1 to 128"),
            ("198.18.0.2/33", "from 1 to 32"),
            ("2001:2::g/64", "not an IPv6 address"),
            ("fe80::1/64", "derives its link-local address from the MAC"),
            ("ff02::1/64", "multicast"),
            ("::1/128", "loopback"),
            ("::/64", "unspecified"),
            ("::ffff:198.18.0.2/96", "IPv4-mapped"),
            ("224.0.0.1/24", "unicast"),
            ("255.255.255.255/24", "unicast"),
            ("127.0.0.1/8", "unicast"),
        ] {
            let err = ips_of(&[bad]).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("--ip"), "{bad}: clap names the flag: {err}");
        }
    }

    #[test]
    fn ip_addresses_are_checked_together() {
        let together = |list: &[&str]| ServerIps::from_list(&ips_of(list).unwrap());
        let err = together(&["198.18.0.2/24", "198.18.0.3/24"]).unwrap_err();
        assert!(
            err.contains("two IPv4 addresses, 198.18.0.2/24 and 198.18.0.3/24")
                && err.contains("at most one IPv4"),
            "{err}"
        );
        let err = together(&[
            "2001:2::2/64",
            "2001:2::3/64",
            "2001:2::4/64",
            "2001:2::5/64",
        ])
        .unwrap_err();
        assert!(
            err.contains("4 IPv6 addresses") && err.contains("at most 3"),
            "{err}"
        );
        let err = together(&["2001:2::2/64", "2001:2::2/48"]).unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        assert!(
            ServerIps::from_list(&[])
                .unwrap_err()
                .contains("no address")
        );
        // One IPv4 and three IPv6 is the most.
        together(&[
            "2001:2::2/64",
            "198.18.0.2/24",
            "2001:2::3/64",
            "2001:2::4/64",
        ])
        .unwrap();
        // `--ip` stays required.
        assert!(ips_of(&[]).unwrap_err().contains("--ip"));
    }

    #[test]
    fn sizes_and_header_values() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("12Q").unwrap_err().contains("not a size"));
        assert!(parse_size("").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(
            parse_header_value(" public, max-age=60 "),
            Ok("public, max-age=60".to_string())
        );
        assert!(parse_header_value("a\r\nSet-Cookie: x").is_err());
        assert!(parse_header_value("  ").is_err());
    }

    #[test]
    fn mac_parses_and_rejects_multicast() {
        assert_eq!(
            parse_mac("02:00:c6:12:00:02").unwrap(),
            [2, 0, 0xc6, 0x12, 0, 2]
        );
        assert!(parse_mac("02:00:c6:12:00").is_err());
        assert!(parse_mac("02:00:c6:12:00:02:03").is_err());
        assert!(parse_mac("zz:00:c6:12:00:02").is_err());
        assert!(
            parse_mac("01:00:5e:00:00:01")
                .unwrap_err()
                .contains("multicast")
        );
        let ips = |list: &[&str]| {
            let list: Vec<IpCidr> = list.iter().map(|t| parse_ip_cidr(t).unwrap()).collect();
            ServerIps::from_list(&list).unwrap()
        };
        assert_eq!(default_mac(&ips(&["198.18.0.2/24"])), [2, 0, 198, 18, 0, 2]);
        assert_eq!(
            default_mac(&ips(&["2001:2::2/64", "198.18.0.2/24"])),
            [2, 0, 198, 18, 0, 2]
        );
        // No IPv4: locally administered, unicast, from the IPv6 address.
        let mac = default_mac(&ips(&["2001:2::c0a8:102/64"]));
        assert_eq!(mac, [2, 6, 0xc0, 0xa8, 1, 2]);
        assert!(mac[0] & 0x02 != 0 && mac[0] & 0x01 == 0);
        assert_ne!(
            default_mac(&ips(&["2001:2::2/64"])),
            default_mac(&ips(&["2001:2::3/64"]))
        );
    }

    #[test]
    fn tcp_tuning_options_parse_and_refuse_nonsense() {
        let serve = |extra: &[&str]| {
            let mut args = vec!["sirocco", "serve", "--ip", "198.18.0.2/24"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Serve(serve) => serve.common,
                _ => unreachable!("serve parses as serve"),
            })
        };
        let defaults = serve(&[]).unwrap();
        assert_eq!(
            (
                defaults.rto_min,
                defaults.initial_window,
                defaults.handshake_timeout
            ),
            (200, 10, 63)
        );
        assert!(defaults.sack.is_on() && defaults.rack.is_on() && defaults.tail_loss_probe.is_on());
        let tuned = serve(&[
            "--rto-min",
            "1000",
            "--initial-window",
            "4",
            "--sack",
            "off",
            "--rack",
            "off",
            "--tail-loss-probe",
            "off",
        ])
        .unwrap();
        assert_eq!((tuned.rto_min, tuned.initial_window), (1000, 4));
        assert!(!tuned.sack.is_on() && !tuned.rack.is_on() && !tuned.tail_loss_probe.is_on());
        for bad in [
            &["--rto-min", "0"][..],
            &["--rto-min", "60001"],
            &["--initial-window", "0"],
            &["--sack", "maybe"],
            &["--handshake-timeout", "0"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn lab_up_takes_servers_and_queues() {
        let up = |extra: &[&str]| {
            let mut args = vec!["sirocco", "lab", "up"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).map(|cli| match cli.command {
                Command::Lab(LabArgs {
                    action:
                        LabAction::Up {
                            servers, queues, ..
                        },
                }) => (servers, queues),
                _ => unreachable!("lab up parses as lab up"),
            })
        };
        assert_eq!(up(&[]).unwrap(), (1, None));
        assert_eq!(up(&["--servers", "2"]).unwrap(), (2, None));
        assert_eq!(up(&["--queues", "4"]).unwrap(), (1, Some(4)));
        for bad in [
            &["--servers", "0"][..],
            &["--servers", "9"],
            &["--queues", "0"],
            &["--queues", "65"],
        ] {
            let err = up(bad).unwrap_err().to_string();
            assert!(err.contains("is not in"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
