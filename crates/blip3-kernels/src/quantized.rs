//! One interface over the block-quantised weight formats, so layers hold
//! "a quantised matrix" and a new format touches only this crate.

use std::borrow::Cow;
use std::sync::Arc;

use half::f16;

use crate::cpu::CpuFeatures;
use crate::gemm::WeightRows;
use crate::q4::{gemv_q4, Q4Matrix};
use crate::q4k::{gemv_q4k, Q4KMatrix, SUPER_BLOCK};
use crate::q8::{gemv_q8, Q8Matrix};

/// A row-major [N, K] weight matrix in a block-quantised format; as
/// [`WeightRows`] it feeds the many-row GEMM, decoded block by block.
pub trait QuantizedMatrix: WeightRows + std::fmt::Debug + Send + Sync {
    /// Format name (`q8_0`, `q4_0`).
    fn format(&self) -> &'static str;
    /// Bytes held (what a decode step streams).
    fn size_bytes(&self) -> usize;
    /// `y[m·N + n] = Σ_k x[m·K + k] · W[n, k]` for `m ≤ gemv::MAX_ROWS` rows.
    fn gemv(&self, x: &[f32], y: &mut [f32], m: usize);
    /// The block codes as stored (row-major, [`code_width`] bytes per row),
    /// for writing a pre-quantised checkpoint.
    fn code_bytes(&self) -> Cow<'_, [u8]>;
    /// The F16 scales, row-major ([`scales_per_row`] per row).
    fn scales(&self) -> Cow<'_, [f16]>;
}

/// Which instruction set the decode GEMV of `format` (`bf16`, `q8_0`,
/// `q4_0`, `q4_k`) runs on with `features`; `None` for formats without one.
pub fn gemv_path(format: &str, features: CpuFeatures) -> Option<&'static str> {
    let vector = features.avx2_fma && features.f16c;
    let neon = cfg!(target_arch = "aarch64") && features.neon;
    Some(match format {
        "q8_0" | "q4_0" if features.avx512_vnni => "avx512-vnni",
        "q8_0" | "q4_0" if features.avx_vnni => "avx-vnni",
        "q8_0" | "q4_0" | "q4_k" if vector => "avx2-fma",
        // Q4_K has no NEON kernel yet: it falls to "scalar" below.
        "q8_0" | "q4_0" if neon => "neon",
        "bf16" => crate::gemv::path(features),
        "q8_0" | "q4_0" | "q4_k" => "scalar",
        _ => return None,
    })
}

/// Bytes of codes per row of `cols` weights in `format` (Q4_K: the 12
/// sub-scale bytes then the 128 code bytes of each super-block).
pub fn code_width(format: &str, cols: usize) -> Option<usize> {
    match format {
        "q8_0" => Some(cols),
        "q4_0" => Some(cols / 2),
        "q4_k" => Some(cols / SUPER_BLOCK * 140),
        _ => None,
    }
}

/// F16 scales per row of `cols` weights in `format`.
pub fn scales_per_row(format: &str, cols: usize) -> Option<usize> {
    match format {
        "q8_0" | "q4_0" => Some(cols / crate::q8::BLOCK),
        "q4_k" => Some(2 * cols / SUPER_BLOCK),
        _ => None,
    }
}

/// Rebuilds a matrix from what [`QuantizedMatrix::code_bytes`] and
/// [`QuantizedMatrix::scales`] returned; `None` when the format is unknown or
/// the sizes do not fit `rows × cols`.
pub fn from_parts(
    format: &str,
    rows: usize,
    cols: usize,
    codes: Vec<u8>,
    scales: Vec<f16>,
) -> Option<Arc<dyn QuantizedMatrix>> {
    let unit = if format == "q4_k" {
        SUPER_BLOCK
    } else {
        crate::q8::BLOCK
    };
    if !cols.is_multiple_of(unit)
        || scales.len() != rows * scales_per_row(format, cols)?
        || codes.len() != rows * code_width(format, cols)?
    {
        return None;
    }
    Some(match format {
        "q4_k" => Arc::new(Q4KMatrix::from_blocks(rows, cols, &scales, &codes)?),
        "q8_0" => Arc::new(Q8Matrix::from_blocks(rows, cols, &scales, &codes)?),
        _ => Arc::new(Q4Matrix::from_blocks(rows, cols, &scales, &codes)?),
    })
}

impl QuantizedMatrix for Q8Matrix {
    fn format(&self) -> &'static str {
        "q8_0"
    }
    fn size_bytes(&self) -> usize {
        Q8Matrix::size_bytes(self)
    }
    fn gemv(&self, x: &[f32], y: &mut [f32], m: usize) {
        gemv_q8(self, x, y, m)
    }
    fn code_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.block_codes())
    }
    fn scales(&self) -> Cow<'_, [f16]> {
        Cow::Owned(self.block_scales())
    }
}

impl QuantizedMatrix for Q4Matrix {
    fn format(&self) -> &'static str {
        "q4_0"
    }
    fn size_bytes(&self) -> usize {
        Q4Matrix::size_bytes(self)
    }
    fn gemv(&self, x: &[f32], y: &mut [f32], m: usize) {
        gemv_q4(self, x, y, m)
    }
    fn code_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.block_codes())
    }
    fn scales(&self) -> Cow<'_, [f16]> {
        Cow::Owned(self.block_scales())
    }
}

impl QuantizedMatrix for Q4KMatrix {
    fn format(&self) -> &'static str {
        "q4_k"
    }
    fn size_bytes(&self) -> usize {
        Q4KMatrix::size_bytes(self)
    }
    fn gemv(&self, x: &[f32], y: &mut [f32], m: usize) {
        gemv_q4k(self, x, y, m)
    }
    fn code_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.block_codes())
    }
    fn scales(&self) -> Cow<'_, [f16]> {
        Cow::Owned(self.block_scales())
    }
}

/// Every block format feeds the GEMM by decoding whole blocks of a row.
macro_rules! weight_rows_by_dequantizing {
    ($($matrix:ty => $as_q8_0:expr),*) => {$(
        impl WeightRows for $matrix {
            fn rows(&self) -> usize {
                self.rows
            }
            fn cols(&self) -> usize {
                self.cols
            }
            fn read_row(&self, row: usize, k0: usize, out: &mut [f32]) {
                self.dequantize_range(row, k0, out)
            }
            fn decodes_to_bf16(&self) -> bool {
                true
            }
            fn as_q8_0(&self) -> Option<&Q8Matrix> {
                $as_q8_0(self)
            }
        }
    )*};
}

weight_rows_by_dequantizing!(
    Q8Matrix => Some,
    Q4Matrix => |_| None,
    Q4KMatrix => |_| None
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_for_both_formats() {
        let (n, k) = (3, 256);
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.1).sin()).collect();
        let mats: [Arc<dyn QuantizedMatrix>; 3] = [
            Arc::new(Q8Matrix::quantize(&v, n, k).unwrap()),
            Arc::new(Q4Matrix::quantize(&v, n, k).unwrap()),
            Arc::new(Q4KMatrix::quantize(&v, n, k).unwrap()),
        ];
        for m in mats {
            let back = from_parts(
                m.format(),
                n,
                k,
                m.code_bytes().into_owned(),
                m.scales().into_owned(),
            )
            .unwrap();
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            m.gemv(&x, &mut a, 1);
            back.gemv(&x, &mut b, 1);
            assert_eq!(a, b, "{}", m.format());
            assert!(from_parts(
                m.format(),
                n,
                k + 32,
                m.code_bytes().into_owned(),
                m.scales().into_owned()
            )
            .is_none());
        }
        assert!(from_parts("q3_x", n, k, vec![0; n * k], vec![f16::ZERO; n * 2]).is_none());
    }
}
