//! The labs: throwaway network namespaces that play the client side of a link to sirocco.
//!
//! `sirocco demo`, `sirocco lab`, the lab tests and the benchmarks build their labs through this
//! module. Names are unique per process and per lab, addresses come from the benchmarking range
//! 198.18.0.0/15 (RFC 2544), and [`Drop`] removes the namespaces even when a test fails.
//!
//! - [`Lab`] is one namespace around a tap device: sirocco runs inside it and creates the tap
//!   there, and the lab gives the kernel's side of the tap the client address, so the kernel's
//!   own stack becomes the client.
//! - [`veth::VethLab`] is two namespaces joined by a veth pair, for AF_XDP.
//! - [`ecmp::EcmpLab`] is a client, a router and several sirocco hosts serving one anycast
//!   address, the router spreading connections over them by ECMP.

pub mod ecmp;
pub mod veth;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The client's address inside the lab.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The address sirocco serves on in the lab.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const PREFIX_LEN: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "building a lab needs root (network namespaces, veth pairs, tap devices and XDP): run as root, e.g. with sudo"
    )]
    NotRoot,
    #[error("the 'ip' command (iproute2) was not found: install it, e.g. apt-get install iproute2")]
    NoIproute2,
    #[error("ethtool was not found: install it, e.g. apt-get install ethtool")]
    NoEthtool,
    #[error(
        "a lab named {0} already exists: remove it with `sirocco lab down --name {0}`, or pick another name"
    )]
    Exists(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
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
        if !iproute2_present() {
            return Err(LabError::NoIproute2);
        }
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("sirocco-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &namespace])?;
        let lab = Lab { namespace };
        ip(&["-n", &lab.namespace, "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A tap name unique to this process, short enough for IFNAMSIZ (15 bytes).
    pub fn unique_tap_name() -> String {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("srt{}x{n}", std::process::id() % 1_000_000)
    }

    /// Gives `device`, already inside the lab, the client address and brings it up.
    pub fn configure_client_link(&self, device: &str) -> Result<(), LabError> {
        let client = format!("{CLIENT_ADDR}/{PREFIX_LEN}");
        ip(&["-n", &self.namespace, "addr", "add", &client, "dev", device])?;
        ip(&["-n", &self.namespace, "link", "set", device, "up"])?;
        Ok(())
    }

    /// A command that runs `program` inside the lab namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace, program]);
        command
    }

    /// The shell command a person types to fetch `url` from the client side.
    pub fn curl_hint(&self, url: &str) -> String {
        format!("ip netns exec {} curl {url}", self.namespace)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Nothing useful can be done about a failed delete in Drop; the name is unique, so a
        // leftover namespace never breaks a later lab.
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}

/// Runs `ip ARGS`, turning a failure into an error that quotes the command and its stderr.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|_| LabError::NoIproute2)?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// True when running as root. Reads the owner of `/proc/self`, which the kernel sets to the
/// process's effective uid, so no `unsafe` libc call is needed here.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn iproute2_present() -> bool {
    Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The names of the network namespaces that exist (`ip netns list`); empty if it fails.
pub fn namespaces() -> Vec<String> {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
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

/// The kernel interfaces in the current namespace that already hold `addr`, if any.
pub fn kernel_interfaces_with(addr: Ipv4Addr) -> Vec<String> {
    let Ok(output) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    let needle = format!("inet {addr}/");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect()
}
