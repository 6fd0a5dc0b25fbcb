//! sirocco's own IPv6 input path against Linux in a veth lab over AF_XDP: the client kernel
//! resolves sirocco's address by Neighbor Solicitation (sirocco answers with an advertisement
//! of its MAC), `ping -6` gets echo replies, and `curl -6` fetches a file over an IPv6 TCP
//! connection.
//!
//! Needs root, iproute2, ethtool, ping and curl; without them it fails when
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise prints why it did not run.

use std::process::Stdio;

use sirocco::lab::SERVER_ADDR6;
use sirocco::lab::veth::VethLab;
use sirocco_tests::TestTree;
use sirocco_tests::lab::{LabServer, lab_available, run};

#[test]
fn linux_resolves_pings_and_fetches_over_ipv6() {
    if !lab_available("ndp", &["curl", "ping"]) {
        return;
    }
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("xndp").expect("create the veth lab");
    let server = LabServer::afxdp(tree.path())
        .args([
            "--ip",
            &format!("{SERVER_ADDR6}/64"),
            "--stats-interval",
            "0",
        ])
        .start(&lab);

    // The first echo request needs the neighbour entry: the kernel solicits it first.
    let ping = lab
        .client_command("ping")
        .args(["-6", "-c", "3", "-i", "0.2", "-W", "2", "-s", "1000"])
        .arg(SERVER_ADDR6.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run ping -6");
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains("3 packets transmitted, 3 received"),
        "sirocco at {SERVER_ADDR6} did not answer ping -6: {text}{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let neigh = run(
        lab.client_command("ip")
            .args(["-6", "neigh", "show"])
            .arg(SERVER_ADDR6.to_string()),
        "ip -6 neigh",
    );
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_lowercase();
    assert!(
        neigh.contains("lladdr") && !neigh.contains("failed"),
        "no neighbour entry for sirocco: {neigh}"
    );

    let url = format!("http://[{SERVER_ADDR6}]:80/");
    let curl = run(
        lab.client_command("curl")
            .args([
                "-6",
                "--silent",
                "--fail",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
            ])
            .arg(&url),
        "curl",
    );
    assert!(
        curl.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 1, "{}", stopped.stdout);
}
