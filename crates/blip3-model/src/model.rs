//! A whole family member: vision tower, perceiver and language model, with
//! the operations the engine composes (encode crops, resample, splice).

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::family::{Family, Variant, VisionTower};
use crate::phi3::Phi3;
use crate::resampler::{PerceiverResampler, MAX_TEXT_QUERIES};
use crate::weights::{Quantization, WeightDtype, WeightStore};
use crate::{ModelError, Result};

/// Which `<image>` tokens of a prompt receive visual tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpliceMode {
    /// Every `<image>`, in order, gets its own image's rows; the counts must
    /// match (family spec §1.3 variant (c), what v1.5 and few-shot need).
    #[default]
    EveryImage,
    /// Only the first `<image>` gets the first image's rows and later ones
    /// stay ordinary tokens: the r-v1 instruct reference (variant (b)).
    FirstOnly,
}

/// The ViT output of one image's crops, regrouped for the perceiver.
#[derive(Debug, Clone)]
pub struct CropFeatures {
    /// Tower output before regrouping `[N, g², C]`.
    pub vit_tokens: Tensor,
    /// Perceiver input `[N, g², C]`: global crop, then the regrouped groups.
    pub features: Tensor,
    /// The anyres padding mask `[N·g²]` (1 keep, 0 padded), regrouped alike.
    pub padding_mask: Vec<f32>,
}

/// A BLIP-3 / xGen-MM model loaded from a Hugging Face model folder.
pub struct VisionLanguageModel {
    config: ModelConfig,
    family: Family,
    vision: Box<dyn VisionTower>,
    resampler: PerceiverResampler,
    lm: Phi3,
    device: Device,
}

impl VisionLanguageModel {
    /// Loads `config.json` and the safetensors weights of `dir`, optionally
    /// quantising linear-layer weights as they are read.
    pub fn load(
        dir: &Path,
        device: &Device,
        dtype: WeightDtype,
        quantization: Option<Quantization>,
    ) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let mut store = WeightStore::open(dir, device, dtype)?;
        store.set_quantization(quantization)?;
        Self::from_store(config, &store)
    }

    /// Builds the model from an opened checkpoint (keys under `vlm.`), after
    /// checking it against the family's key table.
    pub fn from_store(config: ModelConfig, store: &WeightStore) -> Result<Self> {
        let family = config.family().map_err(ModelError::Input)?;
        let variant = Variant {
            text_projection: store.contains_weight("vlm.vision_tokenizer.text_projection.0.weight"),
        };
        crate::checkpoint::check_keys(store, family, &family.tensor_specs(&config, variant))?;
        let vision = family.load_vision(store, &config.vision())?;
        let resampler = PerceiverResampler::load(
            store,
            "vlm.vision_tokenizer",
            &config.vision_tokenizer_config,
        )?;
        let lm = Phi3::load(store, "vlm.lang_model", &config.text_config)?;
        tracing::info!(
            "loaded a {family} model ({} perceiver)",
            if resampler.is_text_conditioned() {
                "text-conditioned"
            } else {
                "plain"
            }
        );
        Ok(Self {
            device: store.device().clone(),
            config,
            family,
            vision,
            resampler,
            lm,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Which family member this is.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The vision tower.
    pub fn vision(&self) -> &dyn VisionTower {
        self.vision.as_ref()
    }

    /// The perceiver resampler.
    pub fn resampler(&self) -> &PerceiverResampler {
        &self.resampler
    }

    /// The language model.
    pub fn lm(&self) -> &Phi3 {
        &self.lm
    }

    /// The language model, to change its settings (e.g. the KV-cache precision).
    pub fn lm_mut(&mut self) -> &mut Phi3 {
        &mut self.lm
    }

    /// Whether this is a base checkpoint (r-v1 base has no `text_projection`).
    pub fn is_base(&self) -> bool {
        self.family == Family::Blip3R1 && !self.resampler.is_text_conditioned()
    }

    /// Checks that `pixel_values` [N, 3, S, S] fits this model's crop size.
    pub fn check_pixels(&self, pixel_values: &Tensor) -> Result<()> {
        let s = self.vision.config().image_size;
        match pixel_values.dims() {
            [n, 3, h, w] if *n > 0 && *h == s && *w == s => Ok(()),
            dims => Err(ModelError::Input(format!(
                "pixel_values has shape {dims:?}, expected [N, 3, {s}, {s}]"
            ))),
        }
    }

    /// Runs the tower on one image's crops `[N, 3, S, S]` (global first, then
    /// the `grid` = (npw, nph) crops row-major) and regroups the tokens and the
    /// padding mask of the original `image_size` (W, H) for the perceiver.
    pub fn encode_crops(
        &self,
        pixel_values: &Tensor,
        grid: (usize, usize),
        image_size: (usize, usize),
    ) -> Result<CropFeatures> {
        let vit_tokens = self.vision_tokens(pixel_values)?;
        self.regroup_crops(vit_tokens, grid, image_size)
    }

    /// The vision tower alone on crops `[N, 3, S, S]`: `[N, g², C]`. Each
    /// crop's tokens depend on that crop only, so crops may go through one
    /// at a time (a scheduler interleaving other work) with the same result.
    pub fn vision_tokens(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.check_pixels(pixel_values)?;
        self.vision.forward(pixel_values)
    }

    /// [`Self::encode_crops`]' second half: regroups all of an image's tower
    /// tokens `[N, g², C]` for the perceiver and builds its padding mask.
    pub fn regroup_crops(
        &self,
        vit_tokens: Tensor,
        grid: (usize, usize),
        image_size: (usize, usize),
    ) -> Result<CropFeatures> {
        let n = vit_tokens.dim(0)?;
        let g = self.vision.config().grid();
        let features = crate::anyres::regroup_features(&vit_tokens, grid, g)?;
        let padding_mask = crate::anyres::padding_mask(image_size, grid, n, g);
        Ok(CropFeatures {
            vit_tokens,
            features,
            padding_mask,
        })
    }

    /// The perceiver's text queries: embeddings of the first ≤ 256 prompt ids
    /// (BOS and `<image>` included), or `None` for a plain perceiver.
    pub fn text_queries(&self, input_ids: &[u32]) -> Result<Option<Tensor>> {
        if !self.resampler.is_text_conditioned() {
            return Ok(None);
        }
        let n = input_ids.len().min(MAX_TEXT_QUERIES);
        self.lm.embed(&input_ids[..n]).map(Some)
    }

    /// Replaces `<image>` tokens (id `image_token_id`) of `input_ids` by the
    /// visual-token blocks `[rows_j, d]`, one per image in prompt order (spec
    /// §7, family spec §1.3); the `<image>` embedding itself is dropped.
    ///
    /// With [`SpliceMode::EveryImage`] the number of `<image>` tokens must
    /// equal the number of blocks. With [`SpliceMode::FirstOnly`] at most one
    /// block is accepted and only the first `<image>` is replaced.
    pub fn splice(
        &self,
        input_ids: &[u32],
        blocks: &[Tensor],
        image_token_id: u32,
        mode: SpliceMode,
    ) -> Result<Tensor> {
        let text = self.lm.embed(input_ids)?;
        let mut positions: Vec<usize> = input_ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == image_token_id)
            .map(|(i, _)| i)
            .collect();
        match mode {
            SpliceMode::EveryImage => {
                if positions.len() != blocks.len() {
                    return Err(ModelError::Input(format!(
                        "the prompt has {} <image> token(s) but {} image(s) were given",
                        positions.len(),
                        blocks.len()
                    )));
                }
            }
            SpliceMode::FirstOnly => {
                if blocks.len() > 1 {
                    return Err(ModelError::Input(format!(
                        "first-image-only splicing takes one image, {} were given",
                        blocks.len()
                    )));
                }
                // As the r-v1 reference: without an <image> the text is kept
                // and the visual tokens are unused.
                positions.truncate(blocks.len());
            }
        }
        let mut parts = Vec::with_capacity(2 * positions.len() + 1);
        let mut start = 0;
        for (&p, block) in positions.iter().zip(blocks) {
            if p > start {
                parts.push(text.narrow(0, start, p - start)?);
            }
            parts.push(block.clone());
            start = p + 1;
        }
        if start < input_ids.len() {
            parts.push(text.narrow(0, start, input_ids.len() - start)?);
        }
        if parts.is_empty() {
            return Ok(text);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}
