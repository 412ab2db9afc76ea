//! `C = A·Wᵀ` with Intel AMX tiles (`tdpbf16ps`) for BF16 weights: the
//! prefill and ViT product on Sapphire Rapids and later, where one core's
//! tile unit does up to 1024 BF16 multiply-adds per cycle (Intel's figure)
//! against 32 F32 FMAs for AVX-512.
//!
//! The weight is the tile instruction's left operand straight from memory
//! (16 rows × 32 BF16 of `W` [N, K] per tile, rows `stride` apart), so BF16
//! checkpoints are never packed; their rows must start on 64-byte
//! boundaries (the loader builds BF16 matrices so), because a tile row that
//! straddles two cache lines loads about 4x slower (measured on a Sapphire
//! Rapids class Xeon); other weights are copied 32 rows at a time. The
//! activations are rounded to BF16 (round to nearest even, as PyTorch's BF16
//! matmuls do) and packed, per block of rows sized to stay in L2, into the
//! right operand's pair-interleaved layout: per 16 rows and 32 columns, a 1
//! KiB tile whose row `p` holds, for each of the 16 activation rows, the pair
//! of elements `2p, 2p + 1`. Each step multiplies two weight tiles by two
//! activation tiles into four 16 × 16 F32 accumulator tiles (rows = weight
//! rows), which are then stored transposed into `C` (16 × 16 register
//! transposes), bias and activation applied on the way.
//!
//! Why this is not at the tile unit's peak: tile registers are not renamed,
//! so a step's loads wait for the previous step's products that read the
//! same tiles; with four loads per four products (the most reuse eight tiles
//! allow) a step measured 33–39 ns against 20 ns of products alone.
//!
//! Linux hands out the tile registers only after the process asks for them
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`). [`usable`] asks once, then runs the
//! kernel on a small product against a plain reference and reports the unit
//! usable only if it matches, so a machine where the path misbehaves falls
//! back to the vector GEMM instead of computing wrong numbers.

use std::cell::RefCell;

use half::bf16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::gemm::{Bf16Product, Epilogue, Output};
use crate::scratch::{with_reused, AlignedBf16};
use crate::shared::prefetch_l2;

/// Weight rows (and activation rows) per tile.
const TILE_ROWS: usize = 16;
/// Depth per tile step: 16 pairs of BF16 (64 bytes per tile row).
const TILE_DEPTH: usize = 32;
/// Bytes per tile row (every tile here: 16 BF16 pairs or 16 F32).
const TILE_ROW_BYTES: usize = 64;
/// The fewest activation rows per cache block ([`rows_per_block`]): each
/// weight tile loaded then serves at least 8 tile products.
const MIN_ROWS_PER_BLOCK: usize = 128;
/// The most activation rows per cache block.
const MAX_ROWS_PER_BLOCK: usize = 256;

/// Whether this CPU and OS run AMX BF16 tiles for this process, and the
/// kernel passed its check (asked once; the answer is cached).
pub fn usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        cpu_has_amx_bf16()
            && request_tile_permission()
            && crate::shared::bf16_gemm_matches_reference(gemm_bf16)
    })
}

/// CPUID leaf 7 (AMX-TILE, AMX-BF16) and XCR0's tile state bits.
fn cpu_has_amx_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        let (max_leaf, leaf1) = (__cpuid(0).eax, __cpuid(1));
        if max_leaf < 7 || leaf1.ecx & (1 << 27) == 0 {
            return false; // no leaf 7, or no OSXSAVE (XGETBV)
        }
        let leaf7 = __cpuid_count(7, 0);
        let (amx_bf16, amx_tile) = (leaf7.edx & (1 << 22) != 0, leaf7.edx & (1 << 24) != 0);
        // SAFETY: OSXSAVE is set, so XGETBV is enabled.
        let xcr0 = unsafe { xgetbv0() };
        // XTILECFG (bit 17) and XTILEDATA (bit 18) enabled by the OS.
        amx_bf16 && amx_tile && xcr0 & (0b11 << 17) == (0b11 << 17)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// XCR0.
///
/// # Safety
/// CPUID.1:ECX.OSXSAVE must be set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    std::arch::x86_64::_xgetbv(0)
}

/// Asks Linux for the tile data state (AMX faults until a process has it).
fn request_tile_permission() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: arch_prctl with these arguments only changes this
        // process's permitted XSAVE features; it reads no memory of ours.
        let status = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        status == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Whether [`gemm_bf16`] takes a product of depth `k`.
pub fn supports_depth(k: usize) -> bool {
    k > 0 && k.is_multiple_of(TILE_DEPTH)
}

/// `c[i·n + j] = Σ_t a[i·k + t] · w[j·stride + t]` with AMX tiles, the
/// activations rounded to BF16; weight row blocks spread over the thread
/// pool when `parallel`.
///
/// Panics if the sizes do not fit or `k` is not a multiple of 32; call only
/// when [`usable`] said yes.
pub fn gemm_bf16(product: Bf16Product, c: &mut [f32], parallel: bool) {
    gemm_on::<AmxTiles>(product, c, parallel, Epilogue::default());
}

/// [`gemm_bf16`], then `epilogue` (bias, activation) on each 16 × 16 output
/// tile as it is stored, while it is in cache: no second pass over `c`.
pub fn gemm_bf16_with(product: Bf16Product, c: &mut [f32], parallel: bool, epilogue: Epilogue) {
    gemm_on::<AmxTiles>(product, c, parallel, epilogue);
}

/// [`gemm_bf16_with`] on the tile unit `T`.
fn gemm_on<T: TileUnit + Default>(
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
    assert!(
        supports_depth(k),
        "AMX depth must be a multiple of {TILE_DEPTH}"
    );
    product.assert_sizes(c.len());
    if m == 0 || n == 0 {
        return;
    }
    let out = Output(c.as_mut_ptr());
    let vector = vector_units();
    let features = epilogue.features();
    let finish = Finish { epilogue, features };
    let block_rows = rows_per_block(k);
    // Tile rows straddling two cache lines load about 4x slower (measured on
    // a Sapphire Rapids class Xeon), so weights whose rows are not 64-byte
    // aligned are copied, 32 rows at a time, into an aligned buffer.
    let weights_aligned =
        (w.as_ptr() as usize).is_multiple_of(64) && (stride * 2).is_multiple_of(64);
    for i0 in (0..m).step_by(block_rows) {
        let rows = block_rows.min(m - i0);
        let mut buffer = PACKED.with(|cell| cell.take());
        pack_activations(&a[i0 * k..(i0 + rows) * k], rows, k, parallel, &mut buffer);
        let packed = &buffer;
        // Tasks of 32 weight rows (two tiles).
        let run = |j0: usize| {
            let live = (2 * TILE_ROWS).min(n - j0);
            with_reused(&WEIGHT_COPY, |copy| {
                // In place when aligned and 32 rows are there to read (past
                // `n` too, when the caller's slice extends beyond its last
                // output row: those columns are never stored).
                let in_place = weights_aligned && w.len() >= (j0 + 2 * TILE_ROWS - 1) * stride + k;
                let (source, source_stride) = if in_place {
                    (&w[j0 * stride..], stride)
                } else {
                    // Aligned rows (the last ones zero-padded to two whole tiles).
                    let buf = copy.resize(2 * TILE_ROWS * k);
                    for r in 0..live {
                        buf[r * k..(r + 1) * k]
                            .copy_from_slice(&w[(j0 + r) * stride..(j0 + r) * stride + k]);
                    }
                    buf[live * k..].fill(bf16::ZERO);
                    (&buf[..], k)
                };
                // The next 32 rows, which this thread most likely takes next
                // (rayon splits the task range into contiguous pieces).
                let next_j0 = j0 + 2 * TILE_ROWS;
                let next_weights = (weights_aligned && next_j0 + 2 * TILE_ROWS <= n)
                    .then(|| &w[next_j0 * stride..]);
                let task = Task {
                    next_weights,
                    packed: packed.as_slice(),
                    rows,
                    k,
                    weights: source,
                    weight_stride: source_stride,
                    live_cols: live,
                    vector,
                    finish,
                };
                // SAFETY: `usable()` established AMX and the tile permission
                // (or the tiles are emulated); the task writes only rows
                // i0..i0 + rows, columns j0..j0 + live of `c` [m, n], which no
                // other task touches.
                unsafe { task.run(&mut T::default(), &out, n, i0, j0) };
            });
        };
        if parallel {
            (0..n).into_par_iter().step_by(2 * TILE_ROWS).for_each(run);
        } else {
            (0..n).step_by(2 * TILE_ROWS).for_each(run);
        }
        PACKED.with(|cell| cell.replace(buffer));
    }
}

/// Activation rows per cache block for depth `k`: the packed block (`rows` ×
/// `k` BF16, 1.25 MiB) should stay in a 2 MiB L2 next to the weight rows in
/// use and those being prefetched, within 128..=256 rows: fewer make every
/// weight row stream in from memory once more per 128 rows; more spill the
/// block from L2. (Measured on the Sapphire Rapids class Xeon: 128 rows best
/// at depth 5120 and 8192, 192 at 3072, 256 at 1280, each within 10 %.)
fn rows_per_block(k: usize) -> usize {
    const L2_SHARE: usize = 5 << 18;
    (L2_SHARE / (2 * k) / (2 * TILE_ROWS) * (2 * TILE_ROWS))
        .clamp(MIN_ROWS_PER_BLOCK, MAX_ROWS_PER_BLOCK)
}

thread_local! {
    /// The calling thread's packed activations, kept from call to call (a
    /// fresh buffer would be zero-filled by the allocator every time).
    static PACKED: RefCell<AlignedBf16> = const { RefCell::new(AlignedBf16::new()) };
    /// Each pool thread's aligned copy of the weight rows it works on.
    static WEIGHT_COPY: RefCell<AlignedBf16> = const { RefCell::new(AlignedBf16::new()) };
}

/// Rounds `a` [rows, k] to BF16 and packs it into activation tiles:
/// [row block of 16 (padded to an even count)][depth step of 32][pair p][row r][2].
fn pack_activations(a: &[f32], rows: usize, k: usize, parallel: bool, buffer: &mut AlignedBf16) {
    let blocks = rows.div_ceil(TILE_ROWS).next_multiple_of(2);
    let steps = k / TILE_DEPTH;
    let tile = TILE_ROWS * TILE_DEPTH;
    // Every tile is written below (zeros past the last row): no clearing.
    buffer.resize(blocks * steps * tile);
    let packed = buffer.as_mut_slice();
    let vector = vector_units();
    let pack = |(b, block): (usize, &mut [bf16])| {
        let live = TILE_ROWS.min(rows.saturating_sub(b * TILE_ROWS));
        if live == 0 {
            block.fill(bf16::ZERO);
            return;
        }
        let first = &a[b * TILE_ROWS * k..(b * TILE_ROWS + live) * k];
        for (s, t) in block.chunks_exact_mut(tile).enumerate() {
            #[cfg(target_arch = "x86_64")]
            if vector.pack {
                // SAFETY: AVX-512 F and BF16 were detected; `first` holds
                // `live` rows of `k` and `t` one whole tile.
                unsafe { x86::pack_tile(first, live, k, s * TILE_DEPTH, t) };
                continue;
            }
            pack_tile_scalar(first, live, k, s * TILE_DEPTH, t);
        }
    };
    let _ = vector;
    if parallel {
        packed
            .par_chunks_mut(steps * tile)
            .enumerate()
            .for_each(pack);
    } else {
        packed.chunks_mut(steps * tile).enumerate().for_each(pack);
    }
}

/// One activation tile: rows `0..live` of `rows` [live, k], depth `d0..d0 +
/// 32`, pair-interleaved into `t` (rows past `live` stay zero).
fn pack_tile_scalar(rows: &[f32], live: usize, k: usize, d0: usize, t: &mut [bf16]) {
    if live < TILE_ROWS {
        t.fill(bf16::ZERO);
    }
    for r in 0..live {
        let depth = &rows[r * k + d0..r * k + d0 + TILE_DEPTH];
        for (p, pair) in depth.chunks_exact(2).enumerate() {
            let at = (p * TILE_ROWS + r) * 2;
            t[at] = bf16::from_f32(pair[0]);
            t[at + 1] = bf16::from_f32(pair[1]);
        }
    }
}

/// Which steps around the tiles run with AVX-512 (every AMX CPU has it, but
/// the emulated-tile tests also run on CPUs without).
#[derive(Clone, Copy)]
struct VectorUnits {
    /// AVX-512 F: the 16 × 16 transposes that store the sum tiles.
    transpose: bool,
    /// AVX-512 F and BF16: rounding and packing the activations.
    pack: bool,
}

fn vector_units() -> VectorUnits {
    #[cfg(target_arch = "x86_64")]
    {
        let f = std::is_x86_feature_detected!("avx512f");
        VectorUnits {
            transpose: f,
            pack: f && std::is_x86_feature_detected!("avx512bf16"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        VectorUnits {
            transpose: false,
            pack: false,
        }
    }
}

/// 32 weight rows against one block of activation rows.
struct Task<'a> {
    /// The next task's 32 weight rows (same stride), prefetched into L2
    /// while this one computes: the first pass over a task's weights would
    /// otherwise wait on memory tile row by tile row.
    next_weights: Option<&'a [bf16]>,
    packed: &'a [bf16],
    rows: usize,
    k: usize,
    /// The task's first weight row; 32 rows `weight_stride` elements apart.
    weights: &'a [bf16],
    weight_stride: usize,
    /// Weight rows that are real outputs (the rest is padding).
    live_cols: usize,
    /// AVX-512 for the transposed stores.
    vector: VectorUnits,
    /// Applied to each stored output tile.
    finish: Finish<'a>,
}

/// The epilogue and the features its activation runs with.
#[derive(Clone, Copy)]
struct Finish<'a> {
    epilogue: Epilogue<'a>,
    features: CpuFeatures,
}

impl Task<'_> {
    /// Writes the transpose of `tile` ([col][row]) to `corner` (rows `n`
    /// apart): `live_rows` × `live_cols`, the epilogue applied to output
    /// columns `first_col..` on the way (in registers on the AVX-512 path:
    /// reading the tile back after its masked stores would wait for them).
    ///
    /// # Safety
    /// `corner` must be writable for those rows and columns.
    unsafe fn store(
        &self,
        tile: &[f32; TILE_ROWS * TILE_ROWS],
        corner: *mut f32,
        n: usize,
        (live_rows, live_cols): (usize, usize),
        (first_row, first_col): (usize, usize),
    ) {
        let epilogue = self.finish.epilogue;
        #[cfg(target_arch = "x86_64")]
        if self.vector.transpose {
            let bias = epilogue.bias.map(|b| &b[first_col..first_col + live_cols]);
            x86::store_transposed(
                tile,
                corner,
                n,
                (live_rows, live_cols),
                bias,
                epilogue.activation,
            );
            for r in 0..live_rows {
                let row = std::slice::from_raw_parts_mut(corner.add(r * n), live_cols);
                epilogue.add_residual(row, (first_row + r, first_col), n);
            }
            return;
        }
        for r in 0..live_rows {
            for col in 0..live_cols {
                *corner.add(r * n + col) = tile[col * TILE_ROWS + r];
            }
        }
        if !epilogue.is_identity() {
            for r in 0..live_rows {
                let row = std::slice::from_raw_parts_mut(corner.add(r * n), live_cols);
                epilogue.apply(self.finish.features, row, (first_row + r, first_col), n);
            }
        }
    }

    /// # Safety
    /// `T` must be usable (for [`AmxTiles`]: AMX-TILE and AMX-BF16 granted
    /// to this process); `out` points to a [_, n] row-major matrix whose
    /// rows `i0..i0 + self.rows`, columns `j0..j0 + self.live_cols` no other
    /// thread accesses meanwhile.
    unsafe fn run<T: TileUnit>(&self, tiles: &mut T, out: &Output, n: usize, i0: usize, j0: usize) {
        let steps = self.k / TILE_DEPTH;
        let block_len = steps * TILE_ROWS * TILE_DEPTH;
        assert!(self.weights.len() >= (2 * TILE_ROWS - 1) * self.weight_stride + self.k);
        assert!(self.packed.len() >= self.rows.div_ceil(2 * TILE_ROWS) * 2 * block_len);
        tiles.configure();
        let w_stride = self.weight_stride * 2; // bytes
        let w0 = self.weights.as_ptr();
        let w1 = w0.add(TILE_ROWS * self.weight_stride);
        let mut sums = [[0f32; TILE_ROWS * TILE_ROWS]; 4];
        let pairs = self.rows.div_ceil(2 * TILE_ROWS);
        // Prefetch `lines_per_step` cache lines of the next weights per step.
        let lines_per_row = self.k * 2 / 64;
        let next_lines = if self.next_weights.is_some() {
            2 * TILE_ROWS * lines_per_row
        } else {
            0
        };
        let lines_per_step = next_lines.div_ceil(pairs * steps);
        let mut next_line = 0;
        for pair in 0..pairs {
            let a0 = self.packed.as_ptr().add(2 * pair * block_len);
            let a1 = a0.add(block_len);
            tiles.zero_sums();
            for s in 0..steps {
                let (depth, tile) = (s * TILE_DEPTH, s * TILE_ROWS * TILE_DEPTH);
                tiles.step(
                    [w0.add(depth), w1.add(depth)],
                    w_stride,
                    [a0.add(tile), a1.add(tile)],
                );
                if let Some(next) = self.next_weights {
                    for _ in 0..lines_per_step.min(next_lines - next_line) {
                        let (r, l) = (next_line / lines_per_row, next_line % lines_per_row);
                        prefetch_l2(next.as_ptr().add(r * self.weight_stride + l * 32).cast());
                        next_line += 1;
                    }
                }
            }
            tiles.store_sums(&mut sums);
            // Sum tile 2·wi + ai is [weight row][activation row]: transpose out.
            for (t, tile) in sums.iter().enumerate() {
                let (wi, ai) = (t / 2, t % 2);
                let first_row = (2 * pair + ai) * TILE_ROWS;
                let live_rows = TILE_ROWS.min(self.rows.saturating_sub(first_row));
                let live_cols = TILE_ROWS.min(self.live_cols.saturating_sub(wi * TILE_ROWS));
                if live_rows == 0 || live_cols == 0 {
                    continue;
                }
                let first_col = j0 + wi * TILE_ROWS;
                let corner = out.0.add((i0 + first_row) * n + first_col);
                self.store(
                    tile,
                    corner,
                    n,
                    (live_rows, live_cols),
                    (i0 + first_row, first_col),
                );
            }
        }
        tiles.release();
    }
}

/// `iters` rounds of four independent `tdpbf16ps` on register tiles (no
/// memory operands): the tile unit's arithmetic peak for [`crate::peak`].
/// Returns the flops done (16 × 16 outputs × 32 products × 2 per
/// instruction).
///
/// # Safety
/// [`usable`] must have said yes in this process.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn peak_loop(iters: u64) -> f64 {
    let config = TileConfig::all_full();
    let zeros = [0u8; TILE_ROWS * TILE_ROW_BYTES];
    std::arch::asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    std::arch::asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "tileloadd tmm4, [{z} + {rb}*1]",
        "tileloadd tmm5, [{z} + {rb}*1]",
        "tileloadd tmm6, [{z} + {rb}*1]",
        "tileloadd tmm7, [{z} + {rb}*1]",
        z = in(reg) zeros.as_ptr(),
        rb = in(reg) TILE_ROW_BYTES,
        options(nostack, readonly)
    );
    for _ in 0..iters {
        std::arch::asm!(
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            options(nostack, nomem)
        );
    }
    std::arch::asm!("tilerelease", options(nostack, nomem));
    (4 * TILE_ROWS * TILE_ROWS * TILE_DEPTH * 2) as f64 * iters as f64
}

/// The tile operations the kernel uses: four 16 × 16 F32 sum tiles (tmm0-3),
/// two weight tiles (tmm4-5, 16 rows × 32 BF16, rows `w_stride` bytes
/// apart) and two activation tiles (tmm6-7, 16 pair rows × 64 bytes).
/// [`AmxTiles`] runs them on the CPU; the tests also run the kernel on an
/// emulation written from the instructions' documented semantics.
trait TileUnit {
    /// `ldtilecfg`: palette 1, eight tiles of 16 rows × 64 bytes.
    unsafe fn configure(&mut self);
    /// `tilezero` the sum tiles.
    unsafe fn zero_sums(&mut self);
    /// Loads the weight and activation tiles and accumulates
    /// `sum[2·wi + ai] += tdpbf16ps(weight[wi], activation[ai])`.
    unsafe fn step(&mut self, w: [*const bf16; 2], w_stride: usize, a: [*const bf16; 2]);
    /// `tilestored` the sum tiles (rows of 16 F32).
    unsafe fn store_sums(&mut self, out: &mut [[f32; TILE_ROWS * TILE_ROWS]; 4]);
    /// `tilerelease`.
    unsafe fn release(&mut self);
}

/// The CPU's AMX unit.
#[derive(Default)]
struct AmxTiles;

#[cfg(target_arch = "x86_64")]
impl TileUnit for AmxTiles {
    unsafe fn configure(&mut self) {
        let config = TileConfig::all_full();
        std::arch::asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    }

    unsafe fn zero_sums(&mut self) {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }

    unsafe fn step(&mut self, w: [*const bf16; 2], w_stride: usize, a: [*const bf16; 2]) {
        std::arch::asm!(
            "tileloadd tmm4, [{w0} + {ws}*1]",
            "tileloadd tmm5, [{w1} + {ws}*1]",
            "tileloadd tmm6, [{a0} + {as_}*1]",
            "tileloadd tmm7, [{a1} + {as_}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            w0 = in(reg) w[0],
            w1 = in(reg) w[1],
            a0 = in(reg) a[0],
            a1 = in(reg) a[1],
            ws = in(reg) w_stride,
            as_ = in(reg) TILE_ROW_BYTES,
            options(nostack, readonly)
        );
    }

    unsafe fn store_sums(&mut self, out: &mut [[f32; TILE_ROWS * TILE_ROWS]; 4]) {
        std::arch::asm!(
            "tilestored [{t0} + {rb}*1], tmm0",
            "tilestored [{t1} + {rb}*1], tmm1",
            "tilestored [{t2} + {rb}*1], tmm2",
            "tilestored [{t3} + {rb}*1], tmm3",
            t0 = in(reg) out[0].as_mut_ptr(),
            t1 = in(reg) out[1].as_mut_ptr(),
            t2 = in(reg) out[2].as_mut_ptr(),
            t3 = in(reg) out[3].as_mut_ptr(),
            rb = in(reg) TILE_ROW_BYTES,
            options(nostack)
        );
    }

    unsafe fn release(&mut self) {
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl TileUnit for AmxTiles {
    unsafe fn configure(&mut self) {
        unreachable!("AMX is x86-64 only")
    }
    unsafe fn zero_sums(&mut self) {}
    unsafe fn step(&mut self, _: [*const bf16; 2], _: usize, _: [*const bf16; 2]) {}
    unsafe fn store_sums(&mut self, _: &mut [[f32; TILE_ROWS * TILE_ROWS]; 4]) {}
    unsafe fn release(&mut self) {}
}

/// The AVX-512 steps around the tiles.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{TILE_DEPTH, TILE_ROWS};
    use crate::activation::Activation;

    /// Transposes 16 rows of 16 F32 in registers: out[j][i] = rows[i][j]
    /// (pairs, then quads within 128-bit lanes, then the lanes).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let mut a = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // b[4g + e], lane L = rows 4g..4g + 4, element 4L + e.
        let mut b = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let pd = |v: __m512| _mm512_castps_pd(v);
            let (x0, x1, x2, x3) = (
                pd(a[4 * g]),
                pd(a[4 * g + 1]),
                pd(a[4 * g + 2]),
                pd(a[4 * g + 3]),
            );
            b[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
            b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
            b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
            b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
        }
        let mut out = [_mm512_setzero_ps(); 16];
        for e in 0..4 {
            let (b0, b1, b2, b3) = (b[e], b[4 + e], b[8 + e], b[12 + e]);
            let x0 = _mm512_shuffle_f32x4::<0b01_00_01_00>(b0, b1);
            let x1 = _mm512_shuffle_f32x4::<0b11_10_11_10>(b0, b1);
            let x2 = _mm512_shuffle_f32x4::<0b01_00_01_00>(b2, b3);
            let x3 = _mm512_shuffle_f32x4::<0b11_10_11_10>(b2, b3);
            out[e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(x0, x2);
            out[4 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(x0, x2);
            out[8 + e] = _mm512_shuffle_f32x4::<0b10_00_10_00>(x1, x3);
            out[12 + e] = _mm512_shuffle_f32x4::<0b11_01_11_01>(x1, x3);
        }
        out
    }

    /// Writes the transpose of `tile` ([col][row], 16 × 16) to `corner`
    /// (row-major, rows `n` apart): rows `0..live_rows`, columns
    /// `0..live_cols`, plus `bias` (per column), then `activation`.
    ///
    /// # Safety
    /// AVX-512 F must be available; `corner` must be writable for those
    /// rows and columns.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn store_transposed(
        tile: &[f32; TILE_ROWS * TILE_ROWS],
        corner: *mut f32,
        n: usize,
        (live_rows, live_cols): (usize, usize),
        bias: Option<&[f32]>,
        activation: Activation,
    ) {
        let rows: [__m512; 16] =
            std::array::from_fn(|c| _mm512_loadu_ps(tile.as_ptr().add(c * TILE_ROWS)));
        let t = transpose16(rows);
        let mask: __mmask16 = if live_cols >= 16 {
            0xffff
        } else {
            (1u16 << live_cols) - 1
        };
        let bias = bias.map(|b| {
            assert!(b.len() >= live_cols);
            _mm512_maskz_loadu_ps(mask, b.as_ptr())
        });
        for (r, v) in t.iter().enumerate().take(live_rows) {
            let v = match bias {
                Some(b) => _mm512_add_ps(*v, b),
                None => *v,
            };
            let v = crate::activation::avx512::apply16(activation, v);
            _mm512_mask_storeu_ps(corner.add(r * n), mask, v);
        }
    }

    /// [`super::pack_tile_scalar`] with AVX-512: each row's 32 values round
    /// to 16 BF16 pairs (round to nearest even), then the 16 × 16 pairs
    /// transpose into the tile.
    ///
    /// # Safety
    /// AVX-512 F and BF16 must be available; `rows` must hold `live` ≤ 16
    /// rows of `k` ≥ `d0 + 32` and `t` 16 × 32 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn pack_tile(rows: &[f32], live: usize, k: usize, d0: usize, t: &mut [bf16]) {
        debug_assert!(live <= TILE_ROWS && rows.len() >= live * k && d0 + TILE_DEPTH <= k);
        assert!(t.len() >= TILE_ROWS * TILE_DEPTH);
        let pairs: [__m512; 16] = std::array::from_fn(|r| {
            if r < live {
                let p = rows.as_ptr().add(r * k + d0);
                let (lo, hi) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                // Element i of the result is lo[i] for i < 16, hi[i - 16]
                // above: two one-source conversions joined, the same bits as
                // `vcvtne2ps2bf16`, whose upper half the CPU emulator of
                // tools/test-avx512.sh (Bochs 3.0) leaves zero.
                let half =
                    |v: __m512| std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
                _mm512_castsi512_ps(_mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(half(lo)),
                    half(hi),
                ))
            } else {
                _mm512_setzero_ps()
            }
        });
        let out = transpose16(pairs);
        for (p, v) in out.iter().enumerate() {
            _mm512_storeu_ps(t.as_mut_ptr().add(p * 2 * TILE_ROWS) as *mut f32, *v);
        }
    }
}

/// The 64-byte operand of `ldtilecfg`.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    /// Palette 1, tiles 0-7 all 16 rows × 64 bytes.
    fn all_full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&(TILE_ROW_BYTES as u16).to_le_bytes());
            c[48 + t] = TILE_ROWS as u8; // rows
        }
        Self(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tile instructions from their documented semantics (Intel SDM,
    /// TDPBF16PS: `dst.row[m].fp32[n] += a.row[m].bf16[2k]·b.row[k].bf16[2n]
    /// + a.row[m].bf16[2k+1]·b.row[k].bf16[2n+1]`), on plain arrays.
    struct EmulatedTiles {
        sums: [[f32; TILE_ROWS * TILE_ROWS]; 4],
    }

    impl Default for EmulatedTiles {
        fn default() -> Self {
            Self {
                sums: [[f32::NAN; TILE_ROWS * TILE_ROWS]; 4],
            }
        }
    }

    impl TileUnit for EmulatedTiles {
        unsafe fn configure(&mut self) {}

        unsafe fn zero_sums(&mut self) {
            self.sums = [[0.0; TILE_ROWS * TILE_ROWS]; 4];
        }

        unsafe fn step(&mut self, w: [*const bf16; 2], w_stride: usize, a: [*const bf16; 2]) {
            // Rows of `rows` × 32 BF16, `stride` bytes apart.
            let load = |base: *const bf16, stride: usize| {
                let mut t = [[bf16::ZERO; TILE_DEPTH]; TILE_ROWS];
                for (r, row) in t.iter_mut().enumerate() {
                    let p = (base as *const u8).add(r * stride) as *const bf16;
                    row.copy_from_slice(std::slice::from_raw_parts(p, TILE_DEPTH));
                }
                t
            };
            let wt = [load(w[0], w_stride), load(w[1], w_stride)];
            let at = [load(a[0], TILE_ROW_BYTES), load(a[1], TILE_ROW_BYTES)];
            for (t, sum) in self.sums.iter_mut().enumerate() {
                let (wa, ab) = (&wt[t / 2], &at[t % 2]);
                for m in 0..TILE_ROWS {
                    for n in 0..TILE_ROWS {
                        let mut acc = sum[m * TILE_ROWS + n];
                        for k in 0..TILE_DEPTH / 2 {
                            acc += wa[m][2 * k].to_f32() * ab[k][2 * n].to_f32();
                            acc += wa[m][2 * k + 1].to_f32() * ab[k][2 * n + 1].to_f32();
                        }
                        sum[m * TILE_ROWS + n] = acc;
                    }
                }
            }
        }

        unsafe fn store_sums(&mut self, out: &mut [[f32; TILE_ROWS * TILE_ROWS]; 4]) {
            *out = self.sums;
        }

        unsafe fn release(&mut self) {}
    }

    fn emulated(product: Bf16Product, c: &mut [f32], parallel: bool) {
        gemm_on::<EmulatedTiles>(product, c, parallel, Epilogue::default());
    }

    #[test]
    fn the_kernel_on_emulated_tiles_matches_the_reference() {
        // Partial row and column tiles, several depth steps and row blocks,
        // a strided weight view.
        crate::shared::assert_bf16_gemm(
            &[
                (1, 1, 32, 32),
                (37, 45, 96, 96),
                (300, 70, 64, 80),
                (1100, 40, 32, 32),
            ],
            emulated,
        );
        assert_with_weights_at_every_alignment(emulated);
    }

    /// Weights starting on a 64-byte boundary (read in place, the next
    /// task's rows prefetched) and 2 bytes past one (copied per task).
    fn assert_with_weights_at_every_alignment(gemm: impl Fn(Bf16Product, &mut [f32], bool)) {
        use crate::shared::{bf16_reference, close_to_reference, test_data};
        let (m, n, k) = (70, 100, 64);
        let a = test_data(m * k, 3);
        let values: Vec<bf16> = test_data(n * k + 64, 4)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let aligned = values.as_ptr().align_offset(64).min(32);
        for start in [aligned, aligned + 1] {
            let product = Bf16Product {
                a: &a,
                m,
                w: &values[start..start + n * k],
                n,
                k,
                stride: k,
            };
            let want = bf16_reference(product);
            for parallel in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                gemm(product, &mut c, parallel);
                for (i, (&g, &r)) in c.iter().zip(&want).enumerate() {
                    assert!(
                        close_to_reference(g, r, k),
                        "start {start} at {i}: {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_epilogue_finishes_each_stored_tile() {
        use crate::activation::Activation;
        use crate::shared::{bf16_reference, test_data};
        let (m, n, k) = (40, 50, 64);
        let a = test_data(m * k, 5);
        let w: Vec<bf16> = test_data(n * k, 6)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        let bias = test_data(n, 7);
        let product = Bf16Product {
            a: &a,
            m,
            w: &w,
            n,
            k,
            stride: k,
        };
        let want = bf16_reference(product);
        type Reference = fn(f32) -> f32;
        let activations: [(Activation, Reference); 3] = [
            (Activation::Identity, |x| x),
            (Activation::QuickGelu, crate::activation::quick_gelu_scalar),
            (Activation::GeluTanh, crate::activation::gelu_tanh_scalar),
        ];
        for (activation, scalar) in activations {
            for bias in [None, Some(&bias[..])] {
                let epilogue = Epilogue {
                    bias,
                    activation,
                    residual: None,
                };
                let mut c = vec![f32::NAN; m * n];
                gemm_on::<EmulatedTiles>(product, &mut c, true, epilogue);
                for (i, (&got, &r)) in c.iter().zip(&want).enumerate() {
                    let expected = scalar(r as f32 + bias.map_or(0.0, |b| b[i % n]));
                    assert!(
                        (got - expected).abs() <= 1e-4 * (1.0 + expected.abs()),
                        "{activation:?} {i}: {got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn activations_pack_into_pair_interleaved_tiles() {
        let (rows, k) = (19, 64);
        let a: Vec<f32> = (0..rows * k).map(|i| i as f32).collect();
        let mut buffer = AlignedBf16::new();
        pack_activations(&a, rows, k, true, &mut buffer);
        let packed = buffer.as_slice();
        assert!((packed.as_ptr() as usize).is_multiple_of(64));
        let steps = k / TILE_DEPTH;
        assert_eq!(packed.len(), 2 * steps * TILE_ROWS * TILE_DEPTH);
        let tile = TILE_ROWS * TILE_DEPTH;
        for r in 0..2 * TILE_ROWS {
            for t in 0..k {
                let (b, s, p, e) = (r / TILE_ROWS, t / TILE_DEPTH, (t % TILE_DEPTH) / 2, t % 2);
                let at = (b * steps + s) * tile + (p * TILE_ROWS + r % TILE_ROWS) * 2 + e;
                let want = if r < rows { a[r * k + t] } else { 0.0 };
                assert_eq!(packed[at].to_f32(), bf16::from_f32(want).to_f32());
            }
        }
    }

    #[test]
    fn tile_config_is_palette_one_with_eight_full_tiles() {
        let c = TileConfig::all_full().0;
        assert_eq!(c[0], 1);
        assert_eq!(&c[16..18], &[64, 0]);
        assert_eq!(c[48..56], [16; 8]);
        assert!(c[56..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_tile_path_matches_the_reference_where_the_cpu_has_it() {
        // On CPUs without AMX this checks nothing beyond `usable()` saying no.
        if usable() {
            assert!(crate::shared::bf16_gemm_matches_reference(gemm_bf16));
            crate::shared::assert_bf16_gemm(
                &[
                    (1, 1, 32, 32),
                    (300, 70, 128, 128),
                    (16, 32, 64, 64),
                    (1100, 70, 64, 64),
                ],
                gemm_bf16,
            );
            assert_with_weights_at_every_alignment(gemm_bf16);
        }
    }
}
