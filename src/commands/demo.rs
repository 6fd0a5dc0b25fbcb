//! `sirocco demo`: the embedded default. Builds a throwaway veth lab, serves the sample site in
//! it over AF_XDP, prints how to fetch from it, and removes the lab on Ctrl-C. With `--check` it
//! fetches every file from the lab's client side, compares the bytes, and reports.
//!
//! It needs root, veth and AF_XDP, and no other program: the lab is built over rtnetlink and
//! the ethtool ioctl ([`crate::lab::netlink`]), and `--check` fetches with its own HTTP client
//! ([`crate::lab::fetch`]) on a thread inside the client namespace.
//!
//! The server is this same binary, run as a child that enters the lab's server namespace
//! before it starts (as `ip netns exec <srv>` would):
//! `<this exe> serve --driver afxdp --iface veth-srv --ip 198.18.0.2/24 ...`.
//! Its stdout (the stats lines) and stderr pass straight through. The demo process keeps the
//! lab: on SIGINT or SIGTERM it stops the child, waits for it, and then removes the lab.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sirocco_drivers::netns;

use super::stop_on_signals;
use crate::cli::DemoArgs;
use crate::lab::fetch::{self, Response};
use crate::lab::veth::{SERVER_IFACE, VethLab};
use crate::lab::{PREFIX_LEN, PREFIX_LEN6, SERVER_ADDR, SERVER_ADDR6};

/// How long the server gets to attach and answer before the demo gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one file of `--check` may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopped server gets to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The sample site that ships in the source tree next to this crate.
pub fn default_site_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// Runs the demo. Returns whether `--check` passed (always true without `--check`).
pub fn run(args: DemoArgs) -> anyhow::Result<bool> {
    let root = args.root.clone().unwrap_or_else(default_site_root);
    if !root.is_dir() {
        bail!(
            "no site to serve at {}: pass --root DIR with the directory to serve",
            root.display()
        );
    }
    // The server runs in another process that may start elsewhere: give it an absolute path.
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let exe = std::env::current_exe().context("finding this program's path to run the server")?;
    let stop = stop_on_signals()?;
    let lab = VethLab::create_unique("demo").context("building the demo lab")?;

    let mut server = lab.server_command(&exe);
    server
        .args(["serve", "--driver", "afxdp", "--iface", SERVER_IFACE])
        .arg("--ip")
        .arg(format!("{SERVER_ADDR}/{PREFIX_LEN}"))
        .arg("--ip")
        .arg(format!("{SERVER_ADDR6}/{PREFIX_LEN6}"))
        .arg("--root")
        .arg(&root)
        .arg("--sleep-when-idle")
        .arg("--stats-interval")
        .arg(args.stats_interval.to_string())
        .stdin(Stdio::null());
    let child = server.spawn().with_context(|| {
        format!(
            "starting the server in the lab ({} serve in namespace {})",
            exe.display(),
            lab.server_ns()
        )
    })?;
    let mut server = ServerChild(child);

    let url = format!("http://{SERVER_ADDR}/");
    let url6 = format!("http://[{SERVER_ADDR6}]/");
    println!(
        "sirocco demo: serving {} at {url} and {url6} over AF_XDP",
        root.display()
    );
    println!(
        "  server namespace: {} ({SERVER_IFACE}, pid {})",
        lab.server_ns(),
        server.0.id()
    );
    println!("  client namespace: {}", lab.client_ns());
    println!("  fetch a page:     {}", lab.curl_hint(&url));
    println!(
        "  or over IPv6:     {}",
        lab.curl_hint(&format!("-6 {url6}"))
    );
    if !args.check {
        println!("  Ctrl-C stops the server and removes the lab");
    }

    let outcome = if args.check {
        wait_until_serving(&lab, &mut server, &stop).and_then(|()| check_site(&lab, &root, &stop))
    } else {
        wait_for_stop(&mut server, &stop).map(|()| true)
    };
    // Whatever happened, the server stops before the lab goes away.
    let status = server.stop()?;
    let name = lab.name().to_string();
    drop(lab);
    if !args.check {
        println!("sirocco demo: server stopped, lab {name} removed");
    }
    let passed = outcome?;
    if !status.success() && !stop.load(Ordering::Relaxed) {
        bail!("the server exited with {status}");
    }
    Ok(passed)
}

/// The server process; killed on drop if it is still running.
struct ServerChild(Child);

impl ServerChild {
    /// Asks the server to stop (SIGTERM), waits for it, and kills it if it does not exit.
    fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.0.try_wait()? {
            return Ok(status);
        }
        // The child entered the namespace itself and then ran the server: this pid is the
        // server's. It may have exited meanwhile, which is no error.
        let _ = netns::send_signal(self.0.id(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "the server did not stop within {} s: killing it",
            STOP_TIMEOUT.as_secs()
        );
        self.0.kill()?;
        Ok(self.0.wait()?)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for Ctrl-C (or SIGTERM), or for the server to exit on its own (an error).
fn wait_for_stop(server: &mut ServerChild, stop: &AtomicBool) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited with {status} (its messages are above)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until the server answers HTTP from the client side.
fn wait_until_serving(
    lab: &VethLab,
    server: &mut ServerChild,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("http://{SERVER_ADDR}/");
    loop {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted before the server was ready");
        }
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited with {status} before serving (its messages are above)");
        }
        // Any HTTP answer will do (a site without index.html answers 404).
        let answered = FAMILIES
            .iter()
            .all(|&server| fetch_from_client(lab, server, "/", Duration::from_secs(1)).is_ok());
        if answered {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the server did not answer at {url} within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server's address in each family, as `--check` fetches from it: IPv4, then IPv6.
const FAMILIES: [IpAddr; 2] = [IpAddr::V4(SERVER_ADDR), IpAddr::V6(SERVER_ADDR6)];

/// Fetches every file under `root` (and `/` for the index) from the lab's client side, over
/// IPv4 and over IPv6, and compares the bytes. Prints one line per file and family; returns
/// whether all matched.
fn check_site(lab: &VethLab, root: &Path, stop: &AtomicBool) -> anyhow::Result<bool> {
    let mut targets: Vec<(String, PathBuf)> = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let url_path: Vec<String> = relative
            .components()
            .map(|c| percent_encode(&c.as_os_str().to_string_lossy()))
            .collect();
        targets.push((
            format!("/{}", url_path.join("/")),
            entry.path().to_path_buf(),
        ));
    }
    if root.join("index.html").is_file() {
        targets.push(("/".to_string(), root.join("index.html")));
    }

    let mut matched = 0;
    for (url_path, file) in &targets {
        let expected =
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        for server in FAMILIES {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted during the check");
            }
            let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
            let verdict = check_one(lab, server, url_path, &expected);
            if verdict == "ok" {
                matched += 1;
            }
            println!(
                "check {family} {url_path:<40} {:>9} bytes  {verdict}",
                expected.len()
            );
        }
    }
    let total = targets.len() * FAMILIES.len();
    println!(
        "check: {matched} of {total} fetches byte-exact ({} files, over IPv4 and IPv6)",
        targets.len()
    );
    Ok(matched == total)
}

/// Fetches `url_path` from `server` and says "ok" or why not.
fn check_one(lab: &VethLab, server: IpAddr, url_path: &str, expected: &[u8]) -> String {
    match fetch_from_client(lab, server, url_path, FETCH_TIMEOUT) {
        Err(error) => format!("FAIL ({error})"),
        Ok(response) if !(200..300).contains(&response.status) => {
            format!("FAIL (HTTP status {})", response.status)
        }
        Ok(response) if response.body != expected => format!(
            "FAIL (got {} bytes, expected {})",
            response.body.len(),
            expected.len()
        ),
        Ok(_) => "ok".to_string(),
    }
}

/// `GET path` from the server, on a thread inside the lab's client namespace (so over the
/// veth pair, as a client there would fetch it).
fn fetch_from_client(
    lab: &VethLab,
    server: IpAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let server = SocketAddr::from((server, 80));
    let host = fetch::host_for(server);
    let fetched = netns::in_namespace(lab.client_ns(), || fetch::get(server, &host, path, timeout))
        .with_context(|| format!("entering the client namespace {}", lab.client_ns()))?;
    Ok(fetched?)
}

/// Percent-encodes one path segment (RFC 3986 §2.1): unreserved characters stay.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
