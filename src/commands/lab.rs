//! `sirocco lab up|down|status`: the veth lab from the command line.
//!
//! `up` builds a [`VethLab`] and leaves it in place, then prints its namespaces, interfaces and
//! addresses with the exact commands that serve from it and fetch from it. `down` removes it.
//! `status` says whether it exists and shows the server end's link (with the XDP program, when
//! a server is attached) and the addresses of both ends.

use std::process::Command;

use anyhow::{Context, bail};

use crate::cli::{LabAction, LabArgs};
use crate::lab::veth::{CLIENT_IFACE, MTU, SERVER_IFACE, VethLab};
use crate::lab::{self, CLIENT_ADDR, LabError, PREFIX_LEN, SERVER_ADDR};

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let name = match &args.action {
        LabAction::Up { name } | LabAction::Down { name } | LabAction::Status { name } => name,
    };
    check_name(name)?;
    if !lab::is_root() {
        return Err(LabError::NotRoot.into());
    }
    if !command_runs("ip", "-V") {
        return Err(LabError::NoIproute2.into());
    }
    match args.action {
        LabAction::Up { name } => up(&name),
        LabAction::Down { name } => down(&name),
        LabAction::Status { name } => status(&name),
    }
}

/// Namespace names become file names under /run/netns and appear in commands a person types,
/// so keep them to a plain, shell-safe alphabet.
fn check_name(name: &str) -> anyhow::Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(plain) {
        bail!(
            "lab name '{name}' is not usable: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' (e.g. --name sirocco-lab)"
        );
    }
    Ok(())
}

fn up(name: &str) -> anyhow::Result<()> {
    if !command_runs("ethtool", "--version") {
        return Err(LabError::NoEthtool.into());
    }
    // Checked here rather than left to `VethLab::create`: a lab that is there must be left
    // exactly as it is (a `VethLab` value that is dropped removes its namespaces).
    let present = existing_namespaces(name);
    if present.len() == 2 {
        return Err(LabError::Exists(name.to_string()).into());
    }
    if !present.is_empty() {
        bail!(
            "part of a lab named {name} is left over ({}): remove it with `sirocco lab down --name {name}`, then try again",
            present.join(", ")
        );
    }
    let lab = VethLab::create(name).with_context(|| format!("creating the lab {name}"))?;
    let exe = current_exe();
    let (srv, cli) = (lab.server_ns().to_string(), lab.client_ns().to_string());
    let url = format!("http://{SERVER_ADDR}/");
    println!("lab {name} is up");
    println!("  server namespace: {srv}");
    println!(
        "    {SERVER_IFACE}  no kernel address; sirocco serves {SERVER_ADDR}/{PREFIX_LEN} on it with AF_XDP (mtu {MTU})"
    );
    println!("  client namespace: {cli}");
    println!(
        "    {CLIENT_IFACE}  {CLIENT_ADDR}/{PREFIX_LEN} (kernel TCP/IP; tx checksum offload off) (mtu {MTU})"
    );
    println!();
    println!("serve (Ctrl-C stops it):");
    println!(
        "  ip netns exec {srv} {exe} serve --driver afxdp --iface {SERVER_IFACE} --ip {SERVER_ADDR}/{PREFIX_LEN} --root www --idle-wait"
    );
    println!("fetch:");
    println!("  {}", lab.curl_hint(&url));
    println!("  ip netns exec {cli} ping -c 3 {SERVER_ADDR}");
    println!("status and removal:");
    println!("  {exe} lab status --name {name}");
    println!("  {exe} lab down --name {name}");
    lab.keep();
    Ok(())
}

fn down(name: &str) -> anyhow::Result<()> {
    let present = existing_namespaces(name);
    if present.is_empty() {
        bail!(
            "there is no lab named {name} (no namespace {name}-srv or {name}-cli): `sirocco lab up --name {name}` creates one"
        );
    }
    let server_ns = format!("{name}-srv");
    let busy = namespace_pids(&server_ns);
    // Dropping the value deletes both namespaces, and with them the veth pair.
    drop(VethLab::named(name));
    let left = existing_namespaces(name);
    if !left.is_empty() {
        bail!(
            "could not remove {} (try `ip netns del NAME`)",
            left.join(", ")
        );
    }
    println!("lab {name} removed ({})", present.join(", "));
    if !busy.is_empty() {
        println!(
            "note: processes were still running in {server_ns} (pids {}); their network namespace lives until they exit",
            busy.join(" ")
        );
    }
    Ok(())
}

fn status(name: &str) -> anyhow::Result<()> {
    let lab = VethLab::named(name);
    let present = existing_namespaces(name);
    if present.is_empty() {
        println!("lab {name}: down (no namespace {name}-srv or {name}-cli)");
        println!("  create it with `sirocco lab up --name {name}`");
        lab.keep();
        return Ok(());
    }
    if !lab.exists() {
        println!(
            "lab {name}: partly there ({} only); remove it with `sirocco lab down --name {name}`",
            present.join(", ")
        );
        lab.keep();
        return Ok(());
    }
    println!("lab {name}: up");
    let (srv, cli) = (lab.server_ns().to_string(), lab.client_ns().to_string());
    match lab.server_link() {
        Ok(link) => {
            println!("server namespace {srv}: ip -n {srv} link show {SERVER_IFACE}");
            for line in link.lines() {
                println!("  {line}");
            }
            if link.contains("xdp") {
                let pids = namespace_pids(&srv);
                println!(
                    "  XDP program attached: a server is running (pids in {srv}: {})",
                    if pids.is_empty() {
                        "none".to_string()
                    } else {
                        pids.join(" ")
                    }
                );
            } else {
                println!("  no XDP program attached: no AF_XDP server is running");
            }
        }
        Err(error) => println!("  {SERVER_IFACE}: {error}"),
    }
    print_addresses(&srv, SERVER_IFACE);
    println!(
        "  sirocco's address (not the kernel's): {SERVER_ADDR}/{PREFIX_LEN} when a server runs"
    );
    println!("client namespace {cli}:");
    print_addresses(&cli, CLIENT_IFACE);
    lab.keep();
    Ok(())
}

/// Prints the kernel's IPv4 addresses on `iface` in namespace `ns`.
fn print_addresses(ns: &str, iface: &str) {
    match lab::ip(&["-n", ns, "-4", "-o", "addr", "show", "dev", iface]) {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let addrs: Vec<&str> = text
                .lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    words.find(|w| *w == "inet").and_then(|_| words.next())
                })
                .collect();
            if addrs.is_empty() {
                println!("  {iface} kernel addresses: none");
            } else {
                println!("  {iface} kernel addresses: {}", addrs.join(", "));
            }
        }
        Err(error) => println!("  {iface} addresses: {error}"),
    }
}

/// Which of the lab's two namespaces exist.
fn existing_namespaces(name: &str) -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let text = listed
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    [format!("{name}-srv"), format!("{name}-cli")]
        .into_iter()
        .filter(|ns| names.contains(&ns.as_str()))
        .collect()
}

/// The pids of processes inside namespace `ns` (`ip netns pids`).
fn namespace_pids(ns: &str) -> Vec<String> {
    lab::ip(&["netns", "pids", ns])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn command_runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The path of this binary, for commands a person copies (falls back to `sirocco` on PATH).
fn current_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sirocco".to_string())
}
