//! The per-image pipeline: anyres (or pad) crops → normalised `pixel_values`.

use std::path::Path;

use serde::Deserialize;

use crate::anyres::{default_pinpoints, divide_to_patches, resize_and_pad, select_best_resolution};
use crate::resize::{resize_bicubic, RgbImage};
use crate::PreprocessError;

/// `preprocessor_config.json` fields the pipeline uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessorConfig {
    /// Crop size `[S, S]` (378 for r-v1, 384 for v1.5); transformers'
    /// `{"height": S, "width": S}` form is read too.
    #[serde(deserialize_with = "size_list")]
    pub size: Vec<usize>,
    /// Per-channel mean (OpenAI CLIP statistics).
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation.
    pub image_std: [f32; 3],
    /// Only `"squash"` is used by BLIP-3.
    #[serde(default = "default_resize_mode")]
    pub resize_mode: String,
    /// Only `"bicubic"` is used by BLIP-3.
    #[serde(default = "default_interpolation")]
    pub interpolation_mode: String,
    /// Anyres grids in crops per side (npw, nph): absent (r-v1: its grids
    /// follow from S), a list (v1.5 instruct), or `null` (v1.5 base: no grid).
    #[serde(default, deserialize_with = "present")]
    pub grids: Option<Option<Vec<[usize; 2]>>>,
}

/// `size` as a list `[S, S]` or a `{"height", "width"}` object.
fn size_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        List(Vec<usize>),
        Object { height: usize, width: usize },
    }
    Ok(match Size::deserialize(d)? {
        Size::List(v) => v,
        Size::Object { height, width } => vec![height, width],
    })
}

/// Wraps a field that is present (even as `null`) in `Some`, so that an
/// absent field (`None` through `serde(default)`) stays distinguishable.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

fn default_resize_mode() -> String {
    "squash".into()
}
fn default_interpolation() -> String {
    "bicubic".into()
}

impl ProcessorConfig {
    /// Reads and validates `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, PreprocessError> {
        let bad = |reason: String| PreprocessError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.crop_size().map_err(bad)?;
        if config.resize_mode != "squash" {
            return Err(bad(format!(
                "resize_mode {:?} is not supported (BLIP-3 uses \"squash\")",
                config.resize_mode
            )));
        }
        if config.interpolation_mode != "bicubic" {
            return Err(bad(format!(
                "interpolation_mode {:?} is not supported (BLIP-3 uses \"bicubic\")",
                config.interpolation_mode
            )));
        }
        if config.image_std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(bad("image_std must be finite and non-zero".into()));
        }
        Ok(config)
    }

    /// Whether the file says `"grids": null`: a checkpoint without anyres
    /// grids (v1.5 base), which runs one squashed crop per image.
    pub fn declares_no_grid(&self) -> bool {
        matches!(self.grids, Some(None))
    }

    /// The square crop size S.
    pub fn crop_size(&self) -> Result<usize, String> {
        match self.size.as_slice() {
            [s] | [s, _] if self.size.iter().all(|v| v == s) && *s > 0 => Ok(*s),
            _ => Err(format!("size must be a square [S, S], got {:?}", self.size)),
        }
    }
}

/// How an image is cut into crops (`image_aspect_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AspectMode {
    /// Global squash plus 2–4 grid crops (what BLIP-3 instruct uses).
    Anyres,
    /// A single squashed crop (the processor default without `anyres`).
    Pad,
}

/// One image turned into model input.
#[derive(Debug, Clone)]
pub struct PreprocessedImage {
    /// `[N, 3, S, S]` row-major, global crop first.
    pub pixel_values: Vec<f32>,
    /// N = 1 + npw·nph (anyres) or 1 (pad).
    pub num_crops: usize,
    /// S.
    pub crop_size: usize,
    /// Grid (npw, nph); (1, 1) means no grid crops (pad mode).
    pub grid: (usize, usize),
    /// Chosen pinpoint (w, h); equal to (S, S) in pad mode.
    pub best_resolution: (usize, usize),
    /// Original (W, H).
    pub image_size: (usize, usize),
    /// Which mode produced it.
    pub mode: AspectMode,
}

/// BLIP-3's image processor.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    crop: usize,
    mean: [f32; 3],
    std: [f32; 3],
    pinpoints: Vec<(usize, usize)>,
}

impl ImageProcessor {
    /// Builds the processor; pinpoints follow from the crop size (spec §10.2).
    pub fn new(config: &ProcessorConfig) -> Result<Self, PreprocessError> {
        let crop = config
            .crop_size()
            .map_err(|reason| PreprocessError::BadConfig {
                path: "preprocessor_config.json".into(),
                reason,
            })?;
        let processor = Self {
            crop,
            mean: config.image_mean,
            std: config.image_std,
            pinpoints: default_pinpoints(crop),
        };
        match &config.grids {
            Some(Some(grids)) => {
                processor.with_pinpoints(grids.iter().map(|&[w, h]| (w * crop, h * crop)).collect())
            }
            Some(None) | None => Ok(processor),
        }
    }

    /// Replaces the anyres candidates (w, h), e.g. with v1.5's `anyres_grids`.
    /// Each must be a whole number of crops per side.
    pub fn with_pinpoints(
        mut self,
        pinpoints: Vec<(usize, usize)>,
    ) -> Result<Self, PreprocessError> {
        let s = self.crop;
        if pinpoints.is_empty()
            || pinpoints
                .iter()
                .any(|&(w, h)| w == 0 || h == 0 || w % s != 0 || h % s != 0)
        {
            return Err(PreprocessError::BadConfig {
                path: "config.json".into(),
                reason: format!(
                    "anyres_grids {pinpoints:?} must be non-empty multiples of the crop size {s}"
                ),
            });
        }
        self.pinpoints = pinpoints;
        Ok(self)
    }

    /// Crop size S.
    pub fn crop_size(&self) -> usize {
        self.crop
    }

    /// Anyres pinpoints (w, h).
    pub fn pinpoints(&self) -> &[(usize, usize)] {
        &self.pinpoints
    }

    /// Runs the whole pipeline on a decoded RGB image.
    pub fn process(&self, image: &RgbImage, mode: AspectMode) -> PreprocessedImage {
        let s = self.crop;
        let size = (image.width(), image.height());
        let global = resize_bicubic(image, s, s);
        let (crops, grid, best) = match mode {
            AspectMode::Pad => (vec![global], (1, 1), (s, s)),
            AspectMode::Anyres => {
                let best = select_best_resolution(size, &self.pinpoints);
                let padded = resize_and_pad(image, best);
                let mut crops = vec![global];
                crops.extend(divide_to_patches(&padded, s));
                (crops, (best.0 / s, best.1 / s), best)
            }
        };
        let mut pixel_values = Vec::with_capacity(crops.len() * 3 * s * s);
        for crop in &crops {
            // The per-crop `Resize((S, S))` is the identity: every crop is S×S.
            self.normalize_into(crop, &mut pixel_values);
        }
        PreprocessedImage {
            num_crops: crops.len(),
            pixel_values,
            crop_size: s,
            grid,
            best_resolution: best,
            image_size: size,
            mode,
        }
    }

    /// `ToTensor` (x / 255 in f32) then `Normalize` ((x − mean) / std in f32), HWC → CHW.
    fn normalize_into(&self, crop: &RgbImage, out: &mut Vec<f32>) {
        let raw = crop.as_raw();
        for c in 0..3 {
            let (mean, std) = (self.mean[c], self.std[c]);
            out.extend(
                raw.chunks_exact(3)
                    .map(|px| (f32::from(px[c]) / 255.0 - mean) / std),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(grids: &str) -> ProcessorConfig {
        let json = format!(
            r#"{{"size": {{"height": 62, "width": 62}}, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5]{grids}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn grids_absent_null_and_listed_are_told_apart() {
        let absent = parse("");
        assert!(!absent.declares_no_grid());
        assert_eq!(
            ImageProcessor::new(&absent).unwrap().pinpoints()[0],
            (62, 124)
        );
        let null = parse(r#", "grids": null"#);
        assert!(null.declares_no_grid());
        let listed = parse(r#", "grids": [[3, 1]]"#);
        assert!(!listed.declares_no_grid());
        assert_eq!(
            ImageProcessor::new(&listed).unwrap().pinpoints(),
            &[(186, 62)]
        );
        assert_eq!(listed.crop_size(), Ok(62));
    }
}
