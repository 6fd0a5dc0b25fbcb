//! Least privilege in the veth lab: `sirocco serve --user nobody` attaches over AF_XDP as root,
//! then runs as nobody with no capabilities and the seccomp filter (the default). Real clients
//! fetch byte-exact, a SIGHUP reload reads the changed tree as nobody (and cannot read a file
//! only root may read), the access log and stats lines are written, SIGTERM ends it cleanly,
//! and `/proc/PID/task/*/status` shows every thread as nobody, with no capabilities,
//! `NoNewPrivs` and the filter; without an access log, the first SIGHUP starts the process's
//! first thread under the filter, and that works too. A call outside the filter (the hidden `--seccomp
//! selftest-kill`) kills the server with SIGSYS. Also, outside the lab: an unknown `--user` is
//! a clear error, not a panic.
//!
//! Needs root, iproute2, ethtool, ping, curl and a user `nobody`. Without them the lab tests
//! fail when `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run. Each
//! test builds its own lab with a unique name (`sirocco-xpriv-<pid>-<n>`), and every client is
//! bounded in time.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sirocco::lab::veth::VethLab;
use sirocco_drivers::sandbox::{self, User};
use sirocco_tests::lab::{
    LabServer, Launch, Ready, Stopped, TempDir, assert_same_bytes, curl_body, lab_available,
    poll_until, server_url, sirocco_binary, stats_lines,
};

/// The unprivileged user the server drops to.
const USER: &str = "nobody";

/// The user `nobody`, or `None` (after failing under `SIROCCO_REQUIRE_LAB=1`, or saying why
/// the test did not run) when this system has none.
fn nobody(test: &str) -> Option<User> {
    match User::lookup(USER) {
        Ok(user) => Some(user),
        Err(error) => {
            let why = format!("lab test {test} cannot run: needs a user {USER} ({error})");
            if std::env::var_os("SIROCCO_REQUIRE_LAB").is_some_and(|v| v == "1") {
                panic!("{why} (SIROCCO_REQUIRE_LAB=1)");
            }
            eprintln!("NOT RUN: {why}; set SIROCCO_REQUIRE_LAB=1 to make this a failure");
            None
        }
    }
}

/// A fresh directory under the system temp dir that everyone may enter and read, removed on
/// drop.
fn readable_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    chmod(dir.path(), 0o755);
    dir
}

/// Writes `name` under `dir` with `body`, readable by everyone.
fn write(dir: &TempDir, name: &str, body: &[u8]) {
    let path = dir.path().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create a subdirectory");
        chmod(parent, 0o755);
    }
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    chmod(&path, 0o644);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// What the server says on stderr once it is in its sandbox, and how it fails to.
const SANDBOXED: Ready = Ready {
    marker: Some("sandbox: "),
    doing: "attaching and dropping privileges",
    late: "sirocco did not enter its sandbox",
    unanswered: "sirocco did not answer ping",
};

/// `sirocco serve --driver afxdp --user nobody` serving `root` on the lab's veth-srv as
/// 198.18.0.2/24, in idle mode, with `extra` options; ready when it has entered its sandbox
/// and answers ping from the client side.
fn as_nobody(root: &Path, extra: &[&str]) -> Launch {
    LabServer::afxdp(root)
        .args(["--user", USER])
        .args(extra)
        .ready(SANDBOXED)
}

/// Waits until stderr contains `text` `count` times, the server running all the while.
fn wait_for_stderr(server: &mut LabServer, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.stderr_now().matches(text).count() < count {
        server.assert_running(&format!("waiting for '{text}'"));
        assert!(
            Instant::now() < deadline,
            "no '{text}' (#{count}) within 20 s: {}",
            server.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// curl's body for `path` from the client namespace, asserting success.
fn curl(lab: &VethLab, path: &str) -> Vec<u8> {
    curl_body(lab, &[], &server_url(path))
}

/// The fields of one `/proc/.../status` line, e.g. `Uid:` gives the four uids.
fn status_field(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Every thread of `pid` runs as `user`, with no capabilities, `NoNewPrivs` and (where built)
/// the seccomp filter. Returns how many threads it checked.
fn assert_unprivileged(pid: u32, user: &User) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the server's threads");
    let mut checked = 0;
    for task in tasks {
        let task = task.expect("a thread entry").path();
        // A thread may end between the listing and the read (a finished reload).
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        let who = format!("thread {}", task.display());
        assert_eq!(
            status_field(&status, "Uid:"),
            vec![user.uid.to_string(); 4],
            "{who}"
        );
        assert_eq!(
            status_field(&status, "Gid:"),
            vec![user.gid.to_string(); 4],
            "{who}"
        );
        let mut groups: Vec<u32> = status_field(&status, "Groups:")
            .iter()
            .map(|g| g.parse().expect("a gid"))
            .collect();
        groups.sort_unstable();
        let mut expected = user.groups.clone();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(groups, expected, "{who}: supplementary groups");
        for caps in ["CapEff:", "CapPrm:", "CapAmb:"] {
            assert_eq!(
                status_field(&status, caps),
                vec!["0000000000000000"],
                "{who}: {caps}"
            );
        }
        if sandbox::SECCOMP_SUPPORTED {
            assert_eq!(status_field(&status, "NoNewPrivs:"), vec!["1"], "{who}");
            // 2: SECCOMP_MODE_FILTER.
            assert_eq!(status_field(&status, "Seccomp:"), vec!["2"], "{who}");
        }
        checked += 1;
    }
    checked
}

#[test]
fn serves_and_reloads_as_nobody_with_no_capabilities_under_the_filter() {
    if !lab_available("lab_privilege", &["curl"]) {
        return;
    }
    let Some(user) = nobody("lab_privilege") else {
        return;
    };
    let root = readable_dir("priv-root");
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&root, "index.html", b"old\n");
    write(&root, "big.bin", &big);
    write(&root, "sub/page.txt", b"a page in a subdirectory\n");
    // The access log lives where only root may write: opened before the drop, written after.
    let logs = readable_dir("priv-logs");
    chmod(logs.path(), 0o700);
    let access_log = logs.path().join("access.log");

    let lab = VethLab::create_unique("xpriv").expect("create the veth lab");
    let log = access_log.to_str().expect("a UTF-8 temp path");
    let mut server =
        as_nobody(root.path(), &["--stats-interval", "1", "--access-log", log]).start(&lab);
    let said = server.stderr_now();
    assert!(
        said.contains(&format!("running as {USER} (uid {}", user.uid)),
        "{said}"
    );

    // Serves, byte for byte.
    assert_same_bytes("/", &curl(&lab, "/"), b"old\n");
    assert_same_bytes("/big.bin", &curl(&lab, "/big.bin"), &big);
    assert_same_bytes(
        "/sub/page.txt",
        &curl(&lab, "/sub/page.txt"),
        b"a page in a subdirectory\n",
    );
    let threads = assert_unprivileged(server.pid(), &user);
    assert!(
        threads >= 2,
        "the engine and the access-log writer: {threads}"
    );

    // A reload reads the changed tree from disk, as nobody, under the filter.
    write(&root, "index.html", b"new\n");
    write(&root, "added.txt", b"added\n");
    server.signal("-HUP");
    wait_for_stderr(&mut server, "reloaded: ", 1);
    assert_same_bytes("/ after the reload", &curl(&lab, "/"), b"new\n");
    assert_same_bytes("/added.txt", &curl(&lab, "/added.txt"), b"added\n");
    assert_same_bytes("/big.bin after the reload", &curl(&lab, "/big.bin"), &big);

    // A file only root may read: root would load it, nobody cannot, so the reload fails and
    // the tree in force stays.
    write(&root, "secret.bin", b"root only\n");
    chmod(&root.path().join("secret.bin"), 0o600);
    write(&root, "index.html", b"newer\n");
    server.signal("-HUP");
    wait_for_stderr(&mut server, "reload failed", 1);
    let said = server.stderr_now();
    assert!(said.contains("Permission denied"), "{said}");
    assert_same_bytes("/ after the failed reload", &curl(&lab, "/"), b"new\n");
    assert_unprivileged(server.pid(), &user);

    // Stats lines come every second; wait for one more, written under the filter.
    let written = server.stdout_now();
    let before = stats_lines(&written).len();
    poll_until(
        "a stats line written under the filter",
        Duration::from_secs(20),
        || stats_lines(&server.stdout_now()).len() > before,
    );
    server.signal("-TERM");
    let stopped = server.wait_exit(Duration::from_secs(10));
    let Stopped {
        status,
        stdout,
        stderr,
    } = &stopped;
    assert!(
        status.success(),
        "sirocco exited with {status} on SIGTERM: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("stopped: 7 requests"),
        "final stats line missing or wrong: {stdout}"
    );
    assert!(!stopped.stats_lines().is_empty(), "no stats line: {stdout}");
    let log = std::fs::read_to_string(&access_log).expect("read the access log");
    assert_eq!(log.lines().count(), 7, "{log}");
    assert!(log.contains("\"GET /added.txt HTTP/1.1\" 200 6"), "{log}");

    // Without an access log the first SIGHUP starts the process's first thread, under the
    // filter: that must work too (glibc sets up its first thread's signal handler beforehand).
    std::fs::remove_file(root.path().join("secret.bin")).expect("remove secret.bin");
    let mut server = as_nobody(root.path(), &["--stats-interval", "0"]).start(&lab);
    assert_same_bytes("/ on a fresh start", &curl(&lab, "/"), b"newer\n");
    write(&root, "index.html", b"newest\n");
    server.signal("-HUP");
    wait_for_stderr(&mut server, "reloaded: ", 1);
    assert_same_bytes(
        "/ after the first thread's reload",
        &curl(&lab, "/"),
        b"newest\n",
    );
    assert_unprivileged(server.pid(), &user);
    server.signal("-TERM");
    let Stopped {
        status,
        stdout,
        stderr,
    } = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "sirocco exited with {status} on SIGTERM: {stdout}{stderr}"
    );
    assert!(stdout.contains("stopped: 2 requests"), "{stdout}");
}

#[test]
fn a_system_call_outside_the_filter_kills_the_server_with_sigsys() {
    if !lab_available("lab_privilege_seccomp_kill", &[]) {
        return;
    }
    let Some(_user) = nobody("lab_privilege_seccomp_kill") else {
        return;
    };
    if !sandbox::SECCOMP_SUPPORTED {
        eprintln!("NOT RUN: no seccomp filter on this platform");
        return;
    }
    let root = readable_dir("priv-kill");
    write(&root, "index.html", b"never served\n");
    let lab = VethLab::create_unique("xprivk").expect("create the veth lab");
    // Hidden: install the filter, then make one forbidden call (socket).
    let mut server = as_nobody(
        root.path(),
        &["--stats-interval", "0", "--seccomp", "selftest-kill"],
    )
    .spawn(&lab);
    let Stopped {
        status,
        stdout,
        stderr,
    } = server.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.signal(),
        Some(libc::SIGSYS),
        "the server was not killed by SIGSYS ({status}): {stdout}{stderr}"
    );
    assert!(stderr.contains("sandbox: "), "{stderr}");
    assert!(!stderr.contains("let a forbidden system call"), "{stderr}");
}

/// No lab needed: a mistake in `--user` is an error message and exit status 1, never a panic,
/// and it comes before anything is attached or loaded.
#[test]
fn an_unknown_user_is_a_clear_error() {
    let output = Command::new(sirocco_binary())
        .args(["serve", "--driver", "pcap", "--ip", "198.18.0.2/24"])
        .args(["--pcap-in", "/nonexistent/in.pcap"])
        .args(["--user", "sirocco-no-such-user"])
        .stdin(Stdio::null())
        .output()
        .expect("run sirocco serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if sandbox::is_root() {
        assert!(
            stderr.contains("no user named 'sirocco-no-such-user'"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("needs root"), "{stderr}");
    }
    assert!(
        !stderr.contains("in.pcap"),
        "checked after the trace: {stderr}"
    );
}
