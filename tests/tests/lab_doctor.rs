//! Lab end-to-end of `sirocco doctor`: the real binary, run in the server namespace of a fresh
//! veth lab, on a healthy veth-srv, on one with jumbo frames (MTU 9000 on both ends: served
//! over AF_XDP multi-buffer) and GRO on, and then on one made wrong in the ways it has to
//! notice: an MTU above 9000, an XDP program held by a running `sirocco serve`,
//! a same-namespace veth peer that offloads TX checksums, and an interface that is not there.
//! Also: its trials leave no XDP program behind, and `--json` is one parseable array.
//!
//! Needs root, iproute2, ethtool and ping; without them these tests fail under
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run.

use std::path::Path;
use std::process::Command;

use sirocco::lab::veth::{CLIENT_IFACE, SERVER_IFACE, VethLab};
use sirocco_tests::lab::{LabServer, lab_available, run, sirocco_binary};

/// What one `sirocco doctor` run said.
struct Report {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Report {
    /// The line of check `name`: `(status, the rest of the line after the name)`.
    fn check(&self, name: &str) -> (&str, &str) {
        self.stdout
            .lines()
            .find_map(|line| {
                let status = line.split_whitespace().next()?;
                let rest = line[status.len()..].trim_start();
                (rest.split_whitespace().next()? == name)
                    .then(|| (status, rest[name.len()..].trim_start()))
            })
            .unwrap_or_else(|| panic!("no `{name}` line in:\n{}", self.stdout))
    }

    /// Asserts check `name` has `status`, and its fix (if `fix` is given) is exactly that.
    fn expect(&self, name: &str, status: &str, fix: Option<&str>) {
        let (got, rest) = self.check(name);
        assert_eq!(got, status, "{name}: {rest}\n{}", self.stdout);
        if let Some(fix) = fix {
            assert!(
                rest.ends_with(&format!(" -> fix: {fix}")),
                "{name} should end with fix `{fix}`: {rest}"
            );
        }
    }
}

/// `sirocco doctor ARGS` in `lab`'s server namespace.
fn doctor(lab: &VethLab, args: &[&str]) -> Report {
    let output = run(
        lab.server_command(sirocco_binary())
            .arg("doctor")
            .args(args),
        "sirocco doctor",
    );
    Report {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `command`, asserting it succeeds.
fn must(command: &mut Command, what: &str) {
    let output = run(command, what);
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ip link show` of `iface` in the server namespace.
fn link_show(lab: &VethLab, iface: &str) -> String {
    let output = run(
        lab.server_command("ip")
            .args(["link", "show", "dev", iface]),
        "ip link show",
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The checks a healthy veth-srv passes outright. Not here: zero-copy (veth has none), the
/// checksum (the peer is in the client namespace, out of sight), netmap (not on this machine)
/// and irqbalance (the host's business).
const HEALTHY: [&str; 11] = [
    "interface",
    "capabilities",
    "memlock",
    "xdp-program",
    "xdp-attach",
    "af-xdp",
    "mtu",
    "queues",
    "gro",
    "lro",
    "irq",
];

#[test]
fn a_healthy_veth_passes_jumbo_frames_pass_and_gro_and_a_huge_mtu_warn() {
    if !lab_available("doctor_mtu_gro", &[]) {
        return;
    }
    let lab = VethLab::create_unique("dmtu").expect("create the veth lab");
    let healthy = doctor(&lab, &["--iface", SERVER_IFACE]);
    assert_eq!(
        healthy.code,
        Some(0),
        "{}{}",
        healthy.stdout,
        healthy.stderr
    );
    for name in HEALTHY {
        healthy.expect(name, "ok", None);
    }
    healthy.expect(
        "checksum",
        "warn",
        Some("ethtool -K PEER tx off, in the peer's namespace"),
    );
    healthy.expect("netmap", "warn", None);
    assert!(healthy.stdout.contains("no IRQs (virtual device)"));
    assert!(
        healthy
            .stdout
            .contains(" 0 fail: sirocco can serve on veth-srv"),
        "{}",
        healthy.stdout
    );
    // The trials took their program off again.
    assert!(
        !link_show(&lab, SERVER_IFACE).contains("xdp"),
        "{}",
        link_show(&lab, SERVER_IFACE)
    );

    // MTU 9000 on both ends (veth checks its peer's MTU for native XDP), GRO on: the program
    // is frags-aware, so native XDP attaches, and the socket binds multi-buffer.
    must(
        lab.server_command("ip")
            .args(["link", "set", "dev", SERVER_IFACE, "mtu", "9000"]),
        "ip link set mtu",
    );
    must(
        lab.client_command("ip")
            .args(["link", "set", "dev", CLIENT_IFACE, "mtu", "9000"]),
        "ip link set mtu (peer)",
    );
    must(
        lab.server_command("ethtool")
            .args(["-K", SERVER_IFACE, "gro", "on"]),
        "ethtool -K gro on",
    );
    let jumbo = doctor(&lab, &["--iface", SERVER_IFACE]);
    assert_eq!(jumbo.code, Some(0), "{}{}", jumbo.stdout, jumbo.stderr);
    jumbo.expect("mtu", "ok", None);
    let mtu = jumbo.check("mtu").1;
    assert!(
        mtu.contains("MTU 9000") && mtu.contains("multi-buffer (XDP_USE_SG)"),
        "{mtu}"
    );
    // Native XDP runs before GRO: a warning only.
    jumbo.expect("gro", "warn", Some("ethtool -K veth-srv gro off"));
    jumbo.expect("xdp-attach", "ok", None);
    jumbo.expect("xdp-program", "ok", None);
    jumbo.expect("af-xdp", "ok", None);
    assert!(
        jumbo
            .stdout
            .contains(", 0 fail: sirocco can serve on veth-srv"),
        "{}",
        jumbo.stdout
    );

    // The same as JSON: one array, one object per line of the text report.
    let json = doctor(&lab, &["--iface", SERVER_IFACE, "--json"]);
    assert_eq!(json.code, Some(0));
    let parsed: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {}", json.stdout));
    let items = parsed.as_array().expect("a JSON array");
    assert_eq!(items.len(), jumbo.stdout.lines().count() - 1);
    let gro = items
        .iter()
        .find(|c| c["check"] == "gro")
        .expect("a gro check");
    assert_eq!(gro["status"], "warn");
    assert_eq!(gro["fix"], "ethtool -K veth-srv gro off");
    for item in items {
        let name = item["check"].as_str().expect("check is a string");
        assert_eq!(item["status"], jumbo.check(name).0, "{name}");
    }

    // Above the netstack's 9000: served at 9000, longer frames dropped; a warning and a fix.
    for (command, iface) in [
        (lab.server_command("ip"), SERVER_IFACE),
        (lab.client_command("ip"), CLIENT_IFACE),
    ] {
        let mut command = command;
        must(
            command.args(["link", "set", "dev", iface, "mtu", "65535"]),
            "ip link set mtu 65535",
        );
    }
    let huge = doctor(&lab, &["--iface", SERVER_IFACE]);
    huge.expect(
        "mtu",
        "warn",
        Some("ip link set dev veth-srv mtu 9000 (and on its peer)"),
    );
    assert!(huge.check("mtu").1.contains("MTU 65535"));
}

#[test]
fn a_running_server_is_an_attached_program_and_a_busy_queue() {
    if !lab_available("doctor_busy", &[]) {
        return;
    }
    let lab = VethLab::create_unique("dbusy").expect("create the veth lab");
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
    let server = LabServer::start(&lab, &site, &["--stats-interval", "0"]);
    let busy = doctor(&lab, &["--iface", SERVER_IFACE]);
    assert_eq!(busy.code, Some(1), "{}{}", busy.stdout, busy.stderr);
    let (status, rest) = busy.check("xdp-program");
    assert_eq!(status, "fail", "{rest}");
    assert!(rest.contains("already attached to veth-srv"), "{rest}");
    assert!(
        rest.contains("-> fix: stop the process that holds it"),
        "{rest}"
    );
    busy.expect(
        "af-xdp",
        "fail",
        Some("stop the process bound to queue 0 of veth-srv (a running `sirocco serve`?)"),
    );
    busy.expect("xdp-attach", "warn", None);
    // The server was not disturbed: it still stops cleanly.
    server.stop_cleanly();
    let after = doctor(&lab, &["--iface", SERVER_IFACE]);
    assert_eq!(after.code, Some(0), "{}{}", after.stdout, after.stderr);
    after.expect("xdp-program", "ok", None);
}

#[test]
fn a_veth_peer_in_the_same_namespace_must_not_offload_tx_checksums() {
    if !lab_available("doctor_checksum", &[]) {
        return;
    }
    let lab = VethLab::create_unique("dcsum").expect("create the veth lab");
    // A second pair, both ends in the server namespace (removed with it).
    must(
        lab.server_command("ip").args([
            "link", "add", "dr-a", "type", "veth", "peer", "name", "dr-b",
        ]),
        "ip link add",
    );
    for end in ["dr-a", "dr-b"] {
        must(
            lab.server_command("ip")
                .args(["link", "set", "dev", end, "up"]),
            "ip link set up",
        );
    }
    must(
        lab.server_command("ethtool")
            .args(["-K", "dr-b", "tx", "on"]),
        "ethtool -K tx on",
    );
    let offloading = doctor(&lab, &["--iface", "dr-a", "--no-trial"]);
    assert_eq!(offloading.code, Some(1), "{}", offloading.stdout);
    offloading.expect("checksum", "fail", Some("ethtool -K dr-b tx off"));
    assert!(offloading.check("checksum").1.contains("veth peer dr-b"));
    // --no-trial: nothing attached, nothing bound, and said so.
    offloading.expect("xdp-program", "warn", None);
    assert!(
        offloading
            .check("af-xdp")
            .1
            .contains("skipped (--no-trial)")
    );

    must(
        lab.server_command("ethtool")
            .args(["-K", "dr-b", "tx", "off"]),
        "ethtool -K tx off",
    );
    let fixed = doctor(&lab, &["--iface", "dr-a", "--no-trial"]);
    assert_eq!(fixed.code, Some(0), "{}", fixed.stdout);
    fixed.expect("checksum", "ok", None);
}

#[test]
fn a_missing_interface_exits_2_and_lists_the_others() {
    if !lab_available("doctor_missing", &[]) {
        return;
    }
    let lab = VethLab::create_unique("dnone").expect("create the veth lab");
    let missing = doctor(&lab, &["--iface", "nosuch0"]);
    assert_eq!(
        missing.code,
        Some(2),
        "{}{}",
        missing.stdout,
        missing.stderr
    );
    assert!(missing.stdout.is_empty(), "{}", missing.stdout);
    assert_eq!(
        missing.stderr.trim(),
        "error: interface nosuch0 not found; available: lo, veth-srv"
    );
    let bad = doctor(&lab, &["--iface", "a/b"]);
    assert_eq!(bad.code, Some(2));
    assert!(
        bad.stderr.contains("'a/b' is not a valid interface name"),
        "{}",
        bad.stderr
    );
}
