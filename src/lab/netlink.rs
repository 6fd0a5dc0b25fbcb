//! A small, synchronous rtnetlink client: what the labs ask of `ip link`, `ip addr` and
//! `ip route`, sent to the kernel directly, so that the labs need no iproute2.
//!
//! A [`Netlink`] is a `NETLINK_ROUTE` socket in one network namespace: the namespace of the
//! thread that opened it ([`Netlink::open`]), or a named one ([`Netlink::open_in`]); it keeps
//! talking to that namespace whichever thread uses it. Every change is a request with
//! `NLM_F_ACK`, and the kernel's answer is awaited: an `NLMSG_ERROR` with a code becomes a
//! [`LabError::Netlink`] naming the operation ("adding 198.18.0.1/24 to veth-cli: File exists").
//!
//! The messages are `netlink-packet-route`'s typed ones; the socket is `netlink-sys`'s, used
//! blocking (the kernel answers rtnetlink requests at once).

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, LinkXdp, State,
    XdpAttached,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use sirocco_drivers::netns;

use super::LabError;

/// One end of a veth pair to create: its name, and the namespace it goes to (`None`: the
/// socket's own).
#[derive(Debug, Clone, Copy)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub namespace: Option<&'a File>,
}

/// What `ip link show IFACE` tells, the parts the labs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// The operational state, as `ip link` prints it (`UP`, `DOWN`, `LOWERLAYERDOWN`...).
    pub state: String,
    pub mac: Option<[u8; 6]>,
    /// The XDP program attached, if any: its id and how (`native`, `generic`, ...).
    pub xdp: Option<(u32, &'static str)>,
}

impl std::fmt::Display for Link {
    /// One line in the manner of `ip link show`, with `prog/xdp id N` only when a program is
    /// attached.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: <{}> mtu {} state {}",
            self.index,
            self.name,
            if self.up { "UP" } else { "DOWN" },
            self.mtu,
            self.state
        )?;
        if let Some(mac) = self.mac {
            let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            write!(f, " link/ether {}", hex.join(":"))?;
        }
        if let Some((id, mode)) = self.xdp {
            write!(f, " prog/xdp id {id} ({mode})")?;
        }
        Ok(())
    }
}

/// One IPv6 address of a namespace, the parts of `ip -6 addr show` the labs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Address {
    /// The interface's index.
    pub index: u32,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    /// Still under duplicate address detection (`tentative`): the kernel does not use it yet.
    pub tentative: bool,
    /// Duplicate address detection found it in use elsewhere (`dadfailed`): never usable.
    pub dad_failed: bool,
}

impl std::fmt::Display for Ipv6Address {
    /// `ADDR/PREFIX`, followed by ` tentative` or ` dadfailed` as `ip -6 addr` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if self.dad_failed {
            f.write_str(" dadfailed")?;
        } else if self.tentative {
            f.write_str(" tentative")?;
        }
        Ok(())
    }
}

/// A `NETLINK_ROUTE` socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish()
    }
}

fn failed(op: impl Into<String>, source: io::Error) -> LabError {
    LabError::Netlink {
        op: op.into(),
        source,
    }
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, LabError> {
        let op = "opening a netlink socket";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| failed(op, e))?;
        socket.bind_auto().map_err(|e| failed(op, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| failed(op, e))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket in the named namespace `ns` (made on a thread that entered it).
    pub fn open_in(ns: &str) -> Result<Netlink, LabError> {
        netns::in_namespace(ns, Netlink::open)
            .map_err(|e| failed(format!("entering network namespace {ns}"), e))?
    }

    /// Sends `message` and collects the answers: for a dump, every part until `NLMSG_DONE`;
    /// otherwise any reply and then the kernel's acknowledgement.
    fn request(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, LabError> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| failed(op, e))?;

        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(|e| failed(op, e))?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).map_err(|e| {
                        failed(
                            op,
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = (reply.header.length as usize).clamp(1, rest.len());
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(_) => Err(failed(op, error.to_io())),
                        };
                    }
                    NetlinkPayload::Done(done) => {
                        return if done.code == 0 {
                            Ok(answers)
                        } else {
                            Err(failed(op, io::Error::from_raw_os_error(-done.code)))
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// `ip link show NAME`.
    pub fn link(&mut self, name: &str) -> Result<Link, LabError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let op = format!("looking up interface {name}");
        let answers = self.request(&op, RouteNetlinkMessage::GetLink(message), 0)?;
        answers
            .into_iter()
            .find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(describe_link(&link)),
                _ => None,
            })
            .ok_or_else(|| failed(op, io::Error::from_raw_os_error(libc::ENODEV)))
    }

    /// `ip link show`: every interface of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, LabError> {
        let answers = self.request(
            "listing interfaces",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(describe_link(link)),
                _ => None,
            })
            .collect())
    }

    fn index(&mut self, name: &str) -> Result<u32, LabError> {
        Ok(self.link(name)?.index)
    }

    /// `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), LabError> {
        let index = self.index(name)?;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("bringing {name} up"),
            RouteNetlinkMessage::SetLink(message),
            0,
        )?;
        Ok(())
    }

    /// `ip link set NAME mtu MTU`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), LabError> {
        let index = self.index(name)?;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(
            &format!("setting the MTU of {name} to {mtu}"),
            RouteNetlinkMessage::SetLink(message),
            0,
        )?;
        Ok(())
    }

    /// `ip link add NAME mtu MTU numtxqueues Q numrxqueues Q type veth peer name PEER mtu MTU
    /// numtxqueues Q numrxqueues Q [netns NS]`: a veth pair, both ends down.
    pub fn add_veth(
        &mut self,
        local: VethEnd<'_>,
        peer: VethEnd<'_>,
        mtu: u32,
        queues: u16,
    ) -> Result<(), LabError> {
        let end = |end: VethEnd<'_>| {
            let mut attributes = vec![
                LinkAttribute::IfName(end.name.to_string()),
                LinkAttribute::Mtu(mtu),
                LinkAttribute::NumTxQueues(u32::from(queues)),
                LinkAttribute::NumRxQueues(u32::from(queues)),
            ];
            if let Some(ns) = end.namespace {
                attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
            }
            attributes
        };
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = end(peer);
        let mut message = LinkMessage::default();
        message.attributes = end(local);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.request(
            &format!("creating the veth pair {} and {}", local.name, peer.name),
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// `ip addr add ADDR/PREFIX dev NAME` (with the broadcast address of the subnet).
    pub fn add_address(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), LabError> {
        let index = self.index(name)?;
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(addr) | host_bits);
        message.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
            AddressAttribute::Broadcast(broadcast),
        ];
        self.request(
            &format!("adding {addr}/{prefix} to {name}"),
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Every address of `family` in the namespace (`ip addr show`), as the kernel describes it.
    fn address_dump(
        &mut self,
        family: AddressFamily,
        op: &str,
    ) -> Result<Vec<AddressMessage>, LabError> {
        let mut message = AddressMessage::default();
        message.header.family = family;
        let answers = self.request(op, RouteNetlinkMessage::GetAddress(message), NLM_F_DUMP)?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(address) => Some(address),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 addresses of the namespace: (interface index, address, prefix length).
    pub fn ipv4_addresses(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, LabError> {
        let mut found = Vec::new();
        for address in self.address_dump(AddressFamily::Inet, "listing addresses")? {
            let local = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            let any = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(std::net::IpAddr::V4(v4)) => Some(*v4),
                _ => None,
            });
            if let Some(addr) = local.or(any) {
                found.push((address.header.index, addr, address.header.prefix_len));
            }
        }
        Ok(found)
    }

    /// `ip -6 addr add ADDR/PREFIX dev NAME nodad`: an IPv6 address with duplicate address
    /// detection off (`IFA_F_NODAD`), usable as soon as the link is up. The lab's addresses
    /// are its own; waiting a second or more for DAD on every lab would only slow tests down.
    pub fn add_address6(&mut self, name: &str, addr: Ipv6Addr, prefix: u8) -> Result<(), LabError> {
        let index = self.index(name)?;
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet6;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.header.flags = AddressHeaderFlags::Nodad;
        message.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
            AddressAttribute::Flags(AddressFlags::Nodad),
        ];
        self.request(
            &format!("adding {addr}/{prefix} to {name}"),
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The IPv6 addresses of the namespace (link-local ones included), with their DAD state.
    pub fn ipv6_addresses(&mut self) -> Result<Vec<Ipv6Address>, LabError> {
        let mut found = Vec::new();
        for address in self.address_dump(AddressFamily::Inet6, "listing IPv6 addresses")? {
            let addr = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V6(v6))
                | AddressAttribute::Address(IpAddr::V6(v6)) => Some(*v6),
                _ => None,
            });
            // IFA_FLAGS holds all 32 bits; the header's byte only the low 8 (old kernels).
            let flags = address
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Flags(flags) => Some(*flags),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    AddressFlags::from_bits_retain(address.header.flags.bits().into())
                });
            if let Some(addr) = addr {
                found.push(Ipv6Address {
                    index: address.header.index,
                    addr,
                    prefix_len: address.header.prefix_len,
                    tentative: flags.contains(AddressFlags::Tentative),
                    dad_failed: flags.contains(AddressFlags::Dadfailed),
                });
            }
        }
        Ok(found)
    }

    /// Waits until IPv6 on interface `name` has settled: `addr` is there, no address of the
    /// interface is tentative or failed, and, with `link_local`, the kernel's fe80:: address
    /// is there too. An address added with `nodad` (and a link-local one with `accept_dad=0`)
    /// stays tentative only until the kernel sees the link operational, a moment after
    /// `set_up` (linkwatch), longer on a busy machine.
    pub fn wait_ipv6_ready(
        &mut self,
        name: &str,
        addr: Ipv6Addr,
        link_local: bool,
        timeout: Duration,
    ) -> Result<(), LabError> {
        let index = self.index(name)?;
        let deadline = Instant::now() + timeout;
        loop {
            let mine: Vec<Ipv6Address> = self
                .ipv6_addresses()?
                .into_iter()
                .filter(|a| a.index == index)
                .collect();
            if let Some(a) = mine.iter().find(|a| a.dad_failed) {
                return Err(failed(
                    format!("adding {} to {name}", a.addr),
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "duplicate address detection found it in use on the link",
                    ),
                ));
            }
            let problem = if !mine.iter().any(|a| a.addr == addr) {
                Some(format!("{addr} is not there"))
            } else if let Some(a) = mine.iter().find(|a| a.tentative) {
                Some(format!("{} is still tentative", a.addr))
            } else if link_local && !mine.iter().any(|a| a.addr.is_unicast_link_local()) {
                Some("no link-local address yet".to_string())
            } else {
                None
            };
            let Some(problem) = problem else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(failed(
                    format!("waiting for IPv6 on {name}"),
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{problem} after {} ms", timeout.as_millis()),
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The addresses of interface `name`, as `ADDR/PREFIX`: IPv4 first, then IPv6 (with
    /// ` tentative` or ` dadfailed` when DAD holds one back).
    pub fn addresses_of(&mut self, name: &str) -> Result<Vec<String>, LabError> {
        let index = self.index(name)?;
        let mut lines: Vec<String> = self
            .ipv4_addresses()?
            .into_iter()
            .filter(|(i, _, _)| *i == index)
            .map(|(_, addr, prefix)| format!("{addr}/{prefix}"))
            .collect();
        lines.extend(
            self.ipv6_addresses()?
                .into_iter()
                .filter(|a| a.index == index)
                .map(|a| a.to_string()),
        );
        Ok(lines)
    }

    /// `ip route add DEST/PREFIX via GATEWAY`.
    pub fn add_route(
        &mut self,
        dest: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    ) -> Result<(), LabError> {
        let mut message = route_message(dest, prefix);
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            &format!("adding the route {dest}/{prefix} via {gateway}"),
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// `ip route add DEST/PREFIX nexthop via GW1 dev IF1 nexthop via GW2 dev IF2 ...`: one
    /// route with a next hop per `(gateway, interface)`, equal weights.
    pub fn add_multipath_route(
        &mut self,
        dest: Ipv4Addr,
        prefix: u8,
        hops: &[(Ipv4Addr, &str)],
    ) -> Result<(), LabError> {
        self.multipath_route("adding", dest, prefix, hops, NLM_F_CREATE | NLM_F_EXCL)
    }

    /// `ip route replace DEST/PREFIX nexthop via GW1 dev IF1 ...`: the route to `dest` now
    /// has these next hops only (as when a health check withdraws a dead host's).
    pub fn replace_multipath_route(
        &mut self,
        dest: Ipv4Addr,
        prefix: u8,
        hops: &[(Ipv4Addr, &str)],
    ) -> Result<(), LabError> {
        self.multipath_route(
            "replacing",
            dest,
            prefix,
            hops,
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn multipath_route(
        &mut self,
        doing: &str,
        dest: Ipv4Addr,
        prefix: u8,
        hops: &[(Ipv4Addr, &str)],
        flags: u16,
    ) -> Result<(), LabError> {
        let mut next_hops = Vec::with_capacity(hops.len());
        for &(gateway, iface) in hops {
            let mut hop = RouteNextHop::default();
            hop.interface_index = self.index(iface)?;
            hop.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway))];
            next_hops.push(hop);
        }
        let mut message = route_message(dest, prefix);
        message
            .attributes
            .push(RouteAttribute::MultiPath(next_hops));
        self.request(
            &format!("{doing} the multipath route {dest}/{prefix}"),
            RouteNetlinkMessage::NewRoute(message),
            flags,
        )?;
        Ok(())
    }

    /// `ip route show DEST/32` in the main table, as lines: `DEST/32 via GW dev IF`, or the
    /// destination followed by one `nexthop via GW dev IF` per next hop.
    pub fn routes_to(&mut self, dest: Ipv4Addr) -> Result<Vec<String>, LabError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let answers = self.request(
            "listing routes",
            RouteNetlinkMessage::GetRoute(message),
            NLM_F_DUMP,
        )?;
        let names: Vec<(u32, String)> = self
            .links()?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect();
        let name = |index: u32| {
            names
                .iter()
                .find(|(i, _)| *i == index)
                .map_or_else(|| format!("if{index}"), |(_, n)| n.clone())
        };
        let gateway = |attributes: &[RouteAttribute]| {
            attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                _ => None,
            })
        };
        let mut lines = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(route) = answer else {
                continue;
            };
            let to = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            });
            if route.header.table != RouteHeader::RT_TABLE_MAIN
                || route.header.destination_prefix_length != 32
                || to != Some(dest)
            {
                continue;
            }
            let mut line = format!("{dest}/32");
            if let Some(gw) = gateway(&route.attributes) {
                line.push_str(&format!(" via {gw}"));
            }
            for attribute in &route.attributes {
                match attribute {
                    RouteAttribute::Oif(index) => line.push_str(&format!(" dev {}", name(*index))),
                    RouteAttribute::MultiPath(hops) => {
                        for hop in hops {
                            line.push_str(" nexthop");
                            if let Some(gw) = gateway(&hop.attributes) {
                                line.push_str(&format!(" via {gw}"));
                            }
                            line.push_str(&format!(" dev {}", name(hop.interface_index)));
                        }
                    }
                    _ => {}
                }
            }
            lines.push(line);
        }
        Ok(lines)
    }
}

/// A unicast route to `dest/prefix` in the main table, as `ip route add` makes it.
fn route_message(dest: Ipv4Addr, prefix: u8) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = prefix;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dest)));
    message
}

fn describe_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        state: "UNKNOWN".to_string(),
        mac: None,
        xdp: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(mac) => link.mac = <[u8; 6]>::try_from(mac.as_slice()).ok(),
            LinkAttribute::OperState(state) => link.state = oper_state(state).to_string(),
            LinkAttribute::Xdp(xdp) => link.xdp = attached_program(xdp),
            _ => {}
        }
    }
    link
}

fn oper_state(state: &State) -> &'static str {
    match state {
        State::Up => "UP",
        State::Down => "DOWN",
        State::LowerLayerDown => "LOWERLAYERDOWN",
        State::Dormant => "DORMANT",
        State::Testing => "TESTING",
        State::NotPresent => "NOTPRESENT",
        _ => "UNKNOWN",
    }
}

/// The XDP program in an `IFLA_XDP` nest: its id and mode, or `None` when none is attached.
fn attached_program(xdp: &[LinkXdp]) -> Option<(u32, &'static str)> {
    let mode = xdp.iter().find_map(|x| match x {
        LinkXdp::Attached(XdpAttached::None) => Some(None),
        LinkXdp::Attached(XdpAttached::Driver) => Some(Some("native")),
        LinkXdp::Attached(XdpAttached::SocketBuffer) => Some(Some("generic")),
        LinkXdp::Attached(XdpAttached::Hardware) => Some(Some("offload")),
        LinkXdp::Attached(_) => Some(Some("multi")),
        _ => None,
    })??;
    let id = xdp
        .iter()
        .find_map(|x| match x {
            LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) | LinkXdp::SkbProgId(id) => Some(*id),
            _ => None,
        })
        .unwrap_or(0);
    Some((id, mode))
}

/// Writes `value` to `/proc/sys/KEY` (`net/ipv4/ip_forward`, say) inside namespace `ns`:
/// `sysctl -w` without procps. Network sysctls belong to the namespace of the writing thread.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), LabError> {
    let op = || format!("setting {}={value} in {ns}", key.replace('/', "."));
    let path = format!("/proc/sys/{key}");
    netns::in_namespace(ns, || std::fs::write(&path, format!("{value}\n")))
        .and_then(|written| written)
        .map_err(|e| failed(op(), e))
}

/// Readies IPv6 on `iface` inside namespace `ns`, before the link comes up: IPv6 on
/// (`disable_ipv6=0`), no duplicate address detection (`accept_dad=0`: the lab's link-local
/// address is usable at once, as its other addresses are with `nodad`), and, unless
/// `link_local`, no kernel link-local address (`addr_gen_mode=1`). The server ends go without
/// one: sirocco derives its own fe80:: address from the same MAC, and the kernel must not
/// claim it too.
pub fn ipv6_link_setup(ns: &str, iface: &str, link_local: bool) -> Result<(), LabError> {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Err(LabError::NoIpv6);
    }
    let conf = |key: &str| format!("net/ipv6/conf/{iface}/{key}");
    sysctl(ns, &conf("disable_ipv6"), "0")?;
    sysctl(ns, &conf("accept_dad"), "0")?;
    if !link_local {
        sysctl(ns, &conf("addr_gen_mode"), "1")?;
    }
    Ok(())
}

/// `ethtool -K IFACE tx off` inside namespace `ns`, through the ethtool ioctl.
pub fn tx_checksum_off(ns: &str, iface: &str) -> Result<(), LabError> {
    use sirocco_drivers::host::{Offload, set_offload};
    netns::in_namespace(ns, || set_offload(iface, Offload::TxChecksum, false))
        .and_then(|set| set)
        .map_err(|e| {
            failed(
                format!("turning TX checksum offload off on {iface} in {ns}"),
                e,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_a_missing_interface_is_a_clear_error() {
        let mut nl = Netlink::open().expect("a netlink socket");
        let lo = nl.link("lo").expect("lo");
        assert_eq!(lo.name, "lo");
        assert!(lo.index > 0 && lo.xdp.is_none());
        assert!(!lo.to_string().contains("xdp"), "{lo}");
        let err = nl.link("sirocco-none0").unwrap_err().to_string();
        assert!(err.contains("looking up interface sirocco-none0"), "{err}");
        assert!(nl.links().unwrap().iter().any(|l| l.name == "lo"));
        let addresses = nl.ipv4_addresses().unwrap();
        assert!(
            addresses
                .iter()
                .any(|(i, a, _)| *i == lo.index && *a == Ipv4Addr::LOCALHOST)
                || !lo.up,
            "{addresses:?}"
        );
    }

    #[test]
    fn ipv6_addresses_are_listed_with_their_dad_state() {
        let mut nl = Netlink::open().expect("a netlink socket");
        let lo = nl.link("lo").expect("lo");
        let addresses = nl.ipv6_addresses().expect("an IPv6 address dump");
        // ::1 is on an up loopback unless IPv6 is off in this kernel or on lo.
        let ipv6_on_lo = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
            .is_ok_and(|v| v.trim() == "0");
        if lo.up && ipv6_on_lo {
            let one = addresses
                .iter()
                .find(|a| a.index == lo.index && a.addr == Ipv6Addr::LOCALHOST)
                .unwrap_or_else(|| panic!("no ::1 on lo in {addresses:?}"));
            assert_eq!((one.prefix_len, one.tentative), (128, false), "{one:?}");
            assert_eq!(one.to_string(), "::1/128");
        }
        let held = Ipv6Address {
            index: 1,
            addr: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
            prefix_len: 64,
            tentative: true,
            dad_failed: false,
        };
        assert_eq!(held.to_string(), "2001:2::1/64 tentative");
        let failed = Ipv6Address {
            dad_failed: true,
            ..held
        };
        assert_eq!(failed.to_string(), "2001:2::1/64 dadfailed");
    }

    #[test]
    fn an_xdp_nest_says_whether_a_program_is_attached() {
        assert_eq!(
            attached_program(&[LinkXdp::Attached(XdpAttached::None)]),
            None
        );
        assert_eq!(
            attached_program(&[LinkXdp::Attached(XdpAttached::Driver), LinkXdp::ProgId(42)]),
            Some((42, "native"))
        );
        assert_eq!(attached_program(&[]), None);
    }
}
