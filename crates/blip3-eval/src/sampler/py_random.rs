//! CPython's `random.Random` (3.11) as far as the few-shot sampler uses it:
//! `seed(int)`, `getrandbits`, the rejection sampler behind `randrange`, and
//! `sample` with both of its algorithms.

use std::collections::HashSet;

use super::mt19937::Mt19937;
use super::SamplerError;

/// Size CPython charges a small set, less an empty list's; `sample` compares
/// the population with this (plus a hash-table size for larger `k`) to choose
/// between copying the population and tracking picks in a set.
const SMALL_SETSIZE: u128 = 21;

/// A generator in the state `random.Random(seed)` would be in.
#[derive(Debug, Clone)]
pub struct PyRandom {
    mt: Mt19937,
}

impl PyRandom {
    /// `random.seed(seed)` for an integer seed. CPython seeds from `abs(seed)`,
    /// so `seed` and `-seed` give the same stream.
    pub fn new(seed: i128) -> Self {
        let magnitude = seed.unsigned_abs();
        let words: Vec<u32> = (0..4).map(|i| (magnitude >> (32 * i)) as u32).collect();
        Self::from_abs_words(&words)
    }

    /// `random.seed(n)` for an integer of any size given as the little-endian
    /// 32-bit words of `abs(n)`. High zero words are ignored, as CPython keys
    /// the generator with exactly as many words as the integer's bit length
    /// needs (one word for zero).
    pub fn from_abs_words(words: &[u32]) -> Self {
        let used = words.iter().rposition(|&w| w != 0).map_or(1, |top| top + 1);
        let key = words.get(..used).unwrap_or(&[0]);
        Self {
            mt: Mt19937::from_key(key),
        }
    }

    /// `getrandbits(k)` as little-endian 32-bit words (`ceil(k / 32)` of them;
    /// none for `k = 0`). Each word takes one draw, lowest word first; the
    /// top word keeps the high bits of its draw when `k` is not a multiple of 32.
    pub fn getrandbits(&mut self, k: usize) -> Vec<u32> {
        let mut words = Vec::with_capacity(k.div_ceil(32));
        let mut left = k;
        while left > 0 {
            let draw = self.mt.next_u32();
            if left < 32 {
                words.push(draw >> (32 - left));
                left = 0;
            } else {
                words.push(draw);
                left -= 32;
            }
        }
        words
    }

    /// `getrandbits(k)` for `k <= 64` (larger `k` is capped at 64).
    pub fn getrandbits_u64(&mut self, k: u32) -> u64 {
        let words = self.getrandbits(k.min(64) as usize);
        words
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, &w)| acc | (u64::from(w) << (32 * i)))
    }

    /// `_randbelow(n)`: draws `n.bit_length()` bits until the value is below
    /// `n`. For `n = 0` this returns 0 (CPython would loop forever).
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let bits = u64::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits_u64(bits);
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: `k` distinct positions in `0..n`, in selection
    /// order. Errors when `k > n`, as CPython raises `ValueError`.
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Result<Vec<usize>, SamplerError> {
        if k > n {
            return Err(SamplerError::SampleTooLarge {
                population: n,
                requested: k,
            });
        }
        let mut picked = Vec::with_capacity(k);
        if (n as u128) <= sample_setsize(k) {
            // Partial Fisher-Yates over a copy: the last unpicked element
            // fills each vacancy.
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                picked.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            // Rejection against the positions already taken.
            let mut taken = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while taken.contains(&j) {
                    j = self.randbelow(n as u64) as usize;
                }
                taken.insert(j);
                picked.push(j);
            }
        }
        Ok(picked)
    }

    /// `sample(population, k)` on a sequence.
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Result<Vec<T>, SamplerError> {
        let picks = self.sample_indices(population.len(), k)?;
        Ok(picks.into_iter().map(|i| population[i].clone()).collect())
    }
}

/// CPython 3.11's threshold for `sample`: 21, plus `4 ** ceil(log(3k, 4))`
/// when `k > 5`. Computed exactly in integers: `3k` is a multiple of 3 and so
/// never a power of 4, and the float expression CPython evaluates only strays
/// from the exact ceiling within an ulp of a power of 4 (k beyond 2^50).
fn sample_setsize(k: usize) -> u128 {
    if k <= 5 {
        return SMALL_SETSIZE;
    }
    let target = 3 * k as u128;
    let mut table = 1u128;
    while table < target {
        table *= 4;
    }
    SMALL_SETSIZE + table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setsize_thresholds() {
        assert_eq!(sample_setsize(0), 21);
        assert_eq!(sample_setsize(5), 21);
        assert_eq!(sample_setsize(6), 21 + 64); // 3k = 18 -> 4^3
        assert_eq!(sample_setsize(8), 21 + 64);
        assert_eq!(sample_setsize(32), 21 + 256);
        assert_eq!(sample_setsize(22), 21 + 256); // 3k = 66 > 64
        assert_eq!(sample_setsize(21), 21 + 64); // 3k = 63
    }

    #[test]
    fn sign_is_ignored() {
        let mut a = PyRandom::new(-42);
        let mut b = PyRandom::new(42);
        assert_eq!(a.getrandbits(96), b.getrandbits(96));
    }

    #[test]
    fn high_zero_words_are_ignored() {
        let mut a = PyRandom::from_abs_words(&[7, 0, 0]);
        let mut b = PyRandom::new(7);
        assert_eq!(a.getrandbits_u64(64), b.getrandbits_u64(64));
        let mut zero = PyRandom::from_abs_words(&[]);
        assert_eq!(
            zero.getrandbits_u64(32),
            PyRandom::new(0).getrandbits_u64(32)
        );
    }

    #[test]
    fn sample_is_distinct_and_rejects_oversize() {
        let mut rng = PyRandom::new(1);
        for (n, k) in [(10, 10), (2048, 32), (30, 6)] {
            let picks = rng.sample_indices(n, k).unwrap();
            let unique: HashSet<_> = picks.iter().collect();
            assert_eq!(unique.len(), k);
            assert!(picks.iter().all(|&p| p < n));
        }
        assert!(rng.sample_indices(3, 4).is_err());
    }
}
