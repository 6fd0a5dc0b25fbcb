//! sirocco-tests: shared helpers for the integration tests.
//!
//! - [`lab`]: the lab tests' preconditions, the release binaries, child-process guards, and
//!   [`lab::LabServer`], the real `sirocco serve` in a lab with its output collected.
//! - [`TestTree`]: the standard document root, built fresh in a unique temp dir and removed
//!   on drop. Its files sit on the sizes where TCP and HTTP framing go wrong: empty, one byte,
//!   512 bytes (Kegel's test), one byte either side of a 1448-byte segment payload (MSS 1460
//!   less 12 bytes of timestamps), 64 KiB (a full unscaled window) and 4 MiB (many windows);
//!   plus an `index.html` (served for `/`) and a subdirectory with its own index.
//!   [`TestTree::with_sizes`] builds a flat tree of any sizes instead (16 MiB in the lab).
//! - Simulation shortcuts: [`TestTree::simulation`] builds a [`Simulation`] serving the tree
//!   over the memory link ([`TestTree::simulation_with_ports`] over any other two ports),
//!   and [`assert_all_ok`] checks a run ended with every response byte-exact.

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

pub mod lab;

use std::sync::Arc;

use sirocco::cache::ContentCache;
use sirocco_drivers::clock::VirtualClock;
use sirocco_tools::sim::event_loop::{self, Parties, Tick};
use sirocco_tools::sim::{
    Limits, Request, Script, SimConfig, SimError, SimPort, SimReport, Simulation, SiteTree, seeds,
};

/// Sizes of the standard tree's data files, with their names.
pub const STANDARD_FILES: [(&str, usize); 8] = [
    ("empty.bin", 0),
    ("one.bin", 1),
    ("file-512.bin", 512),
    ("seg-1447.bin", 1447),
    ("seg-1448.bin", 1448),
    ("seg-1449.bin", 1449),
    ("window-64k.bin", 65_536),
    ("big-4m.bin", 4 * 1024 * 1024),
];

/// The URL of the 4 MiB file, which some many-connection tests leave out to stay fast.
pub const BIG_FILE_URL: &str = "/big-4m.bin";

/// A document root with known contents. See the crate documentation.
#[derive(Debug)]
pub struct TestTree {
    site: SiteTree,
}

impl TestTree {
    /// The standard tree, with pseudo-random contents that are the same on every run.
    pub fn standard() -> Self {
        let mut site = SiteTree::new("test-tree").expect("create a temp dir for the test tree");
        for (i, (name, len)) in STANDARD_FILES.iter().enumerate() {
            site.add(name, seeds::bytes(0x5eed_0000 + i as u64, *len))
                .expect("write a test file");
        }
        let index = site
            .add("index.html", html_page("sirocco test tree", 900))
            .expect("write index.html");
        site.alias("/", index);
        site.add("sub/nested.txt", text(7, 3000))
            .expect("write sub/nested.txt");
        let sub_index = site
            .add("sub/index.html", html_page("a subdirectory", 200))
            .expect("write sub/index.html");
        site.alias("/sub/", sub_index);
        TestTree { site }
    }

    /// A flat tree of data files, one per size in `sizes`, named `size-<len>.bin` (so each
    /// size appears once), with the same pseudo-random contents on every run. For sizes beyond
    /// the standard tree's, e.g. 16 MiB in the lab.
    pub fn with_sizes(sizes: &[usize]) -> Self {
        let mut site = SiteTree::new("size-tree").expect("create a temp dir for the test tree");
        let mut seen = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            if seen.contains(&len) {
                continue;
            }
            seen.push(len);
            site.add(
                &format!("size-{len}.bin"),
                seeds::bytes(0x512e_0000 + i as u64, len),
            )
            .expect("write a test file");
        }
        TestTree { site }
    }

    /// The document root.
    pub fn path(&self) -> &std::path::Path {
        self.site.root()
    }

    /// Every URL path with the exact body the server must send for it.
    pub fn files(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        self.site
            .files()
            .iter()
            .map(|f| (f.url.as_str(), &f.body[..]))
    }

    /// The body served at `url`.
    pub fn body(&self, url: &str) -> Arc<[u8]> {
        self.site
            .body(url)
            .unwrap_or_else(|| panic!("{url} is not in the test tree"))
    }

    /// A GET for every URL, expecting its exact body.
    pub fn get_all(&self) -> Arc<[Request]> {
        self.site.get_all()
    }

    /// A GET for every URL but the 4 MiB file.
    pub fn get_small(&self) -> Arc<[Request]> {
        self.site
            .files()
            .iter()
            .filter(|f| f.url != BIG_FILE_URL)
            .map(|f| Request::get(&f.url, Arc::clone(&f.body)))
            .collect()
    }

    /// A HEAD for every URL.
    pub fn head_all(&self) -> Arc<[Request]> {
        self.site
            .files()
            .iter()
            .map(|f| Request::head(&f.url, Arc::clone(&f.body)))
            .collect()
    }

    /// The tree loaded into a content cache.
    pub fn cache(&self) -> Arc<ContentCache> {
        Arc::new(ContentCache::load(self.path()).expect("load the test tree"))
    }

    /// A simulation serving this tree, one client connection slot per script.
    pub fn simulation(&self, config: SimConfig, scripts: Vec<Script>) -> Simulation {
        Simulation::new(self.cache(), config, scripts).expect("build the simulation")
    }

    /// A simulation serving this tree with the server on `server_port` and the client fleet on
    /// `client_port`, two ends already joined (an emulated netmap pair, say).
    pub fn simulation_with_ports<D: SimPort>(
        &self,
        server_port: D,
        client_port: D,
        config: SimConfig,
        scripts: Vec<Script>,
    ) -> Simulation<D> {
        Simulation::with_ports(server_port, client_port, self.cache(), config, scripts)
            .expect("build the simulation")
    }
}

/// Drives `sim` until `done` holds, counting the heap allocations inside every `Server::poll`
/// (and none of the fleet's): `allocations_in` counts only in a test binary whose global
/// allocator is `sirocco_drivers::alloc_count::CountingAllocator`, so a test should also show
/// that a phase which must allocate (a warm-up) counted some. The loop is the one
/// [`Simulation::run_until`] uses ([`event_loop::tick`]). Returns the allocations counted and
/// the number of server polls; panics with the report if nothing can progress.
pub fn count_server_allocations<D: SimPort>(
    sim: &mut Simulation<D>,
    mut done: impl FnMut(&Simulation<D>) -> bool,
) -> (u64, u64) {
    let mut counting = CountingAllocations {
        sim,
        allocations: 0,
        polls: 0,
    };
    let mut idle_jumps = 0;
    while !done(counting.sim) {
        match event_loop::tick(&mut counting, u64::MAX) {
            Ok(Tick::Moved | Tick::Finished) => idle_jumps = 0,
            Ok(Tick::Jumped) => idle_jumps += 1,
            Ok(Tick::Stalled | Tick::PastDeadline) => {
                panic!("the simulation stalled: {}", counting.sim.report())
            }
            Err(error) => panic!("the simulation failed: {error}"),
        }
        assert!(
            idle_jumps < 1_000_000,
            "no progress: {}",
            counting.sim.report()
        );
    }
    (counting.allocations, counting.polls)
}

/// A simulation whose first engine's polls are counted: the [`Parties`] of
/// [`count_server_allocations`].
struct CountingAllocations<'s, D: SimPort> {
    sim: &'s mut Simulation<D>,
    allocations: u64,
    polls: u64,
}

impl<D: SimPort> Parties for CountingAllocations<'_, D> {
    type Error = SimError;

    fn clock(&self) -> &VirtualClock {
        self.sim.clock()
    }

    fn poll(&mut self, now: u64) -> Result<bool, SimError> {
        let now = event_loop::instant(now);
        let sim = &mut *self.sim;
        let (server_moved, n) =
            sirocco_drivers::alloc_count::allocations_in(|| sim.server_mut().poll(now));
        self.allocations += n;
        self.polls += 1;
        let server_moved = server_moved?;
        let fleet_moved = self.sim.fleet_mut().poll(now)?;
        Ok(server_moved || fleet_moved)
    }

    fn next_event_micros(&self) -> Option<u64> {
        self.sim.next_event_micros()
    }
}

/// Runs `sim` until every request is resolved, panicking with the simulation's report if it
/// cannot finish within `limits`.
pub fn run_to_completion(sim: &mut Simulation, limits: Limits) -> SimReport {
    match sim.run_until_done(limits) {
        Ok(report) => report,
        Err(error) => panic!("simulation did not finish: {error}"),
    }
}

/// Runs `sim` until every connection is closed on both sides.
pub fn settle(sim: &mut Simulation, limits: Limits) -> SimReport {
    match sim.settle(limits) {
        Ok(report) => report,
        Err(SimError::TimeLimit(report)) => panic!("connections did not close: {report}"),
        Err(error) => panic!("simulation failed while settling: {error}"),
    }
}

/// Asserts that all `expected` requests were answered as expected, with no failure.
pub fn assert_all_ok(report: &SimReport, expected: u64) {
    assert!(
        report.mismatches.is_empty() && report.fleet.requests_failed == 0,
        "{} requests failed: {report}",
        report.fleet.requests_failed
    );
    assert_eq!(report.progress, (expected, expected), "{report}");
    assert_eq!(report.fleet.responses_ok, expected, "{report}");
}

/// A small HTML page of about `len` bytes.
fn html_page(title: &str, len: usize) -> Vec<u8> {
    let mut page = format!("<!doctype html>\n<html><head><title>{title}</title></head><body>\n");
    let filler = text(title.len() as u64, len.saturating_sub(page.len() + 16));
    page.push_str(&String::from_utf8_lossy(&filler));
    page.push_str("\n</body></html>\n");
    page.into_bytes()
}

/// `len` bytes of deterministic lowercase text with spaces and newlines.
fn text(seed: u64, len: usize) -> Vec<u8> {
    seeds::bytes(seed, len)
        .into_iter()
        .enumerate()
        .map(|(i, b)| match (i % 64, b % 8) {
            (63, _) => b'\n',
            (_, 0) => b' ',
            _ => b'a' + b % 26,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_tree_has_every_size_and_the_indexes() {
        let tree = TestTree::standard();
        for (name, len) in STANDARD_FILES {
            assert_eq!(tree.body(&format!("/{name}")).len(), len);
        }
        assert_eq!(tree.body("/"), tree.body("/index.html"));
        assert_eq!(tree.body("/sub/"), tree.body("/sub/index.html"));
        assert_eq!(tree.files().len(), STANDARD_FILES.len() + 5);
        let again = TestTree::standard();
        assert_eq!(tree.body(BIG_FILE_URL), again.body(BIG_FILE_URL));
        assert_eq!(tree.get_small().len() + 1, tree.get_all().len());
    }

    #[test]
    fn sized_tree_has_one_file_per_size() {
        let tree = TestTree::with_sizes(&[0, 1448, 0, 70_000]);
        assert_eq!(tree.files().len(), 3);
        assert_eq!(tree.body("/size-0.bin").len(), 0);
        assert_eq!(tree.body("/size-1448.bin").len(), 1448);
        assert_eq!(tree.body("/size-70000.bin").len(), 70_000);
        assert!(tree.path().join("size-70000.bin").is_file());
    }
}
