//! The ECMP lab: one anycast address served by several sirocco hosts behind a Linux router
//! that spreads connections over them by hashing, as a data centre spreads them over replicas
//! with BGP and equal-cost multipath (ECMP).
//!
//! ```text
//!  <name>-cli                 <name>-rtr                              <name>-h1
//!  veth-cli 198.18.100.2  <=> rtr-cli 198.18.100.1
//!  (route 198.18.0.0/15          rtr-h1 198.18.1.1  <==============>  veth-srv 198.18.1.2 (kernel)
//!   via the router)                                                   + sirocco: 198.19.255.1
//!                                rtr-h2 198.18.2.1  <==============>  <name>-h2
//!                                  ...                                veth-srv 198.18.2.2 (kernel)
//!                                                                     + sirocco: 198.19.255.1
//!  router: 198.19.255.1/32 nexthop via 198.18.1.2 nexthop via 198.18.2.2 ...
//!          net.ipv4.ip_forward=1, net.ipv4.fib_multipath_hash_policy=1 (L4 hash)
//! ```
//!
//! Every host is its own namespace with its own veth pair to the router, and runs
//! `sirocco serve --driver afxdp --iface veth-srv --ip 198.19.255.1/32` ([`ANYCAST_ADDR`]).
//! The router has one route to the anycast address with a next hop per host. With the L4 hash
//! policy the router picks the next hop from a hash of each packet's addresses, protocol and
//! ports, so every packet of one connection goes to the same host and different connections
//! spread over all of them.
//!
//! **How the router reaches a host.** A next hop is an address the router must resolve with
//! ARP, and sirocco answers ARP only for its own `--ip`. So each host's end of its link also
//! holds a kernel address, 198.18.N.2/24 ([`host_link_addr`]), and the host's kernel answers
//! the router's ARP for it. This works because sirocco's XDP filter (the default, not
//! `--dedicated-nic`) takes only ARP whose target is the server's address and IPv4 to that
//! address; ARP for 198.18.N.2 is passed to the host's kernel. sirocco, attached to a NIC,
//! uses the NIC's own MAC, which is the MAC the kernel gave in its ARP reply; so the frames the
//! router sends to the next hop are addressed to sirocco's MAC, and sirocco accepts them. This
//! is how a real host is set up (a kernel address on the link for the routing protocol, the
//! service address on the fast path), and it needs no static neighbour entries. Replies go to
//! the MAC sirocco learnt from each SYN, the router's, so the hosts need no route back.
//!
//! The router's host-facing ends (`rtr-hN`) have TX checksum offload off: the kernel forwards
//! the client's TCP with only the pseudo-header sum (CHECKSUM_PARTIAL) and would send it to
//! sirocco that way, which rightly drops it. With it off the kernel completes the sum (and
//! segments the client's large sends) before the frames leave for a host.
//!
//! The client's namespace has `net.core.txrehash=0`. Over veth a packet keeps the flow hash
//! that its sending socket chose (a random number per connection), and the router uses that
//! hash instead of hashing the ports again. Linux picks a new random hash for a connection
//! after a retransmission timeout, which in this lab would move that connection to another
//! host in mid-transfer. Between real machines the hash never travels with the packet, and the
//! router hashes the 5-tuple.
//!
//! Names: the namespaces are `<name>-cli`, `<name>-rtr` and `<name>-h1` ... `<name>-hN`; the
//! interface names are the same in every lab. [`Drop`] removes every namespace of the lab (and
//! with them the veth pairs) unless the lab was [`EcmpLab::keep`]-ed for `sirocco lab up`;
//! a value from [`EcmpLab::existing`] leaves it in place unless [`EcmpLab::remove`]d.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sirocco_drivers::netns;

use super::netlink::{Netlink, VethEnd, sysctl, tx_checksum_off};
use super::{LabError, add_namespace, delete_namespace, is_root, namespaces, netns_command};

/// The address every host serves, the one clients connect to.
pub const ANYCAST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);
/// The client's address, on its link to the router.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 2);
/// The router's address on the client's link: the client's next hop.
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
/// Prefix length of every link subnet.
pub const LINK_PREFIX_LEN: u8 = 24;
/// Most hosts in one lab (host N's link is 198.18.N.0/24).
pub const MAX_SERVERS: u8 = 8;
/// Each host's end of its link to the router, inside the host's namespace.
pub const HOST_IFACE: &str = "veth-srv";
/// The client's end of its link to the router, inside the client namespace.
pub const CLIENT_IFACE: &str = "veth-cli";
/// The router's end of the client's link.
pub const ROUTER_CLIENT_IFACE: &str = "rtr-cli";
/// MTU of every link: plain Ethernet, within native XDP's limit on veth.
pub const MTU: u32 = 1500;

static UNIQUE: AtomicU32 = AtomicU32::new(0);

/// Host `n`'s kernel address on its link (198.18.n.2): the router's next hop for it.
pub fn host_link_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, n, 2)
}

/// The router's address on host `n`'s link (198.18.n.1).
pub fn router_host_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, n, 1)
}

/// The router's end of host `n`'s link (`rtr-hN`).
pub fn router_host_iface(n: u8) -> String {
    format!("rtr-h{n}")
}

/// The namespaces an ECMP lab called `name` with `servers` hosts has: client, router, hosts.
pub fn lab_namespaces(name: &str, servers: u8) -> Vec<String> {
    let mut all = vec![format!("{name}-cli"), format!("{name}-rtr")];
    all.extend((1..=servers).map(|n| format!("{name}-h{n}")));
    all
}

/// The namespaces of an ECMP lab called `name` that exist now (router and hosts; the client's
/// too when one of those is there, since a plain veth lab has a `<name>-cli` as well).
pub fn existing_namespaces(name: &str) -> Vec<String> {
    let present = namespaces();
    let ours: Vec<String> = lab_namespaces(name, MAX_SERVERS)
        .into_iter()
        .filter(|ns| present.contains(ns))
        .collect();
    if ours.iter().any(|ns| !ns.ends_with("-cli")) {
        ours
    } else {
        Vec::new()
    }
}

#[derive(Debug)]
pub struct EcmpLab {
    name: String,
    servers: u8,
    remove_on_drop: bool,
}

impl EcmpLab {
    /// Creates the lab `name` with `servers` hosts (1 to [`MAX_SERVERS`]).
    pub fn create(name: &str, servers: u8) -> Result<EcmpLab, LabError> {
        if servers == 0 || servers > MAX_SERVERS {
            return Err(LabError::Command {
                command: "creating an ECMP lab".into(),
                stderr: format!("it takes 1 to {MAX_SERVERS} servers, not {servers}"),
            });
        }
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let present = namespaces();
        if lab_namespaces(name, servers)
            .iter()
            .any(|ns| present.contains(ns))
        {
            // What is there belongs to someone else: leave it exactly as it is.
            return Err(LabError::Exists(name.to_string()));
        }
        let lab = EcmpLab {
            name: name.to_string(),
            servers,
            remove_on_drop: true,
        };
        // From the first namespace on, Drop cleans up whatever part was built.
        for ns in lab_namespaces(name, servers) {
            add_namespace(&ns)?;
        }
        let (rtr, cli) = (lab.router_ns(), lab.client_ns());
        lab.link(&rtr, ROUTER_CLIENT_IFACE, &cli, CLIENT_IFACE)?;
        let mut router = Netlink::open_in(&rtr)?;
        router.add_address(ROUTER_CLIENT_IFACE, ROUTER_CLIENT_ADDR, LINK_PREFIX_LEN)?;
        let mut client = Netlink::open_in(&cli)?;
        client.add_address(CLIENT_IFACE, CLIENT_ADDR, LINK_PREFIX_LEN)?;
        client.add_route(Ipv4Addr::new(198, 18, 0, 0), 15, ROUTER_CLIENT_ADDR)?;
        sysctl(&cli, "net/core/txrehash", "0")?;

        let mut hops = Vec::with_capacity(usize::from(servers));
        for n in 1..=servers {
            let (host, iface) = (lab.host_ns(n), router_host_iface(n));
            lab.link(&rtr, &iface, &host, HOST_IFACE)?;
            router.add_address(&iface, router_host_addr(n), LINK_PREFIX_LEN)?;
            Netlink::open_in(&host)?.add_address(HOST_IFACE, host_link_addr(n), LINK_PREFIX_LEN)?;
            tx_checksum_off(&rtr, &iface)?;
            hops.push((host_link_addr(n), iface));
        }
        sysctl(&rtr, "net/ipv4/ip_forward", "1")?;
        sysctl(&rtr, "net/ipv4/fib_multipath_hash_policy", "1")?;
        let hops: Vec<(Ipv4Addr, &str)> = hops.iter().map(|(gw, i)| (*gw, i.as_str())).collect();
        router.add_multipath_route(ANYCAST_ADDR, 32, &hops)?;
        Ok(lab)
    }

    /// Creates a lab with a name unique to this process and call:
    /// `sirocco-<tag>-<pid>-<n>`, e.g. with the tag `ecmp`.
    pub fn create_unique(tag: &str, servers: u8) -> Result<EcmpLab, LabError> {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        EcmpLab::create(
            &format!("sirocco-{tag}-{}-{n}", std::process::id()),
            servers,
        )
    }

    /// The lab `name` as it exists now, with as many hosts as it has namespaces for (for
    /// `sirocco lab down|status`); `None` when it has no router or host namespace. Dropping
    /// the returned value leaves the lab in place; [`EcmpLab::remove`] removes it.
    pub fn existing(name: &str) -> Option<EcmpLab> {
        let present = existing_namespaces(name);
        if present.is_empty() {
            return None;
        }
        let servers = (1..=MAX_SERVERS)
            .rev()
            .find(|n| present.contains(&format!("{name}-h{n}")))
            .unwrap_or(0);
        Some(EcmpLab {
            name: name.to_string(),
            servers,
            remove_on_drop: false,
        })
    }

    /// Leaves the lab in place when this value is dropped (for `sirocco lab up`). It takes
    /// `&mut self`, so that the lab can be kept before anything else is done with it.
    pub fn keep(&mut self) {
        self.remove_on_drop = false;
    }

    /// Removes the lab now: every namespace of it, and with them the veth pairs.
    pub fn remove(mut self) {
        self.remove_on_drop = true;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of hosts.
    pub fn servers(&self) -> u8 {
        self.servers
    }

    pub fn client_ns(&self) -> String {
        format!("{}-cli", self.name)
    }

    pub fn router_ns(&self) -> String {
        format!("{}-rtr", self.name)
    }

    /// Host `n`'s namespace, `n` from 1.
    pub fn host_ns(&self, n: u8) -> String {
        format!("{}-h{n}", self.name)
    }

    /// A command that runs `program` in the client namespace.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.client_ns(), program)
    }

    /// A command that runs `program` in the router namespace.
    pub fn router_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.router_ns(), program)
    }

    /// A command that runs `program` in host `n`'s namespace.
    pub fn host_command(&self, n: u8, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.host_ns(n), program)
    }

    /// The arguments of `sirocco` that serve `root` on host `n` (any host: they are the same
    /// everywhere, which is the point), in idle mode.
    pub fn serve_args(root: &str) -> Vec<String> {
        [
            "serve",
            "--driver",
            "afxdp",
            "--iface",
            HOST_IFACE,
            "--ip",
            &format!("{ANYCAST_ADDR}/32"),
            "--root",
            root,
            "--sleep-when-idle",
        ]
        .map(str::to_string)
        .into()
    }

    /// The shell command a person types to fetch `url` from the client side.
    pub fn curl_hint(&self, url: &str) -> String {
        format!("ip netns exec {} curl {url}", self.client_ns())
    }

    /// Whether host `n` has an XDP program on its link, i.e. a sirocco attached.
    pub fn host_has_xdp(&self, n: u8) -> Result<bool, LabError> {
        Ok(Netlink::open_in(&self.host_ns(n))?
            .link(HOST_IFACE)?
            .xdp
            .is_some())
    }

    /// `ip -n <rtr> route show 198.19.255.1`: the router's route to the anycast address, one
    /// line, with a `nexthop via ... dev ...` per host.
    pub fn router_route(&self) -> Result<Vec<String>, LabError> {
        Netlink::open_in(&self.router_ns())?.routes_to(ANYCAST_ADDR)
    }

    /// Creates a veth pair: `a_iface` in namespace `a`, its peer `b_iface` in `b`; both up.
    fn link(&self, a: &str, a_iface: &str, b: &str, b_iface: &str) -> Result<(), LabError> {
        let peer_ns = netns::open(b).map_err(|source| LabError::Netlink {
            op: format!("opening network namespace {b}"),
            source,
        })?;
        let mut near = Netlink::open_in(a)?;
        near.add_veth(
            VethEnd {
                name: a_iface,
                namespace: None,
            },
            VethEnd {
                name: b_iface,
                namespace: Some(&peer_ns),
            },
            MTU,
            1,
        )?;
        near.set_up(a_iface)?;
        Netlink::open_in(b)?.set_up(b_iface)
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // Deleting a namespace destroys the veth ends inside it, and with them the pairs.
            // Only this lab's names are touched; a name that is not there fails harmlessly.
            for ns in lab_namespaces(&self.name, self.servers) {
                delete_namespace(&ns);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_addresses_follow_the_host_number() {
        assert_eq!(
            lab_namespaces("x", 2),
            ["x-cli", "x-rtr", "x-h1", "x-h2"].map(String::from)
        );
        assert_eq!(host_link_addr(2), Ipv4Addr::new(198, 18, 2, 2));
        assert_eq!(router_host_addr(8), Ipv4Addr::new(198, 18, 8, 1));
        assert_eq!(router_host_iface(3), "rtr-h3");
        // Every address is in the benchmarking range, and the anycast address is on no link.
        let bench = |a: Ipv4Addr| a.octets()[0] == 198 && (a.octets()[1] & 0xfe) == 18;
        for n in 1..=MAX_SERVERS {
            assert!(bench(host_link_addr(n)) && bench(router_host_addr(n)));
            assert_ne!(host_link_addr(n).octets()[..3], ANYCAST_ADDR.octets()[..3]);
        }
        assert!(bench(ANYCAST_ADDR) && bench(CLIENT_ADDR));
        // Interface names fit IFNAMSIZ (15 bytes).
        assert!(router_host_iface(MAX_SERVERS).len() <= 15);
    }

    #[test]
    fn a_lab_needs_one_to_eight_servers() {
        for servers in [0, MAX_SERVERS + 1] {
            let err = EcmpLab::create("sirocco-ecmp-unit-never-built", servers).unwrap_err();
            assert!(err.to_string().contains("1 to 8 servers"), "{err}");
        }
    }
}
