//! Row-interleaved storage of the block formats' decode matrices, and the
//! parallel driver of their GEMVs.
//!
//! Rows are stored in groups of [`GROUP`]: for each group and block, the 8
//! rows' F16 scales (Q4_K has two per block: the 8 rows' `d`, then their
//! `dmin`), then the rows' code bytes in 4-byte chunks, chunk `c` holding
//! bytes `4c..4c + 4` of each row's block in turn. One 32-byte AVX2
//! load (two 16-byte NEON ones) then carries four bytes of each of 8 rows,
//! so one broadcast of the matching activation bytes serves 8 rows, and the
//! 8 rows' sums come out in one register (two on NEON) next to their 8
//! scales in another: about half the instructions per weight of a
//! row-at-a-time kernel. The row-major GGML layout (what files hold)
//! converts both ways.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;
use crate::scratch::{reset, with_reused};

/// Rows interleaved in memory.
pub const GROUP: usize = 8;
/// Row groups per parallel task.
const GROUPS_PER_TASK: usize = 8;

/// Scales and codes of a [rows, blocks] matrix of blocks, rows interleaved
/// (rows past `rows` in the last group are zero).
#[derive(Debug, Clone)]
pub(crate) struct Interleaved {
    /// Rows.
    pub rows: usize,
    /// Blocks per row.
    pub blocks: usize,
    /// F16 scales per block of one row.
    pub block_scales: usize,
    /// Code bytes per block of one row (a multiple of 4).
    pub block_bytes: usize,
    /// [group][block][scale][row in group].
    pub scales: Vec<f16>,
    /// [group][block][chunk][row in group][4 bytes].
    pub codes: Vec<u8>,
}

impl Interleaved {
    /// Interleaves row-major blocks (`block_scales` scales and `block_bytes`
    /// code bytes per block); `None` when the sizes do not fit.
    pub fn from_row_major(
        rows: usize,
        blocks: usize,
        (block_scales, block_bytes): (usize, usize),
        scales: &[f16],
        codes: &[u8],
    ) -> Option<Self> {
        if scales.len() != rows * blocks * block_scales
            || codes.len() != rows * blocks * block_bytes
            || !block_bytes.is_multiple_of(4)
        {
            return None;
        }
        let groups = rows.div_ceil(GROUP);
        let mut m = Self {
            rows,
            blocks,
            block_scales,
            block_bytes,
            scales: crate::allocator::huge_page_vec(groups * blocks * block_scales * GROUP),
            codes: crate::allocator::huge_page_vec(groups * blocks * GROUP * block_bytes),
        };
        let group_bytes = blocks * GROUP * block_bytes;
        m.scales
            .par_chunks_mut(blocks * block_scales * GROUP)
            .zip(m.codes.par_chunks_mut(group_bytes))
            .enumerate()
            .for_each(|(g, (gs, gc))| {
                for lane in 0..GROUP.min(rows - g * GROUP) {
                    let r = g * GROUP + lane;
                    for b in 0..blocks {
                        for k in 0..block_scales {
                            gs[(b * block_scales + k) * GROUP + lane] =
                                scales[(r * blocks + b) * block_scales + k];
                        }
                        let src = &codes[(r * blocks + b) * block_bytes..][..block_bytes];
                        for (c, four) in src.chunks_exact(4).enumerate() {
                            let at = (b * block_bytes + c * 4) * GROUP + lane * 4;
                            gc[at..at + 4].copy_from_slice(four);
                        }
                    }
                }
            });
        Some(m)
    }

    /// The scales in row-major order.
    pub fn row_major_scales(&self) -> Vec<f16> {
        (0..self.rows)
            .flat_map(|r| {
                (0..self.blocks)
                    .flat_map(move |b| (0..self.block_scales).map(move |k| self.scale(r, b, k)))
            })
            .collect()
    }

    /// The codes in row-major order.
    pub fn row_major_codes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.rows * self.blocks * self.block_bytes);
        for r in 0..self.rows {
            for b in 0..self.blocks {
                for c in 0..self.block_bytes / 4 {
                    out.extend_from_slice(self.chunk(r, b, c));
                }
            }
        }
        out
    }

    /// Scale `k` of row `r`, block `b`.
    pub fn scale(&self, r: usize, b: usize, k: usize) -> f16 {
        let block = (r / GROUP) * self.blocks + b;
        self.scales[(block * self.block_scales + k) * GROUP + r % GROUP]
    }

    /// Bytes `4c..4c + 4` of row `r`'s block `b`.
    pub fn chunk(&self, r: usize, b: usize, c: usize) -> &[u8] {
        let at =
            (((r / GROUP) * self.blocks + b) * self.block_bytes + c * 4) * GROUP + (r % GROUP) * 4;
        &self.codes[at..at + 4]
    }

    /// Group `g`'s codes and scales.
    pub fn group(&self, g: usize) -> (&[u8], &[f16]) {
        let bytes = self.blocks * GROUP * self.block_bytes;
        let scales = self.blocks * self.block_scales * GROUP;
        (
            &self.codes[g * bytes..(g + 1) * bytes],
            &self.scales[g * scales..(g + 1) * scales],
        )
    }

    /// Bytes held (what a decode step streams).
    pub fn size_bytes(&self) -> usize {
        self.codes.len() + 2 * self.scales.len()
    }
}

/// One activation row of a block format, prepared for its group kernels.
pub(crate) trait GroupDot: Sync {
    /// The 8 dot products of one row group (`codes`, `scales` as
    /// [`Interleaved::group`] gives them) with this row.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(&self, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]);

    /// The reference for [`dot_avx2`](Self::dot_avx2).
    fn dot_scalar(&self, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]);

    /// The AVX-512 VNNI kernel; formats without one run their AVX2 kernel.
    /// The row must have been prepared for it (see each format's gemv).
    ///
    /// # Safety
    /// AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C must be available.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx512_vnni(&self, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]) {
        self.dot_avx2(codes, scales, out)
    }

    /// The AVX-VNNI (256-bit `vpdpbusd`) kernel; formats without one run
    /// their AVX2 kernel.
    ///
    /// # Safety
    /// AVX-VNNI, AVX2, FMA and F16C must be available.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx_vnni(&self, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]) {
        self.dot_avx2(codes, scales, out)
    }

    /// The NEON kernel; formats without one run the reference.
    #[cfg(target_arch = "aarch64")]
    fn dot_neon(&self, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]) {
        self.dot_scalar(codes, scales, out)
    }

    /// The widest vector kernel the CPU has, else the reference.
    fn dot(&self, features: CpuFeatures, codes: &[u8], scales: &[f16], out: &mut [f32; GROUP]) {
        #[cfg(target_arch = "x86_64")]
        if features.avx512_vnni {
            // SAFETY: AVX-512 VNNI (with F, BW, VL, AVX2, FMA, F16C) was detected.
            return unsafe { self.dot_avx512_vnni(codes, scales, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if features.avx_vnni {
            // SAFETY: AVX-VNNI (with AVX2, FMA, F16C) was detected.
            return unsafe { self.dot_avx_vnni(codes, scales, out) };
        }
        #[cfg(target_arch = "x86_64")]
        if features.avx2_fma && features.f16c {
            // SAFETY: AVX2, FMA and F16C were detected on this CPU.
            return unsafe { self.dot_avx2(codes, scales, out) };
        }
        #[cfg(target_arch = "aarch64")]
        if features.neon {
            return self.dot_neon(codes, scales, out);
        }
        let _ = features;
        self.dot_scalar(codes, scales, out)
    }
}

/// Implements [`GroupDot`] for the calling format module's `Activation`
/// with its `avx2::dot_group` and `dot_group_scalar` (and with
/// `avx512_vnni, avx_vnni, neon`, its `avx512::dot_group`,
/// `avx2::dot_group_vnni` and `neon::dot_group`).
macro_rules! group_dot_for_activation {
    (avx512_vnni, avx_vnni, neon) => {
        group_dot_for_activation!(@impl
            #[cfg(target_arch = "x86_64")]
            unsafe fn dot_avx_vnni(
                &self,
                codes: &[u8],
                scales: &[half::f16],
                out: &mut [f32; crate::interleaved::GROUP],
            ) {
                // The kernel asserts that the slices hold whole blocks.
                avx2::dot_group_vnni(codes, scales, self, out)
            }
            #[cfg(target_arch = "x86_64")]
            unsafe fn dot_avx512_vnni(
                &self,
                codes: &[u8],
                scales: &[half::f16],
                out: &mut [f32; crate::interleaved::GROUP],
            ) {
                // The kernel asserts that the slices hold whole blocks.
                avx512::dot_group(codes, scales, self, out)
            }
            #[cfg(target_arch = "aarch64")]
            fn dot_neon(
                &self,
                codes: &[u8],
                scales: &[half::f16],
                out: &mut [f32; crate::interleaved::GROUP],
            ) {
                neon::dot_group(codes, scales, self, out)
            }
        );
    };
    () => {
        group_dot_for_activation!(@impl);
    };
    (@impl $($extra:item)*) => {
        impl crate::interleaved::GroupDot for Activation<'_> {
            #[cfg(target_arch = "x86_64")]
            unsafe fn dot_avx2(
                &self,
                codes: &[u8],
                scales: &[half::f16],
                out: &mut [f32; crate::interleaved::GROUP],
            ) {
                // The kernel asserts that the slices hold whole blocks.
                avx2::dot_group(codes, scales, self, out)
            }

            fn dot_scalar(
                &self,
                codes: &[u8],
                scales: &[half::f16],
                out: &mut [f32; crate::interleaved::GROUP],
            ) {
                dot_group_scalar(codes, scales, self, out)
            }

            $($extra)*
        }
    };
}
pub(crate) use group_dot_for_activation;

/// Spreads activation codes for the AVX-512 VNNI group kernels: per 8
/// bytes, 16 dwords: bytes 0..4 (as one dword) 8 times, then bytes 4..8 8
/// times. One 64-byte load of a group holds two chunks of the 8 rows (row
/// `r` of the first chunk in dword `r`, of the second in dword `8 + r`):
/// these are their partners, so `vpdpbusd` needs no shuffles.
pub(crate) fn expand_chunk_pairs(codes: &[i8], out: &mut Vec<i32>) {
    out.clear();
    for eight in codes.chunks_exact(8) {
        let dword = |at: usize| {
            i32::from_le_bytes([
                eight[at] as u8,
                eight[at + 1] as u8,
                eight[at + 2] as u8,
                eight[at + 3] as u8,
            ])
        };
        out.extend(std::iter::repeat_n(dword(0), GROUP));
        out.extend(std::iter::repeat_n(dword(4), GROUP));
    }
}

/// The end of one block in the AVX-512 VNNI group kernels: `dot` holds the
/// 8 rows' integer sums of even chunks in dwords 0-7 and of odd chunks in
/// 8-15; the halves are added with `offset` (the format's correction,
/// per activation block), and `acc += sum · d[row] · xd` with the 8 rows'
/// F16 scales at `scales`.
///
/// # Safety
/// AVX-512 F, AVX2, FMA and F16C must be available; `scales` holds 8 values.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(crate) unsafe fn finish_block_avx512(
    dot: std::arch::x86_64::__m512i,
    offset: i32,
    scales: *const f16,
    xd: f32,
    acc: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let halves = _mm256_add_epi32(
        _mm512_castsi512_si256(dot),
        _mm512_extracti64x4_epi64::<1>(dot),
    );
    let sums = _mm256_add_epi32(halves, _mm256_set1_epi32(offset));
    let d = _mm256_cvtph_ps(_mm_loadu_si128(scales as *const __m128i));
    let d = _mm256_mul_ps(d, _mm256_set1_ps(xd));
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc)
}

/// `y` [rows.len(), N] = each activation row against every row of `w`, by
/// the format's group kernel, groups spread over the thread pool.
pub(crate) fn gemv_groups<A: GroupDot>(w: &Interleaved, rows: &[A], y: &mut [f32]) {
    let features = CpuFeatures::detect();
    par_groups(y, rows.len(), w.rows, |g, i, out| {
        let (codes, scales) = w.group(g);
        rows[i].dot(features, codes, scales, out);
    });
}

/// Fills `y` [m, n] (row-major) group by group: `dot(g, i, out)` writes the
/// 8 results of row group `g` against activation row `i`. Groups are spread
/// over the thread pool.
fn par_groups(
    y: &mut [f32],
    m: usize,
    n: usize,
    dot: impl Fn(usize, usize, &mut [f32; GROUP]) + Sync,
) {
    assert_eq!(y.len(), m * n, "output size");
    if m == 1 && n.is_multiple_of(GROUP) {
        y.par_chunks_mut(GROUPS_PER_TASK * GROUP)
            .enumerate()
            .for_each(|(t, ys)| {
                for (gi, out) in ys.chunks_exact_mut(GROUP).enumerate() {
                    let out: &mut [f32; GROUP] = out.try_into().expect("GROUP lanes");
                    dot(t * GROUPS_PER_TASK + gi, 0, out);
                }
            });
        return;
    }
    let groups = n.div_ceil(GROUP);
    with_reused(&BY_GROUP, |by_group| {
        reset(by_group, groups * m * GROUP);
        scatter_groups(by_group, y, m, n, dot);
    });
}

thread_local! {
    /// [`par_groups`]' staging buffer for several activation rows.
    static BY_GROUP: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`par_groups`] for several activation rows: results in `by_group`
/// ([group][activation row][lane]), then scattered to `y` [m, n].
fn scatter_groups(
    by_group: &mut [f32],
    y: &mut [f32],
    m: usize,
    n: usize,
    dot: impl Fn(usize, usize, &mut [f32; GROUP]) + Sync,
) {
    by_group
        .par_chunks_mut(GROUPS_PER_TASK * m * GROUP)
        .enumerate()
        .for_each(|(t, chunk)| {
            for (gi, sums) in chunk.chunks_exact_mut(m * GROUP).enumerate() {
                for (i, out) in sums.chunks_exact_mut(GROUP).enumerate() {
                    let out: &mut [f32; GROUP] = out.try_into().expect("GROUP lanes");
                    dot(t * GROUPS_PER_TASK + gi, i, out);
                }
            }
        });
    for (g, sums) in by_group.chunks_exact(m * GROUP).enumerate() {
        for (i, lanes) in sums.chunks_exact(GROUP).enumerate() {
            for (lane, &v) in lanes.iter().enumerate().take(n - g * GROUP) {
                y[i * n + g * GROUP + lane] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_blocks_round_trip() {
        for (rows, blocks, per) in [
            (11, 2, (1, 16)),
            (8, 3, (1, 32)),
            (1, 1, (1, 4)),
            (9, 2, (2, 140)),
        ] {
            let (n_scales, bytes) = per;
            let scales: Vec<f16> = (0..rows * blocks * n_scales)
                .map(|i| f16::from_f32(i as f32))
                .collect();
            let codes: Vec<u8> = (0..rows * blocks * bytes)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            let m = Interleaved::from_row_major(rows, blocks, per, &scales, &codes).unwrap();
            assert_eq!(m.row_major_scales(), scales);
            assert_eq!(m.row_major_codes(), codes);
            let (r, b, k) = (rows - 1, blocks - 1, n_scales - 1);
            assert_eq!(m.scale(r, b, k), scales[(r * blocks + b) * n_scales + k]);
            let at = (r * blocks + b) * bytes + 4;
            if bytes > 4 {
                assert_eq!(m.chunk(r, b, 1), &codes[at..at + 4]);
            }
            let short = &scales[1..];
            assert!(Interleaved::from_row_major(rows, blocks, per, short, &codes).is_none());
            assert!(Interleaved::from_row_major(rows, blocks + 1, per, &scales, &codes).is_none());
        }
    }

    #[test]
    fn chunk_pairs_are_spread_for_the_64_byte_loads() {
        let codes: Vec<i8> = (0..16).map(|i| i as i8 - 3).collect();
        let mut out = Vec::new();
        expand_chunk_pairs(&codes, &mut out);
        assert_eq!(out.len(), 32);
        for (t, lanes) in out.chunks(GROUP).enumerate() {
            let at = 4 * t;
            let bytes = [0, 1, 2, 3].map(|i| codes[at + i] as u8);
            assert!(lanes.iter().all(|&d| d == i32::from_le_bytes(bytes)));
        }
    }

    #[test]
    fn group_driver_scatters_every_row_and_lane() {
        for (m, n) in [(1, 16), (1, 13), (3, 21)] {
            let mut y = vec![f32::NAN; m * n];
            par_groups(&mut y, m, n, |g, i, out| {
                for (lane, o) in out.iter_mut().enumerate() {
                    *o = (i * 1000 + g * GROUP + lane) as f32;
                }
            });
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(y[i * n + j], (i * 1000 + j) as f32);
                }
            }
        }
    }
}
