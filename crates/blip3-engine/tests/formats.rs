//! Deviation caused by lower-precision weight formats on the fixture cases of
//! both families (r-v1 and v1.5, two-image cases included):
//! `last_logits` max |Δ| against the F32 reference goldens and greedy-id
//! agreement. Run with `--nocapture` to print the table used in BENCHMARKS.md.

use std::path::PathBuf;

use blip3_engine::parity::read_f32;
use blip3_engine::{Pipeline, PipelineOptions};
use blip3_model::weights::{Quantization, WeightDtype};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// A case's images: `"images": [...]` (v1.5 fixture) or `"image"` (r-v1).
fn case_images(case: &serde_json::Value) -> Vec<String> {
    match case["images"].as_array() {
        Some(list) => list
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        None => vec![case["image"].as_str().unwrap().to_string()],
    }
}

struct Deviation {
    worst_logit_abs: f32,
    worst_logit_rel: f32,
    ids_agree: usize,
    ids_total: usize,
}

fn deviation(fixture_name: &str, options: PipelineOptions) -> Deviation {
    let dir = fixture(fixture_name);
    let pipeline = Pipeline::load(&dir.join("model"), &options).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let mut dev = Deviation {
        worst_logit_abs: 0.0,
        worst_logit_rel: 0.0,
        ids_agree: 0,
        ids_total: 0,
    };
    for case in cases["cases"].as_array().unwrap() {
        let images: Vec<_> = case_images(case)
            .iter()
            .map(|f| pipeline.load_image(&dir.join(f)).unwrap())
            .collect();
        let prompt = pipeline.chat_prompt(case["question"].as_str().unwrap(), None, images.len());
        let max_new = case["max_new_tokens"].as_u64().unwrap() as usize;
        let out = pipeline
            .run(&images, &prompt, max_new, true, &mut |_| {})
            .unwrap();
        let logits: Vec<f32> = out.stages.unwrap().last_logits.to_vec1().unwrap();
        let golden = std::fs::read(dir.join(case["golden"].as_str().unwrap())).unwrap();
        let golden = safetensors::SafeTensors::deserialize(&golden).unwrap();
        let gl = read_f32(&golden.tensor("last_logits").unwrap()).unwrap();
        let peak = gl.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = logits
            .iter()
            .zip(&gl)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        dev.worst_logit_abs = dev.worst_logit_abs.max(worst);
        dev.worst_logit_rel = dev.worst_logit_rel.max(worst / peak);
        let expected: Vec<u32> = case["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        // Greedy agreement: length of the common prefix (later ids depend on earlier ones).
        let agree = expected
            .iter()
            .zip(&out.generated_ids)
            .take_while(|(a, b)| a == b)
            .count();
        dev.ids_agree += agree;
        dev.ids_total += expected.len();
    }
    dev
}

#[test]
fn weight_formats_stay_within_their_documented_deviation() {
    let formats: [(&str, PipelineOptions, f32); 5] = [
        ("f32", PipelineOptions::default(), 1e-3),
        (
            "bf16",
            PipelineOptions {
                weight_dtype: WeightDtype::Bf16,
                ..Default::default()
            },
            2e-2,
        ),
        (
            "q8_0",
            PipelineOptions {
                quantization: Some(Quantization::Q8_0),
                ..Default::default()
            },
            3e-2,
        ),
        (
            "q4_0",
            PipelineOptions {
                quantization: Some(Quantization::Q4_0),
                ..Default::default()
            },
            // 4-bit codes: ~17x the Q8_0 step; the tiny model's 64-wide rows
            // average over few blocks.
            3e-1,
        ),
        (
            "q4_k",
            PipelineOptions {
                quantization: Some(Quantization::Q4K),
                ..Default::default()
            },
            // Only the tiny model's 256-wide rows are whole Q4_K super-blocks;
            // the rest fall back to Q4_0.
            3e-1,
        ),
    ];
    println!(
        "| model | weights | last_logits max abs err | max err / peak | greedy ids agreeing (prefix) |"
    );
    println!("|---|---|---|---|---|");
    for ((name, options, bound), fixture_name) in formats
        .iter()
        .flat_map(|f| ["blip3-tiny", "xgenmm-v15-tiny"].map(|fx| (f.clone(), fx)))
    {
        let d = deviation(fixture_name, options);
        println!(
            "| {fixture_name} | {name} | {:.2e} | {:.2e} | {}/{} |",
            d.worst_logit_abs, d.worst_logit_rel, d.ids_agree, d.ids_total
        );
        assert!(
            d.worst_logit_rel <= bound,
            "{name}: {} > {bound}",
            d.worst_logit_rel
        );
        if name == "f32" {
            assert_eq!(d.ids_agree, d.ids_total);
        }
    }
}
