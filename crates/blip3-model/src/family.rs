//! The model seam: which family a `config.json` describes, and what differs
//! between families.
//!
//! Every family shares the perceiver ([`crate::resampler`]), the anyres
//! regrouping ([`crate::anyres`]) and Phi-3 with the decoupled vocabulary
//! ([`crate::phi3`]). A family contributes its vision tower (one folder:
//! [`crate::blip3_r1`], [`crate::xgenmm_v15`]), its checkpoint key table and a
//! few defaults (padding mask, how a chat prompt marks an image). Adding a
//! family means one new folder and one new variant here.

use candle_core::Tensor;

use crate::checkpoint::TensorSpec;
use crate::config::{ModelConfig, VisionCfg, VisionEncoderConfig};
use crate::weights::WeightStore;
use crate::{blip3_r1, xgenmm_v15, Result};

/// A vision tower: crops in, one row of patch tokens per crop out.
pub trait VisionTower: Send + Sync {
    /// `pixel_values` `[N, 3, S, S]` → patch tokens `[N, g², C]` (the features
    /// the perceiver reads; no class token).
    fn forward(&self, pixel_values: &Tensor) -> Result<Tensor>;

    /// The tower's sizes.
    fn config(&self) -> &VisionCfg;
}

/// A member of the BLIP-3 / xGen-MM family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// BLIP-3 r-v1 (`blip3-phi3-mini-{instruct,base}-r-v1`): open_clip ViT-H/14-378.
    Blip3R1,
    /// xGen-MM v1.5 (`xgen-mm-phi3-mini-*-r-v1.5`): SigLIP so400m-patch14-384.
    XgenmmV15,
}

/// Which optional parts a checkpoint of a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The instruct perceiver's `text_projection` (r-v1 instruct only).
    pub text_projection: bool,
}

impl Family {
    /// Every family, for listings and error messages.
    pub const ALL: [Family; 2] = [Family::Blip3R1, Family::XgenmmV15];

    /// Stable short name (`blip3-r1`, `xgenmm-v15`), as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blip3R1 => "blip3-r1",
            Self::XgenmmV15 => "xgenmm-v15",
        }
    }

    /// The tower name `vision_encoder_config.model_name` holds for this family.
    pub fn tower_name(self) -> &'static str {
        match self {
            Self::Blip3R1 => blip3_r1::TOWER_NAME,
            Self::XgenmmV15 => xgenmm_v15::TOWER_NAME,
        }
    }

    /// The family of a configuration, from `vision_encoder_config.model_name`
    /// (absent: r-v1, whose real config leaves it to the class default).
    pub fn detect(config: &ModelConfig) -> std::result::Result<Self, String> {
        let name = config.vision_encoder_config.model_name.as_deref();
        match name {
            None => Ok(Self::Blip3R1),
            Some(n) => Self::ALL
                .into_iter()
                .find(|f| f.tower_name() == n)
                .ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|f| f.tower_name()).collect();
                    format!(
                        "vision_encoder_config.model_name is {n:?}; supported towers: {}",
                        known.join(", ")
                    )
                }),
        }
    }

    /// The tower sizes: the fixture override `vision_cfg` or the real tower.
    pub fn vision_cfg(
        self,
        encoder: &VisionEncoderConfig,
    ) -> std::result::Result<VisionCfg, String> {
        match self {
            Self::Blip3R1 => blip3_r1::vision_cfg(encoder),
            Self::XgenmmV15 => xgenmm_v15::vision_cfg(encoder),
        }
    }

    /// Family-specific consistency checks of `config.json`.
    pub fn validate(
        self,
        config: &ModelConfig,
        vision: &VisionCfg,
    ) -> std::result::Result<(), String> {
        match self {
            Self::Blip3R1 => blip3_r1::validate(config, vision),
            Self::XgenmmV15 => Ok(()),
        }
    }

    /// Whether the perceiver hides the anyres padding by default: no for r-v1
    /// (its reference computes the mask and drops it), yes for v1.5.
    pub fn masks_padding(self) -> bool {
        matches!(self, Self::XgenmmV15)
    }

    /// What a chat prompt puts in the user turn for each image: `<image>\n`
    /// (r-v1's model card) or `<image> ` inline (v1.5, VLMEvalKit's wrapper).
    pub const fn chat_image_marker(self) -> &'static str {
        match self {
            Self::Blip3R1 => "<image>\n",
            Self::XgenmmV15 => "<image> ",
        }
    }

    /// Every tensor of this family's checkpoint for `config`, in a stable order:
    /// the one table that loading checks and `init-random` writes.
    pub fn tensor_specs(self, config: &ModelConfig, variant: Variant) -> Vec<TensorSpec> {
        let mut specs = match self {
            Self::Blip3R1 => blip3_r1::vision_specs(&config.vision()),
            Self::XgenmmV15 => xgenmm_v15::vision_specs(&config.vision()),
        };
        specs.extend(crate::resampler::tensor_specs(
            "vlm.vision_tokenizer",
            &config.vision_tokenizer_config,
            variant.text_projection,
        ));
        specs.extend(crate::phi3::tensor_specs(
            "vlm.lang_model",
            &config.text_config,
        ));
        specs
    }

    /// Checkpoint keys that exist but are never used (logged, not loaded).
    pub fn unused_prefixes(self) -> &'static [&'static str] {
        match self {
            Self::Blip3R1 => &[],
            Self::XgenmmV15 => &["vlm.vision_encoder.head."],
        }
    }

    /// Loads this family's vision tower from keys under `vlm.vision_encoder`.
    pub fn load_vision(self, store: &WeightStore, cfg: &VisionCfg) -> Result<Box<dyn VisionTower>> {
        let prefix = "vlm.vision_encoder";
        Ok(match self {
            Self::Blip3R1 => Box::new(blip3_r1::VisionTransformer::load(store, prefix, cfg)?),
            Self::XgenmmV15 => Box::new(xgenmm_v15::SiglipVisionTransformer::load(
                store, prefix, cfg,
            )?),
        })
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
