//! Parity with the reference VQA scorers and the OK-VQA stemmer. The goldens under
//! testdata/eval/vqa/ were written by tools/eval-reference/vqa_reference.py running
//! GT-Vision-Lab's vqaEval.py (2016 and 2021 revisions), OpenFlamingo's vqa_metric.py and
//! OpenFlamingo's OKVQAStemmer (NLTK 3.8.1); accuracies must match exactly.

use std::path::PathBuf;

use blip3_metrics::vqa::{self, GtNormalization, VqaOptions};
use blip3_metrics::{okvqa, parse_predictions, vqa_files, Prediction};
use serde_json::{json, Value};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/eval/vqa")
        .join(name)
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(name)).unwrap()).unwrap()
}

fn read_preds(name: &str) -> Vec<Prediction> {
    parse_predictions(&std::fs::read_to_string(testdata(name)).unwrap(), name).unwrap()
}

const MODES: [(&str, GtNormalization); 3] = [
    ("official", GtNormalization::Official),
    ("official2021", GtNormalization::Official2021),
    ("openflamingo", GtNormalization::OpenFlamingo),
];

/// Asserts that a `score_json` result equals the golden of one mode, exactly.
fn assert_same(got: &Value, golden: &Value, what: &str) {
    assert_eq!(got["accuracy"], golden["accuracy"], "{what}: accuracy");
    assert_eq!(
        got["accuracy_exact"], golden["accuracy_exact"],
        "{what}: accuracy_exact"
    );
    assert_eq!(got["questions"], golden["questions"], "{what}: questions");
    let want = golden["per_id"].as_object().unwrap();
    let have = got["per_id"].as_object().unwrap();
    assert_eq!(have.len(), want.len(), "{what}: per_id size");
    let wrong: Vec<String> = want
        .iter()
        .filter(|(id, v)| have.get(*id) != Some(*v))
        .map(|(id, v)| format!("{id}: want {v}, got {:?}", have.get(id)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: per-question mismatches:\n{}",
        wrong.join("\n")
    );
}

fn check_set(preds: &str, refs: &str, golden: &str, stemming: bool) -> usize {
    let preds = read_preds(preds);
    let refs = read_json(refs);
    let golden = read_json(golden);
    for (name, mode) in MODES {
        let options = VqaOptions {
            gt_normalization: mode,
            okvqa_stemming: stemming,
        };
        let got = vqa::score_json(&preds, &refs, options).unwrap();
        assert_same(&got, &golden[name], name);
    }
    preds.len()
}

#[test]
fn normalisation_matches_the_reference() {
    let preds = read_preds("vqa_preds.jsonl");
    let golden = read_json("vqa.golden.json");
    for p in &preds {
        assert_eq!(
            vqa::normalize_answer(&p.answer),
            golden["normalized"][&p.id].as_str().unwrap(),
            "{}: {:?}",
            p.id,
            p.answer
        );
    }
}

#[test]
fn vqa_accuracy_matches_all_three_references() {
    let n = check_set("vqa_preds.jsonl", "vqa_refs.json", "vqa.golden.json", false);
    assert!(n >= 150, "{n} items");
}

#[test]
fn answer_objects_leave_out_like_the_reference() {
    check_set(
        "vqa_objects_preds.jsonl",
        "vqa_objects_refs.json",
        "vqa_objects.golden.json",
        false,
    );
}

#[test]
fn vqav2_files_match_the_reference() {
    let preds = read_preds("vqav2_preds.jsonl");
    let golden = read_json("vqav2.golden.json");
    let ds = vqa_files::read_vqa_files(
        &testdata("vqav2_questions.json"),
        &testdata("vqav2_annotations.json"),
    )
    .unwrap();
    assert_eq!(ds.questions.len(), 30);
    let refs = ds.references();
    let annotation_file = read_json("vqav2_annotations.json");
    for (name, mode) in MODES {
        let options = VqaOptions {
            gt_normalization: mode,
            okvqa_stemming: false,
        };
        let s = vqa::score(&preds, &refs, options).unwrap();
        assert_eq!(
            s.accuracy,
            golden[name]["accuracy"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(s.unscored_references, refs.len() - preds.len());
        // The annotation file itself is accepted as the reference.
        let got = vqa::score_json(&preds, &annotation_file, options).unwrap();
        assert_same(&got, &golden[name], name);
    }
}

#[test]
fn okvqa_stems_and_scores_match_the_reference() {
    let preds = read_preds("okvqa_preds.jsonl");
    let golden = read_json("okvqa.golden.json");
    let wrong: Vec<String> = preds
        .iter()
        .filter_map(|p| {
            let want = golden["stems"][&p.id].as_str().unwrap();
            let got = okvqa::stem(&p.answer).unwrap();
            (got != want).then(|| format!("{} {:?}: want {want:?}, got {got:?}", p.id, p.answer))
        })
        .collect();
    assert!(wrong.is_empty(), "stem mismatches:\n{}", wrong.join("\n"));
    for p in &preds {
        let want = golden["postprocessed"][&p.id].as_str().unwrap();
        assert_eq!(
            okvqa::postprocess_ok_vqa_generation(&p.answer).unwrap(),
            want,
            "{}",
            p.id
        );
    }
    check_set(
        "okvqa_preds.jsonl",
        "okvqa_refs.json",
        "okvqa.golden.json",
        true,
    );
}

#[test]
fn okvqa_stems_match_on_a_corpus_of_real_answers() {
    let golden = read_json("okvqa_corpus.golden.json");
    let pairs = golden["stems"].as_array().unwrap();
    let stemmer = okvqa::stemmer().unwrap();
    let wrong: Vec<String> = pairs
        .iter()
        .filter_map(|pair| {
            let answer = pair[0].as_str().unwrap();
            let want = pair[1].as_str().unwrap();
            let got = stemmer.stem(answer).unwrap();
            (got != want).then(|| format!("{answer:?}: want {want:?}, got {got:?}"))
        })
        .collect();
    assert!(pairs.len() >= 5000, "{} answers", pairs.len());
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        pairs.len(),
        wrong
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn errors_are_reported() {
    let preds = vec![Prediction {
        id: "1".into(),
        answer: "yes".into(),
    }];
    let opts = VqaOptions::default();
    let err = |reference: Value, preds: &[Prediction]| {
        vqa::score_json(preds, &reference, opts)
            .unwrap_err()
            .to_string()
    };
    assert!(err(json!({"2": ["yes"]}), &preds).contains("no reference answers"));
    assert!(err(json!({"1": []}), &preds).contains("empty list"));
    assert!(err(json!({"1": "yes"}), &preds).contains("list of reference answers"));
    assert!(err(json!(["yes"]), &preds).contains("JSON object"));
    assert!(err(json!({"1": [1]}), &preds).contains("answer string"));
    assert!(err(json!({"1": [{"answer_id": 1}]}), &preds).contains("\"answer\""));
    assert!(err(json!({"1": ["yes"]}), &[]).contains("no predictions"));
    let twice = vec![preds[0].clone(), preds[0].clone()];
    assert!(err(json!({"1": ["yes"]}), &twice).contains("twice"));
    let bad_file = json!({"annotations": [{"question_id": 1, "answers": "x"}]});
    assert!(err(bad_file, &preds).contains("answers"));
    // A valid call, for contrast: all ten agree.
    let ok = vqa::score_json(&preds, &json!({"1": vec!["yes"; 10]}), opts).unwrap();
    assert_eq!(ok["accuracy"], json!(100.0));
    assert_eq!(ok["per_id"]["1"], json!(100.0));
}
