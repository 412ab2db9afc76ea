//! Parity of the PTB tokenizer port and CIDEr-D with pycocoevalcap 1.2, against the goldens
//! that `tools/eval-reference/cider_reference.py` wrote under `testdata/eval/cider/`.

use std::path::PathBuf;

use blip3_metrics::cider::{cider_d, score_json, CiderInput};
use blip3_metrics::{parse_predictions, ptb, MetricsError, Prediction};
use serde_json::{json, Value};

const SETS: [&str; 5] = ["spec3", "coco_like", "no_overlap", "duplicates", "single"];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/eval/cider")
}

fn read_json(name: &str) -> Value {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn read_set(name: &str) -> (Vec<Prediction>, Value) {
    let path = data_dir().join(format!("{name}.preds.jsonl"));
    let preds = parse_predictions(&std::fs::read_to_string(&path).unwrap(), name).unwrap();
    (preds, read_json(&format!("{name}.refs.json")))
}

#[test]
fn ptb_tokenisation_matches_the_jar_for_every_probe() {
    let golden = read_json("ptb_cases.golden.json");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let inputs: Vec<&str> = cases.iter().map(|c| c["input"].as_str().unwrap()).collect();
    // One batch, as the golden was produced: later cases see earlier ones' line breaks.
    let got = ptb::tokenize_batch(&inputs);
    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(&got) {
        let want = case["tokens"].as_str().unwrap();
        if got != want {
            failures.push(format!("{:?}: want {want:?}, got {got:?}", case["input"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn tokenised_captions_match_for_every_set() {
    for name in SETS {
        let golden = read_json(&format!("{name}.golden.json"));
        let (preds, refs) = read_set(name);
        let items = golden["items"].as_array().unwrap();
        let candidates: Vec<&str> = preds.iter().map(|p| p.answer.as_str()).collect();
        let references: Vec<Vec<&str>> = preds
            .iter()
            .map(|p| {
                refs[&p.id]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect()
            })
            .collect();
        let cand_tok = ptb::tokenize_batch(&candidates);
        let ref_tok = ptb::tokenize_groups(&references);
        for (k, item) in items.iter().enumerate() {
            assert_eq!(item["id"].as_str().unwrap(), preds[k].id, "{name}: order");
            assert_eq!(
                cand_tok[k],
                item["candidate"].as_str().unwrap(),
                "{name} {k}"
            );
            let want: Vec<&str> = item["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(ref_tok[k], want, "{name} {k}");
        }
    }
}

#[test]
fn cider_scores_match_within_1e9() {
    for name in SETS {
        let golden = read_json(&format!("{name}.golden.json"));
        let (preds, refs) = read_set(name);
        let out = score_json(&preds, &refs).unwrap();
        let corpus = out["CIDEr"].as_f64().unwrap();
        let want = golden["CIDEr"].as_f64().unwrap();
        assert!(
            (corpus - want).abs() <= 1e-9,
            "{name}: corpus {corpus} vs {want}"
        );
        assert_eq!(out["images"], golden["images"], "{name}");
        for item in golden["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            let got = out["per_id"][id].as_f64().unwrap();
            let want = item["score"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-9, "{name} {id}: {got} vs {want}");
        }

        // The same numbers from the golden's own tokenised strings.
        let items: Vec<CiderInput> = golden["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| CiderInput {
                candidate: it["candidate"].as_str().unwrap().to_string(),
                references: it["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
            })
            .collect();
        let scores = cider_d(&items).unwrap();
        assert!(
            (scores.corpus - want_corpus(&golden)).abs() <= 1e-9,
            "{name}"
        );
    }
}

fn want_corpus(golden: &Value) -> f64 {
    golden["CIDEr"].as_f64().unwrap()
}

#[test]
fn spec_golden_numbers() {
    let (preds, refs) = read_set("spec3");
    let out = score_json(&preds, &refs).unwrap();
    assert!((out["CIDEr"].as_f64().unwrap() - 1.067975463680568).abs() <= 1e-12);
    for (id, want) in [("1", 1.06803769), ("2", 0.43125592), ("3", 1.70463278)] {
        assert!((out["per_id"][id].as_f64().unwrap() - want).abs() < 1e-8);
    }
}

fn pred(id: &str, answer: &str) -> Prediction {
    Prediction {
        id: id.into(),
        answer: answer.into(),
    }
}

#[test]
fn refuses_inconsistent_inputs() {
    let refs = json!({"1": ["a dog"], "2": ["a cat"]});
    let e = score_json(&[pred("1", "a dog")], &refs).unwrap_err();
    assert!(
        matches!(e, MetricsError::Mismatch(_)) && e.to_string().contains('2'),
        "{e}"
    );
    let e = score_json(&[pred("1", "x"), pred("2", "y"), pred("3", "z")], &refs).unwrap_err();
    assert!(e.to_string().contains("3"), "{e}");
    let e = score_json(&[pred("1", "x"), pred("1", "y")], &refs).unwrap_err();
    assert!(e.to_string().contains("twice"), "{e}");
    let e = score_json(&[pred("1", "x")], &json!({"1": []})).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = score_json(&[pred("1", "x")], &json!({"1": ["ok", 3]})).unwrap_err();
    assert!(e.to_string().contains("not a string"), "{e}");
    let e = score_json(&[pred("1", "x")], &json!({"1": "a dog"})).unwrap_err();
    assert!(matches!(e, MetricsError::Format { .. }), "{e}");
    assert!(score_json(&[pred("1", "x")], &json!(["a"])).is_err());
    assert!(score_json(&[], &json!({})).is_err());
}
