//! Multiple-choice accuracy as VLMEvalKit computes it with exact matching (no judge): SEED,
//! MMStar, AI2D, ScienceQA, MMBench (circular, [`crate::mmbench`]) and MMMU
//! ([`crate::mmmu`]). Spec §3.4.1-3.4.2.
//!
//! Each item's answer is extracted with [`crate::choice::can_infer`]. Circular evaluation
//! groups the items whose ids are equal modulo 10⁶ (id g < 10⁶ is the group's head, g + k·10⁶
//! its rotations): the group is right only if every present row's letter equals its ground
//! truth; rows without a head are not scored. In 2024 every MCQ benchmark went through this
//! grouping (a no-op when all ids are below 10⁶); at HEAD only MMBench-like datasets do, the
//! others score each row, an unmatched answer counting as `Z`.
//!
//! REF layout ([`crate::vlmevalkit`]): `{id: {"answer": "B", "A": "...", "B": "...", …,
//! "category": "...", "l2-category": "...", "split": "dev"}}`; options are the letter keys
//! with a value, `category` / `l2-category` / `split` are optional.
//!
//! Output (JSON): `table` is VLMEvalKit's accuracy table (`_acc.csv`): per split (`"none"`
//! without a split column), `Overall` and one column per `l2-category` then per `category`
//! value (MMBench's l2 names abbreviated `CP`, `FP-S`, … as VLMEvalKit does), as fractions in
//! 0..1 (`null` where a split has no item of that group); `Overall` at the top when there is a
//! single split; `categories` / `l2-categories` with the unabbreviated names; `per_id` with
//! each item's `extracted` letter (or `null`), `answer` (the ground truth used), `match`, and
//! for scored rows `hit` (0/1; the group's for a circular head) and `group`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::choice;
use crate::pandas_cells::{self, Cell};
use crate::vlmevalkit::{json_f64, mean_count, RefTable, Rule, ScoreOptions};
use crate::{MetricsError, Prediction};

/// Rotations of group g have ids g + k·10⁶.
const CIRCULAR_STRIDE: i128 = 1_000_000;

/// MMBench's l2-category abbreviations in VLMEvalKit's tables.
const MMBENCH_ABBREVIATIONS: [(&str, &str); 6] = [
    ("coarse_perception", "CP"),
    ("finegrained_perception (instance-level)", "FP-S"),
    ("finegrained_perception (cross-instance)", "FP-C"),
    ("logic_reasoning", "LR"),
    ("relation_reasoning", "RR"),
    ("attribute_reasoning", "AR"),
];

/// How to score one multiple-choice benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McqOptions {
    /// Which release's rules to follow.
    pub rule: Rule,
    /// Group rotations by id modulo 10⁶ (circular evaluation).
    pub circular: bool,
    /// Apply `MMMU_preproc` (open questions become A = the answer, B = "Other Answers").
    pub mmmu: bool,
    /// VLMEvalKit re-saves the eval file once more for MMBench-like datasets (to make the ids
    /// integers), which is one more `.xlsx` round trip of every column.
    pub resaved_eval_file: bool,
    /// Score the prediction strings verbatim ([`ScoreOptions::raw_predictions`]).
    pub raw_predictions: bool,
}

impl McqOptions {
    /// What VLMEvalKit does for the dataset `key` (e.g. `MMBench_DEV_EN`, `MMMU_DEV_VAL`,
    /// `SEEDBench_IMG`) under `options.rule`.
    pub fn for_dataset(key: &str, options: ScoreOptions) -> McqOptions {
        let lower = key.to_lowercase();
        let has = |names: &[&str]| names.iter().any(|n| lower.contains(n));
        let mmbench_like = has(&["mmbench", "ccbench"]);
        let (circular, resaved, mmmu) = match options.rule {
            Rule::V2024 => (true, mmbench_like, key.contains("MMMU")),
            Rule::Head => {
                let circular = has(&["mmbench", "ccbench", "circular", "mmcr"]);
                (circular, circular, key.contains("MMMU") && !circular)
            }
        };
        McqOptions {
            rule: options.rule,
            circular,
            mmmu,
            resaved_eval_file: resaved,
            raw_predictions: options.raw_predictions,
        }
    }

    /// A plain multiple-choice benchmark (SEED, MMStar, AI2D, ScienceQA).
    pub fn plain(options: ScoreOptions) -> McqOptions {
        McqOptions::for_dataset("", options)
    }
}

/// One scored item.
struct Row {
    extracted: Option<char>,
    answer: Option<String>,
    matched: bool,
}

/// Scores predictions against a multiple-choice REF JSON; see the module docs for the layouts.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: &McqOptions,
) -> Result<Value, MetricsError> {
    let rule = options.rule;
    let table = RefTable::parse(reference, "mcq")?;
    if !table.has_column("answer") {
        return Err(MetricsError::Format {
            location: "mcq reference".into(),
            problem: "no \"answer\" field".into(),
        });
    }
    let (answers, ignored) = table.join(preds, "mcq")?;
    let eval_trips = 1 + usize::from(options.resaved_eval_file);
    let predictions =
        RefTable::prediction_texts(&answers, rule, eval_trips, options.raw_predictions);

    // Option columns as the evaluator reads them from the eval file.
    let mut letters: BTreeSet<char> = table
        .columns()
        .filter_map(|k| {
            let mut cs = k.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) if c.is_ascii_uppercase() => Some(c),
                _ => None,
            }
        })
        .collect();
    if options.mmmu {
        letters.extend(['A', 'B']);
    }
    let mut option_cells: Vec<(char, Vec<Cell>)> = letters
        .iter()
        .map(|&l| (l, table.via_xlsx(&l.to_string(), rule, eval_trips)))
        .collect();
    let meta_answer = table.read_csv("answer");
    let ground_truth: Vec<Option<String>> = if options.mmmu {
        let eval_answer = table.via_xlsx("answer", rule, eval_trips);
        // Letters are sorted and include A and B, so A sits at 0 and B at 1.
        let (a_col, b_col) = option_cells.split_at_mut(1);
        for (i, answer) in eval_answer.iter().enumerate() {
            crate::mmmu::preprocess(&mut a_col[0].1[i], &mut b_col[0].1[i], answer);
        }
        meta_answer
            .iter()
            .map(|c| Some(crate::mmmu::ground_truth(c)))
            .collect()
    } else {
        meta_answer
            .iter()
            .map(|c| c.as_text().map(str::to_string))
            .collect()
    };

    let rows: Vec<Row> = (0..table.len())
        .map(|i| {
            let choices: Vec<(char, String)> = option_cells
                .iter()
                .filter_map(|(l, cells)| cells[i].py_str().map(|t| (*l, t)))
                .collect();
            let extracted = choice::can_infer(&predictions[i], &choices, rule);
            let answer = ground_truth[i].clone();
            let matched = match (&extracted, &answer) {
                (Some(e), Some(a)) => a.chars().eq(std::iter::once(*e)),
                _ => false,
            };
            Row {
                extracted,
                answer,
                matched,
            }
        })
        .collect();

    // Which rows are scored, and their hits.
    let mut groups: Vec<Option<i128>> = vec![None; table.len()];
    let mut scored: Vec<(usize, bool)> = Vec::new();
    if options.circular {
        let mut nums = Vec::with_capacity(table.len());
        for id in &table.ids {
            let n = id.parse::<i128>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                MetricsError::Format {
                    location: format!("mcq reference item {id}"),
                    problem: "circular evaluation needs non-negative integer ids".into(),
                }
            })?;
            nums.push(n);
        }
        let mut members: BTreeMap<i128, Vec<usize>> = BTreeMap::new();
        for (i, n) in nums.iter().enumerate() {
            members.entry(n % CIRCULAR_STRIDE).or_default().push(i);
            groups[i] = Some(n % CIRCULAR_STRIDE);
        }
        for (i, n) in nums.iter().enumerate() {
            if *n < CIRCULAR_STRIDE {
                let hit = members[n].iter().all(|&j| rows[j].matched);
                scored.push((i, hit));
            }
        }
    } else {
        for (i, row) in rows.iter().enumerate() {
            // HEAD's exact matching counts an unmatched answer as Z.
            let opt = row.extracted.unwrap_or('Z');
            let hit = row
                .answer
                .as_deref()
                .is_some_and(|a| a.chars().eq(std::iter::once(opt)));
            scored.push((i, hit));
        }
    }

    // Grouping columns as report_acc sees them: typed with the TSV, then through the eval
    // file (all rows) and the files VLMEvalKit saves the scored rows to.
    let (trips_all, trips_scored) = match (rule, options.circular) {
        (Rule::V2024, _) => (0, 1),
        (Rule::Head, true) => (eval_trips, 2),
        (Rule::Head, false) => (eval_trips + 1, 0),
    };
    let column = |key: &str| -> Option<Vec<Option<String>>> {
        if !table.has_column(key) {
            return None;
        }
        let all = pandas_cells::xlsx_round_trips(table.read_csv(key), rule, trips_all);
        let subset = scored.iter().map(|(i, _)| all[*i].clone()).collect();
        let subset = pandas_cells::xlsx_round_trips(subset, rule, trips_scored);
        let mut values = vec![None; table.len()];
        for ((i, _), cell) in scored.iter().zip(&subset) {
            values[*i] = cell.py_str();
        }
        Some(values)
    };
    let splits: Vec<Option<String>> =
        column("split").unwrap_or_else(|| vec![Some("none".to_string()); table.len()]);
    let report = report_acc(
        &scored,
        &splits,
        &[
            ("l2-categories", column("l2-category")),
            ("categories", column("category")),
        ],
    );

    let mut per_id = Map::new();
    let hits: BTreeMap<usize, bool> = scored.iter().copied().collect();
    for (i, row) in rows.iter().enumerate() {
        let mut entry = Map::new();
        entry.insert(
            "extracted".into(),
            row.extracted
                .map_or(Value::Null, |c| Value::String(c.to_string())),
        );
        entry.insert(
            "answer".into(),
            row.answer.clone().map_or(Value::Null, Value::String),
        );
        entry.insert("match".into(), Value::Bool(row.matched));
        if let Some(hit) = hits.get(&i) {
            entry.insert("hit".into(), json!(u8::from(*hit)));
        }
        if let Some(g) = groups[i] {
            entry.insert("group".into(), json!(g.to_string()));
        }
        per_id.insert(table.ids[i].clone(), Value::Object(entry));
    }

    let mut out = report;
    out.insert("rule".into(), json!(rule.name()));
    out.insert("circular".into(), json!(options.circular));
    out.insert("mmmu".into(), json!(options.mmmu));
    out.insert("scored".into(), json!(scored.len()));
    out.insert(
        "hits".into(),
        json!(scored.iter().filter(|(_, h)| *h).count()),
    );
    out.insert("ignored_predictions".into(), json!(ignored));
    out.insert("per_id".into(), Value::Object(per_id));
    Ok(Value::Object(out))
}

/// VLMEvalKit's `report_acc` over the scored rows: per split, `Overall` and the mean hit of
/// each group value. Rows whose split is missing are left out (VLMEvalKit shows NaN rows).
fn report_acc(
    scored: &[(usize, bool)],
    splits: &[Option<String>],
    groups: &[(&str, Option<Vec<Option<String>>>)],
) -> Map<String, Value> {
    let split_names: BTreeSet<&str> = scored
        .iter()
        .filter_map(|(i, _)| splits[*i].as_deref())
        .collect();
    let mean = |pick: &dyn Fn(usize) -> bool, split: &str| -> f64 {
        let mut n = 0;
        let mut hits = 0;
        for (i, hit) in scored {
            if splits[*i].as_deref() == Some(split) && pick(*i) {
                n += 1;
                hits += usize::from(*hit);
            }
        }
        mean_count(hits, n)
    };
    let mut table: BTreeMap<&str, Map<String, Value>> =
        split_names.iter().map(|s| (*s, Map::new())).collect();
    let mut by_group: Map<String, Value> = Map::new();
    for split in &split_names {
        let row = table.entry(split).or_default();
        row.insert("Overall".into(), json_f64(mean(&|_| true, split)));
    }
    for (label, values) in groups {
        let Some(values) = values else { continue };
        let names: BTreeSet<&str> = scored
            .iter()
            .filter_map(|(i, _)| values[*i].as_deref())
            .collect();
        let mut per_split: Map<String, Value> = Map::new();
        for split in &split_names {
            let mut plain = Map::new();
            for name in &names {
                let v = mean(&|i| values[i].as_deref() == Some(*name), split);
                let shown = MMBENCH_ABBREVIATIONS
                    .iter()
                    .find(|(full, _)| full == name)
                    .map_or(*name, |(_, abbr)| *abbr);
                if let Some(row) = table.get_mut(split) {
                    row.insert(shown.to_string(), json_f64(v));
                }
                plain.insert((*name).to_string(), json_f64(v));
            }
            per_split.insert((*split).to_string(), Value::Object(plain));
        }
        by_group.insert((*label).to_string(), Value::Object(per_split));
    }
    let mut out = Map::new();
    if table.len() == 1 {
        if let Some(overall) = table.values().next().and_then(|r| r.get("Overall")) {
            out.insert("Overall".into(), overall.clone());
        }
    }
    out.insert(
        "table".into(),
        Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::Object(v)))
                .collect(),
        ),
    );
    for (k, v) in by_group {
        out.insert(k, v);
    }
    out
}

/// [`score_json`] for a plain benchmark with [`McqOptions::plain`].
pub fn score_plain_json(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
) -> Result<Value, MetricsError> {
    score_json(preds, reference, &McqOptions::plain(*options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(pairs: &[(&str, &str)]) -> Vec<Prediction> {
        pairs
            .iter()
            .map(|(id, a)| Prediction {
                id: id.to_string(),
                answer: a.to_string(),
            })
            .collect()
    }

    #[test]
    fn circular_groups_need_every_rotation() {
        let reference = json!({
            "1": {"answer": "A", "A": "cat", "B": "dog", "split": "dev", "category": "c1"},
            "1000001": {"answer": "B", "A": "dog", "B": "cat", "split": "dev", "category": "c1"},
            "2": {"answer": "B", "A": "x", "B": "y", "split": "dev", "category": "c2"},
            "1000002": {"answer": "A", "A": "y", "B": "x", "split": "dev", "category": "c2"},
            "2000003": {"answer": "A", "A": "y", "B": "x", "split": "dev", "category": "c2"},
        });
        let p = preds(&[
            ("1", "A"),
            ("1000001", "cat"),
            ("2", "B"),
            ("1000002", "B"),
            ("2000003", "A"),
        ]);
        let opts = McqOptions::for_dataset("MMBench_DEV_EN", ScoreOptions::default());
        let out = score_json(&p, &reference, &opts).unwrap();
        assert_eq!(out["Overall"], json!(0.5));
        assert_eq!(out["table"]["dev"]["c1"], json!(1.0));
        assert_eq!(out["per_id"]["1000001"]["extracted"], json!("B"));
        assert_eq!(out["per_id"]["2"]["hit"], json!(0));
        assert!(out["per_id"]["2000003"].get("hit").is_none());
        assert_eq!(out["scored"], json!(2));
    }

    #[test]
    fn head_vanilla_counts_unmatched_as_z() {
        let reference = json!({"1": {"answer": "Z", "A": "a1", "B": "b1"}, "2": {"answer": "A", "A": "x", "B": "y"}});
        let p = preds(&[("1", "no idea"), ("2", "A")]);
        let opts = McqOptions::plain(ScoreOptions {
            rule: Rule::Head,
            raw_predictions: false,
        });
        assert!(!opts.circular);
        let out = score_json(&p, &reference, &opts).unwrap();
        assert_eq!(out["table"]["none"]["Overall"], json!(1.0));
        assert_eq!(out["per_id"]["1"]["extracted"], Value::Null);
    }

    #[test]
    fn errors() {
        let reference = json!({"x": {"answer": "A", "A": "a"}});
        let p = preds(&[("x", "A")]);
        let opts = McqOptions::plain(ScoreOptions::default());
        let e = score_json(&p, &reference, &opts).unwrap_err().to_string();
        assert!(e.contains("integer ids"), "{e}");
        let e = score_json(&[], &json!({"1": {"answer": "A"}}), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no prediction"), "{e}");
        let e = score_json(&p, &json!({"1": {"A": "a"}}), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("answer"), "{e}");
    }
}
