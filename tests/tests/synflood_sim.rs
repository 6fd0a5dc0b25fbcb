//! A SYN flood in the simulator: 1,000,000 SYNs from random spoofed sources at 10 GbE line
//! rate, interleaved with 1,000 legitimate connections (100 clients, ten `Connection: close`
//! fetches each, one after another). Every legitimate fetch completes byte-exact, the server's
//! cells hold only real connections, and after warm-up (the first 200,000 SYNs and 200 fetches)
//! `Server::poll` allocates nothing through the rest of the flood, so its memory is constant.
//!
//! A counting global allocator wraps the system one; see `c10k_alloc.rs`.

use sirocco_drivers::alloc_count::CountingAllocator;
use sirocco_drivers::memory::{LinkConfig, MemoryPort};
use sirocco_tests::{TestTree, assert_all_ok, count_server_allocations};
use sirocco_tools::sim::flood::{FloodConfig, Flooded};
use sirocco_tools::sim::{Mode, Script, SimConfig, Simulation};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const SYNS: u64 = 1_000_000;
const CLIENTS: usize = 100;
const FETCHES: usize = 10;

#[test]
fn legitimate_clients_complete_through_a_million_spoofed_syns() {
    let tree = TestTree::with_sizes(&[3000]);
    let scripts = (0..CLIENTS)
        .map(|_| Script {
            requests: tree.get_all(),
            first: 0,
            count: FETCHES,
            mode: Mode::NewConnection,
        })
        .collect();
    let mut config = SimConfig::new(0x5f100d, CLIENTS);
    // 1 ms each way: a fetch takes about 5 ms, so the ten of each client span the flood
    // (1,000,000 SYNs at 14.9 M/s last 67 ms). The link carries the SYN-ACKs back at the
    // same rate: 15,000 frames in flight, within its queue.
    config.link = LinkConfig {
        latency_us: 1_000,
        queue_limit: 65_536,
        ..LinkConfig::default()
    };
    config.fleet.rx_buffer = 4096;
    let flood = FloodConfig::line_rate(SYNS, 0xf100d);
    let mut first = true;
    let mut sim: Simulation<Flooded<MemoryPort>> =
        Simulation::over_memory_link(tree.cache(), config, scripts, |port, clock| {
            // The server's end is wrapped first.
            if std::mem::take(&mut first) {
                Flooded::new(port, clock, flood)
            } else {
                Flooded::none(port, clock)
            }
        })
        .expect("build the simulation");
    sim.server_mut().driver_mut().start();

    // Warm-up, flood included: two fetches per client (cells get their HTTP buffers), the SYN
    // cache fills, and the link's frame pool grows to what the flood keeps in flight.
    let warm = 2 * CLIENTS as u64;
    let (warm_up, _) = count_server_allocations(&mut sim, |sim| {
        sim.fleet().progress().0 >= warm && sim.server().driver().delivered() >= 200_000
    });
    assert!(warm_up > 0, "the warm-up allocates, so the counter counts");
    let flood_left = SYNS - sim.server().driver().delivered();
    assert!(flood_left > 300_000, "most of the flood is measured");

    let total = (CLIENTS * FETCHES) as u64;
    let mut most_cells = 0;
    let (allocations, polls) = count_server_allocations(&mut sim, |sim| {
        most_cells = most_cells.max(sim.server().stats().connections);
        sim.fleet().progress().0 >= total && sim.server().driver().is_done()
    });
    let report = sim.report();
    eprintln!("{report}\nmost cells in use: {most_cells}; polls: {polls}");
    assert_all_ok(&report, total);
    let stack = &report.server.stack;
    assert_eq!(sim.server().driver().delivered(), SYNS);
    assert!(
        stack.syn_received >= SYNS,
        "every SYN was answered: {report}"
    );
    assert_eq!(stack.syn_refused_full, 0, "{report}");
    // The cache filled, and the rest went on cookies, the legitimate handshakes among them.
    assert_eq!(stack.syn_cache_entries, 16_384, "{report}");
    assert!(stack.syncookies_sent > SYNS - 20_000, "{report}");
    assert!(stack.syncookies_valid > 0, "{report}");
    assert_eq!(stack.syn_accepted, total, "{report}");
    assert!(
        most_cells <= CLIENTS,
        "{most_cells} cells in use at once: the flood took cells"
    );
    assert!(polls > 1000, "the flood phase ran ({polls} polls)");
    assert_eq!(allocations, 0, "allocations in {polls} server polls");
}
