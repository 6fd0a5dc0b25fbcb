//! Seeded fault injection for one direction of a memory link: which frames the link loses,
//! holds back, duplicates or corrupts.
//!
//! Owns [`FaultConfig`] (what the caller asks for), [`FaultCounters`] (what happened), and the
//! per-frame decision. Invariants:
//!
//! - The same seed and the same sequence of frame lengths give the same decisions, on every
//!   platform and every version of this crate.
//! - An active injector draws exactly five numbers per frame (loss, reorder, duplicate and
//!   corrupt rolls, then the bit to flip) whatever that frame's fate, so turning one fault on (say, corruption) does not change which frames another fault
//!   (say, loss) picks.
//! - An injector whose probabilities are all zero draws nothing and costs nothing per frame.

use crate::rng::SplitMix64;

/// Which faults a link direction injects, and the seed they come from. Probabilities are in
/// `0.0..=1.0`; values outside are clamped and NaN counts as 0. The default injects nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    /// The frame vanishes on the wire (after using its share of the link's rate).
    pub loss: f64,
    /// The frame is held back long enough for the frames sent after it to overtake it.
    pub reorder: f64,
    /// The frame is delivered twice, back to back.
    pub duplicate: f64,
    /// One bit of the frame, anywhere in it, is flipped.
    pub corrupt: f64,
}

impl FaultConfig {
    /// A perfect link.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loss, reordering and duplication on `seed`, no corruption.
    pub fn lossy(seed: u64, loss: f64, reorder: f64, duplicate: f64) -> Self {
        FaultConfig {
            seed,
            loss,
            reorder,
            duplicate,
            corrupt: 0.0,
        }
    }
}

/// What fault injection did to the frames one port sent. Monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    /// Tail drops: the direction already had `queue_limit` frames in flight.
    pub queue_dropped: u64,
}

/// Adds another port's fault counters: the total over the queues of one NIC, say.
impl std::ops::AddAssign for FaultCounters {
    fn add_assign(&mut self, other: FaultCounters) {
        let FaultCounters {
            lost,
            reordered,
            duplicated,
            corrupted,
            queue_dropped,
        } = other;
        self.lost += lost;
        self.reordered += reordered;
        self.duplicated += duplicated;
        self.corrupted += corrupted;
        self.queue_dropped += queue_dropped;
    }
}

/// The fate of one frame, decided when it is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameFate {
    pub lose: bool,
    pub reorder: bool,
    pub duplicate: bool,
    /// Bit to flip, counted from the first bit of the frame (bit 0 is the low bit of byte 0).
    pub corrupt_bit: Option<usize>,
}

impl FrameFate {
    const CLEAN: FrameFate = FrameFate {
        lose: false,
        reorder: false,
        duplicate: false,
        corrupt_bit: None,
    };
}

/// Decides each frame's fate from a [`FaultConfig`].
#[derive(Debug, Clone)]
pub(super) struct FaultInjector {
    loss: f64,
    reorder: f64,
    duplicate: f64,
    corrupt: f64,
    rng: SplitMix64,
}

impl FaultInjector {
    pub fn new(config: &FaultConfig) -> Self {
        FaultInjector {
            loss: clamp_probability(config.loss),
            reorder: clamp_probability(config.reorder),
            duplicate: clamp_probability(config.duplicate),
            corrupt: clamp_probability(config.corrupt),
            rng: SplitMix64::new(config.seed),
        }
    }

    fn is_active(&self) -> bool {
        self.loss > 0.0 || self.reorder > 0.0 || self.duplicate > 0.0 || self.corrupt > 0.0
    }

    /// Decides what happens to the next frame, of `frame_len` bytes.
    pub fn decide(&mut self, frame_len: usize) -> FrameFate {
        if !self.is_active() {
            return FrameFate::CLEAN;
        }
        // Always draw all five, in this order: see the module invariants.
        let lose = self.rng.next_unit() < self.loss;
        let reorder = self.rng.next_unit() < self.reorder;
        let duplicate = self.rng.next_unit() < self.duplicate;
        let corrupt = self.rng.next_unit() < self.corrupt;
        let frame_bits = (frame_len as u64).saturating_mul(8);
        let bit = self.rng.below(frame_bits);
        if lose {
            return FrameFate {
                lose,
                ..FrameFate::CLEAN
            };
        }
        FrameFate {
            lose,
            reorder,
            duplicate,
            corrupt_bit: if corrupt && frame_bits > 0 {
                usize::try_from(bit).ok()
            } else {
                None
            },
        }
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_clamped() {
        let injector = FaultInjector::new(&FaultConfig {
            seed: 1,
            loss: f64::NAN,
            reorder: -3.0,
            duplicate: 7.0,
            corrupt: 0.25,
        });
        assert_eq!(injector.loss, 0.0);
        assert_eq!(injector.reorder, 0.0);
        assert_eq!(injector.duplicate, 1.0);
        assert_eq!(injector.corrupt, 0.25);
    }

    #[test]
    fn a_perfect_link_draws_nothing() {
        let mut injector = FaultInjector::new(&FaultConfig::none());
        let before = injector.rng.clone();
        for _ in 0..100 {
            assert_eq!(injector.decide(1500), FrameFate::CLEAN);
        }
        assert_eq!(injector.rng, before);
    }

    #[test]
    fn every_frame_draws_five_numbers_whatever_its_fate() {
        let mut injector = FaultInjector::new(&FaultConfig::lossy(3, 0.5, 0.5, 0.5));
        let mut shadow = SplitMix64::new(3);
        for len in [0usize, 60, 1514, 9000] {
            injector.decide(len);
            for _ in 0..5 {
                shadow.next_u64();
            }
            assert_eq!(injector.rng, shadow);
        }
    }

    #[test]
    fn turning_on_corruption_keeps_the_same_frames_lost() {
        let lossy = FaultConfig::lossy(42, 0.2, 0.0, 0.0);
        let also_corrupt = FaultConfig {
            corrupt: 0.5,
            ..lossy
        };
        let mut a = FaultInjector::new(&lossy);
        let mut b = FaultInjector::new(&also_corrupt);
        for _ in 0..1000 {
            assert_eq!(a.decide(60).lose, b.decide(60).lose);
        }
    }

    #[test]
    fn corrupt_bit_lies_inside_the_frame_and_empty_frames_are_spared() {
        let mut injector = FaultInjector::new(&FaultConfig {
            seed: 9,
            corrupt: 1.0,
            ..FaultConfig::none()
        });
        for len in [1usize, 2, 60, 1514] {
            let bit = injector.decide(len).corrupt_bit;
            assert!(bit.is_some_and(|b| b < len * 8), "len {len}: {bit:?}");
        }
        assert_eq!(injector.decide(0).corrupt_bit, None);
    }
}
