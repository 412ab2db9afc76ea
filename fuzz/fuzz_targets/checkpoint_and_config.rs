//! A model folder from disk: `config.json`, `preprocessor_config.json` and
//! a safetensors file built from the input, then every tensor read back as
//! the loader reads weights. First byte picks which file the rest becomes.
#![no_main]

use blip3_model::config::ModelConfig;
use blip3_model::weights::{WeightDtype, WeightStore};
use blip3_preprocess::ProcessorConfig;
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("blip3-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let dir = scratch();
    match which % 3 {
        0 => {
            let path = dir.join("config.json");
            if std::fs::write(&path, rest).is_ok() {
                let _ = ModelConfig::from_file(&path);
            }
        }
        1 => {
            let path = dir.join("preprocessor_config.json");
            if std::fs::write(&path, rest).is_ok() {
                let _ = ProcessorConfig::from_file(&path);
            }
        }
        _ => {
            let _ = std::fs::remove_file(dir.join("model.safetensors.index.json"));
            if std::fs::write(dir.join("model.safetensors"), rest).is_err() {
                return;
            }
            let Ok(store) = WeightStore::open(dir, &Device::Cpu, WeightDtype::Bf16) else { return };
            let Ok((_, header)) = safetensors::SafeTensors::read_metadata(rest) else { return };
            for (name, info) in header.tensors() {
                let _ = store.f32(&name, &info.shape);
                let _ = store.matrix(&name, &info.shape);
            }
        }
    }
});
