//! `sirocco demo`: the embedded default. Builds a lab, serves the sample site in it, prints how
//! to fetch from it, and removes the lab on Ctrl-C. With `--check` it fetches every file from
//! the lab's client side with curl, compares the bytes, and reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use sirocco_drivers::tap::TapDevice;

use super::{load_cache, stop_on_signals};
use crate::cli::{CommonArgs, DemoArgs, Ipv4Cidr, default_mac};
use crate::lab::{self, Lab};
use crate::runner::{self, RunOptions};
use crate::server::{Server, ServerConfig, os_seeds};

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
    if args.check && !curl_present() {
        bail!(
            "--check fetches with curl, which was not found: install it, e.g. apt-get install curl"
        );
    }
    let cache = load_cache(&root)?;
    let lab = Lab::create("demo")?;
    let tap_name = Lab::unique_tap_name();
    let tap = TapDevice::open(&tap_name).with_context(|| format!("creating tap {tap_name}"))?;
    lab.adopt_tap(&tap_name)?;

    let ip = Ipv4Cidr {
        addr: lab::SERVER_ADDR,
        prefix_len: lab::PREFIX_LEN,
    };
    let common = CommonArgs {
        port: 80,
        root: root.clone(),
        max_connections: 1024,
        rx_buffer: 4096,
        tx_buffer: 16384,
        idle_timeout: 60,
        capture: None,
        idle_wait: true,
        stats_interval: args.stats_interval,
    };
    let mut config = ServerConfig::new(super::stack_config(ip, default_mac(ip.addr), &common));
    config.unix_time_at_zero = super::serve::unix_now();
    let mut server = Server::new(tap, cache, config, os_seeds())?;

    let url = format!("http://{}/", lab::SERVER_ADDR);
    println!("sirocco demo: serving {} at {url}", root.display());
    println!("  client namespace: {}", lab.namespace());
    println!("  fetch a page:     {}", lab.curl_hint(&url));
    if !args.check {
        println!("  Ctrl-C stops the server and removes the lab");
    }

    let stop = stop_on_signals()?;
    let options = RunOptions {
        idle_wait: true,
        stats_interval: (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval)),
        stop: Arc::clone(&stop),
    };
    let passed = std::thread::scope(|scope| -> anyhow::Result<bool> {
        let checker = args.check.then(|| {
            let (lab, root, stop) = (&lab, &root, Arc::clone(&stop));
            scope.spawn(move || {
                let result = check_site(lab, root);
                stop.store(true, Ordering::Relaxed);
                result
            })
        });
        let mut stdout = std::io::stdout();
        let served = runner::run(&mut server, &options, &mut stdout);
        // Whatever ended the loop, the checker must not outlive it.
        stop.store(true, Ordering::Relaxed);
        served?;
        match checker {
            None => Ok(true),
            Some(handle) => match handle.join() {
                Ok(result) => result,
                Err(_) => bail!("the checker thread panicked"),
            },
        }
    })?;
    drop(lab);
    Ok(passed)
}

/// Fetches every file under `root` (and `/` for the index) from the lab's client side and
/// compares the bytes. Prints one line per file; returns whether all matched.
fn check_site(lab: &Lab, root: &Path) -> anyhow::Result<bool> {
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
        let url = format!("http://{}{url_path}", lab::SERVER_ADDR);
        let output = lab
            .command("curl")
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "20",
                &url,
            ])
            .output()
            .context("running curl in the lab")?;
        let verdict = if !output.status.success() {
            format!("FAIL ({})", String::from_utf8_lossy(&output.stderr).trim())
        } else if output.stdout != expected {
            format!(
                "FAIL (got {} bytes, expected {})",
                output.stdout.len(),
                expected.len()
            )
        } else {
            "ok".to_string()
        };
        if verdict == "ok" {
            matched += 1;
        }
        println!(
            "check {url_path:<40} {:>9} bytes  {verdict}",
            expected.len()
        );
    }
    println!("check: {matched} of {} files byte-exact", targets.len());
    Ok(matched == targets.len())
}

fn curl_present() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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
