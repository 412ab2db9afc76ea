//! Decode-step attention: one query per head against the cached keys and
//! values, read in place from the cache (no transposed copies, no batched
//! matmul set-up per head), heads in parallel.

use rayon::prelude::*;

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

/// Computes `out[h] = softmax(scale · q[h]·K[h, first..len]ᵀ) · V[h, first..len]`
/// for every query head `h` (query head h reads key/value head `h / group`).
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    q: &[f32],
    k: &[f32],
    k_layout: CacheLayout,
    v: &[f32],
    v_layout: CacheLayout,
    head_dim: usize,
    group: usize,
    positions: std::ops::Range<usize>,
    scale: f32,
    out: &mut [f32],
) {
    assert_eq!(q.len(), out.len(), "query and output sizes");
    assert!(!positions.is_empty(), "attention over no positions");
    out.par_chunks_mut(head_dim)
        .zip(q.par_chunks(head_dim))
        .enumerate()
        .for_each(|(h, (o, qh))| {
            let kv = h / group.max(1);
            let mut scores: Vec<f32> = positions
                .clone()
                .map(|j| {
                    let at = k_layout.offset + kv * k_layout.head_stride + j * k_layout.row_stride;
                    scale * dot(qh, &k[at..at + head_dim])
                })
                .collect();
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0f32;
            for s in &mut scores {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (p, j) in scores.iter().zip(positions.clone()) {
                let at = v_layout.offset + kv * v_layout.head_stride + j * v_layout.row_stride;
                let w = p / sum;
                for (acc, &x) in o.iter_mut().zip(&v[at..at + head_dim]) {
                    *acc += w * x;
                }
            }
        });
}

/// Dot product in 8 independent lanes (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
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
        }
    }
}
