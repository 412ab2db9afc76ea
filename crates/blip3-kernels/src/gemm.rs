//! `C = A·Wᵀ` for many activation rows (prefill, the ViT, the perceiver): a
//! blocked F32 GEMM whose right-hand side is read from the weight in its
//! storage format (F32, BF16, F16, Q8_0, Q4_0) while packing, so a
//! half-precision or quantised weight is never widened as a whole (widening
//! first costs a full extra write and read of the matrix per product).
//!
//! Layout: A [M, K] and C [M, N] row-major, W [N, K] row-major (the
//! checkpoint's `[out, in]`). The classic three-level blocking: A is packed
//! once per task into panels of [`MR`] rows, W in blocks of [`NC`] rows ×
//! [`KC`] columns into panels of [`NR`] rows; a register-tiled micro-kernel
//! computes an `MR × NR` tile of C from one A panel and one W panel. Tasks are
//! contiguous row ranges of C, spread over the thread pool.

use std::cell::RefCell;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::activation::Activation;
use crate::cpu::CpuFeatures;
use crate::scratch::{reset, with_reused, AlignedBf16};

/// Rows of A (and C) per micro-tile.
pub const MR: usize = 6;
/// Columns of C (rows of W) per micro-tile.
pub const NR: usize = 16;
/// Depth of one packed block.
pub const KC: usize = 256;
/// Rows of A per cache block (a multiple of [`MR`]; `MC × KC` F32 stays in L2).
const MC: usize = 144;
/// Rows of W per packed block (a multiple of [`NR`]; `NC × KC` F32 stays in L2).
const NC: usize = 256;
/// Rows of A per row range, at most (rounded to the micro-tile): the F32
/// kernel keeps a range's packed rows of one depth block in L2.
const ROWS_PER_RANGE: usize = 768;

/// A weight matrix W [N, K] whose rows the GEMM reads as F32 while packing.
pub trait WeightRows: Sync {
    /// Rows N (outputs).
    fn rows(&self) -> usize;
    /// Columns K (inputs).
    fn cols(&self) -> usize;
    /// Writes `W[row, k0 .. k0 + out.len()]` as F32. The GEMM asks for
    /// `k0` a multiple of [`KC`] and `out.len()` a multiple of [`KC`] or
    /// reaching K, so block formats can decode whole blocks.
    fn read_row(&self, row: usize, k0: usize, out: &mut [f32]);

    /// The rows as BF16 in memory, `(data, stride)` (row `r` at
    /// `data[r·stride..]`), when stored so: the AMX and AVX-512 BF16 paths
    /// read them without widening.
    fn bf16_rows(&self) -> Option<(&[bf16], usize)> {
        None
    }

    /// Whether rounding the decoded weight to BF16 stays within the
    /// format's own error, so that where the CPU has a BF16 GEMM (AMX,
    /// AVX-512 BF16) many-row products decode the rows to BF16 once and run
    /// on it: true for the block formats (an 8-bit code times an F16 scale
    /// has at most 18 significant bits; BF16 keeps 8, about as much as the
    /// code itself), false for F32 and F16 weights, whose products stay F32.
    fn decodes_to_bf16(&self) -> bool {
        false
    }

    /// The matrix as Q8_0 blocks, when it is one: where the CPU has AVX-512
    /// VNNI and no AMX, many-row products multiply its codes as integers
    /// ([`crate::avx512_vnni`]).
    fn as_q8_0(&self) -> Option<&crate::q8::Q8Matrix> {
        None
    }
}

/// One product `C = A·Wᵀ` on BF16 weights, for the BF16 GEMM paths
/// ([`crate::amx`], [`crate::avx512_bf16`]): `c[i·n + j] = Σ_t a[i·k + t] ·
/// w[j·stride + t]`.
#[derive(Debug, Clone, Copy)]
pub struct Bf16Product<'a> {
    /// A [m, k], row-major.
    pub a: &'a [f32],
    /// Rows of A (and C).
    pub m: usize,
    /// W: n rows of k BF16 values, `stride` apart.
    pub w: &'a [bf16],
    /// Rows of W (columns of C).
    pub n: usize,
    /// Depth.
    pub k: usize,
    /// Distance between W's rows (≥ k).
    pub stride: usize,
}

impl Bf16Product<'_> {
    /// Panics unless A, W and an output of `c_len` values fit the sizes.
    pub fn assert_sizes(&self, c_len: usize) {
        let Self {
            a,
            m,
            w,
            n,
            k,
            stride,
        } = *self;
        assert!(stride >= k && a.len() == m * k && c_len == m * n, "sizes");
        assert!(n == 0 || (n - 1) * stride + k <= w.len(), "weight size");
    }
}

/// Element types a dense weight may be stored in.
pub trait DenseElement: Copy + Send + Sync {
    /// Widens `src` into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);

    /// `data` itself when the element type is BF16.
    fn as_bf16(data: &[Self]) -> Option<&[bf16]> {
        let _ = data;
        None
    }
}

impl DenseElement for f32 {
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl DenseElement for bf16 {
    fn widen(src: &[bf16], dst: &mut [f32]) {
        // BF16 is the high half of an F32: a shift, which vectorises.
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }

    fn as_bf16(data: &[bf16]) -> Option<&[bf16]> {
        Some(data)
    }
}

impl DenseElement for f16 {
    fn widen(src: &[f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(dst);
    }
}

/// A dense row-major weight [rows, cols] in F32, BF16 or F16 (rows `stride`
/// elements apart).
#[derive(Debug, Clone, Copy)]
pub struct DenseRows<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a, T: DenseElement> DenseRows<'a, T> {
    /// Views `data` as [rows, cols]; `None` when the length does not match.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Option<Self> {
        (data.len() == rows * cols).then_some(Self {
            data,
            rows,
            cols,
            stride: cols,
        })
    }

    /// Views `data` as [rows, cols] with rows `stride` elements apart (a
    /// column range of a wider matrix); `None` when it does not fit.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Option<Self> {
        let fits = rows == 0 || (stride >= cols && (rows - 1) * stride + cols <= data.len());
        fits.then_some(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
}

impl<T: DenseElement> WeightRows for DenseRows<'_, T> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn read_row(&self, row: usize, k0: usize, out: &mut [f32]) {
        let start = row * self.stride + k0;
        T::widen(&self.data[start..start + out.len()], out);
    }

    fn bf16_rows(&self) -> Option<(&[bf16], usize)> {
        T::as_bf16(self.data).map(|data| (data, self.stride))
    }
}

/// What is applied to each finished output tile while it is still in cache:
/// `c = act(A·Wᵀ + bias) + residual`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// One value per output column (weight row), added to every row.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub activation: Activation,
    /// A matrix the size of C ([m, n], row-major) added last: a transformer
    /// block's skip connection, which otherwise costs one more pass over
    /// the output (and over the residual) after the product.
    pub residual: Option<&'a [f32]>,
}

impl Epilogue<'_> {
    pub(crate) fn is_identity(&self) -> bool {
        self.bias.is_none() && self.activation == Activation::Identity && self.residual.is_none()
    }

    /// The CPU features the epilogue runs with: detected for a real one;
    /// none for the identity, because the GEMM paths' self-checks (behind
    /// their `usable`) run without an epilogue while `CpuFeatures::detect`
    /// is being answered, and must not wait on it.
    pub(crate) fn features(&self) -> CpuFeatures {
        if self.is_identity() {
            CpuFeatures::SCALAR
        } else {
            CpuFeatures::detect()
        }
    }

    /// Panics unless the bias and the residual fit C [m, n].
    pub(crate) fn check(&self, m: usize, n: usize) {
        if let Some(bias) = self.bias {
            assert_eq!(bias.len(), n, "bias size");
        }
        if let Some(residual) = self.residual {
            assert_eq!(residual.len(), m * n, "residual size");
        }
    }

    /// C [_, n] of a product of depth 0: zeros, then the epilogue per row.
    pub(crate) fn fill_depth_zero(&self, features: CpuFeatures, c: &mut [f32], n: usize) {
        c.fill(0.0);
        for (i, row) in c.chunks_mut(n).enumerate() {
            self.apply(features, row, (i, 0), n);
        }
    }

    /// Finishes `out`, the outputs of row `i`, columns `j .. j + out.len()`
    /// of C [_, n].
    pub(crate) fn apply(
        &self,
        features: CpuFeatures,
        out: &mut [f32],
        (i, j): (usize, usize),
        n: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if features.avx512 {
            let len = out.len();
            let bias = self.bias.map(|b| &b[j..j + len]);
            let residual = self.residual.map(|r| r[i * n + j..][..len].as_ptr());
            // SAFETY: AVX-512 F was detected; one row of `len` values, which
            // `out`, the bias and the residual slices all hold.
            unsafe {
                crate::activation::avx512::finish_tile(
                    out.as_mut_ptr(),
                    len,
                    (1, len),
                    bias,
                    self.activation,
                    residual,
                );
            }
            return;
        }
        if let Some(bias) = self.bias {
            for (o, b) in out.iter_mut().zip(&bias[j..]) {
                *o += b;
            }
        }
        self.activation.apply(features, out);
        self.add_residual(out, (i, j), n);
    }

    /// Adds the residual's row `i`, columns `j .. j + out.len()`, to `out`.
    pub(crate) fn add_residual(&self, out: &mut [f32], (i, j): (usize, usize), n: usize) {
        if let Some(residual) = self.residual {
            let at = i * n + j;
            let len = out.len();
            for (o, r) in out.iter_mut().zip(&residual[at..at + len]) {
                *o += r;
            }
        }
    }
}

/// Which micro-kernel the GEMM runs on with `features` (AMX: for BF16
/// weights whose depth is a multiple of 32, else AVX-512 BF16 where present;
/// Q8_0 weights AVX-512 VNNI where there is no AMX; other weights take the
/// F32 kernel named last).
pub fn path(features: CpuFeatures) -> &'static str {
    let int8 = features.avx512_vnni && crate::avx512_vnni::usable();
    if features.amx_bf16 && features.avx512_bf16 {
        "amx-bf16 (bf16 weights), avx512-bf16, avx512"
    } else if features.amx_bf16 {
        "amx-bf16 (bf16 weights), avx512"
    } else if features.avx512_bf16 && int8 {
        "avx512-vnni (q8_0 weights), avx512-bf16 (bf16 and other weights), avx512"
    } else if features.avx512_bf16 {
        "avx512-bf16 (bf16 weights), avx512"
    } else if int8 {
        "avx512-vnni (q8_0 weights), avx512"
    } else if features.avx512 {
        "avx512"
    } else if features.avx2_fma {
        "avx2-fma"
    } else if cfg!(target_arch = "aarch64") && features.neon {
        "neon"
    } else {
        "scalar"
    }
}

/// Whether many-row products with `w` run on integer dot products
/// ([`crate::avx512_vnni`]): Q8_0 weights on a CPU with AVX-512 VNNI and no
/// AMX (where AMX is, its BF16 tiles out-run the 16-lane integer dot
/// products). Such a product reads the weight once at any row count, so
/// callers need not split short ones into GEMV passes.
pub fn runs_on_integers(w: &dyn WeightRows) -> bool {
    let features = CpuFeatures::detect();
    w.as_q8_0().is_some()
        && !(features.amx_bf16 && crate::amx::supports_depth(w.cols()))
        && features.avx512_vnni
        && crate::avx512_vnni::usable()
}

/// `c[i·N + j] = Σ_k a[i·K + k] · W[j, k]` for `i < m`.
///
/// Panics if the slice lengths do not match (a programming error: callers
/// derive them from the same shapes).
pub fn gemm(a: &[f32], m: usize, w: &dyn WeightRows, c: &mut [f32]) {
    gemm_with(a, m, w, c, Epilogue::default());
}

/// [`gemm`] followed by a bias and an activation, fused into the tile stores.
pub fn gemm_with(a: &[f32], m: usize, w: &dyn WeightRows, c: &mut [f32], epilogue: Epilogue) {
    gemm_impl(a, m, w, c, epilogue, true);
}

/// [`gemm`] on the calling thread only (for callers that already run one
/// small product per thread, such as attention heads).
pub fn gemm_serial(a: &[f32], m: usize, w: &dyn WeightRows, c: &mut [f32]) {
    gemm_impl(a, m, w, c, Epilogue::default(), false);
}

fn gemm_impl(
    a: &[f32],
    m: usize,
    w: &dyn WeightRows,
    c: &mut [f32],
    epilogue: Epilogue,
    parallel: bool,
) {
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(a.len(), m * k, "left operand size");
    assert_eq!(c.len(), m * n, "output size");
    epilogue.check(m, n);
    if m == 0 || n == 0 {
        return;
    }
    let features = CpuFeatures::detect();
    if k == 0 {
        epilogue.fill_depth_zero(features, c, n);
        return;
    }
    if features.amx_bf16 && crate::amx::supports_depth(k) {
        if let Some((data, stride)) = w.bf16_rows() {
            let product = Bf16Product {
                a,
                m,
                w: data,
                n,
                k,
                stride,
            };
            // The epilogue runs on each output tile as it is stored.
            crate::amx::gemm_bf16_with(product, c, parallel, epilogue);
            return;
        }
    }
    if features.avx512_bf16 {
        if let Some((data, stride)) = w.bf16_rows() {
            let product = Bf16Product {
                a,
                m,
                w: data,
                n,
                k,
                stride,
            };
            // The epilogue runs on each output tile after its last store.
            crate::avx512_bf16::gemm_bf16_with(product, c, parallel, epilogue);
            return;
        }
    }
    if let Some(q8) = w.as_q8_0().filter(|_| runs_on_integers(w)) {
        crate::avx512_vnni::gemm_q8_with(a, m, q8, c, parallel, epilogue);
        return;
    }
    let bf16_path = (features.amx_bf16 && crate::amx::supports_depth(k)) || features.avx512_bf16;
    if bf16_path && w.decodes_to_bf16() && w.bf16_rows().is_none() {
        // Decoded once per call (the F32 path decodes W once per row range
        // anyway) into a buffer the calling thread keeps.
        let mut decoded = DECODED.with(|cell| cell.take());
        decode_to_bf16(w, &mut decoded);
        let rows = DenseRows::new(decoded.as_slice(), n, k).expect("decoded size");
        gemm_impl(a, m, &rows, c, epilogue, parallel);
        DECODED.with(|cell| cell.replace(decoded));
        return;
    }
    let out = Output(c.as_mut_ptr());
    let packed_rows = |i0: usize, rows: usize| pack_a(&a[i0 * k..(i0 + rows) * k], rows, k);
    let tiles = TileMultiples {
        rows: MR,
        cols: NR,
        rows_per_range: ROWS_PER_RANGE,
    };
    for_each_rectangle(m, n, tiles, parallel, packed_rows, |packed_a, rect| {
        let task = Task {
            features,
            packed_a,
            rect,
            w,
            epilogue: &epilogue,
        };
        // SAFETY: `out` points to `c`, [m, n]; rectangles tile it without
        // overlap and each task writes only its own.
        unsafe { task.run(&out, n) };
    });
}

thread_local! {
    /// The calling thread's block-format weight decoded to BF16, kept from
    /// call to call (the largest, the language model's gate_up projection,
    /// is 100 MB).
    static DECODED: RefCell<AlignedBf16> = const { RefCell::new(AlignedBf16::new()) };
    /// Each pool thread's row decoded to F32 before rounding.
    static DECODED_ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Decodes every row of `w` and rounds it to BF16 into `out` ([rows, cols],
/// 64-byte aligned as the AMX path wants it), rows spread over the pool.
fn decode_to_bf16(w: &dyn WeightRows, out: &mut AlignedBf16) {
    let (n, k) = (w.rows(), w.cols());
    out.resize(n * k)
        .par_chunks_mut(k)
        .enumerate()
        .for_each(|(row, dst)| {
            with_reused(&DECODED_ROW, |f32_row| {
                reset(f32_row, k);
                w.read_row(row, 0, f32_row);
                crate::widen::round_to_bf16(f32_row, dst);
            })
        });
}

/// The sizes rectangles of C are multiples of (the micro-tile).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TileMultiples {
    /// Rows of C per micro-tile.
    pub rows: usize,
    /// Columns of C per micro-tile.
    pub cols: usize,
    /// Rows of C per row range, at most: each range packs the weight once
    /// more, so a kernel whose packed activations need not stay in cache
    /// takes tall ranges.
    pub rows_per_range: usize,
}

/// One rectangle of C [m, n]: rows `first_row .. first_row + rows`,
/// columns `cols`.
#[derive(Debug, Clone)]
pub(crate) struct Rectangle {
    /// First row of C.
    pub first_row: usize,
    /// Rows of C.
    pub rows: usize,
    /// Columns of C.
    pub cols: std::ops::Range<usize>,
}

/// Cuts C [m, n] into rectangles for the thread pool: few row ranges (each
/// packs the weight once more), each split into enough column ranges to keep
/// every thread busy. `pack(first_row, rows)` runs once per row range, then
/// `run(&packed, rectangle)` once per rectangle of it (in parallel when
/// `parallel`); row ranges run one after another, so a rectangle never
/// overlaps another running at the same time.
pub(crate) fn for_each_rectangle<P: Sync>(
    m: usize,
    n: usize,
    tiles: TileMultiples,
    parallel: bool,
    pack: impl Fn(usize, usize) -> P,
    run: impl Fn(&P, Rectangle) + Sync,
) {
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let row_tasks = m.div_ceil(tiles.rows_per_range.max(tiles.rows));
    let rows_per_task = m.div_ceil(row_tasks).div_ceil(tiles.rows) * tiles.rows;
    let col_tasks = if parallel {
        balanced_tasks(n.div_ceil(tiles.cols), threads)
    } else {
        1
    };
    let cols_per_task = n.div_ceil(col_tasks).div_ceil(tiles.cols) * tiles.cols;
    for first_row in (0..m).step_by(rows_per_task) {
        let rows = rows_per_task.min(m - first_row);
        let packed = pack(first_row, rows);
        let one = |j0: usize| {
            let cols = j0..(j0 + cols_per_task).min(n);
            run(
                &packed,
                Rectangle {
                    first_row,
                    rows,
                    cols,
                },
            );
        };
        if parallel {
            (0..n).into_par_iter().step_by(cols_per_task).for_each(one);
        } else {
            (0..n).step_by(cols_per_task).for_each(one);
        }
    }
}

/// Tasks wanted per thread, at most (load balance against uneven
/// rectangles and threads slowed by other work).
const TASKS_PER_THREAD: usize = 4;

/// How many column ranges to cut `tiles` column tiles into for `threads`
/// threads: the count, up to [`TASKS_PER_THREAD`] per thread, whose ranges
/// (`⌈tiles / count⌉` tiles each) give the busiest thread the fewest tiles,
/// the largest such count on a tie. Taking `TASKS_PER_THREAD × threads`
/// outright can leave one thread a whole range more: 20 tiles (a 1280-wide
/// product on 64-column tiles) in ranges of 3 make 7 ranges, 12 tiles for one
/// thread of two against 10 for ranges of 5.
fn balanced_tasks(tiles: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    if tiles == 0 {
        return 1;
    }
    let busiest = |count: usize| {
        let per = tiles.div_ceil(count);
        tiles.div_ceil(per).div_ceil(threads) * per
    };
    (1..=(TASKS_PER_THREAD * threads).min(tiles).max(1))
        .rev()
        .min_by_key(|&count| busiest(count))
        .unwrap_or(1)
}

/// Which part of the next weight block tile `t` of `tiles` (the current
/// block's tiles, in order) prefetches into L2: `(part, parts)`, for the
/// last quarter of the tiles only. Spread over all of them, the early lines
/// were evicted again by the C tiles and activations passing through L2
/// before the packing read them (in a BF16 prefill the packing then waited
/// on memory for 12 % of the samples).
pub(crate) fn late_prefetch_part(t: usize, tiles: usize) -> Option<(usize, usize)> {
    let from = tiles - tiles.div_ceil(4);
    (t >= from).then(|| (t - from, tiles - from))
}

/// Part `t` of `parts` of `0..items`, in order, as even as whole parts of
/// `ceil(items / parts)` allow (the later ones may be short or empty): the
/// lines a prefetch spread over `parts` tiles asks for at tile `t`.
pub(crate) fn part_of(items: usize, t: usize, parts: usize) -> std::ops::Range<usize> {
    let per_part = items.div_ceil(parts.max(1));
    (t * per_part).min(items)..((t + 1) * per_part).min(items)
}

/// Asks for the lines of C's tile (rows `rows`, columns `cols`, row stride
/// `n`) to be brought into L1 while the tile before it computes. Once a
/// product's C outgrows L2 (a ViT product over 5 crops has 3650 rows: 3.7
/// MB per 256 columns), each tile's start waited on L3 or memory for the
/// sums of the earlier depth blocks, and its stores for their lines. With
/// this (and the BF16 path's activation prefetch), the BF16 ViT stage of
/// alternated `blip3 bench` runs on a Zen 5 EPYC went from 9.2–9.7 s to
/// 8.2–8.8 s (`bench/results/20261203-c-prefetch-ab.txt`); the prefill,
/// whose C stays in L2, did not move measurably.
pub(crate) fn prefetch_c_tile(
    out: &Output,
    n: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    if cols.is_empty() {
        return;
    }
    for r in rows {
        let first = out.0.wrapping_add(r * n + cols.start);
        // One address per 16 floats (a line, whatever the alignment), and
        // the last element for the line a misaligned row ends in.
        for offset in (0..cols.len()).step_by(16) {
            crate::shared::prefetch_l1(first.wrapping_add(offset).cast());
        }
        crate::shared::prefetch_l1(first.wrapping_add(cols.len() - 1).cast());
    }
}

/// The output matrix, written by tasks in disjoint rectangles.
pub(crate) struct Output(pub(crate) *mut f32);
// SAFETY: tasks only ever write disjoint rectangles through it.
unsafe impl Sync for Output {}
unsafe impl Send for Output {}

/// The work on one rectangle of C.
struct Task<'a> {
    features: CpuFeatures,
    /// The task's rows of A, packed by [`pack_a`].
    packed_a: &'a [f32],
    rect: Rectangle,
    w: &'a dyn WeightRows,
    epilogue: &'a Epilogue<'a>,
}

impl Task<'_> {
    /// # Safety
    /// `out` must point to a [M, n] row-major matrix containing this task's
    /// rectangle, and no other thread may access that rectangle meanwhile.
    unsafe fn run(&self, out: &Output, n: usize) {
        let (m, k) = (self.rect.rows, self.w.cols());
        let features = self.features;
        let packed_a = self.packed_a;
        let a_panels = m.div_ceil(MR);
        let mut packed_b = vec![0f32; NC * KC];
        let mut rows_buf = vec![0f32; NR * KC];
        let mut tile = [0f32; MR * NR];
        let finish = (!self.epilogue.is_identity()).then_some((self.epilogue, features));
        for j0 in self.rect.cols.clone().step_by(NC) {
            let nc = NC.min(self.rect.cols.end - j0);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                pack_b(self.w, j0, nc, k0, kc, &mut packed_b, &mut rows_buf);
                // This depth block of A: panels of kc × MR after the earlier blocks.
                let a_block = &packed_a[k0 * a_panels * MR..][..a_panels * kc * MR];
                let accumulate = k0 > 0;
                let last = k0 + kc == k;
                for ic in (0..a_panels).step_by(MC / MR) {
                    for jp in 0..nc.div_ceil(NR) {
                        let b_panel = &packed_b[jp * kc * NR..][..kc * NR];
                        let j = j0 + jp * NR;
                        for ip in ic..a_panels.min(ic + MC / MR) {
                            let a_panel = &a_block[ip * kc * MR..][..kc * MR];
                            let i = ip * MR;
                            let first = self.rect.first_row;
                            let place = TilePlace::clipped(
                                (MR, NR),
                                (first + i, first + m),
                                (j, self.rect.cols.end),
                            );
                            let finish = if last { finish } else { None };
                            write_tile(
                                out,
                                n,
                                place,
                                &mut tile,
                                accumulate,
                                finish,
                                |c, ldc, acc| {
                                    micro_kernel(features, kc, a_panel, b_panel, c, ldc, acc)
                                },
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Where one micro-tile lies in C [_, n]: its live rows `row .. row + rows`
/// and columns `col .. col + cols`, in a kernel tile of `shape` (rows,
/// columns); tiles at the matrix's edges have fewer live ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TilePlace {
    row: usize,
    rows: usize,
    col: usize,
    cols: usize,
    shape: (usize, usize),
}

impl TilePlace {
    /// The tile of `shape` whose first element is C[row, col], its live part
    /// ending before row `row_end` and column `col_end` (the task's
    /// rectangle).
    pub(crate) fn clipped(
        shape: (usize, usize),
        (row, row_end): (usize, usize),
        (col, col_end): (usize, usize),
    ) -> Self {
        Self {
            row,
            rows: shape.0.min(row_end - row),
            col,
            cols: shape.1.min(col_end - col),
            shape,
        }
    }
}

/// Runs one depth block's micro-kernel for the tile at `place`, the step
/// every GEMM path shares: `kernel(c, ldc, accumulate)` writes a whole tile
/// straight into C (row stride `n`); an edge tile goes through `scratch`
/// and only its live part is stored (added when `accumulate`). With
/// `finish` (the last depth block), the epilogue then runs on the tile's
/// rows while they are in L1.
///
/// # Safety
/// `out` must point to a [_, n] row-major matrix containing the tile, which
/// no other thread accesses meanwhile.
pub(crate) unsafe fn write_tile(
    out: &Output,
    n: usize,
    place: TilePlace,
    scratch: &mut [f32],
    accumulate: bool,
    finish: Option<(&Epilogue, CpuFeatures)>,
    kernel: impl FnOnce(&mut [f32], usize, bool),
) {
    let TilePlace {
        row,
        rows,
        col,
        cols,
        shape: (tile_rows, tile_cols),
    } = place;
    // Row `r` of the tile in C, `len` elements from its first column.
    let c_row =
        |r: usize, len: usize| std::slice::from_raw_parts_mut(out.0.add((row + r) * n + col), len);
    if rows == tile_rows && cols == tile_cols {
        kernel(c_row(0, (tile_rows - 1) * n + tile_cols), n, accumulate);
    } else {
        let scratch = &mut scratch[..tile_rows * tile_cols];
        kernel(scratch, tile_cols, false);
        store_partial_tile(scratch, tile_cols, rows, accumulate, |r| c_row(r, cols));
    }
    if let Some((epilogue, features)) = finish {
        #[cfg(target_arch = "x86_64")]
        if features.avx512 {
            let bias = epilogue.bias.map(|b| &b[col..col + cols]);
            let span = rows.saturating_sub(1) * n + cols;
            let residual = epilogue
                .residual
                .map(|r| r[row * n + col..][..span].as_ptr());
            // SAFETY: AVX-512 F was detected; the tile's rows and columns lie
            // in C (the caller's contract) and in the residual, which has
            // C's shape (the span is bounds-checked above).
            crate::activation::avx512::finish_tile(
                out.0.add(row * n + col),
                n,
                (rows, cols),
                bias,
                epilogue.activation,
                residual,
            );
            return;
        }
        for r in 0..rows {
            epilogue.apply(features, c_row(r, cols), (row + r, col), n);
        }
    }
}

/// Writes the first `rows` rows of a micro-tile (row stride `tile_cols`)
/// into the rows `dst(r)` of C, whose length is the tile's live columns:
/// added to them when `accumulate`, else copied.
fn store_partial_tile<'a>(
    tile: &[f32],
    tile_cols: usize,
    rows: usize,
    accumulate: bool,
    dst: impl Fn(usize) -> &'a mut [f32],
) {
    for r in 0..rows {
        let out = dst(r);
        let src = &tile[r * tile_cols..][..out.len()];
        if accumulate {
            out.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            out.copy_from_slice(src);
        }
    }
}

/// Packs A [m, k] for all depth blocks: block `k0` holds `ceil(m/MR)` panels
/// of `kc × MR` (element `(kk, r)` at `kk·MR + r`), rows past `m` zero.
fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = crate::scratch::zeroed(panels * MR * k);
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let block = &mut out[k0 * panels * MR..][..panels * kc * MR];
        for i in 0..m {
            let (p, r) = (i / MR, i % MR);
            let panel = &mut block[p * kc * MR..][..kc * MR];
            for (kk, &v) in a[i * k + k0..][..kc].iter().enumerate() {
                panel[kk * MR + r] = v;
            }
        }
    }
    out
}

/// Packs W rows `j0 .. j0 + nc`, columns `k0 .. k0 + kc` into panels of
/// `kc × NR` (element `(kk, c)` at `kk·NR + c`): NR rows are decoded into
/// `rows` first, then interleaved with sequential writes. Columns of a last
/// partial panel are zero.
fn pack_b(
    w: &dyn WeightRows,
    j0: usize,
    nc: usize,
    k0: usize,
    kc: usize,
    out: &mut [f32],
    rows: &mut [f32],
) {
    for p in 0..nc.div_ceil(NR) {
        let live = NR.min(nc - p * NR);
        for c in 0..NR {
            let dst = &mut rows[c * kc..(c + 1) * kc];
            if c < live {
                w.read_row(j0 + p * NR + c, k0, dst);
            } else {
                dst.fill(0.0);
            }
        }
        let panel = &mut out[p * kc * NR..][..kc * NR];
        interleave(rows, kc, panel);
    }
}

/// `panel[kk·NR + c] = rows[c·kc + kk]`: NR rows of `kc` values transposed
/// into the micro-kernel's depth-major order (8 × 8 AVX or 4 × 4 NEON
/// transposes).
fn interleave(rows: &[f32], kc: usize, panel: &mut [f32]) {
    assert!(rows.len() >= NR * kc && panel.len() >= NR * kc);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if CpuFeatures::detect().avx2_fma {
        // SAFETY: AVX2 was detected; the assert bounds every access.
        done = unsafe { avx2::interleave(rows.as_ptr(), kc, panel.as_mut_ptr()) };
    }
    #[cfg(target_arch = "aarch64")]
    if CpuFeatures::detect().neon {
        done = neon::interleave(rows, kc, panel);
    }
    for kk in done..kc {
        for c in 0..NR {
            panel[kk * NR + c] = rows[c * kc + kk];
        }
    }
}

/// `C[MR, NR] (+)= A_panel · B_panel` with row stride `ldc`.
fn micro_kernel(
    features: CpuFeatures,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    assert!(c.len() >= (MR - 1) * ldc + NR);
    #[cfg(target_arch = "x86_64")]
    if features.avx512 {
        // SAFETY: AVX-512 F was detected; the asserts above bound every access.
        unsafe {
            avx512::micro_kernel(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate)
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma {
        // SAFETY: AVX2 and FMA were detected; the asserts above bound every access.
        unsafe { avx2::micro_kernel(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if features.neon {
        neon::micro_kernel(kc, a, b, c, ldc, accumulate);
        return;
    }
    let _ = features;
    let mut acc = [[0f32; NR]; MR];
    for kk in 0..kc {
        let bk = &b[kk * NR..][..NR];
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let av = a[kk * MR + r];
            for (x, &bv) in acc_row.iter_mut().zip(bk) {
                *x += av * bv;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let dst = &mut c[r * ldc..][..NR];
        for (d, &v) in dst.iter_mut().zip(acc_row) {
            *d = if accumulate { *d + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// Transposes the first `kc / 8 · 8` depth steps of NR rows (row `c` at
    /// `rows + c·kc`) into `panel` (depth `kk` at `panel + kk·NR`); returns
    /// how many depth steps it wrote.
    ///
    /// # Safety
    /// AVX2 must be available; `rows` holds `NR·kc` and `panel` `kc·NR` values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn interleave(rows: *const f32, kc: usize, panel: *mut f32) -> usize {
        let whole = kc / 8 * 8;
        for kk in (0..whole).step_by(8) {
            for half in 0..NR / 8 {
                let r = |c: usize| _mm256_loadu_ps(rows.add((half * 8 + c) * kc + kk));
                let t0 = _mm256_unpacklo_ps(r(0), r(1));
                let t1 = _mm256_unpackhi_ps(r(0), r(1));
                let t2 = _mm256_unpacklo_ps(r(2), r(3));
                let t3 = _mm256_unpackhi_ps(r(2), r(3));
                let t4 = _mm256_unpacklo_ps(r(4), r(5));
                let t5 = _mm256_unpackhi_ps(r(4), r(5));
                let t6 = _mm256_unpacklo_ps(r(6), r(7));
                let t7 = _mm256_unpackhi_ps(r(6), r(7));
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let columns = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (t, col) in columns.iter().enumerate() {
                    _mm256_storeu_ps(panel.add((kk + t) * NR + half * 8), *col);
                }
            }
        }
        whole
    }

    /// 6 × 16 tile in 12 accumulators; per depth step two W loads, six A
    /// broadcasts and twelve FMAs.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` holds `kc·MR`, `b` `kc·NR` values
    /// and `c` an `MR × NR` tile with row stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn micro_kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for kk in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(kk * NR));
            let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
            let ak = a.add(kk * MR);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ak.add(r));
                acc_row[0] = _mm256_fmadd_ps(av, b0, acc_row[0]);
                acc_row[1] = _mm256_fmadd_ps(av, b1, acc_row[1]);
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            let p = c.add(r * ldc);
            let (mut lo, mut hi) = (acc_row[0], acc_row[1]);
            if accumulate {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(p));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(p.add(8)));
            }
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p.add(8), hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// 6 × 16 tile, one 16-lane register per row; even and odd depth steps
    /// go to separate accumulators (12 in all) so that the FMA latency is
    /// hidden as in the 12-accumulator AVX2 kernel.
    ///
    /// # Safety
    /// AVX-512 F must be available; `a` holds `kc·MR`, `b` `kc·NR` values
    /// and `c` an `MR × NR` tile with row stride `ldc`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn micro_kernel(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut even = [_mm512_setzero_ps(); MR];
        let mut odd = [_mm512_setzero_ps(); MR];
        let step = |acc: &mut [__m512; MR], kk: usize| {
            let bk = _mm512_loadu_ps(b.add(kk * NR));
            let ak = a.add(kk * MR);
            for (r, acc_row) in acc.iter_mut().enumerate() {
                *acc_row = _mm512_fmadd_ps(_mm512_set1_ps(*ak.add(r)), bk, *acc_row);
            }
        };
        let mut kk = 0;
        while kk + 2 <= kc {
            step(&mut even, kk);
            step(&mut odd, kk + 1);
            kk += 2;
        }
        if kk < kc {
            step(&mut even, kk);
        }
        for r in 0..MR {
            let p = c.add(r * ldc);
            let mut sum = _mm512_add_ps(even[r], odd[r]);
            if accumulate {
                sum = _mm512_add_ps(sum, _mm512_loadu_ps(p));
            }
            _mm512_storeu_ps(p, sum);
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{MR, NR};

    /// Transposes the first `kc / 4 · 4` depth steps of NR rows (row `c` at
    /// `rows[c·kc..]`) into `panel` (depth `kk` at `panel[kk·NR..]`), 4 × 4
    /// at a time; returns how many depth steps it wrote.
    ///
    /// Panics unless `rows` and `panel` hold `NR·kc` values.
    pub fn interleave(rows: &[f32], kc: usize, panel: &mut [f32]) -> usize {
        assert!(rows.len() >= NR * kc && panel.len() >= NR * kc);
        let whole = kc / 4 * 4;
        // SAFETY: NEON is part of every aarch64 CPU; loads stay below
        // (NR − 1)·kc + whole and stores below whole·NR, inside the assert.
        unsafe {
            let (src, dst) = (rows.as_ptr(), panel.as_mut_ptr());
            for kk in (0..whole).step_by(4) {
                for quarter in 0..NR / 4 {
                    let r = |c: usize| vld1q_f32(src.add((quarter * 4 + c) * kc + kk));
                    // Pairs of rows interleaved, then pairs of pairs.
                    let t0 = vreinterpretq_f64_f32(vtrn1q_f32(r(0), r(1)));
                    let t1 = vreinterpretq_f64_f32(vtrn2q_f32(r(0), r(1)));
                    let t2 = vreinterpretq_f64_f32(vtrn1q_f32(r(2), r(3)));
                    let t3 = vreinterpretq_f64_f32(vtrn2q_f32(r(2), r(3)));
                    let columns = [
                        vtrn1q_f64(t0, t2),
                        vtrn1q_f64(t1, t3),
                        vtrn2q_f64(t0, t2),
                        vtrn2q_f64(t1, t3),
                    ];
                    for (t, col) in columns.iter().enumerate() {
                        let at = dst.add((kk + t) * NR + quarter * 4);
                        vst1q_f32(at, vreinterpretq_f32_f64(*col));
                    }
                }
            }
        }
        whole
    }

    /// 6 × 16 tile in 24 four-lane accumulators (of the 32 registers); per
    /// depth step four W loads, one 4-lane and one 2-lane A load, and 24
    /// FMAs taking their A value straight from a lane (no broadcasts).
    ///
    /// Panics unless `a` holds `kc·MR`, `b` `kc·NR` values and `c` an
    /// `MR × NR` tile with row stride `ldc`.
    pub fn micro_kernel(
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        assert!(ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: NEON is part of every aarch64 CPU; the asserts bound every
        // load and store.
        unsafe {
            let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
            let mut acc = [[vdupq_n_f32(0.0); NR / 4]; MR];
            for kk in 0..kc {
                let bk = b.add(kk * NR);
                let bv = [0, 4, 8, 12].map(|q| vld1q_f32(bk.add(q)));
                let ak = a.add(kk * MR);
                let (a0, a1) = (vld1q_f32(ak), vld1_f32(ak.add(4)));
                for (q, &w) in bv.iter().enumerate() {
                    acc[0][q] = vfmaq_laneq_f32::<0>(acc[0][q], w, a0);
                    acc[1][q] = vfmaq_laneq_f32::<1>(acc[1][q], w, a0);
                    acc[2][q] = vfmaq_laneq_f32::<2>(acc[2][q], w, a0);
                    acc[3][q] = vfmaq_laneq_f32::<3>(acc[3][q], w, a0);
                    acc[4][q] = vfmaq_lane_f32::<0>(acc[4][q], w, a1);
                    acc[5][q] = vfmaq_lane_f32::<1>(acc[5][q], w, a1);
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                let p = c.add(r * ldc);
                for (q, &v) in acc_row.iter().enumerate() {
                    let sum = if accumulate {
                        vaddq_f32(v, vld1q_f32(p.add(4 * q)))
                    } else {
                        v
                    };
                    vst1q_f32(p.add(4 * q), sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_cover_every_item_once_in_order() {
        for items in [0usize, 1, 7, 64, 100, 1000] {
            for parts in [1usize, 2, 3, 8, 13, 200] {
                let mut next = 0;
                for t in 0..parts {
                    let range = part_of(items, t, parts);
                    assert_eq!(range.start, next.min(items), "{items} {parts} {t}");
                    assert!(range.len() <= items.div_ceil(parts));
                    next = range.end;
                }
                assert_eq!(next, items, "{items} items in {parts} parts");
            }
        }
    }

    #[test]
    fn prefetch_parts_cover_the_last_quarter_once() {
        for tiles in 1..50 {
            let parts: Vec<_> = (0..tiles)
                .filter_map(|t| super::late_prefetch_part(t, tiles))
                .collect();
            assert_eq!(parts.len(), tiles.div_ceil(4), "{tiles}");
            for (i, &(part, count)) in parts.iter().enumerate() {
                assert_eq!((part, count), (i, parts.len()), "{tiles}");
            }
        }
    }

    #[test]
    fn column_ranges_leave_no_thread_a_whole_range_more() {
        // 20 tiles on 2 threads: ranges of 5 (4 of them), not 7 ranges of 3.
        assert_eq!(super::balanced_tasks(20, 2), 4);
        // Enough tiles: the full TASKS_PER_THREAD per thread.
        assert_eq!(super::balanced_tasks(80, 2), 8);
        assert_eq!(super::balanced_tasks(144, 2), 8);
        // Fewer tiles than tasks wanted; one thread; nothing to do.
        assert_eq!(super::balanced_tasks(3, 2), 3);
        assert_eq!(super::balanced_tasks(7, 1), 1);
        assert_eq!(super::balanced_tasks(0, 2), 1);
        for tiles in 1..200 {
            for threads in 1..9 {
                let count = super::balanced_tasks(tiles, threads);
                let per = tiles.div_ceil(count);
                let busiest = tiles.div_ceil(per).div_ceil(threads) * per;
                // Never worse than the even share rounded up to whole tiles
                // by more than one range.
                assert!(
                    busiest <= tiles.div_ceil(threads) + per,
                    "{tiles} {threads}"
                );
            }
        }
    }

    use super::*;
    use crate::shared::test_data;

    fn reference(a: &[f32], m: usize, w: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|t| f64::from(a[i * k + t]) * f64::from(w[j * k + t]))
                    .sum();
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    fn check(got: &[f32], want: &[f32], k: usize, what: &str) {
        let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
        for (idx, (g, r)) in got.iter().zip(want).enumerate() {
            assert!((g - r).abs() <= tol, "{what}: element {idx}: {g} vs {r}");
        }
    }

    #[test]
    fn matches_reference_on_odd_sizes_and_formats() {
        // Sizes straddling every block edge: MR, NR, KC, MC, NC and the task split.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 17, 3),
            (7, 33, 257),
            (13, 300, 64),
            (150, 20, 520),
            (800, 40, 96),
            (1600, 35, 40),
        ] {
            let a = test_data(m * k, 1);
            let w = test_data(n * k, 2);
            let want = reference(&a, m, &w, n, k);
            let mut c = vec![f32::NAN; m * n];
            gemm(&a, m, &DenseRows::new(&w, n, k).unwrap(), &mut c);
            check(&c, &want, k, &format!("f32 {m}x{n}x{k}"));

            let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            let wb32: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
            gemm(&a, m, &DenseRows::new(&wb, n, k).unwrap(), &mut c);
            // The AMX and AVX-512 BF16 paths round the activations to BF16.
            let features = CpuFeatures::detect();
            let a_seen: Vec<f32> =
                if features.avx512_bf16 || (features.amx_bf16 && crate::amx::supports_depth(k)) {
                    a.iter().map(|&v| bf16::from_f32(v).to_f32()).collect()
                } else {
                    a.clone()
                };
            check(
                &c,
                &reference(&a_seen, m, &wb32, n, k),
                k,
                &format!("bf16 {m}x{n}x{k}"),
            );

            let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let wh32: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
            gemm(&a, m, &DenseRows::new(&wh, n, k).unwrap(), &mut c);
            check(
                &c,
                &reference(&a, m, &wh32, n, k),
                k,
                &format!("f16 {m}x{n}x{k}"),
            );
        }
    }

    #[test]
    fn block_formats_match_their_decoded_rows() {
        // Where a BF16 GEMM exists, block formats run on it: weights decoded
        // and rounded to BF16, activations rounded to BF16 too; Q8_0 runs on
        // integer dot products where AVX-512 VNNI and no AMX.
        use crate::quantized::QuantizedMatrix;
        let features = CpuFeatures::detect();
        for &(m, n, k, bias) in &[
            (33, 40, 256, false),
            (300, 70, 512, true),
            (64, 16, 768, true),
        ] {
            let a = test_data(m * k, 11);
            let w = test_data(n * k, 12);
            let bias_values = test_data(n, 13);
            let matrices: [Box<dyn QuantizedMatrix>; 3] = [
                Box::new(crate::q8::Q8Matrix::quantize(&w, n, k).unwrap()),
                Box::new(crate::q4::Q4Matrix::quantize(&w, n, k).unwrap()),
                Box::new(crate::q4k::Q4KMatrix::quantize(&w, n, k).unwrap()),
            ];
            for q in &matrices {
                let mut decoded = vec![0f32; n * k];
                for (r, row) in decoded.chunks_mut(k).enumerate() {
                    q.read_row(r, 0, row);
                }
                let bf16_path =
                    features.avx512_bf16 || (features.amx_bf16 && crate::amx::supports_depth(k));
                let round = |v: &f32| bf16::from_f32(*v).to_f32();
                // Q8_0 without AMX but with AVX-512 VNNI: integer products,
                // the activations quantised to Q8_0 per block.
                let int8 = q.format() == "q8_0"
                    && !(features.amx_bf16 && crate::amx::supports_depth(k))
                    && features.avx512_vnni
                    && crate::avx512_vnni::usable();
                let (a_seen, w_seen): (Vec<f32>, Vec<f32>) = if int8 {
                    let (codes, scales) = crate::q8::quantize_activations(&a, k);
                    let a_q = codes
                        .iter()
                        .enumerate()
                        .map(|(t, &q)| f32::from(q) * scales[t / 32])
                        .collect();
                    (a_q, decoded)
                } else if bf16_path {
                    (
                        a.iter().map(round).collect(),
                        decoded.iter().map(round).collect(),
                    )
                } else {
                    (a.clone(), decoded)
                };
                let mut want = reference(&a_seen, m, &w_seen, n, k);
                let epilogue = Epilogue {
                    bias: bias.then_some(&bias_values[..]),
                    activation: Activation::Identity,
                    residual: None,
                };
                if bias {
                    for (idx, v) in want.iter_mut().enumerate() {
                        *v += bias_values[idx % n];
                    }
                }
                let mut c = vec![f32::NAN; m * n];
                gemm_with(&a, m, q.as_ref(), &mut c, epilogue);
                check(&c, &want, k, &format!("{} {m}x{n}x{k}", q.format()));
            }
        }
    }

    #[test]
    fn epilogue_adds_bias_then_activation() {
        for &(m, n, k) in &[(7, 19, 300), (13, 40, 5)] {
            let a = test_data(m * k, 6);
            let w = test_data(n * k, 7);
            let bias = test_data(n, 8);
            let mut want = reference(&a, m, &w, n, k);
            for (idx, v) in want.iter_mut().enumerate() {
                *v = crate::activation::quick_gelu_scalar(*v + bias[idx % n]);
            }
            let mut c = vec![f32::NAN; m * n];
            let epilogue = Epilogue {
                bias: Some(&bias),
                activation: Activation::QuickGelu,
                residual: None,
            };
            gemm_with(&a, m, &DenseRows::new(&w, n, k).unwrap(), &mut c, epilogue);
            check(&c, &want, k, &format!("epilogue {m}x{n}x{k}"));
        }
    }

    #[test]
    fn residual_is_added_last_on_every_path() {
        // F32, BF16 and Q8_0 weights: the F32, BF16 (AVX-512 or AMX) and
        // integer paths, whichever this CPU runs; 70 rows cross row tiles
        // of every kernel, 100 columns leave partial column tiles.
        let (m, n, k) = (70, 100, 96);
        let a = test_data(m * k, 16);
        let w = test_data(n * k, 17);
        let bias = test_data(n, 18);
        let residual = test_data(m * n, 19);
        let w_bf16: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let q8 = crate::q8::Q8Matrix::quantize(&w, n, k).unwrap();
        let f32_rows = DenseRows::new(&w, n, k).unwrap();
        let bf16_rows = DenseRows::new(&w_bf16, n, k).unwrap();
        let weights: [(&str, &dyn WeightRows); 3] =
            [("f32", &f32_rows), ("bf16", &bf16_rows), ("q8_0", &q8)];
        for (name, w) in weights {
            let mut plain = vec![f32::NAN; m * n];
            gemm(&a, m, w, &mut plain);
            // Residual alone: exactly the product plus the residual.
            let mut got = vec![f32::NAN; m * n];
            let only = Epilogue {
                residual: Some(&residual),
                ..Epilogue::default()
            };
            gemm_with(&a, m, w, &mut got, only);
            for (idx, (&g, &p)) in got.iter().zip(&plain).enumerate() {
                assert_eq!(g.to_bits(), (p + residual[idx]).to_bits(), "{name} {idx}");
            }
            // After the bias and the activation.
            let all = Epilogue {
                bias: Some(&bias),
                activation: Activation::QuickGelu,
                residual: Some(&residual),
            };
            gemm_with(&a, m, w, &mut got, all);
            for (idx, (&g, &p)) in got.iter().zip(&plain).enumerate() {
                let want = crate::activation::quick_gelu_scalar(p + bias[idx % n]) + residual[idx];
                assert!(
                    (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{name} {idx}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn interleave_transposes_rows_into_depth_major_panels() {
        for kc in [1, 7, 8, 13, 256] {
            let rows = test_data(NR * kc, 9);
            let mut panel = vec![0f32; NR * kc];
            interleave(&rows, kc, &mut panel);
            for kk in 0..kc {
                for c in 0..NR {
                    assert_eq!(panel[kk * NR + c], rows[c * kc + kk], "kc {kc}");
                }
            }
        }
    }

    #[test]
    fn scalar_micro_kernel_matches_the_vector_one() {
        let kc = 37;
        let a = test_data(kc * MR, 3);
        let b = test_data(kc * NR, 4);
        let none = CpuFeatures::SCALAR;
        let original = test_data(MR * 20, 5);
        for accumulate in [true, false] {
            let mut scalar = original.clone();
            micro_kernel(none, kc, &a, &b, &mut scalar, 20, accumulate);
            // Every vector path this CPU has (the AVX2 one also where AVX-512
            // is present; NEON on aarch64).
            let all = CpuFeatures::detect();
            for features in [all, all.without_avx512()] {
                let mut vector = original.clone();
                micro_kernel(features, kc, &a, &b, &mut vector, 20, accumulate);
                check(&vector, &scalar, kc, features.describe());
            }
        }
    }
}
