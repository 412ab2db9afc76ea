//! BLIP-3 r-v1 (`blip3-phi3-mini-{instruct,base}-r-v1`): the open_clip
//! ViT-H/14-378 tower, its configuration and its checkpoint keys (spec §4, §9.1).

mod vit;

pub use vit::VisionTransformer;

use crate::checkpoint::{TensorSpec, NORM, WEIGHT};
use crate::config::{ModelConfig, VisionCfg, VisionEncoderConfig};

/// `vision_encoder_config.model_name` of r-v1.
pub const TOWER_NAME: &str = "ViT-H-14-378-quickgelu";

/// open_clip's LayerNorm epsilon.
const LN_EPS: f64 = 1e-5;

/// ViT-H-14-378 (open_clip `ViT-H-14-378-quickgelu.json`) at crop size `s`.
pub fn vit_h_14_378(s: usize) -> VisionCfg {
    VisionCfg {
        image_size: s,
        patch_size: 14,
        width: 1280,
        layers: 32,
        heads: 16,
        mlp_width: 5120,
        layer_norm_eps: LN_EPS,
    }
}

/// open_clip `vision_cfg` fields of the fixture override.
#[derive(serde::Deserialize)]
struct OpenClipCfg {
    image_size: usize,
    patch_size: usize,
    width: usize,
    layers: usize,
    head_width: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
}

fn default_mlp_ratio() -> f64 {
    4.0
}

/// The tower sizes of an r-v1 config: the `vision_cfg` override or ViT-H at
/// `force_image_size`.
pub fn vision_cfg(encoder: &VisionEncoderConfig) -> Result<VisionCfg, String> {
    let s = encoder.force_image_size.unwrap_or(378);
    let Some(raw) = &encoder.vision_cfg else {
        return Ok(vit_h_14_378(s));
    };
    let c: OpenClipCfg = serde_json::from_value(raw.clone())
        .map_err(|e| format!("vision_encoder_config.vision_cfg (open_clip fields): {e}"))?;
    if c.head_width == 0 || !c.width.is_multiple_of(c.head_width) {
        return Err(format!(
            "vision width {} is not a multiple of head_width {}",
            c.width, c.head_width
        ));
    }
    Ok(VisionCfg {
        image_size: c.image_size,
        patch_size: c.patch_size,
        width: c.width,
        layers: c.layers,
        heads: c.width / c.head_width,
        mlp_width: (c.width as f64 * c.mlp_ratio) as usize,
        layer_norm_eps: LN_EPS,
    })
}

/// r-v1 checks: open_clip needs whole patches, and the override must agree
/// with `force_image_size`.
pub fn validate(config: &ModelConfig, v: &VisionCfg) -> Result<(), String> {
    if !v.image_size.is_multiple_of(v.patch_size) {
        return Err(format!(
            "vision image_size {} is not a multiple of patch_size {}",
            v.image_size, v.patch_size
        ));
    }
    let forced = config.vision_encoder_config.force_image_size.unwrap_or(378);
    if v.image_size != forced {
        return Err(format!(
            "vision_cfg.image_size {} differs from force_image_size {forced}",
            v.image_size
        ));
    }
    Ok(())
}

/// The open_clip tower's keys under `vlm.vision_encoder` (`proj` included: it
/// is in the checkpoint though BLIP-3 never uses it).
pub fn vision_specs(v: &VisionCfg) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let (w, norm) = (WEIGHT, NORM);
    let (vw, g, p) = (v.width, v.grid(), v.patch_size);
    let ve = "vlm.vision_encoder";
    out.push(TensorSpec::new(format!("{ve}.class_embedding"), &[vw], w));
    out.push(TensorSpec::new(
        format!("{ve}.positional_embedding"),
        &[g * g + 1, vw],
        w,
    ));
    out.push(TensorSpec::new(format!("{ve}.proj"), &[vw, 1024], w));
    out.push(TensorSpec::new(
        format!("{ve}.conv1.weight"),
        &[vw, 3, p, p],
        w,
    ));
    out.push(TensorSpec::new(format!("{ve}.ln_pre.weight"), &[vw], norm));
    out.push(TensorSpec::new(format!("{ve}.ln_pre.bias"), &[vw], w));
    for i in 0..v.layers {
        let b = format!("{ve}.transformer.resblocks.{i}");
        let mlp = v.mlp_width;
        out.push(TensorSpec::new(format!("{b}.ln_1.weight"), &[vw], norm));
        out.push(TensorSpec::new(format!("{b}.ln_1.bias"), &[vw], w));
        out.push(TensorSpec::new(
            format!("{b}.attn.in_proj_weight"),
            &[3 * vw, vw],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.attn.in_proj_bias"),
            &[3 * vw],
            w,
        ));
        out.push(TensorSpec::new(
            format!("{b}.attn.out_proj.weight"),
            &[vw, vw],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.attn.out_proj.bias"), &[vw], w));
        out.push(TensorSpec::new(format!("{b}.ln_2.weight"), &[vw], norm));
        out.push(TensorSpec::new(format!("{b}.ln_2.bias"), &[vw], w));
        out.push(TensorSpec::new(
            format!("{b}.mlp.c_fc.weight"),
            &[mlp, vw],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.c_fc.bias"), &[mlp], w));
        out.push(TensorSpec::new(
            format!("{b}.mlp.c_proj.weight"),
            &[vw, mlp],
            w,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.c_proj.bias"), &[vw], w));
    }
    out.push(TensorSpec::new(format!("{ve}.ln_post.weight"), &[vw], norm));
    out.push(TensorSpec::new(format!("{ve}.ln_post.bias"), &[vw], w));

    out
}

/// `config.json` of the real instruct r-v1 folder (init release), with
/// `torch_dtype` set by the caller.
pub fn full_config_json(torch_dtype: &str) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Blip3ModelForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": "configuration_blip_3.Blip3Config",
            "AutoModelForVision2Seq": "modeling_blip_3.Blip3ModelForConditionalGeneration"
        },
        "model_type": "blip_3",
        "text_config": {
            "initial_tokenizer_len": 32012,
            "model_type": "phi3",
            "sliding_window": 2047,
            "torch_dtype": "bfloat16"
        },
        "torch_dtype": torch_dtype,
        "transformers_version": "4.41.0.dev0",
        "vision_encoder_config": {
            "anyres_patch_sampling": true,
            "image_aspect_ratio": "anyres",
            "model_type": "blip_3_vision_encoder"
        },
        "vision_tokenizer_config": {
            "model_type": "blip_3_vision_tokenizer"
        }
    })
}

/// `preprocessor_config.json` of the real r-v1 folder (CLIP statistics, 378).
pub const PREPROCESSOR_CONFIG: &str = r#"{
  "auto_map": {
    "AutoImageProcessor": "image_processing_blip_3.Blip3ImageProcessor"
  },
  "do_resize": true,
  "image_mean": [0.48145466, 0.4578275, 0.40821073],
  "image_processor_type": "Blip3ImageProcessor",
  "image_std": [0.26862954, 0.26130258, 0.27577711],
  "interpolation_mode": "bicubic",
  "resize_mode": "squash",
  "size": [378, 378]
}
"#;

/// `generation_config.json` of the real r-v1 folders (eos 32000).
pub const GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 1,
  "eos_token_id": 32000,
  "pad_token_id": 32000
}
"#;
