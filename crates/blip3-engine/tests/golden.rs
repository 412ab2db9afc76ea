//! Parity with the Python reference on the bundled tiny model: every golden case
//! of `testdata/blip3-tiny` must pass the fixture's tolerance rule for every
//! tensor (debug ones included), with identical `input_ids` and `generated_ids`.

use std::path::{Path, PathBuf};

use blip3_engine::parity::{compare, read_f32, write_dump, DumpInfo, FIXTURE_REL_TOL};
use blip3_engine::prompt::instruct_prompt;
use blip3_engine::{Pipeline, PipelineOptions};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/blip3-tiny")
}

fn run_case(pipeline: &Pipeline, case: &serde_json::Value, out_dir: &Path) -> Vec<String> {
    let dir = fixture();
    let id = case["id"].as_str().unwrap();
    let question = case["question"].as_str().unwrap();
    let max_new = case["max_new_tokens"].as_u64().unwrap() as usize;
    let image = pipeline
        .load_image(&dir.join(case["image"].as_str().unwrap()))
        .unwrap();
    let prompt = instruct_prompt(question, None);
    let output = pipeline
        .run(
            std::slice::from_ref(&image),
            &prompt,
            max_new,
            true,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(
        output.stop_reason.label(),
        case["stop_reason"].as_str().unwrap(),
        "{id}"
    );
    let expected_ids: Vec<u32> = case["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(output.generated_ids, expected_ids, "{id}: generated ids");
    let out = out_dir.join(format!("{id}.safetensors"));
    write_dump(&out, &output, &DumpInfo::default()).unwrap();
    let golden = std::fs::read(dir.join(case["golden"].as_str().unwrap())).unwrap();
    let reports = compare(&std::fs::read(&out).unwrap(), &golden, FIXTURE_REL_TOL).unwrap();
    for r in &reports {
        eprintln!(
            "{id} {:<20} max_abs {:.2e} limit {:.2e}",
            r.name, r.max_abs, r.limit
        );
    }
    assert!(
        reports.len() >= 9,
        "{id}: every golden tensor, debug ones included, was compared"
    );
    reports
        .iter()
        .filter(|r| !r.pass)
        .map(|r| {
            format!(
                "{id}: {} max_abs {:.3e} > {:.3e} {}",
                r.name, r.max_abs, r.limit, r.note
            )
        })
        .collect()
}

#[test]
fn all_golden_cases_match_the_reference() {
    let dir = fixture();
    let pipeline = Pipeline::load(&dir.join("model"), &PipelineOptions::default()).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let out_dir = std::env::temp_dir().join(format!("blip3-golden-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let failures: Vec<String> = cases
        .iter()
        .flat_map(|case| run_case(&pipeline, case, &out_dir))
        .collect();
    std::fs::remove_dir_all(&out_dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pad_mode_uses_one_squashed_crop() {
    // "pad" (the processor default without anyres): one global squash, Q tokens.
    use blip3_preprocess::AspectMode;
    let dir = fixture();
    let options = PipelineOptions {
        aspect: Some(AspectMode::Pad),
        ..Default::default()
    };
    let pipeline = Pipeline::load(&dir.join("model"), &options).unwrap();
    let image = pipeline
        .load_image(&dir.join("images/v2_grid2x2_100x90.png"))
        .unwrap();
    let prompt = instruct_prompt("What is shown in this image?", None);
    let out = pipeline
        .run(std::slice::from_ref(&image), &prompt, 1, true, &mut |_| {})
        .unwrap();
    let stages = out.stages.unwrap();
    assert_eq!(stages.pixel_values.dims(), &[1, 3, 42, 42]);
    assert_eq!(stages.vision_tokens.dims(), &[8, 96]);
    assert_eq!(stages.inputs_embeds.dims(), &[46 - 1 + 8, 96]);
    // The single crop is the anyres global crop, so it equals golden crop 0 exactly,
    // and the perceiver output equals the golden's first 8 visual tokens.
    let golden = std::fs::read(dir.join("golden/v2_grid2x2_100x90__q0.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden).unwrap();
    let floats = |name: &str| read_f32(&golden.tensor(name).unwrap()).unwrap();
    let pv: Vec<f32> = stages
        .pixel_values
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(pv, floats("pixel_values")[..3 * 42 * 42].to_vec());
    let vt: Vec<f32> = stages
        .vision_tokens
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let gvt = floats("vision_tokens");
    let worst = vt
        .iter()
        .zip(&gvt[..8 * 96])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "global-crop visual tokens differ by {worst}");
}

#[test]
fn cached_decode_steps_equal_a_full_prefill() {
    // The decode path (in-place cache attention kernel) must give the same
    // hidden states as running the whole sequence through the masked prefill.
    use blip3_model::weights::WeightDtype;
    use blip3_model::VisionLanguageModel;
    for window in [Some(2047), Some(8)] {
        let dir = fixture().join("model");
        let mut config = blip3_model::ModelConfig::from_file(&dir.join("config.json")).unwrap();
        // A short window exercises the band (keys i − W … i) in both paths.
        config.text_config.sliding_window = window;
        let store =
            blip3_model::WeightStore::open(&dir, &candle_core::Device::Cpu, WeightDtype::AsStored)
                .unwrap();
        let model = VisionLanguageModel::from_store(config, &store).unwrap();
        check_decode_matches_prefill(&model);
    }
}

#[test]
fn cached_decode_past_the_2047_window_equals_a_full_recompute() {
    // Base 8-shot prompts with placeholders reach ~2.3 k positions: past the
    // real sliding window (2047) the cached decode path must still agree with
    // recomputing the whole sequence, and the window must actually bite.
    let dir = fixture().join("model");
    let pipeline = blip3_engine::Pipeline::load(&dir, &Default::default()).unwrap();
    let model = pipeline.model();
    assert_eq!(model.lm().config().sliding_window, Some(2047));
    let ids = check_decode_matches_prefill_at(model, 2110, 10);
    // The same positions without a window give other hidden states.
    let mut config = model.config().clone();
    config.text_config.sliding_window = None;
    let store = blip3_model::WeightStore::open(&dir, &candle_core::Device::Cpu, Default::default())
        .unwrap();
    let unwindowed = blip3_model::VisionLanguageModel::from_store(config, &store).unwrap();
    let last = |m: &blip3_model::VisionLanguageModel| -> Vec<f32> {
        let lm = m.lm();
        let embeds = lm.embed(&ids).unwrap();
        let h = lm.forward(&embeds, &mut lm.new_cache()).unwrap();
        h.narrow(0, ids.len() - 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (a, b) = (last(model), last(&unwindowed));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        diff > 1e-4,
        "the window changed nothing at position 2109 ({diff})"
    );
}

fn check_decode_matches_prefill(model: &blip3_model::VisionLanguageModel) {
    check_decode_matches_prefill_at(model, 45, 5);
}

/// Prefills `len − steps` positions, decodes `steps` one by one and compares
/// each with the full sequence's forward pass; returns the ids used.
fn check_decode_matches_prefill_at(
    model: &blip3_model::VisionLanguageModel,
    len: usize,
    steps: usize,
) -> Vec<u32> {
    let lm = model.lm();
    let ids: Vec<u32> = (0..len as u32 - 3)
        .map(|i| 100 + (37 * i) % 31000)
        .chain([32012, 32007, 5])
        .collect();
    let embeds = lm.embed(&ids).unwrap();
    let mut full = lm.new_cache();
    let all = lm.forward(&embeds, &mut full).unwrap();
    let mut cache = lm.new_cache();
    let prefix = ids.len() - steps;
    lm.forward(&embeds.narrow(0, 0, prefix).unwrap(), &mut cache)
        .unwrap();
    for step in prefix..ids.len() {
        let h = lm
            .forward(&embeds.narrow(0, step, 1).unwrap(), &mut cache)
            .unwrap();
        let want: Vec<f32> = all
            .narrow(0, step, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let got: Vec<f32> = h.flatten_all().unwrap().to_vec1().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "step {step}: {worst}");
    }
    ids
}
