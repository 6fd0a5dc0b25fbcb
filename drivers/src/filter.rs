//! Which received frames belong to the server, and which to the host network stack: one
//! [`Filter`] for every backend that shares a NIC with the kernel.
//!
//! - AF_XDP compiles it into its XDP program (`afxdp::program`): the kernel keeps the frames
//!   the filter rejects, so SSH and other services on a shared port keep working.
//! - netmap with host rings bound (`netmap:eth0*`) takes the whole NIC away from the kernel; it
//!   runs [`Filter::accepts`] on each received frame and passes the rejected ones to the host TX
//!   ring, so the kernel still sees them.
//!
//! The classification reads a few header bytes with bounds checks and never panics: anything
//! too short or unknown goes to the host.

use std::net::Ipv4Addr;

const ETHERTYPE_OFFSET: usize = 12;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
/// IPv4 destination address: Ethernet header (14) + offset 16 in the IPv4 header.
const IPV4_DST_OFFSET: usize = 14 + 16;
/// ARP target protocol address for Ethernet/IPv4: Ethernet header (14) + offset 24 in ARP.
const ARP_TPA_OFFSET: usize = 14 + 24;

/// Which frames the server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// IPv4 packets addressed to this address, and ARP whose target is this address, go to the
    /// server; everything else to the host stack.
    ServerIpv4(Ipv4Addr),
    /// Every frame goes to the server; the host stack sees none.
    #[default]
    RedirectAll,
}

impl Filter {
    /// `true` if `frame` (a whole Ethernet frame) is for the server.
    pub fn accepts(&self, frame: &[u8]) -> bool {
        match *self {
            Filter::RedirectAll => true,
            Filter::ServerIpv4(addr) => {
                let field = match frame.get(ETHERTYPE_OFFSET..ETHERTYPE_OFFSET + 2) {
                    Some(t) if t == ETHERTYPE_IPV4 => IPV4_DST_OFFSET,
                    Some(t) if t == ETHERTYPE_ARP => ARP_TPA_OFFSET,
                    _ => return false,
                };
                frame.get(field..field + 4) == Some(&addr.octets()[..])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 34];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        f[14] = 0x45;
        f[30..34].copy_from_slice(&dst);
        f
    }

    fn arp_for(tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&ETHERTYPE_ARP);
        f[38..42].copy_from_slice(&tpa);
        f
    }

    #[test]
    fn server_ipv4_takes_its_address_and_arp_for_it() {
        let filter = Filter::ServerIpv4(SERVER);
        assert!(filter.accepts(&ipv4_to([198, 18, 0, 1])));
        assert!(!filter.accepts(&ipv4_to([198, 18, 0, 2])));
        assert!(filter.accepts(&arp_for([198, 18, 0, 1])));
        assert!(!filter.accepts(&arp_for([198, 18, 0, 9])));
    }

    #[test]
    fn short_or_foreign_frames_go_to_the_host() {
        let filter = Filter::ServerIpv4(SERVER);
        assert!(!filter.accepts(&[]));
        assert!(!filter.accepts(&ipv4_to([198, 18, 0, 1])[..33]));
        let mut ipv6 = ipv4_to([198, 18, 0, 1]);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(!filter.accepts(&ipv6));
        assert!(Filter::RedirectAll.accepts(&[]));
    }
}
