//! Spoofed SYNs: [`SynMaker`] writes them, and [`Flooded`] mixes a flood of them into what a
//! port receives, wrapping the server's end of a link.
//!
//! Each SYN comes from a random address of 198.18.0.0/15 other than the server's
//! ([`SERVER_IP`], 198.18.0.1), the fleet's ([`FIRST_CLIENT_IP`], 198.19.0.1, and the next
//! addresses the fleet may take) and the first and last of the range, from a random port and
//! with a random ISN, to port 80 of the server, from [`FLOOD_MAC`]. Its options are the ones a
//! Linux client sends (MSS 1460, SACK-permitted, timestamps with a random TSval, window scale
//! 7; window 64,240), or, with [`SynShape::HalfBare`], those on one SYN in two and none on the
//! other, as `hping3 -S` sends them. Its IPv4 and TCP checksums are right. Nobody answers the
//! SYN-ACKs: the fleet counts them as frames for no connection.
//!
//! [`Flooded`] delivers SYNs at a fixed rate in virtual time from [`Flooded::start`] on, by
//! default the line rate of 10 Gbit/s Ethernet for minimum-size frames (14,880,952 a second).
//! A receive burst delivers the frames that arrived from the link first and fills the rest of
//! the burst with due SYNs; SYNs not delivered yet stay due (a backlog), so the flood takes
//! whatever the server's loop can absorb, up to the rate. The flood ends after
//! [`FloodConfig::syns`] SYNs. Its SYNs are made inside the receive burst, so inside the time
//! the server's poll is measured.
//!
//! `sirocco-bench synflood` uses the same [`SynMaker`] with a port of its own: it makes its SYNs
//! between polls, outside the measured time, and at a fixed rate drops those that find its
//! receive ring full. The two timing models differ, so the two ports stay apart.
//!
//! This is a test instrument; it reuses one frame buffer and allocates nothing per SYN.

use std::time::Duration;

use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::FaultCounters;
use sirocco_drivers::{Capabilities, DriverCounters, DriverError, FrameIo};
use smoltcp::wire::{EthernetAddress, IpAddress, Ipv4Address, Ipv4Packet, TcpPacket, TcpSeqNumber};

use super::client::MAX_ADDRESSES as FLEET_ADDRESSES;
use super::{FIRST_CLIENT_IP, HTTP_PORT, SERVER_IP, SERVER_MAC, SimPort, SplitMix64};

/// Ethernet + IPv4 (20) + TCP with a Linux client's SYN options (40): the longest SYN a
/// [`SynMaker`] writes.
pub const SYN_LEN: usize = 14 + 20 + 40;
/// Ethernet + IPv4 (20) + TCP with no options (20).
pub const BARE_SYN_LEN: usize = 14 + 20 + 20;
/// The flood's source MAC: not the fleet's, so the fleet drops the server's answers to it.
pub const FLOOD_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x66, 0x00, 0x00, 0x01]);

/// Which options a [`SynMaker`]'s SYNs carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynShape {
    /// Every SYN has a Linux client's options: [`SYN_LEN`] bytes.
    Linux,
    /// One SYN in two (at random) has them, the other none ([`BARE_SYN_LEN`] bytes).
    HalfBare,
}

/// Writes spoofed SYNs to the server into a caller's buffer. See the module documentation.
pub struct SynMaker {
    rng: SplitMix64,
    shape: SynShape,
    /// A Linux SYN with every field the maker varies left at 0.
    template: [u8; SYN_LEN],
}

impl SynMaker {
    pub fn new(seed: u64, shape: SynShape) -> Self {
        SynMaker {
            rng: SplitMix64::new(seed),
            shape,
            template: syn_template(),
        }
    }

    /// Writes the next SYN to the start of `frame` and returns its length: [`SYN_LEN`], or
    /// [`BARE_SYN_LEN`] for one without options. `frame` must hold [`SYN_LEN`] bytes.
    pub fn write(&mut self, frame: &mut [u8]) -> usize {
        let src = self.random_source();
        let r = self.rng.next_u64();
        let port = 1024 + (r as u16 % (65535 - 1024));
        let isn = (r >> 32) as u32;
        let t = self.rng.next_u64();
        let bare = self.shape == SynShape::HalfBare && t >> 32 & 1 == 1;
        let len = if bare { BARE_SYN_LEN } else { SYN_LEN };
        let frame = &mut frame[..len];
        frame.copy_from_slice(&self.template[..len]);
        if bare {
            // IPv4 total length 40; TCP data offset 5 words.
            frame[16..18].copy_from_slice(&((BARE_SYN_LEN - 14) as u16).to_be_bytes());
            frame[34 + 12] = 5 << 4;
        } else {
            // The timestamp option's TSval: after MSS (4) and SACK-permitted (2), kind and
            // length.
            frame[34 + 20 + 8..34 + 20 + 12].copy_from_slice(&(t as u32).to_be_bytes());
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..34]);
        ip.set_src_addr(src);
        ip.set_ident(r as u16);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(&mut frame[34..]);
        tcp.set_src_port(port);
        tcp.set_seq_number(TcpSeqNumber(isn as i32));
        tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(SERVER_IP));
        len
    }

    /// A unicast address in 198.18.0.0/15 that is neither the server's nor one the fleet may
    /// use.
    fn random_source(&mut self) -> Ipv4Address {
        let base = u32::from(Ipv4Address::new(198, 18, 0, 0));
        let clients = u32::from(FIRST_CLIENT_IP);
        loop {
            let host = (self.rng.next_u64() as u32) & 0x1_ffff;
            let addr = base | host;
            let taken = addr == u32::from(SERVER_IP)
                || (clients..clients + FLEET_ADDRESSES).contains(&addr)
                || host == 0
                || host == 0x1_ffff;
            if !taken {
                return Ipv4Address::from(addr);
            }
        }
    }
}

/// A Linux SYN from [`FLOOD_MAC`] to the server's port 80, with every field a [`SynMaker`]
/// varies (source address, identification, source port, ISN, TSval, checksums) left at 0.
fn syn_template() -> [u8; SYN_LEN] {
    let mut f = [0u8; SYN_LEN];
    f[..6].copy_from_slice(SERVER_MAC.as_bytes());
    f[6..12].copy_from_slice(FLOOD_MAC.as_bytes());
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    // IPv4: version 4, 20-byte header, total length 60, DF, TTL 64, TCP.
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    f[30..34].copy_from_slice(&SERVER_IP.octets());
    // TCP: port 80, 40-byte header, SYN, window 64240; MSS 1460, SACK-permitted, timestamps,
    // NOP, window scale 7 (as Linux sends them).
    let tcp = &mut f[34..];
    tcp[2..4].copy_from_slice(&HTTP_PORT.to_be_bytes());
    tcp[12] = 10 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp[20..40].copy_from_slice(&[
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7,
    ]);
    f
}

/// 10 Gbit/s of minimum-size Ethernet frames (84 octets on the wire each, preamble and gap
/// included).
pub const TEN_GIG_LINE_RATE: u64 = 10_000_000_000 / (84 * 8);

/// What to flood with.
#[derive(Debug, Clone, Copy)]
pub struct FloodConfig {
    /// SYNs in all.
    pub syns: u64,
    /// SYNs per virtual second.
    pub rate: u64,
    pub seed: u64,
}

impl FloodConfig {
    /// `syns` SYNs at 10 GbE line rate.
    pub fn line_rate(syns: u64, seed: u64) -> Self {
        FloodConfig {
            syns,
            rate: TEN_GIG_LINE_RATE,
            seed,
        }
    }
}

/// A port that also receives a SYN flood. See the module documentation.
pub struct Flooded<D> {
    inner: D,
    clock: VirtualClock,
    config: FloodConfig,
    /// Virtual microseconds at which the flood started, once started.
    started: Option<u64>,
    delivered: u64,
    syns: SynMaker,
    frame: [u8; SYN_LEN],
}

impl<D: FrameIo> Flooded<D> {
    /// Wraps `inner`; nothing is flooded until [`Flooded::start`].
    pub fn new(inner: D, clock: &VirtualClock, config: FloodConfig) -> Self {
        Flooded {
            inner,
            clock: clock.clone(),
            config,
            started: None,
            delivered: 0,
            syns: SynMaker::new(config.seed, SynShape::HalfBare),
            frame: [0; SYN_LEN],
        }
    }

    /// Wraps `inner` with no flood at all (the other end of the link).
    pub fn none(inner: D, clock: &VirtualClock) -> Self {
        Self::new(
            inner,
            clock,
            FloodConfig {
                syns: 0,
                rate: 1,
                seed: 0,
            },
        )
    }

    /// Starts the flood now.
    pub fn start(&mut self) {
        self.started.get_or_insert(self.clock.now_micros());
    }

    /// SYNs delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn is_done(&self) -> bool {
        self.delivered >= self.config.syns
    }

    /// SYNs due by now and not delivered yet.
    fn due(&self) -> u64 {
        let Some(started) = self.started else {
            return 0;
        };
        let elapsed = u128::from(self.clock.now_micros().saturating_sub(started));
        let due = (elapsed * u128::from(self.config.rate) / 1_000_000) as u64 + 1;
        due.min(self.config.syns).saturating_sub(self.delivered)
    }
}

impl<D: FrameIo> FrameIo for Flooded<D> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        let mut n = self.inner.rx_burst(max, on_frame)?;
        let flood = self.due().min(max.saturating_sub(n) as u64);
        for _ in 0..flood {
            let len = self.syns.write(&mut self.frame);
            on_frame(&self.frame[..len]);
            self.delivered += 1;
            n += 1;
        }
        Ok(n)
    }

    fn tx_room(&self) -> usize {
        self.inner.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        self.inner.tx_stage(len, fill)
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        self.inner.tx_flush()
    }

    /// The inner port's, with the SYNs delivered counted as frames received.
    fn counters(&self) -> DriverCounters {
        let mut counters = self.inner.counters();
        counters.rx_frames += self.delivered;
        counters
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        self.inner.wait_rx(timeout)
    }
}

impl<D: SimPort> SimPort for Flooded<D> {
    fn next_arrival_micros(&self) -> Option<u64> {
        let inner = self.inner.next_arrival_micros();
        let flood = match self.started {
            Some(_) if self.due() > 0 => Some(0),
            Some(started) if !self.is_done() => {
                // When the next SYN is due.
                let next = u128::from(self.delivered) * 1_000_000 / u128::from(self.config.rate);
                Some(started + next as u64)
            }
            _ => None,
        };
        match (inner, flood) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fault_counters(&self) -> FaultCounters {
        self.inner.fault_counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetFrame, Ipv4Repr, TcpControl, TcpRepr};

    /// The SYN in `frame`, parsed with every checksum verified, and its source address.
    fn parse(frame: &[u8]) -> (Ipv4Address, TcpRepr<'_>) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.dst_addr(), SERVER_MAC);
        assert_eq!(eth.src_addr(), FLOOD_MAC);
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let caps = ChecksumCapabilities::default();
        let ip_repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!(ip_repr.dst_addr, SERVER_IP);
        assert_eq!(usize::from(ip.total_len()), frame.len() - 14);
        let tcp = TcpPacket::new_checked(&frame[34..]).unwrap();
        let src = IpAddress::Ipv4(ip_repr.src_addr);
        let repr = TcpRepr::parse(&tcp, &src, &IpAddress::Ipv4(SERVER_IP), &caps).unwrap();
        assert_eq!(repr.control, TcpControl::Syn);
        assert_eq!(repr.ack_number, None);
        assert_eq!(repr.dst_port, HTTP_PORT);
        assert!(repr.src_port >= 1024);
        assert!(repr.payload.is_empty());
        (ip_repr.src_addr, repr)
    }

    #[test]
    fn linux_syns_carry_linux_options_and_spare_the_server_and_the_fleet() {
        let mut maker = SynMaker::new(3, SynShape::Linux);
        let mut frame = [0u8; SYN_LEN];
        let fleet = u32::from(FIRST_CLIENT_IP)..u32::from(FIRST_CLIENT_IP) + FLEET_ADDRESSES;
        let mut sources = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert_eq!(maker.write(&mut frame), SYN_LEN);
            let (src, tcp) = parse(&frame);
            assert_eq!(tcp.max_seg_size, Some(1460));
            assert!(tcp.sack_permitted);
            assert_eq!(tcp.window_scale, Some(7));
            assert_eq!(tcp.window_len, 64_240);
            assert_eq!(tcp.timestamp.map(|ts| ts.tsecr), Some(0));
            let [a, b, ..] = src.octets();
            assert!(a == 198 && (18..=19).contains(&b), "{src}");
            assert_ne!(src, SERVER_IP);
            assert!(!fleet.contains(&u32::from(src)), "{src}");
            sources.insert(src);
        }
        assert!(sources.len() > 9_000, "{} sources", sources.len());
    }

    #[test]
    fn half_bare_syns_have_linux_options_or_none() {
        let mut maker = SynMaker::new(5, SynShape::HalfBare);
        let mut frame = [0u8; SYN_LEN];
        let mut bare = 0;
        for _ in 0..1000 {
            let len = maker.write(&mut frame);
            let (_, tcp) = parse(&frame[..len]);
            if len == BARE_SYN_LEN {
                bare += 1;
                assert_eq!(tcp.max_seg_size, None);
                assert!(!tcp.sack_permitted);
                assert_eq!(tcp.window_scale, None);
                assert_eq!(tcp.timestamp, None);
            } else {
                assert_eq!(len, SYN_LEN);
                assert_eq!(tcp.max_seg_size, Some(1460));
                assert!(tcp.timestamp.is_some());
            }
        }
        assert!((400..600).contains(&bare), "{bare} of 1000 bare");
    }
}
