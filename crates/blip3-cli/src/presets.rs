//! Files of a real model folder that are not weights, for `init-random
//! --preset full`: the family's config, preprocessor and generation configs
//! (from the model crate's family folders), and the Phi-3 tokenizer files
//! (from the bundled tokenizer fixture).

use std::path::Path;

use blip3_model::checkpoint::StoreDtype;
use blip3_model::{blip3_r1, xgenmm_v15, Family};

/// `generation_config.json` of the base checkpoints (eos `<|endoftext|>`).
pub const BASE_GENERATION_CONFIG: &str = r#"{
  "bos_token_id": 1,
  "eos_token_id": 32000,
  "pad_token_id": 32000
}
"#;

/// Writes the non-weight files of a real-size folder of `family`.
pub fn write_full_preset(out: &Path, family: Family, dtype: StoreDtype) -> std::io::Result<()> {
    let torch_dtype = match dtype {
        StoreDtype::F32 => "float32",
        StoreDtype::Bf16 => "bfloat16",
    };
    let (config, preprocessor, generation) = match family {
        Family::Blip3R1 => (
            blip3_r1::full_config_json(torch_dtype),
            blip3_r1::PREPROCESSOR_CONFIG,
            blip3_r1::GENERATION_CONFIG,
        ),
        Family::XgenmmV15 => (
            xgenmm_v15::full_config_json(torch_dtype),
            xgenmm_v15::PREPROCESSOR_CONFIG,
            xgenmm_v15::GENERATION_CONFIG,
        ),
    };
    let config = serde_json::to_string_pretty(&config).map_err(std::io::Error::other)?;
    std::fs::write(out.join("config.json"), config)?;
    std::fs::write(out.join("preprocessor_config.json"), preprocessor)?;
    std::fs::write(out.join("generation_config.json"), generation)?;
    for (name, bytes) in TOKENIZER_FILES {
        std::fs::write(out.join(name), bytes)?;
    }
    Ok(())
}

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
