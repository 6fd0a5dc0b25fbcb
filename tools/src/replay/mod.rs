//! Trace replay: the client side of the TCP flows in a pcap, replayed against sirocco, with
//! every HTTP answer compared to the one in the trace (nginx's, in the committed fixtures).
//!
//! - [`trace`] reads the pcap/pcapng and splits it into flows to the server port (client
//!   segments, both reassembled byte streams) and junk frames.
//! - [`engine`] is the replayer itself, sans-IO: TCP-aware like tcpliveplay, for many flows
//!   at once (see its documentation for what is sent when).
//! - [`inprocess`] runs it against a sirocco server on the memory link and the virtual clock
//!   (deterministic: golden captures); [`live`] runs it through any driver (AF_XDP in the lab)
//!   on the wall clock.
//! - [`http`] frames and compares the responses; [`report`] says what was found.
//! - [`hostile`] derives a trace full of malformed frames from a valid one.
//! - [`wire`] and [`stream`] are the frame and byte-stream plumbing.
//!
//! The `sirocco-replay` binary is the command-line face of this module.

pub mod engine;
pub mod hostile;
pub mod http;
pub mod inprocess;
pub mod live;
pub mod report;
pub mod stream;
pub mod trace;
pub mod wire;

pub use engine::{Addresses, Pacing, ReplayCounters, ReplayOptions, Replayer};
pub use inprocess::{InProcessOptions, replay_in_process};
pub use live::{replay_live, resolve_mac};
pub use report::{ExchangeReport, FlowOutcome, FlowReport, Report};
pub use trace::{Trace, TraceError};

use sirocco_drivers::DriverError;

use crate::sim::SimError;

/// Why a replay could not run (a replay that ran and found mismatches is a [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("{0}")]
    Driver(#[from] DriverError),
    #[error("in-process server: {0}")]
    Server(#[from] SimError),
    #[error("{0}")]
    Setup(String),
}
