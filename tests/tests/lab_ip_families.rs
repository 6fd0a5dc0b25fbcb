//! `serve --ip` with both families over AF_XDP in a veth lab, sharing veth-srv with the
//! kernel: the XDP program is loaded with sirocco's IPv4 address and all its IPv6 addresses
//! (three global ones and the link-local one derived from the MAC: the most the filter holds),
//! sirocco prints every URL and its link-local address, serves over IPv4, and the kernel keeps
//! answering for an IPv6 address of its own on the same interface (its Neighbor Solicitations
//! and echo requests are not redirected).
//!
//! Needs root, iproute2, ethtool, ping and curl; without them it fails when
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise prints why it did not run.

use std::net::Ipv6Addr;
use std::process::Stdio;

use sirocco::lab::veth::{SERVER_IFACE, VethLab};
use sirocco::lab::{SERVER_ADDR, SERVER_ADDR6};
use sirocco_tests::TestTree;
use sirocco_tests::lab::{LabServer, lab_available, run, server_url};

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A), written out here
/// rather than taken from the netstack, so that the test checks the server's derivation.
fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

#[test]
fn dual_stack_attaches_with_every_address_and_the_kernel_keeps_its_own() {
    if !lab_available("ip_families", &["curl"]) {
        return;
    }
    let kernel_addr6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("xfam").expect("create the veth lab");
    lab.add_kernel_server_address6(kernel_addr6)
        .expect("give veth-srv a kernel IPv6 address");
    let server = LabServer::afxdp(tree.path())
        .args([
            "--ip",
            &format!("{SERVER_ADDR6}/64"),
            "--ip",
            "2001:2::4/64",
            "--ip",
            "fd00::2/64",
            "--stats-interval",
            "0",
        ])
        .start(&lab);
    let stderr = server.stderr_now();
    assert!(
        stderr.contains(&format!(
            "at http://{SERVER_ADDR}:80/ and http://[{SERVER_ADDR6}]:80/ and http://[2001:2::4]:80/ and http://[fd00::2]:80/ "
        )),
        "{stderr}"
    );
    // The NIC's own MAC, and the link-local address derived from it.
    let mac_text = run(
        lab.server_command("cat")
            .arg(format!("/sys/class/net/{SERVER_IFACE}/address")),
        "cat",
    )
    .stdout;
    let mac_text = String::from_utf8_lossy(&mac_text).trim().to_string();
    let mac = sirocco::cli::parse_mac(&mac_text).expect("veth-srv's MAC");
    assert!(
        stderr.contains(&format!(
            "IPv6 link-local address: {} (fe80::/64 and the modified EUI-64 of the MAC {mac_text})",
            link_local(mac)
        )),
        "{stderr}"
    );

    // IPv4 is served through the filter that now also holds four IPv6 addresses.
    let url = server_url("/");
    let curl = run(
        lab.client_command("curl")
            .args(["--silent", "--fail", "--max-time", "30", "-o", "/dev/null"])
            .arg(&url),
        "curl",
    );
    assert!(
        curl.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // The kernel's own IPv6 address on veth-srv: its neighbour solicitation and the echo
    // requests stay with the kernel, which answers them.
    let ping = lab
        .client_command("ping")
        .args(["-6", "-c", "3", "-i", "0.2", "-W", "2"])
        .arg(kernel_addr6.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ping -6");
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains("3 packets transmitted, 3 received"),
        "the kernel's {kernel_addr6} did not answer ping -6 beside sirocco: {text}{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 1, "{}", stopped.stdout);
}
