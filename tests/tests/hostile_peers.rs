//! Peers that try to hold a connection for ever, against the real server on the virtual clock.
//!
//! The peer here is not a TCP stack but a script of hand-made segments over the memory link,
//! so it can do what a well-behaved stack never does: send only TCP keepalive probes, ACK the
//! data but never the FIN, keep sending after the server has closed, never close. Each test
//! asserts *when* the server let go, in virtual time, within one timer granularity:
//! - the HTTP keep-alive timeout (`keepalive_timeout`, 75 s by default) runs from the end of
//!   the last response, or from the handshake, and segments without data do not restart it
//!   (the stack's idle timeout, which every segment restarts, never fires here);
//! - a connection the server has closed reads and drops its input, so its window never closes,
//!   and is reset within nginx's lingering bounds (`lingering_time` 30 s, `lingering_timeout`
//!   5 s) if the peer does not finish;
//! - a well-behaved keep-alive client still gets its answer at 70 s, and sees the FIN at 75 s.

use sirocco::server::Server;
use sirocco_drivers::FrameIo;
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::memory::{MemoryLink, MemoryPort};
use sirocco_netstack::Duration;
use sirocco_tests::TestTree;
use sirocco_tools::sim::event_loop::{self, Parties, Tick};
use sirocco_tools::sim::{
    FIRST_CLIENT_IP, HTTP_PORT, SERVER_IP, SERVER_MAC, SimConfig, sim_server,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 198, 19, 0, 1]);
const PEER_PORT: u16 = 40_000;
const PEER_ISS: u32 = 0x1000_0000;
/// How late a timer may be seen to fire: the netstack's wheel rounds deadlines up to the next
/// millisecond, then come a re-poll and a link latency (10 µs) or two.
const GRANULARITY_US: u64 = 2_000;
const SEC: u64 = 1_000_000;

/// A segment from the server, as the peer received it.
#[derive(Debug, Clone)]
struct Seen {
    at_us: u64,
    seq: u32,
    fin: bool,
    rst: bool,
    window: u16,
    len: usize,
}

/// How the peer answers what the server sends.
#[derive(Debug, Clone, Copy)]
struct Manners {
    /// Acknowledge the server's data as it arrives.
    ack_data: bool,
    /// Acknowledge the server's FIN.
    ack_fin: bool,
    /// Send our own FIN as soon as the server's arrives (a browser's idle socket does).
    close_on_fin: bool,
}

const KERNEL_NO_APP: Manners = Manners {
    ack_data: true,
    ack_fin: true,
    close_on_fin: false,
};
const BROWSER: Manners = Manners {
    ack_data: true,
    ack_fin: true,
    close_on_fin: true,
};

/// The server on one end of a memory link and the scripted peer on the other.
struct Bench {
    tree: TestTree,
    clock: VirtualClock,
    server: Server<MemoryPort>,
    port: MemoryPort,
    manners: Manners,
    /// Our next sequence number; the server's next one we expect, and the one we acknowledge
    /// (behind it when `manners` say not to acknowledge).
    snd_nxt: u32,
    rcv_nxt: u32,
    ack_nxt: u32,
    /// The window the server last advertised.
    server_window: u16,
    /// The server's data, in order.
    received: Vec<u8>,
    seen: Vec<Seen>,
    /// When the handshake completed at the server (our ACK's arrival).
    established_us: u64,
    /// 1-byte zero-window probes we had to send.
    window_probes: u64,
}

impl Bench {
    fn new(manners: Manners, adjust: impl FnOnce(&mut SimConfig)) -> Bench {
        let tree = TestTree::standard();
        let mut config = SimConfig::new(0x1105_711e, 1);
        adjust(&mut config);
        let clock = VirtualClock::new();
        let (server_port, port) = MemoryLink::pair(config.link, clock.clone());
        let server = sim_server(server_port, tree.cache(), &config).expect("build the server");
        Bench {
            tree,
            clock,
            server,
            port,
            manners,
            snd_nxt: PEER_ISS,
            rcv_nxt: 0,
            ack_nxt: 0,
            server_window: 0,
            received: Vec::new(),
            seen: Vec::new(),
            established_us: 0,
            window_probes: 0,
        }
    }

    fn now_us(&self) -> u64 {
        self.clock.now_micros()
    }

    fn connections(&self) -> usize {
        self.server.stats().connections
    }

    /// SYN, SYN-ACK, ACK.
    fn connect(&mut self) {
        self.transmit(TcpControl::Syn, PEER_ISS, None, &[]);
        self.snd_nxt = PEER_ISS.wrapping_add(1);
        self.run_for(SEC / 100);
        let synack = self.seen.first().expect("a SYN-ACK").clone();
        assert!(!synack.rst, "the server refused the connection");
        assert_eq!(self.connections(), 1);
    }

    /// Sends `data` in order, as one segment.
    fn send(&mut self, data: &[u8]) {
        self.transmit(TcpControl::Psh, self.snd_nxt, Some(self.ack_nxt), data);
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
    }

    /// A TCP keepalive probe, as Linux sends it: SEG.SEQ = SND.NXT - 1, no data.
    fn keepalive_probe(&mut self) {
        let seq = self.snd_nxt.wrapping_sub(1);
        self.transmit(TcpControl::None, seq, Some(self.ack_nxt), &[]);
    }

    /// Data as far as the server's window allows (at most `len`), or a 1-byte zero-window
    /// probe when the window is closed: what a client with unsent data does.
    fn push_data(&mut self, len: usize) {
        if self.server_window == 0 {
            self.window_probes += 1;
            self.transmit(TcpControl::None, self.snd_nxt, Some(self.ack_nxt), b"x");
        } else {
            let n = len.min(usize::from(self.server_window));
            self.send(&vec![b'x'; n]);
        }
    }

    fn transmit(&mut self, control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]) {
        let repr = TcpRepr {
            src_port: PEER_PORT,
            dst_port: HTTP_PORT,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 65_535,
            window_scale: None,
            max_seg_size: (control == TcpControl::Syn).then_some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: FIRST_CLIENT_IP,
            dst_addr: SERVER_IP,
            next_header: IpProtocol::Tcp,
            payload_len: repr.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: PEER_MAC,
            dst_addr: SERVER_MAC,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = vec![0u8; eth.buffer_len() + ip.buffer_len() + repr.buffer_len()];
        let checksums = ChecksumCapabilities::default();
        let mut eth_frame = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut eth_frame);
        let mut ip_packet = Ipv4Packet::new_unchecked(eth_frame.payload_mut());
        ip.emit(&mut ip_packet, &checksums);
        repr.emit(
            &mut TcpPacket::new_unchecked(ip_packet.payload_mut()),
            &IpAddress::Ipv4(FIRST_CLIENT_IP),
            &IpAddress::Ipv4(SERVER_IP),
            &checksums,
        );
        assert!(
            self.port
                .tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(&frame)),
            "the link refused a frame"
        );
        self.port.tx_flush().expect("flush the peer's port");
    }

    /// A frame from the server: record it, follow its sequence space, answer as `manners` say.
    fn on_frame(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return;
        };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
            return;
        };
        assert_eq!(tcp.dst_port(), PEER_PORT);
        let seen = Seen {
            at_us: self.now_us(),
            seq: tcp.seq_number().0 as u32,
            fin: tcp.fin(),
            rst: tcp.rst(),
            window: tcp.window_len(),
            len: tcp.payload().len(),
        };
        self.seen.push(seen.clone());
        if seen.rst {
            return;
        }
        self.server_window = seen.window;
        let mut answer = false;
        if tcp.syn() {
            self.rcv_nxt = seen.seq.wrapping_add(1);
            self.ack_nxt = self.rcv_nxt;
            // Our ACK reaches the server one link latency from now.
            self.established_us = self.now_us() + 10;
            answer = true;
        } else if seen.seq == self.rcv_nxt && (seen.len > 0 || seen.fin) {
            self.received.extend_from_slice(tcp.payload());
            self.rcv_nxt = self.rcv_nxt.wrapping_add(seen.len as u32);
            if self.manners.ack_data && seen.len > 0 {
                self.ack_nxt = self.rcv_nxt;
                answer = true;
            }
            if seen.fin {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                if self.manners.ack_fin {
                    self.ack_nxt = self.rcv_nxt;
                    answer = true;
                }
            }
        } else if seen.len > 0 || seen.fin {
            // A retransmission of something we already have.
            answer = self.manners.ack_data;
        }
        if seen.fin && self.manners.close_on_fin {
            self.transmit(TcpControl::Fin, self.snd_nxt, Some(self.ack_nxt), &[]);
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
        } else if answer {
            self.transmit(TcpControl::None, self.snd_nxt, Some(self.ack_nxt), &[]);
        }
    }

    /// Runs the server and the peer's answers until virtual time `until_us`, jumping the
    /// clock from event to event (the simulation's loop, [`event_loop::tick`]).
    fn run_to(&mut self, until_us: u64) {
        for _ in 0..1_000_000 {
            match event_loop::tick(self, until_us) {
                Ok(Tick::Moved | Tick::Jumped | Tick::Finished) => {}
                Ok(Tick::Stalled | Tick::PastDeadline) if self.now_us() >= until_us => return,
                Ok(Tick::Stalled | Tick::PastDeadline) => self.clock.set_micros(until_us),
                Err(never) => match never {},
            }
        }
        panic!("the simulation did not reach {until_us} us");
    }

    fn run_for(&mut self, micros: u64) {
        self.run_to(self.now_us() + micros);
    }

    /// When the server first sent a FIN, and an RST.
    fn fin_at(&self) -> Option<u64> {
        self.seen.iter().find(|s| s.fin).map(|s| s.at_us)
    }

    fn rst_at(&self) -> Option<u64> {
        self.seen.iter().find(|s| s.rst).map(|s| s.at_us)
    }

    /// Segments the server sent from `from_us` on, resets aside, that advertised a zero window.
    fn zero_windows_since(&self, from_us: u64) -> Vec<Seen> {
        self.seen
            .iter()
            .filter(|s| s.at_us >= from_us && !s.rst && s.window == 0)
            .cloned()
            .collect()
    }

    fn http(&self) -> sirocco::http::HttpCounters {
        self.server.stats().http
    }
}

/// The server and the scripted peer, on the bench's clock.
impl Parties for Bench {
    type Error = std::convert::Infallible;

    fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    fn poll(&mut self, now: u64) -> Result<bool, Self::Error> {
        let moved = self
            .server
            .poll(event_loop::instant(now))
            .expect("server poll");
        let mut frames = Vec::new();
        self.port
            .rx_burst(64, &mut |frame| frames.push(frame.to_vec()))
            .expect("peer receive");
        let got = !frames.is_empty();
        for frame in frames {
            self.on_frame(&frame);
        }
        Ok(moved || got)
    }

    fn next_event_micros(&self) -> Option<u64> {
        [
            self.server.poll_at().map(event_loop::micros),
            self.server.driver().next_arrival_micros(),
            self.port.next_arrival_micros(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// `at` is `expected` or up to one timer granularity later.
fn assert_on_time(what: &str, at: Option<u64>, expected: u64) {
    let at = at.unwrap_or_else(|| panic!("{what}: never happened"));
    assert!(
        (expected..=expected + GRANULARITY_US).contains(&at),
        "{what} at {:.6} s, expected {:.6} s (+{} ms at most)",
        at as f64 / 1e6,
        expected as f64 / 1e6,
        GRANULARITY_US / 1000
    );
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: sirocco.test\r\n\r\n").into_bytes()
}

/// A peer that completes the handshake and then sends only keepalive probes every 10 s, and
/// ACKs our FIN like a kernel whose application never closes: FIN at the keep-alive timeout,
/// reset `lingering_timeout` later, and the cell is free.
fn probes_only(keepalive: Option<u64>) {
    let mut bench = Bench::new(KERNEL_NO_APP, |config| {
        if let Some(secs) = keepalive {
            config.server.http.keepalive_timeout = Duration::from_secs(secs);
        }
    });
    let keepalive_us = keepalive.unwrap_or(75) * SEC;
    bench.connect();
    let start = bench.established_us;
    let mut t = start;
    while bench.connections() > 0 && t < start + 200 * SEC {
        t += 10 * SEC;
        bench.run_to(t);
        bench.keepalive_probe();
    }
    bench.run_for(SEC);
    assert_on_time("the FIN", bench.fin_at(), start + keepalive_us);
    assert_on_time("the reset", bench.rst_at(), start + keepalive_us + 5 * SEC);
    assert_eq!(bench.connections(), 0);
    let http = bench.http();
    assert_eq!((http.keepalive_timeouts, http.lingering_aborts), (1, 1));
    assert_eq!(http.requests, 0);
    // The stack's idle timeout (60 s), restarted by every probe, had no part in it.
    assert_eq!(bench.server.stats().stack.idle_timeouts, 0);
    assert!(bench.received.is_empty());
}

#[test]
fn keepalive_probes_do_not_hold_a_connection_past_the_default_keepalive_timeout() {
    probes_only(None);
}

#[test]
fn keepalive_probes_do_not_hold_a_connection_past_a_configured_keepalive_timeout() {
    probes_only(Some(22));
}

/// A bad request, then data every 200 ms for ever, never our FIN acknowledged (or nothing at
/// all acknowledged), never a FIN of its own.
fn bad_request_then_flood(manners: Manners, adjust: impl FnOnce(&mut SimConfig)) -> Bench {
    let mut bench = Bench::new(manners, adjust);
    bench.connect();
    bench.send(b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n");
    bench.run_for(SEC / 100);
    let text = String::from_utf8_lossy(&bench.received).into_owned();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(bench.fin_at().is_some(), "no FIN after the 400");
    while bench.connections() > 0 && bench.now_us() < 200 * SEC {
        bench.push_data(1000);
        bench.run_for(SEC / 5);
    }
    bench
}

#[test]
fn a_peer_that_keeps_sending_after_a_400_is_reset_at_the_lingering_time() {
    let hostile = Manners {
        ack_data: true,
        ack_fin: false,
        close_on_fin: false,
    };
    let bench = bad_request_then_flood(hostile, |_| {});
    let closed = bench.fin_at().expect("a FIN");
    // The 400 is acknowledged at once, so lingering starts at the close; the input keeps the
    // 5 s quiet rule from firing, and the 30 s bound ends it.
    assert_on_time("the reset", bench.rst_at(), closed + 30 * SEC);
    assert_eq!(bench.connections(), 0);
    let zero = bench.zero_windows_since(closed);
    assert!(zero.is_empty(), "zero windows while lingering: {zero:?}");
    assert_eq!(bench.window_probes, 0);
    let http = bench.http();
    assert_eq!((http.parse_errors, http.lingering_aborts), (1, 1));
    // Everything it sent was read: about 5 KB a second for 30 s.
    let data_acked = bench.snd_nxt.wrapping_sub(PEER_ISS) as u64;
    assert!(data_acked > 100_000, "only {data_acked} bytes sent");
}

#[test]
fn a_peer_that_acknowledges_nothing_after_a_400_is_reset_at_the_lingering_time() {
    let deaf = Manners {
        ack_data: false,
        ack_fin: false,
        close_on_fin: false,
    };
    let bench = bad_request_then_flood(deaf, |_| {});
    let closed = bench.fin_at().expect("a FIN");
    // The 400 is never acknowledged: no progress for `lingering_time` ends it.
    assert_on_time("the reset", bench.rst_at(), closed + 30 * SEC);
    assert_eq!(bench.connections(), 0);
    assert!(bench.zero_windows_since(closed).is_empty());
    assert_eq!(bench.http().lingering_aborts, 1);
}

#[test]
fn a_peer_that_goes_quiet_after_the_close_is_reset_at_the_configured_lingering_timeout() {
    let mut bench = Bench::new(KERNEL_NO_APP, |config| {
        config.server.http.lingering_time = Duration::from_secs(12);
        config.server.http.lingering_timeout = Duration::from_secs(2);
    });
    bench.connect();
    let close = b"GET /file-512.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    bench.send(close);
    bench.run_for(SEC / 100);
    let closed = bench.fin_at().expect("a FIN after Connection: close");
    // Data for 5 s (every 200 ms), then only keepalive probes, which are not input.
    let mut last_data = 0;
    while bench.now_us() < closed + 5 * SEC {
        bench.push_data(700);
        last_data = bench.now_us();
        bench.run_for(SEC / 5);
    }
    while bench.connections() > 0 && bench.now_us() < closed + 60 * SEC {
        bench.keepalive_probe();
        bench.run_for(SEC / 2);
    }
    assert_on_time("the reset", bench.rst_at(), last_data + 10 + 2 * SEC);
    assert_eq!(bench.connections(), 0);
    assert!(bench.zero_windows_since(closed).is_empty());
    let http = bench.http();
    assert_eq!(
        (
            http.responses_2xx,
            http.keepalive_timeouts,
            http.lingering_aborts
        ),
        (1, 0, 1)
    );
}

/// A browser-like client: one request, then the next one `gap` seconds after its response
/// arrived, sending TCP keepalive probes every `probe_every` seconds meanwhile (Chromium does,
/// every 45 s); it closes its side as soon as the server's FIN comes.
fn second_request_after(gap: u64, probe_every: Option<u64>, adjust: impl FnOnce(&mut SimConfig)) {
    let mut bench = Bench::new(BROWSER, adjust);
    let body = bench.tree.body("/file-512.bin");
    bench.connect();
    bench.send(&get("/file-512.bin"));
    bench.run_for(SEC / 100);
    assert!(bench.received.ends_with(&body), "first answer incomplete");
    let answered = bench.seen.last().expect("the answer").at_us;
    let first_len = bench.received.len();
    let mut t = answered;
    if let Some(every) = probe_every {
        while t + every * SEC < answered + gap * SEC {
            t += every * SEC;
            bench.run_to(t);
            bench.keepalive_probe();
        }
    }
    bench.run_to(answered + gap * SEC);
    if bench.fin_at().is_none() {
        bench.send(&get("/file-512.bin"));
    }
    bench.run_for(SEC);
    let http = bench.http();
    if gap < 75 {
        assert_eq!(bench.fin_at(), None);
        assert_eq!(bench.rst_at(), None);
        assert_eq!(http.responses_2xx, 2);
        assert!(bench.received[first_len..].ends_with(&body));
        assert!(bench.received[first_len..].starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(bench.connections(), 1);
        assert_eq!(http.keepalive_timeouts, 0);
    } else {
        // The FIN came 75 s after the last byte of the answer went out (it arrived 10 µs
        // later), and the client, closing at once, ended the connection cleanly.
        assert_on_time("the FIN", bench.fin_at(), answered - 10 + 75 * SEC);
        assert_eq!(bench.rst_at(), None);
        assert_eq!(bench.received.len(), first_len);
        assert_eq!(http.responses_2xx, 1);
        assert_eq!(bench.connections(), 0);
        assert_eq!((http.keepalive_timeouts, http.lingering_aborts), (1, 0));
    }
}

#[test]
fn a_keep_alive_client_that_comes_back_after_70_s_is_served() {
    second_request_after(70, Some(45), |_| {});
}

#[test]
fn a_silent_keep_alive_client_that_comes_back_after_70_s_is_served_below_the_idle_timeout() {
    // Silent for 70 s: only with the stack's idle timeout (60 s by default) above that.
    second_request_after(70, None, |config| {
        config.server.stack.idle_timeout = Duration::from_secs(120);
    });
}

#[test]
fn a_keep_alive_client_that_comes_back_after_80_s_finds_the_connection_closed() {
    second_request_after(80, Some(45), |_| {});
}
