//! Q8_0 weights (the llama.cpp/GGML block format): blocks of 32 values stored
//! as one F16 scale `d` and 32 signed bytes `q`, value = d·q, d = max|x| / 127.
//!
//! Decode multiplies a Q8_0 matrix by a vector that is itself quantised to
//! Q8_0 per block, so the inner loop is an integer dot product of 32 byte
//! pairs (AVX2 `maddubs`, NEON `vmull_s8`), scaled once per block. That halves the bytes read
//! per token against BF16 weights.
//!
//! In memory the rows are interleaved in groups of 8 ([`crate::interleaved`]);
//! [`Q8Matrix::from_blocks`] takes and [`Q8Matrix::block_codes`] gives back
//! the GGML row-major layout (what files hold).

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemv::MAX_ROWS;
use crate::interleaved::{
    expand_chunk_pairs, gemv_groups, group_dot_for_activation, Interleaved, GROUP,
};
use crate::scratch::{reset, with_reused};

/// Values per block.
pub const BLOCK: usize = 32;

/// A row-major matrix [N, K] in Q8_0 blocks (K a multiple of 32; 34 bytes
/// per 32 weights, as GGML), stored row-interleaved.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    blocks: Interleaved,
}

/// Quantises one block of 32 values, returning its scale (AVX-512 or AVX2
/// where available: activations are quantised on every decode step,
/// serially, and before every Q8_0 many-row product).
pub(crate) fn quantize_block(x: &[f32], q: &mut [i8]) -> f16 {
    quantize_block_summed(x, q).0
}

/// [`quantize_block`], also returning the sum of the block's codes (what the
/// unsigned-times-signed integer products subtract, ×128).
pub(crate) fn quantize_block_summed(x: &[f32], q: &mut [i8]) -> (f16, i32) {
    #[cfg(target_arch = "x86_64")]
    {
        let features = CpuFeatures::detect();
        if features.avx512 {
            // SAFETY: AVX-512 F and BW and F16C were detected on this CPU.
            return unsafe { avx512::quantize_block(x, q) };
        }
        if features.avx2_fma {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            let d = unsafe { avx2::quantize_block(x, q) };
            return (d, code_sum(q));
        }
    }
    let d = quantize_block_scalar(x, q);
    (d, code_sum(q))
}

/// The sum of a block's codes.
fn code_sum(q: &[i8]) -> i32 {
    q.iter().map(|&v| i32::from(v)).sum()
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
        let codes: Vec<u8> = quants.into_iter().map(|q| q as u8).collect();
        Self::from_blocks(rows, cols, &scales, &codes)
    }

    /// Builds the matrix from GGML row-major blocks (one scale and 32 code
    /// bytes, two's complement, per block); `None` when the sizes do not fit.
    pub fn from_blocks(rows: usize, cols: usize, scales: &[f16], codes: &[u8]) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let blocks = Interleaved::from_row_major(rows, cols / BLOCK, (1, BLOCK), scales, codes)?;
        Some(Self { rows, cols, blocks })
    }

    /// The scales in GGML row-major order (one per block).
    pub fn block_scales(&self) -> Vec<f16> {
        self.blocks.row_major_scales()
    }

    /// The codes in GGML row-major order (32 bytes per block).
    pub fn block_codes(&self) -> Vec<u8> {
        self.blocks.row_major_codes()
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.blocks.size_bytes()
    }

    /// The row-interleaved blocks (what the integer GEMM packs from).
    pub(crate) fn interleaved(&self) -> &Interleaved {
        &self.blocks
    }

    /// Row `r` back to F32 (d·q).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.dequantize_range(r, 0, out);
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let first = k0 / BLOCK;
        for (i, b) in (first..first + out.len() / BLOCK).enumerate() {
            let d = self.blocks.scale(r, b, 0).to_f32();
            let o = &mut out[i * BLOCK..][..BLOCK];
            for (c, four) in o.chunks_exact_mut(4).enumerate() {
                for (v, &q) in four.iter_mut().zip(self.blocks.chunk(r, b, c)) {
                    *v = d * f32::from(q as i8);
                }
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

/// Activation rows of width `k` (a multiple of 32) quantised to Q8_0 blocks
/// into `codes` and `scales` (one F32 scale per block; both resized): the
/// right-hand side of the integer-dot GEMVs.
pub(crate) fn quantize_activations_into(
    x: &[f32],
    k: usize,
    codes: &mut Vec<i8>,
    scales: &mut Vec<f32>,
) {
    debug_assert!(k.is_multiple_of(BLOCK) && x.len().is_multiple_of(k));
    reset(codes, x.len());
    scales.clear();
    scales.extend(
        codes
            .chunks_mut(BLOCK)
            .zip(x.chunks(BLOCK))
            .map(|(q, v)| quantize_block(v, q).to_f32()),
    );
}

/// [`quantize_activations_into`] into new vectors.
#[cfg(test)]
pub(crate) fn quantize_activations(x: &[f32], k: usize) -> (Vec<i8>, Vec<f32>) {
    let (mut codes, mut scales) = (Vec::new(), Vec::new());
    quantize_activations_into(x, k, &mut codes, &mut scales);
    (codes, scales)
}

/// A GEMV's quantised activation rows, kept per thread between calls.
#[derive(Default)]
struct Buffers {
    codes: Vec<i8>,
    magnitudes: Vec<u8>,
    scales: Vec<f32>,
    /// For the AVX-512 VNNI kernel: [`expand_chunk_pairs`] of `codes`.
    expanded: Vec<i32>,
    /// For the AVX-512 VNNI kernel: −128 · Σ codes per block.
    offsets: Vec<i32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

impl Buffers {
    /// Quantises `x` (rows of width `k`) for the group kernel `features` picks.
    fn prepare(&mut self, x: &[f32], k: usize, features: CpuFeatures) {
        quantize_activations_into(x, k, &mut self.codes, &mut self.scales);
        self.magnitudes.clear();
        self.magnitudes
            .extend(self.codes.iter().map(|v| v.unsigned_abs()));
        self.expanded.clear();
        self.offsets.clear();
        if features.avx512_vnni {
            expand_chunk_pairs(&self.codes, &mut self.expanded);
            self.offsets.extend(
                self.codes
                    .chunks(BLOCK)
                    .map(|q| -128 * q.iter().map(|&v| i32::from(v)).sum::<i32>()),
            );
        }
    }

    /// Activation row `i` (of width `k`).
    fn row<'a>(&'a self, i: usize, k: usize) -> Activation<'a> {
        let nb = k / BLOCK;
        let part = |v: &'a [i32], per_block: usize| -> &'a [i32] {
            v.get(i * nb * per_block..(i + 1) * nb * per_block)
                .unwrap_or(&[])
        };
        Activation {
            codes: &self.codes[i * k..(i + 1) * k],
            magnitudes: &self.magnitudes[i * k..(i + 1) * k],
            scales: &self.scales[i * nb..(i + 1) * nb],
            expanded: part(&self.expanded, 2 * BLOCK),
            offsets: part(&self.offsets, 1),
        }
    }
}

/// One activation row quantised to Q8_0 blocks, with the codes' absolute
/// values (the unsigned side of AVX2 `maddubs`; the sign moves onto the
/// weight) and, for the AVX-512 VNNI kernel, the codes spread to pair with
/// 64-byte loads (that kernel makes the weight unsigned instead, w + 128,
/// and adds the offset −128 · Σx per block).
struct Activation<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    // Read by the x86-64 kernels only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    magnitudes: &'a [u8],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    expanded: &'a [i32],
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    offsets: &'a [i32],
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
    let features = CpuFeatures::detect();
    with_reused(&BUFFERS, |buf| {
        buf.prepare(x, k, features);
        let rows: [Activation; MAX_ROWS] = std::array::from_fn(|i| buf.row(i.min(m - 1), k));
        gemv_groups(&w.blocks, &rows[..m], y);
    });
}

group_dot_for_activation!(avx512_vnni, avx_vnni, neon);

/// The reference group kernel: integer block dot products, scaled per block.
fn dot_group_scalar(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
    for (lane, o) in out.iter_mut().enumerate() {
        let mut sum = 0f32;
        for (b, &xd) in x.scales.iter().enumerate() {
            let mut dot = 0i32;
            for c in 0..BLOCK / 4 {
                let at = (b * BLOCK + c * 4) * GROUP + lane * 4;
                for (t, &q) in codes[at..at + 4].iter().enumerate() {
                    dot += i32::from(q as i8) * i32::from(x.codes[b * BLOCK + 4 * c + t]);
                }
            }
            sum += scales[b * GROUP + lane].to_f32() * xd * dot as f32;
        }
        *o = sum;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{Activation, BLOCK, GROUP};
    use crate::shared::prefetch_ahead;

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

    /// The group kernel with `$step(dot, |x|, w with x's sign)` adding one
    /// chunk's integer products to the 8 rows' sums.
    macro_rules! dot_group_with {
        ($(#[$doc:meta])* $name:ident, $features:tt, |$dot:ident, $mag:ident, $signed:ident| $step:expr) => {
            $(#[$doc])*
            ///
            /// # Safety
            /// The named instruction sets must be available.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(
                codes: &[u8],
                scales: &[f16],
                x: &Activation,
                out: &mut [f32; GROUP],
            ) {
                let nb = x.scales.len();
                assert!(
                    codes.len() >= nb * BLOCK * GROUP
                        && scales.len() >= nb * GROUP
                        && x.codes.len() >= nb * BLOCK
                        && x.magnitudes.len() >= nb * BLOCK
                );
                let block = |b: usize| {
                    let cb = codes.as_ptr().add(b * BLOCK * GROUP);
                    let (xs, xa) = (
                        x.codes.as_ptr().add(b * BLOCK),
                        x.magnitudes.as_ptr().add(b * BLOCK),
                    );
                    let mut dot = _mm256_setzero_si256();
                    for c in 0..BLOCK / 4 {
                        if c % 2 == 0 {
                            prefetch_ahead(cb.add(c * 4 * GROUP));
                        }
                        let w = _mm256_loadu_si256(cb.add(c * 4 * GROUP) as *const __m256i);
                        let sign = _mm256_set1_epi32((xs.add(4 * c) as *const i32).read_unaligned());
                        let mag = _mm256_set1_epi32((xa.add(4 * c) as *const i32).read_unaligned());
                        dot = {
                            let ($dot, $mag, $signed) = (dot, mag, _mm256_sign_epi8(w, sign));
                            $step
                        };
                    }
                    let d = _mm256_cvtph_ps(_mm_loadu_si128(
                        scales.as_ptr().add(b * GROUP) as *const __m128i
                    ));
                    (
                        _mm256_cvtepi32_ps(dot),
                        _mm256_mul_ps(d, _mm256_set1_ps(*x.scales.get_unchecked(b))),
                    )
                };
                // Two accumulators hide the FMA latency.
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut b = 0;
                while b + 2 <= nb {
                    let (v0, d0) = block(b);
                    let (v1, d1) = block(b + 1);
                    acc0 = _mm256_fmadd_ps(v0, d0, acc0);
                    acc1 = _mm256_fmadd_ps(v1, d1, acc1);
                    b += 2;
                }
                if b < nb {
                    let (v0, d0) = block(b);
                    acc0 = _mm256_fmadd_ps(v0, d0, acc0);
                }
                _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(acc0, acc1));
            }
        };
    }

    dot_group_with!(
        /// AVX2: `maddubs` pairs, widened to 32 bits per chunk.
        dot_group, "avx2,fma,f16c", |dot, mag, signed| {
            // |x| · (w with x's sign): pairs reach 2 · 127 · 127, so widen
            // each chunk to 32 bits before summing.
            let pairs = _mm256_maddubs_epi16(mag, signed);
            _mm256_add_epi32(dot, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    );

    dot_group_with!(
        /// AVX-VNNI: one `vpdpbusd` per chunk.
        dot_group_vnni, "avx2,fma,f16c,avxvnni", |dot, mag, signed| {
            _mm256_dpbusd_avx_epi32(dot, mag, signed)
        }
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{Activation, BLOCK, GROUP};
    use crate::interleaved::finish_block_avx512;
    use crate::shared::prefetch_ahead;

    /// [`super::quantize_block_scalar`] sixteen lanes at a time, with the
    /// same results (round half away from zero), and the codes' sum. The
    /// scale is rounded to F16 and back with F16C (round to nearest even, as
    /// `half` does in software, which took a third of the time).
    ///
    /// # Safety
    /// AVX-512 F and BW and F16C must be available.
    #[target_feature(enable = "avx512f,avx512bw,f16c")]
    pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f16, i32) {
        assert!(x.len() >= BLOCK && q.len() >= BLOCK, "whole blocks");
        let sign = _mm512_set1_epi32(i32::MIN);
        let v = [0, 16].map(|i| _mm512_loadu_ps(x.as_ptr().add(i)));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        let d16 = _mm_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm_set_ss(amax / 127.0));
        let df = _mm_cvtss_f32(_mm_cvtph_ps(d16));
        let d = f16::from_bits(_mm_extract_epi16::<0>(d16) as u16);
        let inv = _mm512_set1_ps(if df > 0.0 { 1.0 / df } else { 0.0 });
        let (half, one, limit) = (
            _mm512_set1_ps(0.5),
            _mm512_set1_ps(1.0),
            _mm512_set1_ps(127.0),
        );
        let round = |a: __m512| {
            let s = _mm512_mul_ps(a, inv);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(s);
            // |s − t| is exact; at ≥ 0.5 step one away from zero.
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(s, t)), half);
            // ±1 with s's sign (integer logic: the float forms need AVX-512 DQ).
            let away = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_and_si512(_mm512_castps_si512(s), sign),
                _mm512_castps_si512(one),
            ));
            let r = _mm512_mask_add_ps(t, up, t, away);
            let r = _mm512_min_ps(
                _mm512_max_ps(r, _mm512_sub_ps(_mm512_setzero_ps(), limit)),
                limit,
            );
            _mm512_cvtps_epi32(r)
        };
        let [a, b] = v.map(round);
        let p = q.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(p, _mm512_cvtepi32_epi8(a));
        _mm_storeu_si128(p.add(1), _mm512_cvtepi32_epi8(b));
        (d, _mm512_reduce_add_epi32(_mm512_add_epi32(a, b)))
    }

    /// Per block of 8 rows: four 64-byte loads (two chunks of the 8 rows
    /// each), the weights made unsigned by flipping their sign bit (w + 128),
    /// `vpdpbusd` against the spread activation, the two halves added and
    /// the offset −128 · Σx added; then scaled and accumulated as in the AVX2
    /// kernel.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_group(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
        let nb = x.scales.len();
        assert!(
            codes.len() >= nb * BLOCK * GROUP
                && scales.len() >= nb * GROUP
                && x.expanded.len() >= nb * 2 * BLOCK
                && x.offsets.len() >= nb,
            "activation not prepared for the AVX-512 VNNI kernel"
        );
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let cb = codes.as_ptr().add(b * BLOCK * GROUP);
            let xb = x.expanded.as_ptr().add(b * 2 * BLOCK);
            let mut dot = _mm512_setzero_si512();
            for j in 0..BLOCK / 8 {
                prefetch_ahead(cb.add(64 * j));
                let w = _mm512_loadu_si512(cb.add(64 * j) as *const _);
                let a = _mm512_loadu_si512(xb.add(16 * j) as *const _);
                dot = _mm512_dpbusd_epi32(dot, _mm512_xor_si512(w, flip), a);
            }
            let (offset, xd) = (*x.offsets.get_unchecked(b), *x.scales.get_unchecked(b));
            acc = finish_block_avx512(dot, offset, scales.as_ptr().add(b * GROUP), xd, acc);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use half::f16;

    use super::{Activation, BLOCK, GROUP};
    use crate::shared::widen_f16x4;

    /// NEON: signed bytes times signed bytes (no sign trick as for
    /// `maddubs`). Per pair of chunks, two 16-byte loads of each (rows 0-3,
    /// rows 4-7) against the broadcast activation bytes: `vmull_s8` then
    /// `vmlal_s8` into 16-bit lanes (two products of at most 128 · 127 sum
    /// to at most 32512, so no overflow), widened pairwise into 32 bits by
    /// `vpadalq_s16`; at the end of a block `vpaddq_s32` adds each row's two
    /// lanes, giving rows 0-3 and 4-7 in order. Then scaled and accumulated
    /// as in the AVX2 kernel.
    ///
    /// Panics unless `codes` and `scales` hold the group's blocks for every
    /// block of `x`.
    pub fn dot_group(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
        let nb = x.scales.len();
        assert!(
            codes.len() >= nb * BLOCK * GROUP
                && scales.len() >= nb * GROUP
                && x.codes.len() >= nb * BLOCK
        );
        // SAFETY: NEON is part of every aarch64 CPU; the assert bounds every
        // access of blocks `b < nb`.
        unsafe {
            // The 8 rows' dot products of block `b` as F32 (rows 0-3, 4-7),
            // and their combined scales.
            let block = |b: usize| {
                let cb = codes.as_ptr().add(b * BLOCK * GROUP) as *const i8;
                let xb = x.codes.as_ptr().add(b * BLOCK);
                let broadcast = |c: usize| {
                    vreinterpretq_s8_s32(vdupq_n_s32(
                        (xb.add(4 * c) as *const i32).read_unaligned(),
                    ))
                };
                // Lanes: rows 0 0 1 1, 2 2 3 3, 4 4 5 5, 6 6 7 7.
                let mut sums = [vdupq_n_s32(0); 4];
                for c in (0..BLOCK / 4).step_by(2) {
                    let (x0, x1) = (broadcast(c), broadcast(c + 1));
                    for half in 0..2 {
                        let w0 = vld1q_s8(cb.add(c * 4 * GROUP + 16 * half));
                        let w1 = vld1q_s8(cb.add((c + 1) * 4 * GROUP + 16 * half));
                        let low = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
                        let low = vmlal_s8(low, vget_low_s8(w1), vget_low_s8(x1));
                        let high = vmlal_high_s8(vmull_high_s8(w0, x0), w1, x1);
                        sums[2 * half] = vpadalq_s16(sums[2 * half], low);
                        sums[2 * half + 1] = vpadalq_s16(sums[2 * half + 1], high);
                    }
                }
                let d = scales.as_ptr().add(b * GROUP);
                let xd = *x.scales.get_unchecked(b);
                (
                    [
                        vcvtq_f32_s32(vpaddq_s32(sums[0], sums[1])),
                        vcvtq_f32_s32(vpaddq_s32(sums[2], sums[3])),
                    ],
                    [
                        vmulq_n_f32(widen_f16x4(d), xd),
                        vmulq_n_f32(widen_f16x4(d.add(4)), xd),
                    ],
                )
            };
            // Two accumulators (of two registers each) hide the FMA latency.
            let mut acc0 = [vdupq_n_f32(0.0); 2];
            let mut acc1 = [vdupq_n_f32(0.0); 2];
            let mut b = 0;
            while b + 2 <= nb {
                let (v0, d0) = block(b);
                let (v1, d1) = block(b + 1);
                for h in 0..2 {
                    acc0[h] = vfmaq_f32(acc0[h], v0[h], d0[h]);
                    acc1[h] = vfmaq_f32(acc1[h], v1[h], d1[h]);
                }
                b += 2;
            }
            if b < nb {
                let (v0, d0) = block(b);
                for h in 0..2 {
                    acc0[h] = vfmaq_f32(acc0[h], v0[h], d0[h]);
                }
            }
            vst1q_f32(out.as_mut_ptr(), vaddq_f32(acc0[0], acc1[0]));
            vst1q_f32(out.as_mut_ptr().add(4), vaddq_f32(acc0[1], acc1[1]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interleaved::GroupDot;
    use crate::shared::test_data as data;

    #[test]
    fn quantize_round_trip_error_is_within_half_a_step() {
        let (n, k) = (5, 96);
        let v = data(n * k, 9);
        let q = Q8Matrix::quantize(&v, n, k).unwrap();
        let back = q.dequantize();
        let scales = q.block_scales();
        for (blk, (a, b)) in v.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let step = scales[blk].to_f32();
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
        let mut x = data(32 * 200, 5);
        // Magnitudes from 1e-3 to 1e3, so F16 scales round both ways.
        for (b, block) in x.chunks_mut(BLOCK).enumerate().skip(3) {
            let k = 10f32.powi((b % 7) as i32 - 3) * (1.0 + b as f32 / 97.0);
            block.iter_mut().for_each(|v| *v *= k);
        }
        x[..8].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 126.5, -126.5, 0.0]);
        x[32..64].fill(0.0);
        x[64] = 1e-30;
        for block in x.chunks(BLOCK) {
            let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
            let ((da, sum), db) = (
                quantize_block_summed(block, &mut a),
                quantize_block_scalar(block, &mut b),
            );
            assert_eq!((da, a), (db, b));
            assert_eq!(sum, code_sum(&b));
            #[cfg(target_arch = "x86_64")]
            if CpuFeatures::detect().avx2_fma {
                let mut c = [0i8; BLOCK];
                // SAFETY: AVX2 and FMA were detected on this CPU.
                let dc = unsafe { avx2::quantize_block(block, &mut c) };
                assert_eq!((dc, c), (db, b));
            }
        }
        let mut q = [0i8; BLOCK];
        quantize_block(&x[..BLOCK], &mut q);
        assert_eq!(&q[..8], &[127, 3, -3, 1, -1, 127, -127, 0]);
    }

    /// Row-major GGML block dot product, the format's definition.
    fn dot_row_major(wq: &[u8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (b, (wb, xb)) in wq.chunks(BLOCK).zip(xq.chunks(BLOCK)).enumerate() {
            let dot: i32 = wb
                .iter()
                .zip(xb)
                .map(|(&a, &c)| i32::from(a as i8) * i32::from(c))
                .sum();
            sum += ws[b].to_f32() * xd[b] * dot as f32;
        }
        sum
    }

    #[test]
    fn gemv_matches_row_major_block_reference_and_float_product() {
        // Row counts off the group of 8, odd block counts (the kernel's tail).
        for &(m, n, k) in &[
            (1, 1, 32),
            (1, 70, 96),
            (1, 64, 160),
            (2, 33, 64),
            (4, 129, 3072),
        ] {
            let v = data(n * k, 1);
            let x = data(m * k, 2);
            let w = Q8Matrix::quantize(&v, n, k).unwrap();
            let (wq, ws) = (w.block_codes(), w.block_scales());
            let mut y = vec![0f32; m * n];
            gemv_q8(&w, &x, &mut y, m);
            let nb = k / BLOCK;
            let (xq, xd) = quantize_activations(&x, k);
            for i in 0..m {
                for j in 0..n {
                    let r = dot_row_major(
                        &wq[j * k..(j + 1) * k],
                        &ws[j * nb..(j + 1) * nb],
                        &xq[i * k..(i + 1) * k],
                        &xd[i * nb..(i + 1) * nb],
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

    #[test]
    fn vector_and_scalar_group_kernels_agree() {
        let (n, k) = (16, 224);
        let w = Q8Matrix::quantize(&data(n * k, 3), n, k).unwrap();
        // Every vector path this CPU has (AVX2 also where AVX-512 is present).
        let all = CpuFeatures::detect();
        let plain_avx2 = CpuFeatures {
            avx_vnni: false,
            ..all.without_avx512()
        };
        for features in [all, all.without_avx512(), plain_avx2] {
            let mut buf = Buffers::default();
            buf.prepare(&data(k, 4), k, features);
            let x = buf.row(0, k);
            for g in 0..n / GROUP {
                let (codes, scales) = w.blocks.group(g);
                let (mut a, mut b) = ([0f32; GROUP], [0f32; GROUP]);
                x.dot(features, codes, scales, &mut a);
                dot_group_scalar(codes, scales, &x, &mut b);
                for (p, q) in a.iter().zip(&b) {
                    let what = features.describe();
                    assert!(
                        (p - q).abs() <= 1e-4 * q.abs().max(1.0),
                        "{what}: {p} vs {q}"
                    );
                }
            }
        }
    }
    #[test]
    fn group_kernels_agree_on_extreme_codes() {
        // Weight and activation codes of ±127 with matching signs along each
        // row: the largest sums, where a narrow intermediate would overflow.
        let (n, k) = (GROUP, 96);
        let nb = k / BLOCK;
        let sign = |t: usize| {
            if (t * 7 + t / 5).is_multiple_of(3) {
                -1i8
            } else {
                1
            }
        };
        let flip = |r: usize| if r.is_multiple_of(2) { 1i8 } else { -1 };
        let codes: Vec<u8> = (0..n * k)
            .map(|i| (127 * sign(i % k) * flip(i / k)) as u8)
            .collect();
        let w = Q8Matrix::from_blocks(n, k, &vec![f16::ONE; n * nb], &codes).unwrap();
        let x: Vec<f32> = (0..k).map(|t| f32::from(sign(t))).collect();
        let all = CpuFeatures::detect();
        for features in [all, all.without_avx512(), CpuFeatures::SCALAR] {
            let mut buf = Buffers::default();
            buf.prepare(&x, k, features);
            let row = buf.row(0, k);
            assert!(row.codes.iter().all(|&q| q.unsigned_abs() == 127));
            let (codes, scales) = w.blocks.group(0);
            let mut got = [0f32; GROUP];
            row.dot(features, codes, scales, &mut got);
            for (r, g) in got.iter().enumerate() {
                let want = f32::from(flip(r)) * (k * 127 * 127) as f32 * row.scales[0];
                let what = features.describe();
                assert!(
                    (g - want).abs() <= 1e-5 * want.abs(),
                    "{what}: {g} vs {want}"
                );
            }
        }
    }
}
