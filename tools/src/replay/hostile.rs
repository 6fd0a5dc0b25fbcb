//! A hostile trace, derived deterministically from a valid one: after each client segment that
//! carries data, a few malformed or out-of-place frames drawn from a seeded [`SplitMix64`].
//!
//! What is inserted, and what a correct server does with it:
//! - truncated frames: shorter than an Ethernet header, or cut inside the IPv4 or TCP header;
//! - an IPv4 total length longer than the frame, or shorter than the header;
//! - a wrong IPv4 header checksum; a wrong TCP checksum (with a damaged payload, which must
//!   never reach HTTP); a TCP data offset below 5;
//!   all of those are dropped and counted;
//! - an overlapping copy of the segment with conflicting bytes (valid checksums): the bytes are
//!   already received, so they change nothing;
//! - a segment far outside the receive window: dropped (at most answered with an ACK);
//! - an RST storm on the connection, every sequence number outside the window (RFC 5961 §3.2:
//!   ignored), plus RSTs with bad checksums.
//!
//! The valid flows stay intact, so their answers must still equal the trace's byte for byte.
//!
//! The damage is placed for IPv4 headers (the committed hostile trace comes from an IPv4
//! fixture); IPv6 segments get the same edits at the same offsets, which damages them too,
//! only less precisely.

use std::path::Path;
use std::time::Duration;

use sirocco_drivers::DriverError;
use sirocco_drivers::clock::VirtualClock;
use sirocco_drivers::pcap::{PcapSink, PcapSource, Timestamps};
use sirocco_drivers::rng::SplitMix64;

use super::wire::{self, ACK, ETHERNET_LEN, IPV4_LEN, RST, TcpSegment};

/// The frames of `valid` with hostile frames mixed in after each client data segment to
/// `port`. The same input and seed always give the same output.
pub fn hostile_frames(valid: &PcapSource, port: u16, seed: u64) -> Vec<(Duration, Vec<u8>)> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for (time, frame) in valid.frames() {
        out.push((time, frame.to_vec()));
        let Some(segment) = TcpSegment::parse(frame) else {
            continue;
        };
        if segment.dst_port != port || segment.payload.is_empty() {
            continue;
        }
        for junk in hostile_after(&segment, &mut rng) {
            out.push((time, junk));
        }
    }
    out
}

/// Four of the hostile variants of `segment`, chosen by `rng`, plus one always-present RST
/// storm of three out-of-window RSTs.
fn hostile_after(segment: &TcpSegment, rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let frame = wire::build_segment(segment);
    let ip = ETHERNET_LEN;
    let tcp = ETHERNET_LEN + IPV4_LEN;
    let mut out = Vec::new();
    for _ in 0..4 {
        let mut bad = frame.clone();
        match rng.next_u64() % 9 {
            0 => bad.truncate(1 + (rng.next_u64() % 13) as usize),
            1 => bad.truncate(ip + 1 + (rng.next_u64() % 19) as usize),
            2 => bad.truncate(tcp + 1 + (rng.next_u64() % 19) as usize),
            3 => {
                let claimed = (bad.len() - ip + 1 + (rng.next_u64() % 200) as usize) as u16;
                bad[ip + 2..ip + 4].copy_from_slice(&claimed.to_be_bytes());
            }
            4 => bad[ip + 2..ip + 4].copy_from_slice(&12u16.to_be_bytes()),
            5 => bad[ip + 10] ^= 0x5a,
            6 => {
                // Damage the payload, keep the (now wrong) checksum.
                let last = bad.len() - 1;
                bad[last] ^= 0x20;
            }
            7 => bad[tcp + 12] = 0x30,
            _ => {
                // Overlap: the same sequence space shifted by one, conflicting bytes.
                let mut overlap = segment.clone();
                overlap.seq = overlap.seq.wrapping_add(1);
                overlap.payload = segment.payload.get(1..).unwrap_or_default().to_vec();
                for b in overlap.payload.iter_mut().step_by(3) {
                    *b = b'#';
                }
                bad = wire::build_segment(&overlap);
            }
        }
        out.push(bad);
    }
    // Far outside the window (2^30 ahead): dropped.
    let mut ahead = segment.clone();
    ahead.seq = segment.seq.wrapping_add(1 << 30);
    ahead.payload = b"GET /not-in-window HTTP/1.1\r\n\r\n".to_vec();
    out.push(wire::build_segment(&ahead));
    // The RST storm: valid checksums but outside the window, and then a bad checksum.
    for i in 0..3u32 {
        let mut rst = segment.clone();
        rst.flags = RST | ACK;
        rst.seq = segment.seq.wrapping_add(0x4000_0000 + i * 7919);
        rst.payload.clear();
        out.push(wire::build_segment(&rst));
    }
    let mut rst = segment.clone();
    rst.flags = RST;
    rst.payload.clear();
    let mut bad_rst = wire::build_segment(&rst);
    bad_rst[tcp + 16] ^= 0xff;
    out.push(bad_rst);
    out
}

/// Writes `frames` as a classic pcap with their own timestamps.
pub fn write_pcap(path: &Path, frames: &[(Duration, Vec<u8>)]) -> Result<(), DriverError> {
    let clock = VirtualClock::new();
    let mut sink = PcapSink::create(path, Timestamps::Virtual(clock.clone()))?;
    for (time, frame) in frames {
        clock.set_micros(u64::try_from(time.as_micros()).unwrap_or(u64::MAX));
        sink.write_frame(frame)?;
    }
    sink.flush()
}
