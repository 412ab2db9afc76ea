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
//!
//! In memory the rows are interleaved in groups of 8 ([`crate::interleaved`],
//! a super-block being one "block" of 12 + 128 bytes and two scales), so the
//! 8 rows' scale words unpack together in vector registers and one broadcast
//! of four activation codes serves 8 rows, as for Q4_0.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::gemv::MAX_ROWS;
use crate::interleaved::{gemv_groups, group_dot_for_activation, Interleaved, GROUP};
use crate::q8::BLOCK;
use crate::scratch::{reset, with_reused};

/// Values per super-block.
pub const SUPER_BLOCK: usize = 256;
/// Bytes of packed (scale, min) pairs per super-block.
const SCALE_BYTES: usize = 12;
/// Bytes of 4-bit codes per super-block.
const CODE_BYTES: usize = SUPER_BLOCK / 2;
/// Sub-blocks per super-block.
const SUBS: usize = SUPER_BLOCK / BLOCK;
/// Bytes per super-block besides `d` and `dmin`: the packed sub-block
/// scales, then the codes.
const BLOCK_BYTES: usize = SCALE_BYTES + CODE_BYTES;

/// A row-major matrix [N, K] in Q4_K super-blocks (K a multiple of 256),
/// stored row-interleaved: per super-block, scales `d` and `dmin` (F16) and
/// 140 bytes (12 of packed 6-bit sub-block scales and minimums, 128 of codes).
#[derive(Debug, Clone)]
pub struct Q4KMatrix {
    /// Rows N.
    pub rows: usize,
    /// Columns K.
    pub cols: usize,
    blocks: Interleaved,
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
        let mut bytes = vec![0u8; BLOCK_BYTES * supers];
        scales
            .par_chunks_mut(2)
            .zip(bytes.par_chunks_mut(BLOCK_BYTES))
            .zip(values.par_chunks(SUPER_BLOCK))
            .for_each(|((s, b), x)| {
                let (packed, codes) = b.split_at_mut(SCALE_BYTES);
                quantize_super_block(x, s, packed, codes)
            });
        Self::from_blocks(rows, cols, &scales, &bytes)
    }

    /// Builds the matrix from GGML row-major super-blocks: `d`, `dmin` per
    /// super-block in `scales`, its 12 scale bytes then 128 code bytes in
    /// `bytes`; `None` when the sizes do not fit.
    pub fn from_blocks(rows: usize, cols: usize, scales: &[f16], bytes: &[u8]) -> Option<Self> {
        if !cols.is_multiple_of(SUPER_BLOCK) {
            return None;
        }
        let supers = cols / SUPER_BLOCK;
        let blocks = Interleaved::from_row_major(rows, supers, (2, BLOCK_BYTES), scales, bytes)?;
        Some(Self { rows, cols, blocks })
    }

    /// `d`, `dmin` of every super-block, row-major.
    pub fn block_scales(&self) -> Vec<f16> {
        self.blocks.row_major_scales()
    }

    /// The 140 bytes of every super-block, row-major (the file layout).
    pub fn block_codes(&self) -> Vec<u8> {
        self.blocks.row_major_codes()
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.blocks.size_bytes()
    }

    /// Row `r`'s super-block `s`: `d`, `dmin` and its 140 bytes.
    fn super_block(&self, r: usize, s: usize) -> (f32, f32, [u8; BLOCK_BYTES]) {
        let mut bytes = [0u8; BLOCK_BYTES];
        for (c, four) in bytes.chunks_exact_mut(4).enumerate() {
            four.copy_from_slice(self.blocks.chunk(r, s, c));
        }
        let (d, dmin) = (self.blocks.scale(r, s, 0), self.blocks.scale(r, s, 1));
        (d.to_f32(), dmin.to_f32(), bytes)
    }

    /// `W[r, k0 .. k0 + out.len()]` back to F32 (`k0` and the length whole
    /// super-blocks).
    pub fn dequantize_range(&self, r: usize, k0: usize, out: &mut [f32]) {
        let first = k0 / SUPER_BLOCK;
        for (i, s) in (first..first + out.len() / SUPER_BLOCK).enumerate() {
            let o = &mut out[i * SUPER_BLOCK..][..SUPER_BLOCK];
            let (d, dmin, bytes) = self.super_block(r, s);
            let (packed, codes) = bytes.split_at(SCALE_BYTES);
            for j in 0..SUBS {
                let (sc, m) = scale_min(j, packed);
                let (dd, dm) = (d * f32::from(sc), dmin * f32::from(m));
                let half = &codes[(j / 2) * BLOCK..][..BLOCK];
                for l in 0..BLOCK {
                    let q = if j % 2 == 0 {
                        half[l] & 0x0f
                    } else {
                        half[l] >> 4
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
fn quantize_activations_k(x: &[f32], buf: &mut Buffers) {
    reset(&mut buf.codes, x.len());
    buf.scales.clear();
    buf.sums.clear();
    for (q, v) in buf.codes.chunks_mut(SUPER_BLOCK).zip(x.chunks(SUPER_BLOCK)) {
        let amax = v.iter().fold(0f32, |m, a| m.max(a.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (qi, &a) in q.iter_mut().zip(v) {
            *qi = (a * inv).round().clamp(-127.0, 127.0) as i8;
        }
        buf.scales.push(d);
        buf.sums.extend(
            q.chunks(BLOCK)
                .map(|b| b.iter().map(|&c| i32::from(c)).sum::<i32>()),
        );
    }
    pair_sums(&buf.sums, &mut buf.sum_pairs);
}

/// A GEMV's quantised activation rows ([`quantize_activations_k`]), kept per
/// thread between calls.
#[derive(Default)]
struct Buffers {
    codes: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    sum_pairs: Vec<i32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
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
    let supers = k / SUPER_BLOCK;
    with_reused(&BUFFERS, |buf| {
        quantize_activations_k(x, buf);
        let row = |i: usize| Activation {
            q: &buf.codes[i * k..(i + 1) * k],
            d: &buf.scales[i * supers..(i + 1) * supers],
            sums: &buf.sums[i * supers * SUBS..(i + 1) * supers * SUBS],
            sum_pairs: &buf.sum_pairs[i * supers * 4..(i + 1) * supers * 4],
        };
        let rows: [Activation; MAX_ROWS] = std::array::from_fn(|i| row(i.min(m - 1)));
        gemv_groups(&w.blocks, &rows[..m], y);
    });
}

/// The sub-block sums as 16-bit pairs (|sum| ≤ 32 · 127), four per
/// super-block, ordered for the minimums' `madd`s: (S0, S2), (S1, S3),
/// (S4, S6), (S5, S7); written to `out`.
fn pair_sums(sums: &[i32], out: &mut Vec<i32>) {
    let pair =
        |a: i32, b: i32| (u32::from(a as i16 as u16) | (u32::from(b as i16 as u16) << 16)) as i32;
    out.clear();
    out.extend(sums.chunks_exact(SUBS).flat_map(|s| {
        [
            pair(s[0], s[2]),
            pair(s[1], s[3]),
            pair(s[4], s[6]),
            pair(s[5], s[7]),
        ]
    }));
}

/// One activation row quantised by [`quantize_activations_k`].
struct Activation<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sums: &'a [i32],
    // Read by the AVX2 kernel only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    sum_pairs: &'a [i32],
}

group_dot_for_activation!();

/// The reference group kernel: per super-block
/// `d·xd·Σ_j sc_j·Σ q·xq − dmin·xd·Σ_j m_j·Σ xq`, lane by lane.
fn dot_group_scalar(codes: &[u8], scales: &[f16], x: &Activation, out: &mut [f32; GROUP]) {
    for (lane, o) in out.iter_mut().enumerate() {
        let mut total = 0f32;
        for s in 0..x.d.len() {
            let mut bytes = [0u8; BLOCK_BYTES];
            for (c, four) in bytes.chunks_exact_mut(4).enumerate() {
                let at = (s * BLOCK_BYTES + c * 4) * GROUP + lane * 4;
                four.copy_from_slice(&codes[at..at + 4]);
            }
            let d = scales[2 * s * GROUP + lane].to_f32();
            let dmin = scales[(2 * s + 1) * GROUP + lane].to_f32();
            let unpacked = unpack_scales(&bytes[..SCALE_BYTES]);
            let mut sumi = 0i32;
            for (j, &sc) in unpacked[..SUBS].iter().enumerate() {
                let half = &bytes[SCALE_BYTES + (j / 2) * BLOCK..][..BLOCK];
                let dot: i32 = (0..BLOCK)
                    .map(|l| {
                        let q = if j % 2 == 0 {
                            half[l] & 0x0f
                        } else {
                            half[l] >> 4
                        };
                        i32::from(q) * i32::from(x.q[s * SUPER_BLOCK + j * BLOCK + l])
                    })
                    .sum();
                sumi += i32::from(sc) * dot;
            }
            let mins: i32 = (0..SUBS)
                .map(|j| i32::from(unpacked[SUBS + j]) * x.sums[s * SUBS + j])
                .sum();
            total += d * x.d[s] * sumi as f32 - dmin * x.d[s] * mins as f32;
        }
        *o = total;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{Activation, BLOCK, BLOCK_BYTES, GROUP, SCALE_BYTES, SUPER_BLOCK};
    use crate::shared::prefetch_ahead;

    /// A `pshufb` control that copies byte `j` of each 32-bit lane into both
    /// of the lane's 16-bit halves, zero-extended.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pick_byte(j: i8) -> __m256i {
        let mut control = [0i8; 32];
        for (lane, c) in control.chunks_exact_mut(4).enumerate() {
            let at = (lane % 4) as i8 * 4 + j;
            c.copy_from_slice(&[at, -128, at, -128]);
        }
        _mm256_loadu_si256(control.as_ptr() as *const __m256i)
    }

    /// Per super-block and 8 rows: the scale words unpacked in vector
    /// registers, integer dot products per sub-block summed in 16 bits, the
    /// 6-bit scales applied in `madd`s, the minimums' term from the
    /// activation's sub-block sums, then one FMA per term.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_group(
        codes: &[u8],
        scales: &[f16],
        x: &Activation,
        out: &mut [f32; GROUP],
    ) {
        let supers = x.d.len();
        assert!(
            codes.len() >= supers * BLOCK_BYTES * GROUP
                && scales.len() >= supers * 2 * GROUP
                && x.q.len() >= supers * SUPER_BLOCK
                && x.sum_pairs.len() >= supers * 4
        );
        let nibble = _mm256_set1_epi8(0x0f);
        let (low6, low4, top2) = (
            _mm256_set1_epi32(0x3f3f_3f3f),
            _mm256_set1_epi32(0x0f0f_0f0f),
            _mm256_set1_epi32(0x0303_0303),
        );
        let even_bytes = _mm256_set1_epi16(0x00ff);
        let picks = [pick_byte(0), pick_byte(1), pick_byte(2), pick_byte(3)];
        let mut acc = _mm256_setzero_ps();
        for s in 0..supers {
            let base = codes.as_ptr().add(s * BLOCK_BYTES * GROUP);
            // Word w of the 8 rows' packed scales, one row per 32-bit lane.
            let word = |w: usize| _mm256_loadu_si256(base.add(w * 4 * GROUP) as *const __m256i);
            let (w0, w1, w2) = (word(0), word(1), word(2));
            let top = |w: __m256i| {
                _mm256_slli_epi32::<4>(_mm256_and_si256(_mm256_srli_epi32::<6>(w), top2))
            };
            let sc_lo = _mm256_and_si256(w0, low6);
            let sc_hi = _mm256_or_si256(_mm256_and_si256(w2, low4), top(w0));
            let m_lo = _mm256_and_si256(w1, low6);
            let m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32::<4>(w2), low4), top(w1));
            let sub_scale = |j: usize| {
                if j < 4 {
                    _mm256_shuffle_epi8(sc_lo, picks[j])
                } else {
                    _mm256_shuffle_epi8(sc_hi, picks[j - 4])
                }
            };

            let cb = base.add(SCALE_BYTES * GROUP);
            let xs = x.q.as_ptr().add(s * SUPER_BLOCK);
            let mut sumi = _mm256_setzero_si256();
            for pair in 0..4 {
                // Sub-block 2·pair in the low nibbles, 2·pair + 1 in the high;
                // eight `maddubs` of ≤ 2 · 15 · 127 stay within 16 bits.
                let (mut lo_sum, mut hi_sum) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for c in 0..8 {
                    if c % 2 == 0 {
                        prefetch_ahead(cb.add((pair * 8 + c) * 4 * GROUP));
                    }
                    let v =
                        _mm256_loadu_si256(cb.add((pair * 8 + c) * 4 * GROUP) as *const __m256i);
                    let lo = _mm256_and_si256(v, nibble);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
                    let at = |j: usize| (xs.add(j * BLOCK + 4 * c) as *const i32).read_unaligned();
                    let xl = _mm256_set1_epi32(at(2 * pair));
                    let xh = _mm256_set1_epi32(at(2 * pair + 1));
                    lo_sum = _mm256_add_epi16(lo_sum, _mm256_maddubs_epi16(lo, xl));
                    hi_sum = _mm256_add_epi16(hi_sum, _mm256_maddubs_epi16(hi, xh));
                }
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_add_epi32(
                        _mm256_madd_epi16(lo_sum, sub_scale(2 * pair)),
                        _mm256_madd_epi16(hi_sum, sub_scale(2 * pair + 1)),
                    ),
                );
            }

            // Σ_j m_j · S_j: the minimums as 16-bit (even, odd) pairs against
            // the activation's pairs (S0, S2), (S1, S3), (S4, S6), (S5, S7).
            let sp = |t: usize| _mm256_set1_epi32(*x.sum_pairs.get_unchecked(s * 4 + t));
            let mins = _mm256_add_epi32(
                _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_and_si256(m_lo, even_bytes), sp(0)),
                    _mm256_madd_epi16(_mm256_srli_epi16::<8>(m_lo), sp(1)),
                ),
                _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_and_si256(m_hi, even_bytes), sp(2)),
                    _mm256_madd_epi16(_mm256_srli_epi16::<8>(m_hi), sp(3)),
                ),
            );

            let xd = _mm256_set1_ps(*x.d.get_unchecked(s));
            let half = |t: usize| {
                _mm256_cvtph_ps(_mm_loadu_si128(
                    scales.as_ptr().add((2 * s + t) * GROUP) as *const __m128i
                ))
            };
            acc = _mm256_fmadd_ps(_mm256_mul_ps(half(0), xd), _mm256_cvtepi32_ps(sumi), acc);
            acc = _mm256_fnmadd_ps(_mm256_mul_ps(half(1), xd), _mm256_cvtepi32_ps(mins), acc);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuFeatures;
    use crate::interleaved::GroupDot;
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
        // Four rows occupy one interleaved group of eight.
        assert_eq!(q.size_bytes(), GROUP * k / SUPER_BLOCK * 144);
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
            // The scalar and vector group kernels agree.
            let mut buf = Buffers::default();
            quantize_activations_k(&x[..k], &mut buf);
            let act = Activation {
                q: &buf.codes,
                d: &buf.scales,
                sums: &buf.sums,
                sum_pairs: &buf.sum_pairs,
            };
            for g in 0..n.div_ceil(GROUP) {
                let (codes, scales) = w.blocks.group(g);
                let (mut a, mut b) = ([0f32; GROUP], [0f32; GROUP]);
                act.dot(CpuFeatures::detect(), codes, scales, &mut a);
                dot_group_scalar(codes, scales, &act, &mut b);
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 1e-3 * q.abs().max(1.0), "{p} vs {q}");
                }
            }
        }
    }
}
