//! Anyres tiling (spec §10.2–10.4): pick a grid, letterbox into it, cut crops.

use crate::resize::{resize_bicubic, RgbImage};

/// The BLIP-3 r-v1 grid pinpoints for base crop size `s`, as (width, height),
/// in the order whose ties decide the choice: (s,2s), (2s,s), (2s,2s), (3s,s), (s,3s).
pub fn default_pinpoints(s: usize) -> Vec<(usize, usize)> {
    vec![
        (s, 2 * s),
        (2 * s, s),
        (2 * s, 2 * s),
        (3 * s, s),
        (s, 3 * s),
    ]
}

/// `select_best_resolution`: the pinpoint that keeps the most original pixels
/// after an aspect-preserving fit, then the least padding; earlier wins full ties.
/// Arithmetic is in `f64` with truncation, as in the Python original.
pub fn select_best_resolution(
    (width, height): (usize, usize),
    pinpoints: &[(usize, usize)],
) -> (usize, usize) {
    let (w0, h0) = (width as f64, height as f64);
    let mut best = pinpoints[0];
    let mut best_eff = 0i64;
    let mut best_waste = f64::INFINITY;
    for &(w, h) in pinpoints {
        let scale = (w as f64 / w0).min(h as f64 / h0);
        let dw = (w0 * scale) as i64;
        let dh = (h0 * scale) as i64;
        let eff = (dw * dh).min(width as i64 * height as i64);
        let waste = (w * h) as f64 - eff as f64;
        if eff > best_eff || (eff == best_eff && waste < best_waste) {
            best = (w, h);
            best_eff = eff;
            best_waste = waste;
        }
    }
    best
}

/// Size of the aspect-preserving fit of `(width, height)` into `target`, with
/// `ceil` on the free axis (`resize_and_pad_image`), and its centred offset.
pub fn fit_and_offset(
    (width, height): (usize, usize),
    (tw, th): (usize, usize),
) -> ((usize, usize), (usize, usize)) {
    let scale_w = tw as f64 / width as f64;
    let scale_h = th as f64 / height as f64;
    let (nw, nh) = if scale_w < scale_h {
        (tw, ((height as f64 * scale_w).ceil() as usize).min(th))
    } else {
        (((width as f64 * scale_h).ceil() as usize).min(tw), th)
    };
    ((nw, nh), ((tw - nw) / 2, (th - nh) / 2))
}

/// Resizes (Pillow bicubic) to fit `target` and pastes centred on black.
pub fn resize_and_pad(image: &RgbImage, target: (usize, usize)) -> RgbImage {
    let ((nw, nh), (x, y)) = fit_and_offset((image.width(), image.height()), target);
    let resized = resize_bicubic(image, nw.max(1), nh.max(1));
    let mut canvas = RgbImage::black(target.0, target.1);
    canvas.paste(&resized, x, y);
    canvas
}

/// Cuts `image` into `s×s` crops, row-major (all of row 0 left to right first).
pub fn divide_to_patches(image: &RgbImage, s: usize) -> Vec<RgbImage> {
    let mut crops = Vec::new();
    for y in (0..image.height()).step_by(s) {
        for x in (0..image.width()).step_by(s) {
            let w = s.min(image.width() - x);
            let h = s.min(image.height() - y);
            crops.push(image.crop(x, y, w, h));
        }
    }
    crops
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §10.7 worked examples: best resolution, resized size and paste offset.
    #[test]
    fn worked_examples_table() {
        let pins = default_pinpoints(378);
        let table = [
            ((640, 480), (756, 756), (756, 567), (0, 94)),
            ((480, 640), (756, 756), (567, 756), (94, 0)),
            ((1000, 1000), (756, 756), (756, 756), (0, 0)),
            ((378, 378), (378, 756), (378, 378), (0, 189)),
            ((2000, 500), (1134, 378), (1134, 284), (0, 47)),
            ((500, 2000), (378, 1134), (284, 1134), (47, 0)),
            ((300, 200), (378, 756), (378, 252), (0, 252)),
            ((1920, 1080), (756, 756), (756, 426), (0, 165)),
        ];
        for (size, best, resized, offset) in table {
            let got = select_best_resolution(size, &pins);
            assert_eq!(got, best, "best resolution for {size:?}");
            assert_eq!(
                fit_and_offset(size, got),
                (resized, offset),
                "fit for {size:?}"
            );
        }
    }

    #[test]
    fn fixture_sized_images_pick_expected_grids() {
        let pins = default_pinpoints(42);
        assert_eq!(select_best_resolution((30, 20), &pins), (42, 84));
        assert_eq!(select_best_resolution((100, 90), &pins), (84, 84));
        assert_eq!(select_best_resolution((128, 64), &pins), (84, 42));
        assert_eq!(select_best_resolution((200, 60), &pins), (126, 42));
    }

    #[test]
    fn patches_are_row_major() {
        let mut img = RgbImage::black(4, 4);
        img.paste(&RgbImage::from_raw(1, 1, vec![9, 9, 9]), 2, 0);
        let crops = divide_to_patches(&img, 2);
        assert_eq!(crops.len(), 4);
        assert_eq!(crops[1].as_raw()[0], 9, "crop 1 is the top-right one");
    }
}
