//! Element-wise activations applied in place, vectorised, so they can run as
//! the GEMM's epilogue on a tile still in L1 instead of as separate passes
//! over the whole activation (candle's sigmoid is one thread and three passes).

use crate::cpu::CpuFeatures;

/// An activation applied to each output of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// Leave the values as they are.
    #[default]
    Identity,
    /// open_clip's QuickGELU, `x · sigmoid(1.702·x)`.
    QuickGelu,
    /// PyTorch's `gelu(approximate="tanh")` (SigLIP's `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Applies the activation to every element of `xs`.
    pub fn apply(self, features: CpuFeatures, xs: &mut [f32]) {
        match self {
            Self::Identity => {}
            Self::QuickGelu => quick_gelu(features, xs),
            Self::GeluTanh => gelu_tanh(features, xs),
        }
    }
}

/// `row ← softmax(row)` in place (max-subtracted, F32); entries equal to
/// −∞ (masked) become 0. The row must hold at least one finite value.
pub fn softmax(features: CpuFeatures, row: &mut [f32]) {
    // The reductions in vector lanes: a scalar max or sum is one dependent
    // operation per element (4 cycles each), which made these two loops most
    // of a ViT softmax.
    #[cfg(target_arch = "x86_64")]
    if features.avx512 {
        // SAFETY: AVX-512 F was detected on this CPU.
        unsafe {
            let max = avx512::max(row);
            avx512::exp_shifted(row, max);
            avx512::scale(row, 1.0 / avx512::sum(row));
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        unsafe {
            let max = avx2::max(row);
            let done = avx2::exp_shifted(row, max);
            for v in &mut row[done..] {
                *v = (*v - max).exp();
            }
            avx2::scale(row, 1.0 / avx2::sum(row));
        }
        return;
    }
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    #[cfg(target_arch = "x86_64")]
    let done = 0;
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = features;
        0
    };
    for v in &mut row[done..] {
        *v = (*v - max).exp();
    }
    let inv = 1.0 / row.iter().sum::<f32>();
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// QuickGELU reference: `x / (1 + e^(−1.702·x))`.
pub fn quick_gelu_scalar(x: f32) -> f32 {
    x / (1.0 + (-1.702 * x).exp())
}

/// QuickGELU in place.
pub fn quick_gelu(features: CpuFeatures, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if features.avx512 {
        // SAFETY: AVX-512 F was detected on this CPU.
        unsafe { avx512::map(Activation::QuickGelu, xs) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        unsafe { avx2::quick_gelu(xs) };
        return;
    }
    let _ = features;
    for x in xs {
        *x = quick_gelu_scalar(*x);
    }
}

/// √(2/π), the scale inside GELU's tanh approximation.
const GELU_TANH_SCALE: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh approximation.
const GELU_TANH_CUBIC: f32 = 0.044_715;

/// GELU (tanh approximation) reference:
/// `0.5·x·(1 + tanh(u))` with `u = √(2/π)·(x + 0.044715·x³)`, written as the
/// equal `x / (1 + e^(−2u))` so it shares QuickGELU's vector shape.
pub fn gelu_tanh_scalar(x: f32) -> f32 {
    let u = GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// GELU (tanh approximation) in place.
pub fn gelu_tanh(features: CpuFeatures, xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if features.avx512 {
        // SAFETY: AVX-512 F was detected on this CPU.
        unsafe { avx512::map(Activation::GeluTanh, xs) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if features.avx2_fma {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        unsafe { avx2::gelu_tanh(xs) };
        return;
    }
    let _ = features;
    for x in xs {
        *x = gelu_tanh_scalar(*x);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `e^x` for 16 lanes: the same range reduction and degree-6 polynomial
    /// as the AVX2 `exp`, with `vrndscaleps` and `vscalefps` (2^n applied
    /// without building exponent bits) in place of their multi-instruction
    /// AVX2 equivalents. Inputs are clamped to the finite F32 range.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// `activation` on one register: for epilogues that finish an output
    /// tile in registers, before it is stored (reading it back after masked
    /// stores would wait for them to reach the cache).
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn apply16(activation: super::Activation, x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        match activation {
            super::Activation::Identity => x,
            super::Activation::QuickGelu => {
                let e = exp(_mm512_mul_ps(x, _mm512_set1_ps(-1.702)));
                _mm512_div_ps(x, _mm512_add_ps(one, e))
            }
            super::Activation::GeluTanh => {
                let scale = _mm512_set1_ps(-2.0 * super::GELU_TANH_SCALE);
                let cubic = _mm512_set1_ps(super::GELU_TANH_CUBIC);
                // −2u = (−2√(2/π))·x·(1 + 0.044715·x²), as the AVX2 path.
                let inner = _mm512_fmadd_ps(_mm512_mul_ps(cubic, x), x, one);
                let e = exp(_mm512_mul_ps(_mm512_mul_ps(scale, x), inner));
                _mm512_div_ps(x, _mm512_add_ps(one, e))
            }
        }
    }

    /// The lanes of `row` from `at` on, at most 16: the mask of live lanes.
    #[inline]
    fn live(len: usize, at: usize) -> __mmask16 {
        let live = (len - at).min(16);
        if live == 16 {
            0xffff
        } else {
            (1u16 << live) - 1
        }
    }

    /// The largest element of `row` (−∞ when empty; NaNs are skipped), in
    /// four 16-lane registers, the tail masked.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn max(row: &[f32]) -> f32 {
        let low = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut acc = [low; 4];
        let whole = row.len() / 64 * 64;
        let p = row.as_ptr();
        for at in (0..whole).step_by(64) {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_max_ps(_mm512_loadu_ps(p.add(at + 16 * i)), *a);
            }
        }
        for at in (whole..row.len()).step_by(16) {
            let x = _mm512_mask_loadu_ps(low, live(row.len(), at), p.add(at));
            acc[0] = _mm512_max_ps(x, acc[0]);
        }
        let v = _mm512_max_ps(_mm512_max_ps(acc[0], acc[1]), _mm512_max_ps(acc[2], acc[3]));
        _mm512_reduce_max_ps(v)
    }

    /// The sum of `row`, in four 16-lane registers, the tail masked.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn sum(row: &[f32]) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let whole = row.len() / 64 * 64;
        let p = row.as_ptr();
        for at in (0..whole).step_by(64) {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_add_ps(_mm512_loadu_ps(p.add(at + 16 * i)), *a);
            }
        }
        for at in (whole..row.len()).step_by(16) {
            let x = _mm512_maskz_loadu_ps(live(row.len(), at), p.add(at));
            acc[0] = _mm512_add_ps(x, acc[0]);
        }
        let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(v)
    }

    /// `row ← row · k`, the tail masked.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scale(row: &mut [f32], k: f32) {
        let kv = _mm512_set1_ps(k);
        let p = row.as_mut_ptr();
        for at in (0..row.len()).step_by(16) {
            let mask = live(row.len(), at);
            let x = _mm512_maskz_loadu_ps(mask, p.add(at));
            _mm512_mask_storeu_ps(p.add(at), mask, _mm512_mul_ps(x, kv));
        }
    }

    /// `v ← e^(v − max)` for every element of `row` (below −87 after the
    /// shift, masked −∞ included, gives 0), the tail masked. [`exp`] gives
    /// the AVX2 path's values bit for bit.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shifted(row: &mut [f32], max: f32) {
        let m = _mm512_set1_ps(max);
        let floor = _mm512_set1_ps(-87.0);
        let p = row.as_mut_ptr();
        for at in (0..row.len()).step_by(16) {
            let mask = live(row.len(), at);
            let x = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p.add(at)), m);
            let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, floor);
            _mm512_mask_storeu_ps(p.add(at), mask, _mm512_maskz_mov_ps(keep, exp(x)));
        }
    }

    /// The GEMM epilogue `c ← activation(c + bias) + residual` on `rows`
    /// rows of `cols` values at `c` (`ldc` apart), in one pass, four rows at
    /// a time: one row of a tile holds two or three registers, too few
    /// independent exponentials to hide the polynomial's latency. `bias` is
    /// the tile's columns; `residual` the tile's corner in the residual
    /// matrix, rows `ldc` apart as in C. The same values as the bias loop,
    /// [`map`] and the residual loop in turn.
    ///
    /// # Safety
    /// AVX-512 F must be available; `c` (and `residual`) must be valid for
    /// `rows` rows of `cols` values `ldc` apart; `bias`, when given, at
    /// least `cols` long.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn finish_tile(
        c: *mut f32,
        ldc: usize,
        (rows, cols): (usize, usize),
        bias: Option<&[f32]>,
        activation: super::Activation,
        residual: Option<*const f32>,
    ) {
        assert!(bias.is_none_or(|b| b.len() >= cols), "bias length");
        const GROUP: usize = 4;
        for at in (0..cols).step_by(16) {
            let mask = live(cols, at);
            let b = bias.map(|b| _mm512_maskz_loadu_ps(mask, b.as_ptr().add(at)));
            for r0 in (0..rows).step_by(GROUP) {
                let n = GROUP.min(rows - r0);
                let mut x = [_mm512_setzero_ps(); GROUP];
                for (i, v) in x.iter_mut().enumerate().take(n) {
                    *v = _mm512_maskz_loadu_ps(mask, c.add((r0 + i) * ldc + at));
                    if let Some(b) = b {
                        *v = _mm512_add_ps(*v, b);
                    }
                }
                // Independent of each other: their latencies overlap.
                let y = x.map(|v| apply16(activation, v));
                for (i, mut v) in y.into_iter().enumerate().take(n) {
                    if let Some(res) = residual {
                        let rv = _mm512_maskz_loadu_ps(mask, res.add((r0 + i) * ldc + at));
                        v = _mm512_add_ps(v, rv);
                    }
                    _mm512_mask_storeu_ps(c.add((r0 + i) * ldc + at), mask, v);
                }
            }
        }
    }

    /// `activation` on 16 lanes at a time, the tail masked.
    ///
    /// # Safety
    /// AVX-512 F must be available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn map(activation: super::Activation, xs: &mut [f32]) {
        let mut at = 0;
        while at < xs.len() {
            let mask = live(xs.len(), at);
            let p = xs.as_mut_ptr().add(at);
            let x = _mm512_maskz_loadu_ps(mask, p);
            let y = apply16(activation, x);
            _mm512_mask_storeu_ps(p, mask, y);
            at += 16;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `e^x` for 8 lanes: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6
    /// Taylor polynomial (truncation error below 2e-7 relative), 2^n built in
    /// the exponent bits. Inputs are clamped to the finite F32 range.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        // ln 2 split in two so r keeps full precision.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }

    /// The largest element of `row` (−∞ when empty; NaNs are skipped).
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn max(row: &[f32]) -> f32 {
        let mut acc = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
        let mut chunks = row.chunks_exact(32);
        for c in &mut chunks {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_max_ps(_mm256_loadu_ps(c.as_ptr().add(8 * i)), *a);
            }
        }
        let v = _mm256_max_ps(_mm256_max_ps(acc[0], acc[1]), _mm256_max_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        lanes
            .iter()
            .chain(chunks.remainder())
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x))
    }

    /// The sum of `row`, in 32 lanes.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sum(row: &[f32]) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut chunks = row.chunks_exact(32);
        for c in &mut chunks {
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_ps(_mm256_loadu_ps(c.as_ptr().add(8 * i)), *a);
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
    }

    /// `row ← row · k`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn scale(row: &mut [f32], k: f32) {
        let kv = _mm256_set1_ps(k);
        let mut chunks = row.chunks_exact_mut(8);
        for c in &mut chunks {
            _mm256_storeu_ps(
                c.as_mut_ptr(),
                _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), kv),
            );
        }
        for v in chunks.into_remainder() {
            *v *= k;
        }
    }

    /// `v ← e^(v − max)` for the leading multiple of 8 of `row` (−∞ → 0);
    /// returns how many it did.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted(row: &mut [f32], max: f32) -> usize {
        let m = _mm256_set1_ps(max);
        let zero = _mm256_setzero_ps();
        let floor = _mm256_set1_ps(-87.0);
        let whole = row.len() / 8 * 8;
        for c in row[..whole].chunks_exact_mut(8) {
            let x = _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m);
            // exp clamps at −87; anything below that (masked −∞ included) is 0.
            let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, floor);
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_blendv_ps(zero, exp(x), keep));
        }
        whole
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn quick_gelu(xs: &mut [f32]) {
        let one = _mm256_set1_ps(1.0);
        let k = _mm256_set1_ps(-1.702);
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            let x = _mm256_loadu_ps(c.as_ptr());
            let e = exp(_mm256_mul_ps(x, k));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_div_ps(x, _mm256_add_ps(one, e)));
        }
        for x in chunks.into_remainder() {
            *x = super::quick_gelu_scalar(*x);
        }
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_tanh(xs: &mut [f32]) {
        let one = _mm256_set1_ps(1.0);
        let scale = _mm256_set1_ps(-2.0 * super::GELU_TANH_SCALE);
        let cubic = _mm256_set1_ps(super::GELU_TANH_CUBIC);
        let mut chunks = xs.chunks_exact_mut(8);
        for c in &mut chunks {
            let x = _mm256_loadu_ps(c.as_ptr());
            // −2u = −2·√(2/π)·(x + 0.044715·x³) = (−2√(2/π))·x·(1 + 0.044715·x²).
            let inner = _mm256_fmadd_ps(_mm256_mul_ps(cubic, x), x, one);
            let e = exp(_mm256_mul_ps(_mm256_mul_ps(scale, x), inner));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_div_ps(x, _mm256_add_ps(one, e)));
        }
        for x in chunks.into_remainder() {
            *x = super::gelu_tanh_scalar(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_f64_and_zeroes_masked_entries() {
        for len in [1usize, 7, 8, 16, 37, 64, 65, 100, 730] {
            let mut row: Vec<f32> = (0..len)
                .map(|i| ((i * 53) % 17) as f32 * 0.9 - 6.0)
                .collect();
            if len > 2 {
                row[1] = f32::NEG_INFINITY;
            }
            let max = row
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - max).exp()).collect();
            let z: f64 = e.iter().sum();
            // Every path this CPU has (AVX-512, AVX2, scalar).
            let features = CpuFeatures::detect();
            for features in [features, features.without_avx512(), CpuFeatures::SCALAR] {
                let mut got = row.clone();
                softmax(features, &mut got);
                for (g, w) in got.iter().zip(&e) {
                    assert!(
                        (f64::from(*g) - w / z).abs() < 1e-6,
                        "{features:?} len {len}"
                    );
                }
                if len > 2 {
                    assert_eq!(got[1], 0.0);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_exponential_gives_the_avx2_values_bit_for_bit() {
        let features = CpuFeatures::detect();
        if !features.avx512 || !features.avx2_fma {
            return;
        }
        let xs: Vec<f32> = (-9000..=9000)
            .map(|i| i as f32 * 0.0097)
            .chain([-87.0, -86.99, 0.0, -0.0, 88.0, 87.5, f32::NEG_INFINITY])
            .collect();
        let max = 0.25;
        let mut wide = xs.clone();
        let mut narrow = xs.clone();
        // SAFETY: both instruction sets were detected above.
        let done = unsafe {
            avx512::exp_shifted(&mut wide, max);
            avx2::exp_shifted(&mut narrow, max)
        };
        for (i, (w, n)) in wide.iter().zip(&narrow).enumerate().take(done) {
            assert_eq!(w.to_bits(), n.to_bits(), "x = {}", xs[i]);
        }
    }

    #[test]
    fn quick_gelu_matches_the_scalar_reference_over_the_range() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.03).collect();
        xs.extend([
            0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, 60.0, -60.0, 51.5, -51.5,
        ]);
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                x / (1.0 + (-1.702 * x).exp())
            })
            .collect();
        // Every path this CPU has (AVX-512, AVX2, scalar).
        let features = CpuFeatures::detect();
        for features in [features, features.without_avx512(), CpuFeatures::SCALAR] {
            let mut got = xs.clone();
            quick_gelu(features, &mut got);
            for ((g, w), x) in got.iter().zip(&want).zip(&xs) {
                let err = (f64::from(*g) - w).abs();
                assert!(
                    err <= 1e-6 * w.abs().max(1e-3),
                    "{features:?} x = {x}: {g} vs {w}"
                );
            }
            assert_eq!(got[got.len() - 6], 1e4);
        }
    }

    #[test]
    fn gelu_tanh_matches_the_tanh_formula_over_the_range() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.003).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4, 60.0, -60.0, 9.5, -9.5]);
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| {
                let x = f64::from(x);
                let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            })
            .collect();
        let features = CpuFeatures::detect();
        for features in [features, features.without_avx512(), CpuFeatures::SCALAR] {
            let mut got = xs.clone();
            gelu_tanh(features, &mut got);
            for ((g, w), x) in got.iter().zip(&want).zip(&xs) {
                let err = (f64::from(*g) - w).abs();
                assert!(err <= 2e-6 * w.abs().max(1e-2), "x = {x}: {g} vs {w}");
            }
        }
    }
}
