//! `blip3 quantize` output: a pre-quantised folder loads without
//! `--quantize`, runs no quantisation of its stored weights, and gives exactly
//! the logits and ids of loading the source folder with `--quantize`.

use std::path::PathBuf;

use blip3_engine::prompt::instruct_prompt;
use blip3_engine::{Pipeline, PipelineOptions};
use blip3_model::quantized_folder::write_quantized_folder;
use blip3_model::weights::Quantization;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("blip3-qfolder-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Greedy ids and the last position's logits for the first fixture case.
fn answer(pipeline: &Pipeline) -> (Vec<u32>, Vec<f32>) {
    let dir = fixture();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][0];
    let image = pipeline
        .load_image(&dir.join(case["image"].as_str().unwrap()))
        .unwrap();
    let prompt = instruct_prompt(case["question"].as_str().unwrap(), None);
    let out = pipeline
        .run(std::slice::from_ref(&image), &prompt, 6, true, &mut |_| {})
        .unwrap();
    let logits = out.stages.unwrap().last_logits.to_vec1().unwrap();
    (out.generated_ids, logits)
}

#[test]
fn prequantized_folders_match_load_time_quantization() {
    let src = fixture().join("model");
    for format in [Quantization::Q8_0, Quantization::Q4_0, Quantization::Q4K] {
        let out = scratch(format.name());
        let written = write_quantized_folder(&src, &out, format).unwrap();
        assert!(written.quantized_tensors > 0);
        for file in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
            assert!(out.join(file).exists(), "{file} copied");
        }

        let at_load = Pipeline::load(
            &src,
            &PipelineOptions {
                quantization: Some(format),
                ..Default::default()
            },
        )
        .unwrap();
        let stored = Pipeline::load(&out, &PipelineOptions::default()).unwrap();
        // Q4_K falls back to Q4_0 on the tiny model's rows that are not
        // whole super-blocks; either way the formats equal a load-time run's.
        assert_eq!(
            stored.model().lm().weight_dtype(),
            at_load.model().lm().weight_dtype(),
            "{}",
            format.name()
        );
        assert!(stored.model().lm().weight_dtype().starts_with("q"));
        let (ids_stored, logits_stored) = answer(&stored);
        let (ids_load, logits_load) = answer(&at_load);
        let worst = logits_stored
            .iter()
            .zip(&logits_load)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(
            worst,
            0.0,
            "{}: logits differ by up to {worst}",
            format.name()
        );
        assert_eq!(ids_stored, ids_load, "{}", format.name());

        // The same format again is accepted; another one is named as a conflict.
        let other = match format {
            Quantization::Q8_0 => Quantization::Q4_0,
            Quantization::Q4_0 | Quantization::Q4K => Quantization::Q8_0,
        };
        assert!(Pipeline::load(
            &out,
            &PipelineOptions {
                quantization: Some(format),
                ..Default::default()
            }
        )
        .is_ok());
        let err = Pipeline::load(
            &out,
            &PipelineOptions {
                quantization: Some(other),
                ..Default::default()
            },
        )
        .err()
        .expect("conflicting format refused")
        .to_string();
        assert!(err.contains("pre-quantised"), "{err}");

        // Neither a non-empty output folder nor re-quantising a quantised folder.
        let again = write_quantized_folder(&src, &out, format)
            .unwrap_err()
            .to_string();
        assert!(again.contains("not empty"), "{again}");
        let nested = scratch(&format!("{}-again", format.name()));
        let twice = write_quantized_folder(&out, &nested, format)
            .unwrap_err()
            .to_string();
        assert!(twice.contains("already pre-quantised"), "{twice}");
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&nested);
    }
}

#[test]
fn v15_prequantized_folder_matches_load_time_quantization_on_two_images() {
    // SigLIP and the perceiver (64-wide rows) quantise; the tiny LM's 80-wide
    // rows are not whole blocks and stay dense, in both paths alike.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/xgenmm-v15-tiny");
    let src = dir.join("model");
    let out = scratch("v15-q8_0");
    let written = write_quantized_folder(&src, &out, Quantization::Q8_0).unwrap();
    assert!(written.quantized_tensors > 0);
    let run = |p: &Pipeline| {
        let images: Vec<_> = ["a", "b"]
            .iter()
            .map(|s| {
                p.load_image(&dir.join(format!("images/v5_two_wide3_420x130_small_40x25_{s}.png")))
                    .unwrap()
            })
            .collect();
        let prompt = p.chat_prompt("What is different between the two images?", None, 2);
        let out = p.run(&images, &prompt, 4, true, &mut |_| {}).unwrap();
        let logits: Vec<f32> = out.stages.unwrap().last_logits.to_vec1().unwrap();
        (out.generated_ids, logits)
    };
    let stored = Pipeline::load(&out, &PipelineOptions::default()).unwrap();
    let at_load = Pipeline::load(
        &src,
        &PipelineOptions {
            quantization: Some(Quantization::Q8_0),
            ..Default::default()
        },
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(run(&stored), run(&at_load));
}
