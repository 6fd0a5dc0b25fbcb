//! A SYN flood from spoofed sources, mixed into what a port receives: [`Flooded`] wraps the
//! server's end of a link.
//!
//! Each SYN comes from a random address of 198.18.128.0/17 (the client fleet lives in
//! 198.19.0.0/16, the server at 198.18.0.1), a random port and a random ISN, with the options a
//! Linux client sends (MSS, SACK-permitted, window scale) on one SYN in two and none on the
//! other, as `hping3 -S` sends them. Nobody answers the SYN-ACKs: the fleet counts them as
//! frames for no connection.
//!
//! SYNs are due at a fixed rate in virtual time from [`Flooded::start`] on, by default the line
//! rate of 10 Gbit/s Ethernet for minimum-size frames (14,880,952 a second). A receive burst
//! delivers the frames that arrived from the link first and fills the rest of the burst with due
//! SYNs; SYNs not delivered yet stay due (a backlog), so the flood takes whatever the server's
//! loop can absorb, up to the rate. The flood ends after [`FloodConfig::syns`] SYNs.
//!
//! This is a test instrument; it reuses one frame buffer and allocates nothing per SYN.

use std::time::Duration;

use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::FaultCounters;
use sirocco_drivers::{Capabilities, DriverCounters, DriverError, FrameIo};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::{HTTP_PORT, SERVER_IP, SERVER_MAC, SimPort, SplitMix64};

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
    rng: SplitMix64,
    frame: Vec<u8>,
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
            rng: SplitMix64::new(config.seed),
            frame: vec![0; 14 + 20 + 40],
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

    pub fn inner(&self) -> &D {
        &self.inner
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

    /// Builds the next SYN into `self.frame`; returns its length.
    fn next_syn(&mut self) -> usize {
        let r = self.rng.next_u64();
        let src = Ipv4Address::new(198, 18, 128 | (r >> 8) as u8 & 0x7f, r as u8);
        let with_options = r >> 16 & 1 == 1;
        let tcp = TcpRepr {
            src_port: 1024 + (r >> 17) as u16 % 64_000,
            dst_port: HTTP_PORT,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber((r >> 32) as i32),
            ack_number: None,
            window_len: 64_240,
            window_scale: with_options.then_some(7),
            max_seg_size: with_options.then_some(1460),
            sack_permitted: with_options,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: SERVER_IP,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let len = 14 + ip.buffer_len() + tcp.buffer_len();
        let caps = ChecksumCapabilities::default();
        let frame = &mut self.frame[..len];
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(SERVER_MAC);
        eth.set_src_addr(EthernetAddress([0x02, 0xf1, 0x00, 0x00, 0x00, 0x01]));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..34]), &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut frame[34..]),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(SERVER_IP),
            &caps,
        );
        len
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
            let len = self.next_syn();
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
