//! Time to first byte as a histogram with fixed buckets, recorded on the data path.
//!
//! Recording is a short scan of a constant table and two additions into a fixed array: no
//! allocation, no atomics, no system call. An engine keeps one in its [`super::HttpCounters`];
//! the supervisor sums the engines' snapshots and the metrics endpoint renders them as a
//! Prometheus histogram (cumulative buckets, `_sum`, `_count`).

/// Upper bounds of the buckets, in microseconds: 50 µs to 5 s, roughly 1-2.5-5 per decade.
/// An observation above the last one lands in the overflow bucket (`+Inf`).
pub const BUCKET_BOUNDS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

/// Counts of observations per bucket, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `counts[i]`: observations above bound `i - 1` and at most bound `i`; the last, above
    /// every bound. Not cumulative: [`LatencyHistogram::cumulative`] sums them.
    counts: [u64; BUCKETS],
    sum_micros: u64,
}

impl LatencyHistogram {
    /// Counts one observation of `micros` microseconds.
    pub fn record(&mut self, micros: u64) {
        let bucket = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every observation, in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Each bucket's upper bound in microseconds (`None`: `+Inf`) with the observations at or
    /// below it, as Prometheus wants them: cumulative, the last equal to [`Self::count`].
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let bounds = BUCKET_BOUNDS_MICROS.iter().copied().map(Some).chain([None]);
        bounds
            .zip(self.counts.iter())
            .scan(0u64, |total, (bound, &count)| {
                *total += count;
                Some((bound, *total))
            })
    }
}

/// Adds another engine's observations.
impl std::ops::AddAssign<&LatencyHistogram> for LatencyHistogram {
    fn add_assign(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_the_overflow_bucket_takes_the_rest() {
        let mut h = LatencyHistogram::default();
        for micros in [0, 50, 51, 5_000_000, 5_000_001, u64::MAX / 2] {
            h.record(micros);
        }
        let buckets: Vec<_> = h.cumulative().collect();
        assert_eq!(buckets.len(), BUCKET_BOUNDS_MICROS.len() + 1);
        assert_eq!(buckets[0], (Some(50), 2), "0 and 50 are at most 50");
        assert_eq!(buckets[1], (Some(100), 3));
        assert_eq!(buckets[15], (Some(5_000_000), 4));
        assert_eq!(buckets[16], (None, 6));
        assert_eq!(h.count(), 6);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn sums_add_up_across_engines() {
        let mut a = LatencyHistogram::default();
        a.record(10);
        a.record(700);
        let mut b = LatencyHistogram::default();
        b.record(3_000);
        a += &b;
        assert_eq!(a.count(), 3);
        assert_eq!(a.sum_micros(), 3_710);
        let buckets: Vec<_> = a.cumulative().collect();
        assert_eq!(buckets[0], (Some(50), 1));
        assert_eq!(buckets[4], (Some(1_000), 2));
        assert_eq!(buckets[6], (Some(5_000), 3));
    }

    #[test]
    fn the_bounds_rise() {
        assert!(BUCKET_BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }
}
