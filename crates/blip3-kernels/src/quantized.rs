//! One interface over the block-quantised weight formats, so layers hold
//! "a quantised matrix" and a new format touches only this crate.

use std::borrow::Cow;
use std::sync::Arc;

use half::f16;

use crate::gemm::WeightRows;
use crate::q4::{gemv_q4, Q4Matrix};
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
    /// One F16 scale per block, row-major.
    fn scales(&self) -> &[f16];
}

/// Bytes of codes per row of `cols` weights in `format`.
pub fn code_width(format: &str, cols: usize) -> Option<usize> {
    match format {
        "q8_0" => Some(cols),
        "q4_0" => Some(cols / 2),
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
    let blocks = cols
        .is_multiple_of(crate::q8::BLOCK)
        .then_some(rows * cols / crate::q8::BLOCK)?;
    if scales.len() != blocks || codes.len() != rows * code_width(format, cols)? {
        return None;
    }
    Some(match format {
        "q8_0" => Arc::new(Q8Matrix {
            rows,
            cols,
            scales,
            quants: codes.into_iter().map(|b| b as i8).collect(),
        }),
        _ => Arc::new(Q4Matrix {
            rows,
            cols,
            scales,
            codes,
        }),
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
        Cow::Owned(self.quants.iter().map(|&q| q as u8).collect())
    }
    fn scales(&self) -> &[f16] {
        &self.scales
    }
}

impl WeightRows for Q8Matrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn read_row(&self, row: usize, k0: usize, out: &mut [f32]) {
        self.dequantize_range(row, k0, out)
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
        Cow::Borrowed(&self.codes)
    }
    fn scales(&self) -> &[f16] {
        &self.scales
    }
}

impl WeightRows for Q4Matrix {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn read_row(&self, row: usize, k0: usize, out: &mut [f32]) {
        self.dequantize_range(row, k0, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_for_both_formats() {
        let (n, k) = (3, 64);
        let v: Vec<f32> = (0..n * k)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.1).sin()).collect();
        let mats: [Arc<dyn QuantizedMatrix>; 2] = [
            Arc::new(Q8Matrix::quantize(&v, n, k).unwrap()),
            Arc::new(Q4Matrix::quantize(&v, n, k).unwrap()),
        ];
        for m in mats {
            let back = from_parts(
                m.format(),
                n,
                k,
                m.code_bytes().into_owned(),
                m.scales().to_vec(),
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
                m.scales().to_vec()
            )
            .is_none());
        }
        assert!(from_parts("q3_x", n, k, vec![0; n * k], vec![f16::ZERO; n * 2]).is_none());
    }
}
