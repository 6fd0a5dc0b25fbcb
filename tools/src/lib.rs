//! sirocco-tools: the in-memory simulation harness, trace replay, and the benchmarks.
//!
//! [`sim`] joins a real [`sirocco::server::Server`] to a fleet of smoltcp clients over the
//! memory link, on a virtual clock: deterministic end-to-end tests (tests/tests/memory_e2e.rs)
//! and the `sirocco-bench` binary both run on it. [`bench`](mod@bench) holds the benchmarks themselves.
//!
//! [`replay`] replays the client side of pcap traces against sirocco (in process on the same
//! virtual clock, or live through a driver) and compares every HTTP answer with the trace's;
//! the `sirocco-replay` binary runs it.

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

pub mod bench;
pub mod replay;
pub mod sim;
