//! Pieces shared by the kernels: the parallel output driver, the AVX2
//! horizontal sum, and deterministic test data.

use rayon::prelude::*;

/// Output columns (weight rows) per parallel task.
const COLUMNS_PER_TASK: usize = 64;

/// Fills `y` [m, n] (row-major) by calling `dot(j, out)` for every weight row
/// `j`, which writes the m results of that row into `out`; rows are spread
/// over the thread pool in blocks.
pub(crate) fn par_columns(
    y: &mut [f32],
    m: usize,
    n: usize,
    dot: impl Fn(usize, &mut [f32]) + Sync,
) {
    assert_eq!(y.len(), m * n, "output size");
    let run = |block: usize, chunk: &mut [f32]| {
        for (r, out) in chunk.chunks_mut(m).enumerate() {
            dot(block * COLUMNS_PER_TASK + r, out);
        }
    };
    if m == 1 {
        y.par_chunks_mut(COLUMNS_PER_TASK)
            .enumerate()
            .for_each(|(b, c)| run(b, c));
        return;
    }
    // Blocks are laid out [column][row]; scatter to [row][column] afterwards.
    let mut by_column = vec![0f32; m * n];
    by_column
        .par_chunks_mut(COLUMNS_PER_TASK * m)
        .enumerate()
        .for_each(|(b, c)| run(b, c));
    for (j, v) in by_column.chunks_exact(m).enumerate() {
        for (i, &a) in v.iter().enumerate() {
            y[i * n + j] = a;
        }
    }
}

/// Sum of the 8 lanes of an AVX register.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

/// Sum over `nb` blocks of `scale(b) · block(b)` for the block-quantised
/// dot products (AVX2, inside a `#[target_feature]` function).
///
/// * `$scales8(b)`: an `__m256` of the combined scales of blocks `b..b + 8`;
/// * `$scale1(b)`: the combined scale of block `b` as `f32` (for the tail);
/// * `$block(b)`: block `b`'s integer dot product as 8 partial sums in F32.
///
/// The scales are computed eight at a time with vector loads and spread to
/// the blocks by shuffles: converting one scalar F16 scale per block made the
/// compiler merge it into a register that carries the accumulator, which
/// serialised the whole loop on the FMA latency. Two accumulators hide that
/// latency.
#[cfg(target_arch = "x86_64")]
macro_rules! scaled_block_sum {
    ($nb:expr, $scales8:expr, $scale1:expr, $block:expr) => {{
        use std::arch::x86_64::*;
        let nb: usize = $nb;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut b = 0usize;
        while b + 8 <= nb {
            let d: __m256 = $scales8(b);
            let lo = _mm256_permute2f128_ps::<0x00>(d, d);
            let hi = _mm256_permute2f128_ps::<0x11>(d, d);
            acc0 = _mm256_fmadd_ps($block(b), _mm256_shuffle_ps::<0x00>(lo, lo), acc0);
            acc1 = _mm256_fmadd_ps($block(b + 1), _mm256_shuffle_ps::<0x55>(lo, lo), acc1);
            acc0 = _mm256_fmadd_ps($block(b + 2), _mm256_shuffle_ps::<0xaa>(lo, lo), acc0);
            acc1 = _mm256_fmadd_ps($block(b + 3), _mm256_shuffle_ps::<0xff>(lo, lo), acc1);
            acc0 = _mm256_fmadd_ps($block(b + 4), _mm256_shuffle_ps::<0x00>(hi, hi), acc0);
            acc1 = _mm256_fmadd_ps($block(b + 5), _mm256_shuffle_ps::<0x55>(hi, hi), acc1);
            acc0 = _mm256_fmadd_ps($block(b + 6), _mm256_shuffle_ps::<0xaa>(hi, hi), acc0);
            acc1 = _mm256_fmadd_ps($block(b + 7), _mm256_shuffle_ps::<0xff>(hi, hi), acc1);
            b += 8;
        }
        while b < nb {
            let s: f32 = $scale1(b);
            acc0 = _mm256_fmadd_ps($block(b), _mm256_set1_ps(s), acc0);
            b += 1;
        }
        crate::shared::hsum256(_mm256_add_ps(acc0, acc1))
    }};
}
#[cfg(target_arch = "x86_64")]
pub(crate) use scaled_block_sum;

/// Deterministic values in [-1, 1) (xorshift), for kernel tests.
#[cfg(test)]
pub(crate) fn test_data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}
