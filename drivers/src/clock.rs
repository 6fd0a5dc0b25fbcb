//! A shared virtual clock for deterministic simulation.
//!
//! The memory link and the pcap writer read time from a [`VirtualClock`] instead of the
//! system clock, so a simulation on a fixed seed produces the same frames at the same virtual
//! times on every run. Clones share one counter; only the simulation driver advances it.
//!
//! The counter is an atomic only so that a driver holding a clock (the pcap writer) can move to
//! an engine thread; one thread reads and advances it, so relaxed ordering is all it needs and
//! costs what a plain load and store do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Microseconds since the start of a simulation. Cloning shares the same clock.
#[derive(Debug, Clone, Default)]
pub struct VirtualClock {
    micros: Arc<AtomicU64>,
}

impl VirtualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now_micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }

    /// Moves the clock to `micros`. Time never goes backwards: an earlier value is ignored.
    pub fn set_micros(&self, micros: u64) {
        if micros > self.now_micros() {
            self.micros.store(micros, Ordering::Relaxed);
        }
    }

    pub fn advance_micros(&self, delta: u64) {
        let now = self.now_micros();
        self.micros
            .store(now.saturating_add(delta), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_time_and_time_never_goes_back() {
        let a = VirtualClock::new();
        let b = a.clone();
        a.set_micros(10);
        assert_eq!(b.now_micros(), 10);
        b.set_micros(5);
        assert_eq!(a.now_micros(), 10);
        a.advance_micros(7);
        assert_eq!(b.now_micros(), 17);
    }
}
