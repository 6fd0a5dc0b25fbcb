//! Lingering close: how long a connection the server has closed is kept, and when it is reset.
//!
//! Once the server has decided to close (a `Connection: close` answer, an error that leaves the
//! framing in doubt, a keep-alive timeout, a foreign protocol) and queued its FIN, everything
//! the peer still sends is read and dropped, so the connection never advertises a zero window
//! because of unread input (a client with unsent data would otherwise probe that window for
//! ever, and each probe would keep the connection alive). It ends when the peer has finished
//! (its FIN is in and ours is acknowledged: the netstack then frees the connection), or at the
//! deadline below, with a reset, whatever the peer does. This is nginx's lingering close
//! (`lingering_time`, `lingering_timeout`), with a reset where nginx leaves the rest to the
//! kernel.
//!
//! The deadline, with `T` = [`HttpLimits::lingering_time`] and `t` =
//! [`HttpLimits::lingering_timeout`]:
//! - while the peer has not yet acknowledged all of the response (the last bytes of a large
//!   file to a slow reader), lingering has not started: the connection goes only when the peer
//!   has taken nothing more for `T` (no acknowledgement of new data);
//! - once everything sent is acknowledged ("drained"), at most `T` more;
//! - and within that, `t` after the last input (data read and dropped, or the drain itself)
//!   while the peer may still send. Segments without data (ACKs, keepalive or window probes)
//!   are not input: they do not keep a connection alive.

use sirocco_netstack::Instant;

use super::HttpLimits;

/// The lingering state of a closed connection. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Linger {
    /// Bytes of ours in the socket, unsent or unacknowledged, at the last look.
    unacked: usize,
    /// When `unacked` last went down (or when the connection was closed).
    progress_at: Instant,
    /// When everything we sent was acknowledged (our FIN aside).
    drained_at: Option<Instant>,
    /// The last input: data read and dropped, or the drain, whichever came later.
    input_at: Instant,
    /// The peer has finished sending (its FIN is in): there is no input left to wait for.
    peer_done: bool,
    deadline: Instant,
}

impl Linger {
    /// Lingering of a connection closed at `now` with `unacked` bytes of ours in its socket.
    pub(super) fn new(now: Instant, unacked: usize, limits: &HttpLimits) -> Linger {
        let mut linger = Linger {
            unacked,
            progress_at: now,
            drained_at: None,
            input_at: now,
            peer_done: false,
            deadline: now,
        };
        linger.observe(now, false, unacked, false, limits);
        linger
    }

    /// Takes in what happened by `now`: whether data was read and dropped, the bytes of ours
    /// still unacknowledged, and whether the peer has finished sending.
    pub(super) fn observe(
        &mut self,
        now: Instant,
        input: bool,
        unacked: usize,
        peer_done: bool,
        limits: &HttpLimits,
    ) {
        if unacked < self.unacked {
            self.progress_at = now;
        }
        self.unacked = unacked;
        if input {
            self.input_at = now;
        }
        if unacked == 0 && self.drained_at.is_none() {
            self.drained_at = Some(now);
            self.input_at = now;
        }
        self.peer_done |= peer_done;
        self.deadline = match self.drained_at {
            None => self.progress_at + limits.lingering_time,
            Some(drained) if self.peer_done => drained + limits.lingering_time,
            Some(drained) => {
                (drained + limits.lingering_time).min(self.input_at + limits.lingering_timeout)
            }
        };
    }

    /// When the connection is reset if the peer has not finished.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sirocco_netstack::Duration;

    fn limits() -> HttpLimits {
        HttpLimits {
            lingering_time: Duration::from_secs(30),
            lingering_timeout: Duration::from_secs(5),
            ..HttpLimits::default()
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs as i64)
    }

    #[test]
    fn a_quiet_peer_goes_after_the_lingering_timeout() {
        let limits = limits();
        let linger = Linger::new(at(100), 0, &limits);
        assert_eq!(linger.deadline(), at(105));
    }

    #[test]
    fn input_extends_the_wait_up_to_the_lingering_time() {
        let limits = limits();
        let mut linger = Linger::new(at(100), 0, &limits);
        for t in (101..=140).step_by(3) {
            linger.observe(at(t), true, 0, false, &limits);
            assert_eq!(linger.deadline(), at(t + 5).min(at(130)), "at {t}");
        }
        // Segments without data (probes, ACKs) move nothing.
        let before = linger.deadline();
        linger.observe(at(129), false, 0, false, &limits);
        assert_eq!(linger.deadline(), before);
    }

    #[test]
    fn lingering_starts_when_the_response_is_acknowledged() {
        let limits = limits();
        // 10 000 bytes of the answer are still in flight to a slow reader.
        let mut linger = Linger::new(at(100), 10_000, &limits);
        assert_eq!(linger.deadline(), at(130));
        // Each acknowledgement of new data restarts that clock; nothing else does.
        linger.observe(at(120), false, 6_000, false, &limits);
        assert_eq!(linger.deadline(), at(150));
        linger.observe(at(125), true, 6_000, false, &limits);
        assert_eq!(linger.deadline(), at(150));
        // Drained: now at most `lingering_time` more, and `lingering_timeout` of quiet.
        linger.observe(at(140), false, 0, false, &limits);
        assert_eq!(linger.deadline(), at(145));
        linger.observe(at(144), true, 0, false, &limits);
        assert_eq!(linger.deadline(), at(149));
        linger.observe(at(168), true, 0, false, &limits);
        assert_eq!(linger.deadline(), at(170));
    }

    #[test]
    fn a_peer_that_has_finished_sending_gets_the_lingering_time_for_our_fin() {
        let limits = limits();
        let mut linger = Linger::new(at(100), 0, &limits);
        linger.observe(at(101), false, 0, true, &limits);
        assert_eq!(linger.deadline(), at(130));
        // Once finished, always finished.
        linger.observe(at(102), false, 0, false, &limits);
        assert_eq!(linger.deadline(), at(130));
    }
}
