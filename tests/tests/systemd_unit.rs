//! The systemd unit example, `dist/sirocco.service`: systemd accepts every line of it
//! (`systemd-analyze verify`, with ExecStart pointed at the built binary, since the unit names
//! the installed `/usr/local/bin/sirocco`), and it grants only the capabilities sirocco needs,
//! to a user that is not root, running `serve --config`. The unit is never started (no systemd
//! runs here).
//!
//! Without `systemd-analyze` the verify test prints `NOT RUN` and returns, unless
//! `SIROCCO_REQUIRE_LAB=1` (CI, `tools/test` as root, which installs systemd) makes it a
//! failure, as for the lab tests' tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use sirocco_tests::lab::{TempDir, sirocco_binary, tools_present};

const UNIT: &str = "dist/sirocco.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/sirocco";
const CAPABILITIES: [&str; 4] = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_IPC_LOCK"];

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .join(UNIT)
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("read the unit")
}

/// The values of `key=` lines (comments are skipped).
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn the_unit_runs_serve_with_a_config_as_a_user_with_four_capabilities() {
    let text = unit_text();
    assert_eq!(
        values(&text, "ExecStart"),
        [format!(
            "{INSTALLED_BINARY} serve --config /etc/sirocco/sirocco.toml"
        )]
    );
    let user = values(&text, "User");
    assert!(
        user.len() == 1 && user[0] != "root" && user[0] != "0",
        "User={user:?}"
    );
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let set: Vec<Vec<&str>> = values(&text, key)
            .iter()
            .map(|v| v.split_whitespace().collect())
            .collect();
        assert_eq!(set, [CAPABILITIES.to_vec()], "{key}");
    }
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("LimitMEMLOCK", "infinity"),
        ("KillSignal", "SIGTERM"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
    ] {
        assert_eq!(values(&text, key), [value], "{key}");
    }
    // These would cut sirocco off from the host's interface or its capabilities.
    for key in ["PrivateNetwork", "PrivateUsers", "DynamicUser"] {
        assert!(values(&text, key).is_empty(), "{key} is set");
    }
    let families = values(&text, "RestrictAddressFamilies");
    assert!(
        families.len() == 1 && families[0].split_whitespace().any(|f| f == "AF_XDP"),
        "{families:?}"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    // tools/test installs systemd.
    if !tools_present("systemd_analyze_verify", &["systemd-analyze"]) {
        return;
    }
    let text = unit_text();
    assert!(text.contains(INSTALLED_BINARY));
    let binary = sirocco_binary();
    let dir = TempDir::new("systemd-unit");
    let unit = dir.path().join("sirocco.service");
    let rewritten = text.replace(INSTALLED_BINARY, binary.to_str().expect("UTF-8 path"));
    std::fs::write(&unit, &rewritten).unwrap();
    // `--man=no`: the Documentation= page is sirocco-serve(1), which need not be installed.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for an unknown key or a value it cannot parse (it only warns), so
    // any output at all is a failure.
    assert!(
        out.status.success() && stderr.trim().is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}\n{stderr}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );

    // And the test can fail: a misspelt key is reported.
    std::fs::write(&unit, rewritten.replace("ProtectHome=", "ProtectHomme=")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unknown key 'ProtectHomme'") && !stderr.contains("not executable"),
        "a bad key went unnoticed: {stderr}"
    );
}
