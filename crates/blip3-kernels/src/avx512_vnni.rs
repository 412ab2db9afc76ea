//! `C = A·Wᵀ` for Q8_0 weights with AVX-512 VNNI integer dot products
//! (`vpdpbusd`): the many-row product (prefill, ViT, perceiver) of Q8_0
//! models on CPUs that have AVX-512 VNNI but no AMX (AMD Zen 4 and 5, Intel
//! Ice Lake and Cascade Lake). One instruction does 64 byte products into 16
//! integer sums, twice the work of a BF16 `vdpbf16ps`, and the weight is read
//! in its own one byte per element, never decoded.
//!
//! The activations are quantised to Q8_0 per row and block of 32 (F16-rounded
//! scale, round half away from zero, as the decode GEMV and llama.cpp's Q8_0
//! product do), so each block's products sum exactly in 32-bit integers and
//! are scaled once per block: `c += (d_w · d_a) · Σ w·a` in F32.
//! `vpdpbusd` multiplies unsigned by signed bytes: the weight is made
//! unsigned while packing (w + 128, its sign bit flipped) and each block's sum
//! starts from −128 · Σa of its activation row, which removes the offset
//! exactly.
//!
//! The weight is packed per column tile of [`NR`] rows and depth block of
//! [`KC_BLOCKS`] blocks (36 KiB, in L1 while every row tile of the range
//! sweeps it): per block, 8 chunks of 4 depth bytes of each of the 64 rows,
//! then the 64 rows' F32 scales. Q8_0's in-memory layout already holds 8
//! rows' 4-byte chunks side by side ([`crate::interleaved`]), so packing
//! copies 32 bytes at a time. The micro-kernel keeps an `MR × NR` tile in 12
//! integer sums and 12 F32 accumulators: per chunk it loads four weight
//! registers and broadcasts each row's 4 activation bytes against them.
//! Of the shapes that fit the 32 registers, 3 × 64 measured fastest on a
//! Zen 5 EPYC at the prefill shape (about 1.2 TOP/s on 2 cores, against
//! 1.0 for 4 × 48 and 0.7 for 2 × 96, runs alternated).
//!
//! [`usable`] runs the kernel once against [`ScalarBlockDot`], which does the
//! same integer and F32 operations in the same order, and reports the path
//! usable only if the results are bit for bit the same.

use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemm::{
    for_each_rectangle, late_prefetch_part, part_of, prefetch_c_tile, write_tile, Epilogue, Output,
    TileMultiples, TilePlace,
};
use crate::interleaved::{Interleaved, GROUP};
use crate::q8::{Q8Matrix, BLOCK};
use crate::shared::prefetch_l2;

/// Activation rows per micro-tile.
const MR: usize = 3;
/// Weight rows (output columns) per micro-tile: four 16-lane registers.
const NR: usize = 64;
/// Integer lanes per register.
const LANES: usize = 16;
/// 4-byte chunks per block.
const CHUNKS: usize = BLOCK / 4;
/// Blocks per packed depth block: the weight panel (32 KiB of codes, 4 KiB
/// of scales) and a row tile's activations (1.5 KiB) share L1.
const KC_BLOCKS: usize = 16;
/// Activation rows per row range, at most (each range packs the weight once
/// more; the quantised activations cost about one byte per element).
const ROWS_PER_RANGE: usize = 4096;

/// Whether this CPU has AVX-512 F, BW and VNNI and the kernel passed its
/// check (asked once; the answer is cached).
pub fn usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| cpu_has_avx512_vnni() && matches_reference(&Avx512BlockDot))
}

fn cpu_has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `kernel` gives [`ScalarBlockDot`]'s results bit for bit on a
/// product with partial tiles and two depth blocks.
fn matches_reference<K: BlockDot>(kernel: &K) -> bool {
    let (m, n, k) = (6, 50, 32 * (KC_BLOCKS + 1));
    let value = |i: usize, salt: usize| ((i * 2654435761 + salt) % 1000) as f32 / 500.0 - 1.0;
    let a: Vec<f32> = (0..m * k).map(|i| value(i, 17)).collect();
    let w: Vec<f32> = (0..n * k).map(|i| value(i, 91)).collect();
    let Some(w) = Q8Matrix::quantize(&w, n, k) else {
        return false;
    };
    let mut got = vec![f32::NAN; m * n];
    let mut want = vec![f32::NAN; m * n];
    gemm_on(kernel, &a, m, &w, &mut got, false, Epilogue::default());
    gemm_on(
        &ScalarBlockDot,
        &a,
        m,
        &w,
        &mut want,
        false,
        Epilogue::default(),
    );
    got.iter()
        .zip(&want)
        .all(|(g, r)| g.to_bits() == r.to_bits())
}

/// `c[i·N + j] = Σ_t a[i·K + t] · W[j, t]`, the activations quantised to
/// Q8_0 per block, then `epilogue` on each output tile after its last depth
/// block; rectangles of `c` spread over the thread pool when `parallel`.
///
/// Panics if the sizes do not fit; call only when [`usable`] said yes.
pub fn gemm_q8_with(
    a: &[f32],
    m: usize,
    w: &Q8Matrix,
    c: &mut [f32],
    parallel: bool,
    epilogue: Epilogue,
) {
    gemm_on(&Avx512BlockDot, a, m, w, c, parallel, epilogue);
}

/// [`gemm_q8_with`] with the micro-kernel `kernel`.
fn gemm_on<K: BlockDot>(
    kernel: &K,
    a: &[f32],
    m: usize,
    w: &Q8Matrix,
    c: &mut [f32],
    parallel: bool,
    epilogue: Epilogue,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(a.len() == m * k && c.len() == m * n, "sizes");
    epilogue.check(m, n);
    if m == 0 || n == 0 {
        return;
    }
    let features = epilogue.features();
    if k == 0 {
        epilogue.fill_depth_zero(features, c, n);
        return;
    }
    let out = Output(c.as_mut_ptr());
    let quantized =
        |i0: usize, rows: usize| QuantizedRows::new(&a[i0 * k..(i0 + rows) * k], k, parallel);
    let tiles = TileMultiples {
        rows: MR,
        cols: NR,
        rows_per_range: ROWS_PER_RANGE,
    };
    for_each_rectangle(m, n, tiles, parallel, quantized, |rows, rect| {
        let task = Task {
            rows,
            w: w.interleaved(),
            first_row: rect.first_row,
            cols: rect.cols,
            epilogue: &epilogue,
            features,
        };
        // SAFETY: `out` points to `c`, [m, n]; rectangles tile it without
        // overlap and each task writes only its own. The kernel's
        // instructions exist (`usable`) or it is the scalar reference.
        unsafe { task.run(kernel, &out, n) };
    });
}

/// Activation rows quantised to Q8_0 blocks.
struct QuantizedRows {
    /// Depth of a row.
    k: usize,
    /// [rows, k] signed codes.
    codes: Vec<i8>,
    /// [rows, k / 32] F32 scales (F16-rounded values).
    scales: Vec<f32>,
    /// [rows, k / 32]: −128 · Σ codes of the block, what a block's
    /// unsigned-weight sum starts from.
    offsets: Vec<i32>,
}

impl QuantizedRows {
    /// Quantises `a` [_, k] block by block (on the pool when `parallel`).
    fn new(a: &[f32], k: usize, parallel: bool) -> Self {
        let blocks = a.len() / BLOCK;
        let mut rows = Self {
            k,
            codes: crate::scratch::zeroed(a.len()),
            scales: crate::scratch::zeroed(blocks),
            offsets: crate::scratch::zeroed(blocks),
        };
        type Block<'a> = (((&'a mut [i8], &'a mut f32), &'a mut i32), &'a [f32]);
        let one = |(((q, s), o), x): Block| {
            let (d, sum) = crate::q8::quantize_block_summed(x, q);
            *s = d.to_f32();
            *o = -128 * sum;
        };
        if parallel {
            rows.codes
                .par_chunks_mut(BLOCK)
                .zip(rows.scales.par_iter_mut())
                .zip(rows.offsets.par_iter_mut())
                .zip(a.par_chunks(BLOCK))
                .with_min_len(256)
                .for_each(one);
        } else {
            rows.codes
                .chunks_mut(BLOCK)
                .zip(rows.scales.iter_mut())
                .zip(rows.offsets.iter_mut())
                .zip(a.chunks(BLOCK))
                .for_each(one);
        }
        rows
    }

    /// Row `r` from block `b0` on: its codes, scales and offsets.
    fn row(&self, r: usize, b0: usize) -> ActivationRow<'_> {
        let nb = self.k / BLOCK;
        ActivationRow {
            codes: &self.codes[r * self.k + b0 * BLOCK..(r + 1) * self.k],
            scales: &self.scales[r * nb + b0..(r + 1) * nb],
            offsets: &self.offsets[r * nb + b0..(r + 1) * nb],
        }
    }
}

/// One quantised activation row from some block on.
#[derive(Clone, Copy)]
struct ActivationRow<'a> {
    codes: &'a [i8],
    scales: &'a [f32],
    offsets: &'a [i32],
}

/// A packed weight panel: [`NR`] rows × up to [`KC_BLOCKS`] blocks.
struct Panel {
    /// [block][chunk][NR rows][4 bytes], unsigned (w + 128).
    codes: Vec<u8>,
    /// [block][NR rows] F32 scales (0 for rows past the matrix).
    scales: Vec<f32>,
}

impl Panel {
    fn new() -> Self {
        Self {
            codes: vec![0u8; KC_BLOCKS * BLOCK * NR],
            scales: vec![0f32; KC_BLOCKS * NR],
        }
    }

    /// Packs weight rows `j0 .. j0 + NR` (`j0` a multiple of 8), blocks
    /// `b0 .. b0 + blocks`.
    fn pack(&mut self, w: &Interleaved, j0: usize, b0: usize, blocks: usize) {
        debug_assert!(j0.is_multiple_of(GROUP) && blocks <= KC_BLOCKS);
        let group_bytes = BLOCK * GROUP;
        for g in 0..NR / GROUP {
            let group = j0 / GROUP + g;
            let inside = group * GROUP < w.rows;
            for b in 0..blocks {
                let scales = &mut self.scales[b * NR + g * GROUP..][..GROUP];
                let first = (group * w.blocks + b0 + b) * group_bytes;
                for c in 0..CHUNKS {
                    let at = (b * CHUNKS + c) * NR * 4 + g * GROUP * 4;
                    let dst = &mut self.codes[at..][..32];
                    // Whole 32-byte arrays, so the flip is one vector operation.
                    let src: [u8; 32] = if inside {
                        w.codes[first + c * 32..][..32]
                            .try_into()
                            .expect("32 bytes")
                    } else {
                        [0; 32]
                    };
                    dst.copy_from_slice(&src.map(|v| v ^ 0x80));
                }
                if inside {
                    let src = &w.scales[(group * w.blocks + b0 + b) * GROUP..][..GROUP];
                    for (d, s) in scales.iter_mut().zip(src) {
                        *d = s.to_f32();
                    }
                } else {
                    scales.fill(0.0);
                }
            }
        }
    }
}

/// The weight bytes the next panel packs, fetched into L2 a part at a time
/// while the current panel's row tiles run (read only when packing, they
/// stalled the packing on memory: 6 % of a prefill product).
struct Prefetch<'a> {
    w: &'a Interleaved,
    j: usize,
    b0: usize,
}

impl<'a> Prefetch<'a> {
    fn new(w: &'a Interleaved, j: usize, b0: usize) -> Self {
        Self { w, j, b0 }
    }

    /// Prefetches part `t` of `parts` of the panel's source lines.
    fn part(&self, t: usize, parts: usize) {
        let blocks = KC_BLOCKS.min(self.w.blocks - self.b0);
        // Each row group's blocks are contiguous: `blocks` × 256 bytes.
        let group_lines = blocks * BLOCK * GROUP / 64;
        let groups = (NR / GROUP).min(self.w.rows.div_ceil(GROUP).saturating_sub(self.j / GROUP));
        for line in part_of(groups * group_lines, t, parts) {
            let (g, l) = (line / group_lines, line % group_lines);
            let group = self.j / GROUP + g;
            let at = (group * self.w.blocks + self.b0) * BLOCK * GROUP + l * 64;
            prefetch_l2(self.w.codes[at..].as_ptr());
        }
    }
}

/// The work on one rectangle of C.
struct Task<'a> {
    /// The range's quantised rows (the rectangle's first row is their row 0).
    rows: &'a QuantizedRows,
    w: &'a Interleaved,
    first_row: usize,
    cols: std::ops::Range<usize>,
    /// Applied to each tile after the last depth block.
    epilogue: &'a Epilogue<'a>,
    features: CpuFeatures,
}

impl Task<'_> {
    /// # Safety
    /// `out` must point to a [_, n] row-major matrix containing this task's
    /// rectangle, which no other thread accesses meanwhile; `kernel` must be
    /// runnable on this CPU.
    unsafe fn run<K: BlockDot>(&self, kernel: &K, out: &Output, n: usize) {
        let m = self.rows.codes.len() / self.rows.k;
        let nb = self.rows.k / BLOCK;
        let mut panel = Panel::new();
        let mut tile = [0f32; MR * NR];
        // Every (column tile, depth block) in the order they are packed.
        let panels: Vec<(usize, usize)> = self
            .cols
            .clone()
            .step_by(NR)
            .flat_map(|j| (0..nb).step_by(KC_BLOCKS).map(move |b0| (j, b0)))
            .collect();
        let tiles = m.div_ceil(MR);
        for (p, &(j, b0)) in panels.iter().enumerate() {
            let blocks = KC_BLOCKS.min(nb - b0);
            panel.pack(self.w, j, b0, blocks);
            let next = panels
                .get(p + 1)
                .map(|&(j, b0)| Prefetch::new(self.w, j, b0));
            let accumulate = b0 > 0;
            let finish = (b0 + blocks == nb && !self.epilogue.is_identity())
                .then_some((self.epilogue, self.features));
            for (t, i) in (0..m).step_by(MR).enumerate() {
                if let (Some(next), Some((part, parts))) = (&next, late_prefetch_part(t, tiles)) {
                    next.part(part, parts);
                }
                // The next tile's C into L1 (`prefetch_c_tile`).
                let next_row = self.first_row + i + MR;
                prefetch_c_tile(
                    out,
                    n,
                    next_row..(next_row + MR).min(self.first_row + m),
                    j..(j + NR).min(self.cols.end),
                );
                let rows = MR.min(m - i);
                // Rows past the range repeat its last row; they are not stored.
                let x = std::array::from_fn(|r| self.rows.row(i + r.min(rows - 1), b0));
                let place = TilePlace::clipped(
                    (MR, NR),
                    (self.first_row + i, self.first_row + m),
                    (j, self.cols.end),
                );
                write_tile(
                    out,
                    n,
                    place,
                    &mut tile,
                    accumulate,
                    finish,
                    |c, ldc, acc| kernel.tile(blocks, &x, &panel, c, ldc, acc),
                );
            }
        }
    }
}

/// The micro-kernel: for an `MR × NR` tile and each block `b < blocks`,
/// `s = offset + Σ_t (w_t + 128)·a_t` in `i32`, then
/// `c = fma(s as f32, d_w · d_a, c)`, starting from `c` when `accumulate`
/// and from 0 otherwise.
trait BlockDot: Sync {
    /// # Safety
    /// The instructions the implementation uses must exist on this CPU.
    /// Each row of `x` holds `blocks` blocks, the panel `blocks` blocks, and
    /// `c` an `MR × NR` tile with row stride `ldc` (checked).
    unsafe fn tile(
        &self,
        blocks: usize,
        x: &[ActivationRow; MR],
        w: &Panel,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    );
}

/// Panics unless the tile's inputs hold `blocks` blocks and `c` the tile.
fn assert_tile(blocks: usize, x: &[ActivationRow; MR], w: &Panel, c: &[f32], ldc: usize) {
    assert!(blocks <= KC_BLOCKS && w.codes.len() >= blocks * BLOCK * NR);
    assert!(w.scales.len() >= blocks * NR);
    for row in x {
        assert!(row.codes.len() >= blocks * BLOCK);
        assert!(row.scales.len() >= blocks && row.offsets.len() >= blocks);
    }
    assert!(c.len() >= (MR - 1) * ldc + NR, "tile");
}

/// The reference micro-kernel: the same integer sums, products and fused
/// multiply-adds as [`Avx512BlockDot`], one value at a time.
struct ScalarBlockDot;

impl BlockDot for ScalarBlockDot {
    unsafe fn tile(
        &self,
        blocks: usize,
        x: &[ActivationRow; MR],
        w: &Panel,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        assert_tile(blocks, x, w, c, ldc);
        for (r, row) in x.iter().enumerate() {
            for col in 0..NR {
                let mut acc = if accumulate { c[r * ldc + col] } else { 0.0 };
                for b in 0..blocks {
                    let mut sum = row.offsets[b];
                    for ch in 0..CHUNKS {
                        let wc = &w.codes[((b * CHUNKS + ch) * NR + col) * 4..][..4];
                        let ac = &row.codes[b * BLOCK + ch * 4..][..4];
                        for (&wv, &av) in wc.iter().zip(ac) {
                            sum += i32::from(wv) * i32::from(av);
                        }
                    }
                    let scale = w.scales[b * NR + col] * row.scales[b];
                    acc = (sum as f32).mul_add(scale, acc);
                }
                c[r * ldc + col] = acc;
            }
        }
    }
}

/// `vpdpbusd` on 16-lane registers.
struct Avx512BlockDot;

impl BlockDot for Avx512BlockDot {
    unsafe fn tile(
        &self,
        blocks: usize,
        x: &[ActivationRow; MR],
        w: &Panel,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        assert_tile(blocks, x, w, c, ldc);
        #[cfg(target_arch = "x86_64")]
        kernel::tile(blocks, x, w, c.as_mut_ptr(), ldc, accumulate);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AVX-512 VNNI is x86-64 only");
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use std::arch::x86_64::*;

    use super::{ActivationRow, Panel, BLOCK, CHUNKS, LANES, MR, NR};

    const J: usize = NR / LANES;

    /// 3 × 64 tile: 12 integer sums per block, 12 F32 accumulators.
    ///
    /// # Safety
    /// AVX-512 F, BW and VNNI must be available; the inputs must hold
    /// `blocks` blocks and `c` the tile ([`super::assert_tile`]).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile(
        blocks: usize,
        x: &[ActivationRow; MR],
        w: &Panel,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); J]; MR];
        if accumulate {
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(c.add(r * ldc + j * LANES));
                }
            }
        }
        let codes = x.map(|row| row.codes.as_ptr());
        let wc = w.codes.as_ptr();
        for b in 0..blocks {
            let mut sums = [[_mm512_setzero_si512(); J]; MR];
            for (r, row) in sums.iter_mut().enumerate() {
                let offset = _mm512_set1_epi32(*x[r].offsets.get_unchecked(b));
                *row = [offset; J];
            }
            for ch in 0..CHUNKS {
                let wp = wc.add((b * CHUNKS + ch) * NR * 4);
                let wv: [__m512i; J] =
                    std::array::from_fn(|j| _mm512_loadu_si512(wp.add(j * LANES * 4).cast()));
                for r in 0..MR {
                    let at = codes[r].add(b * BLOCK + ch * 4);
                    let a = _mm512_set1_epi32((at as *const i32).read_unaligned());
                    for j in 0..J {
                        sums[r][j] = _mm512_dpbusd_epi32(sums[r][j], wv[j], a);
                    }
                }
            }
            let ws = w.scales.as_ptr().add(b * NR);
            let dw: [__m512; J] = std::array::from_fn(|j| _mm512_loadu_ps(ws.add(j * LANES)));
            for r in 0..MR {
                let da = _mm512_set1_ps(*x[r].scales.get_unchecked(b));
                for j in 0..J {
                    let scale = _mm512_mul_ps(dw[j], da);
                    acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][j]), scale, acc[r][j]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                _mm512_storeu_ps(c.add(r * ldc + j * LANES), *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::shared::test_data;

    /// Partial tiles in both directions, several depth blocks, column tiles
    /// past the matrix's last row group, several row ranges.
    const SIZES: [(usize, usize, usize); 7] = [
        (1, 1, 32),
        (3, 64, 32 * 16),
        (5, 9, 64),
        (9, 50, 32 * 17),
        (37, 100, 32 * 33),
        (4, 48, 32),
        (4100, 20, 64),
    ];

    /// The product from the activations' and weights' decoded values, in F64.
    fn decoded_reference(a: &[f32], m: usize, w: &Q8Matrix) -> Vec<f64> {
        let (n, k) = (w.rows, w.cols);
        let (codes, scales) = crate::q8::quantize_activations(a, k);
        let weights = w.dequantize();
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|t| {
                        let x = f64::from(codes[i * k + t]) * f64::from(scales[(i * k + t) / 32]);
                        x * f64::from(weights[j * k + t])
                    })
                    .sum();
            }
        }
        out
    }

    fn product(m: usize, n: usize, k: usize, seed: u32) -> (Vec<f32>, Q8Matrix) {
        let a = test_data(m * k, seed);
        let w = Q8Matrix::quantize(&test_data(n * k, seed + 1), n, k).unwrap();
        (a, w)
    }

    #[test]
    fn reference_kernel_computes_the_quantised_product() {
        for (s, &(m, n, k)) in SIZES.iter().enumerate() {
            let (a, w) = product(m, n, k, s as u32);
            let want = decoded_reference(&a, m, &w);
            for parallel in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                gemm_on(
                    &ScalarBlockDot,
                    &a,
                    m,
                    &w,
                    &mut c,
                    parallel,
                    Epilogue::default(),
                );
                for (idx, (&g, &r)) in c.iter().zip(&want).enumerate() {
                    let bound = 1e-5 * (k as f64).sqrt() * (1.0 + r.abs());
                    assert!(
                        (f64::from(g) - r).abs() <= bound,
                        "{m}x{n}x{k} at {idx}: {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn quantised_product_stays_close_to_the_float_product() {
        let (m, n, k) = (7, 40, 256);
        let (a, w) = product(m, n, k, 9);
        let weights = w.dequantize();
        let mut c = vec![0f32; m * n];
        gemm_on(
            &ScalarBlockDot,
            &a,
            m,
            &w,
            &mut c,
            true,
            Epilogue::default(),
        );
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|t| a[i * k + t] * weights[j * k + t]).sum();
                // One activation step (1/127 of the block's peak) per term at most.
                let bound = k as f32 / 127.0 * 0.5 / 4.0;
                assert!((c[i * n + j] - exact).abs() < bound, "{i},{j}");
            }
        }
    }

    #[test]
    fn vnni_kernel_matches_the_reference_bit_for_bit() {
        if !cpu_has_avx512_vnni() {
            eprintln!("skipped: no AVX-512 VNNI on this CPU (run tools/test-avx512.sh)");
            return;
        }
        assert!(usable());
        for (s, &(m, n, k)) in SIZES.iter().enumerate() {
            let (a, w) = product(m, n, k, 40 + s as u32);
            let bias = test_data(n, 77);
            let epilogue = Epilogue {
                bias: Some(&bias),
                activation: Activation::QuickGelu,
                residual: None,
            };
            for parallel in [false, true] {
                for epilogue in [Epilogue::default(), epilogue] {
                    let mut got = vec![f32::NAN; m * n];
                    let mut want = vec![f32::NAN; m * n];
                    gemm_q8_with(&a, m, &w, &mut got, parallel, epilogue);
                    gemm_on(&ScalarBlockDot, &a, m, &w, &mut want, parallel, epilogue);
                    for (idx, (g, r)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g.to_bits(), r.to_bits(), "{m}x{n}x{k} at {idx}: {g} vs {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_codes_do_not_overflow_the_block_sums() {
        // Every weight and activation at ±127 (and −128 from the file).
        let (m, n, k) = (5, 17, 32 * 20);
        let a: Vec<f32> = (0..m * k)
            .map(|t| if t % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let codes: Vec<u8> = (0..n * k)
            .map(|t| if t % 2 == 0 { 0x80 } else { 0x7f })
            .collect();
        let scales = vec![half::f16::from_f32(0.5); n * k / 32];
        let w = Q8Matrix::from_blocks(n, k, &scales, &codes).unwrap();
        let want = decoded_reference(&a, m, &w);
        let mut c = vec![0f32; m * n];
        gemm_on(
            &ScalarBlockDot,
            &a,
            m,
            &w,
            &mut c,
            false,
            Epilogue::default(),
        );
        if cpu_has_avx512_vnni() {
            let mut got = vec![0f32; m * n];
            gemm_q8_with(&a, m, &w, &mut got, false, Epilogue::default());
            assert_eq!(got, c);
        }
        for (g, r) in c.iter().zip(&want) {
            assert!(
                (f64::from(*g) - r).abs() <= 1e-3 * r.abs().max(1.0),
                "{g} vs {r}"
            );
        }
    }
}
