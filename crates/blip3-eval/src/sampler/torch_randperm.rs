//! torch's CPU generator (`torch.Generator().manual_seed(s)`) and its
//! `torch.randperm(n, generator=g)`, which orders a `DistributedSampler`'s
//! shuffled epoch.

use super::mt19937::Mt19937;

/// Below this `n`, torch keeps its original modulo-biased forward shuffle;
/// from it on, it switches to an inside-out shuffle on 64-bit draws
/// (`u32::MAX / 20`, where the modulo bias of 32-bit draws starts to show).
pub const RANDPERM_SMALL_LIMIT: u64 = (u32::MAX / 20) as u64;

/// torch's CPU generator after `manual_seed(seed)`.
#[derive(Debug, Clone)]
pub struct TorchGenerator {
    mt: Mt19937,
}

impl TorchGenerator {
    /// `manual_seed(seed)`: torch seeds its twister with the low 32 bits.
    pub fn new(seed: u64) -> Self {
        Self {
            mt: Mt19937::from_u32(seed as u32),
        }
    }

    /// `random()`: one 32-bit word.
    pub fn random(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `random64()`: two words, the first one in the high half.
    pub fn random64(&mut self) -> u64 {
        let high = u64::from(self.mt.next_u32());
        let low = u64::from(self.mt.next_u32());
        (high << 32) | low
    }

    /// `torch.randperm(n, generator=self)` on the CPU.
    pub fn randperm(&mut self, n: usize) -> Vec<usize> {
        if (n as u64) < RANDPERM_SMALL_LIMIT {
            // Forward shuffle: position i swaps with i + (word mod (n - i)).
            let mut values: Vec<usize> = (0..n).collect();
            for i in 0..n.saturating_sub(1) {
                let offset = (u64::from(self.random()) % (n - i) as u64) as usize;
                values.swap(i, i + offset);
            }
            values
        } else {
            // Inside-out shuffle: value i lands at i, then trades places with
            // the value at a uniformly drawn position 0..=i.
            let mut values = vec![0usize; n];
            for i in 0..n {
                let z = (self.random64() % (i as u64 + 1)) as usize;
                values[i] = values[z];
                values[z] = i;
            }
            values
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randperm_is_a_permutation() {
        let mut g = TorchGenerator::new(0);
        for n in [0usize, 1, 2, 17, 1000] {
            let mut p = g.randperm(n);
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }
}
