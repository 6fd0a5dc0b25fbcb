//! A shared virtual clock for deterministic simulation.
//!
//! The memory link and the pcap writer read time from a [`VirtualClock`] instead of the
//! system clock, so a simulation on a fixed seed produces the same frames at the same virtual
//! times on every run. Clones share one counter; only the simulation driver advances it.

use std::cell::Cell;
use std::rc::Rc;

/// Microseconds since the start of a simulation. Cloning shares the same clock.
#[derive(Debug, Clone, Default)]
pub struct VirtualClock {
    micros: Rc<Cell<u64>>,
}

impl VirtualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now_micros(&self) -> u64 {
        self.micros.get()
    }

    /// Moves the clock to `micros`. Time never goes backwards: an earlier value is ignored.
    pub fn set_micros(&self, micros: u64) {
        if micros > self.micros.get() {
            self.micros.set(micros);
        }
    }

    pub fn advance_micros(&self, delta: u64) {
        self.micros.set(self.micros.get().saturating_add(delta));
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
