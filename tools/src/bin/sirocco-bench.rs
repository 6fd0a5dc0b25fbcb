//! `sirocco-bench`: benchmarks of sirocco, with a table or `--json` (one object per line).
//!
//! - `sirocco-bench [stack] [--scenarios ...] [--quick] [--json] [--plot FILE.svg]`: the whole
//!   server loop in memory (the default when no subcommand is given); see
//!   [`sirocco_tools::bench::stack`]. With `--engines 1,2,...`, N engines at once on their
//!   own pinned threads, and how the cost of each holds up; see
//!   [`sirocco_tools::bench::engines`].
//! - `sirocco-bench driver [--drivers memory,tap,afxdp] [--json] [--plot FILE.svg]`: packet
//!   rates of the frame backends; see [`sirocco_tools::bench::driver`]. Needs root for tap and
//!   AF_XDP (it creates its own namespaces).
//! - `sirocco-bench loss [--loss 0,0.1,1,2,5,10] [--rtt 1,10,50] [--json] [--plot FILE.svg]`:
//!   the goodput of a 1 MiB download through random loss, against the Mathis bound, in the
//!   simulator; see [`sirocco_tools::bench::loss`].
//! - `sirocco-bench synflood [--duration 3] [--rate max|N] [--clients 8] [--json]`: SYNs from
//!   random sources absorbed per second per core, and legitimate connections completed per
//!   second during the flood, in memory; see [`sirocco_tools::bench::synflood`].

// All unsafe code lives in the drivers crate (see its SAFETY notes).
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use sirocco_drivers::alloc_count::CountingAllocator;
use sirocco_tools::bench::driver::{self, DriverArgs};
use sirocco_tools::bench::loss::{self, LossArgs};
use sirocco_tools::bench::stack::{self, StackArgs};
use sirocco_tools::bench::synflood::{self, SynfloodArgs};
use sirocco_tools::bench::{Row, plot};

/// Counts the heap the server holds (`bytes_per_connection`); it forwards every call to the
/// system allocator.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[derive(Debug, Parser)]
#[command(
    name = "sirocco-bench",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no subcommand: the `stack` bench with these options.
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The server loop in memory: requests/s and cost per request as connections grow.
    Stack(StackArgs),
    /// Packet-rate limits per driver: rx-drop, tx-only, echo.
    Driver(DriverArgs),
    /// Goodput of one download through random loss, against the Mathis bound.
    Loss(LossArgs),
    /// A SYN flood in memory: SYNs absorbed per second per core, legitimate connections served.
    Synflood(SynfloodArgs),
}

fn write_plot(path: &std::path::Path, svg: String) -> anyhow::Result<()> {
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Driver(args)) => {
            let rows: Vec<Row> = driver::run_all(&args)?;
            if let Some(path) = &args.plot {
                write_plot(path, plot::driver_svg(&rows))?;
            }
            return Ok(());
        }
        Some(Command::Loss(args)) => {
            let rows = loss::run_all(&args)?;
            if let Some(path) = &args.plot {
                write_plot(path, plot::loss_svg(&rows))?;
            }
            return Ok(());
        }
        Some(Command::Synflood(args)) => {
            synflood::run(&args)?;
            return Ok(());
        }
        Some(Command::Stack(args)) => args,
        None => cli.stack,
    };
    let rows = stack::run_all(&args)?;
    if let Some(path) = &args.plot
        && !args.child
    {
        // With --rounds, one point per connection count: the medians.
        let plotted: Vec<Row> = if args.rounds > 1 {
            rows.into_iter()
                .filter(|r| r.json.get("median") == Some(&serde_json::Value::Bool(true)))
                .collect()
        } else {
            rows
        };
        write_plot(path, plot::stack_svg(&plotted))?;
    }
    Ok(())
}
