//! Seeded fault injection: which frames a link loses, holds back, duplicates or corrupts, and
//! [`Faults`], a wrapper that injects them into any driver's transmit path.
//!
//! Owns [`FaultConfig`] (what the caller asks for), [`FaultCounters`] (what happened), the
//! per-frame decision (`FaultInjector`), and [`Faults`]. The memory link (`crate::memory`)
//! applies the same decisions inside its wire model (a lost frame still occupies the wire, a
//! reordered one is held for a time); [`Faults`] applies them to whatever driver it wraps, as
//! smoltcp's `phy::FaultInjector` does, so loss can be injected over AF_XDP or netmap too.
//! Invariants:
//!
//! - The same seed and the same sequence of frame lengths give the same decisions, on every
//!   platform and every version of this crate.
//! - An active injector draws exactly five numbers per frame (loss, reorder, duplicate and
//!   corrupt rolls, then the bit to flip) whatever that frame's fate, so turning one fault on
//!   (say, corruption) does not change which frames another fault (say, loss) picks.
//! - An injector whose probabilities are all zero draws nothing and costs nothing per frame.

use std::time::Duration;

use crate::rng::SplitMix64;
use crate::{Capabilities, DriverCounters, DriverError, FrameIo};

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
pub(crate) struct FrameFate {
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
pub(crate) struct FaultInjector {
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

    pub fn is_active(&self) -> bool {
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

/// Any driver, with seeded faults injected into the frames it sends.
///
/// Each staged frame's fate is decided by a `FaultInjector` on the config's seed, in staging
/// order. A lost frame is filled and dropped (`tx_stage` still returns `true`: the sender sees
/// a frame that left). A corrupted one has one bit flipped. A duplicated one is staged twice,
/// back to back, if the ring has room for the copy. A reordered one is held back (one at a
/// time) and staged right after the next frame, or before the second flush after it was held
/// if no frame came, so it is overtaken by at most the frames of one batch. Received frames
/// pass untouched; wrap the other end to impair the other direction.
///
/// With every probability zero it passes each call straight through. Otherwise each frame is
/// filled into a buffer of the wrapper's (allocated once, at the driver's `max_frame_len`) and
/// copied into the driver's: no allocation per frame.
#[derive(Debug)]
pub struct Faults<D: FrameIo> {
    inner: D,
    injector: FaultInjector,
    counters: FaultCounters,
    /// The frame being filled, before its fate is applied.
    scratch: Vec<u8>,
    /// The reordered frame held back, if `holding`.
    held: Vec<u8>,
    holding: bool,
    /// Flushes the held frame has missed.
    held_flushes: u8,
}

impl<D: FrameIo> Faults<D> {
    pub fn new(inner: D, config: &FaultConfig) -> Self {
        let injector = FaultInjector::new(config);
        let capacity = if injector.is_active() {
            inner.capabilities().max_frame_len
        } else {
            0
        };
        Faults {
            inner,
            injector,
            counters: FaultCounters::default(),
            scratch: Vec::with_capacity(capacity),
            held: Vec::with_capacity(capacity),
            holding: false,
            held_flushes: 0,
        }
    }

    /// What was done to the frames sent through this wrapper (`queue_dropped` stays 0: a full
    /// ring is the driver's `tx_ring_full`).
    pub fn fault_counters(&self) -> FaultCounters {
        self.counters
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The wrapped driver; a frame still held back is dropped.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Stages a copy of `frame` in the driver.
    fn stage_copy(inner: &mut D, frame: &[u8]) -> bool {
        inner.tx_stage(frame.len(), &mut |buf| buf.copy_from_slice(frame))
    }

    /// Stages the held frame, if there is one and room for it.
    fn release_held(&mut self) {
        if self.holding && Self::stage_copy(&mut self.inner, &self.held) {
            self.holding = false;
        }
    }
}

impl<D: FrameIo> FrameIo for Faults<D> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn rx_burst(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DriverError> {
        self.inner.rx_burst(max, on_frame)
    }

    fn rx_batch(
        &mut self,
        max: usize,
        on_frames: &mut dyn FnMut(&[&[u8]]),
    ) -> Result<usize, DriverError> {
        self.inner.rx_batch(max, on_frames)
    }

    fn rx_pending(&self) -> bool {
        self.inner.rx_pending()
    }

    fn tx_room(&self) -> usize {
        self.inner.tx_room()
    }

    fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let refused = self.inner.tx_room() == 0 || len > self.capabilities().max_frame_len;
        if !self.injector.is_active() || refused {
            // The driver stages the frame, or refuses it and counts why.
            return self.inner.tx_stage(len, fill);
        }
        let fate = self.injector.decide(len);
        self.scratch.clear();
        self.scratch.resize(len, 0);
        fill(&mut self.scratch);
        if fate.lose {
            self.counters.lost += 1;
            return true;
        }
        if let Some(bit) = fate.corrupt_bit
            && let Some(byte) = self.scratch.get_mut(bit / 8)
        {
            *byte ^= 1 << (bit % 8);
            self.counters.corrupted += 1;
        }
        if fate.reorder && !self.holding {
            std::mem::swap(&mut self.scratch, &mut self.held);
            self.holding = true;
            self.held_flushes = 0;
            self.counters.reordered += 1;
            return true;
        }
        let staged = Self::stage_copy(&mut self.inner, &self.scratch);
        if staged && fate.duplicate && Self::stage_copy(&mut self.inner, &self.scratch) {
            self.counters.duplicated += 1;
        }
        self.release_held();
        staged
    }

    fn tx_flush(&mut self) -> Result<(), DriverError> {
        if self.holding {
            if self.held_flushes >= 1 {
                self.release_held();
            } else {
                self.held_flushes += 1;
            }
        }
        self.inner.tx_flush()
    }

    fn counters(&self) -> DriverCounters {
        self.inner.counters()
    }

    fn wait_rx(&mut self, timeout: Duration) -> Result<(), DriverError> {
        self.inner.wait_rx(timeout)
    }

    fn rx_exhausted(&self) -> bool {
        self.inner.rx_exhausted()
    }
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

    /// Keeps every flushed frame, in order; room for `room` staged frames per flush.
    struct Sink {
        staged: Vec<Vec<u8>>,
        sent: Vec<Vec<u8>>,
        room: usize,
    }

    impl Sink {
        fn new(room: usize) -> Self {
            Sink {
                staged: Vec::new(),
                sent: Vec::new(),
                room,
            }
        }
    }

    impl FrameIo for Sink {
        fn capabilities(&self) -> Capabilities {
            Capabilities::ethernet(1500)
        }
        fn rx_burst(
            &mut self,
            _max: usize,
            _on_frame: &mut dyn FnMut(&[u8]),
        ) -> Result<usize, DriverError> {
            Ok(0)
        }
        fn tx_room(&self) -> usize {
            self.room - self.staged.len()
        }
        fn tx_stage(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            if self.staged.len() >= self.room {
                return false;
            }
            let mut frame = vec![0; len];
            fill(&mut frame);
            self.staged.push(frame);
            true
        }
        fn tx_flush(&mut self) -> Result<(), DriverError> {
            self.sent.append(&mut self.staged);
            Ok(())
        }
        fn counters(&self) -> DriverCounters {
            DriverCounters::default()
        }
    }

    /// Sends frames `[0; 60]`, `[1; 60]`, ... one flush each `per_flush` frames.
    fn send(faults: &mut Faults<Sink>, frames: u8, per_flush: u8) -> Vec<bool> {
        let mut staged = Vec::new();
        for i in 0..frames {
            staged.push(faults.tx_stage(60, &mut |buf| buf.fill(i)));
            if (i + 1) % per_flush == 0 {
                faults.tx_flush().unwrap();
            }
        }
        faults.tx_flush().unwrap();
        faults.tx_flush().unwrap();
        staged
    }

    fn firsts(sink: &Sink) -> Vec<u8> {
        sink.sent.iter().map(|f| f[0]).collect()
    }

    #[test]
    fn without_faults_frames_pass_as_they_are() {
        let mut faults = Faults::new(Sink::new(8), &FaultConfig::none());
        assert!(send(&mut faults, 5, 2).iter().all(|&s| s));
        assert_eq!(firsts(faults.inner()), [0, 1, 2, 3, 4]);
        assert_eq!(faults.fault_counters(), FaultCounters::default());
        assert_eq!(faults.scratch.capacity(), 0, "nothing allocated");
    }

    #[test]
    fn lost_frames_are_filled_but_never_reach_the_driver() {
        let config = FaultConfig::lossy(1, 1.0, 0.0, 0.0);
        let mut faults = Faults::new(Sink::new(8), &config);
        assert!(send(&mut faults, 4, 4).iter().all(|&s| s));
        assert!(faults.inner().sent.is_empty());
        assert_eq!(faults.fault_counters().lost, 4);
    }

    #[test]
    fn duplicates_follow_their_frame_while_there_is_room() {
        let config = FaultConfig::lossy(1, 0.0, 0.0, 1.0);
        let mut faults = Faults::new(Sink::new(3), &config);
        assert_eq!(send(&mut faults, 2, 2), [true, true]);
        // Room for three: 0, its copy, 1, and no room for the second copy.
        assert_eq!(firsts(faults.inner()), [0, 0, 1]);
        assert_eq!(faults.fault_counters().duplicated, 1);
    }

    #[test]
    fn a_reordered_frame_is_overtaken_by_the_next_or_goes_out_a_flush_late() {
        let config = FaultConfig::lossy(1, 0.0, 1.0, 0.0);
        let mut faults = Faults::new(Sink::new(8), &config);
        send(&mut faults, 4, 4);
        // 0 is held, 1 overtakes it; 2 is held, 3 overtakes it.
        assert_eq!(firsts(faults.inner()), [1, 0, 3, 2]);
        let mut faults = Faults::new(Sink::new(8), &config);
        assert!(faults.tx_stage(60, &mut |buf| buf.fill(7)));
        faults.tx_flush().unwrap();
        assert!(faults.inner().sent.is_empty(), "held through one flush");
        faults.tx_flush().unwrap();
        assert_eq!(firsts(faults.inner()), [7]);
        assert_eq!(faults.fault_counters().reordered, 1);
    }

    #[test]
    fn corruption_flips_one_bit_and_a_seed_fixes_the_run() {
        let config = FaultConfig {
            seed: 5,
            corrupt: 1.0,
            ..FaultConfig::lossy(5, 0.3, 0.3, 0.3)
        };
        let run = || {
            let mut faults = Faults::new(Sink::new(64), &config);
            send(&mut faults, 40, 5);
            (faults.inner().sent.clone(), faults.fault_counters())
        };
        let (sent, counters) = run();
        assert_eq!((sent.clone(), counters), run());
        for frame in &sent {
            // Every byte was the same before one bit flipped: two of the first three still are.
            let was = if frame[0] == frame[1] {
                frame[0]
            } else {
                frame[2]
            };
            let flipped: u32 = frame.iter().map(|b| (b ^ was).count_ones()).sum();
            assert_eq!(flipped, 1, "one bit flipped: {frame:?}");
        }
        assert!(counters.lost > 0 && counters.reordered > 0 && counters.duplicated > 0);
        assert_eq!(counters.corrupted, 40 - counters.lost);
    }

    #[test]
    fn a_full_ring_or_an_oversize_frame_is_the_drivers_to_refuse() {
        let config = FaultConfig::lossy(1, 1.0, 0.0, 0.0);
        let mut faults = Faults::new(Sink::new(0), &config);
        assert!(!faults.tx_stage(60, &mut |_| {}));
        let mut faults = Faults::new(Sink::new(4), &config);
        // This sink takes any length: the oversize frame was passed on, not lost.
        assert!(faults.tx_stage(2000, &mut |_| {}));
        assert_eq!(faults.inner().staged.len(), 1);
        assert_eq!(faults.fault_counters().lost, 0, "no fate drawn");
    }
}
