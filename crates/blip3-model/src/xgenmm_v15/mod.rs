//! xGen-MM v1.5 (`xgen-mm-phi3-mini-*-r-v1.5`): the SigLIP so400m-patch14-384
//! tower, its hard-coded configuration and its checkpoint keys (family spec §2).
//!
//! The perceiver is the shared one with the anyres padding mask and no text
//! queries; the language model is the shared Phi-3.

mod siglip;

pub use siglip::SiglipVisionTransformer;

use crate::checkpoint::{TensorSpec, NORM, WEIGHT};
use crate::config::{VisionCfg, VisionEncoderConfig};

/// `vision_encoder_config.model_name` of v1.5.
pub const TOWER_NAME: &str = "google/siglip-so400m-patch14-384";

/// `google/siglip-so400m-patch14-384`'s vision config, which the xGen-MM
/// config does not repeat (family spec §2.2).
pub fn so400m_patch14_384() -> VisionCfg {
    VisionCfg {
        image_size: 384,
        patch_size: 14,
        width: 1152,
        layers: 27,
        heads: 16,
        mlp_width: 4304,
        layer_norm_eps: 1e-6,
    }
}

/// `SiglipVisionConfig` fields of the fixture override.
#[derive(serde::Deserialize)]
struct SiglipCfg {
    image_size: usize,
    patch_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}

fn default_eps() -> f64 {
    1e-6
}

/// The tower sizes of a v1.5 config: the `vision_cfg` override or so400m.
pub fn vision_cfg(encoder: &VisionEncoderConfig) -> Result<VisionCfg, String> {
    let Some(raw) = &encoder.vision_cfg else {
        return Ok(so400m_patch14_384());
    };
    let c: SiglipCfg = serde_json::from_value(raw.clone())
        .map_err(|e| format!("vision_encoder_config.vision_cfg (SigLIP fields): {e}"))?;
    if c.hidden_act != "gelu_pytorch_tanh" {
        return Err(format!(
            "vision_encoder_config.vision_cfg.hidden_act is {:?}; SigLIP uses \"gelu_pytorch_tanh\"",
            c.hidden_act
        ));
    }
    Ok(VisionCfg {
        image_size: c.image_size,
        patch_size: c.patch_size,
        width: c.hidden_size,
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        mlp_width: c.intermediate_size,
        layer_norm_eps: c.layer_norm_eps,
    })
}

/// The SigLIP tower's keys under `vlm.vision_encoder`, the unused pooling
/// head (11 tensors) included, as the real checkpoint holds it.
pub fn vision_specs(v: &VisionCfg) -> Vec<TensorSpec> {
    let ve = "vlm.vision_encoder";
    let (c, p, g, mlp) = (v.width, v.patch_size, v.grid(), v.mlp_width);
    let mut out = vec![
        TensorSpec::new(
            format!("{ve}.embeddings.patch_embedding.weight"),
            &[c, 3, p, p],
            WEIGHT,
        ),
        TensorSpec::new(
            format!("{ve}.embeddings.patch_embedding.bias"),
            &[c],
            WEIGHT,
        ),
        TensorSpec::new(
            format!("{ve}.embeddings.position_embedding.weight"),
            &[g * g, c],
            WEIGHT,
        ),
    ];
    for i in 0..v.layers {
        let b = format!("{ve}.encoder.layers.{i}");
        for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            out.push(TensorSpec::new(
                format!("{b}.self_attn.{proj}.weight"),
                &[c, c],
                WEIGHT,
            ));
            out.push(TensorSpec::new(
                format!("{b}.self_attn.{proj}.bias"),
                &[c],
                WEIGHT,
            ));
        }
        out.push(TensorSpec::new(
            format!("{b}.layer_norm1.weight"),
            &[c],
            NORM,
        ));
        out.push(TensorSpec::new(
            format!("{b}.layer_norm1.bias"),
            &[c],
            WEIGHT,
        ));
        out.push(TensorSpec::new(
            format!("{b}.mlp.fc1.weight"),
            &[mlp, c],
            WEIGHT,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.fc1.bias"), &[mlp], WEIGHT));
        out.push(TensorSpec::new(
            format!("{b}.mlp.fc2.weight"),
            &[c, mlp],
            WEIGHT,
        ));
        out.push(TensorSpec::new(format!("{b}.mlp.fc2.bias"), &[c], WEIGHT));
        out.push(TensorSpec::new(
            format!("{b}.layer_norm2.weight"),
            &[c],
            NORM,
        ));
        out.push(TensorSpec::new(
            format!("{b}.layer_norm2.bias"),
            &[c],
            WEIGHT,
        ));
    }
    out.push(TensorSpec::new(
        format!("{ve}.post_layernorm.weight"),
        &[c],
        NORM,
    ));
    out.push(TensorSpec::new(
        format!("{ve}.post_layernorm.bias"),
        &[c],
        WEIGHT,
    ));
    // The attention-pooling head: in the checkpoint, never used by xGen-MM.
    let h = format!("{ve}.head");
    out.extend([
        TensorSpec::new(format!("{h}.probe"), &[1, 1, c], WEIGHT),
        TensorSpec::new(format!("{h}.attention.in_proj_weight"), &[3 * c, c], WEIGHT),
        TensorSpec::new(format!("{h}.attention.in_proj_bias"), &[3 * c], WEIGHT),
        TensorSpec::new(format!("{h}.attention.out_proj.weight"), &[c, c], WEIGHT),
        TensorSpec::new(format!("{h}.attention.out_proj.bias"), &[c], WEIGHT),
        TensorSpec::new(format!("{h}.layernorm.weight"), &[c], NORM),
        TensorSpec::new(format!("{h}.layernorm.bias"), &[c], WEIGHT),
        TensorSpec::new(format!("{h}.mlp.fc1.weight"), &[mlp, c], WEIGHT),
        TensorSpec::new(format!("{h}.mlp.fc1.bias"), &[mlp], WEIGHT),
        TensorSpec::new(format!("{h}.mlp.fc2.weight"), &[c, mlp], WEIGHT),
        TensorSpec::new(format!("{h}.mlp.fc2.bias"), &[c], WEIGHT),
    ]);
    out
}

/// `config.json` of a real v1.5 folder (instruct layout), with `torch_dtype`
/// set by the caller.
pub fn full_config_json(torch_dtype: &str) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["XGenMMModelForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": "configuration_xgenmm.XGenMMConfig",
            "AutoModelForVision2Seq": "modeling_xgenmm.XGenMMModelForConditionalGeneration"
        },
        "model_type": "xgenmm",
        "torch_dtype": torch_dtype,
        "transformers_version": "4.41.2",
        "vision_encoder_config": {
            "model_type": "xgenmm_vision_encoder",
            "model_name": TOWER_NAME,
            "anyres_grids": [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]],
            "image_aspect_ratio": "anyres",
            "anyres_patch_sampling": true
        },
        "vision_tokenizer_config": {
            "model_type": "xgenmm_vision_tokenizer",
            "vis_feature_dim": 1152,
            "lang_embedding_dim": 3072,
            "num_vis_tokens": 128,
            "image_aspect_ratio": "anyres"
        },
        "text_config": {
            "model_type": "phi3",
            "initial_tokenizer_len": 32012,
            "sliding_window": 2047,
            "torch_dtype": "bfloat16"
        }
    })
}

/// `preprocessor_config.json` of a real v1.5 instruct folder (384, mean = std = 0.5).
pub const PREPROCESSOR_CONFIG: &str = r#"{
  "auto_map": {
    "AutoImageProcessor": "image_processing_blip_3.Blip3ImageProcessor"
  },
  "do_resize": true,
  "grids": [[1, 2], [2, 1], [2, 2], [3, 1], [1, 3]],
  "image_mean": [0.5, 0.5, 0.5],
  "image_processor_type": "Blip3ImageProcessor",
  "image_std": [0.5, 0.5, 0.5],
  "interpolation_mode": "bicubic",
  "resize_mode": "squash",
  "size": [384, 384]
}
"#;

/// `generation_config.json` of the v1.5 instruct folders (eos `<|end|>`).
pub const GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 1,
  "eos_token_id": 32007,
  "pad_token_id": 32000
}
"#;
