//! sans-IO TCP/IP for sirocco, built from smoltcp "cells".
//!
//! smoltcp finds the socket for a segment by scanning its whole `SocketSet`, and its egress pass
//! visits every socket, so one big set costs O(connections) per packet. Here each connection is a
//! **cell**: one smoltcp `Interface` (`Medium::Ip`) holding one TCP socket. A flow table keyed by
//! the 4-tuple sits in front, so a segment reaches its cell in O(1), and only cells that received
//! frames, were written to by the application, or have a due deadline are polled.
//!
//! The **front end** owns layer 2 and everything that is not an established flow: it validates
//! Ethernet, ARP, IPv4, IPv6 (extension headers included), ICMP, ICMPv6 and TCP, answers ARP and
//! IPv6 neighbor solicitations for our addresses and ICMP and ICMPv6 echo, answers SYNs
//! from a SYN cache with SYN cookies behind it (a cell is taken only when the handshake
//! completes), learns each peer's MAC from its SYN, writes the Ethernet header in front of each
//! IP packet a cell emits, and answers segments for unknown flows with RST. Everything it drops
//! is counted by reason.
//!
//! # Using a [`Stack`]
//!
//! Once per loop iteration, with `now` read once:
//! 1. [`Stack::handle_frame`] for each received frame (`handle_*` = inputs);
//! 2. [`Stack::serve_ready`] to let the application read and write the sockets of the cells that
//!    became ready (new data, new buffer space, newly established, peer closed);
//! 3. [`Stack::poll_egress`] to emit what is due into a [`TxSink`] (`poll_*` = outputs);
//! 4. [`Stack::poll_at`] says when the stack next needs `poll_egress` even with no input.
//!
//! The crate does no I/O and reads no clock: time is always a parameter. It contains no
//! `unsafe` and never panics on any input.
//!
//! # Behaviour worth knowing
//!
//! - Cells are pooled: all `max_connections` cells, with their socket buffers, are built by
//!   [`Stack::new`] and reused (socket aborted and re-listened, buffers kept), so the stack
//!   allocates nothing per connection or per packet.
//! - Half-open connections take no cell (RFC 4987). A SYN is answered by the front end, which
//!   remembers the handshake in a SYN cache of `syn_cache_size` entries of under 64 bytes
//!   (`syncache.rs`) and resends the SYN-ACK on Linux's schedule (1, 3, 7, 15, 31 s) until
//!   `handshake_timeout`, when the entry is dropped without an RST, as Linux does. Every
//!   SYN-ACK's ISN is a SYN cookie (`cookie.rs`: a SipHash MAC of the 4-tuple, the peer's ISN, a
//!   64 s epoch and the options, keyed from the seeds at start), so when the cache is full a SYN
//!   is answered from the cookie alone, and a final ACK opens its connection whether or not the
//!   cache still holds it. A flood of SYNs therefore never refuses a legitimate client.
//! - A completed handshake takes a cell through smoltcp's `accept_handshake` (patch 17). When
//!   none is free, the connection idle longest between keep-alive requests
//!   ([`ConnApp::is_idle`]) is reset to make room, as nginx does; if none is idle, the
//!   handshake gets an RST (`syn_refused_full`). `max_connections_per_ip` bounds the cells of
//!   one peer address (`conn_limit_per_ip`).
//! - Blind in-window attacks (RFC 5961, smoltcp patch 18): an RST or SYN not exactly in
//!   sequence draws a challenge ACK and the connection lives; at most `challenge_ack_limit` a
//!   second go out host-wide. A segment with neither SYN, ACK nor RST for an unknown flow is
//!   dropped unanswered (RFC 9293 §3.10.7.2).
//! - Sockets run with Nagle off and no delayed ACK (see `cell.rs` for why).
//! - Loss recovery is the patched smoltcp's (`vendor/smoltcp/PATCHES.md`): SACK scoreboard and
//!   RFC 6675 recovery, NewReno without SACK, RACK-TLP, undo on D-SACK, a minimum RTO, the
//!   initial window; [`TcpTuning`] sets them for every cell. What it did is counted per stack
//!   (`tcp_retransmits`, `tcp_timeouts`, `tcp_fast_recoveries`, `tcp_loss_probes`,
//!   `tcp_spurious_recoveries`).
//! - Path MTU (RFC 1191, RFC 8201): an ICMPv4 Fragmentation Needed or ICMPv6 Packet Too Big
//!   quoting one of our segments becomes a path MTU report in the front end; if its flow is a live connection and the quoted
//!   sequence number is in flight (RFC 5927 §4.1), the connection's MSS is lowered and what it
//!   had in flight is resent at once in smaller segments, with no window reduction (smoltcp
//!   patch 19; `pmtu_lowered`). Anything else is dropped and counted (`drop_pmtu_*`). A
//!   next-hop MTU of 0 (a router older than RFC 1191) takes the plateau below the rejected
//!   length (RFC 1191 §7); an IPv6 MTU below 1280 is taken as 1280 (RFC 8201 §4).
//! - Connections with no segment from the peer for `idle_timeout` are aborted with an RST.
//! - TIME-WAIT does not hold a cell: when a connection we closed first reaches it, the cell goes
//!   back to the pool and a tombstone of a few dozen bytes stays in the flow table for
//!   `time_wait`. It ACKs a retransmitted FIN (RFC 9293 §3.10.7.4), gives a challenge ACK to an
//!   old SYN, lets a SYN above the old sequence space open a new connection, and ends on an
//!   exact RST. At most `time_wait_slots` are kept; past that the oldest is dropped early.
//! - Timers: a hierarchical timer wheel with one node per cell (`timers.rs`). Only cells that
//!   received segments, were written to, or whose deadline is due are polled; an idle
//!   connection costs nothing per loop iteration.
//! - IPv4, IPv6 or both ([`StackConfig::ipv4`], [`StackConfig::ipv6`]); with IPv6, the
//!   link-local address derived from the MAC answers too. Neighbor discovery (RFC 4861) is
//!   answered, never initiated: every frame we send answers one the peer sent, and goes back
//!   to its source MAC. Every IPv6 address is announced once by an unsolicited Neighbor
//!   Advertisement, which [`Stack::new`] stages for the first [`Stack::poll_egress`]; another
//!   node claiming one of them is counted (`ndp_address_conflicts`). IPv6 extension headers
//!   are skipped when RFC 8200 allows it, but TCP reaches a connection behind one hop-by-hop
//!   header at most (`frontend/ipv6.rs` says why).
//! - IP fragments (both families), IP protocols other than ICMP, ICMPv6 and TCP, and IPv6
//!   frames to a stack with no IPv6 address are dropped and counted (see [`StackCounters`]).
//!
//! Modules: `frontend` (L2/L3 validation, ARP, ICMP, RST, SYN-ACK; `frontend::ipv6` for IPv6,
//! NDP and ICMPv6), `flow` (flow table),
//! `syncache` (half-open connections), `cookie` (SYN cookies), `cell` (one smoltcp interface +
//! socket per connection), `timers` (the timer wheel), `tombstone` (TIME-WAIT), `reply_queue`
//! (replies made during receive), `counters`, and `stack` which joins them.

#![forbid(unsafe_code)]

mod cell;
mod cookie;
mod counters;
mod flow;
mod frontend;
mod reply_queue;
mod stack;
mod synack;
mod syncache;
mod timers;
mod tombstone;

pub use counters::StackCounters;
pub use stack::Stack;

/// A cache prefetch hint for every cache line that the `len` bytes at an address touch: it
/// must never fault and never change memory, whatever the address and length. One call per
/// range, not per line: the hook is called through a pointer. See [`Stack::set_prefetch`].
pub type Prefetch = fn(*const u8, usize);

/// Hints every cache line of `value`, up to its first `cap` bytes.
pub(crate) fn prefetch_value<T>(value: &T, cap: usize, prefetch: Prefetch) {
    let start = std::ptr::from_ref(value).cast::<u8>();
    prefetch(start, std::mem::size_of::<T>().min(cap));
}

pub use smoltcp::socket::tcp::{SharedPayload, Socket as TcpSocket, State as TcpState};
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::{EthernetAddress, IpAddress, Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

/// The link-local IPv6 address the stack serves (besides [`StackConfig::ipv6`]) for an
/// interface with this MAC: fe80::/64 with the modified EUI-64 interface identifier
/// (RFC 4291 §2.5.1 and appendix A). Exported so that a packet filter in front of the stack
/// can let the same address through.
pub fn link_local(mac: EthernetAddress) -> Ipv6Address {
    frontend::link_local(mac)
}

/// Where the stack writes outgoing frames. Implemented by the server loop over a driver.
pub trait TxSink {
    /// `true` while at least one more frame can be sent now.
    fn has_room(&self) -> bool;
    /// Lends a buffer of exactly `len` bytes to `fill`. Returns `false` (without calling `fill`)
    /// when there is no room.
    fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool;
}

/// Per-connection application state kept inside each cell. It is created once with `Default`
/// and `reset` when the cell returns to the pool, so buffers it owns can keep their capacity.
pub trait ConnApp: Default {
    fn reset(&mut self);

    /// When the application wants to be called for this connection even if no segment
    /// arrives (a request-header timeout, say). The stack reads it after every call of the
    /// application and after every egress pass of the cell, arms the cell's timer no later
    /// than it, and lends the connection to [`Stack::serve_ready`] once it is due. `None`: no
    /// wake-up wanted.
    fn wake_at(&self) -> Option<Instant> {
        None
    }

    /// `true` while the connection is idle between requests (a keep-alive connection waiting
    /// for the next one). The stack reads it after every call of the application; when a new
    /// connection finds every cell taken, the connection idle longest (with all it was sent
    /// acknowledged) is reset to make room, as nginx does when `worker_connections` run out.
    fn is_idle(&self) -> bool {
        false
    }
}

/// A ready connection, as lent to the application by [`Stack::serve_ready`].
pub struct Conn<'a, A> {
    pub socket: &'a mut TcpSocket<'static>,
    pub state: &'a mut A,
}

/// Settings for a [`Stack`]. All sizes are explicit, and all of it is allocated by
/// [`Stack::new`]: `max_connections * (rx_buffer + tx_buffer + per-cell overhead)` plus
/// `time_wait_slots` small tombstones. (Untouched buffer pages are not resident until used.)
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our MAC address: frames to other unicast MACs are dropped.
    pub mac: EthernetAddress,
    /// Our IPv4 address and its prefix, if we serve IPv4.
    pub ipv4: Option<Ipv4Cidr>,
    /// Our global (or unique local) IPv6 addresses, if we serve IPv6. The link-local address
    /// derived from `mac` (RFC 4291 §2.5.1, modified EUI-64) is added to them whenever this is
    /// not empty.
    pub ipv6: Vec<Ipv6Cidr>,
    /// The TCP port we listen on.
    pub port: u16,
    /// Hard cap on cells: established connections. Half-open ones wait in the SYN cache and
    /// take none. A handshake that completes beyond it gets an RST, unless an idle keep-alive
    /// connection can be closed to make room.
    pub max_connections: usize,
    /// Half-open connections remembered in the SYN cache (about 64 bytes each with their
    /// flow-table share). Beyond it, SYNs are answered with a SYN cookie alone.
    pub syn_cache_size: usize,
    /// At most this many connections from one peer address (nginx's `limit_conn`); `None`
    /// for no limit.
    pub max_connections_per_ip: Option<u32>,
    /// Challenge ACKs (RFC 5961) the whole stack may send per second (Linux's
    /// `tcp_challenge_ack_limit`, 1000). Each socket also sends at most one a second.
    pub challenge_ack_limit: u32,
    /// TCP receive buffer per connection, bytes.
    pub rx_buffer: usize,
    /// TCP transmit buffer (and retransmission queue) per connection, bytes: what the
    /// application copies in. Octets queued from shared buffers (`TcpSocket::send_shared`,
    /// sirocco's bodies) are sent by reference and take none of it. The default, 2 KiB, holds
    /// a few response heads; a head that does not fit waits for ACKs to free room.
    pub tx_buffer: usize,
    /// IP MTU of the link.
    pub mtu: usize,
    /// The driver verified RX checksums: the front end need not.
    pub rx_checksum_verified: bool,
    /// The driver fills in the TCP checksums of what the stack sends: the stack leaves them
    /// zero. IPv4 header, ICMP and UDP checksums are the stack's whatever this says.
    pub tx_checksum_offload: bool,
    /// A connection that has not completed its handshake within this is dropped. The default,
    /// 63 s, lets the SYN-ACK be sent on Linux's schedule (after 1, 2, 4, 8 and 16 s more) and
    /// waits the 32 s after the last, as Linux's `tcp_synack_retries = 5` does.
    pub handshake_timeout: Duration,
    /// An established connection with no segment from the peer for this long is reset. The
    /// outer bound: the application's own timers (HTTP keep-alive, 75 s) should come first.
    pub idle_timeout: Duration,
    /// How long a tombstone of a connection we closed first stays (2 MSL; Linux uses 60 s).
    pub time_wait: Duration,
    /// At most this many TIME-WAIT tombstones (about 80 bytes each with their flow-table
    /// share); when full, the oldest is dropped early. 0 keeps none.
    pub time_wait_slots: usize,
    /// TCP loss recovery and congestion settings for every connection.
    pub tcp: TcpTuning,
}

/// How connections recover from loss: the knobs Linux exposes as `rto_min`, `initcwnd`,
/// `net.ipv4.tcp_sack`, `tcp_recovery` and `tcp_early_retrans`. The defaults are Linux's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTuning {
    /// Lower bound on the retransmission timeout (RFC 6298 (2.4) says 1 s; Linux uses
    /// 200 ms, and so does this default).
    pub rto_min: Duration,
    /// Initial congestion window, in segments (RFC 6928: 10).
    pub initial_window: u16,
    /// Offer and accept selective acknowledgements (RFC 2018). Without them, loss recovery is
    /// NewReno (RFC 6582).
    pub sack: bool,
    /// RACK time-based loss detection (RFC 8985), with SACK; off, the duplicate-ACK threshold
    /// of RFC 6675.
    pub rack: bool,
    /// Tail loss probes (RFC 8985 §7), with SACK.
    pub tail_loss_probe: bool,
}

impl Default for TcpTuning {
    fn default() -> Self {
        TcpTuning {
            rto_min: Duration::from_millis(200),
            initial_window: 10,
            sack: true,
            rack: true,
            tail_loss_probe: true,
        }
    }
}

impl StackConfig {
    /// Defaults for everything but the addresses and the port: IPv4 only, on `ipv4`. Push onto
    /// [`StackConfig::ipv6`] to serve IPv6 as well, or set `ipv4` to `None` for IPv6 only.
    pub fn new(mac: EthernetAddress, ipv4: Ipv4Cidr, port: u16) -> Self {
        StackConfig {
            mac,
            ipv4: Some(ipv4),
            ipv6: Vec::new(),
            port,
            max_connections: 10_000,
            syn_cache_size: 16_384,
            max_connections_per_ip: None,
            challenge_ack_limit: 1000,
            rx_buffer: 2 * 1024,
            tx_buffer: 2 * 1024,
            mtu: 1500,
            rx_checksum_verified: false,
            tx_checksum_offload: false,
            handshake_timeout: Duration::from_secs(63),
            idle_timeout: Duration::from_secs(120),
            time_wait: Duration::from_secs(60),
            time_wait_slots: 65_536,
            tcp: TcpTuning::default(),
        }
    }
}

/// Errors in a [`StackConfig`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("max_connections must be at least 1")]
    NoConnections,
    #[error("MTU {0} is outside 576..=9000")]
    Mtu(usize),
    #[error("{which} buffer of {size} bytes is too small (at least {min})")]
    Buffer {
        which: &'static str,
        size: usize,
        min: usize,
    },
    #[error("max_connections {0} is over 2^31")]
    TooManyConnections(usize),
    #[error("time_wait_slots {0} is over 2^31")]
    TooManyTombstones(usize),
    #[error("{which} buffer of {size} bytes is too large (at most {max})")]
    BufferTooLarge {
        which: &'static str,
        size: usize,
        max: usize,
    },
    #[error("port must not be 0")]
    Port,
    #[error("IPv4 address {0} is not a unicast host address")]
    Ipv4NotUnicast(Ipv4Address),
    #[error("IPv6 address {0} is not a global or unique-local unicast address")]
    Ipv6NotUnicast(Ipv6Address),
    #[error("at most {max} IPv6 addresses may be served, not {count}")]
    TooManyIpv6 { count: usize, max: usize },
    #[error("no address to serve: give an IPv4 or an IPv6 address")]
    NoAddress,
    #[error("MAC address {0} is not a unicast address")]
    MacNotUnicast(EthernetAddress),
    #[error("minimum RTO {0} is outside 1 ms..=60 s")]
    RtoMin(Duration),
    #[error("initial window of {0} segments is outside 1..=1000")]
    InitialWindow(u16),
    #[error("syn_cache_size {0} is over 2^31")]
    SynCacheTooLarge(usize),
    #[error("max_connections_per_ip must be at least 1")]
    NoConnectionsPerIp,
}
