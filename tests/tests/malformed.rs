//! Malformed input at every layer, injected into the server through the memory link while a
//! well-behaved client fetches files.
//!
//! The server must count each bad frame under its drop reason, answer what TCP says to answer
//! (RST for closed ports and unknown flows, 400 for garbage HTTP), never panic, and keep
//! serving the valid client byte-exact throughout.

use sirocco_drivers::FrameIo;
use sirocco_drivers::memory::FaultConfig;
use sirocco_netstack::StackCounters;
use sirocco_tests::{TestTree, assert_all_ok, run_to_completion};
use sirocco_tools::sim::{
    FIRST_CLIENT_IP, HTTP_PORT, Limits, Mode, Request, SERVER_IP, SERVER_MAC, Script, SimConfig,
    Simulation, SplitMix64,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

/// A client port the fleet never uses (it allocates from 1024 up).
const PROBE_PORT: u16 = 999;

fn client_mac(sim: &Simulation) -> EthernetAddress {
    sim.fleet().config().client_mac
}

fn ethernet(src: EthernetAddress, dst: EthernetAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::from(ethertype),
    };
    let mut frame = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut frame));
    frame[repr.buffer_len()..].copy_from_slice(payload);
    frame
}

fn ipv4(src: Ipv4Address, dst: Ipv4Address, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len: payload.len(),
        hop_limit: 64,
    };
    let mut packet = vec![0u8; repr.buffer_len() + payload.len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut packet),
        &ChecksumCapabilities::default(),
    );
    packet[repr.buffer_len()..].copy_from_slice(payload);
    packet
}

/// A TCP segment from `FIRST_CLIENT_IP:src_port` to the server, checksummed.
fn tcp(
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port,
        dst_port,
        control,
        seq_number: TcpSeqNumber(1000),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 8192,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut segment),
        &IpAddress::Ipv4(FIRST_CLIENT_IP),
        &IpAddress::Ipv4(SERVER_IP),
        &ChecksumCapabilities::default(),
    );
    segment
}

/// A whole frame from the fleet's MAC and first address to the server.
fn to_server(mac: EthernetAddress, protocol: IpProtocol, l4: &[u8]) -> Vec<u8> {
    ethernet(
        mac,
        SERVER_MAC,
        0x0800,
        &ipv4(FIRST_CLIENT_IP, SERVER_IP, protocol, l4),
    )
}

/// Puts `frame` on the wire toward the server, as if the clients had sent it.
fn inject(sim: &mut Simulation, frame: &[u8]) {
    let port = sim.fleet_mut().driver_mut();
    assert!(
        port.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame)),
        "the link refused a {}-byte frame",
        frame.len()
    );
    port.tx_flush().expect("flush the memory port");
}

/// Lets the simulation run a little (frames cross the link, the server answers).
fn run_a_bit(sim: &mut Simulation) {
    sim.run_steps(20, 200).expect("simulation step");
}

/// A simulation of the standard tree with `scripts`, keeping frames that match no client.
fn simulation(tree: &TestTree, seed: u64, scripts: Vec<Script>) -> Simulation {
    let mut config = SimConfig::new(seed, scripts.len() + 4);
    config.fleet.keep_unmatched = 1000;
    tree.simulation(config, scripts)
}

/// The valid client: everything over keep-alive, and everything again one connection each.
fn valid_scripts(tree: &TestTree) -> Vec<Script> {
    vec![
        Script::each(tree.get_all(), Mode::KeepAlive { pipeline: 1 }),
        Script::each(tree.get_small(), Mode::NewConnection),
    ]
}

type Counter = fn(&StackCounters) -> u64;

#[test]
fn malformed_frames_at_every_layer_are_dropped_by_reason_while_files_stay_byte_exact() {
    let tree = TestTree::standard();
    let scripts = valid_scripts(&tree);
    let expected = (tree.get_all().len() + tree.get_small().len()) as u64;
    let mut sim = simulation(&tree, 31, scripts);
    let mac = client_mac(&sim);
    let syn = tcp(PROBE_PORT, HTTP_PORT, TcpControl::Syn, None, &[]);
    let valid_ip = ipv4(FIRST_CLIENT_IP, SERVER_IP, IpProtocol::Tcp, &syn);

    let mut bad_ip_checksum = valid_ip.clone();
    bad_ip_checksum[10] ^= 0xff;
    let mut bad_total_len = valid_ip.clone();
    bad_total_len[2..4].copy_from_slice(&2000u16.to_be_bytes());
    let mut short_total_len = valid_ip.clone();
    short_total_len[2..4].copy_from_slice(&10u16.to_be_bytes());
    let mut bad_version = valid_ip.clone();
    bad_version[0] = 0x65;
    let mut fragment = ipv4(FIRST_CLIENT_IP, SERVER_IP, IpProtocol::Tcp, &syn);
    {
        let mut packet = Ipv4Packet::new_unchecked(&mut fragment);
        packet.set_more_frags(true);
        packet.fill_checksum();
    }
    let mut bad_tcp_checksum = syn.clone();
    bad_tcp_checksum[16] ^= 0x55;
    let mut bad_data_offset = syn.clone();
    bad_data_offset[12] = 0xf0; // 60-byte header in a 20-byte segment

    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        ("truncated Ethernet header", vec![0xff; 9], |c| {
            c.drop_eth_truncated
        }),
        ("empty frame", Vec::new(), |c| c.drop_eth_truncated),
        (
            "unicast to another MAC",
            ethernet(mac, EthernetAddress([2, 9, 9, 9, 9, 9]), 0x0800, &valid_ip),
            |c| c.drop_eth_not_for_us,
        ),
        (
            "unknown ethertype",
            ethernet(mac, SERVER_MAC, 0x88b5, &[1, 2, 3, 4]),
            |c| c.drop_ethertype_unknown,
        ),
        (
            "VLAN tag",
            ethernet(mac, SERVER_MAC, 0x8100, &[0, 5, 8, 0]),
            |c| c.drop_ethertype_unknown,
        ),
        (
            "IPv6",
            ethernet(mac, SERVER_MAC, 0x86dd, &[0x60; 40]),
            |c| c.drop_ipv6,
        ),
        (
            "truncated ARP",
            ethernet(mac, EthernetAddress::BROADCAST, 0x0806, &[0, 1, 8, 0]),
            |c| c.drop_arp_malformed,
        ),
        (
            "truncated IPv4 header",
            ethernet(mac, SERVER_MAC, 0x0800, &valid_ip[..12]),
            |c| c.drop_ipv4_malformed,
        ),
        (
            "IPv4 total length past the frame",
            ethernet(mac, SERVER_MAC, 0x0800, &bad_total_len),
            |c| c.drop_ipv4_malformed,
        ),
        (
            "IPv4 total length shorter than the header",
            ethernet(mac, SERVER_MAC, 0x0800, &short_total_len),
            |c| c.drop_ipv4_malformed,
        ),
        (
            "IP version 6 under the IPv4 ethertype",
            ethernet(mac, SERVER_MAC, 0x0800, &bad_version),
            |c| c.drop_ipv4_malformed,
        ),
        (
            "bad IPv4 checksum",
            ethernet(mac, SERVER_MAC, 0x0800, &bad_ip_checksum),
            |c| c.drop_ipv4_checksum,
        ),
        (
            "IPv4 fragment",
            ethernet(mac, SERVER_MAC, 0x0800, &fragment),
            |c| c.drop_ipv4_fragment,
        ),
        (
            "IPv4 for another host",
            ethernet(
                mac,
                SERVER_MAC,
                0x0800,
                &ipv4(
                    FIRST_CLIENT_IP,
                    Ipv4Address::new(198, 18, 0, 99),
                    IpProtocol::Tcp,
                    &syn,
                ),
            ),
            |c| c.drop_ipv4_not_for_us,
        ),
        (
            "broadcast source address",
            ethernet(
                mac,
                SERVER_MAC,
                0x0800,
                &ipv4(Ipv4Address::BROADCAST, SERVER_IP, IpProtocol::Tcp, &syn),
            ),
            |c| c.drop_ipv4_bad_source,
        ),
        (
            "unknown IP protocol",
            to_server(mac, IpProtocol::Unknown(253), &[0; 8]),
            |c| c.drop_ip_protocol_unknown,
        ),
        (
            "truncated ICMP",
            to_server(mac, IpProtocol::Icmp, &[8]),
            |c| c.drop_icmp_malformed,
        ),
        (
            "truncated TCP header",
            to_server(mac, IpProtocol::Tcp, &syn[..8]),
            |c| c.drop_tcp_malformed,
        ),
        (
            "TCP data offset past the segment",
            to_server(mac, IpProtocol::Tcp, &bad_data_offset),
            |c| c.drop_tcp_malformed,
        ),
        (
            "bad TCP checksum",
            to_server(mac, IpProtocol::Tcp, &bad_tcp_checksum),
            |c| c.drop_tcp_checksum,
        ),
        (
            "SYN to a closed port",
            to_server(
                mac,
                IpProtocol::Tcp,
                &tcp(PROBE_PORT, 81, TcpControl::Syn, None, &[]),
            ),
            |c| c.drop_tcp_port_closed,
        ),
        (
            "ACK for no connection",
            to_server(
                mac,
                IpProtocol::Tcp,
                &tcp(
                    PROBE_PORT - 1,
                    HTTP_PORT,
                    TcpControl::None,
                    Some(5),
                    b"GET /",
                ),
            ),
            |c| c.drop_tcp_no_flow,
        ),
    ];

    run_a_bit(&mut sim);
    let mut unmoved = Vec::new();
    for (name, frame, counter) in &cases {
        let before = sim.server().stats().stack;
        inject(&mut sim, frame);
        run_a_bit(&mut sim);
        let after = sim.server().stats().stack;
        if counter(&after) <= counter(&before) {
            unmoved.push(format!("{name}: {before:?} -> {after:?}"));
        }
        assert!(
            after.total_dropped() > before.total_dropped(),
            "{name} was not counted as dropped"
        );
    }
    assert!(
        unmoved.is_empty(),
        "counters that did not move:\n{}",
        unmoved.join("\n")
    );

    let report = run_to_completion(&mut sim, Limits::secs(120));
    assert_all_ok(&report, expected);
    assert_eq!(report.fleet.resets, 0, "{report}");
    assert_eq!(report.server.http.requests, expected, "{report}");
    assert!(
        report.server.stack.total_dropped() >= cases.len() as u64,
        "{report}"
    );
}

#[test]
fn tcp_to_a_closed_port_or_an_unknown_flow_draws_an_rst() {
    let tree = TestTree::standard();
    let mut sim = simulation(&tree, 32, valid_scripts(&tree));
    let mac = client_mac(&sim);
    run_a_bit(&mut sim);

    inject(
        &mut sim,
        &to_server(
            mac,
            IpProtocol::Tcp,
            &tcp(PROBE_PORT, 81, TcpControl::Syn, None, &[]),
        ),
    );
    inject(
        &mut sim,
        &to_server(
            mac,
            IpProtocol::Tcp,
            &tcp(PROBE_PORT - 1, HTTP_PORT, TcpControl::None, Some(777), &[]),
        ),
    );
    run_a_bit(&mut sim);

    let rsts: Vec<(u16, u16, i32, Option<i32>)> = sim
        .fleet()
        .unmatched_frames()
        .iter()
        .filter_map(|frame| {
            let eth = EthernetFrame::new_checked(&frame[..]).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            tcp.rst().then(|| {
                (
                    tcp.src_port(),
                    tcp.dst_port(),
                    tcp.seq_number().0,
                    tcp.ack().then(|| tcp.ack_number().0),
                )
            })
        })
        .collect();
    // RFC 9293 §3.10.7.1: a SYN to a closed port gets <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>.
    assert!(
        rsts.iter()
            .any(|&(src, dst, _, ack)| src == 81 && dst == PROBE_PORT && ack == Some(1001)),
        "no RST for the closed port in {rsts:?}"
    );
    // An ACK for no connection gets <SEQ=SEG.ACK><CTL=RST>.
    assert!(
        rsts.iter()
            .any(|&(src, dst, seq, _)| src == HTTP_PORT && dst == PROBE_PORT - 1 && seq == 777),
        "no RST for the unknown flow in {rsts:?}"
    );
    let stats = sim.server().stats();
    assert!(stats.stack.rst_sent >= 2, "{:?}", stats.stack);

    let report = run_to_completion(&mut sim, Limits::secs(120));
    assert_all_ok(
        &report,
        (tree.get_all().len() + tree.get_small().len()) as u64,
    );
}

#[test]
fn garbage_http_gets_400_and_the_next_connection_is_served() {
    let tree = TestTree::standard();
    let garbage: [&[u8]; 4] = [
        // (A TLS ClientHello is closed without an answer: see the HTTP unit tests.)
        b"\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        b"hello world\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\n\r\n",
    ];
    let file = tree.body("/file-512.bin");
    let scripts: Vec<Script> = garbage
        .iter()
        .map(|bytes| {
            let requests = vec![
                Request::raw(bytes, 400),
                Request::get("/file-512.bin", file.clone()),
            ];
            Script::each(requests.into(), Mode::KeepAlive { pipeline: 1 })
        })
        .chain(valid_scripts(&tree))
        .collect();
    let expected = (2 * garbage.len() + tree.get_all().len() + tree.get_small().len()) as u64;
    let mut sim = simulation(&tree, 33, scripts);
    let report = run_to_completion(&mut sim, Limits::secs(120));
    assert_all_ok(&report, expected);
    assert_eq!(
        report.server.http.parse_errors,
        garbage.len() as u64,
        "{report}"
    );
    assert_eq!(
        report.server.http.responses_4xx,
        garbage.len() as u64,
        "{report}"
    );
    // Each 400 closed its connection; the file came on a second one.
    assert_eq!(report.fleet.resets, 0, "{report}");
}

#[test]
fn random_frames_never_hurt_the_server() {
    let tree = TestTree::standard();
    let mut sim = simulation(&tree, 34, valid_scripts(&tree));
    let mac = client_mac(&sim);
    let templates = [
        to_server(
            mac,
            IpProtocol::Tcp,
            &tcp(PROBE_PORT, HTTP_PORT, TcpControl::Syn, None, &[]),
        ),
        to_server(
            mac,
            IpProtocol::Tcp,
            &tcp(
                PROBE_PORT,
                HTTP_PORT,
                TcpControl::Psh,
                Some(1),
                b"GET / HTTP/1.1\r\n\r\n",
            ),
        ),
        to_server(mac, IpProtocol::Icmp, &[8, 0, 0, 0, 0, 1, 0, 1]),
    ];
    let mut rng = SplitMix64::new(0xbad);
    let before = sim.server().stats().stack.total_dropped();
    let rounds: u64 = 3000;
    for round in 0..rounds {
        let frame = match round % 3 {
            // Pure noise, sometimes addressed to the server so it gets past layer 2.
            0 => {
                let len = (rng.next_u64() % 1514) as usize;
                let mut frame: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                if rng.next_u64().is_multiple_of(2) && frame.len() >= 14 {
                    frame[..6].copy_from_slice(SERVER_MAC.as_bytes());
                    frame[12..14].copy_from_slice(&[0x08, 0x00]);
                }
                frame
            }
            // A valid frame with a few bytes past the Ethernet header changed.
            1 => {
                let mut frame = templates[(rng.next_u64() % 3) as usize].clone();
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = 14 + (rng.next_u64() as usize) % (frame.len() - 14);
                    frame[at] = rng.next_u64() as u8;
                }
                frame
            }
            // A valid frame cut short.
            _ => {
                let frame = &templates[(rng.next_u64() % 3) as usize];
                frame[..(rng.next_u64() as usize) % frame.len()].to_vec()
            }
        };
        inject(&mut sim, &frame);
        if round.is_multiple_of(10) {
            run_a_bit(&mut sim);
        }
    }
    let report = run_to_completion(&mut sim, Limits::secs(120));
    assert_all_ok(
        &report,
        (tree.get_all().len() + tree.get_small().len()) as u64,
    );
    let dropped = report.server.stack.total_dropped() - before;
    assert!(
        dropped >= rounds / 2,
        "only {dropped} of {rounds} bad frames were dropped: {report}"
    );
}

#[test]
fn corrupted_frames_are_caught_by_checksums_and_transfers_still_complete() {
    let tree = TestTree::standard();
    let mut config = SimConfig::new(35, 2);
    config.link.faults = FaultConfig {
        corrupt: 0.03,
        ..FaultConfig::none()
    };
    let scripts = vec![
        Script::each(tree.get_all(), Mode::KeepAlive { pipeline: 2 }),
        Script::each(tree.get_small(), Mode::NewConnection),
    ];
    let expected = (tree.get_all().len() + tree.get_small().len()) as u64;
    let mut sim = tree.simulation(config, scripts);
    let report = run_to_completion(&mut sim, Limits::secs(600));
    assert_all_ok(&report, expected);
    assert!(report.client_to_server.corrupted > 0, "{report}");
    assert!(report.server.stack.drop_tcp_checksum > 0, "{report}");
    assert_eq!(report.server.http.requests, expected, "{report}");
}

/// One hostile flow of [`checksummed_segments_on_live_flows_never_hurt_the_server`]: our next
/// sequence number, and the server's, once its SYN-ACK has been seen.
#[derive(Debug, Clone, Copy)]
struct Probe {
    port: u16,
    next: u32,
    server_next: Option<u32>,
    /// The round of the last SYN, while no SYN-ACK has answered it.
    syn_round: Option<usize>,
}

/// A segment from `port` with every field drawn from `rng`, near the flow's sequence space most
/// of the time, with any options; emitted with a valid checksum (so it passes every check a
/// real peer's segment passes), then its flag bits, urgent pointer and window bent at random
/// and the checksum filled again.
fn hostile_segment(rng: &mut SplitMix64, probe: &Probe, payload: &[u8]) -> Vec<u8> {
    let pick = |rng: &mut SplitMix64, n: u64| rng.next_u64() % n;
    let near = |base: u32, draw: u64| -> u32 {
        match draw % 8 {
            0 => draw as u32,
            1 => base.wrapping_add((draw >> 8) as u32 % 200_000),
            2 => base.wrapping_sub((draw >> 8) as u32 % 200_000),
            _ => base
                .wrapping_add((draw >> 8) as u32 % 3000)
                .wrapping_sub(1500),
        }
    };
    let seq = near(probe.next, pick(rng, u64::MAX));
    let ack = probe.server_next.map(|s| near(s, pick(rng, u64::MAX)));
    let control = match pick(rng, 16) {
        0 => TcpControl::Syn,
        1 => TcpControl::Fin,
        2 => TcpControl::Rst,
        3..=8 => TcpControl::Psh,
        _ => TcpControl::None,
    };
    let sack = |rng: &mut SplitMix64| {
        let base = probe.server_next.unwrap_or(0);
        let a = near(base, rng.next_u64());
        Some((a, a.wrapping_add((rng.next_u64() % 20_000) as u32)))
    };
    let sack_ranges =
        [sack(rng), sack(rng), sack(rng)].map(|r| r.filter(|_| rng.next_u64().is_multiple_of(3)));
    let mut repr = TcpRepr {
        src_port: probe.port,
        dst_port: HTTP_PORT,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: match pick(rng, 4) {
            0 => 0,
            1 => 1,
            _ => pick(rng, 65_536) as u16,
        },
        window_scale: (pick(rng, 4) == 0).then(|| pick(rng, 20) as u8),
        max_seg_size: (pick(rng, 4) == 0).then(|| pick(rng, 70_000) as u16),
        sack_permitted: pick(rng, 2) == 0,
        sack_ranges,
        timestamp: (pick(rng, 2) == 0).then(|| {
            smoltcp::wire::TcpTimestampRepr::new(
                pick(rng, u64::MAX) as u32,
                pick(rng, u64::MAX) as u32,
            )
        }),
        payload,
    };
    // A TCP header holds 40 octets of options: drop SACK blocks until they fit.
    for k in (0..3).rev() {
        if repr.header_len() > 60 {
            repr.sack_ranges[k] = None;
        }
    }
    let mut segment = vec![0u8; repr.buffer_len()];
    let (src, dst) = (IpAddress::Ipv4(FIRST_CLIENT_IP), IpAddress::Ipv4(SERVER_IP));
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut segment),
        &src,
        &dst,
        &ChecksumCapabilities::default(),
    );
    let mut packet = TcpPacket::new_unchecked(&mut segment);
    if pick(rng, 4) == 0 {
        // Any combination of the flag bits, URG, ECE, CWR and NS included.
        let flags = pick(rng, 512) as u16;
        packet.set_fin(flags & 1 != 0);
        packet.set_syn(flags & 2 != 0);
        packet.set_rst(flags & 4 != 0);
        packet.set_psh(flags & 8 != 0);
        packet.set_ack(flags & 16 != 0);
        packet.set_urg(flags & 32 != 0);
        packet.set_ece(flags & 64 != 0);
        packet.set_cwr(flags & 128 != 0);
        packet.set_ns(flags & 256 != 0);
        packet.set_urgent_at(pick(rng, 65_536) as u16);
    }
    packet.fill_checksum(&src, &dst);
    segment
}

/// `segment` (from [`tcp`]) with its sequence number set to `seq`, checksummed again.
fn at_seq(mut segment: Vec<u8>, seq: u32) -> Vec<u8> {
    let mut packet = TcpPacket::new_unchecked(&mut segment);
    packet.set_seq_number(TcpSeqNumber(seq as i32));
    packet.fill_checksum(
        &IpAddress::Ipv4(FIRST_CLIENT_IP),
        &IpAddress::Ipv4(SERVER_IP),
    );
    segment
}

/// A piece of one of `payloads`, from its start: the whole of it, nothing, or anything between.
fn piece<'a>(rng: &mut SplitMix64, payloads: &[&'a [u8]]) -> &'a [u8] {
    let payload = payloads[(rng.next_u64() % payloads.len() as u64) as usize];
    &payload[..(rng.next_u64() as usize) % (payload.len() + 1)]
}

/// What the server sent one of our probes.
struct Answer {
    port: u16,
    syn_ack: bool,
    rst: bool,
    /// The sequence number just past the segment.
    end: u32,
}

/// The server's segments to our probes, from the frames that matched no client, starting at
/// `seen`.
fn server_segments(sim: &Simulation, seen: usize) -> Vec<Answer> {
    sim.fleet().unmatched_frames()[seen..]
        .iter()
        .filter_map(|frame| {
            let eth = EthernetFrame::new_checked(&frame[..]).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            if tcp.src_port() != HTTP_PORT {
                return None;
            }
            let len = tcp.payload().len() as u32 + u32::from(tcp.syn()) + u32::from(tcp.fin());
            Some(Answer {
                port: tcp.dst_port(),
                syn_ack: tcp.syn() && tcp.ack(),
                rst: tcp.rst(),
                end: (tcp.seq_number().0 as u32).wrapping_add(len),
            })
        })
        .collect()
}

#[test]
fn checksummed_segments_on_live_flows_never_hurt_the_server() {
    // Noise and bit flips stop at the checksum. These segments pass it: hostile peers open
    // real connections, then send segments whose every field is drawn at random (sequence
    // and acknowledgment numbers near the flow's or anywhere, any flags, window, options,
    // SACK blocks, and pieces of HTTP or garbage as payload), so the TCP state machine, loss
    // recovery, the SYN cookies and the HTTP parser all see them. The valid clients must be
    // served byte-exact throughout, and nothing may panic.
    //
    // SIROCCO_FUZZ_ROUNDS and SIROCCO_FUZZ_SEED run it longer or elsewhere; a debug build
    // (`cargo test -p sirocco-tests --test malformed checksummed`) adds overflow checks and
    // smoltcp's debug assertions to what must not fire.
    let tree = TestTree::standard();
    let scripts = valid_scripts(&tree);
    let mut config = SimConfig::new(35, scripts.len() + 4);
    // Every answer to the probes is kept: the flows' sequence numbers are read from them.
    config.fleet.keep_unmatched = 1 << 20;
    config.server.stack.max_connections = 64;
    let mut sim = tree.simulation(config, scripts);
    let rounds: usize = std::env::var("SIROCCO_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::var("SIROCCO_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xf00d);
    let mac = client_mac(&sim);
    let mut rng = SplitMix64::new(seed);
    let payloads: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET / HT",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\r\n",
        &[0xff; 1400],
    ];
    let mut probes: Vec<Probe> = (0..8)
        .map(|i| Probe {
            port: PROBE_PORT - 1 - i,
            next: 1000,
            server_next: None,
            syn_round: None,
        })
        .collect();
    let mut seen = 0;
    let mut next_port = PROBE_PORT - 20;
    for round in 0..rounds {
        let i = (rng.next_u64() % probes.len() as u64) as usize;
        let probe = probes[i];
        let handshaking = probe.syn_round.is_some_and(|r| round - r < 64);
        let segment = match probe.server_next {
            // While the SYN-ACK is on its way: anything, as a peer that does not wait.
            None if handshaking => {
                let payload = piece(&mut rng, &payloads);
                hostile_segment(&mut rng, &probe, payload)
            }
            // Open (or reopen) the flow with a plain SYN from a fresh initial sequence number.
            None => {
                probes[i].syn_round = Some(round);
                // A port of its own, so the old flow's close does not get in the way.
                next_port = if next_port <= 100 {
                    PROBE_PORT - 20
                } else {
                    next_port - 1
                };
                probes[i].port = next_port;
                let probe = probes[i];
                let isn = rng.next_u64() as u32;
                probes[i].next = isn.wrapping_add(1);
                at_seq(tcp(probe.port, HTTP_PORT, TcpControl::Syn, None, &[]), isn)
            }
            Some(server_next) if rng.next_u64().is_multiple_of(2) => {
                // A well-formed segment: the next piece of a request, or a plain ACK.
                let payload = piece(&mut rng, &payloads[..5]);
                probes[i].next = probe.next.wrapping_add(payload.len() as u32);
                let segment = tcp(
                    probe.port,
                    HTTP_PORT,
                    TcpControl::Psh,
                    Some(server_next),
                    payload,
                );
                at_seq(segment, probe.next)
            }
            Some(_) => {
                let payload = piece(&mut rng, &payloads);
                hostile_segment(&mut rng, &probe, payload)
            }
        };
        inject(&mut sim, &to_server(mac, IpProtocol::Tcp, &segment));
        if round % 4 == 0 {
            run_a_bit(&mut sim);
            for answer in server_segments(&sim, seen) {
                let Some(p) = probes.iter_mut().find(|p| p.port == answer.port) else {
                    continue;
                };
                if answer.rst {
                    // The flow is gone (or never was): start a new one.
                    p.server_next = None;
                } else if answer.syn_ack {
                    p.server_next = Some(answer.end);
                    p.syn_round = None;
                } else if let Some(s) = p.server_next.as_mut() {
                    // Later of the two, in sequence space.
                    if (answer.end.wrapping_sub(*s) as i32) > 0 {
                        *s = answer.end;
                    }
                }
            }
            seen = sim.fleet().unmatched_frames().len();
        }
        // Now and then time passes, so that retransmission, probe, keep-alive and TIME-WAIT
        // timers fire in the middle of it all, and the challenge-ACK allowance renews.
        if round % 500 == 499 {
            sim.run_steps(2_000, 300_000).expect("simulation step");
        }
        // Now and then a flow starts over, as a peer that gave up would.
        if rng.next_u64().is_multiple_of(50) {
            probes[i].server_next = None;
        }
    }
    let report = run_to_completion(&mut sim, Limits::secs(300));
    assert_all_ok(
        &report,
        (tree.get_all().len() + tree.get_small().len()) as u64,
    );
    // The hostile flows did get through TCP to HTTP: the server answered them, and parsed
    // requests beyond the valid clients' ones.
    let valid = (tree.get_all().len() + tree.get_small().len()) as u64;
    assert!(
        seen > 100,
        "only {seen} frames back for {rounds} segments: {report}"
    );
    assert!(
        report.server.http.requests > valid,
        "no hostile request reached HTTP: {report}"
    );
}
