//! The virtual-clock driver: one iteration of the loop every in-process run is made of.
//!
//! A run on a [`VirtualClock`] has parties (server engines, a client fleet, a trace replayer)
//! joined by ports. [`tick`] polls all of them once at the current virtual time and, when none
//! moved a frame, jumps the clock to the earliest event any of them waits for: a deadline or a
//! frame arrival, at least one microsecond ahead so a deadline that does not fire cannot hold
//! time still. It is the only place the clock moves; [`Simulation`](super::Simulation), the
//! in-process replay (`crate::replay`) and the allocation-counting tests each say what one poll
//! is and what the next event is ([`Parties`]), and what ends their run.
//!
//! Wall-clock time is never read here: the same parties, polled the same way, give the same
//! frames at the same virtual times on every run.

use sirocco_drivers::clock::VirtualClock;
use sirocco_netstack::Instant;

/// What a loop on a virtual clock polls.
pub trait Parties {
    type Error;

    /// The clock [`tick`] reads and moves.
    fn clock(&self) -> &VirtualClock;

    /// Polls every party once at `now` (virtual microseconds); `true` if any moved a frame.
    fn poll(&mut self, now: u64) -> Result<bool, Self::Error>;

    /// Whether the run is over, checked right after each poll at the same virtual time, before
    /// the clock can move. The default never ends the run from inside the loop.
    fn finished(&mut self, _now: u64) -> bool {
        false
    }

    /// The earliest deadline or frame arrival of any party, in virtual microseconds; `None` if
    /// nothing could ever happen again.
    fn next_event_micros(&self) -> Option<u64>;
}

/// What one [`tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// A party moved a frame; the clock stayed.
    Moved,
    /// Nothing moved; the clock jumped to the next event.
    Jumped,
    /// [`Parties::finished`] said so; the clock stayed.
    Finished,
    /// Nothing moved and nothing is waiting: the run can never progress.
    Stalled,
    /// Nothing moved and the next event lies past the deadline; the clock stayed.
    PastDeadline,
}

/// One iteration: poll, then jump the clock to the next event if nothing moved (never past
/// `deadline`, in virtual microseconds). See the module documentation.
pub fn tick<P: Parties + ?Sized>(parties: &mut P, deadline: u64) -> Result<Tick, P::Error> {
    let now = parties.clock().now_micros();
    let moved = parties.poll(now)?;
    if parties.finished(now) {
        return Ok(Tick::Finished);
    }
    if moved {
        return Ok(Tick::Moved);
    }
    let Some(next) = parties.next_event_micros() else {
        return Ok(Tick::Stalled);
    };
    let next = next.max(now + 1);
    if next > deadline {
        return Ok(Tick::PastDeadline);
    }
    parties.clock().set_micros(next);
    Ok(Tick::Jumped)
}

/// Virtual microseconds as the netstack's [`Instant`].
pub fn instant(micros: u64) -> Instant {
    Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// A netstack [`Instant`] (a deadline) as virtual microseconds; times before 0 are 0.
pub fn micros(at: Instant) -> u64 {
    u64::try_from(at.total_micros()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A party that moves a frame at each time in `moves` and waits for `events` in between.
    struct Script {
        clock: VirtualClock,
        moves: Vec<u64>,
        events: Vec<u64>,
        end_at: Option<u64>,
        polls: Vec<u64>,
    }

    impl Parties for Script {
        type Error = ();
        fn clock(&self) -> &VirtualClock {
            &self.clock
        }
        fn poll(&mut self, now: u64) -> Result<bool, ()> {
            self.polls.push(now);
            let due = self.moves.iter().position(|&t| t == now);
            Ok(due.map(|i| self.moves.remove(i)).is_some())
        }
        fn finished(&mut self, now: u64) -> bool {
            self.end_at.is_some_and(|end| now >= end)
        }
        fn next_event_micros(&self) -> Option<u64> {
            let now = self.clock.now_micros();
            self.events.iter().copied().filter(|&t| t > now).min()
        }
    }

    impl Script {
        fn new(moves: &[u64], events: &[u64]) -> Self {
            Script {
                clock: VirtualClock::new(),
                moves: moves.to_vec(),
                events: events.to_vec(),
                end_at: None,
                polls: Vec::new(),
            }
        }
    }

    #[test]
    fn the_clock_moves_only_when_nothing_moved_and_stops_at_the_deadline() {
        let mut s = Script::new(&[0, 0, 5], &[5, 9]);
        let ticks: Vec<Tick> = (0..6).map(|_| tick(&mut s, 8).unwrap()).collect();
        assert_eq!(
            ticks,
            [
                Tick::Moved,
                Tick::Moved,
                Tick::Jumped,
                Tick::Moved,
                Tick::PastDeadline,
                Tick::PastDeadline
            ]
        );
        // The next event after 5 is 9, past the deadline 8: the clock stays at 5 until a later
        // deadline lets it go.
        assert_eq!(s.polls, [0, 0, 0, 5, 5, 5]);
        assert_eq!(s.clock.now_micros(), 5);
        assert_eq!(tick(&mut s, 100).unwrap(), Tick::Jumped);
        assert_eq!(s.clock.now_micros(), 9);
        assert_eq!(tick(&mut s, 100).unwrap(), Tick::Stalled);
    }

    #[test]
    fn an_event_now_still_moves_the_clock_a_microsecond() {
        struct Stuck(VirtualClock);
        impl Parties for Stuck {
            type Error = ();
            fn clock(&self) -> &VirtualClock {
                &self.0
            }
            fn poll(&mut self, _now: u64) -> Result<bool, ()> {
                Ok(false)
            }
            fn next_event_micros(&self) -> Option<u64> {
                Some(0)
            }
        }
        let mut s = Stuck(VirtualClock::new());
        for expected in 1..=3 {
            assert_eq!(tick(&mut s, u64::MAX).unwrap(), Tick::Jumped);
            assert_eq!(s.0.now_micros(), expected);
        }
    }

    #[test]
    fn finished_is_checked_before_the_clock_moves() {
        let mut s = Script::new(&[], &[10]);
        s.end_at = Some(0);
        assert_eq!(tick(&mut s, u64::MAX).unwrap(), Tick::Finished);
        assert_eq!(s.clock.now_micros(), 0);
    }

    #[test]
    fn instants_and_micros_round_trip() {
        assert_eq!(micros(instant(1_234_567)), 1_234_567);
        assert_eq!(micros(Instant::from_micros(-5)), 0);
        assert_eq!(instant(u64::MAX), Instant::from_micros(i64::MAX));
    }
}
