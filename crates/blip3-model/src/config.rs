//! `config.json` of a BLIP-3 model folder (spec §2), mirroring the HF classes.
//!
//! The real file only names model types and a handful of fields; everything
//! else comes from the Python class defaults, reproduced here as serde defaults.
//! The test fixtures add optional size overrides (`vision_cfg`, `depth`, …).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// Top-level `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blip3Config {
    /// `blip_3` (init release) or `xgenmm` (renamed release).
    pub model_type: String,
    /// Vision tower settings.
    #[serde(default)]
    pub vision_encoder_config: VisionEncoderConfig,
    /// Perceiver resampler settings.
    #[serde(default)]
    pub vision_tokenizer_config: VisionTokenizerConfig,
    /// Phi-3 settings.
    pub text_config: Phi3Config,
}

/// `vision_encoder_config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionEncoderConfig {
    /// open_clip model name; only `ViT-H-14-378-quickgelu` exists for r-v1.
    #[serde(default = "default_vit_name")]
    pub model_name: String,
    /// Crop size S.
    #[serde(default = "default_image_size")]
    pub force_image_size: usize,
    /// `anyres` or `pad`.
    #[serde(default = "default_anyres")]
    pub image_aspect_ratio: String,
    /// Whether grid crops are sampled (always true for r-v1).
    #[serde(default = "default_true")]
    pub anyres_patch_sampling: bool,
    /// Optional open_clip size override (fixtures); absent = ViT-H-14-378.
    #[serde(default)]
    pub vision_cfg: Option<VisionCfg>,
}

impl Default for VisionEncoderConfig {
    fn default() -> Self {
        Self {
            model_name: default_vit_name(),
            force_image_size: default_image_size(),
            image_aspect_ratio: default_anyres(),
            anyres_patch_sampling: true,
            vision_cfg: None,
        }
    }
}

/// open_clip `vision_cfg` fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionCfg {
    /// Crop size.
    pub image_size: usize,
    /// Patch size (14).
    pub patch_size: usize,
    /// Transformer width W.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Width of one attention head (heads = width / head_width).
    pub head_width: usize,
    /// MLP width factor.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
}

impl VisionCfg {
    /// ViT-H-14-378 (open_clip `ViT-H-14-378-quickgelu.json`).
    pub fn vit_h_14_378() -> Self {
        Self {
            image_size: 378,
            patch_size: 14,
            width: 1280,
            layers: 32,
            head_width: 80,
            mlp_ratio: 4.0,
        }
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.width / self.head_width
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// MLP hidden width.
    pub fn mlp_width(&self) -> usize {
        (self.width as f64 * self.mlp_ratio) as usize
    }
}

/// `vision_tokenizer_config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionTokenizerConfig {
    /// ViT width fed to the perceiver.
    #[serde(default = "default_vis_dim")]
    pub vis_feature_dim: usize,
    /// LM hidden size the output is projected to.
    #[serde(default = "default_lang_dim")]
    pub lang_embedding_dim: usize,
    /// Learned latents per crop.
    #[serde(default = "default_num_vis_tokens")]
    pub num_vis_tokens: usize,
    /// `anyres` or `pad`.
    #[serde(default = "default_anyres")]
    pub image_aspect_ratio: String,
    /// Unused path of the original code; must be false.
    #[serde(default)]
    pub repeat_latents: bool,
    /// Perceiver layers.
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Attention heads.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Width of one head.
    #[serde(default = "default_dim_head")]
    pub dim_head: usize,
    /// Feed-forward width factor.
    #[serde(default = "default_ff_mult")]
    pub ff_mult: usize,
}

impl Default for VisionTokenizerConfig {
    fn default() -> Self {
        Self {
            vis_feature_dim: default_vis_dim(),
            lang_embedding_dim: default_lang_dim(),
            num_vis_tokens: default_num_vis_tokens(),
            image_aspect_ratio: default_anyres(),
            repeat_latents: false,
            depth: default_depth(),
            heads: default_heads(),
            dim_head: default_dim_head(),
            ff_mult: default_ff_mult(),
        }
    }
}

/// `text_config` (transformers `Phi3Config` with its defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phi3Config {
    /// Embedding/head rows (32064).
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Hidden size d.
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    /// MLP width.
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    /// Decoder layers.
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Query heads.
    #[serde(default = "default_attn_heads")]
    pub num_attention_heads: usize,
    /// Key/value heads (None = query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Must be null (plain RoPE) for r-v1.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Context length.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Sliding window W: query i sees keys i − W … i (a window of W + 1 keys).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Ids below this come from the original embedding/head (32012).
    #[serde(default = "default_initial_tokenizer_len")]
    pub initial_tokenizer_len: usize,
    /// BOS id.
    #[serde(default = "default_bos")]
    pub bos_token_id: u32,
    /// EOS id (32000).
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    /// Pad id (32000: the VLM's effective pad, spec §2.2).
    #[serde(default = "default_eos")]
    pub pad_token_id: u32,
}

impl Phi3Config {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Logit width: `initial_tokenizer_len` + 3 additional tokens (32015).
    pub fn logit_width(&self) -> usize {
        self.initial_tokenizer_len + crate::decoupled::NUM_ADDITIONAL
    }
}

fn default_vit_name() -> String {
    VIT_NAME.to_string()
}
fn default_image_size() -> usize {
    378
}
fn default_anyres() -> String {
    "anyres".into()
}
fn default_true() -> bool {
    true
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_vis_dim() -> usize {
    1280
}
fn default_lang_dim() -> usize {
    3072
}
fn default_num_vis_tokens() -> usize {
    128
}
fn default_depth() -> usize {
    6
}
fn default_heads() -> usize {
    16
}
fn default_dim_head() -> usize {
    96
}
fn default_ff_mult() -> usize {
    4
}
fn default_vocab() -> usize {
    32064
}
fn default_hidden() -> usize {
    3072
}
fn default_intermediate() -> usize {
    8192
}
fn default_layers() -> usize {
    32
}
fn default_attn_heads() -> usize {
    32
}
fn default_act() -> String {
    "silu".into()
}
fn default_rms_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_max_pos() -> usize {
    4096
}
fn default_initial_tokenizer_len() -> usize {
    32012
}
fn default_bos() -> u32 {
    1
}
fn default_eos() -> u32 {
    32000
}

/// The only vision tower BLIP-3 r-v1 accepts.
pub const VIT_NAME: &str = "ViT-H-14-378-quickgelu";

impl Blip3Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bad = |reason: String| ModelError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// The real instruct r-v1 configuration (spec §2.1 with class defaults).
    pub fn instruct_r_v1() -> Self {
        Self {
            model_type: "blip_3".into(),
            vision_encoder_config: VisionEncoderConfig::default(),
            vision_tokenizer_config: VisionTokenizerConfig::default(),
            text_config: serde_json::from_value(serde_json::json!({
                "initial_tokenizer_len": 32012,
                "model_type": "phi3",
                "sliding_window": 2047,
                "torch_dtype": "bfloat16"
            }))
            .expect("static Phi-3 config parses"),
        }
    }

    /// Effective open_clip sizes (the override, or ViT-H-14-378 with the crop size).
    pub fn vision(&self) -> VisionCfg {
        self.vision_encoder_config
            .vision_cfg
            .clone()
            .unwrap_or_else(|| {
                let mut cfg = VisionCfg::vit_h_14_378();
                cfg.image_size = self.vision_encoder_config.force_image_size;
                cfg
            })
    }

    /// Checks model types and internal consistency; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.model_type.as_str(), "blip_3" | "xgenmm") {
            return Err(format!(
                "model_type is {:?}; this engine runs BLIP-3 r-v1 (\"blip_3\" or \"xgenmm\")",
                self.model_type
            ));
        }
        if self.vision_encoder_config.model_name != VIT_NAME {
            return Err(format!(
                "vision_encoder_config.model_name is {:?}; BLIP-3 r-v1 requires {VIT_NAME:?}",
                self.vision_encoder_config.model_name
            ));
        }
        let v = self.vision();
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        if v.head_width == 0 || !v.width.is_multiple_of(v.head_width) {
            return Err(format!(
                "vision width {} is not a multiple of head_width {}",
                v.width, v.head_width
            ));
        }
        if v.image_size != self.vision_encoder_config.force_image_size {
            return Err(format!(
                "vision_cfg.image_size {} differs from force_image_size {}",
                v.image_size, self.vision_encoder_config.force_image_size
            ));
        }
        let r = &self.vision_tokenizer_config;
        if r.repeat_latents {
            return Err("vision_tokenizer_config.repeat_latents=true is not supported".into());
        }
        if r.vis_feature_dim != v.width {
            return Err(format!(
                "vision_tokenizer_config.vis_feature_dim {} differs from the ViT width {}",
                r.vis_feature_dim, v.width
            ));
        }
        let t = &self.text_config;
        if r.lang_embedding_dim != t.hidden_size {
            return Err(format!(
                "vision_tokenizer_config.lang_embedding_dim {} differs from text_config.hidden_size {}",
                r.lang_embedding_dim, t.hidden_size
            ));
        }
        if t.hidden_act != "silu" {
            return Err(format!(
                "text_config.hidden_act {:?} is not supported",
                t.hidden_act
            ));
        }
        if t.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("text_config.rope_scaling is set; r-v1 uses plain RoPE".into());
        }
        if t.num_attention_heads == 0
            || !t.hidden_size.is_multiple_of(t.num_attention_heads)
            || t.kv_heads() == 0
            || !t.num_attention_heads.is_multiple_of(t.kv_heads())
        {
            return Err("text_config head counts do not divide hidden_size".into());
        }
        if !t.head_dim().is_multiple_of(2) {
            return Err("text_config head dim must be even for RoPE".into());
        }
        if t.initial_tokenizer_len > t.vocab_size {
            return Err(format!(
                "text_config.initial_tokenizer_len {} exceeds vocab_size {}",
                t.initial_tokenizer_len, t.vocab_size
            ));
        }
        Ok(())
    }
}
