//! BF16 → F32 widening, parallel and vectorisable (a BF16 value is the top 16
//! bits of an F32). Many-row products widen a BF16 weight before candle's F32
//! matmul; candle's own dtype conversion does this one element at a time on
//! one thread, which costs as much as the matmul itself for prefill.

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

#[cfg(test)]
mod tests {
    use super::*;

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
