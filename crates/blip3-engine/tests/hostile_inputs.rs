//! The stable counterpart of the cargo-fuzz targets in `fuzz/` (which need
//! nightly): the committed corpus of each target, and a few hundred
//! deterministic mutations of every entry (bit flips, cuts, inserted and
//! repeated bytes), go through the same calls. None may panic; bad input is
//! an error value.

use std::path::{Path, PathBuf};

use blip3_model::config::ModelConfig;
use blip3_model::weights::{WeightDtype, WeightStore};
use blip3_preprocess::{AspectMode, ImageProcessor, ProcessorConfig};
use blip3_tokenizer::{MarkedText, TextKind, Tokenizer};
use candle_core::Device;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Corpus entries that also get mutated (spread over the corpus), so the
/// test's time stays bounded however large the committed corpus grows.
const MUTATED_SEEDS: usize = 24;

/// Every corpus entry of `target`, and `mutations` mutations of each of up
/// to [`MUTATED_SEEDS`] of them.
fn inputs(target: &str, mutations: usize) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    seeds.sort();
    let mut out = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    let every = seeds.len().div_ceil(MUTATED_SEEDS).max(1);
    for (index, path) in seeds.iter().enumerate() {
        let seed = std::fs::read(path).unwrap();
        out.push(seed.clone());
        if index % every != 0 {
            continue;
        }
        for _ in 0..mutations {
            let mut m = seed.clone();
            for _ in 0..1 + next(4) {
                match next(5) {
                    0 if !m.is_empty() => {
                        let i = next(m.len());
                        m[i] ^= 1 << next(8);
                    }
                    1 => m.truncate(next(m.len() + 1)),
                    2 => {
                        let i = next(m.len() + 1);
                        m.insert(i, next(256) as u8);
                    }
                    3 if !m.is_empty() => {
                        let i = next(m.len());
                        m[i] = [0, 0xff, b'"', b'<', b'{'][next(5)];
                    }
                    _ => {
                        let (a, b) = (next(m.len() + 1), next(m.len() + 1));
                        let (a, b) = (a.min(b), a.max(b));
                        let piece = m[a..b].to_vec();
                        m.splice(a..a, piece);
                    }
                }
            }
            out.push(m);
        }
    }
    out
}

#[test]
fn image_bytes_decode_or_fail_cleanly() {
    let config = ProcessorConfig::from_file(
        &repo().join("testdata/blip3-tiny/model/preprocessor_config.json"),
    )
    .unwrap();
    let processor = ImageProcessor::new(&config)
        .unwrap()
        .with_pinpoints(vec![(42, 84), (84, 42), (84, 84)])
        .unwrap();
    for data in inputs("image_decode", 150) {
        if let Ok(image) = blip3_preprocess::decode::decode_bytes(&data, 1 << 16) {
            for aspect in [AspectMode::Anyres, AspectMode::Pad] {
                let p = processor.process(&image, aspect);
                assert_eq!(
                    p.pixel_values.len(),
                    p.num_crops * 3 * p.crop_size * p.crop_size
                );
            }
        }
    }
}

#[test]
fn configs_and_checkpoints_load_or_fail_cleanly() {
    let dir = std::env::temp_dir().join(format!("blip3-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for data in inputs("checkpoint_and_config", 120) {
        let Some((&which, rest)) = data.split_first() else {
            continue;
        };
        match which % 3 {
            0 => {
                std::fs::write(dir.join("config.json"), rest).unwrap();
                let _ = ModelConfig::from_file(&dir.join("config.json"));
            }
            1 => {
                let path = dir.join("preprocessor_config.json");
                std::fs::write(&path, rest).unwrap();
                let _ = ProcessorConfig::from_file(&path);
            }
            _ => {
                std::fs::write(dir.join("model.safetensors"), rest).unwrap();
                let Ok(store) = WeightStore::open(&dir, &Device::Cpu, WeightDtype::Bf16) else {
                    continue;
                };
                let Ok((_, header)) = safetensors::SafeTensors::read_metadata(rest) else {
                    continue;
                };
                for (name, info) in header.tensors() {
                    let _ = store.f32(&name, &info.shape);
                    let _ = store.matrix(&name, &info.shape);
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn any_text_tokenizes_and_decodes() {
    let t = Tokenizer::from_dir(&repo().join("testdata/phi3-tokenizer")).unwrap();
    for data in inputs("tokenizer", 150) {
        let text = String::from_utf8_lossy(&data);
        let mut marked = MarkedText::new();
        marked.template("<|user|>\n");
        marked.plain(&text);
        marked.template("<|end|>\n");
        marked.push(TextKind::Raw, &text);
        // The server's length bound: in plain text (no added token
        // recognised, so no whitespace stripped next to one) every byte is
        // covered by ids. Next to a recognised token whitespace may vanish
        // (the `rstrip` flags), which only makes the bound refuse early.
        let plain = t.encode_marked(&MarkedText::of(TextKind::Plain, &text), false);
        assert!(plain.len() * t.max_token_bytes() >= text.len(), "{text:?}");
        for ids in [
            t.encode(&text, true),
            t.encode_marked(&marked, false),
            plain,
        ] {
            let _ = t.decode(&ids, false);
            let _ = t.decode_answer(&ids);
        }
    }
}

#[test]
fn corpus_is_in_the_repository() {
    for target in [
        "image_decode",
        "checkpoint_and_config",
        "tokenizer",
        "chat_request",
    ] {
        assert!(
            Path::new(&repo().join("fuzz/corpus").join(target)).is_dir(),
            "{target}"
        );
    }
}
