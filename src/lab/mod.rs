//! The labs: throwaway network namespaces that play the client side of a link to sirocco.
//!
//! `sirocco demo`, `sirocco lab`, the lab tests and the benchmarks build their labs through this
//! module. Names are unique per process and per lab, addresses come from the benchmarking ranges
//! 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180), and [`Drop`] removes the namespaces even
//! when a test fails. IPv6 addresses are added without duplicate address detection, so none is
//! ever held back as tentative for long (the ECMP lab is IPv4 only).
//!
//! Building a lab takes root and nothing else: namespaces are made as `ip netns add` makes
//! them ([`sirocco_drivers::netns`]), links, addresses and routes over rtnetlink
//! ([`netlink`]), offloads through the ethtool ioctl, and programs are started inside a
//! namespace by entering it in the child ([`netns_command`]). No `ip`, `ethtool` or `sysctl`
//! program is run.
//!
//! - [`Lab`] is one namespace around a tap device: sirocco runs inside it and creates the tap
//!   there, and the lab gives the kernel's side of the tap the client address, so the kernel's
//!   own stack becomes the client.
//! - [`veth::VethLab`] is two namespaces joined by a veth pair, for AF_XDP.
//! - [`ecmp::EcmpLab`] is a client, a router and several sirocco hosts serving one anycast
//!   address, the router spreading connections over them by ECMP.

pub mod ecmp;
pub mod fetch;
pub mod netlink;
pub mod veth;

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sirocco_drivers::netns;

use self::netlink::Netlink;

/// The client's address inside the lab.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The address sirocco serves on in the lab.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PREFIX_LEN: u8 = 24;
/// The client's IPv6 address inside the lab (benchmarking prefix 2001:2::/48, RFC 5180).
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// The IPv6 address sirocco serves on in the lab.
pub const SERVER_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
pub const PREFIX_LEN6: u8 = 64;
/// How long a lab waits for an IPv6 address to leave the tentative state once its link is
/// up (with `nodad` it does as soon as the kernel sees the link operational).
pub(crate) const IPV6_READY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "building a lab needs root (network namespaces, veth pairs, tap devices and XDP): run as root, e.g. with sudo"
    )]
    NotRoot,
    #[error(
        "a lab named {0} already exists: remove it with `sirocco lab down --name {0}`, or pick another name"
    )]
    Exists(String),
    #[error(
        "the labs need IPv6, and this kernel has it turned off (no /proc/sys/net/ipv6: booted with ipv6.disable=1?)"
    )]
    NoIpv6,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// A request to the kernel (netlink, a namespace, a sysctl, the ethtool ioctl) failed.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the named namespace `ns` with its loopback up (`ip netns add NS` and
/// `ip -n NS link set lo up`).
pub(crate) fn add_namespace(ns: &str) -> Result<(), LabError> {
    netns::create(ns).map_err(|source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return LabError::NotRoot;
        }
        LabError::Netlink {
            op: format!("creating network namespace {ns}"),
            source,
        }
    })?;
    let lo_up = Netlink::open_in(ns).and_then(|mut netlink| netlink.set_up("lo"));
    if lo_up.is_err() {
        delete_namespace(ns);
    }
    lo_up
}

/// Removes the named namespace `ns` (`ip netns del NS`); a name that is not there is no error.
pub(crate) fn delete_namespace(ns: &str) {
    // Nothing useful can be done about a failed delete: this runs in Drop and `lab down`,
    // which check what is left afterwards.
    let _ = netns::delete(ns);
}

/// A command that runs `program` inside namespace `ns`, as `ip netns exec NS PROGRAM` does
/// (but without iproute2: the child enters the namespace itself before it runs `program`).
pub fn netns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    netns::enter_in_child(&mut command, ns);
    command
}

/// A network namespace that is removed on drop.
#[derive(Debug)]
pub struct Lab {
    namespace: String,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Creates an empty namespace named `sirocco-<tag>-<pid>-<n>` with its loopback up.
    pub fn create(tag: &str) -> Result<Lab, LabError> {
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("sirocco-{tag}-{}-{n}", std::process::id());
        add_namespace(&namespace)?;
        Ok(Lab { namespace })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A tap name unique to this process, short enough for IFNAMSIZ (15 bytes).
    pub fn unique_tap_name() -> String {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("srt{}x{n}", std::process::id() % 1_000_000)
    }

    /// Gives `device`, already inside the lab, the client addresses ([`CLIENT_ADDR`] and
    /// [`CLIENT_ADDR6`], the latter without duplicate address detection) and brings it up.
    /// It does not wait for the IPv6 address to leave the tentative state: that happens once
    /// the tap has a carrier, which is when sirocco holds it open.
    pub fn configure_client_link(&self, device: &str) -> Result<(), LabError> {
        netlink::ipv6_link_setup(&self.namespace, device, true)?;
        let mut netlink = Netlink::open_in(&self.namespace)?;
        netlink.add_address(device, CLIENT_ADDR, PREFIX_LEN)?;
        netlink.add_address6(device, CLIENT_ADDR6, PREFIX_LEN6)?;
        netlink.set_up(device)
    }

    /// A command that runs `program` inside the lab namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        netns_command(&self.namespace, program)
    }

    /// The shell command a person types to fetch `url` from the client side.
    pub fn curl_hint(&self, url: &str) -> String {
        format!("ip netns exec {} curl {url}", self.namespace)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The name is unique, so a leftover namespace never breaks a later lab.
        delete_namespace(&self.namespace);
    }
}

/// True when running as root. Reads the owner of `/proc/self`, which the kernel sets to the
/// process's effective uid, so no `unsafe` libc call is needed here.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The names of the network namespaces that exist (`ip netns list`).
pub fn namespaces() -> Vec<String> {
    netns::list()
}

/// Whether a network interface called `name` exists in the current namespace.
pub fn interface_exists(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

/// The MAC address of interface `name`, from sysfs.
pub fn interface_mac(name: &str) -> Option<[u8; 6]> {
    if !interface_exists(name) {
        return None;
    }
    let text =
        std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("address")).ok()?;
    crate::cli::parse_mac(text.trim()).ok()
}

/// Whether the existing interface `name` is a tun/tap device.
pub fn is_tun_device(name: &str) -> bool {
    interface_exists(name)
        && Path::new("/sys/class/net")
            .join(name)
            .join("tun_flags")
            .exists()
}

/// Names of the interfaces in the current namespace, for error messages.
pub fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The kernel interfaces in the current namespace that already hold `addr` (IPv4 or IPv6),
/// if any (asked over netlink; empty if that fails).
pub fn kernel_interfaces_with(addr: impl Into<IpAddr>) -> Vec<String> {
    let Ok(mut netlink) = Netlink::open() else {
        return Vec::new();
    };
    let Ok(links) = netlink.links() else {
        return Vec::new();
    };
    let indexes: Vec<u32> = match addr.into() {
        IpAddr::V4(addr) => netlink
            .ipv4_addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, a, _)| *a == addr)
            .map(|(index, _, _)| index)
            .collect(),
        IpAddr::V6(addr) => netlink
            .ipv6_addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.addr == addr)
            .map(|a| a.index)
            .collect(),
    };
    indexes
        .iter()
        .filter_map(|index| links.iter().find(|l| l.index == *index))
        .map(|l| l.name.clone())
        .collect()
}
