//! NumPy's legacy global generator (`np.random.seed` / `RandomState`) as far
//! as `np.random.choice(n, size, replace=False)` uses it: a full
//! `permutation(n)` by a backwards Fisher-Yates shuffle whose bounded draws
//! mask the generator's words and reject values past the bound.

use super::mt19937::Mt19937;
use super::SamplerError;

/// A generator in the state `np.random.seed(seed)` leaves the global one in.
#[derive(Debug, Clone)]
pub struct RandomState {
    mt: Mt19937,
}

impl RandomState {
    /// `np.random.seed(seed)`. NumPy accepts integer seeds in `0..2^32` only,
    /// which `u32` encodes.
    pub fn new(seed: u32) -> Self {
        Self {
            mt: Mt19937::from_u32(seed),
        }
    }

    /// The next 32-bit word.
    pub fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// A 64-bit word from two draws, the first one in the high half.
    pub fn next_u64(&mut self) -> u64 {
        let high = u64::from(self.mt.next_u32());
        let low = u64::from(self.mt.next_u32());
        (high << 32) | low
    }

    /// A value in `0..=max`: the draw masked to `max`'s bit width, redrawn
    /// while above `max`. Bounds that fit 32 bits take one word per try,
    /// larger ones a 64-bit word.
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let value = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }

    /// `permutation(n)`: `0..n` shuffled from the last position down, each
    /// position `i` swapped with `random_interval(i)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut values: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.random_interval(i as u64) as usize;
            values.swap(i, j);
        }
        values
    }

    /// `choice(n, size, replace=False)`: the first `size` entries of a full
    /// `permutation(n)`, so the draws consumed depend on `n` alone. Errors
    /// where NumPy raises (`size > n`).
    pub fn choice_without_replacement(
        &mut self,
        n: usize,
        size: usize,
    ) -> Result<Vec<usize>, SamplerError> {
        if size > n {
            return Err(SamplerError::SampleTooLarge {
                population: n,
                requested: size,
            });
        }
        let mut picks = self.permutation(n);
        picks.truncate(size);
        Ok(picks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_stays_in_bounds() {
        let mut rs = RandomState::new(3);
        for max in [1u64, 2, 3, 7, 8, 1000, u64::from(u32::MAX), 1 << 40] {
            for _ in 0..50 {
                assert!(rs.random_interval(max) <= max);
            }
        }
    }

    #[test]
    fn choice_consumes_a_full_permutation() {
        let mut a = RandomState::new(42);
        let mut b = RandomState::new(42);
        a.choice_without_replacement(100, 3).unwrap();
        b.permutation(100);
        assert_eq!(a.next_u32(), b.next_u32());
        assert!(a.choice_without_replacement(2, 3).is_err());
    }
}
