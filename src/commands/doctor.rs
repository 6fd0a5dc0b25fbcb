//! `sirocco doctor --iface IFACE`: is this machine, and this interface, ready for `serve`?
//!
//! Two halves. `gather` reads the facts: capabilities and the memlock limit from the
//! process, the interface's MTU, queues, offloads, IRQs and veth peer from the kernel, and the
//! result of trying what `serve` will do (attach sirocco's XDP program in native and generic
//! mode, bind an AF_XDP socket in zero-copy and copy mode; the drivers crate's probes, which
//! leave nothing behind). [`evaluate`] turns the facts into one [`Check`] per line, ok, warn or
//! fail, each failure with the command that fixes it. `evaluate` is pure, so the tests below
//! feed it made-up facts for every case, and the lab test (tests/tests/lab_doctor.rs) runs the
//! whole command on a healthy and on a broken veth.
//!
//! Exit status: 0 when no check failed, 1 when one did, 2 when the interface does not exist.

use std::path::Path;

use sirocco_drivers::DriverErrorKind;
use sirocco_drivers::afxdp::{
    self, AfXdpConfig, AttachMode, MAX_FRAME_MTU, MAX_MULTI_BUFFER_MTU, TrialError,
    VETH_NATIVE_MAX_MTU,
};
use sirocco_drivers::host::{self, Channels, Offload};
use sirocco_drivers::netmap::NetmapStatus;
use sirocco_drivers::netmap::real as netmap_real;
use sirocco_drivers::sandbox;

use crate::cli::DoctorArgs;

/// Exit statuses.
const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_NO_INTERFACE: u8 = 2;

// Capability bits of the effective set (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short and stable, for scripts: `mtu`, `gro`, `xdp-program`...
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command that fixes a warning or failure, when there is one.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            ..Check::ok(name, detail)
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            ..Check::ok(name, detail)
        }
    }

    fn fix(mut self, command: impl Into<String>) -> Check {
        self.fix = Some(command.into());
        self
    }

    /// `ok   mtu          MTU 1500 fits ...`, and ` -> fix: CMD` when there is a fix.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<4} {:<12} {}",
            self.status.word(),
            self.name,
            self.detail
        );
        if let Some(fix) = &self.fix {
            line.push_str(" -> fix: ");
            line.push_str(fix);
        }
        line
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "check": self.name,
            "status": self.status.word(),
            "detail": self.detail,
            "fix": self.fix,
        })
    }
}

/// The veth peer of the interface, when it is one end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Not a veth interface.
    None,
    /// The peer is in this namespace: its name and whether it offloads TX checksums.
    Here {
        name: String,
        tx_checksum: Option<bool>,
    },
    /// The peer is in another namespace (its index there), so it cannot be read from here.
    Elsewhere { ifindex: Option<u32> },
}

/// One IRQ of the interface: its number, its name in /proc/interrupts, the CPUs it may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    pub number: u32,
    pub name: String,
    pub cpus: String,
}

/// The results of trying what `serve` does.
#[derive(Debug, Clone)]
pub struct Trials {
    pub native: Result<(), TrialError>,
    pub generic: Result<(), TrialError>,
    pub zero_copy: Result<(), TrialError>,
    pub copy: Result<(), TrialError>,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub iface: String,
    pub interface: host::Interface,
    /// The kernel driver (`ethtool -i`), if it says.
    pub driver: Option<String>,
    /// Whether the interface sits on a bus (a NIC) rather than being virtual.
    pub has_device: bool,
    /// The effective capability set, if /proc says.
    pub cap_eff: Option<u64>,
    /// The memlock soft limit: `Ok(None)` is unlimited.
    pub memlock: Result<Option<u64>, String>,
    /// The UMEM one queue locks with `serve`'s defaults.
    pub umem_per_queue: u64,
    /// The CPUs this process may run on.
    pub cpus: usize,
    pub channels: Option<Channels>,
    /// The RX queues the kernel registered.
    pub rx_queues: Option<u32>,
    /// The queue the trial bind used.
    pub queue: u32,
    /// Offloads: `None` when the driver does not report them.
    pub gro: Option<bool>,
    pub lro: Option<bool>,
    pub rx_checksum: Option<bool>,
    pub peer: Peer,
    pub irqs: Vec<Irq>,
    pub irqbalance: bool,
    pub netmap: Result<NetmapStatus, String>,
    /// `None` under `--no-trial`.
    pub trials: Option<Trials>,
}

/// Runs the doctor, prints its report, and returns the exit status.
pub fn run(args: &DoctorArgs) -> u8 {
    let interface = match host::interface(&args.iface) {
        Ok(interface) => interface,
        Err(e) => {
            eprintln!("error: {}", no_interface(&args.iface, &e));
            return EXIT_NO_INTERFACE;
        }
    };
    let facts = gather(args, interface);
    let checks = evaluate(&facts);
    if args.json {
        let array: Vec<serde_json::Value> = checks.iter().map(Check::json).collect();
        println!("{}", serde_json::Value::Array(array));
    } else {
        for check in &checks {
            println!("{}", check.line());
        }
        println!("{}", summary(&facts.iface, &checks));
    }
    if checks.iter().any(|c| c.status == Status::Fail) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// Why `iface` cannot be checked, naming the interfaces there are.
fn no_interface(iface: &str, e: &std::io::Error) -> String {
    let names = crate::lab::interface_names();
    let available = if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    };
    match e.raw_os_error() {
        Some(libc::ENODEV) => format!("interface {iface} not found; available: {available}"),
        Some(libc::EINVAL) => format!(
            "'{}' is not a valid interface name; available: {available}",
            iface.escape_debug()
        ),
        _ => format!("cannot read interface {iface}: {e}"),
    }
}

/// `veth-srv: 9 ok, 3 warn, 0 fail`, and what that means.
fn summary(iface: &str, checks: &[Check]) -> String {
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (ok, warn, fail) = (count(Status::Ok), count(Status::Warn), count(Status::Fail));
    let verdict = if fail == 0 {
        format!("sirocco can serve on {iface}")
    } else {
        "fix the failures above before serving".to_string()
    };
    format!("{iface}: {ok} ok, {warn} warn, {fail} fail: {verdict}")
}

/// Reads every fact, running the trials unless `--no-trial`.
fn gather(args: &DoctorArgs, interface: host::Interface) -> Facts {
    let iface = args.iface.as_str();
    let driver = host::driver_info(iface).ok();
    let has_device = Path::new(&format!("/sys/class/net/{iface}/device")).exists();
    let offload = |o| host::offload(iface, o).ok();
    let trials = (!args.no_trial).then(|| {
        let copy = afxdp::trial_bind(iface, args.queue, false);
        // A queue another socket holds is busy in either mode: one 1 s wait for it is enough.
        let zero_copy = match &copy {
            Err(e) if e.failure == DriverErrorKind::Busy => copy.clone(),
            _ => afxdp::trial_bind(iface, args.queue, true),
        };
        Trials {
            copy,
            zero_copy,
            native: afxdp::trial_attach(iface, AttachMode::Native),
            generic: afxdp::trial_attach(iface, AttachMode::Skb),
        }
    });
    let driver_name = driver.as_ref().map(|d| d.driver.clone());
    Facts {
        iface: iface.to_string(),
        interface,
        peer: if driver_name.as_deref() == Some("veth") {
            veth_peer(iface, interface.index)
        } else {
            Peer::None
        },
        driver: driver_name,
        has_device,
        cap_eff: sandbox::capabilities().ok().map(|caps| caps.effective),
        memlock: host::memlock_limit().map_err(|e| e.to_string()),
        umem_per_queue: AfXdpConfig::new(iface).umem_bytes(),
        cpus: host::allowed_cpus().map(|c| c.len()).unwrap_or(1).max(1),
        channels: host::channels(iface).ok(),
        rx_queues: host::rx_queue_count(iface),
        queue: args.queue,
        gro: offload(Offload::Gro),
        lro: offload(Offload::Lro),
        rx_checksum: offload(Offload::RxChecksum),
        irqs: interface_irqs(iface),
        irqbalance: process_running("irqbalance"),
        netmap: netmap_real::probe().map_err(|e| e.to_string()),
        trials,
    }
}

fn has_cap(mask: u64, cap: u32) -> bool {
    mask & (1 << cap) != 0
}

/// A number in a sysfs file of `iface`.
fn sysfs_number(iface: &str, file: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The other end of the veth `iface` (index `index`): an interface here whose index is our
/// `iflink` and whose `iflink` is our index. Otherwise it is in another namespace, where its
/// index may belong to an unrelated interface of ours.
fn veth_peer(iface: &str, index: u32) -> Peer {
    let peer_index = sysfs_number(iface, "iflink");
    let here = crate::lab::interface_names().into_iter().find(|name| {
        name != iface
            && peer_index.is_some()
            && sysfs_number(name, "ifindex") == peer_index
            && sysfs_number(name, "iflink") == Some(index)
            && host::driver_info(name).is_ok_and(|d| d.driver == "veth")
    });
    match here {
        Some(name) => Peer::Here {
            tx_checksum: host::offload(&name, Offload::TxChecksum).ok(),
            name,
        },
        None => Peer::Elsewhere {
            ifindex: peer_index,
        },
    }
}

/// The IRQs of `iface`: lines of /proc/interrupts named after it (`eth0-TxRx-0`) or after its
/// device (`virtio2-input.0`, `mlx5_comp0@pci:0000:01:00.0`), with their CPU lists. Config
/// interrupts (`virtio2-config`) carry no traffic and are left out.
fn interface_irqs(iface: &str) -> Vec<Irq> {
    let device = std::fs::read_link(format!("/sys/class/net/{iface}/device"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Ok(text) = std::fs::read_to_string("/proc/interrupts") else {
        return Vec::new();
    };
    parse_interrupts(&text, iface, device.as_deref())
        .into_iter()
        .map(|(number, name)| Irq {
            cpus: std::fs::read_to_string(format!("/proc/irq/{number}/smp_affinity_list"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into()),
            number,
            name,
        })
        .collect()
}

/// The numbered lines of a /proc/interrupts text whose name (the last word) belongs to
/// `iface` or its `device`.
fn parse_interrupts(text: &str, iface: &str, device: Option<&str>) -> Vec<(u32, String)> {
    let ours = |name: &str| {
        if name.ends_with("-config") {
            return false;
        }
        let by_iface = name == iface || name.starts_with(&format!("{iface}-"));
        let by_device = device.is_some_and(|d| {
            name.starts_with(&format!("{d}-")) || (d.contains(':') && name.contains(d))
        });
        by_iface || by_device
    };
    text.lines()
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let number = number.parse().ok()?;
            let name = rest.split_whitespace().last()?;
            ours(name).then(|| (number, name.to_string()))
        })
        .collect()
}

/// Whether a process whose command name is `comm` runs (in /proc, so in this PID namespace).
fn process_running(comm: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == comm))
}

/// The checks, in the order they are printed.
pub fn evaluate(facts: &Facts) -> Vec<Check> {
    let mut checks = vec![
        interface_check(facts),
        capabilities_check(facts),
        memlock_check(facts),
    ];
    checks.extend(trial_checks(facts));
    checks.extend([
        mtu_check(facts),
        queues_check(facts),
        gro_check(facts),
        lro_check(facts),
        checksum_check(facts),
        irq_check(facts),
        irqbalance_check(facts),
        netmap_check(facts),
    ]);
    checks
}

fn interface_check(f: &Facts) -> Check {
    let i = &f.interface;
    let driver = f.driver.as_deref().unwrap_or("unknown");
    let text = format!(
        "{}: index {}, MTU {}, driver {driver}",
        f.iface, i.index, i.mtu
    );
    if i.up {
        Check::ok("interface", format!("{text}, up"))
    } else {
        Check::fail("interface", format!("{text}, down: no frame arrives"))
            .fix(format!("ip link set dev {} up", f.iface))
    }
}

const SETCAP: &str = "run as root, or `sudo setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep \"$(command -v sirocco)\"`";

fn capabilities_check(f: &Facts) -> Check {
    let Some(mask) = f.cap_eff else {
        return Check::warn(
            "capabilities",
            "cannot read the effective capabilities (capget)",
        );
    };
    let mut missing = Vec::new();
    for (cap, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ] {
        if !has_cap(mask, cap) {
            missing.push(name);
        }
    }
    // Before Linux 5.8 there is no CAP_BPF, and CAP_SYS_ADMIN is what loads programs.
    if !has_cap(mask, CAP_BPF) && !has_cap(mask, CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if missing.is_empty() {
        let bpf = if has_cap(mask, CAP_BPF) {
            "CAP_BPF"
        } else {
            "CAP_SYS_ADMIN (for BPF)"
        };
        Check::ok(
            "capabilities",
            format!("CAP_NET_ADMIN, CAP_NET_RAW and {bpf} are effective"),
        )
    } else {
        Check::fail(
            "capabilities",
            format!(
                "missing {}: AF_XDP cannot load or attach its XDP program",
                missing.join(", ")
            ),
        )
        .fix(SETCAP)
    }
}

/// The queues `serve` runs engines on by default: each queue the NIC has, at most one per CPU.
fn served_queues(f: &Facts) -> u32 {
    let cpus = u32::try_from(f.cpus).unwrap_or(u32::MAX);
    receive_queues(f).unwrap_or(1).min(cpus).max(1)
}

fn receive_queues(f: &Facts) -> Option<u32> {
    f.channels
        .map(|c| c.receive_queues())
        .filter(|&n| n > 0)
        .or(f.rx_queues.filter(|&n| n > 0))
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

fn memlock_check(f: &Facts) -> Check {
    let queues = served_queues(f);
    let needed = f.umem_per_queue * u64::from(queues);
    let need = format!(
        "{} of UMEM for {queues} queue{}",
        mib(needed),
        plural(queues)
    );
    if f.cap_eff.is_some_and(|m| has_cap(m, CAP_IPC_LOCK)) {
        return Check::ok(
            "memlock",
            format!("CAP_IPC_LOCK: the {need} is not charged to the limit"),
        );
    }
    match &f.memlock {
        Err(e) => Check::warn("memlock", format!("cannot read the limit: {e}")),
        Ok(None) => Check::ok("memlock", format!("unlimited, enough for the {need}")),
        Ok(Some(limit)) if *limit >= needed => Check::ok(
            "memlock",
            format!("limit {} covers the {need}", mib(*limit)),
        ),
        Ok(Some(limit)) => Check::fail(
            "memlock",
            format!(
                "limit {} ({limit} bytes) is below the {need}: registering it fails",
                mib(*limit)
            ),
        )
        .fix("ulimit -l unlimited (systemd: LimitMEMLOCK=infinity), or give CAP_IPC_LOCK"),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn is_busy(r: &Result<(), TrialError>) -> bool {
    matches!(r, Err(e) if e.failure == DriverErrorKind::Busy)
}

fn is_permission(r: &Result<(), TrialError>) -> bool {
    matches!(r, Err(e) if e.failure == DriverErrorKind::Permission)
}

/// `xdp-program`, `xdp-attach`, `af-xdp` and `zero-copy`, from the trials.
fn trial_checks(f: &Facts) -> Vec<Check> {
    const NAMES: [&str; 4] = ["xdp-program", "xdp-attach", "af-xdp", "zero-copy"];
    let Some(t) = &f.trials else {
        return NAMES
            .iter()
            .map(|name| Check::warn(name, "skipped (--no-trial)"))
            .collect();
    };
    let iface = &f.iface;
    let q = f.queue;

    let program = if is_busy(&t.native) || is_busy(&t.generic) {
        Check::fail(
            "xdp-program",
            format!("an XDP program is already attached to {iface}: serve cannot attach its own"),
        )
        .fix(format!(
            "stop the process that holds it (`bpftool net` shows it; a running `sirocco serve`?), \
             or `ip link set dev {iface} xdp off`"
        ))
    } else if is_permission(&t.native) && is_permission(&t.generic) {
        Check::fail("xdp-program", "cannot look: not allowed to attach XDP").fix(SETCAP)
    } else {
        Check::ok("xdp-program", format!("none attached to {iface}"))
    };

    let attach = match (&t.native, &t.generic) {
        (Ok(()), Ok(())) => Check::ok(
            "xdp-attach",
            "native and generic (SKB) XDP both attach; serve uses native",
        ),
        _ if is_busy(&t.native) || is_busy(&t.generic) => Check::warn(
            "xdp-attach",
            "modes not tried: a program is already attached (see xdp-program)",
        ),
        (Err(e), _) | (_, Err(e)) if e.failure == DriverErrorKind::Permission => {
            Check::fail("xdp-attach", e.message.clone()).fix(SETCAP)
        }
        (Err(native), Ok(())) => {
            let check = Check::warn(
                "xdp-attach",
                format!("generic (SKB) XDP only, slower: {}", native.message),
            );
            match native.failure {
                DriverErrorKind::MtuTooLarge => check.fix(format!(
                    "ip link set dev {iface} mtu {VETH_NATIVE_MAX_MTU} (and on its peer)"
                )),
                _ => check,
            }
        }
        (Ok(()), Err(generic)) => Check::warn(
            "xdp-attach",
            format!("native XDP attaches, generic does not: {}", generic.message),
        ),
        (Err(native), Err(generic)) => Check::fail(
            "xdp-attach",
            format!(
                "no XDP mode attaches: native: {}; generic: {}",
                native.message, generic.message
            ),
        ),
    };

    let af_xdp = match &t.copy {
        Ok(()) => Check::ok(
            "af-xdp",
            format!("an AF_XDP socket binds to queue {q} of {iface} (copy mode)"),
        ),
        Err(e) => {
            let check = Check::fail("af-xdp", e.message.clone());
            match e.failure {
                DriverErrorKind::Permission => check.fix(SETCAP),
                DriverErrorKind::Busy => check.fix(format!(
                    "stop the process bound to queue {q} of {iface} (a running `sirocco serve`?)"
                )),
                DriverErrorKind::Unsupported => {
                    check.fix("boot a kernel with CONFIG_XDP_SOCKETS=y, or serve with --driver tap")
                }
                _ => check,
            }
        }
    };

    let driver = f.driver.as_deref().unwrap_or("the driver");
    let zero_copy = match &t.zero_copy {
        Ok(()) => Check::ok(
            "zero-copy",
            format!("zero-copy AF_XDP binds to queue {q}: frames skip a copy"),
        ),
        Err(e) if e.failure == DriverErrorKind::Unsupported => Check::warn(
            "zero-copy",
            format!("{driver} has no zero-copy AF_XDP: serve binds in copy mode"),
        ),
        Err(_) if t.copy.is_err() => {
            Check::warn("zero-copy", "not known: no AF_XDP bind works (see af-xdp)")
        }
        Err(e) => Check::warn(
            "zero-copy",
            format!("refused, serve binds in copy mode: {}", e.message),
        ),
    };
    vec![program, attach, af_xdp, zero_copy]
}

fn mtu_check(f: &Facts) -> Check {
    let mtu = f.interface.mtu as usize;
    let iface = &f.iface;
    if mtu <= MAX_FRAME_MTU {
        return Check::ok(
            "mtu",
            format!("MTU {mtu} fits a UMEM chunk (up to {MAX_FRAME_MTU})"),
        );
    }
    // Longer frames span several 4096-byte chunks: the socket must be multi-buffer, which the
    // copy-mode trial bind asks for at this MTU, as serve does.
    let multi_buffer = f.trials.as_ref().map(|t| &t.copy);
    let check = match multi_buffer {
        Some(Err(e)) if e.failure == DriverErrorKind::Unsupported => {
            return Check::fail(
                "mtu",
                format!(
                    "MTU {mtu} is above {MAX_FRAME_MTU}, so frames span several UMEM chunks, \
                     and AF_XDP multi-buffer is refused here: {}",
                    e.message
                ),
            )
            .fix(format!(
                "ip link set dev {iface} mtu {MAX_FRAME_MTU} (and on its peer)"
            ));
        }
        Some(Ok(())) => Check::ok(
            "mtu",
            format!(
                "MTU {mtu}: frames above {MAX_FRAME_MTU} bytes span several UMEM chunks, and \
                 the AF_XDP socket binds multi-buffer (XDP_USE_SG)"
            ),
        ),
        _ => Check::warn(
            "mtu",
            format!(
                "MTU {mtu} is above {MAX_FRAME_MTU}: serve needs AF_XDP multi-buffer \
                 (XDP_USE_SG, Linux 6.6+), not tried (see af-xdp)"
            ),
        ),
    };
    if mtu > MAX_MULTI_BUFFER_MTU {
        Check::warn(
            "mtu",
            format!(
                "MTU {mtu} is above {MAX_MULTI_BUFFER_MTU}, the largest sirocco serves: it \
                 serves with {MAX_MULTI_BUFFER_MTU} and drops longer frames"
            ),
        )
        .fix(format!(
            "ip link set dev {iface} mtu {MAX_MULTI_BUFFER_MTU} (and on its peer)"
        ))
    } else {
        check
    }
}

fn queues_check(f: &Facts) -> Check {
    let iface = &f.iface;
    let Some(queues) = receive_queues(f) else {
        return Check::warn(
            "queues",
            "cannot read the queue count: serve runs one engine on queue 0",
        );
    };
    let cpus = u32::try_from(f.cpus).unwrap_or(u32::MAX);
    if queues > cpus {
        return Check::warn(
            "queues",
            format!(
                "{queues} RX queues but {cpus} CPU{}: serve runs {cpus} engine{}, and \
                 connections the NIC hashes to the other queues reach the kernel, not sirocco",
                plural(cpus),
                plural(cpus)
            ),
        )
        .fix(format!("ethtool -L {iface} combined {cpus}"));
    }
    if let Some(c) = f.channels
        && c.max_combined > c.combined
        && c.combined > 0
        && c.combined < cpus
    {
        let wanted = c.max_combined.min(cpus);
        return Check::warn(
            "queues",
            format!(
                "{} of {} combined channels in use: serve could run {wanted} engines",
                c.combined, c.max_combined
            ),
        )
        .fix(format!("ethtool -L {iface} combined {wanted}"));
    }
    Check::ok(
        "queues",
        format!(
            "{queues} RX queue{}: serve runs {queues} engine{}, one per queue ({cpus} CPU{})",
            plural(queues),
            plural(queues),
            plural(cpus)
        ),
    )
}

/// GRO merges frames in the kernel after the driver: native XDP runs before it, generic
/// (SKB) XDP after it, so only generic mode gets frames longer than the MTU.
fn gro_check(f: &Facts) -> Check {
    let native_works = f.trials.as_ref().is_some_and(|t| t.native.is_ok());
    let fix = format!("ethtool -K {} gro off", f.iface);
    match f.gro {
        Some(true) if native_works => Check::warn(
            "gro",
            "generic-receive-offload is on: harmless in native XDP mode, which serve uses, but \
             in generic mode (--xdp-mode skb) the kernel merges frames beyond the MTU before \
             the program sees them, and sirocco drops them",
        )
        .fix(fix),
        Some(true) => Check::fail(
            "gro",
            "generic-receive-offload is on and serve will use generic XDP: the kernel merges \
             frames beyond the MTU before the program sees them, and sirocco drops them",
        )
        .fix(fix),
        Some(false) => Check::ok("gro", "generic-receive-offload is off"),
        None => Check::ok("gro", "generic-receive-offload: not offered by the driver"),
    }
}

/// LRO merges frames in the NIC, before any XDP program: drivers refuse native XDP with it on,
/// and in generic mode the merged frames do not fit.
fn lro_check(f: &Facts) -> Check {
    match f.lro {
        Some(true) => Check::fail(
            "lro",
            "large-receive-offload is on: the NIC merges frames beyond the MTU before any XDP \
             program runs, and sirocco drops them",
        )
        .fix(format!("ethtool -K {} lro off", f.iface)),
        Some(false) => Check::ok("lro", "large-receive-offload is off"),
        None => Check::ok("lro", "large-receive-offload: not offered by the driver"),
    }
}

fn checksum_check(f: &Facts) -> Check {
    match (f.driver.as_deref(), &f.peer) {
        (Some("veth"), Peer::Here { name, tx_checksum }) => match tx_checksum {
            Some(true) => Check::fail(
                "checksum",
                format!(
                    "the veth peer {name} offloads TX checksums: its TCP frames arrive with only \
                     a partial checksum, which sirocco does not complete, and are dropped"
                ),
            )
            .fix(format!("ethtool -K {name} tx off")),
            Some(false) => Check::ok(
                "checksum",
                format!("the veth peer {name} sends full checksums (tx-checksumming off)"),
            ),
            None => Check::warn(
                "checksum",
                format!("cannot read tx-checksumming of the veth peer {name}; it must be off"),
            )
            .fix(format!("ethtool -K {name} tx off")),
        },
        (Some("veth"), peer) => {
            let index = match peer {
                Peer::Elsewhere {
                    ifindex: Some(index),
                } => format!(" (index {index} there)"),
                _ => String::new(),
            };
            Check::warn(
                "checksum",
                format!(
                    "the veth peer is in another namespace{index} and cannot be read from here: \
                     its tx-checksumming must be off, or its TCP frames arrive with partial \
                     checksums and are dropped"
                ),
            )
            .fix("ethtool -K PEER tx off, in the peer's namespace")
        }
        (Some("virtio_net"), _) if f.rx_checksum == Some(true) => Check::warn(
            "checksum",
            "virtio rx-checksumming is on: the host may pass frames with partial checksums \
             (from its own stack or another guest), which sirocco drops",
        )
        .fix(format!("ethtool -K {} rx off", f.iface)),
        (Some(driver), _) => Check::ok(
            "checksum",
            format!("{driver}: received frames carry complete checksums"),
        ),
        (None, _) => Check::warn(
            "checksum",
            "unknown driver: a virtual link's peer must send full checksums",
        ),
    }
}

fn irq_check(f: &Facts) -> Check {
    if f.irqs.is_empty() {
        return if f.has_device {
            Check::warn(
                "irq",
                format!(
                    "no IRQ in /proc/interrupts is named after {} or its device",
                    f.iface
                ),
            )
        } else {
            Check::ok("irq", "no IRQs (virtual device)")
        };
    }
    let list: Vec<String> = f
        .irqs
        .iter()
        .map(|irq| format!("{} {} -> CPU {}", irq.number, irq.name, irq.cpus))
        .collect();
    Check::ok(
        "irq",
        format!(
            "{}; pin engines to these CPUs with serve --cpus",
            list.join(", ")
        ),
    )
}

fn irqbalance_check(f: &Facts) -> Check {
    if f.irqbalance {
        Check::warn(
            "irqbalance",
            "irqbalance is running: it moves the NIC's IRQs away from the CPUs the engines are \
             pinned to",
        )
        .fix("systemctl stop irqbalance")
    } else {
        Check::ok("irqbalance", "not running: IRQs stay where they are set")
    }
}

fn netmap_check(f: &Facts) -> Check {
    match &f.netmap {
        Ok(NetmapStatus::Absent) => Check::warn("netmap", "netmap absent (AF_XDP will be used)"),
        Ok(NetmapStatus::Ready { api }) => Check::ok(
            "netmap",
            format!("/dev/netmap answers, API version {api}: --driver auto picks netmap"),
        ),
        Ok(NetmapStatus::VersionMismatch { kernel, ours }) => Check::fail(
            "netmap",
            format!(
                "the netmap module speaks API version {kernel}, sirocco needs {ours}: \
                 --driver auto would fail"
            ),
        )
        .fix("load a netmap module with the legacy API (version 11), or serve with --driver afxdp"),
        Err(e) => Check::warn("netmap", format!("/dev/netmap is there but: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial_error(failure: DriverErrorKind, message: &str) -> Result<(), TrialError> {
        Err(TrialError {
            failure,
            message: message.to_string(),
        })
    }

    /// A healthy veth end in the lab, as root.
    fn healthy() -> Facts {
        Facts {
            iface: "veth-srv".into(),
            interface: host::Interface {
                index: 2,
                mtu: 1500,
                up: true,
            },
            driver: Some("veth".into()),
            has_device: false,
            cap_eff: Some(0x1ff_ffff_ffff),
            memlock: Ok(Some(8 << 20)),
            umem_per_queue: 16 << 20,
            cpus: 2,
            channels: Some(Channels {
                combined: 0,
                rx: 1,
                tx: 1,
                max_combined: 0,
                max_rx: 2,
            }),
            rx_queues: Some(1),
            queue: 0,
            gro: Some(false),
            lro: Some(false),
            rx_checksum: Some(true),
            peer: Peer::Here {
                name: "veth-cli".into(),
                tx_checksum: Some(false),
            },
            irqs: Vec::new(),
            irqbalance: false,
            netmap: Ok(NetmapStatus::Absent),
            trials: Some(Trials {
                native: Ok(()),
                generic: Ok(()),
                zero_copy: trial_error(DriverErrorKind::Unsupported, "no zero-copy"),
                copy: Ok(()),
            }),
        }
    }

    fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    fn status(facts: &Facts, name: &str) -> Status {
        check(&evaluate(facts), name).status
    }

    #[test]
    fn a_healthy_veth_passes_with_the_expected_warnings() {
        let checks = evaluate(&healthy());
        let fails: Vec<_> = checks.iter().filter(|c| c.status == Status::Fail).collect();
        assert!(fails.is_empty(), "{fails:?}");
        let warns: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .map(|c| c.name)
            .collect();
        assert_eq!(warns, ["zero-copy", "netmap"]);
        assert_eq!(
            check(&checks, "netmap").detail,
            "netmap absent (AF_XDP will be used)"
        );
        assert_eq!(check(&checks, "irq").detail, "no IRQs (virtual device)");
        // Names are unique and every line is in the documented shape.
        for c in &checks {
            assert_eq!(checks.iter().filter(|d| d.name == c.name).count(), 1);
            let line = c.line();
            assert!(line.starts_with(c.status.word()), "{line}");
            assert_eq!(line.contains(" -> fix: "), c.fix.is_some(), "{line}");
        }
    }

    #[test]
    fn gro_lro_and_a_large_mtu_fail_with_their_fixes() {
        let mut f = healthy();
        f.gro = Some(true);
        // Native XDP runs before GRO: only a warning while native mode works.
        assert_eq!(status(&f, "gro"), Status::Warn);
        f.trials.as_mut().unwrap().native = trial_error(DriverErrorKind::MtuTooLarge, "MTU");
        f.lro = Some(true);
        f.interface.mtu = 9000;
        let checks = evaluate(&f);
        let gro = check(&checks, "gro");
        assert_eq!(gro.status, Status::Fail);
        assert_eq!(gro.fix.as_deref(), Some("ethtool -K veth-srv gro off"));
        assert_eq!(
            check(&checks, "lro").fix.as_deref(),
            Some("ethtool -K veth-srv lro off")
        );
        // The copy-mode bind (multi-buffer at this MTU) works: jumbo frames are fine.
        let mtu = check(&checks, "mtu");
        assert_eq!(mtu.status, Status::Ok);
        assert!(
            mtu.detail.contains("MTU 9000") && mtu.detail.contains("XDP_USE_SG"),
            "{}",
            mtu.detail
        );
        // Multi-buffer refused: the MTU fails, with the largest one a chunk holds as the fix.
        f.trials.as_mut().unwrap().copy = trial_error(
            DriverErrorKind::Unsupported,
            "MTU 9000 on veth-srv needs AF_XDP multi-buffer support",
        );
        let checks = evaluate(&f);
        let mtu = check(&checks, "mtu");
        assert_eq!(mtu.status, Status::Fail);
        assert!(
            mtu.detail.contains("needs AF_XDP multi-buffer"),
            "{}",
            mtu.detail
        );
        assert_eq!(
            mtu.fix.as_deref(),
            Some("ip link set dev veth-srv mtu 3826 (and on its peer)")
        );
        // Not tried: a warning.
        f.trials = None;
        assert_eq!(status(&f, "mtu"), Status::Warn);
        // Above the netstack's 9000: a warning with a fix, even though the bind works.
        f.trials = healthy().trials;
        f.interface.mtu = 65536;
        let checks = evaluate(&f);
        let mtu = check(&checks, "mtu");
        assert_eq!(mtu.status, Status::Warn);
        assert_eq!(
            mtu.fix.as_deref(),
            Some("ip link set dev veth-srv mtu 9000 (and on its peer)")
        );
        // Within one chunk: fine on any driver.
        f.interface.mtu = 3600;
        assert_eq!(status(&f, "mtu"), Status::Ok);
        f.driver = Some("ixgbe".into());
        assert_eq!(status(&f, "mtu"), Status::Ok);
    }

    #[test]
    fn an_attached_program_fails_and_names_the_way_out() {
        let mut f = healthy();
        let t = f.trials.as_mut().unwrap();
        t.native = trial_error(DriverErrorKind::Busy, "busy");
        t.generic = trial_error(DriverErrorKind::Busy, "busy");
        t.copy = trial_error(DriverErrorKind::Busy, "queue 0 busy");
        let checks = evaluate(&f);
        let program = check(&checks, "xdp-program");
        assert_eq!(program.status, Status::Fail);
        assert!(program.fix.as_deref().unwrap().contains("xdp off"));
        assert_eq!(check(&checks, "xdp-attach").status, Status::Warn);
        assert_eq!(check(&checks, "af-xdp").status, Status::Fail);
    }

    #[test]
    fn generic_only_warns_and_no_mode_fails() {
        let mut f = healthy();
        f.trials.as_mut().unwrap().native = trial_error(DriverErrorKind::MtuTooLarge, "MTU");
        let checks = evaluate(&f);
        let attach = check(&checks, "xdp-attach");
        assert_eq!(attach.status, Status::Warn);
        assert!(attach.fix.as_deref().unwrap().contains("mtu 3506"));
        f.trials.as_mut().unwrap().generic = trial_error(DriverErrorKind::Setup, "EINVAL");
        assert_eq!(status(&f, "xdp-attach"), Status::Fail);
    }

    #[test]
    fn without_privileges_the_capabilities_and_memlock_fail() {
        let mut f = healthy();
        f.cap_eff = Some(0);
        let t = f.trials.as_mut().unwrap();
        t.native = trial_error(DriverErrorKind::Permission, "AF_XDP needs root");
        t.generic = trial_error(DriverErrorKind::Permission, "AF_XDP needs root");
        t.copy = trial_error(DriverErrorKind::Permission, "AF_XDP needs root");
        let checks = evaluate(&f);
        let caps = check(&checks, "capabilities");
        assert_eq!(caps.status, Status::Fail);
        assert!(caps.detail.contains("CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF"));
        assert!(caps.fix.as_deref().unwrap().contains("setcap"));
        // 8 MiB limit, 16 MiB UMEM for the one queue.
        let memlock = check(&checks, "memlock");
        assert_eq!(memlock.status, Status::Fail);
        assert!(
            memlock
                .fix
                .as_deref()
                .unwrap()
                .contains("ulimit -l unlimited")
        );
        for name in ["xdp-program", "xdp-attach", "af-xdp"] {
            assert_eq!(check(&checks, name).status, Status::Fail, "{name}");
        }
        // CAP_SYS_ADMIN stands in for CAP_BPF on old kernels; unlimited memlock is enough.
        f.cap_eff = Some((1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_SYS_ADMIN));
        f.memlock = Ok(None);
        assert_eq!(status(&f, "capabilities"), Status::Ok);
        assert_eq!(status(&f, "memlock"), Status::Ok);
    }

    #[test]
    fn memlock_counts_every_queue_served() {
        let mut f = healthy();
        f.cap_eff = Some(1 << CAP_NET_ADMIN);
        f.memlock = Ok(Some(32 << 20));
        assert_eq!(status(&f, "memlock"), Status::Ok);
        f.channels = None;
        f.rx_queues = Some(4);
        // 4 queues, 2 CPUs: 2 engines of 16 MiB fit 32 MiB.
        assert_eq!(status(&f, "memlock"), Status::Ok);
        f.cpus = 4;
        assert_eq!(status(&f, "memlock"), Status::Fail);
    }

    #[test]
    fn more_queues_than_cpus_or_unused_channels_warn() {
        let mut f = healthy();
        f.channels = Some(Channels {
            combined: 8,
            rx: 0,
            tx: 0,
            max_combined: 8,
            max_rx: 0,
        });
        let checks = evaluate(&f);
        let queues = check(&checks, "queues");
        assert_eq!(queues.status, Status::Warn);
        assert_eq!(
            queues.fix.as_deref(),
            Some("ethtool -L veth-srv combined 2")
        );
        f.cpus = 8;
        f.channels = Some(Channels {
            combined: 2,
            rx: 0,
            tx: 0,
            max_combined: 16,
            max_rx: 0,
        });
        let checks = evaluate(&f);
        assert_eq!(
            check(&checks, "queues").fix.as_deref(),
            Some("ethtool -L veth-srv combined 8")
        );
        f.channels = None;
        f.rx_queues = None;
        assert_eq!(status(&f, "queues"), Status::Warn);
    }

    #[test]
    fn the_veth_peer_must_not_offload_tx_checksums() {
        let mut f = healthy();
        f.peer = Peer::Here {
            name: "vpeer".into(),
            tx_checksum: Some(true),
        };
        let checks = evaluate(&f);
        let c = check(&checks, "checksum");
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.fix.as_deref(), Some("ethtool -K vpeer tx off"));
        f.peer = Peer::Elsewhere { ifindex: Some(3) };
        assert_eq!(status(&f, "checksum"), Status::Warn);
        f.driver = Some("virtio_net".into());
        f.peer = Peer::None;
        assert_eq!(status(&f, "checksum"), Status::Warn);
        f.rx_checksum = Some(false);
        assert_eq!(status(&f, "checksum"), Status::Ok);
    }

    #[test]
    fn down_interface_irqbalance_and_netmap_mismatch() {
        let mut f = healthy();
        f.interface.up = false;
        f.irqbalance = true;
        f.netmap = Ok(NetmapStatus::VersionMismatch {
            kernel: 14,
            ours: 11,
        });
        let checks = evaluate(&f);
        assert_eq!(
            check(&checks, "interface").fix.as_deref(),
            Some("ip link set dev veth-srv up")
        );
        assert_eq!(
            check(&checks, "irqbalance").fix.as_deref(),
            Some("systemctl stop irqbalance")
        );
        assert_eq!(check(&checks, "netmap").status, Status::Fail);
    }

    #[test]
    fn skipped_trials_warn() {
        let mut f = healthy();
        f.trials = None;
        let checks = evaluate(&f);
        for name in ["xdp-program", "xdp-attach", "af-xdp", "zero-copy"] {
            let c = check(&checks, name);
            assert_eq!(
                (c.status, c.detail.as_str()),
                (Status::Warn, "skipped (--no-trial)")
            );
        }
    }

    #[test]
    fn interrupts_are_matched_by_interface_or_device() {
        let text = "           CPU0       CPU1
 28:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       2944 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       2221          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 41:       1910          0 PCI-MSIX-0000:00:04.0   1-edge      virtio3-rx
 50:          1          0 PCI-MSI 524288-edge      eth1-TxRx-0
 51:          1          0 PCI-MSI 524289-edge      mlx5_comp0@pci:0000:01:00.0
NMI:          0          0   Non-maskable interrupts
";
        let names = |iface, device| -> Vec<u32> {
            parse_interrupts(text, iface, device)
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names("eth0", Some("virtio2")), [38, 39]);
        assert_eq!(names("eth1", None), [50]);
        assert_eq!(names("enp1s0", Some("0000:01:00.0")), [51]);
        assert!(names("veth-srv", None).is_empty());
    }

    #[test]
    fn json_has_one_object_per_check() {
        let checks = evaluate(&healthy());
        let array: Vec<serde_json::Value> = checks.iter().map(Check::json).collect();
        let text = serde_json::Value::Array(array).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let items = parsed.as_array().unwrap();
        assert_eq!(items.len(), checks.len());
        assert_eq!(items[0]["check"], "interface");
        assert_eq!(items[0]["status"], "ok");
        assert!(items[0]["fix"].is_null());
    }

    #[test]
    fn the_summary_counts_and_concludes() {
        let mut f = healthy();
        let line = summary("veth-srv", &evaluate(&f));
        assert!(
            line.ends_with("0 fail: sirocco can serve on veth-srv"),
            "{line}"
        );
        f.lro = Some(true);
        let line = summary("veth-srv", &evaluate(&f));
        assert!(line.contains("1 fail: fix the failures above"), "{line}");
    }
}
