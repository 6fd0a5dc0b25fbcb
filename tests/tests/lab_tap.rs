//! Lab end-to-end over a tap device: the real `sirocco` binary serves from a fresh network
//! namespace, and the kernel's own TCP stack in that namespace fetches with curl.
//!
//! (`sirocco demo` runs over AF_XDP now; its test is in lab_afxdp.rs.)
//!
//! Needs root and curl (the lab is `sirocco::lab::Lab`, built without iproute2). Without them these tests fail when `SIROCCO_REQUIRE_LAB=1`
//! (as in CI), and otherwise print why they did not run.

use std::time::Duration;

use sirocco::lab::netlink::Netlink;
use sirocco::lab::{self, Lab};
use sirocco_tests::TestTree;
use sirocco_tests::lab::{LabServer, Stopped, poll_until, runnable, sirocco_binary};

#[test]
fn serve_on_tap_in_a_namespace_curl_fetches_every_file_byte_exact() {
    if !runnable("serve_on_tap", &["curl"]) {
        return;
    }
    let tree = TestTree::standard();
    let lab = Lab::create("taptest").expect("create lab namespace");
    let tap = Lab::unique_tap_name();
    let mut command = lab.command(sirocco_binary());
    command
        .args(["serve", "--driver", "tap", "--iface", &tap])
        .args(["--ip", &format!("{}/{}", lab::SERVER_ADDR, lab::PREFIX_LEN)])
        .arg("--root")
        .arg(tree.path())
        .args(["--sleep-when-idle", "--stats-interval", "0"]);
    let server = LabServer::spawn(command);

    // sirocco creates the tap inside the namespace; the kernel side then gets the client address.
    poll_until("sirocco creating its tap", Duration::from_secs(20), || {
        Netlink::open_in(lab.namespace())
            .and_then(|mut netlink| netlink.link(&tap))
            .is_ok()
    });
    lab.configure_client_link(&tap)
        .expect("configure client side of the tap");

    for (url_path, expected) in tree.files() {
        let url = format!("http://{}{url_path}", lab::SERVER_ADDR);
        let output = lab
            .command("curl")
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "30",
                &url,
            ])
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "curl {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stdout == expected,
            "{url}: got {} bytes, expected {} (content differs)",
            output.stdout.len(),
            expected.len()
        );
    }

    // A clean stop on SIGTERM, with the final counters on stdout.
    let Stopped {
        status,
        stdout,
        stderr,
    } = server.stop();
    assert!(status.success(), "sirocco exited with {status}: {stderr}");
    assert!(
        stdout.contains(&format!("stopped: {} requests", tree.files().len())),
        "final stats line missing or wrong: {stdout}"
    );
}
