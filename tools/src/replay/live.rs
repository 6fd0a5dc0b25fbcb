//! A live target: a server reached through a sirocco driver (AF_XDP on the client end of the
//! lab's veth pair, say), on the wall clock.
//!
//! [`resolve_mac`] asks for the server's MAC with ARP, or over IPv6 with a neighbor
//! solicitation (resent every 200 ms). [`replay_live`]
//! then runs the [`Replayer`] over the driver: receive a burst, let the replayer send, flush,
//! and when nothing moved wait (the driver's idle wait, at most a millisecond) so the loop
//! does not spin a shared core. A wall-clock deadline ends any run; flows still running are
//! reported as stalled.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sirocco_drivers::FrameIo;

use super::ReplayError;
use super::engine::{Addresses, ReplayOptions, Replayer};
use super::report::Report;
use super::trace::Trace;
use super::wire::{self, Mac};

/// Asks for `server_ip`'s MAC from `client_mac`/`client_ip`, for up to `timeout`: with ARP
/// over IPv4, with neighbor discovery (RFC 4861) over IPv6. Both addresses must be of one
/// family.
pub fn resolve_mac<D: FrameIo>(
    driver: &mut D,
    client_mac: Mac,
    client_ip: IpAddr,
    server_ip: IpAddr,
    timeout: Duration,
) -> Result<Mac, ReplayError> {
    let (request, protocol) = match (client_ip, server_ip) {
        (IpAddr::V4(client), IpAddr::V4(server)) => {
            (wire::arp_request(client_mac, client, server), "ARP")
        }
        (IpAddr::V6(client), IpAddr::V6(server)) => (
            wire::neighbor_solicitation(client_mac, client, server),
            "neighbor solicitation",
        ),
        _ => {
            return Err(ReplayError::Setup(format!(
                "the client address {client_ip} and the server address {server_ip} are of \
                 different families: give two IPv4 or two IPv6 addresses"
            )));
        }
    };
    let started = Instant::now();
    let mut last_ask: Option<Instant> = None;
    loop {
        if last_ask.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            driver.tx_stage(request.len(), &mut |buf| buf.copy_from_slice(&request));
            driver.tx_flush()?;
            last_ask = Some(Instant::now());
        }
        let mut found = None;
        driver.rx_burst(64, &mut |frame| {
            if found.is_none() {
                found = match server_ip {
                    IpAddr::V4(ip) => wire::arp_reply_from(frame, ip),
                    IpAddr::V6(ip) => wire::neighbor_advertisement_for(frame, ip),
                };
            }
        })?;
        if let Some(mac) = found {
            return Ok(mac);
        }
        if started.elapsed() >= timeout {
            return Err(ReplayError::Setup(format!(
                "{server_ip} did not answer {protocol} within {} s: is the server running on \
                 the other end of this link, with that address?",
                timeout.as_secs()
            )));
        }
        driver.wait_rx(Duration::from_millis(10))?;
    }
}

/// Replays `trace` through `driver` against the server at `addresses`, for at most `deadline`
/// of wall-clock time. `target` names it in the report.
pub fn replay_live<D: FrameIo>(
    trace: &Trace,
    driver: &mut D,
    addresses: Addresses,
    replay: ReplayOptions,
    deadline: Duration,
    target: String,
) -> Result<Report, ReplayError> {
    let mut replayer = Replayer::new(trace, addresses, replay);
    let started = Instant::now();
    let micros =
        |started: Instant| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    while !replayer.is_done() {
        let now = micros(started);
        let mut moved = driver.rx_burst(256, &mut |frame| replayer.handle_frame(now, frame))? > 0;
        moved |= replayer.poll(now, &mut |frame| {
            driver.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame))
        });
        driver.tx_flush()?;
        if started.elapsed() >= deadline {
            replayer.give_up(&format!(
                "the run's time limit of {} s passed",
                deadline.as_secs()
            ));
            break;
        }
        if !moved {
            let wait = replayer
                .poll_at()
                .map_or(1_000, |at| at.saturating_sub(micros(started)).min(1_000));
            driver.wait_rx(Duration::from_micros(wait))?;
        }
    }
    let (flows, counters) = replayer.finish();
    Ok(Report {
        trace: trace.label.clone(),
        target,
        flows,
        counters,
        elapsed_micros: micros(started),
        target_counters: Vec::new(),
    })
}
