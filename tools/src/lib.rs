//! sirocco-tools: the in-memory simulation harness and the benchmarks built on it.
//!
//! [`sim`] joins a real [`sirocco::server::Server`] to a fleet of smoltcp clients over the
//! memory link, on a virtual clock: deterministic end-to-end tests (tests/tests/memory_e2e.rs)
//! and the `sirocco-bench` binary both run on it. [`bench`] holds the benchmarks themselves.

pub mod bench;
pub mod sim;
