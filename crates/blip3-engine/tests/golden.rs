//! Parity with the Python reference on the bundled tiny model: every golden case
//! of `testdata/blip3-tiny` must pass the fixture's tolerance rule for every
//! tensor (debug ones included), with identical `input_ids` and `generated_ids`.

use std::path::{Path, PathBuf};

use blip3_engine::parity::{compare, write_dump, DumpInfo, FIXTURE_REL_TOL};
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
        .run(&image, &prompt, max_new, true, &mut |_| {})
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
