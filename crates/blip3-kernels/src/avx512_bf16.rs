//! `C = A·Wᵀ` for BF16 weights with AVX-512 BF16 dot products
//! (`vdpbf16ps`): the prefill and ViT product on CPUs that have AVX512_BF16
//! but no AMX tiles (AMD Zen 4 and 5, Intel Cooper Lake). One instruction
//! does 32 BF16 multiply-adds into 16 F32 sums, twice the work of an F32
//! FMA, and the weight stays 2 bytes per element all the way into the
//! register.
//!
//! The activations are rounded to BF16 (round to nearest even, as PyTorch's
//! BF16 matmuls and the [`crate::amx`] path do) and packed once per row
//! range into panels of [`MR`] rows, each depth pair `2p, 2p + 1` of a row
//! one 32-bit word. The weight is packed per block of [`NC`] rows ×
//! [`KC_PAIRS`] pairs into panels of [`NR`] rows in the same pair layout, so
//! one 64-byte load gives 16 output columns their pair. The micro-kernel
//! keeps an `MR × NR` tile of C in 24 registers: per depth pair it loads two
//! weight registers and broadcasts each activation row's pair against them.
//! Twelve rows rather than eight: `vdpbf16ps`'s latency needs about 24
//! independent sums to reach its throughput (`crate::peak` reaches ~90 % of
//! it with 12 chains and its best with 24 on a Zen 4-class EPYC), and each
//! weight load then feeds 12 dot products instead of 8.
//! An odd depth is padded with a zero element.
//!
//! [`usable`] runs the kernel once on a small product against a plain
//! reference and reports the path usable only if it matches, so a machine
//! where it misbehaves falls back to the F32 GEMM.

use half::bf16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemm::{
    for_each_rectangle, late_prefetch_part, part_of, prefetch_c_tile, write_tile, Bf16Product,
    Epilogue, Output, Rectangle, TileMultiples, TilePlace,
};
use crate::shared::prefetch_l2;

/// Activation rows per micro-tile.
const MR: usize = 12;
/// Weight rows (output columns) per micro-tile: two 16-lane registers.
const NR: usize = 32;
/// Depth pairs per packed block: one activation panel (6 KiB) and one weight
/// panel (16 KiB) stay in L1 together while a micro-tile sweeps them; 256
/// measured 5–10 % slower at the ViT and prefill shapes on Zen 5.
const KC_PAIRS: usize = 128;
/// Activation rows per row range, at most. Each range packs the weight
/// again; the packed activations are read one 6 KiB panel at a time, so a
/// tall range costs only memory (4 bytes per row and depth pair).
const ROWS_PER_RANGE: usize = 4096;
/// Weight rows per packed block (`NC × KC_PAIRS` pairs, 128 KiB, stay in L2).
const NC: usize = 256;

/// Whether this CPU has AVX-512 F and BF16 and the kernel passed its check
/// (asked once; the answer is cached).
pub fn usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        cpu_has_avx512_bf16() && crate::shared::bf16_gemm_matches_reference(gemm_bf16)
    })
}

fn cpu_has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c[i·n + j] = Σ_t a[i·k + t] · w[j·stride + t]` with `vdpbf16ps`, the
/// activations rounded to BF16; rectangles of `c` spread over the thread
/// pool when `parallel`.
///
/// Panics if the sizes do not fit; call only when [`usable`] said yes.
pub fn gemm_bf16(product: Bf16Product, c: &mut [f32], parallel: bool) {
    gemm_on(&Avx512PairDot, product, c, parallel, Epilogue::default());
}

/// [`gemm_bf16`], then `epilogue` (bias, activation) on each output tile
/// right after its last store, while it is in L1 (a separate pass over a
/// ViT MLP output would read and write 75 MB more).
pub fn gemm_bf16_with(product: Bf16Product, c: &mut [f32], parallel: bool, epilogue: Epilogue) {
    gemm_on(&Avx512PairDot, product, c, parallel, epilogue);
}

/// [`gemm_bf16_with`] with the micro-kernel `kernel`.
fn gemm_on<K: PairDot>(
    kernel: &K,
    product: Bf16Product,
    c: &mut [f32],
    parallel: bool,
    epilogue: Epilogue,
) {
    let Bf16Product {
        a,
        m,
        w,
        n,
        k,
        stride,
    } = product;
    product.assert_sizes(c.len());
    if m == 0 || n == 0 {
        return;
    }
    let features = epilogue.features();
    if k == 0 {
        epilogue.fill_depth_zero(features, c, n);
        return;
    }
    let weights = Weights { w, k, stride };
    let out = Output(c.as_mut_ptr());
    let packed_rows =
        |i0: usize, rows: usize| pack_activations(&a[i0 * k..(i0 + rows) * k], rows, k, parallel);
    let tiles = TileMultiples {
        rows: MR,
        cols: NR,
        rows_per_range: ROWS_PER_RANGE,
    };
    for_each_rectangle(m, n, tiles, parallel, packed_rows, |packed, rect| {
        let task = Task {
            packed,
            rect,
            weights: &weights,
            epilogue: &epilogue,
            features,
        };
        // SAFETY: `out` points to `c`, [m, n]; rectangles tile it without
        // overlap and each task writes only its own. The kernel's
        // instructions exist (`usable`) or are emulated.
        unsafe { task.run(kernel, &out, n) };
    });
}

/// The BF16 weight W [_, k], rows `stride` elements apart.
struct Weights<'a> {
    w: &'a [bf16],
    k: usize,
    stride: usize,
}

/// Two BF16 values as one 32-bit word, the first in the low half (the
/// element order `vdpbf16ps` pairs).
fn pair(lo: bf16, hi: bf16) -> u32 {
    u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16)
}

/// Rounds `a` [rows, k] to BF16 and packs it: depth block `b` (pairs
/// `b·KC_PAIRS ..`) holds `ceil(rows/MR)` panels of `kp × MR` words
/// (pair `p` of row `r` at `p·MR + r`); rows past `rows` and the element
/// past an odd `k` are zero. Panels are packed on the thread pool when
/// `parallel`: this runs once per row range while the other threads would
/// otherwise wait for it (a serial pack cost up to 40 % of a ViT product).
fn pack_activations(a: &[f32], rows: usize, k: usize, parallel: bool) -> Vec<u32> {
    let panels = rows.div_ceil(MR);
    let pairs = k.div_ceil(2);
    let mut out = crate::scratch::zeroed(panels * MR * pairs);
    for p0 in (0..pairs).step_by(KC_PAIRS) {
        let kp = KC_PAIRS.min(pairs - p0);
        let block = &mut out[p0 * panels * MR..][..panels * kp * MR];
        let instruction = cpu_has_avx512_bf16();
        let pack = |(ip, panel): (usize, &mut [u32])| {
            let live = MR.min(rows - ip * MR);
            let t0 = 2 * p0;
            let t1 = (t0 + 2 * kp).min(k);
            // Whole groups of 16 pairs (32 elements) in registers where the
            // CPU converts: one scalar store per word, 48 bytes from the
            // last, made this packing as costly as the rounding.
            let vector_pairs = if instruction { (t1 - t0) / 32 * 16 } else { 0 };
            #[cfg(target_arch = "x86_64")]
            if vector_pairs > 0 {
                let starts: [*const f32; MR] = std::array::from_fn(|r| {
                    let row = ip * MR + r.min(live - 1);
                    a[row * k + t0..][..2 * vector_pairs].as_ptr()
                });
                assert!(panel.len() >= vector_pairs * MR, "panel");
                for g in (0..vector_pairs).step_by(16) {
                    // SAFETY: `instruction` means AVX-512 F and BF16 are
                    // present; each row has 32 elements from pair `g` (its
                    // slice above holds `2·vector_pairs`), and the panel 16
                    // words per row from pair `g` (asserted).
                    unsafe {
                        activation_x86::pack_16_pairs(
                            &starts,
                            live,
                            2 * g,
                            panel.as_mut_ptr().add(g * MR),
                        )
                    };
                }
            }
            let mut rounded = [bf16::ZERO; 2 * KC_PAIRS];
            let t_rest = t0 + 2 * vector_pairs;
            for r in 0..live {
                let row = &a[(ip * MR + r) * k..][..k];
                let depth = &mut rounded[..2 * (kp - vector_pairs)];
                crate::widen::round_to_bf16_on(
                    instruction,
                    &row[t_rest..t1],
                    &mut depth[..t1 - t_rest],
                );
                depth[t1 - t_rest..].fill(bf16::ZERO);
                for (p, two) in depth.chunks_exact(2).enumerate() {
                    panel[(vector_pairs + p) * MR + r] = pair(two[0], two[1]);
                }
            }
        };
        if parallel {
            block.par_chunks_mut(kp * MR).enumerate().for_each(pack);
        } else {
            block.chunks_mut(kp * MR).enumerate().for_each(pack);
        }
    }
    out
}

/// Packs weight rows `j0 .. j0 + nc`, pairs `p0 .. p0 + kp` into panels of
/// `kp × NR` words (pair `p` of row `j0 + q·NR + c` at `q·kp·NR + p·NR + c`);
/// rows past the block and the element past an odd `k` are zero.
///
/// Whole groups of 16 rows are transposed 16 pairs at a time in registers
/// where the CPU has AVX-512 F: copied one word at a time, this packing was
/// a sixth of the ViT's time (each word a load and a store 128 bytes from
/// the last).
fn pack_weights(weights: &Weights, j0: usize, nc: usize, p0: usize, kp: usize, out: &mut [u32]) {
    let t0 = 2 * p0;
    // Elements of each row inside the block (one short when `k` is odd and
    // the block reaches its end).
    let inside = (2 * kp).min(weights.k - t0);
    // Leading pairs of each whole 16-row group that the transposing copy
    // takes (a multiple of 16); the rest go word by word.
    let transposed = if transpose::usable() {
        inside / 2 / 16 * 16
    } else {
        0
    };
    for q in 0..nc.div_ceil(NR) {
        let panel = &mut out[q * kp * NR..][..kp * NR];
        for c in 0..NR {
            if q * NR + c >= nc {
                for p in 0..kp {
                    panel[p * NR + c] = 0;
                }
                continue;
            }
            let group_whole = q * NR + (c / 16 + 1) * 16 <= nc;
            let first = if group_whole { transposed } else { 0 };
            let j = j0 + q * NR + c;
            let row = &weights.w[j * weights.stride + t0..][..inside];
            let mut words = row[2 * first..].chunks_exact(2);
            for (p, two) in words.by_ref().enumerate() {
                panel[(first + p) * NR + c] = pair(two[0], two[1]);
            }
            if let [last] = words.remainder() {
                panel[(inside / 2) * NR + c] = pair(*last, bf16::ZERO);
            }
        }
        if transposed == 0 {
            continue;
        }
        for g in 0..NR / 16 {
            if q * NR + (g + 1) * 16 > nc {
                break;
            }
            let first_row = (j0 + q * NR + g * 16) * weights.stride + t0;
            let source = &weights.w[first_row..][..15 * weights.stride + 2 * transposed];
            transpose::pairs_16_rows(source, weights.stride, transposed, &mut panel[g * 16..]);
        }
    }
}

/// The transposing copy of [`pack_weights`].
mod transpose {
    use half::bf16;

    use super::NR;

    /// Whether the CPU has AVX-512 F (std caches the answer).
    pub(super) fn usable() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `out[p·NR + c] = pair p of row c` for 16 rows of `source`
    /// (`stride` elements apart) and `pairs` pairs, a multiple of 16.
    ///
    /// # Panics
    /// If the slices are too short or [`usable`] is false.
    pub(super) fn pairs_16_rows(source: &[bf16], stride: usize, pairs: usize, out: &mut [u32]) {
        assert!(usable() && pairs.is_multiple_of(16));
        if pairs == 0 {
            return;
        }
        assert!(source.len() >= 15 * stride + 2 * pairs, "source rows");
        assert!(out.len() >= (pairs - 1) * NR + 16, "panel");
        #[cfg(target_arch = "x86_64")]
        for p in (0..pairs).step_by(16) {
            // SAFETY: AVX-512 F is present (asserted); the 16 rows of 32
            // elements from pair `p` lie in `source` and the 16 output rows
            // of 16 words in `out` (both asserted above).
            unsafe {
                x86::block_16x16(
                    source.as_ptr().add(2 * p).cast(),
                    2 * stride,
                    out.as_mut_ptr().add(p * NR),
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod x86 {
        use std::arch::x86_64::*;

        use super::NR;

        /// Word `e` of source row `r` (rows `row_bytes` apart) to
        /// `dst[e·NR + r]`, for a 16 × 16 block: 32-bit and 64-bit
        /// interleaves make 4 × 4 transposes inside each 128-bit lane, and
        /// two lane shuffles transpose the 4 × 4 grid of lanes.
        ///
        /// # Safety
        /// AVX-512 F; 64 readable bytes at each of the 16 rows and 16
        /// writable words at each `dst + e·NR`.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn block_16x16(src: *const u8, row_bytes: usize, dst: *mut u32) {
            let r: [__m512i; 16] =
                std::array::from_fn(|i| _mm512_loadu_si512(src.add(i * row_bytes).cast()));
            for (e, v) in transpose_16x16(r).into_iter().enumerate() {
                _mm512_storeu_si512(dst.add(e * NR).cast(), v);
            }
        }

        /// The 16 × 16 transpose of 32-bit words: word `e` of `r[a]` is word
        /// `a` of the result's `e`. 32-bit and 64-bit interleaves make 4 × 4
        /// transposes inside each 128-bit lane, and two lane shuffles
        /// transpose the 4 × 4 grid of lanes.
        ///
        /// # Safety
        /// AVX-512 F must be available.
        #[inline]
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn transpose_16x16(r: [__m512i; 16]) -> [__m512i; 16] {
            // Lane l of r[a] holds words 4l..4l+3 of row a.
            let mut t = [_mm512_setzero_si512(); 16];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
            }
            // u[4g + e], lane l: word 4l + e of rows 4g .. 4g + 3.
            let mut u = [_mm512_setzero_si512(); 16];
            for g in 0..4 {
                let (ab_lo, ab_hi) = (t[4 * g], t[4 * g + 1]);
                let (cd_lo, cd_hi) = (t[4 * g + 2], t[4 * g + 3]);
                u[4 * g] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
                u[4 * g + 1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
                u[4 * g + 2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
                u[4 * g + 3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
            }
            let mut out = [_mm512_setzero_si512(); 16];
            for e in 0..4 {
                let (a, b, c, d) = (u[e], u[4 + e], u[8 + e], u[12 + e]);
                let ab01 = _mm512_shuffle_i32x4::<0b01_00_01_00>(a, b);
                let ab23 = _mm512_shuffle_i32x4::<0b11_10_11_10>(a, b);
                let cd01 = _mm512_shuffle_i32x4::<0b01_00_01_00>(c, d);
                let cd23 = _mm512_shuffle_i32x4::<0b11_10_11_10>(c, d);
                out[e] = _mm512_shuffle_i32x4::<0b10_00_10_00>(ab01, cd01);
                out[4 + e] = _mm512_shuffle_i32x4::<0b11_01_11_01>(ab01, cd01);
                out[8 + e] = _mm512_shuffle_i32x4::<0b10_00_10_00>(ab23, cd23);
                out[12 + e] = _mm512_shuffle_i32x4::<0b11_01_11_01>(ab23, cd23);
            }
            out
        }
    }
}

/// Activation packing with `vcvtneps2bf16` and in-register transposes.
#[cfg(target_arch = "x86_64")]
mod activation_x86 {
    use std::arch::x86_64::*;

    use super::MR;

    /// Rounds the 32 elements at `rows[r] + at` of the first `live` rows
    /// (the rest zero) to BF16 pairs and writes pair `p` of row `r` to
    /// `panel[p·MR + r]`, for the 16 pairs `p < 16`.
    ///
    /// # Safety
    /// AVX-512 F and BF16 must be available; each of the `live` rows must
    /// have 32 readable elements from `at`, and `panel` 16 · MR writable
    /// words.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pack_16_pairs(
        rows: &[*const f32; MR],
        live: usize,
        at: usize,
        panel: *mut u32,
    ) {
        let mut r = [_mm512_setzero_si512(); 16];
        for (v, &row) in r.iter_mut().zip(&rows[..live.min(MR)]) {
            let row = row.add(at);
            // Two one-source conversions joined (the two-source form reads
            // the same but is mis-emulated by Bochs).
            let lo: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(row)));
            let hi: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(row.add(16))));
            *v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        }
        let words = super::transpose::x86::transpose_16x16(r);
        let live: __mmask16 = (1 << MR) - 1;
        for (p, v) in words.into_iter().enumerate() {
            _mm512_mask_storeu_epi32(panel.add(p * MR).cast(), live, v);
        }
    }
}

/// The source lines of one weight block (rows × `KC_PAIRS` pairs), which a
/// task prefetches into L2 a part per tile while it computes on the block
/// before: packed without it, the prefill's weights (read once per product,
/// a few hundred bytes per row and block) waited on memory for an eighth of
/// the prefill.
struct WeightBlock<'a> {
    weights: &'a Weights<'a>,
    rows: std::ops::Range<usize>,
    /// First element of each row in the block.
    t0: usize,
    /// Elements of each row in the block.
    len: usize,
}

impl<'a> WeightBlock<'a> {
    fn new(weights: &'a Weights<'a>, rows: std::ops::Range<usize>, p0: usize) -> Self {
        let t0 = 2 * p0;
        let len = (2 * KC_PAIRS).min(weights.k - t0);
        Self {
            weights,
            rows,
            t0,
            len,
        }
    }

    /// Prefetches part `t` of `parts` of the block's lines.
    fn prefetch_part(&self, t: usize, parts: usize) {
        // Lines per row: a row's bytes may start mid-line, so one more than
        // they fill; the last address is clamped to the row's last byte.
        let row_bytes = 2 * self.len;
        let per_row = row_bytes.div_ceil(64) + 1;
        let lines = self.rows.len() * per_row;
        for line in part_of(lines, t, parts) {
            let (r, l) = (line / per_row, line % per_row);
            let start = (self.rows.start + r) * self.weights.stride + self.t0;
            let row: &[bf16] = &self.weights.w[start..][..self.len];
            let byte = (l * 64).min(row_bytes - 1);
            prefetch_l2(row.as_ptr().cast::<u8>().wrapping_add(byte));
        }
    }
}

/// Prefetches part `t` of `parts` of `words`' cache lines into L2.
fn prefetch_part_l2(words: &[u32], t: usize, parts: usize) {
    for line in part_of((4 * words.len()).div_ceil(64), t, parts) {
        prefetch_l2(words[16 * line..].as_ptr().cast());
    }
}

/// The work on one rectangle of C.
struct Task<'a> {
    /// The rectangle's rows of A, packed by [`pack_activations`].
    packed: &'a [u32],
    rect: Rectangle,
    weights: &'a Weights<'a>,
    /// Applied to each tile after the last depth block.
    epilogue: &'a Epilogue<'a>,
    features: CpuFeatures,
}

impl Task<'_> {
    /// # Safety
    /// `out` must point to a [_, n] row-major matrix containing this task's
    /// rectangle, which no other thread accesses meanwhile; `kernel` must be
    /// runnable on this CPU.
    unsafe fn run<K: PairDot>(&self, kernel: &K, out: &Output, n: usize) {
        let m = self.rect.rows;
        let pairs = self.weights.k.div_ceil(2);
        let panels = m.div_ceil(MR);
        let mut packed_w = vec![0u32; NC * KC_PAIRS];
        let mut tile = [0f32; MR * NR];
        // Weight blocks in the order they are packed: (first row, first pair).
        let blocks: Vec<(usize, usize)> = self
            .rect
            .cols
            .clone()
            .step_by(NC)
            .flat_map(|j0| (0..pairs).step_by(KC_PAIRS).map(move |p0| (j0, p0)))
            .collect();
        for (b, &(j0, p0)) in blocks.iter().enumerate() {
            let nc = NC.min(self.rect.cols.end - j0);
            let kp = KC_PAIRS.min(pairs - p0);
            pack_weights(self.weights, j0, nc, p0, kp, &mut packed_w);
            let next = blocks.get(b + 1).map(|&(j1, p1)| {
                let rows = j1..(j1 + NC).min(self.rect.cols.end);
                WeightBlock::new(self.weights, rows, p1)
            });
            let q_panels = nc.div_ceil(NR);
            let a_block = &self.packed[p0 * panels * MR..][..panels * kp * MR];
            let accumulate = p0 > 0;
            let last = p0 + kp == pairs;
            let finish =
                (last && !self.epilogue.is_identity()).then_some((self.epilogue, self.features));
            let first = self.rect.first_row;
            for ip in 0..panels {
                let a_panel = &a_block[ip * kp * MR..][..kp * MR];
                let next_a_panel = a_block.get((ip + 1) * kp * MR..(ip + 2) * kp * MR);
                let i = ip * MR;
                for q in 0..q_panels {
                    let part = late_prefetch_part(ip * q_panels + q, panels * q_panels);
                    if let (Some(next), Some((part, parts))) = (&next, part) {
                        next.prefetch_part(part, parts);
                    }
                    // The next row panel's activations into L2, a part per
                    // tile of this one (with a tall C they come from L3), and
                    // the next tile's C into L1.
                    if let Some(next_a) = next_a_panel {
                        prefetch_part_l2(next_a, q, q_panels);
                    }
                    let (ni, nq) = ((ip * q_panels + q + 1) / q_panels, (q + 1) % q_panels);
                    if ni < panels {
                        let (row, col) = (first + ni * MR, j0 + nq * NR);
                        prefetch_c_tile(
                            out,
                            n,
                            row..(row + MR).min(first + m),
                            col..(col + NR).min(self.rect.cols.end),
                        );
                    }
                    let w_panel = &packed_w[q * kp * NR..][..kp * NR];
                    let j = j0 + q * NR;
                    let place = TilePlace::clipped(
                        (MR, NR),
                        (first + i, first + m),
                        (j, self.rect.cols.end),
                    );
                    write_tile(
                        out,
                        n,
                        place,
                        &mut tile,
                        accumulate,
                        finish,
                        |c, ldc, acc| kernel.tile(kp, a_panel, w_panel, c, ldc, acc),
                    );
                }
            }
        }
    }
}

/// The micro-kernel: `c[r·ldc + col] (+)= Σ_p dot(a[p·MR + r], w[p·NR + col])`
/// for an `MR × NR` tile, `dot` of two BF16 pairs in F32 as `vdpbf16ps`
/// does it. [`Avx512PairDot`] runs it on the CPU; the tests also run the
/// GEMM on an emulation written from the instruction's documented semantics.
trait PairDot: Sync {
    /// # Safety
    /// The instructions the implementation uses must exist on this CPU.
    /// `a` holds `pairs·MR` words, `w` `pairs·NR` and `c` an `MR × NR`
    /// tile with row stride `ldc` (checked).
    unsafe fn tile(
        &self,
        pairs: usize,
        a: &[u32],
        w: &[u32],
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    );
}

/// `vdpbf16ps` on 16-lane registers.
struct Avx512PairDot;

impl PairDot for Avx512PairDot {
    unsafe fn tile(
        &self,
        pairs: usize,
        a: &[u32],
        w: &[u32],
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        assert!(a.len() >= pairs * MR && w.len() >= pairs * NR);
        assert!(c.len() >= (MR - 1) * ldc + NR);
        #[cfg(target_arch = "x86_64")]
        kernel::tile(
            pairs,
            a.as_ptr(),
            w.as_ptr(),
            c.as_mut_ptr(),
            ldc,
            accumulate,
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AVX-512 BF16 is x86-64 only");
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// 12 × 32 tile in 24 accumulators (enough independent sums to hide the
    /// dot product's latency at two per cycle).
    ///
    /// # Safety
    /// AVX-512 F and BF16 must be available; `a` holds `pairs·MR` words,
    /// `w` `pairs·NR` and `c` an `MR × NR` tile with row stride `ldc`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile(
        pairs: usize,
        a: *const u32,
        w: *const u32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut lo = [_mm512_setzero_ps(); MR];
        let mut hi = [_mm512_setzero_ps(); MR];
        if accumulate {
            for r in 0..MR {
                lo[r] = _mm512_loadu_ps(c.add(r * ldc));
                hi[r] = _mm512_loadu_ps(c.add(r * ldc + 16));
            }
        }
        // The 32-bit words reinterpreted as BF16 pairs (same bits).
        let pairs_of = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
        for p in 0..pairs {
            let wp = w.add(p * NR);
            let w_lo = pairs_of(_mm512_loadu_si512(wp as *const __m512i));
            let w_hi = pairs_of(_mm512_loadu_si512(wp.add(16) as *const __m512i));
            let ap = a.add(p * MR);
            for r in 0..MR {
                let x = pairs_of(_mm512_set1_epi32(*ap.add(r) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], x, w_lo);
                hi[r] = _mm512_dpbf16_ps(hi[r], x, w_hi);
            }
        }
        for r in 0..MR {
            _mm512_storeu_ps(c.add(r * ldc), lo[r]);
            _mm512_storeu_ps(c.add(r * ldc + 16), hi[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `vdpbf16ps` from its documented semantics (Intel SDM: per F32 lane,
    /// `dst += a.bf16[2i+1]·b.bf16[2i+1]`, then `dst += a.bf16[2i]·b.bf16[2i]`,
    /// each product exact in F32), on plain arrays.
    struct EmulatedPairDot;

    fn halves(word: u32) -> (f32, f32) {
        let widen = |bits: u32| f32::from_bits(bits << 16);
        (widen(word & 0xffff), widen(word >> 16))
    }

    impl PairDot for EmulatedPairDot {
        unsafe fn tile(
            &self,
            pairs: usize,
            a: &[u32],
            w: &[u32],
            c: &mut [f32],
            ldc: usize,
            accumulate: bool,
        ) {
            for r in 0..MR {
                for col in 0..NR {
                    let mut acc = if accumulate { c[r * ldc + col] } else { 0.0 };
                    for p in 0..pairs {
                        let (a0, a1) = halves(a[p * MR + r]);
                        let (w0, w1) = halves(w[p * NR + col]);
                        acc += a1 * w1;
                        acc += a0 * w0;
                    }
                    c[r * ldc + col] = acc;
                }
            }
        }
    }

    /// Partial tiles in both directions, odd depths, several depth blocks,
    /// weight blocks and row ranges, a strided weight view.
    const SIZES: [(usize, usize, usize, usize); 6] = [
        (1, 1, 1, 1),
        (9, 33, 7, 7),
        (37, 45, 96, 96),
        (20, 300, 515, 520),
        (800, 40, 64, 64),
        (1, 70, 30, 31),
    ];

    fn check_on<K: PairDot>(kernel: &K) {
        crate::shared::assert_bf16_gemm(&SIZES, |product, c, parallel| {
            gemm_on(kernel, product, c, parallel, Epilogue::default())
        });
    }

    #[test]
    fn the_gemm_on_the_emulated_instruction_matches_the_reference() {
        check_on(&EmulatedPairDot);
    }

    #[test]
    fn the_instruction_path_matches_the_reference_where_the_cpu_has_it() {
        // On CPUs without AVX-512 BF16 this checks nothing beyond `usable()` saying no.
        if usable() {
            check_on(&Avx512PairDot);
        }
    }

    /// The fused epilogue gives what a separate pass after the product
    /// gives, on full and partial tiles and several depth blocks.
    #[test]
    fn the_epilogue_on_each_tile_equals_a_pass_afterwards() {
        use crate::activation::Activation;
        for &(m, n, k) in &[(25, 70, 600), (12, 32, 9), (7, 5, 513)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
                .collect();
            let w: Vec<bf16> = (0..n * k)
                .map(|i| bf16::from_f32(((i * 53 % 97) as f32 - 48.0) / 60.0))
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 3.0).collect();
            let product = Bf16Product {
                a: &a,
                m,
                w: &w,
                n,
                k,
                stride: k,
            };
            let epilogue = Epilogue {
                bias: Some(&bias),
                activation: Activation::QuickGelu,
                residual: None,
            };
            let mut want = vec![0f32; m * n];
            gemm_on(
                &EmulatedPairDot,
                product,
                &mut want,
                false,
                Epilogue::default(),
            );
            for (i, row) in want.chunks_mut(n).enumerate() {
                epilogue.apply(CpuFeatures::detect(), row, (i, 0), n);
            }
            for parallel in [false, true] {
                let mut got = vec![f32::NAN; m * n];
                gemm_on(&EmulatedPairDot, product, &mut got, parallel, epilogue);
                assert_eq!(got, want, "{m}x{n}x{k} parallel {parallel}");
            }
        }
    }

    #[test]
    fn weights_pack_into_pair_panels_with_or_without_the_transposing_copy() {
        // Odd depth, a stride past the depth, a partial last panel (a whole
        // 16-row group and a partial one) and a block not at pair 0.
        let (n, k, stride) = (45, 2 * KC_PAIRS + 37, 2 * KC_PAIRS + 41);
        // Distinct bit patterns (fewer than 65,536 elements).
        let w: Vec<bf16> = (0..n * stride).map(|i| bf16::from_bits(i as u16)).collect();
        let weights = Weights { w: &w, k, stride };
        let pairs = k.div_ceil(2);
        for (j0, nc, p0) in [(0, 45, 0), (3, 40, KC_PAIRS), (13, 32, 0)] {
            let kp = KC_PAIRS.min(pairs - p0);
            let mut got = vec![u32::MAX; NC * KC_PAIRS];
            pack_weights(&weights, j0, nc, p0, kp, &mut got);
            for q in 0..nc.div_ceil(NR) {
                for p in 0..kp {
                    for c in 0..NR {
                        let (row, t) = (j0 + q * NR + c, 2 * (p0 + p));
                        let element = |t: usize| {
                            if q * NR + c < nc && t < k {
                                w[row * stride + t]
                            } else {
                                bf16::ZERO
                            }
                        };
                        let want = pair(element(t), element(t + 1));
                        assert_eq!(
                            got[q * kp * NR + p * NR + c],
                            want,
                            "{j0} {nc} {p0}: {q} {p} {c}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn activations_pack_into_pair_panels() {
        // A partial panel over two depth blocks (the second 2 pairs); three
        // panels, the last partial, with 48 pairs in groups of 16 and 2
        // after them; one row.
        for (rows, k) in [(11, 2 * KC_PAIRS + 3), (30, 100), (1, 64)] {
            check_activation_packing(rows, k);
        }
    }

    fn check_activation_packing(rows: usize, k: usize) {
        let a: Vec<f32> = (0..rows * k).map(|i| i as f32 * 0.37 - 50.0).collect();
        let packed = pack_activations(&a, rows, k, true);
        let (panels, pairs) = (rows.div_ceil(MR), k.div_ceil(2));
        assert_eq!(packed.len(), panels * MR * pairs);
        for i in 0..panels * MR {
            for t in 0..pairs * 2 {
                let (p, e) = (t / 2, t % 2);
                let (p0, kp) = if p < KC_PAIRS {
                    (0, KC_PAIRS.min(pairs))
                } else {
                    (KC_PAIRS, pairs - KC_PAIRS)
                };
                let word = packed[p0 * panels * MR + (i / MR) * kp * MR + (p - p0) * MR + i % MR];
                let got = if e == 0 {
                    halves(word).0
                } else {
                    halves(word).1
                };
                let want = if i < rows && t < k { a[i * k + t] } else { 0.0 };
                assert_eq!(
                    got,
                    bf16::from_f32(want).to_f32(),
                    "{rows}x{k} row {i} depth {t}"
                );
            }
        }
    }
}
