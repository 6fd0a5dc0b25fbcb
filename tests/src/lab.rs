//! What every lab test needs before it starts: the check that the lab can run here (root and
//! the tools), the release binaries CI builds before the tests, and a child process that is
//! killed when the test ends, however it ends.
//!
//! A lab test that cannot run fails when `SIROCCO_REQUIRE_LAB=1` (as CI sets), and otherwise
//! prints `NOT RUN: ...` with the reason and returns.

use std::path::PathBuf;
use std::process::Child;

/// Tools every veth lab test uses: building the lab, and pinging the server until it answers.
pub const LAB_TOOLS: [&str; 3] = ["ip", "ethtool", "ping"];

/// Whether the veth lab can run here: root, [`LAB_TOOLS`] and `tools`. See [`runnable`].
pub fn lab_available(test: &str, tools: &[&str]) -> bool {
    let all: Vec<&str> = LAB_TOOLS.iter().chain(tools).copied().collect();
    runnable(test, &all)
}

/// Whether `test` can run here: root and every program in `tools`. When it cannot, CI
/// (`SIROCCO_REQUIRE_LAB=1`) fails the test; otherwise it prints why it did not run.
pub fn runnable(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !sirocco::lab::is_root() {
        missing.push("root".to_string());
    }
    for tool in tools {
        if !program_exists(tool) {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("lab test {test} cannot run: needs {}", missing.join(", "));
    if std::env::var_os("SIROCCO_REQUIRE_LAB").is_some_and(|v| v == "1") {
        panic!("{why} (SIROCCO_REQUIRE_LAB=1)");
    }
    eprintln!("NOT RUN: {why}; set SIROCCO_REQUIRE_LAB=1 to make this a failure");
    false
}

/// Whether `program` is an executable file on PATH (or in the sbin directories, where
/// Debian keeps ip, ethtool and tcpdump).
pub fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .any(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A binary of this workspace built in the same profile as the running test
/// (`target/<profile>/NAME`). `tools/test` and CI build them before the tests
/// (`cargo build --workspace --release --bins`).
pub fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .join(name);
    assert!(
        binary.is_file(),
        "{} not found: build it with `cargo build --workspace --release --bins`",
        binary.display()
    );
    binary
}

/// The `sirocco` binary.
pub fn sirocco_binary() -> PathBuf {
    release_binary("sirocco")
}

/// Kills the child on drop, so a failed assertion never leaves a server running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
