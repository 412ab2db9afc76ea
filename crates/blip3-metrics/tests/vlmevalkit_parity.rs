//! Parity with VLMEvalKit (2024 `ddd6df88` and HEAD `e8e78f05`): goldens recorded by
//! `tools/eval-reference/vlmevalkit_reference.py` from the real VLMEvalKit code on the synthetic
//! sets in `testdata/eval/vlmevalkit/`. Every extracted answer and hit must be equal, and every
//! number in the result tables exactly equal.

use std::path::PathBuf;

use blip3_metrics::choice::can_infer;
use blip3_metrics::mcq::{self, McqOptions};
use blip3_metrics::vlmevalkit::{Rule, ScoreOptions};
use blip3_metrics::vlmevalkit_tsv::{self, Benchmark};
use blip3_metrics::{mmbench, mme, mmmu, parse_predictions, pope, yes_no, Prediction};
use serde_json::Value;

const RULES: [(Rule, &str); 2] = [(Rule::V2024, "2024"), (Rule::Head, "head")];

/// (case, VLMEvalKit dataset key)
const CASES: [(&str, &str); 12] = [
    ("mmbench", "MMBench_DEV_EN"),
    ("seed", "SEEDBench_IMG"),
    ("mmstar", "MMStar"),
    ("ai2d", "AI2D_TEST"),
    ("scienceqa", "ScienceQA_TEST"),
    ("scienceqa_numeric", "ScienceQA_NUMERIC"),
    ("mmmu", "MMMU_DEV_VAL"),
    ("mmbench_numeric", "MMBench_NUMERIC"),
    ("mmmu_numeric", "MMMU_NUMERIC"),
    ("mmstar_bool", "MMStar_BOOL"),
    ("mme", "MME"),
    ("pope", "POPE"),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eval/vlmevalkit")
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn predictions(case: &str) -> Vec<Prediction> {
    let path = data_dir().join(format!("{case}.pred.jsonl"));
    parse_predictions(&std::fs::read_to_string(path).unwrap(), case).unwrap()
}

fn reference(case: &str, key: &str) -> Value {
    let tsv = vlmevalkit_tsv::read_tsv(&data_dir().join(format!("{case}.tsv"))).unwrap();
    vlmevalkit_tsv::build_reference(&tsv, Benchmark::from_dataset_key(key).unwrap()).unwrap()
}

fn score(case: &str, key: &str, rule: Rule) -> Value {
    let preds = predictions(case);
    let reference = reference(case, key);
    let options = ScoreOptions {
        rule,
        raw_predictions: false,
    };
    match Benchmark::from_dataset_key(key).unwrap() {
        Benchmark::Mme => mme::score_json(&preds, &reference, &options),
        Benchmark::Pope => pope::score_json(&preds, &reference, &options),
        Benchmark::MmBench => mmbench::score_json(&preds, &reference, &options),
        Benchmark::Mmmu => mmmu::score_json(&preds, &reference, &options),
        _ => mcq::score_json(&preds, &reference, &McqOptions::for_dataset(key, options)),
    }
    .unwrap()
}

/// Equal numbers (or both null), with the path in the message.
fn assert_number(got: &Value, want: &Value, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert_eq!(g, w, "{what}: got {g}, VLMEvalKit {w}"),
        _ => assert_eq!(got, want, "{what}"),
    }
}

fn assert_same_numbers(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_object().unwrap(), want.as_object().unwrap());
    let gk: Vec<&String> = g.keys().collect();
    let wk: Vec<&String> = w.keys().collect();
    assert_eq!(gk, wk, "{what}: columns");
    for (k, v) in w {
        assert_number(&g[k], v, &format!("{what}.{k}"));
    }
}

#[test]
fn can_infer_matches_vlmevalkit_on_adversarial_strings() {
    let cases = read_json("can_infer.cases.json");
    let golden = read_json("can_infer.golden.json");
    let cases = cases.as_array().unwrap();
    let mut differing = 0;
    for (rule, name) in RULES {
        let want = golden[name].as_array().unwrap();
        assert_eq!(want.len(), cases.len());
        for (case, want) in cases.iter().zip(want) {
            let prediction = case["prediction"].as_str().unwrap();
            let choices: Vec<(char, String)> = case["choices"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.chars().next().unwrap(), v.as_str().unwrap().to_string()))
                .collect();
            let got = can_infer(prediction, &choices, rule).map(|c| c.to_string());
            assert_eq!(
                got.as_deref(),
                want.as_str(),
                "{name}: can_infer({prediction:?}, {choices:?})"
            );
        }
    }
    for (a, b) in golden["2024"]
        .as_array()
        .unwrap()
        .iter()
        .zip(golden["head"].as_array().unwrap())
    {
        differing += usize::from(a != b);
    }
    assert!(cases.len() >= 1000 && differing >= 100, "{differing}");
}

#[test]
fn yes_no_extraction_matches_vlmevalkit() {
    let cases = read_json("yes_no.cases.json");
    let golden = read_json("yes_no.golden.json");
    for (rule, name) in RULES {
        for (text, want) in cases
            .as_array()
            .unwrap()
            .iter()
            .zip(golden[name].as_array().unwrap())
        {
            let text = text.as_str().unwrap();
            let lowered = text.to_lowercase();
            assert_eq!(
                yes_no::process_punctuation(&lowered, rule),
                want[1].as_str().unwrap(),
                "{name}: process_punctuation({lowered:?})"
            );
            assert_eq!(
                yes_no::extract(text, rule).as_str(),
                want[0].as_str().unwrap(),
                "{name}: YOrN_Extraction({text:?})"
            );
        }
    }
}

#[test]
fn benchmarks_match_vlmevalkit_pipeline() {
    for (case, key) in CASES {
        for (rule, name) in RULES {
            let golden = read_json(&format!("{case}.{name}.golden.json"));
            let out = score(case, key, rule);
            let what = format!("{case} ({name})");
            let want_items = golden["per_id"].as_object().unwrap();
            let got_items = out["per_id"].as_object().unwrap();
            let want_ids: Vec<&String> = want_items.keys().collect();
            let got_ids: Vec<&String> = got_items.keys().collect();
            assert_eq!(got_ids, want_ids, "{what}: item ids");
            for (id, want) in want_items {
                let got = &got_items[id];
                assert_eq!(
                    got["extracted"], want["extracted"],
                    "{what}: item {id} extracted"
                );
                for field in ["hit", "score"] {
                    assert_eq!(got.get(field), want.get(field), "{what}: item {id} {field}");
                }
            }
            let table = golden["table"].as_object().unwrap();
            match golden["kind"].as_str().unwrap() {
                "mcq" => {
                    assert_eq!(out["circular"], golden["circular"], "{what}");
                    assert_eq!(out["mmmu"], golden["mmmu"], "{what}");
                    let got = out["table"].as_object().unwrap();
                    let splits: Vec<&String> = got.keys().collect();
                    assert_eq!(splits, table.keys().collect::<Vec<_>>(), "{what}: splits");
                    for (split, row) in table {
                        assert_same_numbers(&got[split], row, &format!("{what} split {split}"));
                    }
                }
                _ if case == "mme" => {
                    for (k, v) in table {
                        let got = match k.as_str() {
                            "perception" | "reasoning" => &out[k],
                            _ => &out["subtasks"][k],
                        };
                        assert_number(got, v, &format!("{what}.{k}"));
                    }
                    assert_eq!(out["subtasks"].as_object().unwrap().len() + 2, table.len());
                }
                _ => {
                    for (split, row) in table {
                        let got = if split == "Overall" {
                            let mut m = serde_json::Map::new();
                            for k in ["Overall", "acc", "precision", "recall"] {
                                m.insert(k.into(), out[k].clone());
                            }
                            Value::Object(m)
                        } else {
                            out["categories"][split].clone()
                        };
                        assert_same_numbers(&got, row, &format!("{what} split {split:?}"));
                    }
                    assert_eq!(
                        out["categories"].as_object().unwrap().len() + 1,
                        table.len()
                    );
                }
            }
        }
    }
}

#[test]
fn missing_predictions_are_an_error_and_extra_ones_are_ignored() {
    let pope_ref = reference("pope", "POPE");
    let mut preds = predictions("pope");
    preds.push(Prediction {
        id: "999999".into(),
        answer: "Yes".into(),
    });
    let out = pope::score_json(&preds, &pope_ref, &ScoreOptions::default()).unwrap();
    assert_eq!(out["ignored_predictions"], 1);
    preds.retain(|p| p.id != "5" && p.id != "999999");
    let e = pope::score_json(&preds, &pope_ref, &ScoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no prediction") && e.contains('5'), "{e}");
    let e = mmbench::score_json(
        &preds,
        &reference("mmbench", "MMBench_DEV_EN"),
        &ScoreOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no prediction"), "{e}");
}

#[test]
fn bad_tsv_and_wrong_md5_are_errors() {
    let e = vlmevalkit_tsv::parse_tsv("index\tanswer\n1\t\"A\n", "bad.tsv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.tsv") && e.contains("quoted"), "{e}");
    let e = vlmevalkit_tsv::parse_tsv("index\tanswer\n1\tA\tB\n", "bad.tsv")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    let tsv = vlmevalkit_tsv::parse_tsv("index\tquestion\n1\tq\n", "t").unwrap();
    assert!(vlmevalkit_tsv::build_reference(&tsv, Benchmark::Seed).is_err());
    let bytes = std::fs::read(data_dir().join("mme.tsv")).unwrap();
    let e = vlmevalkit_tsv::check_md5("MME", &bytes)
        .unwrap_err()
        .to_string();
    assert!(e.contains("b36b43c3f09801f5d368627fb92187c3"), "{e}");
    assert!(!vlmevalkit_tsv::check_md5("ScienceQA_NUMERIC", &bytes).unwrap());
}

#[test]
fn tsv_images_resolve_and_decode_as_png() {
    for case in ["mmbench", "seed", "mmmu", "mme", "pope"] {
        let tsv = vlmevalkit_tsv::read_tsv(&data_dir().join(format!("{case}.tsv"))).unwrap();
        let images = tsv.images().unwrap();
        assert!(!images.ids().is_empty());
        for id in images.ids() {
            for bytes in images.bytes(id).unwrap() {
                assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{case} {id}");
            }
        }
    }
    let tsv = vlmevalkit_tsv::read_tsv(&data_dir().join("mmmu.tsv")).unwrap();
    assert_eq!(tsv.image_bytes("10001").unwrap().len(), 2);
    assert_eq!(tsv.image_bytes("10040").unwrap().len(), 2);
}
