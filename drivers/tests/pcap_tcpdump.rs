//! What `PcapSink` writes opens in tcpdump, with the frames and virtual timestamps we wrote.
//!
//! Without tcpdump the test says so and checks the file with sirocco's own reader only, unless
//! `SIROCCO_REQUIRE_LAB=1`, where a missing tcpdump is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use sirocco_drivers::FrameIo;
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::pcap::{PcapDriver, PcapSink, PcapSource, Timestamps};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_IP: [u8; 4] = [198, 18, 0, 1];
const SERVER_IP: [u8; 4] = [198, 18, 0, 2];

fn arp(op: u8, src_mac: [u8; 6], src_ip: [u8; 4], dst_mac: [u8; 6], dst_ip: [u8; 4]) -> Vec<u8> {
    let eth_dst = if op == 1 { [0xff; 6] } else { dst_mac };
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, op]); // Ethernet/IPv4, opcode
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&src_ip);
    f.extend_from_slice(&if op == 1 { [0; 6] } else { dst_mac });
    f.extend_from_slice(&dst_ip);
    f
}

fn checksum(bytes: &[u8]) -> [u8; 2] {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    (!(sum as u16)).to_be_bytes()
}

fn icmp_echo_request() -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
    icmp.extend(0..56u8);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c);
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&CLIENT_IP);
    ip.extend_from_slice(&SERVER_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c);
    let mut f = Vec::new();
    f.extend_from_slice(&SERVER_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&icmp);
    f
}

fn find_tcpdump() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join("tcpdump"))
        .find(|p| p.is_file())
}

fn lab_required() -> bool {
    std::env::var("SIROCCO_REQUIRE_LAB").is_ok_and(|v| v == "1")
}

fn write_trace(path: &Path, frames: &[(u64, Vec<u8>)]) {
    let clock = VirtualClock::new();
    let mut sink = PcapSink::create(path, Timestamps::Virtual(clock.clone())).unwrap();
    for (at, frame) in frames {
        clock.set_micros(*at);
        sink.write_frame(frame).unwrap();
    }
    // Dropping the sink flushes it.
}

#[test]
fn sink_output_opens_in_tcpdump() {
    let frames = vec![
        (1_000_000, arp(1, CLIENT_MAC, CLIENT_IP, [0; 6], SERVER_IP)),
        (
            1_000_250,
            arp(2, SERVER_MAC, SERVER_IP, CLIENT_MAC, CLIENT_IP),
        ),
        (2_500_000, icmp_echo_request()),
    ];
    let path = std::env::temp_dir().join(format!("sirocco-tcpdump-{}.pcap", std::process::id()));
    write_trace(&path, &frames);

    // Our own reader first: byte-exact.
    let mut driver = PcapDriver::new(Some(PcapSource::open(&path).unwrap()), None);
    let mut read = Vec::new();
    driver.rx_burst(16, &mut |f| read.push(f.to_vec())).unwrap();
    let written: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(read, written);

    let Some(tcpdump) = find_tcpdump() else {
        let _ = std::fs::remove_file(&path);
        assert!(
            !lab_required(),
            "SIROCCO_REQUIRE_LAB=1 but tcpdump is not installed: apt-get install -y tcpdump"
        );
        eprintln!("notice: tcpdump not found; checked the capture with sirocco's reader only");
        return;
    };
    let out = Command::new(&tcpdump)
        .args(["-nn", "-tt", "-r"])
        .arg(&path)
        .output()
        .expect("run tcpdump");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tcpdump failed: {stderr}");
    assert!(
        stderr.contains("link-type EN10MB (Ethernet)") && stderr.contains("snapshot length 65535"),
        "{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("1.000000 ARP, Request who-has 198.18.0.2 tell 198.18.0.1"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("1.000250 ARP, Reply 198.18.0.2 is-at 02:00:00:00:00:02"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("2.500000 IP 198.18.0.1 > 198.18.0.2: ICMP echo request, id 1, seq 1"),
        "{stdout}"
    );
}
