//! `sirocco lab up|down|status`: the labs from the command line.
//!
//! `up` builds a [`VethLab`] (or, with `--servers 2` and more, an [`EcmpLab`]) and leaves it in
//! place, then prints its namespaces, interfaces and addresses with the exact commands that
//! serve from it and fetch from it. `down` removes it. `status` says whether it exists and
//! shows the server ends' links (with the XDP program, when a server is attached), the
//! addresses, and for an ECMP lab the router's multipath route. `down` and `status` tell the
//! two kinds apart by their namespace names: only an ECMP lab has `<name>-rtr` and
//! `<name>-hN`.

use anyhow::{Context, bail};
use sirocco_drivers::netns;

use crate::cli::{LabAction, LabArgs};
use crate::lab::ecmp::{self, ANYCAST_ADDR, EcmpLab};
use crate::lab::veth::{CLIENT_IFACE, MTU, SERVER_IFACE, VethLab};
use crate::lab::{
    self, CLIENT_ADDR, CLIENT_ADDR6, LabError, PREFIX_LEN, PREFIX_LEN6, SERVER_ADDR, SERVER_ADDR6,
};

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    let name = match &args.action {
        LabAction::Up { name, .. } | LabAction::Down { name } | LabAction::Status { name } => name,
    };
    check_name(name)?;
    if let LabAction::Up {
        servers,
        queues: Some(queues),
        ..
    } = args.action
        && servers > 1
    {
        bail!(
            "--queues {queues} is for the plain lab (--servers 1): the links of an ECMP lab have one queue each"
        );
    }
    if !lab::is_root() {
        return Err(LabError::NotRoot.into());
    }
    match args.action {
        LabAction::Up {
            name,
            servers,
            queues,
        } => up(&name, servers, queues.unwrap_or(1)),
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

fn up(name: &str, servers: u8, queues: u16) -> anyhow::Result<()> {
    // Checked here rather than left to the labs' `create`: a lab that is there must be left
    // exactly as it is (a lab value that is dropped removes its namespaces).
    let plain = existing_namespaces(name);
    let multi = ecmp::existing_namespaces(name);
    if plain.len() == 2 || !multi.is_empty() {
        return Err(LabError::Exists(name.to_string()).into());
    }
    if !plain.is_empty() {
        bail!(
            "part of a lab named {name} is left over ({}): remove it with `sirocco lab down --name {name}`, then try again",
            plain.join(", ")
        );
    }
    if servers > 1 {
        return up_ecmp(name, servers);
    }
    let lab = VethLab::create_with_queues(name, queues)
        .with_context(|| format!("creating the lab {name}"))?;
    let exe = current_exe();
    let (srv, cli) = (lab.server_ns().to_string(), lab.client_ns().to_string());
    let curl = lab.curl_hint(&format!("http://{SERVER_ADDR}/"));
    let curl6 = lab.curl_hint(&format!("http://[{SERVER_ADDR6}]/"));
    // Kept before anything is printed: a print that panics (stdout closed, as with `| head`)
    // must not take the new lab down with it.
    lab.keep();
    println!("lab {name} is up");
    println!("  server namespace: {srv}");
    println!(
        "    {SERVER_IFACE}  no kernel address; sirocco serves {SERVER_ADDR}/{PREFIX_LEN} and {SERVER_ADDR6}/{PREFIX_LEN6} on it with AF_XDP (mtu {MTU})"
    );
    println!("  client namespace: {cli}");
    println!(
        "    {CLIENT_IFACE}  {CLIENT_ADDR}/{PREFIX_LEN} and {CLIENT_ADDR6}/{PREFIX_LEN6} (kernel TCP/IP; tx checksum offload off; IPv6 without DAD) (mtu {MTU})"
    );
    if queues > 1 {
        println!(
            "  {queues} RX and TX queues on each end: the client's connections spread over the server's queues 0 to {} by flow hash; `serve` runs one engine per queue (--queues picks them, --stats-per-queue shows each)",
            queues - 1
        );
    }
    println!();
    println!("serve (Ctrl-C stops it):");
    println!(
        "  ip netns exec {srv} {exe} serve --driver afxdp --iface {SERVER_IFACE} --ip {SERVER_ADDR}/{PREFIX_LEN} --ip {SERVER_ADDR6}/{PREFIX_LEN6} --root www --sleep-when-idle"
    );
    println!("fetch:");
    println!("  {curl}");
    println!("  {curl6}");
    println!("  ip netns exec {cli} ping -c 3 {SERVER_ADDR}");
    println!("  ip netns exec {cli} ping -6 -c 3 {SERVER_ADDR6}");
    println!("status and removal:");
    println!("  {exe} lab status --name {name}");
    println!("  {exe} lab down --name {name}");
    Ok(())
}

/// `up --servers N` with N from 2: the ECMP lab.
fn up_ecmp(name: &str, servers: u8) -> anyhow::Result<()> {
    let mut lab =
        EcmpLab::create(name, servers).with_context(|| format!("creating the ECMP lab {name}"))?;
    // Kept before anything is printed: a print that panics must not remove the new lab.
    lab.keep();
    let exe = current_exe();
    let (cli, rtr) = (lab.client_ns(), lab.router_ns());
    let len = ecmp::LINK_PREFIX_LEN;
    println!(
        "lab {name} is up: {servers} sirocco hosts behind a router, all serving {ANYCAST_ADDR}"
    );
    println!("  client namespace: {cli}");
    println!(
        "    {}  {}/{len}, route 198.18.0.0/15 via {} (kernel TCP/IP) (mtu {})",
        ecmp::CLIENT_IFACE,
        ecmp::CLIENT_ADDR,
        ecmp::ROUTER_CLIENT_ADDR,
        ecmp::MTU
    );
    println!("  router namespace: {rtr}");
    println!(
        "    {}  {}/{len}",
        ecmp::ROUTER_CLIENT_IFACE,
        ecmp::ROUTER_CLIENT_ADDR
    );
    for n in 1..=servers {
        println!(
            "    {}   {}/{len} (tx checksum offload off)",
            ecmp::router_host_iface(n),
            ecmp::router_host_addr(n)
        );
    }
    let hops: Vec<String> = (1..=servers)
        .map(|n| format!("nexthop via {}", ecmp::host_link_addr(n)))
        .collect();
    println!("    route {ANYCAST_ADDR}/32 {}", hops.join(" "));
    println!(
        "    ip_forward=1, fib_multipath_hash_policy=1 (L4 hash: each connection sticks to one host)"
    );
    println!("  host namespaces:");
    for n in 1..=servers {
        println!(
            "    {}  {}  {}/{len} (kernel: answers the router's ARP for this next hop); sirocco serves {ANYCAST_ADDR} on it with AF_XDP",
            lab.host_ns(n),
            ecmp::HOST_IFACE,
            ecmp::host_link_addr(n)
        );
    }
    println!();
    println!("serve, one per host (each in its own terminal; Ctrl-C stops it):");
    let serve = EcmpLab::serve_args("www").join(" ");
    for n in 1..=servers {
        println!("  ip netns exec {} {exe} {serve}", lab.host_ns(n));
    }
    println!("fetch (each connection goes to one host; the hosts' stats lines show which):");
    println!("  {}", lab.curl_hint(&format!("http://{ANYCAST_ADDR}/")));
    println!(
        "  for i in $(seq 20); do ip netns exec {cli} curl -s -o /dev/null http://{ANYCAST_ADDR}/; done"
    );
    println!("status and removal:");
    println!("  {exe} lab status --name {name}");
    println!("  {exe} lab down --name {name}");
    Ok(())
}

fn down(name: &str) -> anyhow::Result<()> {
    if let Some(multi) = EcmpLab::existing(name) {
        return down_ecmp(multi);
    }
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
            "could not remove {} (see `findmnt /run/netns`: something holds it)",
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

fn down_ecmp(multi: EcmpLab) -> anyhow::Result<()> {
    let name = multi.name().to_string();
    let present = ecmp::existing_namespaces(&name);
    let busy: Vec<(String, Vec<String>)> = (1..=multi.servers())
        .map(|n| multi.host_ns(n))
        .map(|ns| {
            let pids = namespace_pids(&ns);
            (ns, pids)
        })
        .filter(|(_, pids)| !pids.is_empty())
        .collect();
    // Deletes every namespace of the lab, and with them the veth pairs.
    multi.remove();
    let left = ecmp::existing_namespaces(&name);
    if !left.is_empty() {
        bail!(
            "could not remove {} (see `findmnt /run/netns`: something holds it)",
            left.join(", ")
        );
    }
    println!("ECMP lab {name} removed ({})", present.join(", "));
    for (ns, pids) in busy {
        println!(
            "note: processes were still running in {ns} (pids {}); their network namespace lives until they exit",
            pids.join(" ")
        );
    }
    Ok(())
}

fn status(name: &str) -> anyhow::Result<()> {
    if let Some(multi) = EcmpLab::existing(name) {
        status_ecmp(&multi);
        return Ok(());
    }
    // Everything the lab value tells is read before anything is printed, and the value is
    // kept at once: a print that panics (stdout closed, as with `| head`) must not remove it.
    let lab = VethLab::named(name);
    let (exists, link) = (lab.exists(), lab.server_link_state());
    let (srv, cli) = (lab.server_ns().to_string(), lab.client_ns().to_string());
    lab.keep();
    let present = existing_namespaces(name);
    if present.is_empty() {
        println!("lab {name}: down (no namespace {name}-srv or {name}-cli)");
        println!("  create it with `sirocco lab up --name {name}`");
        return Ok(());
    }
    if !exists {
        println!(
            "lab {name}: partly there ({} only); remove it with `sirocco lab down --name {name}`",
            present.join(", ")
        );
        return Ok(());
    }
    println!("lab {name}: up");
    match link {
        Ok(link) => {
            println!("server namespace {srv}: ip -n {srv} link show {SERVER_IFACE}");
            println!("  {link}");
            if link.xdp.is_some() {
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
        "  sirocco's addresses (not the kernel's): {SERVER_ADDR}/{PREFIX_LEN} and {SERVER_ADDR6}/{PREFIX_LEN6} when a server runs"
    );
    println!("client namespace {cli}:");
    print_addresses(&cli, CLIENT_IFACE);
    Ok(())
}

fn status_ecmp(multi: &EcmpLab) {
    let name = multi.name();
    let present = ecmp::existing_namespaces(name);
    let expected = ecmp::lab_namespaces(name, multi.servers());
    let missing: Vec<&String> = expected.iter().filter(|ns| !present.contains(ns)).collect();
    if multi.servers() < 2 || !missing.is_empty() {
        println!(
            "ECMP lab {name}: partly there ({} only); remove it with `sirocco lab down --name {name}`",
            present.join(", ")
        );
        return;
    }
    println!("ECMP lab {name}: up, {} hosts", multi.servers());
    let (cli, rtr) = (multi.client_ns(), multi.router_ns());
    println!("client namespace {cli}:");
    print_addresses(&cli, ecmp::CLIENT_IFACE);
    println!("router namespace {rtr}: ip -n {rtr} route show {ANYCAST_ADDR}");
    match multi.router_route() {
        Ok(lines) => {
            for line in lines {
                println!("  {line}");
            }
        }
        Err(error) => println!("  {error}"),
    }
    let policy = netns::in_namespace(&rtr, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/fib_multipath_hash_policy")
    })
    .and_then(|read| read)
    .map(|text| text.trim().to_string())
    .unwrap_or_else(|error| format!("unreadable ({error})"));
    println!("  fib_multipath_hash_policy={policy} (1: L4 hash)");
    for n in 1..=multi.servers() {
        let ns = multi.host_ns(n);
        println!("host {n} namespace {ns}:");
        print_addresses(&ns, ecmp::HOST_IFACE);
        match multi.host_has_xdp(n) {
            Ok(true) => {
                let pids = namespace_pids(&ns);
                println!(
                    "  XDP program attached: a server is running (pids in {ns}: {})",
                    if pids.is_empty() {
                        "none".to_string()
                    } else {
                        pids.join(" ")
                    }
                );
            }
            Ok(false) => println!("  no XDP program attached: no AF_XDP server is running"),
            Err(error) => println!("  {}: {error}", ecmp::HOST_IFACE),
        }
    }
    println!("  sirocco's address on every host (not the kernel's): {ANYCAST_ADDR}/32");
}

/// Prints the kernel's addresses (IPv4, then IPv6) on `iface` in namespace `ns`.
fn print_addresses(ns: &str, iface: &str) {
    match lab::netlink::Netlink::open_in(ns).and_then(|mut netlink| netlink.addresses_of(iface)) {
        Ok(addrs) if addrs.is_empty() => println!("  {iface} kernel addresses: none"),
        Ok(addrs) => println!("  {iface} kernel addresses: {}", addrs.join(", ")),
        Err(error) => println!("  {iface} addresses: {error}"),
    }
}

/// Which of the lab's two namespaces exist.
fn existing_namespaces(name: &str) -> Vec<String> {
    [format!("{name}-srv"), format!("{name}-cli")]
        .into_iter()
        .filter(|ns| netns::exists(ns))
        .collect()
}

/// The pids of processes inside namespace `ns` (`ip netns pids`).
fn namespace_pids(ns: &str) -> Vec<String> {
    netns::pids(ns).iter().map(u32::to_string).collect()
}

/// The path of this binary, for commands a person copies (falls back to `sirocco` on PATH).
fn current_exe() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sirocco".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_refused_with_servers_before_anything_is_built() {
        let args = LabArgs {
            action: LabAction::Up {
                name: "sirocco-ecmp-unit-never-built".into(),
                servers: 2,
                queues: Some(2),
            },
        };
        let err = run(args).unwrap_err().to_string();
        assert!(
            err.contains("--queues 2 is for the plain lab (--servers 1)"),
            "{err}"
        );
    }
}
