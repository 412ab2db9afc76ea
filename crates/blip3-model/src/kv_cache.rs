//! Key/value cache of one sequence: per decoder layer, the keys (after RoPE)
//! and values of every position so far, in a preallocated buffer laid out
//! `[kv_heads, capacity, head_dim]` so one head's positions are contiguous for
//! the decode kernel.
//!
//! The buffer holds F32 (the reference precision, used with F32 weights so
//! parity runs are exact) or F16 (half the bytes a decode step reads at long
//! contexts, what llama.cpp keeps by default). Capacity grows by doubling, so
//! a long context does not reserve the model's whole window up front.

use half::f16;
use half::slice::HalfBitsSliceExt;

use blip3_kernels::attention::{decode_attention, CacheLayout};

/// Element type of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPrecision {
    /// 4 bytes per element: bit-exact with the reference.
    F32,
    /// 2 bytes per element: half the decode-time cache traffic.
    F16,
}

impl KvPrecision {
    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// Positions allocated at a time (capacity is a multiple of this).
const GROWTH_QUANTUM: usize = 256;

/// One tensor's worth of cache (keys or values of one layer).
#[derive(Debug)]
enum Buffer {
    F32(Vec<f32>),
    /// F16 bits: a zeroed `Vec<u16>` is allocated lazily by the OS, a `Vec<f16>` is not.
    F16(Vec<u16>),
}

impl Buffer {
    fn zeros(precision: KvPrecision, len: usize) -> Self {
        match precision {
            KvPrecision::F32 => Self::F32(vec![0f32; len]),
            KvPrecision::F16 => Self::F16(vec![0u16; len]),
        }
    }

    /// Writes `values` at element offset `at`, rounding to F16 if needed.
    fn write(&mut self, at: usize, values: &[f32]) {
        match self {
            Self::F32(b) => b[at..at + values.len()].copy_from_slice(values),
            Self::F16(b) => {
                let dst: &mut [f16] = b[at..at + values.len()].reinterpret_cast_mut();
                for (d, &v) in dst.iter_mut().zip(values) {
                    *d = f16::from_f32(v);
                }
            }
        }
    }

    /// Reads `out.len()` elements from offset `at` as F32.
    fn read(&self, at: usize, out: &mut [f32]) {
        match self {
            Self::F32(b) => out.copy_from_slice(&b[at..at + out.len()]),
            Self::F16(b) => {
                let src: &[f16] = b[at..at + out.len()].reinterpret_cast();
                for (o, h) in out.iter_mut().zip(src) {
                    *o = h.to_f32();
                }
            }
        }
    }

    /// Copies rows `0..len` of every head from a buffer of capacity `from` into
    /// one of capacity `to`.
    fn regrow(&self, heads: usize, head_dim: usize, from: usize, to: usize, len: usize) -> Self {
        fn copy<T: Copy + Default>(
            src: &[T],
            heads: usize,
            hd: usize,
            from: usize,
            to: usize,
            len: usize,
            zero: T,
        ) -> Vec<T> {
            let mut dst = vec![zero; heads * to * hd];
            for h in 0..heads {
                dst[h * to * hd..][..len * hd].copy_from_slice(&src[h * from * hd..][..len * hd]);
            }
            dst
        }
        match self {
            Self::F32(b) => Self::F32(copy(b, heads, head_dim, from, to, len, 0f32)),
            Self::F16(b) => Self::F16(copy(b, heads, head_dim, from, to, len, 0u16)),
        }
    }
}

/// Keys and values of one decoder layer.
#[derive(Debug)]
struct LayerCache {
    keys: Buffer,
    values: Buffer,
}

/// Per-layer key/value cache of one sequence.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    precision: KvPrecision,
    kv_heads: usize,
    head_dim: usize,
    /// Positions each head's region can hold.
    capacity: usize,
    /// Largest capacity the model allows (its context window).
    max_positions: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` decoder layers (no memory until the first append).
    pub fn new(
        precision: KvPrecision,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        max_positions: usize,
    ) -> Self {
        Self {
            layers: (0..layers)
                .map(|_| LayerCache {
                    keys: Buffer::zeros(precision, 0),
                    values: Buffer::zeros(precision, 0),
                })
                .collect(),
            precision,
            kv_heads,
            head_dim,
            capacity: 0,
            max_positions,
            len: 0,
        }
    }

    /// Tokens already in the cache (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward pass.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element type held.
    pub fn precision(&self) -> KvPrecision {
        self.precision
    }

    /// Bytes currently reserved (all layers, keys and values).
    pub fn reserved_bytes(&self) -> usize {
        let per = match self.precision {
            KvPrecision::F32 => 4,
            KvPrecision::F16 => 2,
        };
        2 * self.layers.len() * self.kv_heads * self.capacity * self.head_dim * per
    }

    /// Makes room for `total` positions (doubling, in whole quanta, capped at
    /// the model's window).
    pub(crate) fn reserve(&mut self, total: usize) {
        if total <= self.capacity {
            return;
        }
        let want = total.max(2 * self.capacity).div_ceil(GROWTH_QUANTUM) * GROWTH_QUANTUM;
        let to = want.min(self.max_positions.max(total));
        let (heads, hd, from, len) = (self.kv_heads, self.head_dim, self.capacity, self.len);
        for layer in &mut self.layers {
            layer.keys = layer.keys.regrow(heads, hd, from, to, len);
            layer.values = layer.values.regrow(heads, hd, from, to, len);
        }
        self.capacity = to;
    }

    /// Element offset of (head, position) in a layer buffer.
    fn offset(&self, head: usize, position: usize) -> usize {
        (head * self.capacity + position) * self.head_dim
    }

    /// Stores `len` new positions of layer `layer` starting at `self.len()`:
    /// `keys`, `values` laid out [kv_heads, len, head_dim]. `reserve` first.
    pub(crate) fn write(&mut self, layer: usize, keys: &[f32], values: &[f32], len: usize) {
        let hd = self.head_dim;
        for h in 0..self.kv_heads {
            let at = self.offset(h, self.len);
            let src = h * len * hd..(h + 1) * len * hd;
            let entry = &mut self.layers[layer];
            entry.keys.write(at, &keys[src.clone()]);
            entry.values.write(at, &values[src]);
        }
    }

    /// Keys and values of positions `0..total` of layer `layer` as F32,
    /// each laid out [kv_heads, total, head_dim].
    pub(crate) fn read(&self, layer: usize, total: usize) -> (Vec<f32>, Vec<f32>) {
        let hd = self.head_dim;
        let mut keys = vec![0f32; self.kv_heads * total * hd];
        let mut values = vec![0f32; self.kv_heads * total * hd];
        let entry = &self.layers[layer];
        for h in 0..self.kv_heads {
            let at = self.offset(h, 0);
            let dst = h * total * hd..(h + 1) * total * hd;
            entry.keys.read(at, &mut keys[dst.clone()]);
            entry.values.read(at, &mut values[dst]);
        }
        (keys, values)
    }

    /// Attention of one query position per head (`q` [heads, head_dim]) over
    /// cached positions `positions` of layer `layer`, read in place.
    pub(crate) fn attend_one(
        &self,
        layer: usize,
        q: &[f32],
        group: usize,
        positions: std::ops::Range<usize>,
        scale: f32,
        out: &mut [f32],
    ) {
        let layout = CacheLayout {
            offset: 0,
            head_stride: self.capacity * self.head_dim,
            row_stride: self.head_dim,
        };
        let entry = &self.layers[layer];
        let hd = self.head_dim;
        match (&entry.keys, &entry.values) {
            (Buffer::F32(k), Buffer::F32(v)) => {
                decode_attention(q, k, layout, v, layout, hd, group, positions, scale, out)
            }
            (Buffer::F16(k), Buffer::F16(v)) => {
                let (k, v): (&[f16], &[f16]) = (k.reinterpret_cast(), v.reinterpret_cast());
                decode_attention(q, k, layout, v, layout, hd, group, positions, scale, out)
            }
            _ => unreachable!("keys and values share one precision"),
        }
    }

    /// Marks `n` more positions as filled (after every layer has written them).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeping_rows_and_rounds_f16() {
        for precision in [KvPrecision::F32, KvPrecision::F16] {
            let (heads, hd) = (2, 3);
            let mut c = KvCache::new(precision, 1, heads, hd, 1000);
            let mut expect_k = vec![Vec::new(); heads];
            let mut written = 0;
            for step in [5usize, 300, 1, 400] {
                let k: Vec<f32> = (0..heads * step * hd)
                    .map(|i| (i + written * 7) as f32 * 0.5)
                    .collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                c.reserve(written + step);
                c.write(0, &k, &v, step);
                c.advance(step);
                for (h, e) in expect_k.iter_mut().enumerate() {
                    e.extend_from_slice(&k[h * step * hd..(h + 1) * step * hd]);
                }
                written += step;
            }
            assert_eq!(c.len(), 706);
            assert!(c.capacity >= 706 && c.capacity <= 1000);
            let (k, v) = c.read(0, written);
            for h in 0..heads {
                for (i, &e) in expect_k[h].iter().enumerate() {
                    let want = match precision {
                        KvPrecision::F32 => e,
                        KvPrecision::F16 => f16::from_f32(e).to_f32(),
                    };
                    assert_eq!(k[h * written * hd + i], want);
                    assert_eq!(v[h * written * hd + i], -want);
                }
            }
        }
    }
}
