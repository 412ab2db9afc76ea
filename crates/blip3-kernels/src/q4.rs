//! Q4_0 weights (the llama.cpp/GGML block format): blocks of 32 values stored
//! as one F16 scale `d` and 16 bytes of 4-bit codes, value = d·(code − 8).
//! Byte `j` of a block holds element `j` in its low nibble and element `j + 16`
//! in its high nibble; `d = m / −8` where `m` is the element of largest
//! magnitude (sign kept), so the extreme value maps exactly to code 0.
//!
//! 18 bytes per 32 weights (0.5625 B/weight), a quarter of BF16's traffic, so
//! decode, which streams every weight once per token, runs up to 3.5× faster.
//! As for Q8_0, the activation is quantised to Q8_0 blocks and the inner loop
//! is an integer dot product (AVX2 `maddubs`), scaled once per block.

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemv::MAX_ROWS;
use crate::q8::{quantize_activations, BLOCK};
use crate::shared::par_columns;

/// Bytes of codes per block.
const CODE_BYTES: usize = BLOCK / 2;

/// A row-major matrix [N, K] in Q4_0 blocks (K a multiple of 32).
#[derive(Debug, Clone)]
pub struct Q4Matrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    /// One F16 scale per block, row-major.
    pub scales: Vec<f16>,
    /// 16 bytes of packed 4-bit codes per block.
    pub codes: Vec<u8>,
}

/// Quantises one block of 32 values into 16 code bytes, returning its scale.
fn quantize_block(x: &[f32], codes: &mut [u8]) -> f16 {
    let extreme = x
        .iter()
        .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = f16::from_f32(extreme / -8.0);
    let inv = if extreme != 0.0 { -8.0 / extreme } else { 0.0 };
    let code = |v: f32| ((v * inv + 8.5) as i32).clamp(0, 15) as u8;
    for (j, c) in codes.iter_mut().enumerate() {
        *c = code(x[j]) | (code(x[j + CODE_BYTES]) << 4);
    }
    d
}

impl Q4Matrix {
    /// Quantises a row-major F32 matrix; `None` when `cols` is not a multiple of 32.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) || values.len() != rows * cols {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = vec![f16::ZERO; blocks];
        let mut codes = vec![0u8; blocks * CODE_BYTES];
        scales
            .par_iter_mut()
            .zip(codes.par_chunks_mut(CODE_BYTES))
            .zip(values.par_chunks(BLOCK))
            .for_each(|((s, c), x)| *s = quantize_block(x, c));
        Some(Self {
            rows,
            cols,
            scales,
            codes,
        })
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.codes.len() + 2 * self.scales.len()
    }

    /// Row `r` back to F32.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.dequantize_range(r, 0, out);
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let first = k0 / BLOCK;
        for (i, b) in (first..first + out.len() / BLOCK).enumerate() {
            let d = self.scales[r * nb + b].to_f32();
            let c = &self.codes[(r * nb + b) * CODE_BYTES..][..CODE_BYTES];
            let o = &mut out[i * BLOCK..][..BLOCK];
            for (j, &byte) in c.iter().enumerate() {
                o[j] = d * (i32::from(byte & 0x0f) - 8) as f32;
                o[j + CODE_BYTES] = d * (i32::from(byte >> 4) - 8) as f32;
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

/// `y[m·N + n] = Σ_k x[m·K + k] · W[n, k]` for `m ≤ MAX_ROWS` rows, with the
/// activations quantised to Q8_0 per block first (as llama.cpp does).
pub fn gemv_q4(w: &Q4Matrix, x: &[f32], y: &mut [f32], m: usize) {
    let (n, k) = (w.rows, w.cols);
    assert!(
        (1..=MAX_ROWS).contains(&m),
        "gemv_q4 takes 1..={MAX_ROWS} rows"
    );
    assert_eq!(x.len(), m * k, "activation size");
    assert_eq!(y.len(), m * n, "output size");
    let nb = k / BLOCK;
    let (xq, xd) = quantize_activations(x, k);
    let xoff: Vec<f32> = xq
        .chunks(BLOCK)
        .map(|q| -8.0 * q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32)
        .collect();
    let features = CpuFeatures::detect();
    par_columns(y, m, n, |j, out| {
        let wc = &w.codes[j * nb * CODE_BYTES..(j + 1) * nb * CODE_BYTES];
        let ws = &w.scales[j * nb..(j + 1) * nb];
        for (i, o) in out.iter_mut().enumerate() {
            let row = i * nb..(i + 1) * nb;
            *o = dot_q4(
                features,
                wc,
                ws,
                &xq[i * k..(i + 1) * k],
                &xd[row.clone()],
                &xoff[row],
            );
        }
    });
}

fn dot_q4(
    features: CpuFeatures,
    wc: &[u8],
    ws: &[f16],
    xq: &[i8],
    xd: &[f32],
    xoff: &[f32],
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma && features.f16c {
        // SAFETY: AVX2, FMA and F16C were detected on this CPU.
        return unsafe { avx2::dot_q4(wc, ws, xq, xd, xoff) };
    }
    let _ = (features, xoff);
    dot_q4_scalar(wc, ws, xq, xd)
}

/// Reference block dot product.
pub fn dot_q4_scalar(wc: &[u8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (b, (cb, xb)) in wc.chunks(CODE_BYTES).zip(xq.chunks(BLOCK)).enumerate() {
        let mut dot = 0i32;
        for (j, &byte) in cb.iter().enumerate() {
            dot += (i32::from(byte & 0x0f) - 8) * i32::from(xb[j]);
            dot += (i32::from(byte >> 4) - 8) * i32::from(xb[j + CODE_BYTES]);
        }
        sum += ws[b].to_f32() * xd[b] * dot as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{BLOCK, CODE_BYTES};
    use crate::shared::scaled_block_sum;

    /// `xoff[b]` is `−8 · Σ xq[block b]`: the codes are used unsigned (0..=15,
    /// straight into `maddubs` without sign fix-ups) and the offset of 8 is
    /// removed once per block through this precomputed sum.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available; slices hold whole blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4(wc: &[u8], ws: &[f16], xq: &[i8], xd: &[f32], xoff: &[f32]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mask = _mm_set1_epi8(0x0f);
        let block = |b: usize| {
            // The 32 codes in element order (low nibbles, then high), 0..=15.
            let packed = _mm_loadu_si128(wc.as_ptr().add(b * CODE_BYTES) as *const __m128i);
            let lo = _mm_and_si128(packed, mask);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(packed), mask);
            let w = _mm256_set_m128i(hi, lo);
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i);
            _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones))
        };
        let scales8 = |b: usize| {
            _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_loadu_si128(ws.as_ptr().add(b) as *const __m128i)),
                _mm256_loadu_ps(xd.as_ptr().add(b)),
            )
        };
        let scale1 = |b: usize| ws[b].to_f32() * xd[b];
        let codes = scaled_block_sum!(ws.len(), scales8, scale1, block);
        // Σ_b d_b · (−8 · Σ x_b), eight blocks at a time.
        let nb = ws.len();
        let mut acc = _mm256_setzero_ps();
        let mut b = 0;
        while b + 8 <= nb {
            acc = _mm256_fmadd_ps(scales8(b), _mm256_loadu_ps(xoff.as_ptr().add(b)), acc);
            b += 8;
        }
        let mut offset = crate::shared::hsum256(acc);
        for (t, off) in xoff.iter().enumerate().take(nb).skip(b) {
            offset += scale1(t) * off;
        }
        codes + offset
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
        let q = Q4Matrix::quantize(&v, n, k).unwrap();
        let back = q.dequantize();
        for (blk, (a, b)) in v.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let step = q.scales[blk].to_f32().abs();
            let extreme = a.iter().fold(0f32, |m, x| m.max(x.abs()));
            for (x, y) in a.iter().zip(b) {
                // Half a step, plus the F16 rounding of the scale over 8 steps;
                // the side opposite the extreme only reaches 7 steps (as in GGML).
                let clamp = (x.abs() - 7.0 * step).max(0.0);
                let bound = (0.5 * step).max(clamp) + 8.0 * step / 1024.0 + 1e-6;
                assert!((x - y).abs() <= bound, "{x} -> {y} (step {step})");
            }
            // The extreme element is represented exactly up to the scale's rounding.
            assert!(extreme <= 8.0 * step * (1.0 + 1.0 / 1024.0) + 1e-6);
        }
        assert!(Q4Matrix::quantize(&v[..5 * 95], 5, 95).is_none());
        assert_eq!(q.size_bytes(), n * k / BLOCK * 18);
    }

    #[test]
    fn zero_block_quantises_to_zero() {
        let q = Q4Matrix::quantize(&[0.0; 32], 1, 32).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn gemv_matches_scalar_block_reference_and_float_product() {
        // Odd block counts exercise the kernel's single-block tail.
        for &(m, n, k) in &[
            (1, 1, 32),
            (1, 70, 96),
            (2, 33, 64),
            (3, 65, 160),
            (4, 129, 3072),
        ] {
            let v = data(n * k, 1);
            let x = data(m * k, 2);
            let w = Q4Matrix::quantize(&v, n, k).unwrap();
            let mut y = vec![0f32; m * n];
            gemv_q4(&w, &x, &mut y, m);
            let nb = k / BLOCK;
            let (xq, xd) = quantize_activations(&x, k);
            for i in 0..m {
                for j in 0..n {
                    let r = dot_q4_scalar(
                        &w.codes[j * nb * CODE_BYTES..(j + 1) * nb * CODE_BYTES],
                        &w.scales[j * nb..(j + 1) * nb],
                        &xq[i * k..(i + 1) * k],
                        &xd[i * nb..(i + 1) * nb],
                    );
                    let exact: f32 = (0..k).map(|t| v[j * k + t] * x[i * k + t]).sum();
                    let got = y[i * n + j];
                    assert!(
                        (got - r).abs() <= 1e-4 * r.abs().max(1.0),
                        "{m}x{n}x{k} kernel vs block ref: {got} vs {r}"
                    );
                    // 4-bit error of a K-term dot product of values in [-1, 1].
                    assert!(
                        (got - exact).abs() <= 0.1 * (k as f32).sqrt(),
                        "{m}x{n}x{k} vs float: {got} vs {exact}"
                    );
                }
            }
        }
    }
}
