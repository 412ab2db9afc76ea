//! `Y[m, n] = Σ_k X[m, k] · W[n, k]` for a few rows of `X` (decode) against a
//! row-major BF16 weight `W` [N, K], accumulating in F32.
//!
//! Each weight row is read once for all `m` activation rows, and rows of `W`
//! are split across threads, so the kernel streams the weight at memory speed.

use half::bf16;

use crate::cpu::CpuFeatures;
use crate::shared::par_columns;

/// Activation rows processed per pass over the weight.
pub const MAX_ROWS: usize = 4;

/// Computes `y[m·N + n] = Σ_k x[m·K + k] · w[n·K + k]` for `m < M ≤ MAX_ROWS`.
///
/// Panics if the slice lengths do not match `M`, `N`, `K` (a programming error,
/// not an input error: callers derive them from the same shapes).
pub fn gemv_bf16(w: &[bf16], x: &[f32], y: &mut [f32], m: usize, n: usize, k: usize) {
    assert!(
        (1..=MAX_ROWS).contains(&m),
        "gemv_bf16 takes 1..={MAX_ROWS} rows"
    );
    assert_eq!(w.len(), n * k, "weight size");
    assert_eq!(x.len(), m * k, "activation size");
    assert_eq!(y.len(), m * n, "output size");
    let features = CpuFeatures::detect();
    par_columns(y, m, n, |j, out| {
        let mut acc = [0f32; MAX_ROWS];
        dot_rows(features, &w[j * k..(j + 1) * k], x, k, m, &mut acc);
        out.copy_from_slice(&acc[..m]);
    });
}

fn dot_rows(
    features: CpuFeatures,
    row: &[bf16],
    x: &[f32],
    k: usize,
    m: usize,
    acc: &mut [f32; MAX_ROWS],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if features.avx512 {
            // SAFETY: AVX-512 F, BW and VL were detected on this CPU.
            unsafe { avx512::dot_rows(row, x, k, m, acc) };
            return;
        }
        if features.avx2_fma {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            unsafe { avx2::dot_rows(row, x, k, m, acc) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if features.neon {
        neon::dot_rows(row, x, k, m, acc);
        return;
    }
    let _ = features;
    dot_rows_scalar(row, x, k, m, acc);
}

/// The kernel `gemv_bf16` runs on this CPU: `avx512`, `avx2-fma`, `neon` or
/// `scalar`.
pub fn path(features: CpuFeatures) -> &'static str {
    if cfg!(target_arch = "x86_64") && features.avx512 {
        "avx512"
    } else if cfg!(target_arch = "x86_64") && features.avx2_fma {
        "avx2-fma"
    } else if cfg!(target_arch = "aarch64") && features.neon {
        "neon"
    } else {
        "scalar"
    }
}

/// Reference: plain F32 dot products.
pub fn dot_rows_scalar(row: &[bf16], x: &[f32], k: usize, m: usize, acc: &mut [f32; MAX_ROWS]) {
    for (i, a) in acc.iter_mut().take(m).enumerate() {
        let xi = &x[i * k..(i + 1) * k];
        *a = row.iter().zip(xi).map(|(w, v)| w.to_f32() * v).sum();
    }
}

/// Straightforward reference for tests: `Y = X·Wᵀ` in F64.
pub fn gemv_reference(w: &[bf16], x: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| f64::from(w[j * k + t].to_f32()) * f64::from(x[i * k + t]))
                .sum();
            y[i * n + j] = s as f32;
        }
    }
    y
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::MAX_ROWS;
    use crate::shared::{hsum256, prefetch_ahead};

    /// Widens 8 BF16 values to F32 (BF16 is the top half of an F32).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const bf16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }

    /// Dot products of one BF16 row with `m` activation rows.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `row.len() == k` and `x.len() >= m·k`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows(row: &[bf16], x: &[f32], k: usize, m: usize, acc: &mut [f32; MAX_ROWS]) {
        let mut sums = [_mm256_setzero_ps(); MAX_ROWS];
        let mut sums2 = [_mm256_setzero_ps(); MAX_ROWS];
        let wp = row.as_ptr();
        let xp = x.as_ptr();
        let mut t = 0;
        while t + 16 <= k {
            if t % 32 == 0 {
                prefetch_ahead(wp.add(t) as *const u8);
            }
            let w0 = load8(wp.add(t));
            let w1 = load8(wp.add(t + 8));
            for i in 0..m {
                let xi = xp.add(i * k + t);
                sums[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xi), sums[i]);
                sums2[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xi.add(8)), sums2[i]);
            }
            t += 16;
        }
        for i in 0..m {
            let mut s = hsum256(_mm256_add_ps(sums[i], sums2[i]));
            for j in t..k {
                s += row[j].to_f32() * x[i * k + j];
            }
            acc[i] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::MAX_ROWS;
    use crate::shared::prefetch_ahead;

    /// Widens 16 BF16 values to F32 (BF16 is the top half of an F32).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const bf16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    /// Dot products of one BF16 row with `m` activation rows: one 64-byte
    /// cache line of weights (32 values) per step, two independent
    /// accumulators per activation row; a masked step takes the last < 32.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VL; `row.len() == k` and
    /// `x.len() >= m·k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn dot_rows(row: &[bf16], x: &[f32], k: usize, m: usize, acc: &mut [f32; MAX_ROWS]) {
        let mut sums = [_mm512_setzero_ps(); MAX_ROWS];
        let mut sums2 = [_mm512_setzero_ps(); MAX_ROWS];
        let wp = row.as_ptr();
        let xp = x.as_ptr();
        let mut t = 0;
        while t + 32 <= k {
            prefetch_ahead(wp.add(t) as *const u8);
            let w0 = load16(wp.add(t));
            let w1 = load16(wp.add(t + 16));
            for i in 0..m {
                let xi = xp.add(i * k + t);
                sums[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xi), sums[i]);
                sums2[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xi.add(16)), sums2[i]);
            }
            t += 32;
        }
        while t < k {
            let left = (k - t).min(16);
            let mask: __mmask16 = ((1u32 << left) - 1) as __mmask16;
            let h = _mm256_maskz_loadu_epi16(mask, wp.add(t) as *const i16);
            let w = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
            for (i, sum) in sums.iter_mut().enumerate().take(m) {
                let xv = _mm512_maskz_loadu_ps(mask, xp.add(i * k + t));
                *sum = _mm512_fmadd_ps(w, xv, *sum);
            }
            t += left;
        }
        for (a, (s, s2)) in acc.iter_mut().zip(sums.iter().zip(&sums2)).take(m) {
            *a = _mm512_reduce_add_ps(_mm512_add_ps(*s, *s2));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use half::bf16;

    use super::MAX_ROWS;

    /// Dot products of one BF16 row with `m` activation rows: 16 weights
    /// (two 16-byte loads, widened by shifting each value into the top half
    /// of an F32) per step, one accumulator per 4 of them and activation
    /// row; a scalar loop takes the last < 16. No software prefetch: the
    /// aarch64 one is not stable Rust, and the weight is read sequentially.
    ///
    /// Panics unless `row.len() == k` and `x.len() >= m·k`.
    pub fn dot_rows(row: &[bf16], x: &[f32], k: usize, m: usize, acc: &mut [f32; MAX_ROWS]) {
        assert!(row.len() == k && x.len() >= m * k && m <= MAX_ROWS, "sizes");
        // SAFETY: NEON is part of every aarch64 CPU; the assert bounds every
        // load (t + 16 ≤ k, i < m).
        unsafe {
            let mut sums = [[vdupq_n_f32(0.0); 4]; MAX_ROWS];
            let wp = row.as_ptr() as *const u16;
            let xp = x.as_ptr();
            let mut t = 0;
            while t + 16 <= k {
                let h0 = vld1q_u16(wp.add(t));
                let h1 = vld1q_u16(wp.add(t + 8));
                let w = [
                    vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h0))),
                    vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h0)),
                    vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h1))),
                    vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h1)),
                ];
                for (i, sum) in sums.iter_mut().enumerate().take(m) {
                    let xi = xp.add(i * k + t);
                    for (q, s) in sum.iter_mut().enumerate() {
                        *s = vfmaq_f32(*s, w[q], vld1q_f32(xi.add(4 * q)));
                    }
                }
                t += 16;
            }
            for (i, (a, s)) in acc.iter_mut().zip(&sums).enumerate().take(m) {
                let four = vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3]));
                let mut total = vaddvq_f32(four);
                for j in t..k {
                    total += row[j].to_f32() * x[i * k + j];
                }
                *a = total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_data as data;

    #[test]
    fn matches_reference_on_odd_sizes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 7, 15),
            (2, 65, 17),
            (3, 130, 96),
            (4, 33, 1000),
            (1, 300, 3072),
        ] {
            let w: Vec<bf16> = data(n * k, 1).into_iter().map(bf16::from_f32).collect();
            let x = data(m * k, 2);
            let mut y = vec![0f32; m * n];
            gemv_bf16(&w, &x, &mut y, m, n, k);
            let r = gemv_reference(&w, &x, m, n, k);
            let worst = y
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-4 * (k as f32).sqrt(), "{m}x{n}x{k}: {worst}");
        }
    }

    #[test]
    fn every_simd_path_matches_the_scalar_reference() {
        // The AVX-512 path (where present), AVX2 (or NEON) and scalar on odd
        // lengths, including the masked tail of fewer than 16 and 32 values.
        let all = CpuFeatures::detect();
        let mut paths = vec![all, all.without_avx512(), CpuFeatures::default()];
        paths.dedup();
        for k in [1usize, 15, 16, 17, 31, 33, 64, 100, 3072, 8193] {
            let m = 1 + k % MAX_ROWS;
            let w: Vec<bf16> = data(k, 5).into_iter().map(bf16::from_f32).collect();
            let x = data(m * k, 6);
            let r = gemv_reference(&w, &x, m, 1, k);
            for &features in &paths {
                let mut acc = [0f32; MAX_ROWS];
                dot_rows(features, &w, &x, k, m, &mut acc);
                for i in 0..m {
                    let err = (acc[i] - r[i]).abs();
                    assert!(
                        err <= 1e-4 * (k as f32).sqrt(),
                        "{} k={k}: {err}",
                        path(features)
                    );
                }
            }
        }
    }

    #[test]
    fn scalar_path_matches_reference() {
        let (m, k) = (3, 37);
        let w: Vec<bf16> = data(k, 3).into_iter().map(bf16::from_f32).collect();
        let x = data(m * k, 4);
        let mut acc = [0f32; MAX_ROWS];
        dot_rows_scalar(&w, &x, k, m, &mut acc);
        let r = gemv_reference(&w, &x, m, 1, k);
        for i in 0..m {
            assert!((acc[i] - r[i]).abs() < 1e-5);
        }
    }
}
