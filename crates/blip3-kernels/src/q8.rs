//! Q8_0 weights (the llama.cpp/GGML block format): blocks of 32 values stored
//! as one F16 scale `d` and 32 signed bytes `q`, value = d·q, d = max|x| / 127.
//!
//! Decode multiplies a Q8_0 matrix by a vector that is itself quantised to
//! Q8_0 per block, so the inner loop is an integer dot product of 32 byte
//! pairs (AVX2 `maddubs`), scaled once per block. That halves the bytes read
//! per token against BF16 weights.

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemv::MAX_ROWS;
use crate::shared::par_columns;

/// Values per block.
pub const BLOCK: usize = 32;

/// A row-major matrix [N, K] in Q8_0 blocks (K a multiple of 32).
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    /// One F16 scale per block, row-major (34 bytes per 32 weights, as GGML).
    pub scales: Vec<f16>,
    /// 32 quantised values per block.
    pub quants: Vec<i8>,
}

/// Quantises one block of 32 values, returning its scale (AVX2 where
/// available: activations are quantised on every decode step, serially).
fn quantize_block(x: &[f32], q: &mut [i8]) -> f16 {
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::detect().avx2_fma {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        return unsafe { avx2::quantize_block(x, q) };
    }
    quantize_block_scalar(x, q)
}

/// Reference for [`quantize_block`].
fn quantize_block_scalar(x: &[f32], q: &mut [i8]) -> f16 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    // Quantise against the F16-rounded scale that dequantisation will use.
    let d = f16::from_f32(amax / 127.0);
    let df = d.to_f32();
    let inv = if df > 0.0 { 1.0 / df } else { 0.0 };
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    d
}

impl Q8Matrix {
    /// Quantises a row-major F32 matrix; `None` when `cols` is not a multiple of 32.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) || values.len() != rows * cols {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = vec![f16::ZERO; blocks];
        let mut quants = vec![0i8; rows * cols];
        scales
            .par_iter_mut()
            .zip(quants.par_chunks_mut(BLOCK))
            .zip(values.par_chunks(BLOCK))
            .for_each(|((s, q), x)| *s = quantize_block(x, q));
        Some(Self {
            rows,
            cols,
            scales,
            quants,
        })
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.quants.len() + 2 * self.scales.len()
    }

    /// Row `r` back to F32 (d·q).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.dequantize_range(r, 0, out);
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let first = k0 / BLOCK;
        for (i, b) in (first..first + out.len() / BLOCK).enumerate() {
            let d = self.scales[r * nb + b].to_f32();
            let q = &self.quants[(r * nb + b) * BLOCK..][..BLOCK];
            for (o, &v) in out[i * BLOCK..][..BLOCK].iter_mut().zip(q) {
                *o = d * f32::from(v);
            }
        }
    }

    /// The whole matrix as F32 (for many-row products such as prefill).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(r, row)| self.dequantize_row(r, row));
        out
    }
}

/// Activation rows of width `k` (a multiple of 32) quantised to Q8_0 blocks:
/// the codes and one F32 scale per block, the right-hand side of the
/// integer-dot GEMVs.
pub(crate) fn quantize_activations(x: &[f32], k: usize) -> (Vec<i8>, Vec<f32>) {
    debug_assert!(k.is_multiple_of(BLOCK) && x.len().is_multiple_of(k));
    let mut xq = vec![0i8; x.len()];
    let xd = xq
        .chunks_mut(BLOCK)
        .zip(x.chunks(BLOCK))
        .map(|(q, v)| quantize_block(v, q).to_f32())
        .collect();
    (xq, xd)
}

/// `y[m·N + n] = Σ_k x[m·K + k] · W[n, k]` for `m ≤ MAX_ROWS` rows, with the
/// activations quantised to Q8_0 per block first (as llama.cpp does).
pub fn gemv_q8(w: &Q8Matrix, x: &[f32], y: &mut [f32], m: usize) {
    let (n, k) = (w.rows, w.cols);
    assert!(
        (1..=MAX_ROWS).contains(&m),
        "gemv_q8 takes 1..={MAX_ROWS} rows"
    );
    assert_eq!(x.len(), m * k, "activation size");
    assert_eq!(y.len(), m * n, "output size");
    let nb = k / BLOCK;
    let (xq, xd) = quantize_activations(x, k);
    let features = CpuFeatures::detect();
    par_columns(y, m, n, |j, out| {
        let wq = &w.quants[j * k..(j + 1) * k];
        let ws = &w.scales[j * nb..(j + 1) * nb];
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot_q8(
                features,
                wq,
                ws,
                &xq[i * k..(i + 1) * k],
                &xd[i * nb..(i + 1) * nb],
            );
        }
    });
}

fn dot_q8(features: CpuFeatures, wq: &[i8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma && features.f16c {
        // SAFETY: AVX2, FMA and F16C were detected on this CPU.
        return unsafe { avx2::dot_q8(wq, ws, xq, xd) };
    }
    let _ = features;
    dot_q8_scalar(wq, ws, xq, xd)
}

/// Reference block dot product.
pub fn dot_q8_scalar(wq: &[i8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (b, (wb, xb)) in wq.chunks(BLOCK).zip(xq.chunks(BLOCK)).enumerate() {
        let dot: i32 = wb
            .iter()
            .zip(xb)
            .map(|(&a, &c)| i32::from(a) * i32::from(c))
            .sum();
        sum += ws[b].to_f32() * xd[b] * dot as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::BLOCK;
    use crate::shared::scaled_block_sum;

    /// [`super::quantize_block_scalar`] eight lanes at a time, with the same
    /// results: round half away from zero (`f32::round`), not the vector
    /// unit's round-half-to-even.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> f16 {
        assert!(x.len() >= BLOCK && q.len() >= BLOCK, "whole blocks");
        let sign = _mm256_set1_ps(-0.0);
        let abs = |a: __m256| _mm256_andnot_ps(sign, a);
        let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(x.as_ptr().add(i)));
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
        let d = f16::from_f32(amax / 127.0);
        let df = d.to_f32();
        let inv = _mm256_set1_ps(if df > 0.0 { 1.0 / df } else { 0.0 });
        let (half, one, limit) = (
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(1.0),
            _mm256_set1_ps(127.0),
        );
        let round = |a: __m256| {
            let s = _mm256_mul_ps(a, inv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(s);
            // |s − t| is exact; at ≥ 0.5 step one away from zero.
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(abs(_mm256_sub_ps(s, t)), half);
            let step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(s, sign), one));
            let r = _mm256_add_ps(t, step);
            let r = _mm256_min_ps(
                _mm256_max_ps(r, _mm256_sub_ps(_mm256_setzero_ps(), limit)),
                limit,
            );
            _mm256_cvtps_epi32(r)
        };
        let [a, b, c, e] = v.map(round);
        // packs work within 128-bit lanes: dwords come out as
        // a0-3 b0-3 c0-3 e0-3 a4-7 b4-7 c4-7 e4-7.
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, e));
        let ordered =
            _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, ordered);
        d
    }

    /// # Safety
    /// AVX2, FMA and F16C must be available; slices hold whole blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8(wq: &[i8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let block = |b: usize| {
            let w = _mm256_loadu_si256(wq.as_ptr().add(b * BLOCK) as *const __m256i);
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
            // maddubs needs unsigned × signed: |x| × (w with x's sign).
            let ax = _mm256_sign_epi8(x, x);
            let sw = _mm256_sign_epi8(w, x);
            _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones))
        };
        scaled_block_sum!(
            ws.len(),
            |b: usize| _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(ws.as_ptr().add(b) as *const __m128i)),
                _mm256_loadu_ps(xd.as_ptr().add(b))
            ),
            |b: usize| ws[b].to_f32() * xd[b],
            block
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_data as data;

    #[test]
    fn quantize_round_trip_error_is_within_half_a_step() {
        let (n, k) = (5, 96);
        let v = data(n * k, 9);
        let q = Q8Matrix::quantize(&v, n, k).unwrap();
        let back = q.dequantize();
        for (blk, (a, b)) in v.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let step = q.scales[blk].to_f32();
            for (x, y) in a.iter().zip(b) {
                // Half a step, plus the clamp when the F16 scale rounded down.
                assert!((x - y).abs() <= 0.5 * step + 127.0 * step / 1024.0 + 1e-6);
            }
        }
        assert!(Q8Matrix::quantize(&v[..5 * 95], 5, 95).is_none());
    }

    #[test]
    fn block_quantiser_matches_its_reference_including_ties() {
        // amax 127 gives the exact scale 1: ±2.5 and ±0.5 are rounding ties.
        let mut x = data(32 * 9, 5);
        x[..8].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 126.5, -126.5, 0.0]);
        x[32..64].fill(0.0);
        x[64] = 1e-30;
        for block in x.chunks(BLOCK) {
            let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
            let (da, db) = (
                quantize_block(block, &mut a),
                quantize_block_scalar(block, &mut b),
            );
            assert_eq!((da, a), (db, b));
        }
        let mut q = [0i8; BLOCK];
        quantize_block(&x[..BLOCK], &mut q);
        assert_eq!(&q[..8], &[127, 3, -3, 1, -1, 127, -127, 0]);
    }

    #[test]
    fn gemv_matches_scalar_block_reference_and_float_product() {
        for &(m, n, k) in &[(1, 1, 32), (1, 70, 96), (2, 33, 64), (4, 129, 3072)] {
            let v = data(n * k, 1);
            let x = data(m * k, 2);
            let w = Q8Matrix::quantize(&v, n, k).unwrap();
            let mut y = vec![0f32; m * n];
            gemv_q8(&w, &x, &mut y, m);
            let nb = k / BLOCK;
            for i in 0..m {
                let mut xq = vec![0i8; k];
                let xd: Vec<f32> = xq
                    .chunks_mut(BLOCK)
                    .zip(x[i * k..(i + 1) * k].chunks(BLOCK))
                    .map(|(q, c)| quantize_block(c, q).to_f32())
                    .collect();
                for j in 0..n {
                    let r = dot_q8_scalar(
                        &w.quants[j * k..(j + 1) * k],
                        &w.scales[j * nb..(j + 1) * nb],
                        &xq,
                        &xd,
                    );
                    let exact: f32 = (0..k).map(|t| v[j * k + t] * x[i * k + t]).sum();
                    let got = y[i * n + j];
                    assert!(
                        (got - r).abs() <= 1e-4 * r.abs().max(1.0),
                        "{m}x{n}x{k} kernel vs block ref"
                    );
                    // Quantisation error of a K-term dot product of values in [-1, 1].
                    assert!(
                        (got - exact).abs() <= 0.02 * (k as f32).sqrt(),
                        "{m}x{n}x{k} vs float"
                    );
                }
            }
        }
    }
}
