//! Files of the real instruct r-v1 folder that are not weights, for
//! `init-random --preset full`: config (spec §2.1), preprocessor and generation
//! configs, and the Phi-3 tokenizer files (from the bundled tokenizer fixture).

/// `config.json` as in the init-release HF repo, with `torch_dtype` set by the caller.
pub fn full_config_json(torch_dtype: &str) -> String {
    let value = serde_json::json!({
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
    });
    serde_json::to_string_pretty(&value).expect("static JSON serialises")
}

/// `preprocessor_config.json` of the real model.
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

/// `generation_config.json` of the real model.
pub const GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 1,
  "eos_token_id": 32000,
  "pad_token_id": 32000
}
"#;

/// Tokenizer files (name, bytes).
pub const TOKENIZER_FILES: [(&str, &[u8]); 5] = [
    (
        "tokenizer.model",
        include_bytes!("../../../testdata/phi3-tokenizer/tokenizer.model"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../../testdata/phi3-tokenizer/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_bytes!("../../../testdata/phi3-tokenizer/tokenizer_config.json"),
    ),
    (
        "special_tokens_map.json",
        include_bytes!("../../../testdata/phi3-tokenizer/special_tokens_map.json"),
    ),
    (
        "added_tokens.json",
        include_bytes!("../../../testdata/phi3-tokenizer/added_tokens.json"),
    ),
];
