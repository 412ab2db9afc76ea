//! Q4_K weights (the llama.cpp/GGML "k-quant" format): super-blocks of 256
//! values = 8 sub-blocks of 32, each sub-block with its own 6-bit scale and
//! 6-bit minimum, themselves scaled by the super-block's F16 `d` and `dmin`:
//! value = d·sc·q − dmin·m with 4-bit codes q. 144 bytes per 256 weights
//! (4.5 bits per weight, the same bytes as Q4_0) but a per-sub-block offset,
//! so asymmetric weight distributions lose far less.
//!
//! Layout per super-block (GGML's `block_q4_K`, held as separate arrays):
//! `d`, `dmin`; 12 bytes packing the eight (sc, m) pairs; 128 code bytes in
//! which bytes `32i .. 32i + 32` hold sub-block `2i` in their low nibbles and
//! sub-block `2i + 1` in their high nibbles.
//!
//! Decode quantises the activation per super-block (one scale per 256, as
//! GGML's Q8_K) and computes per super-block `d·xd·Σ_j sc_j·Σ q·xq −
//! dmin·xd·Σ_j m_j·Σ xq`: the sub-block scales are applied in integer
//! arithmetic and the minimums through precomputed activation sums.

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemv::MAX_ROWS;
use crate::q8::BLOCK;
use crate::shared::par_columns;

/// Values per super-block.
pub const SUPER_BLOCK: usize = 256;
/// Bytes of packed (scale, min) pairs per super-block.
const SCALE_BYTES: usize = 12;
/// Bytes of 4-bit codes per super-block.
const CODE_BYTES: usize = SUPER_BLOCK / 2;
/// Sub-blocks per super-block.
const SUBS: usize = SUPER_BLOCK / BLOCK;

/// A row-major matrix [N, K] in Q4_K super-blocks (K a multiple of 256).
#[derive(Debug, Clone)]
pub struct Q4KMatrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    /// Per super-block: `d` then `dmin` (F16).
    pub scales: Vec<f16>,
    /// Per super-block: 12 bytes of 6-bit sub-block scales and minimums.
    pub sub_scales: Vec<u8>,
    /// Per super-block: 128 bytes of 4-bit codes.
    pub codes: Vec<u8>,
}

/// The (scale, min) 6-bit pair of sub-block `j` (GGML's `get_scale_min_k4`).
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Best `scale`, `min` (value ≈ scale·l + min, min ≤ 0) and codes `l` in
/// 0..=15 for one sub-block, minimising the `w`-weighted squared error over
/// a small grid of starting scales refined by least squares (the search of
/// GGML's `make_qkx2_quants`). Returns (scale, −min).
fn fit_sub_block(x: &[f32], w: &[f32], codes: &mut [u8]) -> (f32, f32) {
    const NMAX: f32 = 15.0;
    let mut min = x.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max <= min {
        codes.fill(0);
        return (0.0, -min);
    }
    let quant = |iscale: f32, min: f32, out: &mut [u8]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (iscale * (v - min)).round().clamp(0.0, NMAX) as u8;
        }
    };
    let error = |scale: f32, min: f32, l: &[u8]| -> f32 {
        x.iter()
            .zip(w)
            .zip(l)
            .map(|((&v, &wt), &q)| {
                let d = scale * f32::from(q) + min - v;
                wt * d * d
            })
            .sum()
    };
    let mut scale = (max - min) / NMAX;
    quant(1.0 / scale, min, codes);
    let mut best = error(scale, min, codes);
    let mut trial = [0u8; BLOCK];
    let trial = &mut trial[..x.len()];
    for step in 0..=20 {
        let iscale = (-1.0 + 0.1 * step as f32 + NMAX) / (max - min);
        quant(iscale, min, trial);
        let (mut sw, mut sl, mut sl2, mut sxl, mut sx) = (0f32, 0f32, 0f32, 0f32, 0f32);
        for ((&v, &wt), &q) in x.iter().zip(w).zip(trial.iter()) {
            let l = f32::from(q);
            sw += wt;
            sl += wt * l;
            sl2 += wt * l * l;
            sxl += wt * l * v;
            sx += wt * v;
        }
        let det = sw * sl2 - sl * sl;
        if det <= 0.0 {
            continue;
        }
        let mut this_scale = (sw * sxl - sx * sl) / det;
        let mut this_min = (sl2 * sx - sl * sxl) / det;
        if this_min > 0.0 {
            this_min = 0.0;
            this_scale = if sl2 > 0.0 { sxl / sl2 } else { 0.0 };
        }
        let e = error(this_scale, this_min, trial);
        if e < best {
            best = e;
            scale = this_scale;
            min = this_min;
            codes.copy_from_slice(trial);
        }
    }
    (scale, -min)
}

/// Quantises one super-block of 256 values.
fn quantize_super_block(x: &[f32], scales: &mut [f16], packed: &mut [u8], codes: &mut [u8]) {
    let av = (x.iter().map(|v| v * v).sum::<f32>() / SUPER_BLOCK as f32).sqrt();
    let w: Vec<f32> = x.iter().map(|v| av + v.abs()).collect();
    let mut levels = [0u8; SUPER_BLOCK];
    let mut sub_scale = [0f32; SUBS];
    let mut sub_min = [0f32; SUBS];
    for j in 0..SUBS {
        let r = j * BLOCK..(j + 1) * BLOCK;
        (sub_scale[j], sub_min[j]) = fit_sub_block(&x[r.clone()], &w[r.clone()], &mut levels[r]);
    }
    let max_scale = sub_scale.iter().fold(0f32, |m, &v| m.max(v));
    let max_min = sub_min.iter().fold(0f32, |m, &v| m.max(v));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    packed.fill(0);
    for j in 0..SUBS {
        let ls = (inv_scale * sub_scale[j]).round().clamp(0.0, 63.0) as u8;
        let lm = (inv_min * sub_min[j]).round().clamp(0.0, 63.0) as u8;
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    scales[0] = d;
    scales[1] = dmin;
    // Re-derive the codes against the rounded scales that decoding will use.
    for j in 0..SUBS {
        let (sc, m) = scale_min(j, packed);
        let dd = d.to_f32() * f32::from(sc);
        let dm = dmin.to_f32() * f32::from(m);
        for l in 0..BLOCK {
            let i = j * BLOCK + l;
            levels[i] = if dd > 0.0 {
                ((x[i] + dm) / dd).round().clamp(0.0, 15.0) as u8
            } else {
                0
            };
        }
    }
    for pair in 0..SUBS / 2 {
        for l in 0..BLOCK {
            codes[pair * BLOCK + l] =
                levels[2 * pair * BLOCK + l] | (levels[(2 * pair + 1) * BLOCK + l] << 4);
        }
    }
}

impl Q4KMatrix {
    /// Quantises a row-major F32 matrix; `None` when `cols` is not a multiple of 256.
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if !cols.is_multiple_of(SUPER_BLOCK) || values.len() != rows * cols {
            return None;
        }
        let supers = rows * cols / SUPER_BLOCK;
        let mut scales = vec![f16::ZERO; 2 * supers];
        let mut sub_scales = vec![0u8; SCALE_BYTES * supers];
        let mut codes = vec![0u8; CODE_BYTES * supers];
        scales
            .par_chunks_mut(2)
            .zip(sub_scales.par_chunks_mut(SCALE_BYTES))
            .zip(codes.par_chunks_mut(CODE_BYTES))
            .zip(values.par_chunks(SUPER_BLOCK))
            .for_each(|(((s, p), c), x)| quantize_super_block(x, s, p, c));
        Some(Self {
            rows,
            cols,
            scales,
            sub_scales,
            codes,
        })
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        2 * self.scales.len() + self.sub_scales.len() + self.codes.len()
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole
    /// super-blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let per_row = self.cols / SUPER_BLOCK;
        let first = r * per_row + k0 / SUPER_BLOCK;
        for (i, s) in (first..first + out.len() / SUPER_BLOCK).enumerate() {
            let o = &mut out[i * SUPER_BLOCK..][..SUPER_BLOCK];
            let (d, dmin) = (self.scales[2 * s].to_f32(), self.scales[2 * s + 1].to_f32());
            let packed = &self.sub_scales[s * SCALE_BYTES..][..SCALE_BYTES];
            let codes = &self.codes[s * CODE_BYTES..][..CODE_BYTES];
            for j in 0..SUBS {
                let (sc, m) = scale_min(j, packed);
                let (dd, dm) = (d * f32::from(sc), dmin * f32::from(m));
                let bytes = &codes[(j / 2) * BLOCK..][..BLOCK];
                for l in 0..BLOCK {
                    let q = if j % 2 == 0 {
                        bytes[l] & 0x0f
                    } else {
                        bytes[l] >> 4
                    };
                    o[j * BLOCK + l] = dd * f32::from(q) - dm;
                }
            }
        }
    }
}

/// The eight 6-bit scales then the eight 6-bit minimums of one super-block,
/// unpacked from its 12 bytes with word operations (GGML's layout).
fn unpack_scales(packed: &[u8]) -> [u8; 16] {
    let word = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let scales_lo = w0 & LOW6;
    let scales_hi = (w2 & LOW4) | (((w0 >> 6) & TOP2) << 4);
    let mins_lo = w1 & LOW6;
    let mins_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & TOP2) << 4);
    let mut out = [0u8; 16];
    for (i, w) in [scales_lo, scales_hi, mins_lo, mins_hi].iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Activation rows quantised per super-block (256 values, one F32 scale, as
/// GGML's Q8_K): the codes, the scales and the sum of the codes of every
/// 32-value sub-block (for the minimums' term).
fn quantize_activations_k(x: &[f32]) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
    let mut xq = vec![0i8; x.len()];
    let mut xd = Vec::with_capacity(x.len() / SUPER_BLOCK);
    let mut sums = Vec::with_capacity(x.len() / BLOCK);
    for (q, v) in xq.chunks_mut(SUPER_BLOCK).zip(x.chunks(SUPER_BLOCK)) {
        let amax = v.iter().fold(0f32, |m, a| m.max(a.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (qi, &a) in q.iter_mut().zip(v) {
            *qi = (a * inv).round().clamp(-127.0, 127.0) as i8;
        }
        xd.push(d);
        sums.extend(
            q.chunks(BLOCK)
                .map(|b| b.iter().map(|&c| i32::from(c)).sum::<i32>()),
        );
    }
    (xq, xd, sums)
}

/// `y[m·N + n] = Σ_k x[m·K + k] · W[n, k]` for `m ≤ MAX_ROWS` rows, the
/// activations quantised per super-block first.
pub fn gemv_q4k(w: &Q4KMatrix, x: &[f32], y: &mut [f32], m: usize) {
    let (n, k) = (w.rows, w.cols);
    assert!(
        (1..=MAX_ROWS).contains(&m),
        "gemv_q4k takes 1..={MAX_ROWS} rows"
    );
    assert_eq!(x.len(), m * k, "activation size");
    assert_eq!(y.len(), m * n, "output size");
    let (xq, xd, sums) = quantize_activations_k(x);
    let supers = k / SUPER_BLOCK;
    let features = CpuFeatures::detect();
    par_columns(y, m, n, |j, out| {
        let row = j * supers..(j + 1) * supers;
        let part = RowPart {
            scales: &w.scales[2 * row.start..2 * row.end],
            sub_scales: &w.sub_scales[row.start * SCALE_BYTES..row.end * SCALE_BYTES],
            codes: &w.codes[row.start * CODE_BYTES..row.end * CODE_BYTES],
        };
        for (i, o) in out.iter_mut().enumerate() {
            let act = Activation {
                q: &xq[i * k..(i + 1) * k],
                d: &xd[i * supers..(i + 1) * supers],
                sums: &sums[i * supers * SUBS..(i + 1) * supers * SUBS],
            };
            *o = dot_q4k(features, &part, &act);
        }
    });
}

/// One weight row's super-blocks.
struct RowPart<'a> {
    scales: &'a [f16],
    sub_scales: &'a [u8],
    codes: &'a [u8],
}

/// One activation row quantised by [`quantize_activations_k`].
struct Activation<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sums: &'a [i32],
}

fn dot_q4k(features: CpuFeatures, w: &RowPart, x: &Activation) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma && features.f16c {
        // SAFETY: AVX2, FMA and F16C were detected on this CPU.
        return unsafe { avx2::dot_q4k(w, x) };
    }
    let _ = features;
    dot_q4k_scalar(w, x)
}

/// The minimums' term of super-block `s`: `dmin · xd · Σ_j m_j · Σ xq_j`.
fn min_term(w: &RowPart, x: &Activation, s: usize, unpacked: &[u8; 16]) -> f32 {
    let dot: i32 = (0..SUBS)
        .map(|j| i32::from(unpacked[SUBS + j]) * x.sums[s * SUBS + j])
        .sum();
    w.scales[2 * s + 1].to_f32() * x.d[s] * dot as f32
}

/// Reference: per super-block `d·xd·Σ_j sc_j·Σ q·xq − dmin·xd·Σ_j m_j·Σ xq`.
fn dot_q4k_scalar(w: &RowPart, x: &Activation) -> f32 {
    let mut total = 0f32;
    for s in 0..x.d.len() {
        let unpacked = unpack_scales(&w.sub_scales[s * SCALE_BYTES..][..SCALE_BYTES]);
        let mut sumi = 0i32;
        for (j, &sc) in unpacked[..SUBS].iter().enumerate() {
            let bytes = &w.codes[s * CODE_BYTES + (j / 2) * BLOCK..][..BLOCK];
            let dot: i32 = (0..BLOCK)
                .map(|l| {
                    let q = if j % 2 == 0 {
                        bytes[l] & 0x0f
                    } else {
                        bytes[l] >> 4
                    };
                    i32::from(q) * i32::from(x.q[s * SUPER_BLOCK + j * BLOCK + l])
                })
                .sum();
            sumi += i32::from(sc) * dot;
        }
        total += w.scales[2 * s].to_f32() * x.d[s] * sumi as f32 - min_term(w, x, s, &unpacked);
    }
    total
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        unpack_scales, Activation, RowPart, BLOCK, CODE_BYTES, SCALE_BYTES, SUBS, SUPER_BLOCK,
    };
    use crate::shared::hsum256;

    /// Integer dot products per sub-block, weighted by the 6-bit scales in
    /// 16-bit `madd`s, so each super-block needs one conversion and one FMA.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available; the parts hold whole super-blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_q4k(w: &RowPart, x: &Activation) -> f32 {
        let nibble = _mm256_set1_epi8(0x0f);
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        for s in 0..x.d.len() {
            let unpacked = unpack_scales(&w.sub_scales[s * SCALE_BYTES..][..SCALE_BYTES]);
            let codes = w.codes.as_ptr().add(s * CODE_BYTES);
            let xs = x.q.as_ptr().add(s * SUPER_BLOCK);
            let mut sumi = _mm256_setzero_si256();
            for pair in 0..4 {
                let packed = _mm256_loadu_si256(codes.add(pair * BLOCK) as *const __m256i);
                let lo = _mm256_and_si256(packed, nibble);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), nibble);
                let x0 = _mm256_loadu_si256(xs.add(2 * pair * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(xs.add((2 * pair + 1) * BLOCK) as *const __m256i);
                let s0 = _mm256_set1_epi16(i16::from(unpacked[2 * pair]));
                let s1 = _mm256_set1_epi16(i16::from(unpacked[2 * pair + 1]));
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), s0);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), s1);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            // Hardware F16 conversions (the software path dominated the loop).
            let pair = _mm_cvtph_ps(_mm_cvtsi32_si128(
                i32::from(w.scales[2 * s].to_bits())
                    | (i32::from(w.scales[2 * s + 1].to_bits()) << 16),
            ));
            let d = _mm_cvtss_f32(pair);
            let dmin = _mm_cvtss_f32(_mm_shuffle_ps::<1>(pair, pair));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x.d[s]), _mm256_cvtepi32_ps(sumi), acc);
            let mut dot = 0i32;
            for (j, &m) in unpacked[SUBS..].iter().enumerate() {
                dot += i32::from(m) * x.sums[s * SUBS + j];
            }
            mins += dmin * x.d[s] * dot as f32;
        }
        hsum256(acc) - mins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_data as data;

    #[test]
    fn word_unpacking_matches_the_byte_rule() {
        let packed: Vec<u8> = (0..12u8)
            .map(|i| i.wrapping_mul(97).wrapping_add(31))
            .collect();
        let unpacked = unpack_scales(&packed);
        for j in 0..SUBS {
            let (sc, m) = scale_min(j, &packed);
            assert_eq!((unpacked[j], unpacked[SUBS + j]), (sc, m), "sub-block {j}");
        }
    }

    #[test]
    fn quantisation_error_is_small_and_beats_q4_0_on_offset_data() {
        let (n, k) = (4, 512);
        // Shifted, asymmetric values: where a per-block minimum pays.
        let v: Vec<f32> = data(n * k, 5)
            .iter()
            .map(|x| 0.6 + 0.4 * x * x.abs())
            .collect();
        let q = Q4KMatrix::quantize(&v, n, k).unwrap();
        let mut back = vec![0f32; k];
        let mut worst = 0f32;
        let mut err_k = 0f64;
        for r in 0..n {
            q.dequantize_range(r, 0, &mut back);
            for (a, b) in v[r * k..(r + 1) * k].iter().zip(&back) {
                worst = worst.max((a - b).abs());
                err_k += f64::from((a - b) * (a - b));
            }
        }
        assert!(worst < 0.05, "worst {worst}");
        let q4 = crate::q4::Q4Matrix::quantize(&v, n, k)
            .unwrap()
            .dequantize();
        let err_0: f64 = v
            .iter()
            .zip(&q4)
            .map(|(a, b)| f64::from((a - b) * (a - b)))
            .sum();
        assert!(err_k < err_0 / 2.0, "q4_k {err_k} vs q4_0 {err_0}");
        assert_eq!(q.size_bytes(), n * k / SUPER_BLOCK * 144);
        assert!(Q4KMatrix::quantize(&v[..4 * 256], 4, 256).is_some());
        assert!(Q4KMatrix::quantize(&v[..4 * 96], 4, 96).is_none());
    }

    #[test]
    fn gemv_matches_the_dequantised_product() {
        for &(m, n, k) in &[(1, 1, 256), (1, 70, 512), (3, 33, 2304), (4, 65, 3072)] {
            let v = data(n * k, 1);
            let x = data(m * k, 2);
            let w = Q4KMatrix::quantize(&v, n, k).unwrap();
            let mut y = vec![0f32; m * n];
            gemv_q4k(&w, &x, &mut y, m);
            let mut row = vec![0f32; k];
            for j in 0..n {
                w.dequantize_range(j, 0, &mut row);
                for i in 0..m {
                    let exact: f32 = (0..k).map(|t| row[t] * x[i * k + t]).sum();
                    let got = y[i * n + j];
                    // Only the activation's Q8_0 rounding separates the two.
                    assert!(
                        (got - exact).abs() <= 0.01 * (k as f32).sqrt(),
                        "{m}x{n}x{k}: {got} vs {exact}"
                    );
                }
            }
            // The scalar and vector super-block dot products agree.
            let (xq, xd, sums) = quantize_activations_k(&x[..k]);
            let supers = k / SUPER_BLOCK;
            let part = RowPart {
                scales: &w.scales[..2 * supers],
                sub_scales: &w.sub_scales[..supers * SCALE_BYTES],
                codes: &w.codes[..supers * CODE_BYTES],
            };
            let act = Activation {
                q: &xq,
                d: &xd,
                sums: &sums,
            };
            let a = dot_q4k(CpuFeatures::detect(), &part, &act);
            let b = dot_q4k_scalar(&part, &act);
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}
