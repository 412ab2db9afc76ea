//! Q4_0 weights (the llama.cpp/GGML block format): blocks of 32 values stored
//! as one F16 scale `d` and 16 bytes of 4-bit codes, value = d·(code − 8).
//! Byte `j` of a block holds element `j` in its low nibble and element `j + 16`
//! in its high nibble; `d = m / −8` where `m` is the element of largest
//! magnitude (sign kept), so the extreme value maps exactly to code 0.
//!
//! 18 bytes per 32 weights (0.5625 B/weight), a quarter of BF16's traffic, so
//! decode, which streams every weight once per token, runs up to 3.5× faster.
//! As for Q8_0, the activation is quantised to Q8_0 blocks and the inner loop
//! is an integer dot product (AVX2 `maddubs`, NEON `vmlal_s8`), scaled once
//! per block.
//!
//! In memory the rows are interleaved in groups of 8 ([`crate::interleaved`]);
//! [`Q4Matrix::from_blocks`] takes and [`Q4Matrix::block_codes`] gives back
//! the GGML row-major layout (what files hold).

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemv::MAX_ROWS;
use crate::interleaved::{
    expand_chunk_pairs, gemv_groups, group_dot_for_activation, Interleaved, GROUP,
};
use crate::q8::{quantize_activations_into, BLOCK};
use crate::scratch::with_reused;

/// Bytes of codes per block.
const CODE_BYTES: usize = BLOCK / 2;
/// Code bytes of one block of a whole group.
const GROUP_BLOCK_BYTES: usize = GROUP * CODE_BYTES;

/// A row-major matrix [N, K] in Q4_0 blocks (K a multiple of 32), stored
/// row-interleaved.
#[derive(Debug, Clone)]
pub struct Q4Matrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    blocks: Interleaved,
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
        Self::from_blocks(rows, cols, &scales, &codes)
    }

    /// Builds the matrix from GGML row-major blocks (one scale per block,
    /// 16 code bytes per block); `None` when the sizes do not fit.
    pub fn from_blocks(rows: usize, cols: usize, scales: &[f16], codes: &[u8]) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) {
            return None;
        }
        let blocks =
            Interleaved::from_row_major(rows, cols / BLOCK, (1, CODE_BYTES), scales, codes)?;
        Some(Self { rows, cols, blocks })
    }

    /// The scales in GGML row-major order (one per block).
    pub fn block_scales(&self) -> Vec<f16> {
        self.blocks.row_major_scales()
    }

    /// The codes in GGML row-major order (16 bytes per block).
    pub fn block_codes(&self) -> Vec<u8> {
        self.blocks.row_major_codes()
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.blocks.size_bytes()
    }

    /// Row `r` back to F32.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        self.dequantize_range(r, 0, out);
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let first = k0 / BLOCK;
        for (i, b) in (first..first + out.len() / BLOCK).enumerate() {
            let d = self.blocks.scale(r, b, 0).to_f32();
            let o = &mut out[i * BLOCK..][..BLOCK];
            for c in 0..CODE_BYTES / 4 {
                for (t, &byte) in self.blocks.chunk(r, b, c).iter().enumerate() {
                    o[4 * c + t] = d * (i32::from(byte & 0x0f) - 8) as f32;
                    o[4 * c + t + CODE_BYTES] = d * (i32::from(byte >> 4) - 8) as f32;
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

/// One activation row quantised to Q8_0 blocks, with `−8 · Σ codes` per block
/// (the codes are used unsigned, 0..=15, and the offset of 8 is removed once
/// per block through this sum) and, for the AVX-512 VNNI kernel, the codes
/// spread to pair with 64-byte loads.
struct Activation<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    offsets: &'a [i32],
    // Read by the AVX-512 VNNI kernel only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    expanded: &'a [i32],
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
    let features = CpuFeatures::detect();
    with_reused(&BUFFERS, |buf| {
        buf.prepare(x, k, features);
        let rows: [Activation; MAX_ROWS] = std::array::from_fn(|i| buf.row(i.min(m - 1), k));
        gemv_groups(&w.blocks, &rows[..m], y);
    });
}

/// A GEMV's quantised activation rows, kept per thread between calls.
#[derive(Default)]
struct Buffers {
    codes: Vec<i8>,
    scales: Vec<f32>,
    offsets: Vec<i32>,
    /// For the AVX-512 VNNI kernel: [`expand_chunk_pairs`] of `codes`.
    expanded: Vec<i32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

impl Buffers {
    /// Quantises `x` (rows of width `k`) for the group kernel `features` picks.
    fn prepare(&mut self, x: &[f32], k: usize, features: CpuFeatures) {
        quantize_activations_into(x, k, &mut self.codes, &mut self.scales);
        self.offsets.clear();
        self.offsets.extend(
            self.codes
                .chunks(BLOCK)
                .map(|q| -8 * q.iter().map(|&v| i32::from(v)).sum::<i32>()),
        );
        self.expanded.clear();
        if features.avx512_vnni {
            expand_chunk_pairs(&self.codes, &mut self.expanded);
        }
    }

    /// Activation row `i` (of width `k`).
    fn row(&self, i: usize, k: usize) -> Activation<'_> {
        let nb = k / BLOCK;
        Activation {
            codes: &self.codes[i * k..(i + 1) * k],
            scales: &self.scales[i * nb..(i + 1) * nb],
            offsets: &self.offsets[i * nb..(i + 1) * nb],
            expanded: self.expanded.get(i * 2 * k..(i + 1) * 2 * k).unwrap_or(&[]),
        }
    }
}

group_dot_for_activation!(avx512_vnni, avx_vnni, neon);

/// The reference group kernel: integer block dot products, scaled per block.
fn dot_group_scalar(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
    for (lane, o) in out.iter_mut().enumerate() {
        let mut sum = 0f32;
        for (b, &xd) in x.scales.iter().enumerate() {
            let xb = &x.codes[b * BLOCK..][..BLOCK];
            let mut dot = 0i32;
            for c in 0..CODE_BYTES / 4 {
                let at = b * GROUP_BLOCK_BYTES + c * GROUP * 4 + lane * 4;
                for (t, &byte) in codes[at..at + 4].iter().enumerate() {
                    dot += (i32::from(byte & 0x0f) - 8) * i32::from(xb[4 * c + t]);
                    dot += (i32::from(byte >> 4) - 8) * i32::from(xb[4 * c + t + CODE_BYTES]);
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

    use super::{Activation, BLOCK, CODE_BYTES, GROUP, GROUP_BLOCK_BYTES};
    use crate::shared::prefetch_ahead;

    /// A group kernel, `$name`, and its block step, `$block`: per 4-byte
    /// chunk, `$step(sum, low nibbles, their activations, high nibbles,
    /// theirs)` adds the chunk's products to `sum`, which `$widen` turns
    /// into the 8 rows' 32-bit dot products at the end of the block.
    macro_rules! dot_group_with {
        (
            $(#[$doc:meta])* $name:ident, $block:ident, $features:tt,
            |$sum:ident, $lo:ident, $xl:ident, $hi:ident, $xh:ident| $step:expr,
            |$acc:ident| $widen:expr
        ) => {
            /// One block of 8 rows: the integer dot products (offset removed)
            /// as F32, and the 8 combined scales.
            ///
            /// # Safety
            /// The named instruction sets; block `b` exists in every slice.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn $block(
                codes: &[u8],
                scales: &[f16],
                x: &Activation,
                b: usize,
            ) -> (__m256, __m256) {
                let mask = _mm256_set1_epi8(0x0f);
                let cb = codes.as_ptr().add(b * GROUP_BLOCK_BYTES);
                let xb = x.codes.as_ptr().add(b * BLOCK);
                prefetch_ahead(cb);
                prefetch_ahead(cb.add(64));
                let mut sum = _mm256_setzero_si256();
                for c in 0..CODE_BYTES / 4 {
                    let v = _mm256_loadu_si256(cb.add(c * GROUP * 4) as *const __m256i);
                    let lo = _mm256_and_si256(v, mask);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
                    let xl = _mm256_set1_epi32((xb.add(4 * c) as *const i32).read_unaligned());
                    let xh = _mm256_set1_epi32(
                        (xb.add(4 * c + CODE_BYTES) as *const i32).read_unaligned(),
                    );
                    sum = {
                        let ($sum, $lo, $xl, $hi, $xh) = (sum, lo, xl, hi, xh);
                        $step
                    };
                }
                let dot = _mm256_add_epi32(
                    {
                        let $acc = sum;
                        $widen
                    },
                    _mm256_set1_epi32(*x.offsets.get_unchecked(b)),
                );
                let d = _mm256_cvtph_ps(_mm_loadu_si128(
                    scales.as_ptr().add(b * GROUP) as *const __m128i
                ));
                (
                    _mm256_cvtepi32_ps(dot),
                    _mm256_mul_ps(d, _mm256_set1_ps(*x.scales.get_unchecked(b))),
                )
            }

            $(#[$doc])*
            ///
            /// # Safety
            /// The named instruction sets must be available; `codes` and
            /// `scales` hold the group's blocks for every block of `x`.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(
                codes: &[u8],
                scales: &[f16],
                x: &Activation,
                out: &mut [f32; GROUP],
            ) {
                let nb = x.scales.len();
                assert!(
                    codes.len() >= nb * GROUP_BLOCK_BYTES
                        && scales.len() >= nb * GROUP
                        && x.codes.len() >= nb * BLOCK
                        && x.offsets.len() >= nb
                );
                // Two accumulators hide the FMA latency.
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut b = 0;
                while b + 2 <= nb {
                    let (v0, d0) = $block(codes, scales, x, b);
                    let (v1, d1) = $block(codes, scales, x, b + 1);
                    acc0 = _mm256_fmadd_ps(v0, d0, acc0);
                    acc1 = _mm256_fmadd_ps(v1, d1, acc1);
                    b += 2;
                }
                if b < nb {
                    let (v0, d0) = $block(codes, scales, x, b);
                    acc0 = _mm256_fmadd_ps(v0, d0, acc0);
                }
                _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(acc0, acc1));
            }
        };
    }

    dot_group_with!(
        /// AVX2: `maddubs` pairs summed in 16 bits over the block (eight of
        /// |15 · 127 · 2| ≤ 3810 each: at most 30480, no overflow), widened once.
        dot_group, block, "avx2,fma,f16c",
        |sum, lo, xl, hi, xh| {
            let sum = _mm256_add_epi16(sum, _mm256_maddubs_epi16(lo, xl));
            _mm256_add_epi16(sum, _mm256_maddubs_epi16(hi, xh))
        },
        |sum| _mm256_madd_epi16(sum, _mm256_set1_epi16(1))
    );

    dot_group_with!(
        /// AVX-VNNI: `vpdpbusd` straight into 32-bit sums.
        dot_group_vnni, block_vnni, "avx2,fma,f16c,avxvnni",
        |sum, lo, xl, hi, xh| {
            _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(sum, lo, xl), hi, xh)
        },
        |sum| sum
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{Activation, BLOCK, GROUP, GROUP_BLOCK_BYTES};
    use crate::interleaved::finish_block_avx512;
    use crate::shared::prefetch_ahead;

    /// Per block of 8 rows: two 64-byte loads (two chunks of the 8 rows
    /// each), low and high nibbles (unsigned codes 0..=15) `vpdpbusd`-ed
    /// against the spread activation of elements 0..16 and 16..32, the two
    /// halves added and the offset `−8 · Σx` applied; then scaled and
    /// accumulated as in the AVX2 kernel.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_group(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
        let nb = x.scales.len();
        assert!(
            codes.len() >= nb * GROUP_BLOCK_BYTES
                && scales.len() >= nb * GROUP
                && x.offsets.len() >= nb
                && x.expanded.len() >= nb * 2 * BLOCK,
            "activation not prepared for the AVX-512 VNNI kernel"
        );
        let mask = _mm512_set1_epi8(0x0f);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let cb = codes.as_ptr().add(b * GROUP_BLOCK_BYTES);
            // Spread activation: 16 dwords per 8 elements.
            let xb = x.expanded.as_ptr().add(b * 2 * BLOCK);
            let mut dot = _mm512_setzero_si512();
            for j in 0..2 {
                prefetch_ahead(cb.add(64 * j));
                let w = _mm512_loadu_si512(cb.add(64 * j) as *const _);
                let lo = _mm512_and_si512(w, mask);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(w), mask);
                let x_lo = _mm512_loadu_si512(xb.add(16 * j) as *const _);
                let x_hi = _mm512_loadu_si512(xb.add(16 * (2 + j)) as *const _);
                dot = _mm512_dpbusd_epi32(dot, lo, x_lo);
                dot = _mm512_dpbusd_epi32(dot, hi, x_hi);
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

    use super::{Activation, BLOCK, CODE_BYTES, GROUP, GROUP_BLOCK_BYTES};
    use crate::shared::widen_f16x4;

    /// One block of 8 rows: the integer dot products (offset removed) as
    /// F32 (rows 0-3, 4-7), and the 8 combined scales. Per chunk, two
    /// 16-byte loads (rows 0-3, rows 4-7) split into low and high nibbles
    /// (unsigned codes 0..=15, non-negative as signed bytes), multiplied
    /// with the broadcast activation bytes by `vmlal_s8` into 16-bit lanes
    /// over the whole block (eight products of at most 15 · 127 per lane:
    /// at most 15240, no overflow), widened once at the end.
    ///
    /// # Safety
    /// Block `b` must exist in `codes`, `scales`, `x.codes`, `x.scales` and
    /// `x.offsets`.
    #[inline]
    unsafe fn block(
        codes: &[u8],
        scales: &[f16],
        x: &Activation,
        b: usize,
    ) -> ([float32x4_t; 2], [float32x4_t; 2]) {
        let mask = vdupq_n_u8(0x0f);
        let cb = codes.as_ptr().add(b * GROUP_BLOCK_BYTES);
        let xb = x.codes.as_ptr().add(b * BLOCK);
        let broadcast = |at: usize| {
            vreinterpretq_s8_s32(vdupq_n_s32((xb.add(at) as *const i32).read_unaligned()))
        };
        // Lanes: rows 0 0 0 0 1 1 1 1, 2 2 2 2 3 3 3 3, 4 …, 6 ….
        let mut sums = [vdupq_n_s16(0); 4];
        for c in 0..CODE_BYTES / 4 {
            let (xl, xh) = (broadcast(4 * c), broadcast(4 * c + CODE_BYTES));
            for half in 0..2 {
                let v = vld1q_u8(cb.add(c * GROUP * 4 + 16 * half));
                let lo = vreinterpretq_s8_u8(vandq_u8(v, mask));
                let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                let s = sums[2 * half];
                let s = vmlal_s8(s, vget_low_s8(lo), vget_low_s8(xl));
                sums[2 * half] = vmlal_s8(s, vget_low_s8(hi), vget_low_s8(xh));
                let s = vmlal_high_s8(sums[2 * half + 1], lo, xl);
                sums[2 * half + 1] = vmlal_high_s8(s, hi, xh);
            }
        }
        let offset = vdupq_n_s32(*x.offsets.get_unchecked(b));
        // Each row's 4 lanes summed (pairwise twice), then the offset.
        let rows = |a: int16x8_t, c: int16x8_t| {
            let dot = vpaddq_s32(vpaddlq_s16(a), vpaddlq_s16(c));
            vcvtq_f32_s32(vaddq_s32(dot, offset))
        };
        let d = scales.as_ptr().add(b * GROUP);
        let xd = *x.scales.get_unchecked(b);
        (
            [rows(sums[0], sums[1]), rows(sums[2], sums[3])],
            [
                vmulq_n_f32(widen_f16x4(d), xd),
                vmulq_n_f32(widen_f16x4(d.add(4)), xd),
            ],
        )
    }

    /// NEON: blocks as [`block`] computes them, scaled and accumulated as in
    /// the AVX2 kernel.
    ///
    /// Panics unless `codes` and `scales` hold the group's blocks for every
    /// block of `x`.
    pub fn dot_group(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
        let nb = x.scales.len();
        assert!(
            codes.len() >= nb * GROUP_BLOCK_BYTES
                && scales.len() >= nb * GROUP
                && x.codes.len() >= nb * BLOCK
                && x.offsets.len() >= nb
        );
        // SAFETY: NEON is part of every aarch64 CPU; the assert makes every
        // block `b < nb` exist.
        unsafe {
            // Two accumulators (of two registers each) hide the FMA latency.
            let mut acc0 = [vdupq_n_f32(0.0); 2];
            let mut acc1 = [vdupq_n_f32(0.0); 2];
            let mut b = 0;
            while b + 2 <= nb {
                let (v0, d0) = block(codes, scales, x, b);
                let (v1, d1) = block(codes, scales, x, b + 1);
                for h in 0..2 {
                    acc0[h] = vfmaq_f32(acc0[h], v0[h], d0[h]);
                    acc1[h] = vfmaq_f32(acc1[h], v1[h], d1[h]);
                }
                b += 2;
            }
            if b < nb {
                let (v0, d0) = block(codes, scales, x, b);
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
    use crate::cpu::CpuFeatures;
    use crate::interleaved::GroupDot;
    use crate::q8::quantize_activations;
    use crate::shared::test_data as data;

    /// Row-major GGML block dot product, the format's definition.
    fn dot_row_major(wc: &[u8], ws: &[f16], xq: &[i8], xd: &[f32]) -> f32 {
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

    #[test]
    fn quantize_round_trip_error_is_within_half_a_step() {
        let (n, k) = (5, 96);
        let v = data(n * k, 9);
        let q = Q4Matrix::quantize(&v, n, k).unwrap();
        let back = q.dequantize();
        let scales = q.block_scales();
        for (blk, (a, b)) in v.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let step = scales[blk].to_f32().abs();
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
        // Five rows occupy one interleaved group of eight.
        assert_eq!(q.size_bytes(), GROUP * k / BLOCK * 18);
    }

    #[test]
    fn zero_block_quantises_to_zero() {
        let q = Q4Matrix::quantize(&[0.0; 32], 1, 32).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn row_major_blocks_round_trip_through_the_interleaved_layout() {
        let (n, k) = (11, 64);
        let nb = k / BLOCK;
        let scales: Vec<f16> = (0..n * nb).map(|i| f16::from_f32(i as f32)).collect();
        let codes: Vec<u8> = (0..n * nb * CODE_BYTES)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let q = Q4Matrix::from_blocks(n, k, &scales, &codes).unwrap();
        assert_eq!(q.block_scales(), scales);
        assert_eq!(q.block_codes(), codes);
        // Row 9, block 1, byte 5: low nibble is element 5, high element 21.
        let mut row = vec![0f32; k];
        q.dequantize_row(9, &mut row);
        let byte = codes[(9 * nb + 1) * CODE_BYTES + 5];
        let d = scales[9 * nb + 1].to_f32();
        assert_eq!(row[BLOCK + 5], d * (i32::from(byte & 15) - 8) as f32);
        assert_eq!(row[BLOCK + 21], d * (i32::from(byte >> 4) - 8) as f32);
        assert!(Q4Matrix::from_blocks(n, k, &scales[1..], &codes).is_none());
        assert!(Q4Matrix::from_blocks(n, k + 32, &scales, &codes).is_none());
    }

    #[test]
    fn gemv_matches_row_major_block_reference_and_float_product() {
        // Row counts off the group of 8 and odd block counts (the kernel's
        // single-block tail).
        for &(m, n, k) in &[
            (1, 1, 32),
            (1, 70, 96),
            (1, 64, 160),
            (2, 33, 64),
            (3, 65, 160),
            (4, 129, 3072),
        ] {
            let v = data(n * k, 1);
            let x = data(m * k, 2);
            let w = Q4Matrix::quantize(&v, n, k).unwrap();
            let (wc, ws) = (w.block_codes(), w.block_scales());
            let mut y = vec![0f32; m * n];
            gemv_q4(&w, &x, &mut y, m);
            let nb = k / BLOCK;
            let (xq, xd) = quantize_activations(&x, k);
            for i in 0..m {
                for j in 0..n {
                    let r = dot_row_major(
                        &wc[j * nb * CODE_BYTES..(j + 1) * nb * CODE_BYTES],
                        &ws[j * nb..(j + 1) * nb],
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

    #[test]
    fn vector_and_scalar_group_kernels_agree() {
        let (n, k) = (16, 224);
        let nb = k / BLOCK;
        let w = Q4Matrix::quantize(&data(n * k, 3), n, k).unwrap();
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
            assert_eq!(x.scales.len(), nb);
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
        // Codes 0 and 15 against activation codes of ±127: the largest sums,
        // where a narrow intermediate would overflow.
        let (n, k) = (GROUP, 96);
        let nb = k / BLOCK;
        let pattern = [0xffu8, 0x00, 0xf0, 0x0f, 0x88, 0x7f, 0xf7, 0xff];
        let codes: Vec<u8> = (0..n * nb * CODE_BYTES)
            .map(|i| pattern[i / (nb * CODE_BYTES)])
            .collect();
        let w = Q4Matrix::from_blocks(n, k, &vec![f16::ONE; n * nb], &codes).unwrap();
        let x: Vec<f32> = (0..k)
            .map(|t| {
                if (t / BLOCK).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
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
                // Per block: 16 low and 16 high nibbles, less the offset 8.
                let byte = i32::from(pattern[r]);
                let per_block = 16 * 127 * ((byte & 15) + (byte >> 4) - 16);
                // Blocks alternate in sign: one more positive than negative.
                let want = per_block as f32 * row.scales[0];
                let what = features.describe();
                assert!(
                    (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{what}: {g} vs {want}"
                );
            }
        }
    }
}
