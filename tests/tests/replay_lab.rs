//! Trace replay against the live binary in the veth lab: `sirocco serve --driver afxdp` on
//! veth-srv in the server namespace, and `sirocco-replay --target afxdp` on veth-cli in the
//! client namespace (AF_XDP with every frame redirected, so the client kernel stays out of it).
//! The replayed nginx fixtures must get nginx's statuses and bodies from the real server over a
//! real (virtual) link, on the wall clock.
//!
//! Needs root, iproute2, ethtool and ping. Without them this test fails when
//! `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise prints why it did not run. The server and
//! the replay are bounded in time; the lab is removed even when the test fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::veth::{CLIENT_IFACE, SERVER_IFACE, VethLab};
use sirocco::lab::{CLIENT_ADDR, PREFIX_LEN, SERVER_ADDR};
use sirocco_tests::lab::{lab_available, release_binary};

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(path)
}

/// Kills the server on drop, so a failed assertion never leaves it running.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerGuard {
    /// Everything the server wrote to stderr, once it has been killed.
    fn stop(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut text = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

/// Starts the server and waits until it answers ping from the client namespace.
fn start_server(lab: &VethLab) -> ServerGuard {
    let mut command = lab.server_command(release_binary("sirocco"));
    command
        .args(["serve", "--driver", "afxdp", "--iface", SERVER_IFACE])
        .arg("--ip")
        .arg(format!("{SERVER_ADDR}/{PREFIX_LEN}"))
        .arg("--root")
        .arg(data("www"))
        .arg("--idle-wait")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut server = ServerGuard(command.spawn().expect("start sirocco serve"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.0.try_wait().expect("poll sirocco") {
            panic!("sirocco exited with {status}: {}", server.stop());
        }
        let answered = lab
            .client_command("ping")
            .args(["-c", "1", "-W", "1", &SERVER_ADDR.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ping")
            .success();
        if answered {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "sirocco did not answer ping within 30 s: {}",
            server.stop()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fixtures_replay_through_afxdp_against_the_live_binary() {
    if !lab_available("fixtures_replay_through_afxdp_against_the_live_binary", &[]) {
        return;
    }
    let lab = VethLab::create_unique("replay").expect("create the veth lab");
    let server = start_server(&lab);
    for fixture in ["python-pipelining", "chromium-index", "curl-sizes"] {
        let trace = data(&format!("traces/{fixture}.pcap"));
        let out = lab
            .client_command("timeout")
            .args(["-k", "5", "60"])
            .arg(release_binary("sirocco-replay"))
            .arg(&trace)
            .args(["--target", "afxdp", "--iface", CLIENT_IFACE])
            .arg("--client-ip")
            .arg(CLIENT_ADDR.to_string())
            .arg("--server-ip")
            .arg(SERVER_ADDR.to_string())
            .args(["--timeout", "30"])
            .stdin(Stdio::null())
            .output()
            .expect("run sirocco-replay in the client namespace");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{fixture} over AF_XDP:\n{stdout}{stderr}"
        );
        assert!(stdout.contains(" 0 failed, "), "{fixture}:\n{stdout}");
        assert!(
            stdout.trim_end().ends_with("result: PASS"),
            "{fixture}:\n{stdout}"
        );
        assert!(
            stdout.contains("via AF_XDP on veth-cli"),
            "{fixture}:\n{stdout}"
        );
        let summary = stdout.lines().find(|l| l.starts_with("summary:"));
        eprintln!("{fixture}: {}", summary.unwrap_or_default());
    }
    drop(server);
    drop(lab);
}
