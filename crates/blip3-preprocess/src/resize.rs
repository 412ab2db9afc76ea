//! Pillow's bicubic resampler on 8-bit RGB, bit for bit (spec §10.8).
//!
//! Pillow resizes in two separable passes with per-axis coefficient tables:
//! the horizontal pass first (only over the source rows the vertical pass will
//! read), rounding to an 8-bit intermediate image, then the vertical pass. The
//! coefficients are computed in `f64`, normalised, converted to 22-bit fixed
//! point, and accumulated in `i32` starting from one half. Downscaling widens
//! the kernel by the scale factor (antialiasing). A pass whose size does not
//! change is skipped, and an unchanged size is a plain copy.

/// An 8-bit RGB image stored row-major as `[height][width][3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps raw RGB bytes; `data.len()` must be `width * height * 3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "RGB buffer size mismatch");
        Self {
            width,
            height,
            data,
        }
    }

    /// A black image of the given size.
    pub fn black(width: usize, height: usize) -> Self {
        Self::from_raw(width, height, vec![0; width * height * 3])
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Raw `[h][w][3]` bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// Copies `src` into this image with its top-left corner at `(x, y)`,
    /// clipping what falls outside (Pillow's `paste`).
    pub fn paste(&mut self, src: &RgbImage, x: usize, y: usize) {
        for row in 0..src.height.min(self.height.saturating_sub(y)) {
            let n = src.width.min(self.width.saturating_sub(x)) * 3;
            let dst_off = ((y + row) * self.width + x) * 3;
            let src_off = row * src.width * 3;
            self.data[dst_off..dst_off + n].copy_from_slice(&src.data[src_off..src_off + n]);
        }
    }

    /// The `w×h` region whose top-left corner is `(x, y)`; it must lie inside.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> RgbImage {
        let mut out = Vec::with_capacity(w * h * 3);
        for row in y..y + h {
            let off = (row * self.width + x) * 3;
            out.extend_from_slice(&self.data[off..off + w * 3]);
        }
        RgbImage::from_raw(w, h, out)
    }
}

const PRECISION_BITS: u32 = 22;
const BICUBIC_SUPPORT: f64 = 2.0;

/// Pillow's bicubic kernel with a = −0.5.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point taps of one output sample: the first source index and weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Coefficient table for resampling `in_size` samples to `out_size`
/// (Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let inv = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // `(int)` in C truncates toward zero; negatives clamp to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let raw: Vec<f64> = (0..count)
                .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * inv))
                .collect();
            let sum: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if sum != 0.0 { w / sum } else { w };
                    let scaled = w * f64::from(1u32 << PRECISION_BITS);
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes with Pillow's default filter for RGB (BICUBIC), matching Pillow 13's
/// `PIL.Image.resize((width, height))` exactly.
///
/// Pass order follows Pillow 13 (the version behind the fixture goldens): the
/// horizontal pass runs first, over only the source rows the vertical pass
/// reads, unless the height shrinks by more than twice as many pixels as the
/// width (`in_h − out_h > max(0, 2·(in_w − out_w))`), in which case the vertical
/// pass runs first. Older Pillow (the `01f132f` revision quoted in spec §10.8)
/// always ran horizontally first; the order changes the 8-bit intermediate.
pub fn resize_bicubic(src: &RgbImage, width: usize, height: usize) -> RgbImage {
    assert!(width > 0 && height > 0, "resize target must be non-empty");
    if width == src.width && height == src.height {
        return src.clone();
    }
    let need_h = width != src.width;
    let need_v = height != src.height;
    let shrink_h = src.height as i64 - height as i64;
    let shrink_w = src.width as i64 - width as i64;
    let horizontal_first = !(shrink_h > 0 && shrink_h > shrink_w * 2);
    if horizontal_first {
        let vert = need_v.then(|| coefficients(src.height, height));
        // Source rows the vertical pass reads.
        let (first, last) = match &vert {
            Some(taps) => (
                taps.first().map_or(0, |t| t.first),
                taps.last()
                    .map_or(src.height, |t| t.first + t.weights.len()),
            ),
            None => (0, src.height),
        };
        let mid = if need_h {
            horizontal_pass(src, first, last, width)
        } else {
            src.crop(0, first, src.width, last - first)
        };
        match vert {
            Some(taps) => vertical_pass(&mid, first, &taps),
            None => mid,
        }
    } else {
        let mid = vertical_pass(src, 0, &coefficients(src.height, height));
        if need_h {
            horizontal_pass(&mid, 0, mid.height, width)
        } else {
            mid
        }
    }
}

/// Resamples rows `first..last` of `src` to `width` columns (8-bit output).
fn horizontal_pass(src: &RgbImage, first: usize, last: usize, width: usize) -> RgbImage {
    let taps = coefficients(src.width, width);
    let half = 1i32 << (PRECISION_BITS - 1);
    let rows = last - first;
    let mut out = vec![0u8; rows * width * 3];
    for r in 0..rows {
        let src_row = &src.data[(first + r) * src.width * 3..][..src.width * 3];
        let dst_row = &mut out[r * width * 3..][..width * 3];
        for (xx, t) in taps.iter().enumerate() {
            let mut acc = [half; 3];
            for (k, &w) in t.weights.iter().enumerate() {
                let p = &src_row[(t.first + k) * 3..][..3];
                for c in 0..3 {
                    acc[c] += i32::from(p[c]) * w;
                }
            }
            for c in 0..3 {
                dst_row[xx * 3 + c] = clip8(acc[c]);
            }
        }
    }
    RgbImage::from_raw(width, rows, out)
}

/// Resamples columns with `taps`; `src` row 0 is source row `row_offset`.
fn vertical_pass(src: &RgbImage, row_offset: usize, taps: &[Taps]) -> RgbImage {
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = src.width * 3;
    let mut out = vec![0u8; taps.len() * stride];
    for (yy, t) in taps.iter().enumerate() {
        let base = t.first - row_offset;
        let dst_row = &mut out[yy * stride..][..stride];
        for (x, dst) in dst_row.iter_mut().enumerate() {
            let mut acc = half;
            for (k, &w) in t.weights.iter().enumerate() {
                acc += i32::from(src.data[(base + k) * stride + x]) * w;
            }
            *dst = clip8(acc);
        }
    }
    RgbImage::from_raw(src.width, taps.len(), out)
}
