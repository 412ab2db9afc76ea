//! BF16 ↔ F32 conversions. Widening is parallel and vectorisable (a BF16
//! value is the top 16 bits of an F32): many-row products widen a BF16
//! weight before candle's F32 matmul, and candle's own dtype conversion does
//! this one element at a time on one thread, which costs as much as the
//! matmul itself for prefill. Rounding ([`round_to_bf16`]) is what the BF16
//! GEMM paths do to block-format weights they decode.

use half::bf16;
use rayon::prelude::*;

/// Writes `src` widened to F32 into `dst` (same length).
pub fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen_bf16 lengths");
    const CHUNK: usize = 1 << 16;
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| {
            for (o, &v) in d.iter_mut().zip(s) {
                *o = f32::from_bits(u32::from(v.to_bits()) << 16);
            }
        });
}

/// Writes `src` rounded to BF16 (to nearest, ties to even, as
/// `bf16::from_f32` and `vcvtneps2bf16` do; the instruction also flushes
/// subnormals to zero) into `dst` (same length), on the calling thread.
pub fn round_to_bf16(src: &[f32], dst: &mut [bf16]) {
    round_to_bf16_on(crate::cpu::CpuFeatures::detect().avx512_bf16, src, dst);
}

/// [`round_to_bf16`] with `vcvtneps2bf16` when `instruction` (which the
/// caller has checked the CPU has: AVX-512 F and BF16). For the GEMM's own
/// self-check, which runs while [`crate::cpu::CpuFeatures::detect`] is still
/// being answered.
pub(crate) fn round_to_bf16_on(instruction: bool, src: &[f32], dst: &mut [bf16]) {
    assert_eq!(src.len(), dst.len(), "round_to_bf16 lengths");
    #[cfg(target_arch = "x86_64")]
    if instruction {
        // SAFETY: AVX-512 F and BF16 were detected; the lengths match.
        unsafe { x86::round(src, dst) };
        return;
    }
    let _ = instruction;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = bf16::from_f32(s);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    /// # Safety
    /// AVX-512 F and BF16 must be available; `src` and `dst` the same length.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn round(src: &[f32], dst: &mut [bf16]) {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            let v = _mm512_loadu_ps(src.as_ptr().add(i));
            let r: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, r);
        }
        for i in whole..src.len() {
            dst[i] = bf16::from_f32(src[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_the_scalar_conversion() {
        // Ties, values just off ties, large and small magnitudes; subnormals
        // excluded (the instruction flushes them).
        let src: Vec<f32> = (0..1000)
            .map(|i| {
                let base = f32::from_bits(0x3f80_0000 + (i as u32) * 0x8000 + (i as u32 % 3));
                if i % 2 == 0 {
                    base
                } else {
                    -base * 1e-20
                }
            })
            .chain([0.0, -0.0, f32::INFINITY, 65504.0, 1.0e30])
            .collect();
        let mut dst = vec![bf16::ZERO; src.len()];
        round_to_bf16(&src, &mut dst);
        for (s, d) in src.iter().zip(&dst) {
            assert_eq!(d.to_bits(), bf16::from_f32(*s).to_bits(), "{s:e}");
        }
    }

    #[test]
    fn widening_is_exact() {
        let src: Vec<bf16> = (0..70_001)
            .map(|i| bf16::from_f32(i as f32 * 0.37 - 9000.0))
            .collect();
        let mut dst = vec![0f32; src.len()];
        widen_bf16(&src, &mut dst);
        assert!(src.iter().zip(&dst).all(|(a, b)| a.to_f32() == *b));
        let specials = [
            bf16::NAN,
            bf16::INFINITY,
            bf16::NEG_INFINITY,
            bf16::from_f32(-0.0),
        ];
        let mut out = [0f32; 4];
        widen_bf16(&specials, &mut out);
        assert!(out[0].is_nan() && out[1] == f32::INFINITY && out[2] == f32::NEG_INFINITY);
        assert!(out[3] == 0.0 && out[3].is_sign_negative());
    }
}
