//! Attention kernels.
//!
//! * [`decode_attention`]: one query per head against the cached keys and
//!   values, read in place from the cache (F32 or F16), heads in parallel.
//! * [`attention`]: many queries (ViT, prefill) over strided Q/K/V, by query
//!   blocks with the GEMM micro-kernel, causal/sliding-window masks applied
//!   per block; no full score matrix is materialised.

use std::cell::RefCell;

use half::f16;
use rayon::prelude::*;

use crate::activation::softmax;
use crate::cpu::CpuFeatures;
use crate::gemm::{gemm_serial, DenseRows};
use crate::scratch::with_reused;

/// Where the cached keys (or values) of one layer live in a flat buffer:
/// element `(head, position, d)` is at `offset + head·head_stride + position·row_stride + d`.
#[derive(Debug, Clone, Copy)]
pub struct CacheLayout {
    /// Offset of (0, 0, 0).
    pub offset: usize,
    /// Distance between heads.
    pub head_stride: usize,
    /// Distance between positions.
    pub row_stride: usize,
}

/// An element type a key/value cache may hold: F32 (the reference precision)
/// or F16 (half the bytes a decode step reads at long contexts).
pub trait CacheElement: Copy + Send + Sync + 'static {
    /// `Σ q[d]·k[d]` with `k` widened to F32.
    fn dot(features: CpuFeatures, q: &[f32], k: &[Self]) -> f32;
    /// `acc[d] += w·v[d]` with `v` widened to F32.
    fn axpy(features: CpuFeatures, w: f32, v: &[Self], acc: &mut [f32]);
}

impl CacheElement for f32 {
    fn dot(features: CpuFeatures, q: &[f32], k: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if features.avx2_fma {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            return unsafe { avx2::dot_f32(q, k) };
        }
        let _ = features;
        q.iter().zip(k).map(|(a, b)| a * b).sum()
    }

    fn axpy(features: CpuFeatures, w: f32, v: &[f32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if features.avx2_fma {
            // SAFETY: AVX2 and FMA were detected on this CPU.
            return unsafe { avx2::axpy_f32(w, v, acc) };
        }
        let _ = features;
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += w * x;
        }
    }
}

impl CacheElement for f16 {
    fn dot(features: CpuFeatures, q: &[f32], k: &[f16]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if features.avx2_fma && features.f16c {
            // SAFETY: AVX2, FMA and F16C were detected on this CPU.
            return unsafe { avx2::dot_f16(q, k) };
        }
        let _ = features;
        q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
    }

    fn axpy(features: CpuFeatures, w: f32, v: &[f16], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if features.avx2_fma && features.f16c {
            // SAFETY: AVX2, FMA and F16C were detected on this CPU.
            return unsafe { avx2::axpy_f16(w, v, acc) };
        }
        let _ = features;
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += w * x.to_f32();
        }
    }
}

/// Computes `out[h] = softmax(scale · q[h]·K[h, first..len]ᵀ) · V[h, first..len]`
/// for every query head `h` (query head h reads key/value head `h / group`).
/// One pass over the keys for the scores, one over the values; heads run in
/// parallel and nothing of size `heads × positions` is materialised.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention<T: CacheElement>(
    q: &[f32],
    k: &[T],
    k_layout: CacheLayout,
    v: &[T],
    v_layout: CacheLayout,
    head_dim: usize,
    group: usize,
    positions: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    assert_eq!(q.len(), out.len(), "query and output sizes");
    assert!(!positions.is_empty(), "attention over no positions");
    let features = CpuFeatures::detect();
    out.par_chunks_mut(head_dim)
        .zip(q.par_chunks(head_dim))
        .enumerate()
        .for_each(|(h, (o, qh))| {
            with_reused(&SCORES, |scores| {
                let kv = h / group.max(1);
                scores.clear();
                scores.extend(positions.clone().map(|j| {
                    let at = k_layout.offset + kv * k_layout.head_stride + j * k_layout.row_stride;
                    scale * T::dot(features, qh, &k[at..at + head_dim])
                }));
                let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
                let mut sum = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                o.fill(0.0);
                let inv = 1.0 / sum;
                for (p, j) in scores.iter().zip(positions.clone()) {
                    let at = v_layout.offset + kv * v_layout.head_stride + j * v_layout.row_stride;
                    T::axpy(features, p * inv, &v[at..at + head_dim], o);
                }
            })
        });
}

thread_local! {
    /// [`decode_attention`]'s scores of one head.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A strided view of a [B, H, T, hd] tensor (Q, K or V) in a flat buffer:
/// element `(b, h, t, d)` is at `offset + b·batch + h·head + t·token + d`.
/// Lets attention read heads straight out of a fused QKV projection.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// The buffer.
    pub data: &'a [f32],
    /// Offset of (0, 0, 0, 0).
    pub offset: usize,
    /// Distance between batch entries.
    pub batch: usize,
    /// Distance between heads.
    pub head: usize,
    /// Distance between positions.
    pub token: usize,
}

impl<'a> Strided<'a> {
    /// A contiguous [B, H, T, hd] buffer.
    pub fn contiguous(data: &'a [f32], heads: usize, tokens: usize, head_dim: usize) -> Self {
        Self {
            data,
            offset: 0,
            batch: heads * tokens * head_dim,
            head: tokens * head_dim,
            token: head_dim,
        }
    }

    /// Rows `t0 .. t0 + out.len() / hd` of head (b, h), contiguous into `out`.
    fn gather(&self, b: usize, h: usize, t0: usize, hd: usize, out: &mut [f32]) {
        for (i, row) in out.chunks_exact_mut(hd).enumerate() {
            let at = self.offset + b * self.batch + h * self.head + (t0 + i) * self.token;
            row.copy_from_slice(&self.data[at..at + hd]);
        }
    }
}

/// Which keys each query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility<'a> {
    /// Every key (ViT, perceiver).
    All,
    /// Every key whose entry is `true` in this `[B, keys]` mask (the masked
    /// perceiver: padded media tokens are hidden, a −∞ logit before the
    /// softmax). Each sequence must keep at least one key.
    KeyMask(&'a [bool]),
    /// Query `t` sits at absolute position `query_start + t` and sees keys
    /// `p − window ..= p` of it (`window: None`: all earlier keys).
    Causal {
        /// Absolute position of the first query (keys start at position 0).
        query_start: usize,
        /// Sliding window W (keys `p − W ..= p`).
        window: Option<usize>,
    },
}

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Independent sequences B.
    pub batch: usize,
    /// Query heads H.
    pub heads: usize,
    /// Key/value heads (H is a multiple of it).
    pub kv_heads: usize,
    /// Query positions per sequence.
    pub queries: usize,
    /// Key positions per sequence.
    pub keys: usize,
    /// Head width hd.
    pub head_dim: usize,
}

/// A BF16-weight GEMM for the two products of [`head_in_bf16`], and the
/// depth multiple it needs (the head width and the key span are zero-padded
/// to it).
#[derive(Clone, Copy)]
struct HeadGemm {
    run: crate::shared::Bf16Gemm,
    depth_multiple: usize,
    /// Queries per block where every query sees every key (the ViT, the
    /// perceiver). Each block packs the head's keys and values afresh, so a
    /// GEMM that packs its weight wants tall blocks; causal attention keeps
    /// [`QUERY_BLOCK`], as taller blocks compute more masked scores.
    unmasked_query_block: usize,
}

impl HeadGemm {
    /// The tile unit where usable, else AVX-512 BF16 dot products, else none.
    fn for_cpu(features: CpuFeatures) -> Option<Self> {
        if features.amx_bf16 {
            // Whole tile depths: 32 BF16 values.
            return Some(Self {
                run: crate::amx::gemm_bf16,
                depth_multiple: 32,
                unmasked_query_block: QUERY_BLOCK,
            });
        }
        // Whole pairs; extra rows past the span stay zero, so any even
        // multiple works.
        // 256 queries: the keys of a ViT crop are packed 3 times, not 8
        // (packing was half the time of its products), and the score block
        // (256 × 730 × 4 bytes) still fits L2.
        features.avx512_bf16.then_some(Self {
            run: crate::avx512_bf16::gemm_bf16,
            depth_multiple: 2,
            unmasked_query_block: 256,
        })
    }
}

/// One (sequence, head) of [`attention_with`] in BF16: both products
/// through `gemm` (the AMX tiles or `vdpbf16ps`), the head width and the key
/// span zero-padded to its depth multiple. Returns the head's [queries, hd].
#[allow(clippy::too_many_arguments)]
fn head_in_bf16(
    gemm: HeadGemm,
    shape: AttentionShape,
    (b, h, kvh): (usize, usize, usize),
    q: Strided,
    k: Strided,
    v: Strided,
    scale: f32,
    visibility: Visibility<'_>,
    features: CpuFeatures,
) -> Vec<f32> {
    use half::bf16;
    let AttentionShape {
        queries,
        keys,
        head_dim: hd,
        ..
    } = shape;
    let align = gemm.depth_multiple;
    let hdp = hd.next_multiple_of(align);
    // Keys [keys + 32, hdp] and Vᵀ [hdp, kp] in BF16, zero-padded, on 64-byte
    // boundaries (rows of whole tile depths), with whole tiles of rows past
    // the real ones: the tile GEMM reads them in place for every query block
    // instead of copying partial tiles.
    let kp = (keys + 32).next_multiple_of(align);
    let mut row = vec![0f32; keys * hd];
    k.gather(b, kvh, 0, hd, &mut row);
    let mut keys_buffer = crate::scratch::AlignedBf16::new();
    let keys_h = keys_buffer.reset((keys + 32) * hdp);
    for (dst, src) in keys_h.chunks_exact_mut(hdp).zip(row.chunks_exact(hd)) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = bf16::from_f32(x);
        }
    }
    let keys_h = keys_buffer.as_slice();
    v.gather(b, kvh, 0, hd, &mut row);
    let mut values_buffer = crate::scratch::AlignedBf16::new();
    let values_t = values_buffer.reset(hdp * kp);
    for (j, src) in row.chunks_exact(hd).enumerate() {
        for (d, &x) in src.iter().enumerate() {
            values_t[d * kp + j] = bf16::from_f32(x);
        }
    }
    let values_t = values_buffer.as_slice();
    let mut result = vec![0f32; queries * hd];
    let mut q_row = vec![0f32; hd];
    let query_block = match visibility {
        Visibility::Causal { .. } => QUERY_BLOCK,
        Visibility::All | Visibility::KeyMask(_) => gemm.unmasked_query_block,
    };
    let mut q_block = vec![0f32; query_block * hdp];
    let mut scores = vec![0f32; query_block * kp];
    for t0 in (0..queries).step_by(query_block) {
        let rows = query_block.min(queries - t0);
        let (lo, hi) = visible_span(visibility, t0, rows, keys);
        let span = hi - lo;
        let qb = &mut q_block[..rows * hdp];
        for (i, dst) in qb.chunks_exact_mut(hdp).enumerate() {
            q.gather(b, h, t0 + i, hd, &mut q_row);
            for (d, &x) in dst.iter_mut().zip(&q_row) {
                *d = x * scale;
            }
        }
        // Scores [rows, spanp]: the span padded to whole tile depths, so the
        // probabilities feed the second product as they are (zeros past
        // `span`).
        let spanp = span.next_multiple_of(align).max(align);
        let s = &mut scores[..rows * spanp];
        let product = crate::gemm::Bf16Product {
            a: qb,
            m: rows,
            w: &keys_h[lo * hdp..],
            n: spanp,
            k: hdp,
            stride: hdp,
        };
        (gemm.run)(product, s, false);
        for (i, row) in s.chunks_exact_mut(spanp).enumerate() {
            let (live, pad) = row.split_at_mut(span);
            if span > 0 {
                mask_row(visibility, b, keys, t0 + i, lo, live);
                softmax(features, live);
            }
            pad.fill(0.0);
        }
        let product = crate::gemm::Bf16Product {
            a: s,
            m: rows,
            w: &values_t[lo..],
            n: hd,
            k: spanp,
            stride: kp,
        };
        (gemm.run)(product, &mut result[t0 * hd..(t0 + rows) * hd], false);
    }
    result
}

/// The keys that queries `t0..t0 + rows` may see: `lo..hi`.
fn visible_span(visibility: Visibility<'_>, t0: usize, rows: usize, keys: usize) -> (usize, usize) {
    match visibility {
        Visibility::All | Visibility::KeyMask(_) => (0, keys),
        Visibility::Causal {
            query_start,
            window,
        } => {
            let first = query_start + t0;
            let lo = window.map_or(0, |w| first.saturating_sub(w));
            (lo.min(keys), (query_start + t0 + rows).min(keys))
        }
    }
}

/// Sets the scores of keys that query `t` of sequence `b` may not see (keys
/// `lo..lo + row.len()`) to −∞.
fn mask_row(
    visibility: Visibility<'_>,
    b: usize,
    keys: usize,
    t: usize,
    lo: usize,
    row: &mut [f32],
) {
    match visibility {
        Visibility::Causal {
            query_start,
            window,
        } => {
            let p = query_start + t;
            let first = window.map_or(0, |w| p.saturating_sub(w));
            for (j, x) in row.iter_mut().enumerate() {
                let key = lo + j;
                if key > p || key < first {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        Visibility::KeyMask(mask) => {
            let keep = &mask[b * keys + lo..b * keys + lo + row.len()];
            for (x, &k) in row.iter_mut().zip(keep) {
                if !k {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        Visibility::All => {}
    }
}

/// Queries per block: the score block `QUERY_BLOCK × keys` stays in L2.
const QUERY_BLOCK: usize = 96;

/// The arithmetic of the two products of [`attention_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    /// F32 throughout (the reference's precision).
    F32,
    /// Q, K, the probabilities and V rounded to BF16, F32 sums, on the AMX
    /// tiles or with AVX-512 BF16 dot products where the CPU has them (what
    /// PyTorch's BF16 attention computes); F32 elsewhere. For models whose
    /// weights are BF16 anyway.
    Bf16,
}

/// Multi-query attention `softmax(scale · Q·Kᵀ + mask) · V` for every
/// sequence and head, written to `out` as [B, queries, H·hd] (heads merged,
/// ready for the output projection).
///
/// Heads run in parallel; each processes blocks of queries with the GEMM
/// micro-kernel for both products, so only a `block × keys` score tile exists
/// at a time (never the [B, H, queries, keys] matrix).
pub fn attention(
    shape: AttentionShape,
    q: Strided,
    k: Strided,
    v: Strided,
    scale: f32,
    visibility: Visibility<'_>,
    out: &mut [f32],
) {
    attention_with(Products::F32, shape, q, k, v, scale, visibility, out);
}

/// [`attention`] with the products' arithmetic chosen by `products`.
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    products: Products,
    shape: AttentionShape,
    q: Strided,
    k: Strided,
    v: Strided,
    scale: f32,
    visibility: Visibility<'_>,
    out: &mut [f32],
) {
    let AttentionShape {
        batch,
        heads,
        kv_heads,
        queries,
        keys,
        head_dim: hd,
    } = shape;
    assert_eq!(out.len(), batch * queries * heads * hd, "output size");
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "head grouping"
    );
    if let Visibility::KeyMask(mask) = visibility {
        assert_eq!(mask.len(), batch * keys, "key mask size");
    }
    let features = CpuFeatures::detect();
    let bf16_gemm = match products {
        Products::Bf16 => HeadGemm::for_cpu(features),
        Products::F32 => None,
    };
    let group = heads / kv_heads;
    // One [queries, hd] result per (sequence, head), scattered afterwards.
    let per_head: Vec<Vec<f32>> = (0..batch * heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / heads, bh % heads);
            let kvh = h / group;
            if let Some(gemm) = bf16_gemm {
                return head_in_bf16(
                    gemm,
                    shape,
                    (b, h, kvh),
                    q,
                    k,
                    v,
                    scale,
                    visibility,
                    features,
                );
            }
            let mut keys_h = vec![0f32; keys * hd];
            k.gather(b, kvh, 0, hd, &mut keys_h);
            // Vᵀ [hd, keys], so P·V is again "rows times rows".
            let mut values_h = vec![0f32; keys * hd];
            v.gather(b, kvh, 0, hd, &mut values_h);
            let mut values_t = vec![0f32; hd * keys];
            for (j, row) in values_h.chunks_exact(hd).enumerate() {
                for (d, &x) in row.iter().enumerate() {
                    values_t[d * keys + j] = x;
                }
            }
            let mut result = vec![0f32; queries * hd];
            let mut q_block = vec![0f32; QUERY_BLOCK * hd];
            let mut scores = vec![0f32; QUERY_BLOCK * keys];
            for t0 in (0..queries).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(queries - t0);
                let (lo, hi) = visible_span(visibility, t0, rows, keys);
                let span = hi - lo;
                let qb = &mut q_block[..rows * hd];
                q.gather(b, h, t0, hd, qb);
                for x in qb.iter_mut() {
                    *x *= scale;
                }
                let s = &mut scores[..rows * span];
                if span > 0 {
                    let kw = DenseRows::new(&keys_h[lo * hd..hi * hd], span, hd).expect("key rows");
                    gemm_serial(qb, rows, &kw, s);
                }
                for (i, row) in s.chunks_exact_mut(span.max(1)).enumerate().take(rows) {
                    mask_row(visibility, b, keys, t0 + i, lo, row);
                    softmax(features, row);
                }
                let vw = DenseRows::strided(&values_t[lo..], hd, span, keys).expect("value rows");
                gemm_serial(s, rows, &vw, &mut result[t0 * hd..(t0 + rows) * hd]);
            }
            result
        })
        .collect();
    for (bh, result) in per_head.iter().enumerate() {
        let (b, h) = (bh / heads, bh % heads);
        for (t, row) in result.chunks_exact(hd).enumerate() {
            let at = ((b * queries + t) * heads + h) * hd;
            out[at..at + hd].copy_from_slice(row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use crate::shared::hsum256;

    /// # Safety
    /// AVX2 and FMA must be available; `k.len() >= q.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(q: &[f32], k: &[f32]) -> f32 {
        let n = q.len();
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            a0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(q.as_ptr().add(i)),
                _mm256_loadu_ps(k.as_ptr().add(i)),
                a0,
            );
            a1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(q.as_ptr().add(i + 8)),
                _mm256_loadu_ps(k.as_ptr().add(i + 8)),
                a1,
            );
            i += 16;
        }
        if i + 8 <= n {
            a0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(q.as_ptr().add(i)),
                _mm256_loadu_ps(k.as_ptr().add(i)),
                a0,
            );
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(a0, a1));
        while i < n {
            s += q[i] * k[i];
            i += 1;
        }
        s
    }

    /// # Safety
    /// AVX2, FMA and F16C must be available; `k.len() >= q.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
        let n = q.len();
        let load = |i: usize| _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i) as *const __m128i));
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), load(i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i + 8)), load(i + 8), a1);
            i += 16;
        }
        if i + 8 <= n {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), load(i), a0);
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(a0, a1));
        while i < n {
            s += q[i] * k[i].to_f32();
            i += 1;
        }
        s
    }

    /// # Safety
    /// AVX2 and FMA must be available; `v.len() >= acc.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_f32(w: f32, v: &[f32], acc: &mut [f32]) {
        let n = acc.len();
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let p = acc.as_mut_ptr().add(i);
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(wv, _mm256_loadu_ps(v.as_ptr().add(i)), _mm256_loadu_ps(p)),
            );
            i += 8;
        }
        while i < n {
            acc[i] += w * v[i];
            i += 1;
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C must be available; `v.len() >= acc.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy_f16(w: f32, v: &[f16], acc: &mut [f32]) {
        let n = acc.len();
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        while i + 8 <= n {
            let p = acc.as_mut_ptr().add(i);
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i) as *const __m128i));
            _mm256_storeu_ps(p, _mm256_fmadd_ps(wv, x, _mm256_loadu_ps(p)));
            i += 8;
        }
        while i < n {
            acc[i] += w * v[i].to_f32();
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_data;

    /// Straightforward reference in F64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        heads: usize,
        kv_heads: usize,
        hd: usize,
        max: usize,
        first: usize,
        len: usize,
        scale: f64,
    ) -> Vec<f32> {
        let group = heads / kv_heads;
        let mut out = vec![0f32; heads * hd];
        for h in 0..heads {
            let kv = h / group;
            let s: Vec<f64> = (first..len)
                .map(|j| {
                    scale
                        * (0..hd)
                            .map(|d| {
                                f64::from(q[h * hd + d]) * f64::from(k[(kv * max + j) * hd + d])
                            })
                            .sum::<f64>()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let acc: f64 = (first..len)
                    .zip(&e)
                    .map(|(j, p)| p / z * f64::from(v[(kv * max + j) * hd + d]))
                    .sum();
                out[h * hd + d] = acc as f32;
            }
        }
        out
    }

    /// F64 reference for [`attention`] on contiguous [B, H, T, hd] inputs.
    #[allow(clippy::too_many_arguments)]
    fn multi_reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        shape: AttentionShape,
        scale: f64,
        visibility: Visibility<'_>,
    ) -> Vec<f32> {
        let AttentionShape {
            batch,
            heads,
            kv_heads,
            queries,
            keys,
            head_dim: hd,
        } = shape;
        let mut out = vec![0f32; batch * queries * heads * hd];
        for b in 0..batch {
            for h in 0..heads {
                let kvh = h / (heads / kv_heads);
                for t in 0..queries {
                    let visible: Vec<usize> = (0..keys)
                        .filter(|&j| match visibility {
                            Visibility::All => true,
                            Visibility::KeyMask(mask) => mask[b * keys + j],
                            Visibility::Causal {
                                query_start,
                                window,
                            } => {
                                let p = query_start + t;
                                j <= p && window.is_none_or(|w| j + w >= p)
                            }
                        })
                        .collect();
                    let qa = ((b * heads + h) * queries + t) * hd;
                    let s: Vec<f64> = visible
                        .iter()
                        .map(|&j| {
                            let ka = ((b * kv_heads + kvh) * keys + j) * hd;
                            scale
                                * (0..hd)
                                    .map(|d| f64::from(q[qa + d]) * f64::from(k[ka + d]))
                                    .sum::<f64>()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..hd {
                        let acc: f64 = visible
                            .iter()
                            .zip(&e)
                            .map(|(&j, p)| {
                                p / z * f64::from(v[((b * kv_heads + kvh) * keys + j) * hd + d])
                            })
                            .sum();
                        out[((b * queries + t) * heads + h) * hd + d] = acc as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn multi_query_attention_matches_reference_with_masks() {
        // Perceiver-like key masks: sequence 0 hides a leading and a trailing
        // band (padding rows), sequence 1 hides nothing, sequence 2 all but
        // the last 8 keys (the latents, always visible).
        let key_mask: Vec<bool> = (0..3 * 45)
            .map(|i| {
                let (b, j) = (i / 45, i % 45);
                match b {
                    0 => (6..31).contains(&j) || j >= 37,
                    1 => true,
                    _ => j >= 37,
                }
            })
            .collect();
        let cases = [
            (3, 4, 4, 8, 45, 16, Visibility::KeyMask(&key_mask)),
            (3, 2, 2, 130, 45, 12, Visibility::KeyMask(&key_mask)),
            // (batch, heads, kv_heads, queries, keys, hd, visibility)
            (2, 3, 3, 37, 37, 20, Visibility::All),
            (1, 2, 2, 200, 200, 80, Visibility::All),
            // Past one unmasked query block (256 with `vdpbf16ps`).
            (1, 1, 1, 300, 300, 80, Visibility::All),
            (
                1,
                4,
                2,
                50,
                50,
                16,
                Visibility::Causal {
                    query_start: 0,
                    window: None,
                },
            ),
            (
                1,
                2,
                1,
                30,
                130,
                24,
                Visibility::Causal {
                    query_start: 100,
                    window: None,
                },
            ),
            (
                1,
                2,
                2,
                150,
                150,
                13,
                Visibility::Causal {
                    query_start: 0,
                    window: Some(40),
                },
            ),
            (
                1,
                1,
                1,
                10,
                60,
                8,
                Visibility::Causal {
                    query_start: 50,
                    window: Some(5),
                },
            ),
        ];
        for (batch, heads, kv_heads, queries, keys, hd, visibility) in cases {
            let shape = AttentionShape {
                batch,
                heads,
                kv_heads,
                queries,
                keys,
                head_dim: hd,
            };
            let q = test_data(batch * heads * queries * hd, 11);
            let k = test_data(batch * kv_heads * keys * hd, 12);
            let v = test_data(batch * kv_heads * keys * hd, 13);
            let view = Strided::contiguous;
            let scale = 1.0 / (hd as f32).sqrt();
            let want = multi_reference(&q, &k, &v, shape, f64::from(scale), visibility);
            // BF16 products: inputs rounded to 8 significant bits (on the AMX
            // tiles or AVX-512 BF16 where present, else the F32 path).
            for (products, tolerance) in [(Products::F32, 2e-5), (Products::Bf16, 2e-2)] {
                let mut out = vec![0f32; batch * queries * heads * hd];
                attention_with(
                    products,
                    shape,
                    view(&q, heads, queries, hd),
                    view(&k, kv_heads, keys, hd),
                    view(&v, kv_heads, keys, hd),
                    scale,
                    visibility,
                    &mut out,
                );
                let worst = out
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < tolerance,
                    "{products:?} {shape:?} {visibility:?}: {worst}"
                );
            }
        }
    }

    #[test]
    fn matches_reference_with_cache_strides_groups_and_windows() {
        for &(heads, kv_heads, hd, len, first) in &[
            (4, 4, 24, 9, 0),
            (8, 2, 96, 700, 0),
            (3, 3, 13, 50, 17),
            (2, 1, 80, 1, 0),
        ] {
            let max = len + 5; // cache capacity larger than the filled part
            let q = test_data(heads * hd, 1);
            let k = test_data(kv_heads * max * hd, 2);
            let v = test_data(kv_heads * max * hd, 3);
            let layout = CacheLayout {
                offset: 0,
                head_stride: max * hd,
                row_stride: hd,
            };
            let scale = 1.0 / (hd as f32).sqrt();
            let mut out = vec![0f32; heads * hd];
            decode_attention(
                &q,
                &k,
                layout,
                &v,
                layout,
                hd,
                heads / kv_heads,
                first..len,
                scale,
                &mut out,
            );
            let r = reference(
                &q,
                &k,
                &v,
                heads,
                kv_heads,
                hd,
                max,
                first,
                len,
                f64::from(scale),
            );
            let worst = out
                .iter()
                .zip(&r)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "{heads}/{kv_heads}x{hd}, {first}..{len}: {worst}"
            );

            // The same cache in F16 against the reference on the F16-rounded values.
            let k16: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
            let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            let widen = |x: &[f16]| x.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
            let mut out16 = vec![0f32; heads * hd];
            decode_attention(
                &q,
                &k16,
                layout,
                &v16,
                layout,
                hd,
                heads / kv_heads,
                first..len,
                scale,
                &mut out16,
            );
            let r16 = reference(
                &q,
                &widen(&k16),
                &widen(&v16),
                heads,
                kv_heads,
                hd,
                max,
                first,
                len,
                f64::from(scale),
            );
            let worst16 = out16
                .iter()
                .zip(&r16)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst16 < 1e-5, "f16 {heads}/{kv_heads}x{hd}: {worst16}");
        }
    }
}
