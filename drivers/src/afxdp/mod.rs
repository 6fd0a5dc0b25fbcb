//! The AF_XDP backend: frames straight from a NIC queue through an XDP socket, with no libbpf.
//!
//! [`AfXdp::open`] (one queue) and [`AfXdp::open_queues`] (one socket per queue, one engine
//! each) build everything with raw syscalls, in this order:
//!
//! 1. look up the interface (index, MTU);
//! 2. create an XSKMAP and load the XDP program (`bpf`, `program`): redirect everything,
//!    or only ARP, IPv4, IPv6 and Neighbor Solicitations for the server's addresses
//!    ([`Filter`]), into the map slot of the queue the frame arrived on (`rx_queue_index`);
//! 3. attach it with a BPF link, native first and then SKB (generic) mode ([`AttachMode`]);
//! 4. per queue: map a UMEM (`umem`), open the AF_XDP socket and bind it to the queue,
//!    zero-copy first and then copy ([`CopyMode`]);
//! 5. put each socket in the map slot of its queue, and hand half its chunks to its fill
//!    ring.
//!
//! Dropping the driver closes the link first, which detaches the program; the kernel does the
//! same if the process dies, even by SIGKILL, so the NIC is never left redirecting into a dead
//! socket.
//!
//! # Data path
//!
//! `queue` holds it, apart from all of the above: [`FrameIo::rx_burst`],
//! [`FrameIo::rx_batch`], [`FrameIo::tx_stage`] and [`FrameIo::tx_flush`] forward to its
//! `Queue`, whose only system calls are the socket's
//! TX kick and RX wake-up, and whose unit tests run it over anonymous-memory rings with a fake
//! kernel on the other side.
//!
//! Idle mode ([`FrameIo::wait_rx`]) blocks in `poll(POLLIN)`; busy-polling callers never call
//! it. In copy mode the kernel never sets the fill ring's need-wakeup flag, so a need-wakeup
//! spin loop would burn a core for nothing.

mod bpf;
mod if_xdp;
mod probe;
mod program;
mod queue;
mod ring;
mod socket;
mod tx_meta;
mod umem;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

pub use crate::Filter;
use crate::host;
use crate::sys::{self, Fd};
use crate::{
    Capabilities, DriverCounters, DriverError, DriverErrorKind, ETHERNET_HEADER_LEN, FrameIo,
};
use if_xdp::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_PACKET_HEADROOM};
use queue::{Queue, Rings};
use socket::{SocketConfig, SocketError, SocketStep, XdpSocket};
use tx_meta::TxChecksum;
use umem::{CHUNK_SIZE, Umem};

pub use probe::{
    MAX_FRAME_MTU, MAX_MULTI_BUFFER_MTU, TrialError, VETH_NATIVE_MAX_MTU, needs_multi_buffer,
    trial_attach, trial_bind,
};

/// How the XDP program is attached to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native if the driver supports it, else SKB.
    #[default]
    Auto,
    /// Native (driver) XDP: the program runs before the kernel builds an skb.
    Native,
    /// Generic XDP on the skb: works on any interface, slower.
    Skb,
}

/// Whether frames are copied between the NIC and the UMEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// Zero-copy if the driver supports it, else copy.
    #[default]
    Auto,
    ZeroCopy,
    Copy,
}

/// Who completes the TCP checksums of the frames sent ([`AfXdpConfig::tx_checksum`]). The
/// stack always fills in IPv4 header, ICMP and UDP checksums itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxChecksumOffload {
    /// The device, through TX metadata, where that is known to work: copy mode, a NIC with
    /// `tx-checksumming` on, a kernel that takes TX metadata (Linux 6.11+). Otherwise the
    /// stack. Zero-copy stays with the stack: a NIC driver without the checksum request would
    /// ignore it, and AF_XDP cannot tell. So does veth: it hands the packet to its peer with
    /// the checksum still partial, which the peer's TCP accepts but an XDP program or AF_XDP
    /// socket there (`sirocco replay`, another sirocco) sees as it is.
    #[default]
    Auto,
    /// The stack computes every checksum.
    Off,
    /// The device, through TX metadata; opening fails where the kernel refuses it. In
    /// zero-copy mode the NIC driver must implement the request (`tx-checksum` among the
    /// netdev's `xsk-features`).
    On,
    /// TX metadata with `XDP_UMEM_TX_SW_CSUM`: the kernel completes each checksum in software.
    /// Its debugging aid, and how to check the requests where no device completes them.
    KernelSoftware,
}

/// Settings for [`AfXdp::open`]. [`AfXdpConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpConfig {
    pub iface: String,
    pub queue: u32,
    pub mode: AttachMode,
    pub copy: CopyMode,
    pub filter: Filter,
    /// Entries in each of the four rings: a power of two from 64 to 32768.
    pub ring_size: u32,
    /// 4096-byte UMEM chunks: up to `ring_size` (and at most half) wait in the fill ring for
    /// RX; the rest are for TX.
    pub frame_count: u32,
    /// Bind with `XDP_USE_NEED_WAKEUP`: kick only when the kernel asks. Helps zero-copy
    /// drivers; in copy mode TX always asks, so it changes little.
    pub need_wakeup: bool,
    /// Who completes TCP checksums; see [`TxChecksumOffload`].
    pub tx_checksum: TxChecksumOffload,
}

impl AfXdpConfig {
    /// Queue 0, auto modes, every frame redirected, 2048-entry rings, 4096 chunks (16 MiB).
    pub fn new(iface: impl Into<String>) -> Self {
        AfXdpConfig {
            iface: iface.into(),
            queue: 0,
            mode: AttachMode::Auto,
            copy: CopyMode::Auto,
            filter: Filter::RedirectAll,
            ring_size: 2048,
            frame_count: 4096,
            need_wakeup: false,
            tx_checksum: TxChecksumOffload::Auto,
        }
    }

    /// Bytes of UMEM one queue maps and locks (`frame_count` chunks of 4096 bytes): what counts
    /// against the locked-memory limit (`ulimit -l`) per queue served.
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frame_count) * u64::from(CHUNK_SIZE)
    }

    fn check(&self) -> Result<(), DriverError> {
        if !self.ring_size.is_power_of_two() || !(64..=32768).contains(&self.ring_size) {
            return Err(DriverError::InvalidConfig(format!(
                "AF_XDP ring size {} is not a power of two from 64 to 32768 (e.g. 2048)",
                self.ring_size
            )));
        }
        if !(128..=1 << 20).contains(&self.frame_count) {
            return Err(DriverError::InvalidConfig(format!(
                "AF_XDP frame count {} is outside 128 ..= 1048576 (e.g. 4096)",
                self.frame_count
            )));
        }
        if self.queue == u32::MAX {
            return Err(too_large_queue());
        }
        self.filter
            .check()
            .map_err(|e| DriverError::InvalidConfig(e.to_string()))
    }
}

/// Counters beyond [`DriverCounters`], from [`AfXdp::xdp_counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// RX descriptors that pointed outside the UMEM or across a chunk: dropped.
    pub rx_invalid_descs: u64,
    /// Completion-ring addresses outside the UMEM or already free: ignored.
    pub completion_invalid: u64,
    /// Bursts after which the kernel had taken every fill-ring entry (it may have dropped
    /// frames for lack of buffers; see [`XdpKernelStats::rx_fill_ring_empty_descs`]).
    pub fill_ring_empty: u64,
    /// TX chunks the kernel reported sent.
    pub tx_completed: u64,
    /// TX kicks the kernel answered with `EAGAIN`, `EBUSY` or `ENOBUFS` (it will take the rest
    /// on the next kick).
    pub tx_kick_busy: u64,
    /// Lazy flushes ([`FrameIo::tx_flush_lazy`]) that left their kick owed, for a later pass to
    /// share.
    pub tx_kicks_deferred: u64,
    /// Owed kicks left to the `poll()` of an idle wait, which sends the frames itself: the
    /// `sendto` calls saved.
    pub tx_kicks_left_to_poll: u64,
    /// `recvfrom` wake-ups of a fill ring flagged need-wakeup.
    pub rx_wakeups: u64,
    /// Frames received as a chain of descriptors (multi-buffer, longer than a chunk).
    pub rx_chains: u64,
    /// RX chains dropped whole: longer than the largest frame, or with a descriptor that did
    /// not fit its chunk.
    pub rx_chains_dropped: u64,
    /// Frames sent as a chain of descriptors.
    pub tx_chains: u64,
    /// TCP frames sent with a TX-metadata checksum request, for the device (or the kernel) to
    /// complete (see [`TxChecksumOffload`]).
    pub tx_checksum_requests: u64,
}

/// The kernel's counters for the socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpKernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// The XDP program attached to an interface, with the XSKMAP it redirects into: shared by the
/// sockets of every queue served ([`AfXdp::open_queues`]) and detached when the last goes.
#[derive(Debug)]
struct Attachment {
    // Field order is drop order: the link goes first, so the program is detached before the
    // map it redirects into closes.
    _link: Fd,
    _program: Fd,
    map: Fd,
}

/// An AF_XDP socket on one interface queue, with its XDP program attached.
#[derive(Debug)]
pub struct AfXdp {
    // Field order is drop order: the attachment goes first, so for the last socket of an
    // interface the program is detached before the socket it redirects to closes. Earlier
    // sockets close while the program runs on; the kernel takes a closed socket out of the
    // map, and the program then passes that queue's frames to the kernel.
    _attachment: Arc<Attachment>,
    data_path: Queue<XdpSocket>,
    iface: String,
    ifindex: u32,
    queue: u32,
    attached: AttachMode,
    native_refused: Option<String>,
    zero_copy: bool,
    need_wakeup: bool,
    tx_checksum: TxChecksum,
    caps: Capabilities,
}

fn umem_mib(config: &AfXdpConfig) -> u64 {
    config.umem_bytes() >> 20
}

fn setup(message: String) -> DriverError {
    DriverError::Setup(message)
}

fn too_large_queue() -> DriverError {
    DriverError::InvalidConfig("AF_XDP queue number is too large".into())
}

fn needs_privilege() -> DriverError {
    DriverError::Permission(NEEDS_PRIVILEGE.into())
}

const NEEDS_PRIVILEGE: &str = "AF_XDP needs root, or CAP_NET_ADMIN + CAP_NET_RAW + CAP_BPF \
     (e.g. `setcap cap_net_admin,cap_net_raw,cap_bpf+ep` on the binary)";

fn is_permission(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

impl AfXdp {
    /// Sets up the socket, the program and the link on `config.iface`, for `config.queue`. See
    /// the module documentation for the steps; every failure says what to do about it.
    pub fn open(config: AfXdpConfig) -> Result<AfXdp, DriverError> {
        let queue = config.queue;
        let mut drivers = AfXdp::open_queues(config, &[queue])?;
        Ok(drivers.remove(0))
    }

    /// One socket per queue in `queues` (each with its own UMEM and rings, for one engine
    /// each), behind one XDP program that redirects by `rx_queue_index` into the socket of
    /// the queue the frame arrived on. `config.queue` is ignored. Frames on a queue that is
    /// not served pass to the kernel.
    pub fn open_queues(config: AfXdpConfig, queues: &[u32]) -> Result<Vec<AfXdp>, DriverError> {
        config.check()?;
        let Some(&highest) = queues.iter().max() else {
            return Err(DriverError::InvalidConfig(
                "AF_XDP needs at least one queue to serve".into(),
            ));
        };
        if highest == u32::MAX {
            return Err(too_large_queue());
        }
        if let Some(twice) = queues
            .iter()
            .enumerate()
            .find_map(|(i, q)| queues[..i].contains(q).then_some(q))
        {
            return Err(DriverError::InvalidConfig(format!(
                "AF_XDP queue {twice} is listed twice: each queue has one socket"
            )));
        }
        let iface = config.iface.as_str();
        let (ifindex, mtu) = interface(iface)?;

        let map = create_map(highest + 1)?;
        let prog = load_program(&config.filter, &map, mtu)?;

        let (link, attached, native_refused) = attach(&prog, &config, ifindex, mtu)?;
        let attachment = Arc::new(Attachment {
            _link: link,
            _program: prog,
            map,
        });
        queues
            .iter()
            .map(|&queue| {
                let config = AfXdpConfig {
                    queue,
                    ..config.clone()
                };
                AfXdp::open_queue(
                    &config,
                    &attachment,
                    ifindex,
                    mtu,
                    attached,
                    &native_refused,
                )
            })
            .collect()
    }

    /// The UMEM and socket of one queue, put in the attachment's map slot for that queue.
    fn open_queue(
        config: &AfXdpConfig,
        attachment: &Arc<Attachment>,
        ifindex: u32,
        mtu: usize,
        attached: AttachMode,
        native_refused: &Option<String>,
    ) -> Result<AfXdp, DriverError> {
        let umem = Umem::new(config.frame_count, CHUNK_SIZE).map_err(|e| {
            setup(format!(
                "cannot map {} MiB for the AF_XDP UMEM: {e}",
                umem_mib(config)
            ))
        })?;
        // What the UMEM is registered for.
        let registered = match config.tx_checksum {
            TxChecksumOffload::Off => TxChecksum::Stack,
            TxChecksumOffload::On => TxChecksum::Device,
            TxChecksumOffload::KernelSoftware => TxChecksum::KernelSoftware,
            TxChecksumOffload::Auto
                if config.copy != CopyMode::ZeroCopy
                    && host::offload(&config.iface, host::Offload::TxChecksum).unwrap_or(false)
                    && host::driver_info(&config.iface).is_ok_and(|info| info.driver != "veth")
                    && socket::takes_tx_metadata() =>
            {
                TxChecksum::Device
            }
            TxChecksumOffload::Auto => TxChecksum::Stack,
        };
        let (socket, rings, zero_copy) = open_socket(&umem, config, ifindex, mtu, registered)?;
        // Auto never offloads in zero-copy mode (see `TxChecksumOffload::Auto`), which its
        // copy-or-zero-copy bind may only now have chosen.
        let tx_checksum = if config.tx_checksum == TxChecksumOffload::Auto && zero_copy {
            TxChecksum::Stack
        } else {
            registered
        };

        let sock_fd = socket.fd().as_raw_fd().unsigned_abs();
        bpf::update_u32(attachment.map.as_fd(), config.queue, sock_fd).map_err(|e| {
            setup(format!(
                "cannot put the AF_XDP socket in the XSKMAP slot of queue {}: {e}",
                config.queue
            ))
        })?;

        let multi_buffer = needs_multi_buffer(mtu);
        // Single-buffer, a received frame must fit a chunk after the kernel's headroom; with
        // multi-buffer, the netstack's largest MTU bounds it (longer chains are dropped).
        let served_mtu = if multi_buffer {
            mtu.min(MAX_MULTI_BUFFER_MTU)
        } else {
            mtu.min((umem.chunk_size() - XDP_PACKET_HEADROOM) as usize - ETHERNET_HEADER_LEN)
        };
        let caps = Capabilities {
            zero_copy,
            tx_checksum_offload: tx_checksum != TxChecksum::Stack,
            ..Capabilities::ethernet(served_mtu)
        };
        let mut queue = Queue::new(
            rings,
            umem,
            socket,
            caps.max_frame_len,
            config.need_wakeup,
            multi_buffer,
        );
        if registered != TxChecksum::Stack {
            queue.set_tx_metadata(tx_checksum);
        }
        Ok(AfXdp {
            _attachment: Arc::clone(attachment),
            data_path: queue,
            iface: config.iface.clone(),
            ifindex,
            queue: config.queue,
            attached,
            native_refused: native_refused.clone(),
            zero_copy,
            need_wakeup: config.need_wakeup,
            tx_checksum,
            caps,
        })
    }

    /// For logs: e.g. "native XDP, copy mode, queue 0".
    pub fn mode_description(&self) -> String {
        let attach = match self.attached {
            AttachMode::Native => "native XDP",
            _ => "SKB (generic) XDP",
        };
        let copy = if self.zero_copy { "zero-copy" } else { "copy" };
        let mut text = format!("{attach}, {copy} mode, queue {}", self.queue);
        if needs_multi_buffer(self.caps.mtu) {
            text.push_str(&format!(", multi-buffer (MTU {})", self.caps.mtu));
        }
        if self.need_wakeup {
            text.push_str(", need-wakeup");
        }
        match self.tx_checksum {
            TxChecksum::Stack => {}
            TxChecksum::Device => text.push_str(", TCP checksums offloaded"),
            TxChecksum::KernelSoftware => {
                text.push_str(", TCP checksums by the kernel in software")
            }
        }
        if let Some(why) = &self.native_refused {
            text.push_str(&format!(" (native XDP refused: {why})"));
        }
        text
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The mode the program was attached in: [`AttachMode::Native`] or [`AttachMode::Skb`].
    pub fn attach_mode(&self) -> AttachMode {
        self.attached
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Frames one TX kick may send, when the kernel accepted `XDP_MAX_TX_SKB_BUDGET`
    /// (6.17+); `None` means its default of 32.
    pub fn tx_budget(&self) -> Option<u32> {
        self.data_path.doorbell().tx_budget
    }

    pub fn xdp_counters(&self) -> XdpCounters {
        self.data_path.xdp_counters()
    }

    /// The kernel's counters for this socket. One syscall: for a stats reporter, not the
    /// data path.
    pub fn kernel_statistics(&self) -> Result<XdpKernelStats, DriverError> {
        let s = self
            .data_path
            .doorbell()
            .statistics()
            .map_err(|e| DriverError::io("AF_XDP statistics", e))?;
        Ok(XdpKernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}

/// Index and MTU of `name` ([`host::interface`]), or an error that lists the interfaces there
/// are.
fn interface(name: &str) -> Result<(u32, usize), DriverError> {
    let found = host::interface(name).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => DriverError::NoInterface(format!(
            "'{}' is not a valid interface name; available: {}",
            name.escape_debug(),
            available_interfaces()
        )),
        Some(libc::ENODEV) => DriverError::NoInterface(format!(
            "interface {name} not found; available: {}",
            available_interfaces()
        )),
        _ => setup(format!("cannot inspect interface {name}: {e}")),
    })?;
    let ifindex = found.index;
    let mtu = usize::try_from(found.mtu).unwrap_or(0);
    if ifindex == 0 || mtu == 0 {
        return Err(setup(format!(
            "interface {name} reports index {ifindex} and MTU {mtu}: set an MTU with \
             `ip link set dev {name} mtu 1500`"
        )));
    }
    Ok((ifindex, mtu))
}

/// An XSKMAP with slots `0 .. entries`, one per queue; refusals explained.
fn create_map(entries: u32) -> Result<Fd, DriverError> {
    bpf::create_xskmap(entries).map_err(|e| {
        if is_permission(&e) {
            needs_privilege()
        } else {
            setup(format!(
                "cannot create an XSKMAP: {e} (is the kernel built with CONFIG_BPF_SYSCALL \
                 and CONFIG_XDP_SOCKETS?)"
            ))
        }
    })
}

/// Loads sirocco's XDP program for `filter`, redirecting into `map`, frags-aware when the
/// interface's `mtu` needs it ([`probe::needs_frags_program`]); refusals explained, with the
/// verifier's log when there is one.
fn load_program(filter: &Filter, map: &Fd, mtu: usize) -> Result<Fd, DriverError> {
    filter
        .check()
        .map_err(|e| DriverError::InvalidConfig(e.to_string()))?;
    let insns = match filter {
        Filter::RedirectAll => program::redirect_all(map.as_raw_fd()),
        Filter::Server(addresses) => program::redirect_server(map.as_raw_fd(), addresses),
    };
    let frags = probe::needs_frags_program(mtu);
    let loaded = match bpf::load_xdp_program(&insns, "sirocco_xdp", frags) {
        // Kernels before 5.18 refuse the frags flag; below the single-buffer limit only
        // veth's native mode wanted it, so a plain program still serves in SKB mode.
        Err(e)
            if frags
                && !needs_multi_buffer(mtu)
                && e.error.raw_os_error() == Some(libc::EINVAL) =>
        {
            bpf::load_xdp_program(&insns, "sirocco_xdp", false)
        }
        other => other,
    };
    loaded.map_err(|e| {
        if is_permission(&e.error) && e.log.is_empty() {
            needs_privilege()
        } else if frags && needs_multi_buffer(mtu) && e.error.raw_os_error() == Some(libc::EINVAL) {
            DriverError::new(
                DriverErrorKind::Unsupported,
                format!(
                    "MTU {mtu} needs a multi-buffer (frags-aware) XDP program, which this \
                     kernel refused ({}; it needs Linux 5.18 or later): set an MTU of at most \
                     {MAX_FRAME_MTU}",
                    e.error
                ),
            )
        } else {
            setup(format!(
                "the kernel refused sirocco's XDP program: {}; verifier log: {}",
                e.error,
                if e.log.is_empty() { "(none)" } else { &e.log }
            ))
        }
    })
}

fn available_interfaces() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "(none found in /sys/class/net)".into()
    } else {
        names.join(", ")
    }
}

/// Attaches the program with a BPF link in the configured mode, native first under `Auto`.
/// Returns the link, the mode used and, if `Auto` fell back to SKB, why native was refused.
fn attach(
    prog: &Fd,
    config: &AfXdpConfig,
    ifindex: u32,
    mtu: usize,
) -> Result<(Fd, AttachMode, Option<String>), DriverError> {
    let native = || attach_once(prog, ifindex, AttachMode::Native);
    let skb = || attach_once(prog, ifindex, AttachMode::Skb);
    let iface = &config.iface;
    match config.mode {
        AttachMode::Native => native()
            .map(|link| (link, AttachMode::Native, None))
            .map_err(|e| attach_error(iface, AttachMode::Native, mtu, e)),
        AttachMode::Skb => skb()
            .map(|link| (link, AttachMode::Skb, None))
            .map_err(|e| attach_error(iface, AttachMode::Skb, mtu, e)),
        AttachMode::Auto => match native() {
            Ok(link) => Ok((link, AttachMode::Native, None)),
            // Busy or forbidden in native mode means the same in SKB mode: say so now.
            Err(e)
                if is_permission(&e)
                    || matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) =>
            {
                Err(attach_error(iface, AttachMode::Native, mtu, e))
            }
            Err(native_error) => {
                let why = attach_error(iface, AttachMode::Native, mtu, native_error).to_string();
                match skb() {
                    Ok(link) => Ok((link, AttachMode::Skb, Some(why))),
                    Err(e) => Err(attach_error(iface, AttachMode::Skb, mtu, e)
                        .map_message(|skb| format!("{skb}; native mode failed too: {why}"))),
                }
            }
        },
    }
}

/// Attaches `prog` to `ifindex` with a BPF link in `mode` (`Auto` is SKB: callers pick).
fn attach_once(prog: &Fd, ifindex: u32, mode: AttachMode) -> std::io::Result<Fd> {
    let flags = match mode {
        AttachMode::Native => XDP_FLAGS_DRV_MODE,
        AttachMode::Skb | AttachMode::Auto => XDP_FLAGS_SKB_MODE,
    };
    bpf::attach_xdp_link(prog.as_fd(), ifindex, flags)
}

fn attach_error(iface: &str, mode: AttachMode, mtu: usize, e: std::io::Error) -> DriverError {
    let mode_name = if mode == AttachMode::Native {
        "native"
    } else {
        "SKB"
    };
    let kind = probe::attach_failure(mode, &e);
    let message = match kind {
        DriverErrorKind::Permission => NEEDS_PRIVILEGE.into(),
        DriverErrorKind::Busy => format!(
            "an XDP program is already attached to {iface}: detach it with \
             `ip link set dev {iface} xdp off`, or stop the process that holds it \
             (`bpftool net` shows it)"
        ),
        DriverErrorKind::MtuTooLarge => format!(
            "MTU {mtu} on {iface} (or its peer) is too large for native XDP; on veth the limit \
             is {VETH_NATIVE_MAX_MTU}: set a smaller MTU on both ends with \
             `ip link set dev {iface} mtu {VETH_NATIVE_MAX_MTU}`, or use SKB mode"
        ),
        DriverErrorKind::Unsupported => {
            format!("the driver of {iface} has no native XDP: use SKB (generic) mode")
        }
        _ => format!("cannot attach the XDP program to {iface} in {mode_name} mode: {e}"),
    };
    DriverError::new(kind, message)
}

/// The socket settings of `config`'s queue, in zero-copy or copy mode, multi-buffer if the
/// interface's `mtu` needs it.
fn socket_config(
    config: &AfXdpConfig,
    ifindex: u32,
    zero_copy: bool,
    mtu: usize,
    tx_checksum: TxChecksum,
) -> SocketConfig {
    SocketConfig {
        ifindex,
        queue: config.queue,
        ring_size: config.ring_size,
        zero_copy,
        need_wakeup: config.need_wakeup,
        multi_buffer: needs_multi_buffer(mtu),
        tx_checksum,
    }
}

/// Opens and binds the socket, zero-copy first under `CopyMode::Auto`.
fn open_socket(
    umem: &Umem,
    config: &AfXdpConfig,
    ifindex: u32,
    mtu: usize,
    tx_checksum: TxChecksum,
) -> Result<(XdpSocket, Rings, bool), DriverError> {
    let socket_config = |zero_copy| socket_config(config, ifindex, zero_copy, mtu, tx_checksum);
    let open = |zero_copy| {
        XdpSocket::open(umem, &socket_config(zero_copy))
            .map_err(|e| socket_error(config, zero_copy, mtu, e))
    };
    match config.copy {
        CopyMode::ZeroCopy => open(true).map(|(s, r)| (s, r, true)),
        CopyMode::Copy => open(false).map(|(s, r)| (s, r, false)),
        CopyMode::Auto => match XdpSocket::open(umem, &socket_config(true)) {
            Ok((socket, rings)) => Ok((socket, rings, true)),
            // Only a refused zero-copy bind is worth a copy-mode retry.
            Err(e) if e.step == SocketStep::Bind && e.error.raw_os_error() != Some(libc::EBUSY) => {
                open(false).map(|(s, r)| (s, r, false))
            }
            Err(e) => Err(socket_error(config, true, mtu, e)),
        },
    }
}

/// What went wrong opening the socket of `config`'s queue on an interface of `mtu`, and what
/// to do about it.
fn socket_error(config: &AfXdpConfig, zero_copy: bool, mtu: usize, e: SocketError) -> DriverError {
    let iface = &config.iface;
    let queue = config.queue;
    let errno = e.error.raw_os_error();
    let multi_buffer = needs_multi_buffer(mtu);
    let kind = probe::socket_failure(&e, zero_copy, multi_buffer);
    if kind == DriverErrorKind::Permission {
        return needs_privilege();
    }
    let message = match (e.step, errno) {
        (SocketStep::Create, Some(libc::EAFNOSUPPORT)) => {
            "this kernel has no AF_XDP sockets (EAFNOSUPPORT): it needs CONFIG_XDP_SOCKETS=y \
             (Linux 4.18 or later)"
                .into()
        }
        (SocketStep::RegisterUmem, Some(libc::ENOMEM | libc::ENOBUFS)) => format!(
            "cannot register the {} MiB AF_XDP UMEM: {}; raise the locked-memory limit \
             (`ulimit -l unlimited`) or lower the frame count",
            umem_mib(config),
            e.error
        ),
        // Only asked for TX metadata (`On`, `KernelSoftware`: `Auto` checked first), which a
        // kernel before 6.11 refuses as an unknown UMEM flag.
        (SocketStep::RegisterUmem, Some(libc::EINVAL))
            if matches!(
                config.tx_checksum,
                TxChecksumOffload::On | TxChecksumOffload::KernelSoftware
            ) =>
        {
            "this kernel does not take AF_XDP TX metadata (UMEM registration with \
             XDP_UMEM_TX_METADATA_LEN refused: it needs Linux 6.11 or later), so it cannot \
             offload TCP checksums: use --tx-checksum-offload auto or off"
                .into()
        }
        (SocketStep::ReadOffsets, Some(libc::ENOPROTOOPT)) => {
            "this kernel's AF_XDP rings have no flags word: it needs Linux 5.4 or later".into()
        }
        (SocketStep::Bind, Some(libc::EOPNOTSUPP)) if zero_copy => {
            format!("{iface} does not support zero-copy AF_XDP: use copy mode")
        }
        (SocketStep::Bind, Some(libc::EOPNOTSUPP | libc::EINVAL)) if multi_buffer => format!(
            "MTU {mtu} on {iface} needs AF_XDP multi-buffer support (bind with XDP_USE_SG, \
             Linux 6.6 or later), which was refused: {}; set an MTU of at most \
             {MAX_FRAME_MTU} with `ip link set dev {iface} mtu {MAX_FRAME_MTU}` (and on its \
             peer)",
            e.error
        ),
        (SocketStep::Bind, Some(libc::EBUSY)) => format!(
            "queue {queue} of {iface} is still in use by another AF_XDP socket after 1 s: \
             stop the process that holds it"
        ),
        (SocketStep::Bind, Some(libc::EINVAL)) => format!(
            "cannot bind an AF_XDP socket to queue {queue} of {iface}: {} (does the queue \
             exist? `ethtool -l {iface}` lists them)",
            e.error
        ),
        (step, _) => format!(
            "AF_XDP socket setup failed at {step:?} on {iface}: {}",
            e.error
        ),
    };
    DriverError::new(kind, message)
}

impl FrameIo for AfXdp {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        Ok(self.data_path.rx_burst(max, on_frame))
    }

    fn rx_batch(
        &mut self,
        max: usize,
        on_frames: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<usize, DriverError> {
        Ok(self.data_path.rx_batch(max, on_frames))
    }

    fn rx_pending(&self) -> bool {
        self.data_path.rx_pending()
    }

    fn tx_room(&self) -> usize {
        self.data_path.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.data_path.tx_stage(len, fill)
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.data_path.tx_flush()
    }

    fn tx_flush_lazy(&mut self) -> Result<(), DriverError> {
        self.data_path.tx_flush_lazy()
    }

    fn counters(&self) -> DriverCounters {
        self.data_path.counters()
    }

    /// Rings a kick owed by [`FrameIo::tx_flush_lazy`] first, unless the `poll()` sends the
    /// frames itself (`xsk_poll` does, up to a kick's budget).
    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        self.data_path.before_wait()?;
        if self.data_path.rx_ready() {
            return Ok(());
        }
        sys::poll_readable(self.data_path.doorbell().fd(), timeout)
            .map(|_| ())
            .map_err(|e| DriverError::io("AF_XDP poll", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// The kind and text of the error `result` must be.
    fn failure(result: Result<AfXdp, DriverError>) -> (DriverErrorKind, String) {
        match result {
            Err(e) => (e.kind(), e.to_string()),
            Ok(driver) => panic!("expected an error, opened {}", driver.mode_description()),
        }
    }

    #[test]
    fn the_driver_can_move_to_its_polling_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<AfXdp>();
    }

    #[test]
    fn bad_settings_are_refused_before_touching_the_kernel() {
        let base = AfXdpConfig::new("lo");
        let ring = AfXdpConfig {
            ring_size: 100,
            ..base.clone()
        };
        let (kind, text) = failure(AfXdp::open(ring));
        assert_eq!(kind, DriverErrorKind::InvalidConfig);
        assert!(text.contains("power of two"), "{text}");
        let frames = AfXdpConfig {
            frame_count: 16,
            ..base.clone()
        };
        let (kind, text) = failure(AfXdp::open(frames));
        assert_eq!(kind, DriverErrorKind::InvalidConfig);
        assert!(text.contains("frame count 16"), "{text}");
        let queue = AfXdpConfig {
            queue: u32::MAX,
            ..base.clone()
        };
        let (kind, text) = failure(AfXdp::open(queue));
        assert_eq!(kind, DriverErrorKind::InvalidConfig);
        assert!(text.contains("queue"), "{text}");
        let addresses = AfXdpConfig {
            filter: Filter::Server(crate::ServerAddresses {
                ipv4: None,
                ipv6: vec![std::net::Ipv6Addr::LOCALHOST; crate::MAX_SERVER_IPV6 + 1],
            }),
            ..base.clone()
        };
        let (kind, text) = failure(AfXdp::open(addresses));
        assert_eq!(kind, DriverErrorKind::InvalidConfig);
        assert!(text.contains("5 IPv6 addresses"), "{text}");
        let twice = AfXdp::open_queues(AfXdpConfig::new("lo"), &[1, 2, 1]);
        let (kind, text) = match twice {
            Err(e) => (e.kind(), e.to_string()),
            Ok(_) => panic!("a queue listed twice was accepted"),
        };
        assert_eq!(kind, DriverErrorKind::InvalidConfig);
        assert!(text.contains("queue 1 is listed twice"), "{text}");
    }

    #[test]
    fn a_missing_interface_lists_the_available_ones() {
        let (kind, text) = failure(AfXdp::open(AfXdpConfig::new("sirocco-nope0")));
        assert_eq!(kind, DriverErrorKind::NoInterface);
        assert!(
            text.starts_with("interface sirocco-nope0 not found; available: "),
            "{text}"
        );
        assert!(text.contains("lo"), "{text}");
        let (kind, text) = failure(AfXdp::open(AfXdpConfig::new("")));
        assert_eq!(kind, DriverErrorKind::NoInterface);
        assert!(text.contains("not a valid interface name"), "{text}");
    }

    #[test]
    fn attach_errors_name_the_fix() {
        let error = |mode, errno| {
            let e = attach_error("eth9", mode, 9000, io::Error::from_raw_os_error(errno));
            (e.kind(), e.to_string())
        };
        let (kind, text) = error(AttachMode::Native, libc::EBUSY);
        assert_eq!(kind, DriverErrorKind::Busy);
        assert!(text.contains("`ip link set dev eth9 xdp off`"), "{text}");
        let (kind, text) = error(AttachMode::Skb, libc::EEXIST);
        assert_eq!(kind, DriverErrorKind::Busy);
        assert!(text.contains("already attached"), "{text}");
        let (kind, mtu) = error(AttachMode::Native, libc::ERANGE);
        assert_eq!(kind, DriverErrorKind::MtuTooLarge);
        assert!(mtu.contains("MTU 9000") && mtu.contains("3506"), "{mtu}");
        let (kind, text) = error(AttachMode::Native, libc::EPERM);
        assert_eq!(kind, DriverErrorKind::Permission);
        assert!(text.contains("CAP_BPF"), "{text}");
        let (kind, text) = error(AttachMode::Native, libc::EOPNOTSUPP);
        assert_eq!(kind, DriverErrorKind::Unsupported);
        assert!(text.contains("SKB"), "{text}");
        let (kind, text) = error(AttachMode::Skb, libc::EINVAL);
        assert_eq!(kind, DriverErrorKind::Setup);
        assert!(text.contains("in SKB mode"), "{text}");
    }

    #[test]
    fn socket_errors_name_the_fix() {
        let config = AfXdpConfig::new("eth9");
        let error = |step, zero_copy, errno| {
            let e = SocketError {
                step,
                error: io::Error::from_raw_os_error(errno),
            };
            let e = socket_error(&config, zero_copy, 1500, e);
            (e.kind(), e.to_string())
        };
        let (kind, text) = error(SocketStep::Create, false, libc::EAFNOSUPPORT);
        assert_eq!(kind, DriverErrorKind::Unsupported);
        assert!(text.contains("CONFIG_XDP_SOCKETS"), "{text}");
        let (kind, text) = error(SocketStep::Create, false, libc::EPERM);
        assert_eq!(kind, DriverErrorKind::Permission);
        assert_eq!(text, NEEDS_PRIVILEGE);
        let (kind, text) = error(SocketStep::Bind, true, libc::EOPNOTSUPP);
        assert_eq!(kind, DriverErrorKind::Unsupported);
        assert!(text.contains("use copy mode"), "{text}");
        let (kind, text) = error(SocketStep::Bind, false, libc::EBUSY);
        assert_eq!(kind, DriverErrorKind::Busy);
        assert!(text.contains("queue 0 of eth9"), "{text}");
        let (kind, text) = error(SocketStep::RegisterUmem, false, libc::ENOMEM);
        assert_eq!(kind, DriverErrorKind::Setup);
        assert!(text.contains("ulimit -l"), "{text}");
        // EINVAL on registration is the TX metadata only when it was asked for.
        let (_, text) = error(SocketStep::RegisterUmem, false, libc::EINVAL);
        assert!(!text.contains("TX metadata"), "{text}");
        let asked = AfXdpConfig {
            tx_checksum: TxChecksumOffload::On,
            ..AfXdpConfig::new("eth9")
        };
        let e = SocketError {
            step: SocketStep::RegisterUmem,
            error: io::Error::from_raw_os_error(libc::EINVAL),
        };
        let text = socket_error(&asked, false, 1500, e).to_string();
        assert!(text.contains("Linux 6.11 or later"), "{text}");
        assert!(text.contains("--tx-checksum-offload auto or off"), "{text}");
        let (kind, text) = error(SocketStep::Bind, false, libc::EOPNOTSUPP);
        assert_eq!(
            kind,
            DriverErrorKind::Setup,
            "no multi-buffer asked at MTU 1500"
        );
        assert!(!text.contains("multi-buffer"), "{text}");
    }

    #[test]
    fn a_refused_multi_buffer_bind_says_the_mtu_needs_it() {
        let config = AfXdpConfig::new("eth9");
        let error = |mtu, zero_copy, errno| {
            let e = SocketError {
                step: SocketStep::Bind,
                error: io::Error::from_raw_os_error(errno),
            };
            let e = socket_error(&config, zero_copy, mtu, e);
            (e.kind(), e.to_string())
        };
        // Kernels with XDP_USE_SG but a driver without it answer EOPNOTSUPP; kernels before
        // 6.6 do not know the flag and answer EINVAL.
        for errno in [libc::EOPNOTSUPP, libc::EINVAL] {
            let (kind, text) = error(9000, false, errno);
            assert_eq!(kind, DriverErrorKind::Unsupported, "{text}");
            assert!(
                text.starts_with("MTU 9000 on eth9 needs AF_XDP multi-buffer support"),
                "{text}"
            );
            assert!(text.contains("`ip link set dev eth9 mtu 3826`"), "{text}");
        }
        // Zero-copy refused is still a zero-copy matter (Auto retries in copy mode).
        let (_, text) = error(9000, true, libc::EOPNOTSUPP);
        assert!(text.contains("use copy mode"), "{text}");
        // At 3826 one chunk holds a frame: no multi-buffer, so EINVAL is a plain bind error.
        let (kind, text) = error(MAX_FRAME_MTU, false, libc::EINVAL);
        assert_eq!(kind, DriverErrorKind::Setup);
        assert!(text.contains("does the queue exist"), "{text}");
        assert!(!needs_multi_buffer(MAX_FRAME_MTU) && needs_multi_buffer(MAX_FRAME_MTU + 1));
    }
}
