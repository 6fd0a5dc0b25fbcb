//! Lab end-to-end over IPv6: the real `sirocco` binary serves both families
//! (`--ip 198.18.0.2/24 --ip 2001:2::2/64`) on the server end of a fresh veth lab over AF_XDP,
//! and real clients in the client namespace reach it over IPv6 through the kernel's stack:
//! curl -6 for files of every size, ping -6, wget --mirror, wrk at 100 connections and
//! headless Chromium. The client's kernel finds sirocco's MAC through NDP, so every test also
//! proves the Neighbor Advertisements (and one checks the client's neighbour entry). Also: one
//! server holds the most addresses the filter takes (IPv4, three IPv6, the link-local one
//! derived from the MAC) and serves on each, while a kernel-owned IPv6 address on the same
//! interface keeps answering beside sirocco's filter.
//!
//! Needs root and each test's clients; fails when `SIROCCO_REQUIRE_LAB=1` (as in CI) and they
//! are missing. Every client is bounded in time, and the load tests take turns through
//! [`HEAVY`].

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use sirocco::lab::veth::{CLIENT_IFACE, VethLab};
use sirocco::lab::{PREFIX_LEN6, SERVER_ADDR, SERVER_ADDR6};
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    LabServer, assert_same_bytes, assert_wget_mirrors, chromium_dump_dom, curl_body, lab_available,
    run, server_url, stat, wrk_url,
};

/// The load tests hold this while they run, one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sample site, www/ at the top of the workspace.
fn sample_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// `http://[2001:2::2]PATH`.
fn url6(path: &str) -> String {
    format!("http://[{SERVER_ADDR6}]{path}")
}

/// sirocco on both families, ready (it answers ping over IPv4, then over IPv6).
fn dual_stack(lab: &VethLab, root: &Path, extra: &[&str]) -> LabServer {
    let ip6 = format!("{SERVER_ADDR6}/{PREFIX_LEN6}");
    let server = LabServer::afxdp(root)
        .args(["--ip", &ip6])
        .args(extra)
        .start(lab);
    assert!(
        ping6(lab, &SERVER_ADDR6.to_string(), 5).0,
        "sirocco answers ping over IPv4 but not over IPv6"
    );
    server
}

/// `ping -6 -c COUNT` from the client namespace: whether every echo came back, and the text.
fn ping6(lab: &VethLab, target: &str, count: u32) -> (bool, String) {
    let output = run(
        lab.client_command("ping").args([
            "-6",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            target,
        ]),
        "ping -6",
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let all = format!("{count} packets transmitted, {count} received");
    (output.status.success() && text.contains(&all), text)
}

/// curl's body for `url` over the family `flag` says (`-6` or `-4`), asserting success.
fn curl(lab: &VethLab, flag: &str, url: &str) -> Vec<u8> {
    curl_body(lab, &[flag, "--globoff"], url)
}

#[test]
fn curl_6_fetches_every_size_byte_exact_and_ipv4_still_works() {
    if !lab_available("ipv6_curl", &["curl"]) {
        return;
    }
    let sizes = [0, 1, 512, 1427, 1428, 1429, 65_536, 4 * 1024 * 1024];
    let tree = TestTree::with_sizes(&sizes);
    let lab = VethLab::create_unique("v6sizes").expect("create the veth lab");
    let server = dual_stack(&lab, tree.path(), &["--stats-interval", "0"]);
    for (url_path, expected) in tree.files() {
        assert_same_bytes(url_path, &curl(&lab, "-6", &url6(url_path)), expected);
        // The same server, the same file, over IPv4.
        assert_same_bytes(url_path, &curl(&lab, "-4", &server_url(url_path)), expected);
    }
    println!(
        "{} files byte-exact over IPv6 and IPv4 from one server",
        sizes.len()
    );
    let stopped = server.stop_cleanly();
    assert_eq!(
        stopped.requests(),
        2 * sizes.len() as u64,
        "{}",
        stopped.stdout
    );
}

#[test]
fn ping_6_gets_replies_on_the_global_and_the_link_local_address() {
    if !lab_available("ipv6_ping", &[]) {
        return;
    }
    let lab = VethLab::create_unique("v6ping").expect("create the veth lab");
    let server = dual_stack(&lab, &sample_site(), &["--stats-interval", "0"]);
    let (ok, text) = ping6(&lab, &SERVER_ADDR6.to_string(), 3);
    println!("{text}");
    assert!(ok, "ping -6 {SERVER_ADDR6} did not get 3 replies: {text}");
    // The client kernel learnt sirocco's MAC from its Neighbor Advertisement.
    let neigh = run(
        lab.client_command("ip")
            .args(["-6", "neigh", "show"])
            .arg(SERVER_ADDR6.to_string()),
        "ip -6 neigh",
    );
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    println!("client neighbour entry: {}", neigh.trim());
    assert!(
        neigh.contains("lladdr") && !neigh.contains("failed"),
        "no neighbour entry for sirocco: {neigh}"
    );
    // sirocco's link-local address is the modified EUI-64 of veth-srv's MAC.
    let mac = lab
        .server_link_state()
        .expect("read veth-srv")
        .mac
        .expect("veth-srv has a MAC");
    let scoped = format!("{}%{CLIENT_IFACE}", link_local(mac));
    let (ok, text) = ping6(&lab, &scoped, 3);
    println!("{text}");
    assert!(ok, "ping -6 {scoped} did not get 3 replies: {text}");
    server.stop_cleanly();
}

#[test]
fn wget_mirror_over_ipv6_matches_the_site_file_by_file() {
    if !lab_available("ipv6_wget", &["wget", "timeout"]) {
        return;
    }
    let site = sample_site();
    let lab = VethLab::create_unique("v6wget").expect("create the veth lab");
    let server = dual_stack(&lab, &site, &["--stats-interval", "0"]);
    let files = assert_wget_mirrors(&lab, &["-6"], &url6("/"), &site);
    println!("wget -6 --mirror: {files} files, all byte-exact");
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), files as u64, "{}", stopped.stdout);
}

#[test]
fn wrk_100_connections_over_ipv6_all_2xx_no_socket_errors() {
    if !lab_available("ipv6_wrk", &["wrk", "bash", "timeout"]) {
        return;
    }
    let _turn = heavy();
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("v6wrk").expect("create the veth lab");
    let server = dual_stack(&lab, tree.path(), &["--stats-interval", "1"]);
    let (text, report) = wrk_url(&lab, 1, 100, &url6("/file-512.bin"));
    let stopped = server.stop_cleanly();
    println!("server: {}", stopped.stdout.lines().last().unwrap_or(""));
    report.assert_clean(&text);
    assert!(
        stopped.requests() >= report.requests,
        "the server counted {} requests, fewer than wrk's {}",
        stopped.requests(),
        report.requests
    );
}

#[test]
fn headless_chromium_loads_the_site_over_ipv6() {
    if !lab_available("ipv6_chromium", &["chromium", "timeout"]) {
        return;
    }
    let _turn = heavy();
    let lab = VethLab::create_unique("v6chrome").expect("create the veth lab");
    let server = dual_stack(&lab, &sample_site(), &["--stats-interval", "1"]);
    let output = chromium_dump_dom(&lab, &url6("/"));
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "chromium exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let ran = "JavaScript ran: every subresource was served.";
    assert!(
        dom.contains(ran),
        "the DOM does not show that app.js ran:\n{dom}"
    );
    println!("chromium over IPv6: the DOM says \"{ran}\"");
    let stopped = server.stop_cleanly();
    let stats = stopped.stats_lines();
    let last = *stats.last().expect("stats lines");
    // index.html, site.css, app.js and logo.png.
    assert_eq!(stopped.requests(), 4, "{}", stopped.stdout);
    assert_eq!(stat(last, "4xx"), 0, "{last}");
    assert_eq!(stat(last, "5xx"), 0, "{last}");
}

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A), written out here
/// rather than taken from the netstack, so that the test checks the server's derivation.
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

#[test]
fn every_address_is_served_and_a_kernel_owned_ipv6_address_keeps_answering() {
    if !lab_available("ipv6_every_address", &["curl"]) {
        return;
    }
    let kernel_addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("v6every").expect("create the veth lab");
    lab.add_kernel_server_address6(kernel_addr)
        .expect("give veth-srv a kernel IPv6 address");
    // One IPv4 and three IPv6 addresses, and the link-local one: the most the filter holds.
    let server = dual_stack(
        &lab,
        tree.path(),
        &[
            "--ip",
            "2001:2::4/64",
            "--ip",
            "fd00::2/64",
            "--stats-interval",
            "0",
        ],
    );
    let stderr = server.stderr_now();
    assert!(
        stderr.contains(&format!(
            "at http://{SERVER_ADDR}:80/ and http://[{SERVER_ADDR6}]:80/ and http://[2001:2::4]:80/ and http://[fd00::2]:80/ "
        )),
        "{stderr}"
    );
    let mac = lab
        .server_link_state()
        .expect("read veth-srv")
        .mac
        .expect("veth-srv has a MAC");
    let ll = link_local(mac);
    assert!(
        stderr.contains(&format!("IPv6 link-local address: {ll} ")),
        "{stderr}"
    );
    // The kernel answers its own address: its NDP and its echo go past sirocco's filter,
    // whose solicited-node match checks the target address, not just the group.
    let (ok, text) = ping6(&lab, &kernel_addr.to_string(), 3);
    println!("{text}");
    assert!(
        ok,
        "the kernel's {kernel_addr} did not answer ping -6 beside sirocco: {text}"
    );
    // fd00::2 is outside the client's 2001:2::/64: give the client a route to it on the link.
    let route = run(
        lab.client_command("ip")
            .args(["-6", "route", "add", "fd00::/64", "dev", CLIENT_IFACE]),
        "ip -6 route add",
    );
    assert!(route.status.success(), "{route:?}");
    let urls = [
        server_url("/file-512.bin"),
        url6("/file-512.bin"),
        "http://[2001:2::4]/file-512.bin".to_string(),
        "http://[fd00::2]/file-512.bin".to_string(),
        format!("http://[{ll}%25{CLIENT_IFACE}]/file-512.bin"),
    ];
    let expected = tree.body("/file-512.bin");
    for url in &urls {
        assert_same_bytes(url, &curl(&lab, "--globoff", url), &expected);
    }
    println!("one server, {} addresses, byte-exact on each", urls.len());
    let (ok, text) = ping6(&lab, &kernel_addr.to_string(), 3);
    assert!(ok, "the kernel's {kernel_addr} stopped answering: {text}");
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), urls.len() as u64, "{}", stopped.stdout);
}

#[test]
fn an_ipv6_address_the_kernel_holds_is_refused_at_start() {
    if !lab_available("ipv6_kernel_holds", &[]) {
        return;
    }
    let kernel_addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    let lab = VethLab::create_unique("v6held").expect("create the veth lab");
    lab.add_kernel_server_address6(kernel_addr)
        .expect("give veth-srv a kernel IPv6 address");
    let output = run(
        lab.server_command(sirocco_tests::lab::sirocco_binary())
            .args(["serve", "--driver", "afxdp", "--iface", "veth-srv"])
            .args(["--ip", "198.18.0.2/24", "--ip", "2001:2::3/64", "--root"])
            .arg(sample_site()),
        "sirocco serve",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("2001:2::3 is already an address of this host's kernel (on veth-srv)"),
        "{stderr}"
    );
}
