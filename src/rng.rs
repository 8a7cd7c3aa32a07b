//! A tiny deterministic random number generator for the simulator, the tests and the
//! benchmarks.
//!
//! Hand-written rather than taken from a crate on purpose: a recorded seed must replay the
//! same events forever, and a crate's stream may change between versions. SplitMix64 is
//! ten lines, passes BigCrush, and is far faster than the engine it feeds.

/// SplitMix64: a 64-bit state advanced by a Weyl sequence and mixed.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose stream is fixed by `seed`.
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0), by multiply-shift (bias below 2^-32 for the
    /// bounds used here).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        assert!(low <= high);
        low + self.below((high - low) as u64 + 1) as i64
    }

    /// Returns true with probability `percent` / 100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < percent as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_fixed_by_the_seed() {
        // Recorded once: if this changes, every recorded seed in perf/ and the tests
        // replays different events.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn between_stays_in_range_and_reaches_both_ends() {
        let mut rng = Rng::new(7);
        let (mut low_seen, mut high_seen) = (false, false);
        for _ in 0..10_000 {
            let value = rng.between(-3, 3);
            assert!((-3..=3).contains(&value));
            low_seen |= value == -3;
            high_seen |= value == 3;
        }
        assert!(low_seen && high_seen);
    }
}
