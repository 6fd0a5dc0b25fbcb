//! The veth lab: two network namespaces joined by a veth pair, the setting for AF_XDP tests,
//! `sirocco demo`, and side-by-side benchmarks.
//!
//! ```text
//!  <name>-srv namespace                 <name>-cli namespace
//!  veth-srv (no kernel address;  <====>  veth-cli 198.18.0.1/24, 2001:2::1/64,
//!            sirocco serves 198.18.0.2            TX checksum offload off
//!            and 2001:2::2 with AF_XDP)
//! ```
//!
//! IPv6 is on at both ends without duplicate address detection (`accept_dad=0`, addresses
//! added `nodad`), so no address is ever held back as tentative, and [`VethLab::create`]
//! returns once the client's addresses (2001:2::1 and its link-local one) are usable. The
//! server end has no kernel link-local address (`addr_gen_mode=1`): the fe80:: address
//! derived from its MAC is sirocco's.
//!
//! Each end lives in its own namespace, so the interface names are the same in every lab and
//! never collide; only the namespace names are unique. TX checksum offload is off on the client
//! end: otherwise the kernel sends TCP with only the pseudo-header sum (CHECKSUM_PARTIAL), and
//! sirocco would rightly drop it. The MTU stays at 1500, under the 3506 limit of native XDP on
//! veth. [`Drop`] removes both namespaces (and with them the veth pair) unless the lab was
//! [`VethLab::keep`]-ed for `sirocco lab up`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sirocco_drivers::netns;

use super::netlink::{Link, Netlink, VethEnd, ipv6_link_setup, tx_checksum_off};
use super::{
    CLIENT_ADDR, CLIENT_ADDR6, IPV6_READY_TIMEOUT, LabError, PREFIX_LEN, PREFIX_LEN6,
    add_namespace, delete_namespace, is_root, netns_command,
};

/// The server's end of the veth pair, inside the server namespace.
pub const SERVER_IFACE: &str = "veth-srv";
/// The client's end of the veth pair, inside the client namespace.
pub const CLIENT_IFACE: &str = "veth-cli";
/// MTU of both ends: plain Ethernet, within native XDP's limit on veth.
pub const MTU: u32 = 1500;

static UNIQUE: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub struct VethLab {
    name: String,
    server_ns: String,
    client_ns: String,
    remove_on_drop: bool,
}

impl VethLab {
    /// Creates the lab `name`: namespaces `<name>-srv` and `<name>-cli` joined by a veth pair
    /// with one queue each way.
    pub fn create(name: &str) -> Result<VethLab, LabError> {
        VethLab::create_with_queues(name, 1)
    }

    /// The same with `queues` RX and TX queues on each end, for one engine per queue
    /// (`serve --queues`). veth hands a frame sent on TX queue i to the peer's RX queue i, and
    /// the client's kernel spreads its connections over its TX queues by flow hash, so
    /// different connections reach different server queues as RSS would spread them on a NIC.
    pub fn create_with_queues(name: &str, queues: u16) -> Result<VethLab, LabError> {
        if queues == 0 {
            return Err(LabError::Command {
                command: "creating a veth lab".into(),
                stderr: "a lab needs at least one queue".into(),
            });
        }
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let lab = VethLab::named(name);
        if lab.exists() {
            // The lab that is there belongs to someone else: leave it exactly as it is.
            lab.keep();
            return Err(LabError::Exists(name.to_string()));
        }
        add_namespace(&lab.server_ns)?;
        // From here on, Drop cleans up whatever part was built.
        add_namespace(&lab.client_ns)?;
        let client_ns = netns::open(&lab.client_ns).map_err(|source| LabError::Netlink {
            op: format!("opening network namespace {}", lab.client_ns),
            source,
        })?;
        let mut server = Netlink::open_in(&lab.server_ns)?;
        server.add_veth(
            VethEnd {
                name: SERVER_IFACE,
                namespace: None,
            },
            VethEnd {
                name: CLIENT_IFACE,
                namespace: Some(&client_ns),
            },
            MTU,
            queues,
        )?;
        ipv6_link_setup(&lab.server_ns, SERVER_IFACE, false)?;
        server.set_up(SERVER_IFACE)?;
        ipv6_link_setup(&lab.client_ns, CLIENT_IFACE, true)?;
        let mut client = Netlink::open_in(&lab.client_ns)?;
        client.add_address(CLIENT_IFACE, CLIENT_ADDR, PREFIX_LEN)?;
        client.add_address6(CLIENT_IFACE, CLIENT_ADDR6, PREFIX_LEN6)?;
        client.set_up(CLIENT_IFACE)?;
        tx_checksum_off(&lab.client_ns, CLIENT_IFACE)?;
        // Clients may connect to 2001:2::2 as soon as this returns.
        client.wait_ipv6_ready(CLIENT_IFACE, CLIENT_ADDR6, true, IPV6_READY_TIMEOUT)?;
        Ok(lab)
    }

    /// Creates a lab with a name unique to this process and call: `sirocco-<tag>-<pid>-<n>`.
    pub fn create_unique(tag: &str) -> Result<VethLab, LabError> {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        VethLab::create(&format!("sirocco-{tag}-{}-{n}", std::process::id()))
    }

    /// The lab `name` as it may exist already (for `sirocco lab down|status`). Dropping the
    /// returned value removes it; [`VethLab::keep`] does not.
    pub fn named(name: &str) -> VethLab {
        VethLab {
            name: name.to_string(),
            server_ns: format!("{name}-srv"),
            client_ns: format!("{name}-cli"),
            remove_on_drop: true,
        }
    }

    /// Leaves the lab in place when this value is dropped.
    pub fn keep(mut self) {
        self.remove_on_drop = false;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn server_ns(&self) -> &str {
        &self.server_ns
    }

    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    /// Whether both namespaces of this lab exist.
    pub fn exists(&self) -> bool {
        netns::exists(&self.server_ns) && netns::exists(&self.client_ns)
    }

    /// A command that runs `program` in the server namespace.
    pub fn server_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.server_ns, program)
    }

    /// A command that runs `program` in the client namespace.
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(&self.client_ns, program)
    }

    /// Gives the server end a kernel-owned address too (e.g. 198.18.0.3), to show that the
    /// kernel keeps serving its own addresses beside sirocco's filter program.
    pub fn add_kernel_server_address(&self, addr: Ipv4Addr) -> Result<(), LabError> {
        Netlink::open_in(&self.server_ns)?.add_address(SERVER_IFACE, addr, PREFIX_LEN)
    }

    /// The IPv6 twin of [`VethLab::add_kernel_server_address`] (e.g. 2001:2::3/64, without
    /// duplicate address detection); returns once the kernel can use it.
    pub fn add_kernel_server_address6(&self, addr: Ipv6Addr) -> Result<(), LabError> {
        let mut server = Netlink::open_in(&self.server_ns)?;
        server.add_address6(SERVER_IFACE, addr, PREFIX_LEN6)?;
        server.wait_ipv6_ready(SERVER_IFACE, addr, false, IPV6_READY_TIMEOUT)
    }

    /// `ip -n <srv> link show veth-srv`: the state of the server end as one line, with
    /// `prog/xdp id N` when an XDP program is attached (and no `xdp` otherwise).
    pub fn server_link(&self) -> Result<String, LabError> {
        Ok(self.server_link_state()?.to_string())
    }

    /// The state of the server end, read over netlink.
    pub fn server_link_state(&self) -> Result<Link, LabError> {
        Netlink::open_in(&self.server_ns)?.link(SERVER_IFACE)
    }

    /// The shell command a person types to fetch `url` from the client side.
    pub fn curl_hint(&self, url: &str) -> String {
        format!("ip netns exec {} curl {url}", self.client_ns)
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // Deleting a namespace destroys the veth end inside it, and with it the pair.
            delete_namespace(&self.server_ns);
            delete_namespace(&self.client_ns);
        }
    }
}
