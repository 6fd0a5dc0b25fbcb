//! `sirocco check-config FILE`: checks a configuration file for `serve --config` without
//! serving, as `nginx -t` does. The file goes through the same path as `serve --config FILE`
//! (so keys, values and required flags are checked by the same code), then what can be checked
//! without a device is: the tree under `root` loads (within `max-cache-bytes`), the `user`
//! exists, the pcap input exists, and the directories of the access log and capture exist.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};
use sirocco_drivers::sandbox::User;

use crate::cli::{Command, DriverKind, ServeArgs};
use crate::commands::load_cache;
use crate::config::{CliError, parse_cli_from};

/// Checks `file`; prints `FILE: ok: SUMMARY` on success. `Ok(false)` (exit 1) when the file has
/// a mistake, which is printed.
pub fn run(file: &Path) -> anyhow::Result<bool> {
    match check(file, &[]) {
        Ok(summary) => {
            println!("{}: ok: {summary}", file.display());
            Ok(true)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(false)
        }
    }
}

/// The `serve` arguments that `sirocco serve --config FILE EXTRA...` would run with, checked;
/// the summary line. `extra` are further command-line flags (which win over the file).
pub fn check(file: &Path, extra: &[&str]) -> anyhow::Result<String> {
    let mut args: Vec<OsString> = vec![
        "sirocco".into(),
        "serve".into(),
        "--config".into(),
        file.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let serve = match parse_cli_from(args) {
        Ok(cli) => match cli.command {
            Command::Serve(serve) => serve,
            _ => unreachable!("`sirocco serve ...` parses as serve"),
        },
        // Not a file error: a problem of the arguments above, shown as clap words it.
        Err(error @ CliError::Clap(_)) => bail!("{error}"),
        Err(CliError::Config(error)) => bail!("{error}"),
    };
    check_serve_args(&serve).with_context(|| format!("{}", file.display()))
}

/// What can be checked of `serve`'s arguments without a device; the summary line.
fn check_serve_args(serve: &ServeArgs) -> anyhow::Result<String> {
    if let Some(name) = serve.user.as_deref() {
        User::lookup(name).with_context(|| format!("user {name}"))?;
    }
    if let Some(trace) = &serve.pcap_in
        && !trace.is_file()
    {
        bail!("pcap-in: {} is not a file", trace.display());
    }
    for (key, file) in [
        ("access-log", &serve.common.access_log),
        ("capture", &serve.common.capture),
    ] {
        let Some(file) = file else { continue };
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "{key}: the directory of {} does not exist ({})",
                file.display(),
                dir.display()
            );
        }
    }
    if !serve.common.root.is_dir() {
        bail!("root: {} is not a directory", serve.common.root.display());
    }
    let cache = load_cache(&serve.common)
        .with_context(|| format!("root: loading {}", serve.common.root.display()))?;

    let driver = match serve.driver {
        DriverKind::Auto => "auto",
        DriverKind::Afxdp => "afxdp",
        DriverKind::Netmap => "netmap",
        DriverKind::Tap => "tap",
        DriverKind::Pcap => "pcap",
    };
    let on = match &serve.iface {
        Some(iface) => format!(" on {iface}"),
        None => String::new(),
    };
    let queues = match (&serve.queue, &serve.queues) {
        (Some(queue), _) => format!(", queue {queue}"),
        (None, Some(queues)) => {
            let list: Vec<String> = queues.to_list().iter().map(u32::to_string).collect();
            format!(", queues {}", list.join(","))
        }
        (None, None) => String::new(),
    };
    // `198.18.0.2/24:80 and [2001:2::2/64]:80`: each address with its prefix and the port.
    let ips = serve
        .ips()
        .map_err(|message| anyhow::anyhow!("ip: {message}"))?;
    let port = serve.common.port;
    let addresses: Vec<String> = ips
        .ipv4
        .iter()
        .map(|v4| format!("{v4}:{port}"))
        .chain(ips.ipv6.iter().map(|v6| format!("[{v6}]:{port}")))
        .collect();
    Ok(format!(
        "serve {}{on} (driver {driver}{queues}), {} files ({} bytes) from {}",
        addresses.join(" and "),
        cache.file_count(),
        cache.total_bytes(),
        serve.common.root.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The example file at the top of the repository, with `root` pointed at the sample site
    /// (the example serves /srv/www, which need not exist here).
    #[test]
    fn the_example_file_checks_out() {
        let root = repo().join("www");
        let summary = check(
            &repo().join("sirocco.toml"),
            &["--root", root.to_str().unwrap()],
        )
        .unwrap();
        assert!(
            summary.starts_with("serve 198.18.0.2/24:80 on eth1"),
            "{summary}"
        );
        assert!(summary.contains("queues 0,1,2,3"), "{summary}");
        assert!(
            summary.contains(&format!("from {}", root.display())),
            "{summary}"
        );
    }

    #[test]
    fn a_missing_root_is_reported() {
        let error = check(
            &repo().join("sirocco.toml"),
            &["--root", "/nonexistent/sirocco-www"],
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("root: /nonexistent/sirocco-www is not a directory"),
            "{error:#}"
        );
    }
}
