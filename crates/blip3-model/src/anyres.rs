//! Anyres feature assembly (spec §5): the raster-view regrouping quirk.
//!
//! The reference stitches the grid crops' token maps into one
//! `[C, nph·g, npw·g]` map and then reinterprets it with a `view` as
//! `[C, nph, npw, g²]` instead of inverting the stitch. So "group" k is the
//! raster slice `[g²·k, g²·(k+1))` of the stitched map, which for npw ≥ 2 mixes
//! rows of neighbouring crops. The perceiver treats every group as one image, so
//! this membership must be reproduced exactly.

use candle_core::Tensor;

use crate::Result;

/// For each output row of the regrouped grid features (`P·g²` rows, group-major),
/// the row of the stacked grid-crop tokens `[P·g²]` it comes from.
pub fn regroup_index_map(npw: usize, nph: usize, g: usize) -> Vec<usize> {
    let v = g * g;
    let row_width = npw * g;
    (0..npw * nph * v)
        .map(|f| {
            let (y, x) = (f / row_width, f % row_width);
            let crop = (y / g) * npw + x / g;
            let token = (y % g) * g + x % g;
            crop * v + token
        })
        .collect()
}

/// ViT tokens `[N, g², C]` (global crop first, then grid crops row-major) →
/// perceiver input `[N, g², C]`: the global crop, then the P regrouped groups.
/// With N = 1 (pad mode) the tokens pass through unchanged.
pub fn regroup_features(tokens: &Tensor, grid: (usize, usize), g: usize) -> Result<Tensor> {
    let (n, v, c) = tokens.dims3()?;
    if n == 1 {
        return Ok(tokens.clone());
    }
    let (npw, nph) = grid;
    if n != 1 + npw * nph || v != g * g {
        return Err(crate::ModelError::Input(format!(
            "{n} crops of {v} tokens do not match a {npw}x{nph} grid of {g}x{g} tokens plus the global crop"
        )));
    }
    let base = tokens.narrow(0, 0, 1)?;
    let grid_tokens = tokens.narrow(0, 1, n - 1)?.reshape(((n - 1) * v, c))?;
    let map: Vec<u32> = regroup_index_map(npw, nph, g)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    let index = Tensor::from_vec(map, (n - 1) * v, tokens.device())?;
    let groups = grid_tokens
        .index_select(&index, 0)?
        .reshape((n - 1, v, c))?;
    Ok(Tensor::cat(&[&base, &groups], 0)?)
}

/// The anyres padding mask of one image (`unpad_image` with
/// `keep_original_shape`, spec §5 step 4), regrouped like the features:
/// `[(1 + P)·g²]`, the global crop's row all ones, then group k = the raster
/// slice `[g²k, g²(k+1))` of the stitched `[nph·g, npw·g]` map, where 0 marks
/// the letterbox border. One crop (pad mode) gives a row of ones.
pub fn padding_mask(
    (width, height): (usize, usize),
    (npw, nph): (usize, usize),
    num_crops: usize,
    g: usize,
) -> Vec<f32> {
    let v = g * g;
    let mut mask = vec![1f32; num_crops * v];
    // One crop (pad mode) has no border; a crop count that does not fit the
    // grid (not an anyres cut) is left unmasked rather than misread.
    if num_crops <= 1 || num_crops != 1 + npw * nph || width == 0 || height == 0 {
        return mask;
    }
    let (cw, ch) = (npw * g, nph * g);
    let stitched = &mut mask[v..];
    // Python float arithmetic: compare aspect ratios, then truncate.
    let (w, h) = (width as f64, height as f64);
    if w / h > cw as f64 / ch as f64 {
        let new_h = (h * (cw as f64 / w)) as usize;
        let pad = ch.saturating_sub(new_h) / 2;
        for y in (0..pad).chain(ch - pad..ch) {
            stitched[y * cw..(y + 1) * cw].fill(0.0);
        }
    } else {
        let new_w = (w * (ch as f64 / h)) as usize;
        let pad = cw.saturating_sub(new_w) / 2;
        for y in 0..ch {
            for x in (0..pad).chain(cw - pad..cw) {
                stitched[y * cw + x] = 0.0;
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_mask_matches_the_fixture_counts() {
        // (size, grid, crops, masked tokens) from the v1.5 fixture, g = 4.
        let cases = [
            ((30, 200), (1, 3), 4, 24),
            ((100, 30), (2, 1), 3, 16),
            ((500, 100), (3, 1), 4, 24),
            ((200, 150), (2, 2), 5, 16),
            ((420, 130), (3, 1), 4, 0),
            ((40, 25), (1, 2), 3, 24),
        ];
        for (size, grid, n, masked) in cases {
            let m = padding_mask(size, grid, n, 4);
            assert_eq!(m.len(), n * 16);
            assert!(m[..16].iter().all(|&x| x == 1.0), "global crop row");
            let zeros = m.iter().filter(|&&x| x == 0.0).count();
            assert_eq!(zeros, masked, "{size:?}");
        }
        // Spec §10.7 at g = 27: 640×480 on 2×2 masks 7 rows top and bottom.
        let m = padding_mask((640, 480), (2, 2), 5, 27);
        assert_eq!(m.iter().filter(|&&x| x == 0.0).count(), 14 * 54);
        assert_eq!(padding_mask((640, 480), (1, 1), 1, 27), vec![1.0; 729]);
    }

    /// (crop, token) of each regrouped position.
    fn groups(npw: usize, nph: usize, g: usize) -> Vec<Vec<(usize, usize)>> {
        let v = g * g;
        regroup_index_map(npw, nph, g)
            .chunks(v)
            .map(|grp| grp.iter().map(|&i| (i / v, i % v)).collect())
            .collect()
    }

    #[test]
    fn one_wide_grid_is_identity() {
        for nph in [2, 3] {
            for (k, grp) in groups(1, nph, 3).iter().enumerate() {
                let expect: Vec<_> = (0..9).map(|t| (k, t)).collect();
                assert_eq!(grp, &expect, "1x{nph} group {k}");
            }
        }
    }

    #[test]
    fn two_wide_grid_mixes_neighbouring_crops() {
        // g = 27 (real size): group 0 = rows 0–13 of crop 0 (378 tokens) + rows 0–12 of crop 1.
        let g = 27;
        let gr = groups(2, 2, g);
        let from0 = gr[0].iter().filter(|(c, _)| *c == 0).count();
        let from1 = gr[0].iter().filter(|(c, _)| *c == 1).count();
        assert_eq!((from0, from1), (378, 351));
        // Its first stitched row: crop 0 row 0, then crop 1 row 0.
        assert_eq!(gr[0][0], (0, 0));
        assert_eq!(gr[0][27], (1, 0));
        assert_eq!(gr[0][54], (0, 27));
        // Group 1 holds the rest of crops 0 and 1; groups 2, 3 the second crop row.
        assert!(gr[1].iter().all(|(c, _)| *c <= 1));
        assert!(gr[2].iter().chain(&gr[3]).all(|(c, _)| *c >= 2));
        // g = 3, 2×1: the stitched map is 3 rows × 6 columns; group 0 = flat 0..9.
        let small = groups(2, 1, 3);
        assert_eq!(
            small[0],
            vec![
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 0),
                (1, 1),
                (1, 2),
                (0, 3),
                (0, 4),
                (0, 5)
            ]
        );
        assert_eq!(
            small[1],
            vec![
                (1, 3),
                (1, 4),
                (1, 5),
                (0, 6),
                (0, 7),
                (0, 8),
                (1, 6),
                (1, 7),
                (1, 8)
            ]
        );
    }

    #[test]
    fn three_wide_grid_takes_stitched_row_bands() {
        // g = 27, 3×1: group k = stitched rows 9k … 9k+8 across all three crops.
        let g = 27;
        for (k, grp) in groups(3, 1, g).iter().enumerate() {
            for c in 0..3 {
                let n = grp.iter().filter(|(crop, _)| *crop == c).count();
                assert_eq!(n, 243, "group {k} crop {c}");
            }
            assert!(grp.iter().all(|(_, t)| (t / g) / 9 == k));
        }
    }
}
