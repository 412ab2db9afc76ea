//! One interface over the block-quantised weight formats, so layers hold
//! "a quantised matrix" and a new format touches only this crate.

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
