//! The whole BLIP-3 model: vision tower, perceiver and language model.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::config::Blip3Config;
use crate::phi3::Phi3;
use crate::resampler::{PerceiverResampler, MAX_TEXT_QUERIES};
use crate::vision::VisionTransformer;
use crate::weights::{Quantization, WeightDtype, WeightStore};
use crate::{ModelError, Result};

/// BLIP-3 r-v1 loaded from a Hugging Face model folder.
pub struct Blip3Model {
    config: Blip3Config,
    vision: VisionTransformer,
    resampler: PerceiverResampler,
    lm: Phi3,
    device: Device,
}

impl Blip3Model {
    /// Loads `config.json` and the safetensors weights of `dir`, optionally
    /// quantising linear-layer weights as they are read.
    pub fn load(
        dir: &Path,
        device: &Device,
        dtype: WeightDtype,
        quantization: Option<Quantization>,
    ) -> Result<Self> {
        let config = Blip3Config::from_file(&dir.join("config.json"))?;
        let mut store = WeightStore::open(dir, device, dtype)?;
        store.set_quantization(quantization)?;
        Self::from_store(config, &store)
    }

    /// Builds the model from an opened checkpoint (keys under `vlm.`).
    pub fn from_store(config: Blip3Config, store: &WeightStore) -> Result<Self> {
        let vision = VisionTransformer::load(store, "vlm.vision_encoder", &config.vision())?;
        let resampler = PerceiverResampler::load(
            store,
            "vlm.vision_tokenizer",
            &config.vision_tokenizer_config,
        )?;
        let lm = Phi3::load(store, "vlm.lang_model", &config.text_config)?;
        Ok(Self {
            device: store.device().clone(),
            config,
            vision,
            resampler,
            lm,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Blip3Config {
        &self.config
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The ViT.
    pub fn vision(&self) -> &VisionTransformer {
        &self.vision
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

    /// The perceiver's text queries: embeddings of the first ≤ 256 prompt ids
    /// (BOS and `<image>` included), or `None` for a base (unconditioned) model.
    pub fn text_queries(&self, input_ids: &[u32]) -> Result<Option<Tensor>> {
        if !self.resampler.is_text_conditioned() {
            return Ok(None);
        }
        let n = input_ids.len().min(MAX_TEXT_QUERIES);
        self.lm.embed(&input_ids[..n]).map(Some)
    }

    /// Replaces the first `<image>` (id `image_token_id`) of `input_ids` by
    /// `vision_tokens` [N·Q, d] (spec §7). Without an `<image>` the text
    /// embeddings are returned unchanged; later `<image>` ids stay ordinary tokens.
    pub fn splice(
        &self,
        input_ids: &[u32],
        vision_tokens: &Tensor,
        image_token_id: u32,
    ) -> Result<Tensor> {
        let text = self.lm.embed(input_ids)?;
        let Some(p) = input_ids.iter().position(|&id| id == image_token_id) else {
            return Ok(text);
        };
        let mut parts = Vec::with_capacity(3);
        if p > 0 {
            parts.push(text.narrow(0, 0, p)?);
        }
        parts.push(vision_tokens.clone());
        if p + 1 < input_ids.len() {
            parts.push(text.narrow(0, p + 1, input_ids.len() - p - 1)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Checks that `pixel_values` [N, 3, S, S] fits this model's crop size.
    pub fn check_pixels(&self, pixel_values: &Tensor) -> Result<()> {
        let s = self.config.vision().image_size;
        match pixel_values.dims() {
            [_, 3, h, w] if *h == s && *w == s => Ok(()),
            dims => Err(ModelError::Input(format!(
                "pixel_values has shape {dims:?}, expected [N, 3, {s}, {s}]"
            ))),
        }
    }
}
