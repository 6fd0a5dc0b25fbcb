//! Lab end-to-end over AF_XDP: the real `sirocco` binary serves from the server namespace of a
//! fresh veth lab (one per test), and real clients in the client namespace talk to it through
//! the kernel's TCP/IP stack: curl, wget, ping, wrk, ab, Python's `http.client` and headless
//! Chromium. HTTP features through curl (ranges, conditionals, --compressed, HEAD), and a
//! SIGHUP reload during downloads. Also: the kernel keeps the traffic that is not sirocco's, a
//! SIGKILL leaves no XDP program behind, and `sirocco demo --check` passes.
//!
//! Needs root, iproute2, ethtool, ping and each test's clients. Without them these tests fail
//! when `SIROCCO_REQUIRE_LAB=1` (as in CI), and otherwise print why they did not run. Every
//! client is bounded in time (`timeout`, `--max-time`, `-d5s`), and the load tests (wrk, ab,
//! Chromium) take turns through [`HEAVY`] so that parallel tests do not starve each other.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sirocco::lab::SERVER_ADDR;
use sirocco::lab::veth::VethLab;
use sirocco_tests::TestTree;
use sirocco_tests::lab::{
    ChildGuard, CollectedBytes, LabServer, TempDir, assert_same_bytes, assert_wget_mirrors,
    chromium_dump_dom, client_bounded, collect_bytes, collected_len, curl_body, files_under,
    lab_available, poll_until, run, server_url, sirocco_binary, stat, wrk,
};

/// The load tests hold this while they run, one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sample site, www/ at the top of the workspace.
fn sample_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// curl's body for `path`, asserting success.
fn curl(lab: &VethLab, path: &str) -> Vec<u8> {
    curl_body(lab, &[], &server_url(path))
}

#[test]
fn curl_fetches_every_size_byte_exact() {
    if !lab_available("curl_sizes", &["curl"]) {
        return;
    }
    let sizes = [
        0,
        1,
        512,
        1447,
        1448,
        1449,
        65_536,
        4 * 1024 * 1024,
        16 * 1024 * 1024,
    ];
    let tree = TestTree::with_sizes(&sizes);
    let lab = VethLab::create_unique("xsizes").expect("create the veth lab");
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    for (url_path, expected) in tree.files() {
        let started = Instant::now();
        let body = curl(&lab, url_path);
        assert_same_bytes(url_path, &body, expected);
        println!(
            "{url_path}: {} bytes byte-exact in {:.0} ms",
            body.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), sizes.len() as u64, "{}", stopped.stdout);
}

#[test]
fn wget_mirror_of_the_sample_site_matches_it_file_by_file() {
    if !lab_available("wget_mirror", &["wget", "timeout"]) {
        return;
    }
    let site = sample_site();
    let lab = VethLab::create_unique("xwget").expect("create the veth lab");
    let server = LabServer::start(&lab, &site, &["--stats-interval", "0"]);
    let files = assert_wget_mirrors(&lab, &[], &server_url("/"), &site);
    println!("wget --mirror: {files} files, all byte-exact");
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), files as u64, "{}", stopped.stdout);
}

#[test]
fn ping_gets_replies() {
    if !lab_available("ping", &[]) {
        return;
    }
    let lab = VethLab::create_unique("xping").expect("create the veth lab");
    let server = LabServer::start(&lab, &sample_site(), &["--stats-interval", "0"]);
    let output = run(
        lab.client_command("ping").args([
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &SERVER_ADDR.to_string(),
        ]),
        "ping",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(
        output.status.success() && text.contains("3 packets transmitted, 3 received"),
        "ping {SERVER_ADDR} did not get 3 replies: {text}"
    );
    server.stop_cleanly();
}

/// wrk for 5 s at `connections` against a 512-byte file (Kegel's test), one thread.
fn wrk_run(tag: &str, connections: u32) {
    if !lab_available(tag, &["wrk", "bash", "timeout"]) {
        return;
    }
    let _turn = heavy();
    let tree = TestTree::standard();
    let lab = VethLab::create_unique(tag).expect("create the veth lab");
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "1"]);
    let (text, report) = wrk(&lab, 1, connections, "/file-512.bin");
    let stopped = server.stop_cleanly();
    for line in stopped.stats_lines() {
        println!("server: {line}");
    }
    println!("server: {}", stopped.stdout.lines().last().unwrap_or(""));
    report.assert_clean(&text);
    assert!(
        stopped.requests() >= report.requests,
        "the server counted {} requests, fewer than wrk's {}",
        stopped.requests(),
        report.requests
    );
}

#[test]
fn wrk_100_connections_all_2xx_no_socket_errors() {
    wrk_run("xwrk100", 100);
}

#[test]
fn wrk_1000_connections_all_2xx_no_socket_errors() {
    wrk_run("xwrk1000", 1000);
}

#[test]
fn ab_keepalive_5000_requests_none_failed() {
    if !lab_available("ab", &["ab", "timeout"]) {
        return;
    }
    let _turn = heavy();
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("xab").expect("create the veth lab");
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let output = run(
        client_bounded(&lab, 60, "ab")
            .args(["-k", "-n", "5000", "-c", "50", "-s", "10", "-q"])
            .arg(server_url("/file-512.bin")),
        "ab",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(
        output.status.success(),
        "ab exited with {}: {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    assert_eq!(
        field("Complete requests:").as_deref(),
        Some("5000"),
        "{text}"
    );
    assert_eq!(field("Failed requests:").as_deref(), Some("0"), "{text}");
    assert_eq!(field("Non-2xx responses:"), None, "{text}");
    assert_eq!(
        field("Keep-Alive requests:").as_deref(),
        Some("5000"),
        "{text}"
    );
    let stopped = server.stop_cleanly();
    assert!(stopped.requests() >= 5000, "{}", stopped.stdout);
}

/// Sends every request in one write on one connection, then reads the responses in order with
/// `http.client.HTTPResponse` over one shared buffered reader (a fresh `makefile` per response
/// would lose what the previous one read ahead). Arguments: host, then URL path and local file
/// pairs. Exits 1 unless every body matches its file.
const PIPELINE_PY: &str = r#"
import http.client, socket, sys

host = sys.argv[1]
pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
sock = socket.create_connection((host, 80), timeout=20)
sock.sendall(b"".join(
    f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for url, _ in pairs))

class Shared:
    """One buffered reader for every response; closing a response must not close it."""
    def __init__(self, f): self.f = f
    def __getattr__(self, name): return getattr(self.f, name)
    def close(self): pass

class Source:
    def __init__(self, f): self.f = Shared(f)
    def makefile(self, *args, **kwargs): return self.f

source = Source(sock.makefile("rb"))
good = 0
for url, path in pairs:
    response = http.client.HTTPResponse(source, method="GET")
    response.begin()
    body = response.read()
    with open(path, "rb") as f:
        expected = f.read()
    ok = response.status == 200 and body == expected
    good += ok
    print(f"{url}: {response.status}, {len(body)} bytes, "
          + ("byte-exact" if ok else f"MISMATCH (expected 200 and {len(expected)} bytes)"))
sock.close()
print(f"pipelined: {good} of {len(pairs)} responses byte-exact")
sys.exit(0 if good == len(pairs) else 1)
"#;

#[test]
fn python_pipelines_ten_requests_in_one_write() {
    if !lab_available("python_pipelining", &["python3", "timeout"]) {
        return;
    }
    let tree = TestTree::standard();
    // Ten different files (each URL once: no directory aliases), the 4 MiB one last.
    let mut files: Vec<&str> = tree
        .files()
        .map(|(url, _)| url)
        .filter(|url| !url.ends_with('/'))
        .collect();
    files.sort_by_key(|url| (*url == sirocco_tests::BIG_FILE_URL, *url));
    files.drain(..files.len() - 10);
    assert_eq!(files.len(), 10);
    let lab = VethLab::create_unique("xpipe").expect("create the veth lab");
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let mut command = client_bounded(&lab, 60, "python3");
    command
        .args(["-c", PIPELINE_PY])
        .arg(SERVER_ADDR.to_string());
    for url in &files {
        command.arg(url).arg(tree.path().join(&url[1..]));
    }
    let output = run(&mut command, "python3");
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    assert!(
        output.status.success(),
        "pipelining failed ({}): {text}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("pipelined: 10 of 10"), "{text}");
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 10, "{}", stopped.stdout);
}

#[test]
fn headless_chromium_loads_the_page_and_runs_its_script() {
    if !lab_available("chromium", &["chromium", "timeout"]) {
        return;
    }
    let _turn = heavy();
    let lab = VethLab::create_unique("xchrome").expect("create the veth lab");
    let server = LabServer::start(&lab, &sample_site(), &["--stats-interval", "1"]);
    let output = chromium_dump_dom(&lab, &server_url("/"));
    let dom = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // Say whether the server was still there, and what it counted, to tell a browser
        // that hung from a server that stopped answering.
        let mut server = server;
        let state = match server.try_wait() {
            Ok(Some(status)) => format!("the server had exited with {status}"),
            _ => "the server was still running".to_string(),
        };
        let stopped = server.stop();
        panic!(
            "chromium exited with {} ({state}); server output:\n{}{}\nchromium stderr:\n{}",
            output.status,
            stopped.stdout,
            stopped.stderr,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let ran = "JavaScript ran: every subresource was served.";
    assert!(
        dom.contains(ran),
        "the DOM does not show that app.js ran:\n{dom}"
    );
    println!("chromium: the DOM says \"{ran}\"");

    // Wait for a stats line printed after Chromium finished, so it counts everything.
    let lines_then = server.stdout_now().lines().count();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stdout_now().lines().count() <= lines_then {
        assert!(Instant::now() < deadline, "no stats line within 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = server.stop_cleanly();
    let stats = stopped.stats_lines();
    let last = *stats.last().expect("stats lines");
    for line in stats.iter().filter(|l| !l.contains("(+0)")) {
        println!("server: {line}");
    }
    println!("server (last): {last}");
    println!("server: {}", stopped.stdout.lines().last().unwrap_or(""));
    // index.html, site.css, app.js and logo.png; the page names its icon as `data:,`, so
    // there is no favicon request, and Chromium makes no other.
    let served = stopped.requests();
    assert_eq!(
        served, 4,
        "expected exactly the page and its 3 subresources: {}",
        stopped.stdout
    );
    assert_eq!(stat(last, "req"), served, "{last}");
    assert_eq!(stat(last, "2xx"), served, "{last}");
    assert_eq!(stat(last, "4xx"), 0, "{last}");
    assert_eq!(stat(last, "5xx"), 0, "{last}");
}

#[test]
fn the_kernel_keeps_its_own_address_beside_sirocco() {
    if !lab_available("kernel_coexists", &["curl"]) {
        return;
    }
    let kernel_addr = Ipv4Addr::new(198, 18, 0, 3);
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("xkern").expect("create the veth lab");
    lab.add_kernel_server_address(kernel_addr)
        .expect("give veth-srv a kernel address");
    // The default filter: only ARP for 198.18.0.2 and IPv4 to it go to sirocco.
    let server = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let ping = lab
        .client_command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &kernel_addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ping");
    let ping = ChildGuard(ping);
    // Meanwhile, sirocco serves its own address.
    let mut fetched = 0;
    for (url_path, expected) in tree.files() {
        if url_path != sirocco_tests::BIG_FILE_URL {
            assert_same_bytes(url_path, &curl(&lab, url_path), expected);
            fetched += 1;
        }
    }
    let mut ping = ping;
    let status = ping.0.wait().expect("wait for ping");
    let mut text = String::new();
    if let Some(mut out) = ping.0.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    println!("{text}");
    assert!(
        status.success() && text.contains("3 packets transmitted, 3 received"),
        "the kernel's {kernel_addr} did not answer ping while sirocco served: {text}"
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), fetched, "{}", stopped.stdout);
}

#[test]
fn sigkill_leaves_no_xdp_program_and_a_new_server_starts_at_once() {
    if !lab_available("sigkill", &["curl"]) {
        return;
    }
    let tree = TestTree::standard();
    let lab = VethLab::create_unique("xkill").expect("create the veth lab");
    let first = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    let link = lab.server_link().expect("ip link show veth-srv");
    assert!(
        link.contains("xdp"),
        "no XDP program on veth-srv while serving: {link}"
    );
    first.kill();

    // The kernel drops the program with the last reference to its link, which SIGKILL
    // releases: poll for that, with a bound generous enough for a loaded machine (the time it
    // took is printed, not asserted).
    let clean = poll_until(
        "the XDP program leaving veth-srv after SIGKILL",
        Duration::from_secs(20),
        || {
            !lab.server_link()
                .expect("ip link show veth-srv")
                .contains("xdp")
        },
    );
    println!(
        "veth-srv clean {:.0} ms after SIGKILL",
        clean.as_secs_f64() * 1e3
    );

    // The next server attaches and answers ping: start() waits for both (at most 30 s) and
    // fails if it exits instead, e.g. because the queue is still taken.
    let started = Instant::now();
    let second = LabServer::start(&lab, tree.path(), &["--stats-interval", "0"]);
    println!(
        "the next server answered ping {:.0} ms after starting",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_same_bytes(
        "/file-512.bin",
        &curl(&lab, "/file-512.bin"),
        &tree.body("/file-512.bin"),
    );
    let stopped = second.stop_cleanly();
    assert_eq!(stopped.requests(), 1, "{}", stopped.stdout);
}

#[test]
fn demo_check_fetches_the_sample_site_and_exits_zero() {
    if !lab_available("demo_check", &["curl", "timeout"]) {
        return;
    }
    // Output goes to files, not pipes: the server child inherits them, and a pipe would keep
    // this test waiting if a demo killed by `timeout` ever left its server behind. The demo
    // stops within a curl's --max-time (20 s) of SIGTERM; -k 30 leaves it that long.
    let dir = TempDir::new("demo");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let create = |path: &Path| std::fs::File::create(path).expect("create an output file");
    let status = Command::new("timeout")
        .args(["-k", "30", "120"])
        .arg(sirocco_binary())
        .args(["demo", "--check", "--stats-interval", "0"])
        .stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path))
        .status()
        .expect("run sirocco demo --check");
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    println!("{stdout}");
    assert!(
        status.success(),
        "demo --check exited with {status}: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("over AF_XDP"),
        "the demo did not serve over AF_XDP: {stdout}"
    );
    // Every file of www/, plus "/" for the index, over IPv4 and over IPv6.
    let files = files_under(&sample_site()).len() + 1;
    let summary = format!(
        "check: {0} of {0} fetches byte-exact ({files} files, over IPv4 and IPv6)",
        2 * files
    );
    assert!(
        stdout.contains(&summary),
        "expected '{summary}' in: {stdout}"
    );
}

/// curl with `extra` options for `path`: (HTTP status, response head, body). `--max-time`
/// bounds it; the status comes from `-w`.
fn curl_with(
    lab: &VethLab,
    path: &str,
    extra: &[&str],
    head_file: &Path,
) -> (u16, String, Vec<u8>) {
    let url = server_url(path);
    let output = run(
        lab.client_command("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .arg("--dump-header")
            .arg(head_file)
            .args(["--write-out", "\n%{http_code}"])
            .args(extra)
            .arg(&url),
        "curl",
    );
    assert!(
        output.status.success(),
        "curl {extra:?} {url} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut body = output.stdout;
    let newline = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let code = String::from_utf8_lossy(&body[newline + 1..])
        .trim()
        .parse()
        .expect("status");
    body.truncate(newline);
    let head = std::fs::read_to_string(head_file).unwrap_or_default();
    (code, head, body)
}

/// The value of header `name` in a head curl dumped (case-insensitive name).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn curl_range_conditional_compressed_and_head_requests() {
    if !lab_available("curl_http_features", &["curl"]) {
        return;
    }
    let site = sample_site();
    let lab = VethLab::create_unique("xcurlhttp").expect("create the veth lab");
    let server = LabServer::start(
        &lab,
        &site,
        &[
            "--stats-interval",
            "0",
            "--compress",
            "--cache-control",
            "public, max-age=60",
        ],
    );
    let scratch = TempDir::new("curlhttp");
    let head_file = scratch.path().join("head");
    let file = std::fs::read(site.join("files/64k.bin")).expect("read 64k.bin");

    // -r: single ranges, including suffix and open-ended ones; 416 past the end.
    for (range, expected) in [
        ("0-99", &file[..100]),
        ("-100", &file[file.len() - 100..]),
        ("65000-", &file[65000..]),
    ] {
        let (code, head, body) = curl_with(&lab, "/files/64k.bin", &["-r", range], &head_file);
        assert_eq!(code, 206, "-r {range}: {head}");
        assert!(
            header(&head, "Content-Range").is_some_and(|v| v.ends_with("/65536")),
            "{head}"
        );
        assert_same_bytes(&format!("-r {range}"), &body, expected);
    }
    let (code, head, _) = curl_with(&lab, "/files/64k.bin", &["-r", "70000-"], &head_file);
    assert_eq!(code, 416, "{head}");
    assert_eq!(
        header(&head, "Content-Range"),
        Some("bytes */65536"),
        "{head}"
    );

    // -I: the head only, with the length a GET would send.
    let (code, head, body) = curl_with(&lab, "/files/64k.bin", &["-I"], &head_file);
    assert_eq!(code, 200);
    assert!(
        body.is_empty() || body.starts_with(b"HTTP/1.1 200"),
        "HEAD sent a body"
    );
    assert_eq!(header(&head, "Content-Length"), Some("65536"), "{head}");
    assert_eq!(
        header(&head, "Cache-Control"),
        Some("public, max-age=60"),
        "{head}"
    );
    let etag = header(&head, "ETag").expect("an ETag").to_string();

    // If-None-Match with the ETag, and -z (If-Modified-Since) with a later date: 304.
    let inm = format!("If-None-Match: {etag}");
    let (code, head, body) = curl_with(&lab, "/files/64k.bin", &["-H", &inm], &head_file);
    assert_eq!(code, 304, "{head}");
    assert!(body.is_empty());
    let (code, _, body) = curl_with(
        &lab,
        "/files/64k.bin",
        &["-H", "If-None-Match: \"other\""],
        &head_file,
    );
    assert_eq!(code, 200);
    assert_same_bytes("If-None-Match other", &body, &file);
    let (code, head, _) = curl_with(
        &lab,
        "/files/64k.bin",
        &["-z", "Fri, 31 Dec 9999 23:59:59 GMT"],
        &head_file,
    );
    assert_eq!(code, 304, "{head}");
    let (code, _, body) = curl_with(
        &lab,
        "/files/64k.bin",
        &["-z", "Thu, 01 Jan 1970 00:00:01 GMT"],
        &head_file,
    );
    assert_eq!(code, 200);
    assert_same_bytes("-z 1970", &body, &file);

    // --compressed: the gzip variant built by --compress, decoded by curl to the same bytes.
    let css = std::fs::read(site.join("index.html")).expect("read index.html");
    let (code, head, body) = curl_with(&lab, "/index.html", &["--compressed"], &head_file);
    assert_eq!(code, 200);
    assert_eq!(header(&head, "Content-Encoding"), Some("gzip"), "{head}");
    assert_eq!(header(&head, "Vary"), Some("Accept-Encoding"), "{head}");
    assert_same_bytes("--compressed index.html", &body, &css);
    let (code, head, body) = curl_with(&lab, "/index.html", &[], &head_file);
    assert_eq!(code, 200);
    assert_eq!(header(&head, "Content-Encoding"), None, "{head}");
    assert_same_bytes("index.html", &body, &css);

    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), 11, "{}", stopped.stdout);
}

#[test]
fn sighup_reload_keeps_running_downloads_intact_and_serves_the_new_tree() {
    if !lab_available("sighup_reload", &["curl"]) {
        return;
    }
    let root = TempDir::new("reload");
    let old_big: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.path().join("big.bin"), &old_big).expect("write big.bin");
    std::fs::write(root.path().join("index.html"), "old\n").expect("write index.html");
    let lab = VethLab::create_unique("xreload").expect("create the veth lab");
    let server = LabServer::start(
        &lab,
        root.path(),
        &["--stats-interval", "0", "--max-cache-bytes", "9M"],
    );

    // Three slow downloads (2 MiB/s each: about 4 s), running while the tree is reloaded.
    let mut downloads: Vec<(ChildGuard, CollectedBytes, JoinHandle<()>)> = (0..3)
        .map(|_| {
            let mut child = lab
                .client_command("curl")
                .args(["--silent", "--show-error", "--fail", "--max-time", "60"])
                .args(["--limit-rate", "2M"])
                .arg(server_url("/big.bin"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start curl");
            let (body, reader) = collect_bytes(child.stdout.take().expect("piped stdout"));
            (ChildGuard(child), body, reader)
        })
        .collect();
    // Every download under way: some of its body is here, and curl still runs.
    poll_until("every download started", Duration::from_secs(20), || {
        downloads.iter().all(|(_, body, _)| collected_len(body) > 0)
    });
    for (curl, body, _) in &mut downloads {
        assert!(
            curl.0.try_wait().expect("poll curl").is_none(),
            "a download ended before the reload ({} bytes)",
            collected_len(body)
        );
    }

    // A new tree: big.bin changes, index.html changes, a file appears.
    std::fs::write(root.path().join("big.bin"), b"replaced").expect("rewrite big.bin");
    std::fs::write(root.path().join("index.html"), "new\n").expect("rewrite index.html");
    std::fs::write(root.path().join("added.txt"), "added\n").expect("write added.txt");
    let _ = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr_now().contains("reloaded: ") {
        assert!(
            Instant::now() < deadline,
            "no reload within 20 s: {}",
            server.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The downloads spanned the reload: each still had part of the old file to come when the
    // new tree was in force (with a margin for what curl and the pipe hold).
    for (_, body, _) in &downloads {
        let got = collected_len(body);
        assert!(
            got + (512 << 10) < old_big.len(),
            "a download was (nearly) done before the reload finished: {got} of {} bytes; the test did not test a download across a reload",
            old_big.len()
        );
    }
    assert_eq!(curl(&lab, "/"), b"new\n");
    assert_eq!(curl(&lab, "/added.txt"), b"added\n");
    assert_eq!(curl(&lab, "/big.bin"), b"replaced");

    for (mut curl, body, reader) in downloads {
        let status = curl.0.wait().expect("wait for curl");
        reader.join().expect("the download's reader");
        assert!(status.success(), "download failed: {status}");
        let body = body.lock().unwrap_or_else(|p| p.into_inner());
        assert_same_bytes("download across the reload", &body, &old_big);
    }

    // A reload that fails (here: the tree outgrows --max-cache-bytes) keeps the tree in force.
    std::fs::write(root.path().join("huge.bin"), vec![7u8; 10 << 20]).expect("write huge.bin");
    std::fs::write(root.path().join("index.html"), "newer\n").expect("rewrite index.html");
    let _ = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr_now().contains("reload failed") {
        assert!(
            Instant::now() < deadline,
            "no failed reload within 20 s: {}",
            server.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.stderr_now().contains("--max-cache-bytes"),
        "{}",
        server.stderr_now()
    );
    assert_eq!(
        curl(&lab, "/"),
        b"new\n",
        "a failed reload changed the tree"
    );
    let stopped = server.stop_cleanly();
    assert!(stopped.stderr.contains("reloaded: "), "{}", stopped.stderr);
}

/// `tools/compare-http --sirocco-only --check`: Python sends each request of the HTTP
/// behaviour table (methods, paths, ranges, conditionals, bodies, limits, slowloris, TLS and
/// HTTP/2 prefaces, content codings, keep-alive limits) as raw bytes to the live server in its
/// own veth lab, checks every answer (a 4xx for each malformed request), and after each
/// answer that closes the connection fetches `/` on a fresh one.
#[test]
fn every_http_behaviour_answers_as_documented_and_bad_requests_leave_the_server_serving() {
    if !lab_available("compare_http_check", &["python3"]) {
        return;
    }
    // Its slowloris and keep-alive cases measure time: no load test beside it.
    let _heavy = heavy();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/compare-http");
    let output = run(
        Command::new("timeout")
            .args(["-k", "5", "300"])
            .arg(&script)
            .args(["--sirocco-only", "--check", "--binary"])
            .arg(sirocco_binary()),
        "tools/compare-http",
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    println!("{text}");
    assert!(
        output.status.success(),
        "compare-http --check failed ({}):\n{text}\n{errors}",
        output.status
    );
    assert!(errors.contains("cases as expected"), "{errors}");
}

/// `serve --tx-faults` wraps the AF_XDP driver in `Faults`: the server's own frames are lost,
/// reordered, duplicated and corrupted on their way out, and the transfer still arrives byte
/// for byte because TCP recovers. The retransmission counter, read from the metrics endpoint,
/// shows the faults really happened.
#[test]
fn tx_faults_over_afxdp_lose_frames_and_curl_still_gets_every_byte() {
    if !lab_available("tx_faults", &["curl"]) {
        return;
    }
    let sizes = [65_536, 1024 * 1024, 4 * 1024 * 1024];
    let tree = TestTree::with_sizes(&sizes);
    let lab = VethLab::create_unique("xfaults").expect("create the veth lab");
    let server = LabServer::start(
        &lab,
        tree.path(),
        &[
            "--stats-interval",
            "0",
            "--tx-faults",
            "loss=0.03,reorder=0.02,duplicate=0.01,corrupt=0.01,seed=7",
            "--metrics-listen",
            "127.0.0.1:9464",
        ],
    );
    for (url_path, expected) in tree.files() {
        let body = curl(&lab, url_path);
        assert_same_bytes(url_path, &body, expected);
    }
    let retransmits = || {
        let out = run(
            lab.server_command("curl").args([
                "--silent",
                "--max-time",
                "5",
                "http://127.0.0.1:9464/metrics",
            ]),
            "curl the metrics",
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("sirocco_stack_tcp_retransmits_total{queue=\"0\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    poll_until(
        "retransmissions in the metrics",
        Duration::from_secs(5),
        || retransmits() > 0,
    );
    let stopped = server.stop_cleanly();
    assert_eq!(stopped.requests(), sizes.len() as u64, "{}", stopped.stdout);
}
