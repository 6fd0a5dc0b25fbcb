//! What every lab test needs before it starts: the check that the lab can run here (root and
//! the tools), the workspace's binaries (built when missing or stale), and a child process that is
//! killed when the test ends, however it ends. And the server itself: [`LabServer`], the real
//! `sirocco serve` in a lab's server namespace, its output collected while it runs.
//!
//! A lab test that cannot run fails when `SIROCCO_REQUIRE_LAB=1` (as CI sets), and otherwise
//! prints `NOT RUN: ...` with the reason and returns.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sirocco::lab::veth::{SERVER_IFACE, VethLab};
use sirocco::lab::{PREFIX_LEN, SERVER_ADDR};

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
    available(test, !sirocco::lab::is_root(), tools)
}

/// Whether every program in `tools` is here, for a test that needs no root; as [`runnable`]
/// otherwise.
pub fn tools_present(test: &str, tools: &[&str]) -> bool {
    available(test, false, tools)
}

fn available(test: &str, needs_root: bool, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if needs_root {
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

/// A binary of this workspace, built in the same profile and target directory as the running
/// test (`target/<profile>/NAME`), and up to date.
///
/// Cargo builds a package's binaries before that package's own integration tests only (and
/// gives them `CARGO_BIN_EXE_<name>`); these binaries belong to other packages (`sirocco`,
/// `sirocco-tools`), so a plain `cargo test --workspace` on a clean target would not have
/// them, and a partial rebuild would leave stale ones. So the first call for each binary in a
/// test process runs `cargo build --bin NAME` for it: a no-op that takes a moment when it is
/// up to date (as after `tools/test`'s own build). Cargo holds its build lock only while it
/// compiles, not while the tests run, so this does not wait on the `cargo test` that started
/// the test.
pub fn release_binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let binary = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        build_binary(name, profile_dir);
        built.push(name.to_string());
    }
    assert!(
        binary.is_file(),
        "{} not found after building it: build it with `cargo build --workspace --release --bins`",
        binary.display()
    );
    binary
}

/// `cargo build -p PACKAGE --bin NAME` in the profile and target directory of `profile_dir`
/// (`target/<profile>`), panicking with cargo's output if it fails.
fn build_binary(name: &str, profile_dir: &Path) {
    let package = match name {
        "sirocco" => "sirocco",
        "sirocco-replay" | "sirocco-bench" => "sirocco-tools",
        other => panic!("{other} is not a binary of this workspace"),
    };
    let profile = profile_dir
        .file_name()
        .and_then(OsStr::to_str)
        .expect("a profile directory");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .join("Cargo.toml");
    // The cargo that runs the tests (it sets CARGO), else the one that built them.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&workspace)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", package, "--bin", name]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(
        output.status.success(),
        "building {name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `sirocco` binary.
pub fn sirocco_binary() -> PathBuf {
    release_binary("sirocco")
}

/// Runs `tools/compare-nginx --no-build --json --pause 0.2` with `args`, on the release
/// `sirocco` ([`sirocco_binary`]), and asserts it succeeded. Returns its last JSON row and its
/// stderr (where it says how the lab was set up).
pub fn compare_nginx(args: &[&str]) -> (serde_json::Value, String) {
    let binary = sirocco_binary();
    // compare-nginx takes sirocco from $CARGO_TARGET_DIR/release.
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("target/release/sirocco");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/compare-nginx");
    let out = Command::new("python3")
        .arg(script)
        .args(["--no-build", "--json", "--pause", "0.2"])
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run tools/compare-nginx");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "compare-nginx {args:?} failed:\n{stderr}{stdout}"
    );
    let line = stdout.lines().last().expect("one JSON row");
    eprintln!("compare-nginx {args:?}: {line}");
    let row = serde_json::from_str(line).expect("compare-nginx prints JSON");
    (row, stderr)
}

/// Kills the child on drop, so a failed assertion never leaves a server running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system temp dir (`sirocco-lab-<tag>-<pid>-<n>`), removed on
/// drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sirocco-lab-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Text a child wrote, collected line by line by a reader thread while it runs.
pub type Collected = Arc<Mutex<String>>;

/// Starts a thread that collects the lines `pipe` carries until it closes.
pub fn collect(pipe: impl Read + Send + 'static) -> (Collected, JoinHandle<()>) {
    let text: Collected = Arc::default();
    let sink = Arc::clone(&text);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut all = sink.lock().unwrap_or_else(|p| p.into_inner());
            all.push_str(&line);
            all.push('\n');
        }
    });
    (text, reader)
}

/// What was collected so far.
pub fn snapshot(text: &Collected) -> String {
    text.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Bytes a child wrote (a download to stdout), collected by a reader thread while it runs.
pub type CollectedBytes = Arc<Mutex<Vec<u8>>>;

/// Starts a thread that collects every byte `pipe` carries until it closes.
pub fn collect_bytes(mut pipe: impl Read + Send + 'static) -> (CollectedBytes, JoinHandle<()>) {
    let bytes: CollectedBytes = Arc::default();
    let sink = Arc::clone(&bytes);
    let reader = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    });
    (bytes, reader)
}

/// How many bytes were collected so far.
pub fn collected_len(bytes: &CollectedBytes) -> usize {
    bytes.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// Polls `done` every 20 ms until it holds, and returns how long that took; panics with
/// `what` if it does not within `limit`. For events a test waits for: the bound is generous,
/// so that a loaded machine does not fail it, and the time is printed, not asserted.
pub fn poll_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The URL of `path` on a veth lab's server.
pub fn server_url(path: &str) -> String {
    format!("http://{SERVER_ADDR}{path}")
}

/// Panics unless `got` is `expected`, saying where they first differ.
pub fn assert_same_bytes(what: &str, got: &[u8], expected: &[u8]) {
    if got != expected {
        let first = got.iter().zip(expected).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, expected {} (first difference at {first:?})",
            got.len(),
            expected.len(),
        );
    }
}

/// The stats lines (`[   1.0s] conns=... rx=... req=...`) in a server's stdout.
pub fn stats_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("req="))
        .collect()
}

/// How a [`LabServer`] shows it is ready, and the failures when it does not within 30 s.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Text it writes to stderr when it is attached; `None`: wait for ping alone.
    pub marker: Option<&'static str>,
    /// What it is doing until it writes the marker, for the failure when it exits instead:
    /// "sirocco exited with STATUS while {doing}: STDOUT STDERR".
    pub doing: &'static str,
    /// The failure when the marker does not come: "{late} within 30 s: STDERR".
    pub late: &'static str,
    /// The failure when it does not answer ping: "{unanswered} within 30 s: STDERR".
    pub unanswered: &'static str,
}

impl Ready {
    /// It says "serving ... on veth-srv", then answers ping from the client namespace. Ping,
    /// not HTTP, so that no request is counted.
    pub const SERVING: Ready = Ready {
        marker: Some("serving "),
        doing: "attaching to veth-srv",
        late: "sirocco did not attach",
        unanswered: "sirocco attached but did not answer ping",
    };

    /// It answers ping from the client namespace.
    pub const PING: Ready = Ready {
        marker: None,
        doing: "attaching to veth-srv",
        late: "sirocco did not attach",
        unanswered: "sirocco did not answer ping",
    };
}

/// The real `sirocco serve`, with stdout and stderr collected while it runs (usually in a
/// veth lab's server namespace: [`LabServer::afxdp`]). Dropping it kills the server; declare
/// it after the lab, so it is dropped (killed) before the lab is removed.
pub struct LabServer {
    child: ChildGuard,
    stdout: Collected,
    stderr: Collected,
    readers: Vec<JoinHandle<()>>,
}

/// What a server printed, and how it ended.
pub struct Stopped {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Stopped {
    /// N from the final `stopped: N requests, ...` line.
    pub fn requests(&self) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("stopped: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `stopped: N requests` line in: {}", self.stdout))
    }

    /// The stats lines it printed.
    pub fn stats_lines(&self) -> Vec<&str> {
        stats_lines(&self.stdout)
    }
}

/// A [`LabServer`] over AF_XDP to start: [`LabServer::afxdp`].
#[must_use]
pub struct Launch {
    args: Vec<OsString>,
    ready: Ready,
}

impl Launch {
    /// Adds `args` after the options given so far.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Waits for `ready` instead of [`Ready::SERVING`].
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// Starts it in `lab`'s server namespace, and returns at once.
    pub fn spawn(self, lab: &VethLab) -> LabServer {
        let mut command = lab.server_command(sirocco_binary());
        command.args(&self.args);
        LabServer::spawn(command)
    }

    /// Starts it in `lab`'s server namespace, and waits (at most 30 s) until it is ready.
    pub fn start(self, lab: &VethLab) -> LabServer {
        let ready = self.ready;
        let mut server = self.spawn(lab);
        server.wait_ready(lab, &ready);
        server
    }
}

impl LabServer {
    /// `sirocco serve --driver afxdp` on the lab's veth-srv as 198.18.0.2/24, serving `root`
    /// in idle mode (`--sleep-when-idle`), ready when it says so and answers ping
    /// ([`Ready::SERVING`]). [`Launch::args`] adds options, [`Launch::start`] starts it.
    pub fn afxdp(root: &Path) -> Launch {
        let mut args: Vec<OsString> = ["serve", "--driver", "afxdp", "--iface", SERVER_IFACE]
            .map(OsString::from)
            .into();
        args.push("--ip".into());
        args.push(format!("{SERVER_ADDR}/{PREFIX_LEN}").into());
        args.push("--root".into());
        args.push(root.into());
        args.push("--sleep-when-idle".into());
        Launch {
            args,
            ready: Ready::SERVING,
        }
    }

    /// [`LabServer::afxdp`] with `extra` options, started and ready.
    pub fn start(lab: &VethLab, root: &Path, extra: &[&str]) -> LabServer {
        LabServer::afxdp(root).args(extra).start(lab)
    }

    /// Spawns `command`, a server, with no stdin and its stdout and stderr collected.
    pub fn spawn(mut command: Command) -> LabServer {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start sirocco serve");
        let (stdout, out_reader) = collect(child.stdout.take().expect("piped stdout"));
        let (stderr, err_reader) = collect(child.stderr.take().expect("piped stderr"));
        LabServer {
            child: ChildGuard(child),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Waits for `ready`'s marker on stderr, if any, and then for the server to answer ping
    /// from the client side; 30 s in all.
    fn wait_ready(&mut self, lab: &VethLab, ready: &Ready) {
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Some(marker) = ready.marker {
            while !self.stderr_now().contains(marker) {
                self.assert_running(ready.doing);
                assert!(
                    Instant::now() < deadline,
                    "{} within 30 s: {}",
                    ready.late,
                    self.stderr_now()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        loop {
            self.assert_running("answering ping");
            let answered = lab
                .client_command("ping")
                .args(["-c", "1", "-W", "1", &SERVER_ADDR.to_string()])
                .stdin(Stdio::null())
                .output()
                .expect("run ping")
                .status
                .success();
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} within 30 s: {}",
                ready.unanswered,
                self.stderr_now()
            );
        }
    }

    /// Panics, with everything it printed, if the server has exited.
    pub fn assert_running(&mut self, doing: &str) {
        if let Some(status) = self.child.0.try_wait().expect("poll sirocco") {
            self.join_readers();
            panic!(
                "sirocco exited with {status} while {doing}: {}{}",
                self.stdout_now(),
                self.stderr_now()
            );
        }
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.0.try_wait()
    }

    /// The server's pid (the child enters the namespace itself and then runs sirocco).
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// What it wrote to stdout so far.
    pub fn stdout_now(&self) -> String {
        snapshot(&self.stdout)
    }

    /// What it wrote to stderr so far.
    pub fn stderr_now(&self) -> String {
        snapshot(&self.stderr)
    }

    /// Sends `signal` (`-HUP`, `-TERM`...) with `kill`, asserting that it was sent.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the server to exit by itself, kills it after that; then its
    /// exit status and everything it printed.
    pub fn wait_exit(&mut self, timeout: Duration) -> Stopped {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("wait for sirocco") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.0.kill();
                break self.child.0.wait().expect("wait for killed sirocco");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        Stopped {
            status,
            stdout: self.stdout_now(),
            stderr: self.stderr_now(),
        }
    }

    /// SIGTERM, then the exit status and everything it printed. SIGTERM is a graceful stop:
    /// the server may wait up to its `--shutdown-timeout` (10 s by default) for connections to
    /// finish, so it is killed only after 20 s.
    pub fn stop(mut self) -> Stopped {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(20))
    }

    /// [`LabServer::stop`], asserting that it exited 0 on SIGTERM.
    pub fn stop_cleanly(self) -> Stopped {
        let stopped = self.stop();
        assert!(
            stopped.status.success(),
            "sirocco exited with {} on SIGTERM: {}{}",
            stopped.status,
            stopped.stdout,
            stopped.stderr
        );
        stopped
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.child.0.kill().expect("SIGKILL sirocco");
        self.child.0.wait().expect("wait for killed sirocco");
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// What wrk reported.
#[derive(Debug)]
pub struct WrkReport {
    pub requests: u64,
    pub socket_errors: u64,
    pub non_2xx: u64,
}

impl WrkReport {
    /// At least one request, no socket error and no non-2xx response; `text` is wrk's output,
    /// for the message.
    pub fn assert_clean(&self, text: &str) {
        assert!(self.requests > 0, "wrk completed no request: {text}");
        assert_eq!(self.socket_errors, 0, "wrk saw socket errors: {text}");
        assert_eq!(self.non_2xx, 0, "wrk saw non-2xx responses: {text}");
    }
}

/// Reads wrk's summary: requests, socket errors and non-2xx responses.
pub fn parse_wrk(text: &str) -> WrkReport {
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `N requests in` line in wrk output: {text}"));
    // "  Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|counts| {
            counts
                .split(',')
                .map(|c| {
                    c.split_whitespace()
                        .last()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or_else(|| panic!("unreadable socket errors: {counts}"))
                })
                .sum()
        })
        .unwrap_or(0);
    // "  Non-2xx or 3xx responses: 12"
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("unreadable Non-2xx line: {n}"))
        })
        .unwrap_or(0);
    WrkReport {
        requests,
        socket_errors,
        non_2xx,
    }
}

/// Runs `command` with no stdin and returns its output, panicking if it cannot be started.
pub fn run(command: &mut Command, what: &str) -> std::process::Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

/// The value of `key=` on a stats line.
pub fn stat(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in stats line: {line}"))
}

/// wrk for 5 s with `threads` threads and `connections` connections against `path`, from the
/// lab's client namespace (bounded to 30 s, the descriptor limit raised as far as the hard
/// limit allows); what it printed, asserting it ran, and its summary.
pub fn wrk(lab: &VethLab, threads: u32, connections: u32, path: &str) -> (String, WrkReport) {
    wrk_url(lab, threads, connections, &server_url(path))
}

/// [`wrk`] against a whole URL (`http://[2001:2::2]/file-512.bin`, say).
pub fn wrk_url(lab: &VethLab, threads: u32, connections: u32, url: &str) -> (String, WrkReport) {
    let script = format!(
        "ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec timeout -k 5 30 wrk -t{threads} -c {connections} -d5s --latency {url}"
    );
    let output = run(lab.client_command("bash").args(["-c", &script]), "wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{text}");
    assert!(
        output.status.success(),
        "wrk exited with {}: {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report = parse_wrk(&text);
    (text, report)
}

/// Every file under `dir`, as (path relative to `dir`, contents), sorted by path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(base).expect("under base").to_path_buf();
                out.push((relative, bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `timeout -k 5 SECS program`, in the client namespace: a hard bound on any client.
pub fn client_bounded(lab: &VethLab, secs: u32, program: &str) -> Command {
    let mut command = lab.client_command("timeout");
    command.args(["-k", "5", &secs.to_string(), program]);
    command
}

/// `wget --mirror` of `url` from the client namespace (with `extra` options, `-6` say), and
/// asserts that what arrived is `site`, file by file and byte for byte. Returns the number of
/// files.
pub fn assert_wget_mirrors(lab: &VethLab, extra: &[&str], url: &str, site: &Path) -> usize {
    let into = TempDir::new("wget");
    // robots=off: wget would otherwise ask for /robots.txt, which the site does not have.
    let output = run(
        client_bounded(lab, 60, "wget")
            .args(extra)
            .args(["--mirror", "-nH", "-e", "robots=off", "--no-verbose"])
            .args(["--timeout=10", "--tries=1", "--directory-prefix"])
            .arg(into.path())
            .arg(url),
        "wget",
    );
    assert!(
        output.status.success(),
        "wget --mirror {url} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = files_under(site);
    let mirrored = files_under(into.path());
    let names = |files: &[(PathBuf, Vec<u8>)]| -> Vec<PathBuf> {
        files.iter().map(|(p, _)| p.clone()).collect()
    };
    assert_eq!(
        names(&mirrored),
        names(&expected),
        "wget mirrored other files than {} has",
        site.display()
    );
    for ((path, got), (_, want)) in mirrored.iter().zip(&expected) {
        assert_same_bytes(&path.display().to_string(), got, want);
    }
    expected.len()
}

/// Headless Chromium's `--dump-dom` of `url`, from the client namespace (bounded to 60 s, with
/// a throwaway profile): its output, whatever its exit status.
pub fn chromium_dump_dom(lab: &VethLab, url: &str) -> std::process::Output {
    let profile = TempDir::new("chromium");
    run(
        client_bounded(lab, 60, "chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(url),
        "chromium",
    )
}

/// curl's body for `url` from the client namespace (with `extra` options, `-6` say; bounded to
/// 60 s), asserting success.
pub fn curl_body(lab: &VethLab, extra: &[&str], url: &str) -> Vec<u8> {
    let output = run(
        lab.client_command("curl")
            .args(extra)
            .args(["--silent", "--show-error", "--fail", "--max-time", "60"])
            .arg(url),
        "curl",
    );
    assert!(
        output.status.success(),
        "curl {} {url} failed: {}",
        extra.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}
