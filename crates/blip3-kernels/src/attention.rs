//! Decode-step attention: one query per head against the cached keys and
//! values, read in place from the cache (no transposed copies, no batched
//! matmul set-up per head), heads in parallel.

use half::f16;
use rayon::prelude::*;

use crate::cpu::CpuFeatures;

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
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, (h, (o, qh))| {
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
        });
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
