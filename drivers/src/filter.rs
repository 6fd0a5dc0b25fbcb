//! Which received frames belong to the server, and which to the host network stack: one
//! [`Filter`] for every backend that shares a NIC with the kernel.
//!
//! - AF_XDP compiles it into its XDP program (`afxdp::program`): the kernel keeps the frames
//!   the filter rejects, so SSH and other services on a shared port keep working.
//! - netmap with host rings bound (`netmap:eth0*`) takes the whole NIC away from the kernel; it
//!   runs [`Filter::accepts`] on each received frame and passes the rejected ones to the host TX
//!   ring, so the kernel still sees them.
//!
//! [`Filter::Server`] gives the server:
//!
//! - ARP whose target protocol address is its IPv4 address;
//! - IPv4 packets to its IPv4 address;
//! - IPv6 packets to one of its IPv6 addresses (the link-local one included);
//! - ICMPv6 Neighbor Solicitations sent to a solicited-node multicast group
//!   (`ff02::1:ffXX:XXXX`) whose target address is one of its IPv6 addresses: ICMPv6 directly
//!   after the fixed IPv6 header, hop limit 255, type 135. The group alone is not enough: a
//!   kernel-owned address on the same NIC may share its low 24 bits, and its solicitations
//!   stay with the kernel.
//!
//! The classification reads a few header bytes with bounds checks, never allocates and never
//! panics: anything too short or unknown goes to the host.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most IPv6 addresses (the link-local one included) a [`ServerAddresses`] may hold: the XDP
/// program unrolls one comparison per address, twice.
pub const MAX_SERVER_IPV6: usize = 4;

const ETHERTYPE_OFFSET: usize = 12;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
/// IPv4 destination address: Ethernet header (14) + offset 16 in the IPv4 header.
const IPV4_DST_OFFSET: usize = 14 + 16;
/// ARP target protocol address for Ethernet/IPv4: Ethernet header (14) + offset 24 in ARP.
const ARP_TPA_OFFSET: usize = 14 + 24;
/// IPv6 next header and hop limit: Ethernet header (14) + offsets 6 and 7.
pub(crate) const IPV6_NEXT_HEADER_OFFSET: usize = 14 + 6;
/// IPv6 destination address: Ethernet header (14) + offset 24 in the IPv6 header.
pub(crate) const IPV6_DST_OFFSET: usize = 14 + 24;
/// First byte after the fixed IPv6 header.
pub(crate) const IPV6_PAYLOAD_OFFSET: usize = 14 + 40;
/// Target address of a Neighbor Solicitation: type, code, checksum, reserved, then the target.
pub(crate) const NS_TARGET_OFFSET: usize = IPV6_PAYLOAD_OFFSET + 8;
/// Next header value for ICMPv6.
pub(crate) const NEXT_HEADER_ICMPV6: u8 = 58;
/// Hop limit of every Neighbor Discovery message (RFC 4861 section 7.1.1).
pub(crate) const ND_HOP_LIMIT: u8 = 255;
/// ICMPv6 type of a Neighbor Solicitation.
pub(crate) const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
/// The first 13 bytes of every solicited-node multicast address, `ff02::1:ff00:0/104`.
pub(crate) const SOLICITED_NODE_PREFIX: [u8; 13] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];

/// The addresses the server answers on, for [`Filter::Server`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerAddresses {
    pub ipv4: Option<Ipv4Addr>,
    /// Every IPv6 address, the link-local one included; at most [`MAX_SERVER_IPV6`].
    pub ipv6: Vec<Ipv6Addr>,
}

impl ServerAddresses {
    /// IPv4 only.
    pub fn ipv4(addr: Ipv4Addr) -> Self {
        ServerAddresses {
            ipv4: Some(addr),
            ipv6: Vec::new(),
        }
    }

    /// Refuses a set the XDP program cannot hold, or one that would take no frame at all.
    pub fn check(&self) -> Result<(), FilterError> {
        if self.ipv6.len() > MAX_SERVER_IPV6 {
            return Err(FilterError::TooManyIpv6 {
                given: self.ipv6.len(),
            });
        }
        if self.ipv4.is_none() && self.ipv6.is_empty() {
            return Err(FilterError::NoAddress);
        }
        Ok(())
    }

    fn has_ipv6(&self, bytes: &[u8]) -> bool {
        self.ipv6.iter().any(|a| a.octets()[..] == *bytes)
    }
}

/// A [`Filter`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// More IPv6 addresses than [`MAX_SERVER_IPV6`].
    TooManyIpv6 { given: usize },
    /// Neither an IPv4 nor an IPv6 address: the server would receive nothing.
    NoAddress,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::TooManyIpv6 { given } => write!(
                f,
                "{given} IPv6 addresses for the server (the link-local one included), but the \
                 frame filter holds at most {MAX_SERVER_IPV6}; give fewer --ip addresses"
            ),
            FilterError::NoAddress => f.write_str(
                "the frame filter has no server address, so the server would receive nothing; \
                 give an --ip address, or use --dedicated-nic to take every frame",
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// Which frames the server takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Filter {
    /// Frames for these addresses go to the server (see the module documentation), everything
    /// else to the host stack.
    Server(ServerAddresses),
    /// Every frame goes to the server; the host stack sees none.
    #[default]
    RedirectAll,
}

impl Filter {
    /// Refuses a filter the backends cannot apply ([`ServerAddresses::check`]).
    pub fn check(&self) -> Result<(), FilterError> {
        match self {
            Filter::RedirectAll => Ok(()),
            Filter::Server(addresses) => addresses.check(),
        }
    }

    /// `true` if `frame` (a whole Ethernet frame) is for the server. Does not allocate.
    pub fn accepts(&self, frame: &[u8]) -> bool {
        let addresses = match self {
            Filter::RedirectAll => return true,
            Filter::Server(addresses) => addresses,
        };
        let ipv4_at = |field: usize| match addresses.ipv4 {
            Some(addr) => frame.get(field..field + 4) == Some(&addr.octets()[..]),
            None => false,
        };
        match frame.get(ETHERTYPE_OFFSET..ETHERTYPE_OFFSET + 2) {
            Some(t) if t == ETHERTYPE_IPV4 => ipv4_at(IPV4_DST_OFFSET),
            Some(t) if t == ETHERTYPE_ARP => ipv4_at(ARP_TPA_OFFSET),
            Some(t) if t == ETHERTYPE_IPV6 => ipv6_accepts(addresses, frame),
            _ => false,
        }
    }
}

/// The IPv6 half of [`Filter::accepts`], for a frame whose EtherType is IPv6.
fn ipv6_accepts(addresses: &ServerAddresses, frame: &[u8]) -> bool {
    let Some(dst) = frame.get(IPV6_DST_OFFSET..IPV6_DST_OFFSET + 16) else {
        return false;
    };
    if addresses.has_ipv6(dst) {
        return true;
    }
    let is_solicitation = frame.get(IPV6_NEXT_HEADER_OFFSET..IPV6_NEXT_HEADER_OFFSET + 2)
        == Some(&[NEXT_HEADER_ICMPV6, ND_HOP_LIMIT][..])
        && dst[..SOLICITED_NODE_PREFIX.len()] == SOLICITED_NODE_PREFIX
        && frame.get(IPV6_PAYLOAD_OFFSET) == Some(&ICMPV6_NEIGHBOR_SOLICITATION);
    is_solicitation
        && frame
            .get(NS_TARGET_OFFSET..NS_TARGET_OFFSET + 16)
            .is_some_and(|target| addresses.has_ipv6(target))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    pub(crate) const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    pub(crate) const LINK_LOCAL6: Ipv6Addr =
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0x00aa, 0xbbff, 0xfecc, 0xdd02);
    /// Kernel-owned, on the same NIC: same low 24 bits as SERVER6, so the same
    /// solicited-node group.
    pub(crate) const KERNEL6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0x99, 0, 2);
    pub(crate) const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);

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

    /// An Ethernet frame with an IPv6 header from CLIENT6 (or `::` for DAD) to `dst`.
    pub(crate) fn ipv6_frame(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next_header: u8,
        hop_limit: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next_header, hop_limit]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(payload);
        f
    }

    /// The solicited-node multicast group of `addr` (RFC 4291 section 2.7.1).
    pub(crate) fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
        let o = addr.octets();
        let mut g = [0u8; 16];
        g[..13].copy_from_slice(&SOLICITED_NODE_PREFIX);
        g[13..].copy_from_slice(&o[13..]);
        Ipv6Addr::from(g)
    }

    /// ICMPv6 message `icmp_type` (code 0, checksum left zero) whose body starts with four
    /// reserved bytes and `target`, plus a source link-layer address option.
    pub(crate) fn nd_message(icmp_type: u8, target: Ipv6Addr) -> Vec<u8> {
        let mut m = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
        m
    }

    /// A Neighbor Solicitation for `target`, to its solicited-node group.
    pub(crate) fn solicitation(target: Ipv6Addr) -> Vec<u8> {
        ipv6_frame(
            CLIENT6,
            solicited_node(target),
            NEXT_HEADER_ICMPV6,
            ND_HOP_LIMIT,
            &nd_message(ICMPV6_NEIGHBOR_SOLICITATION, target),
        )
    }

    /// TCP (a bare 20-byte header) from CLIENT6 to `dst`.
    pub(crate) fn tcp6_to(dst: Ipv6Addr) -> Vec<u8> {
        let mut tcp = vec![
            0xc0, 0x01, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ];
        tcp.extend_from_slice(&[0; 4]);
        ipv6_frame(CLIENT6, dst, 6, 64, &tcp)
    }

    fn dual() -> Filter {
        Filter::Server(ServerAddresses {
            ipv4: Some(SERVER),
            ipv6: vec![SERVER6, LINK_LOCAL6],
        })
    }

    #[test]
    fn server_ipv4_takes_its_address_and_arp_for_it() {
        for filter in [Filter::Server(ServerAddresses::ipv4(SERVER)), dual()] {
            assert!(filter.accepts(&ipv4_to([198, 18, 0, 1])));
            assert!(!filter.accepts(&ipv4_to([198, 18, 0, 2])));
            assert!(filter.accepts(&arp_for([198, 18, 0, 1])));
            assert!(!filter.accepts(&arp_for([198, 18, 0, 9])));
        }
    }

    #[test]
    fn short_or_foreign_frames_go_to_the_host() {
        let filter = Filter::Server(ServerAddresses::ipv4(SERVER));
        assert!(!filter.accepts(&[]));
        assert!(!filter.accepts(&ipv4_to([198, 18, 0, 1])[..33]));
        let mut ipv6 = ipv4_to([198, 18, 0, 1]);
        ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(!filter.accepts(&ipv6));
        // An IPv4-only filter leaves all of IPv6 to the host, NDP for anyone included.
        assert!(!filter.accepts(&tcp6_to(SERVER6)));
        assert!(!filter.accepts(&solicitation(SERVER6)));
        assert!(Filter::RedirectAll.accepts(&[]));
    }

    #[test]
    fn ipv6_to_our_addresses_goes_to_the_server() {
        let filter = dual();
        assert!(filter.accepts(&tcp6_to(SERVER6)));
        assert!(filter.accepts(&tcp6_to(LINK_LOCAL6)));
        assert!(!filter.accepts(&tcp6_to(KERNEL6)));
        assert!(!filter.accepts(&tcp6_to(CLIENT6)));
        // Unicast NS (neighbor unreachability detection) is plain traffic to our address.
        let probe = ipv6_frame(
            CLIENT6,
            SERVER6,
            NEXT_HEADER_ICMPV6,
            ND_HOP_LIMIT,
            &nd_message(ICMPV6_NEIGHBOR_SOLICITATION, SERVER6),
        );
        assert!(filter.accepts(&probe));
        // IPv6-only server: no IPv4, no ARP.
        let v6_only = Filter::Server(ServerAddresses {
            ipv4: None,
            ipv6: vec![SERVER6],
        });
        assert!(v6_only.accepts(&tcp6_to(SERVER6)));
        assert!(!v6_only.accepts(&ipv4_to([198, 18, 0, 1])));
        assert!(!v6_only.accepts(&arp_for([198, 18, 0, 1])));
    }

    #[test]
    fn solicitations_are_ours_only_for_our_targets() {
        let filter = dual();
        assert_eq!(solicited_node(SERVER6), solicited_node(KERNEL6));
        assert!(filter.accepts(&solicitation(SERVER6)));
        assert!(filter.accepts(&solicitation(LINK_LOCAL6)));
        // Same group, kernel's target: the kernel answers it.
        assert!(!filter.accepts(&solicitation(KERNEL6)));
        // DAD probes come from `::`; still an NS for our address.
        let dad = ipv6_frame(
            Ipv6Addr::UNSPECIFIED,
            solicited_node(SERVER6),
            NEXT_HEADER_ICMPV6,
            ND_HOP_LIMIT,
            &nd_message(ICMPV6_NEIGHBOR_SOLICITATION, SERVER6),
        );
        assert!(filter.accepts(&dad));
        let group = solicited_node(SERVER6);
        let ns = nd_message(ICMPV6_NEIGHBOR_SOLICITATION, SERVER6);
        // Not an NS: a multicast Neighbor Advertisement, an echo request to the group.
        let na = ipv6_frame(CLIENT6, group, 58, 255, &nd_message(136, SERVER6));
        assert!(!filter.accepts(&na));
        let echo = ipv6_frame(CLIENT6, group, 58, 64, &nd_message(128, SERVER6));
        assert!(!filter.accepts(&echo));
        // Routed (hop limit below 255), behind an extension header, to another group.
        assert!(!filter.accepts(&ipv6_frame(CLIENT6, group, 58, 254, &ns)));
        assert!(!filter.accepts(&ipv6_frame(CLIENT6, group, 0, 255, &ns)));
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert!(!filter.accepts(&ipv6_frame(CLIENT6, all_nodes, 58, 255, &ns)));
        // Cut before the end of its target, it goes to the host.
        let whole = solicitation(SERVER6);
        for len in 0..NS_TARGET_OFFSET + 16 {
            assert!(!filter.accepts(&whole[..len]), "NS cut to {len}");
        }
        assert!(filter.accepts(&whole[..NS_TARGET_OFFSET + 16]));
        let tcp = tcp6_to(SERVER6);
        for len in 0..IPV6_PAYLOAD_OFFSET {
            assert!(!filter.accepts(&tcp[..len]), "TCP cut to {len}");
        }
        assert!(filter.accepts(&tcp[..IPV6_PAYLOAD_OFFSET]));
    }

    #[test]
    fn address_sets_are_checked() {
        assert_eq!(Filter::RedirectAll.check(), Ok(()));
        assert_eq!(dual().check(), Ok(()));
        let many = ServerAddresses {
            ipv4: None,
            ipv6: vec![SERVER6; MAX_SERVER_IPV6 + 1],
        };
        let e = Filter::Server(many).check().unwrap_err();
        assert_eq!(e, FilterError::TooManyIpv6 { given: 5 });
        assert!(e.to_string().contains("at most 4"), "{e}");
        let none = Filter::Server(ServerAddresses::default())
            .check()
            .unwrap_err();
        assert_eq!(none, FilterError::NoAddress);
        assert!(none.to_string().contains("--dedicated-nic"), "{none}");
    }
}
