//! `sirocco check-config FILE` and `sirocco serve --config FILE` as a person runs them: a good
//! file prints `FILE: ok: ...` and exits 0; a file with an unknown key, a bad value or a missing
//! root names the file, the line and the key and exits 1, and so does `serve` with it. Runs the
//! release binary (`sirocco_tests::lab::release_binary` builds it if it is missing or stale).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sirocco_tests::lab::sirocco_binary;

/// The sample site of the tests crate.
fn site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("www")
}

/// A directory for this test's files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("sirocco-config-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sirocco(args: &[&str]) -> Output {
    Command::new(sirocco_binary())
        .args(args)
        .output()
        .expect("run sirocco")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_file_is_ok_with_a_summary() {
    let dir = Dir::new("good");
    let root = site();
    let file = dir.file(
        "sirocco.toml",
        &format!(
            "# a comment\niface = \"eth1\"\nip = \"198.18.0.2/24\"\nport = 8080\nroot = \"{}\"\n\
             queues = \"0-1\"\nmax-connections = 10_000\nsleep-when-idle = true\nsack = \"off\"\n",
            root.display()
        ),
    );
    let out = sirocco(&["check-config", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let expected = format!(
        "{}: ok: serve 198.18.0.2/24:8080 on eth1 (driver auto, queues 0,1), ",
        file.display()
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("from {}", root.display())),
        "{stdout}"
    );
}

#[test]
fn mistakes_name_the_file_line_and_key_and_exit_1() {
    let dir = Dir::new("bad");
    let root = site();
    let root_line = format!("root = \"{}\"\n", root.display());
    for (name, body, expected) in [
        (
            "unknown.toml",
            format!("ip = \"198.18.0.2/24\"\n{root_line}\nmax-conections = 5\n"),
            ":4: unknown key 'max-conections' (did you mean 'max-connections'?)".to_string(),
        ),
        (
            "badip.toml",
            format!("{root_line}ip = \"198.18.0.300/24\"\n"),
            ":2: ip: invalid value '198.18.0.300/24' for '--ip <ADDR/PREFIX>': '198.18.0.300' is not an IPv4 address"
                .to_string(),
        ),
        (
            "switch.toml",
            format!("ip = \"198.18.0.2/24\"\n{root_line}sleep-when-idle = \"yes\"\n"),
            ":3: sleep-when-idle is a switch".to_string(),
        ),
        (
            "noroot.toml",
            "ip = \"198.18.0.2/24\"\nroot = \"/nonexistent/sirocco-www\"\n".to_string(),
            ": root: /nonexistent/sirocco-www is not a directory".to_string(),
        ),
        (
            "noip.toml",
            root_line.clone(),
            ": the following required arguments were not provided".to_string(),
        ),
    ] {
        let file = dir.file(name, &body);
        let out = sirocco(&["check-config", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: {}{expected}", file.display())),
            "{name}: {stderr}"
        );
        assert!(text(&out.stdout).is_empty(), "{name}: {}", text(&out.stdout));
    }
}

#[test]
fn serve_reads_the_file_and_reports_its_mistakes_before_serving() {
    let dir = Dir::new("serve");
    let file = dir.file("sirocco.toml", "ip = \"198.18.0.2/24\"\nportt = 80\n");
    let out = sirocco(&["serve", "--config", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2: unknown key 'portt' (did you mean 'port'?)",
            file.display()
        )),
        "{stderr}"
    );
    // A command-line mistake stays clap's usage error (exit 2), with the file given or not.
    let out = sirocco(&["serve", "--config", file.to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn check_config_prints_both_families_and_explains_ip_mistakes() {
    let dir = Dir::new("ip");
    let root_line = format!("root = \"{}\"\n", site().display());
    let file = dir.file(
        "both.toml",
        &format!("iface = \"eth1\"\nip = [\"198.18.0.2/24\", \"2001:2::2/64\"]\n{root_line}"),
    );
    let out = sirocco(&["check-config", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!(
            "{}: ok: serve 198.18.0.2/24:80 and [2001:2::2/64]:80 on eth1 (driver auto), ",
            file.display()
        )),
        "{stdout}"
    );
    let file = dir.file("v6.toml", &format!("ip = \"2001:2::2/64\"\n{root_line}"));
    let out = sirocco(&["check-config", file.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains(": ok: serve [2001:2::2/64]:80 (driver auto), "),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    for (name, ip, expected) in [
        (
            "two4.toml",
            "[\"198.18.0.2/24\", \"198.18.0.3/24\"]",
            ":2: ip: two IPv4 addresses, 198.18.0.2/24 and 198.18.0.3/24",
        ),
        (
            "four6.toml",
            "[\"2001:2::2/64\", \"2001:2::3/64\", \"2001:2::4/64\", \"2001:2::5/64\"]",
            ":2: ip: 4 IPv6 addresses",
        ),
        (
            "linklocal.toml",
            "\"fe80::2/64\"",
            ":2: ip: invalid value 'fe80::2/64' for '--ip <ADDR/PREFIX>': fe80::2 is a link-local address: sirocco derives its link-local address from the MAC",
        ),
        (
            "prefix.toml",
            "\"2001:2::2/129\"",
            ":2: ip: invalid value '2001:2::2/129' for '--ip <ADDR/PREFIX>': prefix length '129' must be a number from 1 to 128",
        ),
    ] {
        let file = dir.file(name, &format!("{root_line}ip = {ip}\n"));
        let out = sirocco(&["check-config", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("error: {}{expected}", file.display())),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_bad_set_of_ip_on_the_command_line_with_exit_2() {
    for (ips, expected) in [
        (
            &["198.18.0.2/24", "198.18.0.3/24"][..],
            "error: invalid value for '--ip <ADDR/PREFIX>': two IPv4 addresses",
        ),
        (
            &[
                "2001:2::2/64",
                "2001:2::3/64",
                "2001:2::4/64",
                "2001:2::5/64",
            ],
            "sirocco serves at most 3, besides the link-local one",
        ),
        (&["2001:2::2"], "'2001:2::2' has no prefix length"),
        (&["::1/128"], "it is the loopback address"),
        (&["0.0.0.0/8"], "use a unicast address"),
    ] {
        let mut args = vec!["serve", "--driver", "pcap"];
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        let out = sirocco(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{ips:?}: {stderr}");
        assert!(stderr.contains(expected), "{ips:?}: {stderr}");
        if ips.len() > 1 {
            // Checked together after parsing, and still shown as clap shows its own errors.
            assert!(stderr.contains("Usage: sirocco serve"), "{ips:?}: {stderr}");
        }
    }
}

/// `serve` with IPv6 alone, and with both families: the stack takes the addresses, the
/// link-local one is derived from the default MAC, and a trace is served to its end.
#[test]
fn serve_runs_with_ipv6_alone_and_with_both_families() {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("traces")
        .join("curl-sizes.pcap");
    let root = site();
    for (ips, against, mac_line) in [
        (
            &["2001:2::2/64"][..],
            "2001:2::2/64",
            // 02:06 and the last four bytes of 2001:2::2; the link-local flips the U/L bit.
            "IPv6 link-local address: fe80::6:ff:fe00:2 (fe80::/64 and the modified EUI-64 of the MAC 02:06:00:00:00:02)",
        ),
        (
            &["2001:2::2/64", "198.18.0.2/24"],
            "198.18.0.2/24, 2001:2::2/64",
            "IPv6 link-local address: fe80::c6ff:fe12:2 (fe80::/64 and the modified EUI-64 of the MAC 02:00:c6:12:00:02)",
        ),
    ] {
        let mut args = vec!["serve", "--driver", "pcap", "--stats-interval", "0"];
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        args.extend(["--pcap-in", trace.to_str().unwrap()]);
        args.extend(["--root", root.to_str().unwrap()]);
        let out = sirocco(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{ips:?}: {stderr}");
        assert!(stderr.contains(mac_line), "{ips:?}: {stderr}");
        assert!(
            stderr.contains(&format!("replaying {} against {against} ", trace.display())),
            "{ips:?}: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_tx_checksum_offload_it_cannot_honour() {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("traces")
        .join("curl-sizes.pcap");
    let root = site();
    let dir = Dir::new("txsum");
    let capture = dir.0.join("out.pcap");
    let afxdp = ["--driver", "afxdp", "--iface", "sirocco-none0"];
    for (extra, expected) in [
        (
            vec!["--driver", "pcap", "--pcap-in", trace.to_str().unwrap()],
            "--tx-checksum-offload on needs --driver afxdp",
        ),
        (
            [&afxdp[..], &["--capture", capture.to_str().unwrap()]].concat(),
            "--tx-checksum-offload on does not go with --capture",
        ),
        (
            [&afxdp[..], &["--tx-faults", "loss=0.1"]].concat(),
            "--tx-checksum-offload on does not go with --tx-faults",
        ),
    ] {
        let mut args = vec!["serve", "--ip", "198.18.0.2/24", "--stats-interval", "0"];
        args.extend([
            "--root",
            root.to_str().unwrap(),
            "--tx-checksum-offload",
            "on",
        ]);
        args.extend(&extra);
        let out = sirocco(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(!capture.exists(), "nothing was opened");
    }
}
