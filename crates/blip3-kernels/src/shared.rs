//! Pieces shared by the kernels: the parallel output driver, the AVX2
//! horizontal sum, the NEON F16 widening, and deterministic test data.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::scratch::{reset, with_reused};

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
    with_reused(&BY_COLUMN, |by_column| {
        reset(by_column, m * n);
        by_column
            .par_chunks_mut(COLUMNS_PER_TASK * m)
            .enumerate()
            .for_each(|(b, c)| run(b, c));
        for (j, v) in by_column.chunks_exact(m).enumerate() {
            for (i, &a) in v.iter().enumerate() {
                y[i * n + j] = a;
            }
        }
    });
}

thread_local! {
    /// [`par_columns`]' staging buffer for several activation rows.
    static BY_COLUMN: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How far ahead of their loads the streaming GEMVs prefetch (bytes). The
/// hardware prefetcher alone left 10-30 % of a decode step's speed on the
/// table on the measured VM (decodebench A/B, 1024 bytes best of
/// 512 / 1024 / 2048).
#[cfg(target_arch = "x86_64")]
const PREFETCH_BYTES: usize = 1024;

/// Prefetches the cache line `PREFETCH_BYTES` past `at` (past a row group's or
/// row's end it runs into the next, which follows in memory; prefetches
/// never fault).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_ahead(at: *const u8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and
    // does not fault on any address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(PREFETCH_BYTES) as *const i8) }
}

/// Asks for the cache line at `at` to be brought into L1.
#[inline(always)]
pub(crate) fn prefetch_l1(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and
    // does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks for the cache line at `at` to be brought into L2: the GEMMs fetch
/// the next weight block while they compute on the current one.
#[inline(always)]
pub(crate) fn prefetch_l2(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing architecturally and
    // does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(at.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
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

/// Widens 4 F16 values at `p` to F32, exactly for every input (the F16
/// vector type `vcvt_f32_f16` takes is not stable Rust, so integer steps):
/// normal values re-biased, subnormals converted as integers times 2⁻²⁴ (no
/// F32 subnormal arises, so flush-to-zero cannot change them), infinities
/// and NaNs given the all-ones exponent.
///
/// # Safety
/// `p` must be valid for reading 4 values.
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) unsafe fn widen_f16x4(p: *const half::f16) -> std::arch::aarch64::float32x4_t {
    use std::arch::aarch64::*;
    let h = vmovl_u16(vld1_u16(p as *const u16));
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let magnitude = vandq_u32(h, vdupq_n_u32(0x7fff));
    let shifted = vshlq_n_u32::<13>(magnitude);
    // Exponent bias 15 → 127.
    let normal = vaddq_u32(shifted, vdupq_n_u32(112 << 23));
    let special = vorrq_u32(shifted, vdupq_n_u32(0x7f80_0000));
    let subnormal =
        vreinterpretq_u32_f32(vmulq_n_f32(vcvtq_f32_u32(magnitude), 1.0 / 16_777_216.0));
    let is_subnormal = vcltq_u32(magnitude, vdupq_n_u32(0x0400));
    let is_special = vcgeq_u32(magnitude, vdupq_n_u32(0x7c00));
    let bits = vbslq_u32(
        is_subnormal,
        subnormal,
        vbslq_u32(is_special, special, normal),
    );
    vreinterpretq_f32_u32(vorrq_u32(bits, sign))
}

/// A GEMM on BF16 weights with BF16-rounded activations, as
/// [`crate::amx::gemm_bf16`]: `(product, c, parallel)`.
pub(crate) type Bf16Gemm = fn(crate::gemm::Bf16Product, &mut [f32], bool);

/// The product's output with BF16-rounded activations, in F64: the
/// reference of the BF16 GEMM paths.
pub(crate) fn bf16_reference(p: crate::gemm::Bf16Product) -> Vec<f64> {
    use half::bf16;
    let mut c = vec![0f64; p.m * p.n];
    for i in 0..p.m {
        for j in 0..p.n {
            c[i * p.n + j] = (0..p.k)
                .map(|t| {
                    let x = bf16::from_f32(p.a[i * p.k + t]).to_f32();
                    f64::from(x) * f64::from(p.w[j * p.stride + t].to_f32())
                })
                .sum();
        }
    }
    c
}

/// Whether `got` is within F32 accumulation error of the F64 reference
/// `want` for a depth-`k` product.
pub(crate) fn close_to_reference(got: f32, want: f64, k: usize) -> bool {
    (f64::from(got) - want).abs() <= 1e-4 * (want.abs() + 1.0) * (k as f64).sqrt().max(1.0)
}

/// Runs `gemm` on a product with partial tiles in every direction and
/// compares it with [`bf16_reference`]: the one-time check before a path
/// whose instructions the tests could only emulate is trusted. On the
/// calling thread only: it runs inside a one-time initialisation, which pool
/// workers may be waiting on.
pub(crate) fn bf16_gemm_matches_reference(gemm: Bf16Gemm) -> bool {
    use half::bf16;
    let (m, n, k) = (37, 45, 96);
    let value = |i: usize, salt: usize| ((i * 2654435761 + salt) % 1000) as f32 / 500.0 - 1.0;
    let a: Vec<f32> = (0..m * k).map(|i| value(i, 17)).collect();
    let w: Vec<bf16> = (0..n * k).map(|i| bf16::from_f32(value(i, 91))).collect();
    let product = crate::gemm::Bf16Product {
        a: &a,
        m,
        w: &w,
        n,
        k,
        stride: k,
    };
    let mut c = vec![f32::NAN; m * n];
    gemm(product, &mut c, false);
    let want = bf16_reference(product);
    c.iter()
        .zip(&want)
        .all(|(&g, &r)| close_to_reference(g, r, k))
}

/// Checks a BF16 GEMM against [`bf16_reference`] on random products of the
/// sizes `(m, n, k, stride)`, serial and parallel.
#[cfg(test)]
pub(crate) fn assert_bf16_gemm(
    sizes: &[(usize, usize, usize, usize)],
    gemm: impl Fn(crate::gemm::Bf16Product, &mut [f32], bool),
) {
    use half::bf16;
    for &(m, n, k, stride) in sizes {
        let a = test_data(m * k, 1);
        let w: Vec<bf16> = test_data(n * stride, 2)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let product = crate::gemm::Bf16Product {
            a: &a,
            m,
            w: &w,
            n,
            k,
            stride,
        };
        let want = bf16_reference(product);
        for parallel in [false, true] {
            let mut c = vec![f32::NAN; m * n];
            gemm(product, &mut c, parallel);
            for (idx, (&g, &r)) in c.iter().zip(&want).enumerate() {
                assert!(
                    close_to_reference(g, r, k),
                    "{m}x{n}x{k} at {idx}: {g} vs {r}"
                );
            }
        }
    }
}

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

#[cfg(all(test, target_arch = "aarch64"))]
mod tests {
    use half::f16;

    #[test]
    fn neon_f16_widening_is_exact_for_every_value() {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for four in all.chunks_exact(4) {
            let mut got = [0f32; 4];
            // SAFETY: `four` holds 4 values; `got` has room for 4.
            unsafe {
                let v = super::widen_f16x4(four.as_ptr());
                std::arch::aarch64::vst1q_f32(got.as_mut_ptr(), v);
            }
            for (h, g) in four.iter().zip(got) {
                let want = h.to_f32();
                let same = if want.is_nan() {
                    g.is_nan()
                } else {
                    g.to_bits() == want.to_bits()
                };
                assert!(same, "{:#06x}: {g} vs {want}", h.to_bits());
            }
        }
    }
}
