//! `config.json` of a BLIP-3 / xGen-MM model folder (spec §2, family spec §2.8),
//! mirroring the HF classes.
//!
//! The real file only names model types and a handful of fields; everything
//! else comes from the Python class defaults, reproduced here as serde defaults.
//! The test fixtures add optional size overrides (`vision_cfg`, `depth`, …).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::{ModelError, Result};

/// Top-level `config.json` of any family member (r-v1 or v1.5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `blip_3` (init release) or `xgenmm` (renamed release and v1.5).
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VisionEncoderConfig {
    /// The tower's name: it decides the family (absent: r-v1's open_clip ViT-H).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Crop size S of r-v1 (absent: 378).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_image_size: Option<usize>,
    /// Anyres candidate resolutions (w, h) in pixels (v1.5; r-v1 derives them from S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anyres_grids: Option<Vec<[usize; 2]>>,
    /// `anyres` or `pad` (absent: `anyres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_aspect_ratio: Option<String>,
    /// Whether grid crops are sampled (always true in the released models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anyres_patch_sampling: Option<bool>,
    /// Optional tower size override of the test fixtures, with the tower's own
    /// field names (open_clip's for r-v1, `SiglipVisionConfig`'s for v1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_cfg: Option<serde_json::Value>,
}

impl VisionEncoderConfig {
    /// The configured aspect mode, `anyres` when absent.
    pub fn aspect_ratio(&self) -> &str {
        self.image_aspect_ratio.as_deref().unwrap_or("anyres")
    }
}

/// Sizes of a ViT-style vision tower, whatever its family.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionCfg {
    /// Crop size S.
    pub image_size: usize,
    /// Patch size p (a "valid" convolution with stride p: g = ⌊S / p⌋ patches per side).
    pub patch_size: usize,
    /// Transformer width C.
    pub width: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub mlp_width: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
}

impl VisionCfg {
    /// Patches per side g.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads.max(1)
    }

    /// Checks the sizes are usable; the message names the problem.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.patch_size == 0 || self.image_size < self.patch_size {
            return Err(format!(
                "vision image_size {} is smaller than patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.heads == 0 || !self.width.is_multiple_of(self.heads) {
            return Err(format!(
                "vision width {} is not a multiple of the head count {}",
                self.width, self.heads
            ));
        }
        if self.layers == 0 || self.mlp_width == 0 {
            return Err("vision tower has no layers or an empty MLP".into());
        }
        Ok(())
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

fn default_anyres() -> String {
    "anyres".into()
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

impl ModelConfig {
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
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let config = Self::from_raw(raw).map_err(bad)?;
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// Parses a `config.json` value. A perceiver input width left out
    /// (`vis_feature_dim`) follows the family's tower rather than r-v1's 1280.
    pub fn from_raw(raw: serde_json::Value) -> std::result::Result<Self, String> {
        let has_dim = raw
            .get("vision_tokenizer_config")
            .and_then(|v| v.get("vis_feature_dim"))
            .is_some();
        let mut config: Self = serde_json::from_value(raw).map_err(|e| e.to_string())?;
        if !has_dim {
            let family = config.family()?;
            config.vision_tokenizer_config.vis_feature_dim =
                family.vision_cfg(&config.vision_encoder_config)?.width;
        }
        Ok(config)
    }

    /// The real instruct r-v1 configuration (spec §2.1 with class defaults).
    pub fn instruct_r_v1() -> Self {
        Self::from_json_value(crate::blip3_r1::full_config_json("float32"))
    }

    /// The real xGen-MM v1.5 configuration (family spec §2.8).
    pub fn xgenmm_v15() -> Self {
        Self::from_json_value(crate::xgenmm_v15::full_config_json("float32"))
    }

    fn from_json_value(value: serde_json::Value) -> Self {
        Self::from_raw(value).expect("static config parses")
    }

    /// The family this configuration belongs to (from the tower's name).
    pub fn family(&self) -> std::result::Result<Family, String> {
        Family::detect(self)
    }

    /// Effective vision tower sizes (the fixture override, or the real tower).
    pub fn vision(&self) -> VisionCfg {
        // `validate` has checked that this resolves; fall back to r-v1 sizes
        // rather than panic for a config built by hand.
        self.family()
            .and_then(|f| f.vision_cfg(&self.vision_encoder_config))
            .unwrap_or_else(|_| crate::blip3_r1::vit_h_14_378(378))
    }

    /// Checks model types and internal consistency; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.model_type.as_str(), "blip_3" | "xgenmm") {
            return Err(format!(
                "model_type is {:?}; this engine runs the BLIP-3 / xGen-MM family (\"blip_3\" or \"xgenmm\")",
                self.model_type
            ));
        }
        let family = self.family()?;
        let v = family.vision_cfg(&self.vision_encoder_config)?;
        v.validate()?;
        family.validate(self, &v)?;
        if let Some(aspect) = &self.vision_encoder_config.image_aspect_ratio {
            if !matches!(aspect.as_str(), "anyres" | "pad") {
                return Err(format!(
                    "vision_encoder_config.image_aspect_ratio is {aspect:?}; expected \"anyres\" or \"pad\""
                ));
            }
        }
        let r = &self.vision_tokenizer_config;
        if r.repeat_latents {
            return Err("vision_tokenizer_config.repeat_latents=true is not supported".into());
        }
        if r.vis_feature_dim != v.width {
            return Err(format!(
                "vision_tokenizer_config.vis_feature_dim {} differs from the vision tower width {}",
                r.vis_feature_dim, v.width
            ));
        }
        if r.heads == 0 || r.dim_head == 0 || r.depth == 0 || r.num_vis_tokens == 0 {
            return Err("vision_tokenizer_config has a zero size (heads, dim_head, depth or num_vis_tokens)".into());
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
            return Err("text_config.rope_scaling is set; the family uses plain RoPE".into());
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
