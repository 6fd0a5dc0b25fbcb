//! Blind injection against a live keep-alive connection (RFC 5961), in the veth lab: the real
//! `sirocco` over AF_XDP, a client connection from the kernel's stack in the client namespace,
//! and segments forged with scapy on the same 4-tuple by `tools/inject-blind.py`.
//!
//! The script fetches `/window-64k.bin` on one connection and keeps it open, follows it with a
//! sniffer (4-tuple, the server's RCV.NXT, SND.NXT and receive window), then forges one segment
//! per case: an RST at RCV.NXT+1536 (in the window, not exact), a SYN in the window, pure ACKs
//! and data whose acknowledgment number is far outside the acceptable range (ahead and
//! behind), and last an RST at exactly RCV.NXT as the control. After each one it fetches the
//! file again on the same connection. Asserted:
//! - the connection survives every case but the control, the next answer on it 200 and
//!   byte-exact (injected data the server took would corrupt it);
//! - the server answers the in-window RST and the SYN with a challenge ACK
//!   (<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>), seen on the client's interface;
//! - and, so that a pass means something: the RST at +1536 was inside the window the server
//!   advertised, and the exact RST did reset the connection (forged segments reach it as
//!   valid ones).
//!
//! Needs root, python3 with scapy (Debian: python3-scapy) and timeout; `tools/test` installs
//! them. About 20 s: the script waits 1.2 s after each forged segment and again before the
//! next, since challenge ACKs are rate-limited.

mod attack_lab;

use std::path::Path;
use std::process::Stdio;

use attack_lab::{attack_counters, next_stats, scapy_python, start_server};
use sirocco::lab::SERVER_ADDR;
use sirocco::lab::veth::{CLIENT_IFACE, VethLab};
use sirocco_tests::TestTree;
use sirocco_tests::lab::lab_available;

const URL: &str = "/window-64k.bin";
/// The in-window RST is forged this far above RCV.NXT (the script's `rst` case).
const RST_OFFSET: u64 = 1536;

#[test]
fn blind_in_window_rst_syn_and_unacceptable_acks_leave_a_keepalive_connection_serving() {
    let test = "blind_injection";
    if !lab_available(test, &["python3", "timeout"]) {
        return;
    }
    let Some(python) = scapy_python(test) else {
        return;
    };
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("sinject").expect("create the veth lab");
    let mut server = start_server(&lab, tree.path(), &[]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/inject-blind.py");
    let output = lab
        .client_command("timeout")
        .args(["-k", "5", "90", &python])
        .arg(&script)
        .args(["--client", "--server", &SERVER_ADDR.to_string()])
        .args(["--iface", CLIENT_IFACE, "--path", URL, "--expect"])
        .arg(tree.path().join(&URL[1..]))
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .expect("run tools/inject-blind.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stats = next_stats(&mut server);
    let stopped = server.stop();
    for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
        println!("{line}");
    }
    println!("sirocco: {stats}");
    println!("counters: {}", attack_counters(&stats));

    let Some(result) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
    else {
        panic!(
            "inject-blind.py did not finish ({}), a test problem, not the server's:\n{stdout}\n{stderr}",
            output.status
        );
    };
    let cases = result["cases"].as_array().cloned().unwrap_or_default();
    let case = |name: &str| {
        cases
            .iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("no case {name} in {result}"))
    };

    // That a pass means something: the RST was in the window, and forged segments do reach
    // the connection (the exact RST reset it).
    let rst = case("rst");
    let window = rst["server_window"].as_u64().unwrap_or(0);
    assert!(
        RST_OFFSET < window,
        "the RST at RCV.NXT+{RST_OFFSET} was not inside the server's advertised window ({window}): the test does not test what it says. {rst}"
    );
    let control = case("rst-exact");
    assert_eq!(
        control["survived"], false,
        "an RST at exactly RCV.NXT did not reset the connection: forged segments do not reach the connection as valid ones, so the other cases prove nothing. {control}"
    );

    let mut failures = Vec::new();
    for c in cases.iter().filter(|c| c["case"] != "rst-exact") {
        let name = c["case"].as_str().unwrap_or("?");
        if c["survived"] != true {
            failures.push(format!(
                "{name}: the connection did not survive; the next request on it: {}",
                c["fetch"]
            ));
        }
        if matches!(name, "rst" | "syn") && c["challenge_ack"] != true {
            failures.push(format!(
                "{name}: no challenge ACK (server sent: {})",
                c["replies"]
            ));
        }
    }
    assert!(
        stopped.status.success(),
        "sirocco exited with {} on SIGTERM: {}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        failures.is_empty(),
        "blind injection against a keep-alive connection:\n{}\nsirocco: {stats}",
        failures.join("\n")
    );
    assert!(
        output.status.success(),
        "inject-blind.py exited with {}: {stdout}\n{stderr}",
        output.status
    );
}
