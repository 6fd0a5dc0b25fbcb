//! `sirocco-bench loss`: the goodput of one download through random loss, against the
//! Mathis bound, in the simulator.
//!
//! Each point is a 1 MiB response from the real server to one smoltcp client over the memory
//! link (1 Gbit/s by default), with the same random loss rate in both directions (data and
//! ACKs) and a fixed round trip, on the virtual clock: loss 0, 0.1, 1, 2, 5 and 10% and RTT 1, 10 and 50 ms by
//! default. Every point runs `--trials` times on different seeds; its row sums them.
//!
//! Reported (JSON fields, one object per point):
//! - `loss` (percent, each way) and `rtt_ms`;
//! - `goodput_mbps`: body bits ÷ the time from the request to the last body byte, in Mbit/s
//!   (1 Mbit = 10^6 bits), over all trials;
//! - `mathis_mbps`: the Mathis et al. bound on the steady-state rate of a loss-limited TCP,
//!   MSS / RTT × 1.22 / √p, with p the loss rate and MSS 1460 octets; `null` at 0 loss;
//! - `ratio_to_mathis` = goodput ÷ Mathis (`null` at 0 loss);
//! - `rto_fired`: retransmission timeouts of the server over all trials (its `tcp_timeouts`);
//! - `longest_stall_ms`: the longest time, in any trial, during which the client received no
//!   new byte in order, from the request on (the first round trip included);
//! - `stall_limit_ms`: two retransmission timeouts, 2 × max(RTO min, 3 × RTT);
//! - `trials`, `rate_mbps`, `tx_buffer`, `rx_buffer`, `bytes`.
//!
//! The server's send buffer is `--tx-buffer` (default 1 MiB) and the client's receive buffer
//! `--rx-buffer` (default 1 MiB), both far above the Mathis window (MSS × 1.22 / √p: 56 KB at
//! 0.1% loss), so that the sweep measures loss recovery, not buffers. (Bodies are sent from
//! the cache by reference, so the send buffer, 2 KiB by default, holds only the heads and no
//! longer bounds what is in flight.)

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use sirocco::cache::ContentCache;
use sirocco_drivers::memory::FaultConfig;

use super::{Row, round2};
use crate::sim::{Limits, Mode, Request, Script, SimConfig, Simulation, SiteTree, seeds};

/// The payload of a full-sized segment on the simulator's 1500-byte link.
const MSS: f64 = 1460.0;
const FILE_LEN: usize = 1 << 20;

/// Options of `sirocco-bench loss`.
#[derive(Debug, Clone, Args)]
pub struct LossArgs {
    /// Loss rates in percent, each way, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.1, 1.0, 2.0, 5.0, 10.0])]
    pub loss: Vec<f64>,
    /// Round-trip times in milliseconds, comma-separated.
    #[arg(long = "rtt", value_delimiter = ',', default_values_t = [1, 10, 50])]
    pub rtt_ms: Vec<u64>,
    /// Downloads per point, each on its own seed.
    #[arg(long, default_value_t = 5)]
    pub trials: u64,
    /// Seed of the first trial.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The link's rate each way, Mbit/s: segments arrive spaced out, as on a real link, so the
    /// client acknowledges every other segment rather than whole flights at once.
    #[arg(long, default_value_t = 1000)]
    pub rate_mbps: u64,
    /// The server's TCP send buffer per connection, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub tx_buffer: usize,
    /// The client's TCP receive buffer, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub rx_buffer: usize,
    /// Print one JSON object per point instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG of goodput against loss, with the Mathis bound, to this file.
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
}

/// What the trials of one point add up to.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    body_bytes: u64,
    micros: u64,
    timeouts: u64,
    longest_stall_micros: u64,
}

/// Runs every point; prints and returns the rows.
pub fn run_all(args: &LossArgs) -> anyhow::Result<Vec<Row>> {
    if let Some(&bad) = args.loss.iter().find(|&&p| !(0.0..50.0).contains(&p)) {
        bail!("--loss {bad}: give percentages from 0 up to (not including) 50");
    }
    if args.rtt_ms.contains(&0) {
        bail!("--rtt values must be at least 1 ms");
    }
    if args.rate_mbps == 0 {
        bail!("--rate-mbps must be at least 1");
    }
    if args.trials == 0 {
        bail!("--trials must be at least 1");
    }
    let mut tree = SiteTree::new("bench-loss").context("creating the document root")?;
    let body = tree
        .add("/1m.bin", seeds::bytes(1, FILE_LEN))
        .context("writing the file")?;
    let cache = Arc::new(ContentCache::load(tree.root()).context("loading the document root")?);
    let request = Request::get("/1m.bin", body);
    if !args.json {
        outln!(
            "{:>6} {:>7} {:>13} {:>12} {:>9} {:>10} {:>17}",
            "loss %",
            "rtt ms",
            "goodput Mb/s",
            "Mathis Mb/s",
            "ratio",
            "RTOs",
            "longest stall ms"
        );
    }
    let mut rows = Vec::new();
    for &rtt_ms in &args.rtt_ms {
        for &loss in &args.loss {
            let mut totals = Totals::default();
            for trial in 0..args.trials {
                let seed = args.seed.wrapping_add(trial);
                let t = download(args, &cache, &request, loss / 100.0, rtt_ms, seed)
                    .with_context(|| format!("loss {loss}%, RTT {rtt_ms} ms, seed {seed}"))?;
                totals.body_bytes += t.body_bytes;
                totals.micros += t.micros;
                totals.timeouts += t.timeouts;
                totals.longest_stall_micros =
                    totals.longest_stall_micros.max(t.longest_stall_micros);
            }
            let row = row(args, loss, rtt_ms, totals);
            print_row(args.json, &row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The Mathis bound in Mbit/s for loss rate `p` (a fraction) and `rtt_ms`; `None` at 0.
pub fn mathis_mbps(p: f64, rtt_ms: u64) -> Option<f64> {
    (p > 0.0).then(|| MSS * 8.0 / (rtt_ms as f64 / 1e3) * 1.22 / p.sqrt() / 1e6)
}

fn row(args: &LossArgs, loss: f64, rtt_ms: u64, totals: Totals) -> Row {
    let goodput = totals.body_bytes as f64 * 8.0 / (totals.micros.max(1) as f64 / 1e6) / 1e6;
    let mathis = mathis_mbps(loss / 100.0, rtt_ms);
    let rto_min_ms = sirocco_netstack::TcpTuning::default()
        .rto_min
        .total_millis();
    let json = serde_json::json!({
        "loss": loss,
        "rtt_ms": rtt_ms,
        "goodput_mbps": round2(goodput),
        "mathis_mbps": mathis.map(round2),
        "ratio_to_mathis": mathis.map(|m| round2(goodput / m)),
        "rto_fired": totals.timeouts,
        "longest_stall_ms": round2(totals.longest_stall_micros as f64 / 1e3),
        "stall_limit_ms": 2 * rto_min_ms.max(3 * rtt_ms),
        "trials": args.trials,
        "bytes": FILE_LEN,
        "rate_mbps": args.rate_mbps,
        "tx_buffer": args.tx_buffer,
        "rx_buffer": args.rx_buffer,
    });
    Row { json }
}

fn print_row(json: bool, row: &Row) {
    if json {
        outln!("{}", row.json);
        return;
    }
    let or_dash = |key: &str, decimals: usize| {
        row.get_f64(key)
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
    };
    outln!(
        "{:>6} {:>7} {:>13.2} {:>12} {:>9} {:>10} {:>17.1}",
        row.get_f64("loss").unwrap_or(0.0),
        row.get_f64("rtt_ms").unwrap_or(0.0),
        row.get_f64("goodput_mbps").unwrap_or(0.0),
        or_dash("mathis_mbps", 2),
        or_dash("ratio_to_mathis", 2),
        row.get_f64("rto_fired").unwrap_or(0.0),
        row.get_f64("longest_stall_ms").unwrap_or(0.0),
    );
}

/// One download of the file at loss rate `p` (a fraction, each way) on a `rtt_ms` path.
fn download(
    args: &LossArgs,
    cache: &Arc<ContentCache>,
    request: &Request,
    p: f64,
    rtt_ms: u64,
    seed: u64,
) -> anyhow::Result<Totals> {
    let mut config = SimConfig::new(seed, 1).with_faults(FaultConfig::lossy(seed, p, 0.0, 0.0));
    config.link.latency_us = rtt_ms * 500;
    config.link.rate_bits_per_sec = Some(args.rate_mbps * 1_000_000);
    config.server.stack.tx_buffer = args.tx_buffer;
    config.server.http.send_window = args.tx_buffer;
    config.fleet.rx_buffer = args.rx_buffer;
    let script = Script::each(
        vec![request.clone()].into(),
        Mode::KeepAlive { pipeline: 1 },
    );
    let mut sim = Simulation::new(Arc::clone(cache), config, vec![script])?;
    // Progress, watched before every iteration of the loop (that is, at the virtual time of
    // the step that made it).
    let mut requested_at = None;
    let mut last_progress = 0;
    let mut bytes = 0;
    let mut longest = 0;
    sim.run_until(Limits::secs(3_600), |sim| {
        let now = sim.clock().now_micros();
        let counters = sim.fleet().counters();
        if requested_at.is_none() && counters.requests_sent > 0 {
            requested_at = Some(now);
            last_progress = now;
        }
        if counters.rx_bytes > bytes {
            longest = longest.max(now - last_progress);
            bytes = counters.rx_bytes;
            last_progress = now;
        }
        sim.fleet().is_done()
    })?;
    let report = sim.report();
    if report.fleet.responses_ok != 1 || report.fleet.body_bytes != FILE_LEN as u64 {
        bail!("the download was not byte-exact: {report}");
    }
    let start = requested_at.context("no request was sent")?;
    Ok(Totals {
        body_bytes: report.fleet.body_bytes,
        micros: last_progress - start,
        timeouts: report.server.stack.tcp_timeouts,
        longest_stall_micros: longest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mathis_bound_follows_its_formula() {
        // 1460 * 8 / 0.01 * 1.22 / 0.1 = 14.25 Mbit/s at 1% and 10 ms.
        let m = mathis_mbps(0.01, 10).unwrap();
        assert!((m - 14.2496).abs() < 1e-3, "{m}");
        assert_eq!(mathis_mbps(0.0, 10), None);
    }
}
