//! HTTP features end to end over the in-memory link: the whole server (netstack cells, HTTP,
//! cache) against the simulated client fleet, each response checked byte for byte. Ranges,
//! conditional requests, precompressed variants, pipelining of all of them, the request limits,
//! and the request-header timeout, which only fires through the netstack's wake-up hook (the
//! client sends half a head and then nothing; the virtual clock jumps to the server's deadline).

use std::sync::Arc;

use sirocco::cache::{ContentCache, Lookup};
use sirocco_netstack::Duration;
use sirocco_tests::{assert_all_ok, run_to_completion};
use sirocco_tools::sim::{Limits, Mode, Request, Script, SimConfig, Simulation, SiteTree, seeds};

struct Site {
    tree: SiteTree,
    cache: Arc<ContentCache>,
    file: Arc<[u8]>,
    etag: String,
    gz: Arc<[u8]>,
}

fn site() -> Site {
    let mut tree = SiteTree::new("memory-http").expect("temp dir");
    let file = tree
        .add("data.bin", seeds::bytes(0xda7a, 10_000))
        .expect("write data.bin");
    tree.add("app.js", b"console.log('plain');\n".repeat(40))
        .expect("write app.js");
    // Served as the gzip variant of app.js as it is: the server never looks inside.
    let gz = tree
        .add("app.js.gz", seeds::bytes(0x9212, 300))
        .expect("write app.js.gz");
    let cache = Arc::new(ContentCache::load(tree.root()).expect("load the site"));
    let Lookup::File(id) = cache.lookup(b"/data.bin") else {
        panic!("data.bin not in the cache");
    };
    let etag = cache.file(id).etag.to_string();
    Site {
        tree,
        cache,
        file,
        etag,
        gz,
    }
}

fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: sirocco.test\r\n{headers}\r\n").into_bytes()
}

/// `get` for a script that uses a new connection per request: the server closes after each.
fn get_close(path: &str, headers: &str) -> Vec<u8> {
    get(path, &format!("{headers}Connection: close\r\n"))
}

fn slice(body: &[u8], range: std::ops::Range<usize>) -> Arc<[u8]> {
    body[range].into()
}

fn run(site: &Site, config: SimConfig, scripts: Vec<Script>, expected: u64) -> Simulation {
    let mut sim =
        Simulation::new(Arc::clone(&site.cache), config, scripts).expect("build the simulation");
    let report = run_to_completion(&mut sim, Limits::secs(600));
    assert_all_ok(&report, expected);
    sim
}

/// The multipart/byteranges body for `ranges` of data.bin (the boundary is its ETag's digits).
fn multipart(site: &Site, ranges: &[(usize, usize)]) -> Arc<[u8]> {
    let boundary = site.etag.trim_matches('"');
    let len = site.file.len();
    let mut body = Vec::new();
    for &(start, end) in ranges {
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{}/{len}\r\n\r\n",
                end - 1
            )
            .as_bytes(),
        );
        body.extend_from_slice(&site.file[start..end]);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body.into()
}

/// Range, conditional and content-coding requests with their exact answers; `get` renders
/// each request (with or without `Connection: close`).
fn feature_requests(site: &Site, get: fn(&str, &str) -> Vec<u8>) -> Arc<[Request]> {
    let f = &site.file;
    let plain_js: Arc<[u8]> = b"console.log('plain');\n".repeat(40).into();
    vec![
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=0-99\r\n"),
            206,
            slice(f, 0..100),
        ),
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=-100\r\n"),
            206,
            slice(f, 9_900..10_000),
        ),
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=9000-\r\n"),
            206,
            slice(f, 9_000..10_000),
        ),
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=0-1,5-6\r\n"),
            206,
            multipart(site, &[(0, 2), (5, 7)]),
        ),
        // Ranges adding up to more than the file: the whole file, as nginx answers.
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=0-9999,0-1\r\n"),
            200,
            Arc::clone(f),
        ),
        Request::raw(&get("/data.bin", "Range: bytes=10000-\r\n"), 416),
        Request::raw_exact(
            &get(
                "/data.bin",
                &format!("Range: bytes=10-19\r\nIf-Range: {}\r\n", site.etag),
            ),
            206,
            slice(f, 10..20),
        ),
        Request::raw_exact(
            &get("/data.bin", "Range: bytes=10-19\r\nIf-Range: \"stale\"\r\n"),
            200,
            Arc::clone(f),
        ),
        // A 304 has no body and no Content-Length: checked by status (and framing).
        Request::raw(
            &get(
                "/data.bin",
                &format!("If-None-Match: \"x\", W/{}\r\n", site.etag),
            ),
            304,
        ),
        Request::raw(
            &get(
                "/data.bin",
                "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
            ),
            304,
        ),
        Request::raw_exact(
            &get(
                "/data.bin",
                "If-None-Match: \"x\"\r\nIf-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
            ),
            200,
            Arc::clone(f),
        ),
        Request::raw_exact(
            &get("/app.js", "Accept-Encoding: gzip, deflate\r\n"),
            200,
            Arc::clone(&site.gz),
        ),
        Request::raw_exact(
            &get("/app.js", "Accept-Encoding: gzip;q=0\r\n"),
            200,
            Arc::clone(&plain_js),
        ),
        Request::raw_exact(&get("/app.js", ""), 200, plain_js),
        Request::raw_exact(&get("/data.bin?query=ignored", ""), 200, Arc::clone(f)),
    ]
    .into()
}

#[test]
fn ranges_conditionals_and_variants_byte_exact_alone_and_pipelined() {
    let site = site();
    let requests = feature_requests(&site, get);
    let n = requests.len() as u64;
    let scripts = vec![
        Script::each(Arc::clone(&requests), Mode::KeepAlive { pipeline: 1 }),
        Script::each(Arc::clone(&requests), Mode::KeepAlive { pipeline: 8 }),
        Script::each(feature_requests(&site, get_close), Mode::NewConnection),
    ];
    let sim = run(&site, SimConfig::new(7, 8), scripts, 3 * n);
    let http = &sim.server().stats().http;
    assert_eq!(http.responses_3xx, 6, "three 304s per script");
    assert!(http.pipelined_requests > 0);
    drop(site.tree);
}

#[test]
fn limits_answer_414_431_and_405_and_the_next_connection_is_served() {
    let site = site();
    let long_target = format!("/{}", "a".repeat(9000));
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_headers: String = (0..50)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(200)))
        .collect();
    let requests: Arc<[Request]> = vec![
        Request::raw(&get(&long_target, ""), 414),
        Request::raw(&get("/data.bin", &many_headers), 431),
        Request::raw(&get("/data.bin", &big_headers), 431),
        Request::raw(
            b"DELETE /data.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            405,
        ),
        Request::raw(
            b"GET /data.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n",
            413,
        ),
        Request::raw(
            b"GET /data.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        Request::raw(
            b"GET /data.bin HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n",
            417,
        ),
        Request::raw(b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        Request::raw(b"GET /a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        Request::get("/data.bin", Arc::clone(&site.file)),
    ]
    .into();
    let n = requests.len() as u64;
    let scripts = vec![Script::each(requests, Mode::NewConnection)];
    let sim = run(&site, SimConfig::new(8, 4), scripts, n);
    assert_eq!(sim.server().stats().http.responses_4xx, n - 2);
    assert_eq!(sim.server().stats().http.responses_5xx, 1);
}

#[test]
fn a_client_that_stops_mid_head_gets_408_at_the_header_timeout() {
    let site = site();
    let mut config = SimConfig::new(9, 4);
    config.server.http.header_timeout = Duration::from_secs(5);
    let requests: Arc<[Request]> = vec![
        Request::raw(
            b"GET /data.bin HTTP/1.1\r\nHost: sirocco.test\r\nX-Slow: ",
            408,
        ),
        Request::get("/data.bin", Arc::clone(&site.file)),
    ]
    .into();
    let scripts = vec![Script::each(requests, Mode::NewConnection)];
    let sim = run(&site, config, scripts, 2);
    let stats = sim.server().stats();
    assert_eq!(stats.http.header_timeouts, 1);
    // The 408 came at the deadline, not at the stack's idle timeout (60 s).
    assert!(
        sim.now().secs() >= 5 && sim.now().secs() < 30,
        "now = {}",
        sim.now()
    );
}
