//! SYN cookies (RFC 4987 §3.6): initial sequence numbers that carry a half-open connection's
//! state, so that the final ACK of a handshake can open a connection nobody remembered.
//!
//! Every SYN-ACK the stack sends has a cookie for its ISN, whether or not the SYN cache also
//! holds the handshake (as FreeBSD's syncache does with syncookies on), so an ACK still opens its
//! connection after the cache entry is gone. The 32 bits are
//!
//! ```text
//!  31 30 29     27 26     23 22 21                                 0
//! [epoch][mss idx][wscale ][s][ MAC: SipHash-1-3 of everything else ]
//! ```
//!
//! - `epoch`: the low 2 bits of a clock that ticks every [`EPOCH`] (64 s). The MAC covers the
//!   full epoch number, so it acts as a key that rotates every 64 s; a cookie is valid in its
//!   own epoch and the next one (64 to 128 s), and rejected after, replayed or not.
//! - `mss idx`: the peer's MSS rounded down to one of [`MSS_TABLE`]'s eight values.
//! - `wscale`: the peer's window scale, 0 to 14, or 15 for none; `s`: SACK permitted.
//! - MAC: the low 22 bits of SipHash-1-3, keyed from the OS at start, over the epoch, our and
//!   the peer's address and port, the peer's ISN and the option bits. A blind forger has one
//!   chance in 2^22 per guess (2^23 counting the epoch bits), and every guess costs a packet.
//!
//! Linux puts the window scale and SACK in the timestamp option instead, to keep 24 MAC bits.
//! sirocco's connections do not use timestamps (smoltcp's support is a global clock function),
//! so the ISN carries them, at the price of two MAC bits.
//!
//! ISNs are thus a keyed hash of the 4-tuple and a clock, as RFC 6528 asks; its 4 µs counter is
//! the 64 s epoch here. What RFC 6528 protects (a blind attacker guessing our sequence numbers)
//! holds: the 22 MAC bits change unpredictably with every 4-tuple and every peer ISN.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, TcpSeqNumber};

/// How long one cookie epoch lasts, in milliseconds: the key rotates this often.
pub(crate) const EPOCH_MS: i64 = 64_000;
/// How long one cookie epoch lasts.
#[cfg(test)]
pub(crate) const EPOCH: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(64_000);

/// MSS values a cookie can carry; a peer's MSS is rounded down to one of them. The smallest is
/// the MSS every IPv4 host must accept (RFC 9293 §3.7.1); the others are the common values of
/// Ethernet (1460), PPPoE (1452), tunnels and IPv6-in-IPv4 paths.
pub(crate) const MSS_TABLE: [u16; 8] = [536, 1024, 1220, 1300, 1360, 1400, 1440, 1460];

const MAC_BITS: u32 = 22;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;
const NO_WSCALE: u8 = 15;

/// The options of a peer's SYN that a cookie keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SynOptions {
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack: bool,
}

impl SynOptions {
    /// What a cookie can carry of `self`: the MSS rounded down to the table (never above what
    /// the peer asked), the window scale capped at 14 (RFC 7323 §2.3).
    #[cfg(test)]
    pub fn rounded(self) -> Self {
        SynOptions {
            mss: MSS_TABLE[mss_index(self.mss) as usize],
            wscale: self.wscale.map(|w| w.min(14)),
            sack: self.sack,
        }
    }

    fn bits(self) -> u32 {
        let wscale = self.wscale.map_or(NO_WSCALE, |w| w.min(14));
        (mss_index(self.mss) << 5) | (u32::from(wscale) << 1) | u32::from(self.sack)
    }

    fn from_bits(bits: u32) -> Self {
        let wscale = ((bits >> 1) & 0xf) as u8;
        SynOptions {
            mss: MSS_TABLE[((bits >> 5) & 7) as usize],
            wscale: (wscale != NO_WSCALE).then_some(wscale),
            sack: bits & 1 == 1,
        }
    }
}

/// The largest table entry not above `mss` (the smallest if `mss` is below them all).
fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// The addresses and ports of a connection, as a cookie covers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub local_ip: IpAddress,
    pub local_port: u16,
    pub peer_ip: IpAddress,
    pub peer_port: u16,
}

/// Feeds an address's bytes to the MAC (4 for IPv4, 16 for IPv6).
fn write_ip(h: &mut SipHasher13, addr: &IpAddress) {
    match addr {
        IpAddress::Ipv4(a) => h.write(&a.octets()),
        IpAddress::Ipv6(a) => h.write(&a.octets()),
    }
}

/// Why an ACK's cookie did not validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieError {
    /// The MAC does not match: forged, or for another connection.
    Forged,
    /// Made more than one epoch ago (or, impossibly, in the future).
    Expired,
}

/// Makes and checks cookies with one secret key.
pub(crate) struct CookieJar {
    key: [u64; 2],
}

impl CookieJar {
    pub fn new(key: [u64; 2]) -> Self {
        CookieJar { key }
    }

    fn mac(&self, epoch: u32, tuple: &Tuple, peer_isn: TcpSeqNumber, bits: u32) -> u32 {
        let [k0, k1] = self.key;
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write_u32(epoch);
        write_ip(&mut h, &tuple.local_ip);
        h.write_u16(tuple.local_port);
        write_ip(&mut h, &tuple.peer_ip);
        h.write_u16(tuple.peer_port);
        h.write_i32(peer_isn.0);
        h.write_u32(bits);
        h.finish() as u32 & MAC_MASK
    }

    /// The ISN of a SYN-ACK answering a SYN with `peer_isn` and `options`.
    pub fn make(
        &self,
        now: Instant,
        tuple: &Tuple,
        peer_isn: TcpSeqNumber,
        options: SynOptions,
    ) -> TcpSeqNumber {
        let epoch = epoch_at(now);
        let bits = options.bits();
        let isn = ((epoch & 3) << 30) | (bits << MAC_BITS) | self.mac(epoch, tuple, peer_isn, bits);
        TcpSeqNumber(isn as i32)
    }

    /// Checks the cookie `isn` (the ACK's acknowledgment number minus one) for a handshake
    /// whose SYN had `peer_isn` (the ACK's sequence number minus one), and returns the options
    /// it carries.
    pub fn check(
        &self,
        now: Instant,
        tuple: &Tuple,
        peer_isn: TcpSeqNumber,
        isn: TcpSeqNumber,
    ) -> Result<SynOptions, CookieError> {
        let isn = isn.0 as u32;
        let current = epoch_at(now);
        // The most recent epoch with the cookie's two low bits, at or before the current one.
        let age = current.wrapping_sub(isn >> 30) & 3;
        let epoch = current.wrapping_sub(age);
        let bits = (isn >> MAC_BITS) & 0xff;
        if self.mac(epoch, tuple, peer_isn, bits) != isn & MAC_MASK {
            return Err(CookieError::Forged);
        }
        if age > 1 {
            return Err(CookieError::Expired);
        }
        Ok(SynOptions::from_bits(bits))
    }
}

fn epoch_at(now: Instant) -> u32 {
    (now.total_millis().max(0) / EPOCH_MS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    const TUPLE: Tuple = Tuple {
        local_ip: IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 1)),
        local_port: 80,
        peer_ip: IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 2)),
        peer_port: 40000,
    };

    fn jar() -> CookieJar {
        CookieJar::new([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210])
    }

    #[test]
    fn every_option_combination_round_trips() {
        let jar = jar();
        let now = Instant::from_secs(1000);
        let mut seen = std::collections::HashSet::new();
        for mss in [
            0, 100, 535, 536, 537, 1023, 1024, 1220, 1300, 1360, 1400, 1440, 1452, 1460,
        ]
        .into_iter()
        .chain([1500, 8960, u16::MAX])
        {
            for wscale in (0..=15).map(Some).chain([None]) {
                for sack in [false, true] {
                    let options = SynOptions { mss, wscale, sack };
                    let isn = jar.make(now, &TUPLE, TcpSeqNumber(7), options);
                    let back = jar.check(now, &TUPLE, TcpSeqNumber(7), isn).unwrap();
                    assert_eq!(back, options.rounded(), "{options:?}");
                    assert!(back.mss <= mss.max(536));
                    seen.insert(isn.0);
                }
            }
        }
        // Every distinct option set a cookie can carry gives a distinct cookie.
        assert_eq!(seen.len(), MSS_TABLE.len() * 16 * 2);
    }

    #[test]
    fn the_mss_rounds_down_to_the_table() {
        let at = |mss| SynOptions {
            mss,
            wscale: None,
            sack: false,
        };
        assert_eq!(at(1460).rounded().mss, 1460);
        assert_eq!(at(1459).rounded().mss, 1440);
        assert_eq!(at(9000).rounded().mss, 1460);
        assert_eq!(at(600).rounded().mss, 536);
        assert_eq!(at(200).rounded().mss, 536);
    }

    #[test]
    fn a_cookie_lives_one_epoch_more_and_no_longer() {
        let jar = jar();
        let options = SynOptions {
            mss: 1460,
            wscale: Some(7),
            sack: true,
        };
        let made = Instant::from_secs(64 * 10 + 63);
        let isn = jar.make(made, &TUPLE, TcpSeqNumber(1), options);
        for later in [made, made + EPOCH, Instant::from_secs(64 * 11 + 63)] {
            assert_eq!(jar.check(later, &TUPLE, TcpSeqNumber(1), isn), Ok(options));
        }
        // Replayed after the key rotated twice.
        for later in [Instant::from_secs(64 * 12), Instant::from_secs(64 * 13 + 5)] {
            assert_eq!(
                jar.check(later, &TUPLE, TcpSeqNumber(1), isn),
                Err(CookieError::Expired)
            );
        }
        // Four epochs on, the two bits come round again: the MAC no longer matches.
        assert_eq!(
            jar.check(made + EPOCH * 4, &TUPLE, TcpSeqNumber(1), isn),
            Err(CookieError::Forged)
        );
        // A cookie from the future (a clock that went back) is not accepted.
        assert!(
            jar.check(made - EPOCH, &TUPLE, TcpSeqNumber(1), isn)
                .is_err()
        );
    }

    #[test]
    fn forged_cookies_are_rejected() {
        let jar = jar();
        let now = Instant::from_secs(5);
        let options = SynOptions {
            mss: 1460,
            wscale: Some(7),
            sack: true,
        };
        let isn = jar.make(now, &TUPLE, TcpSeqNumber(99), options);
        // Another peer ISN, port, address, or our other key.
        assert!(jar.check(now, &TUPLE, TcpSeqNumber(100), isn).is_err());
        let other_port = Tuple {
            peer_port: 40001,
            ..TUPLE
        };
        assert!(jar.check(now, &other_port, TcpSeqNumber(99), isn).is_err());
        let other_ip = Tuple {
            peer_ip: Ipv4Address::new(198, 18, 0, 3).into(),
            ..TUPLE
        };
        assert!(jar.check(now, &other_ip, TcpSeqNumber(99), isn).is_err());
        // The same tuple over IPv6 (an IPv4-mapped twin of the peer) is another connection.
        let v6 = Tuple {
            peer_ip: Ipv4Address::new(198, 18, 0, 2).to_ipv6_mapped().into(),
            local_ip: Ipv6Address::new(0x2001, 2, 0, 0, 0, 0, 0, 2).into(),
            ..TUPLE
        };
        assert!(jar.check(now, &v6, TcpSeqNumber(99), isn).is_err());
        let isn6 = jar.make(now, &v6, TcpSeqNumber(99), options);
        assert_eq!(jar.check(now, &v6, TcpSeqNumber(99), isn6), Ok(options));
        assert!(
            CookieJar::new([1, 2])
                .check(now, &TUPLE, TcpSeqNumber(99), isn)
                .is_err()
        );
        // Options changed by the peer (a bigger MSS for its own connection) break the MAC.
        let tampered = TcpSeqNumber(isn.0 ^ (1 << 27));
        assert_eq!(
            jar.check(now, &TUPLE, TcpSeqNumber(99), tampered),
            Err(CookieError::Forged)
        );
        // Blind guesses: about one in 2^22 passes. 200,000 random guesses all fail.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut passed = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let guess = TcpSeqNumber(x as i32);
            passed += jar.check(now, &TUPLE, TcpSeqNumber(99), guess).is_ok() as u32;
        }
        assert!(passed <= 1, "{passed} forged cookies passed");
    }

    #[test]
    fn isns_from_one_client_do_not_predict_the_next() {
        // RFC 6528: a client that sees its own ISNs learns nothing of the next one. Successive
        // connections from one address (ports and ISNs going up by one, as a naive client's
        // would) get ISNs whose differences look random: no two differences equal, and every
        // bit of the MAC part flips about half of the time.
        let jar = jar();
        let now = Instant::from_secs(300);
        let options = SynOptions {
            mss: 1460,
            wscale: Some(7),
            sack: true,
        };
        let isns: Vec<u32> = (0..2000u16)
            .map(|i| {
                let tuple = Tuple {
                    peer_port: 40000 + i,
                    ..TUPLE
                };
                jar.make(now, &tuple, TcpSeqNumber(1000 + i32::from(i)), options)
                    .0 as u32
            })
            .collect();
        let mut deltas: Vec<u32> = isns.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        deltas.sort_unstable();
        deltas.dedup();
        assert!(deltas.len() > 1990, "{} distinct deltas", deltas.len());
        for bit in 0..MAC_BITS {
            let flips = isns
                .windows(2)
                .filter(|w| (w[0] ^ w[1]) >> bit & 1 == 1)
                .count();
            assert!(
                (800..1200).contains(&flips),
                "bit {bit} flipped {flips} times"
            );
        }
        // And another key (another server start) gives unrelated ISNs for the same SYN.
        let other = CookieJar::new([3, 4]);
        let a = jar.make(now, &TUPLE, TcpSeqNumber(5), options);
        let b = other.make(now, &TUPLE, TcpSeqNumber(5), options);
        assert_ne!(a.0 as u32 & MAC_MASK, b.0 as u32 & MAC_MASK);
    }
}
