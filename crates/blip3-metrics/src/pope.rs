//! POPE scores as VLMEvalKit computes them (`POPE_rating`, spec §3.4.4). Answers are extracted
//! as for MME ([`crate::yes_no`]). Each item's `category` lists the POPE splits it belongs to,
//! comma-separated; the item counts once per listed split, in the overall numbers too. From
//! the true positives, false positives and false negatives (positive = "Yes"): precision,
//! recall (0 when the denominator is 0) and F1 = 2PR / (P + R) (0 when P + R = 0).
//!
//! REF layout: `{id: {"answer": "Yes"|"No", "category": "adversarial,popular"}}`.
//!
//! Output (JSON), by VLMEvalKit's column names, all ×100: `Overall` (F1, the number POPE
//! results report), `acc`, `precision`, `recall`; the same per split under `categories`; and
//! `per_id` with `extracted` and `score`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::mme::{group_texts, per_id, score_items};
use crate::vlmevalkit::{json_f64, mean_count, ScoreOptions};
use crate::yes_no::YesNo;
use crate::{MetricsError, Prediction};

/// Counts over a set of (exploded) rows.
#[derive(Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    right: usize,
    n: usize,
}

impl Counts {
    fn add(&mut self, truth_yes: bool, pred_yes: bool, score: bool) {
        self.tp += usize::from(truth_yes && pred_yes);
        self.fp += usize::from(!truth_yes && pred_yes);
        self.fn_ += usize::from(truth_yes && !pred_yes);
        self.right += usize::from(score);
        self.n += 1;
    }

    /// `Overall` (F1), `acc`, `precision`, `recall`, ×100 as VLMEvalKit reports them.
    fn row(&self) -> Value {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * (precision * recall) / (precision + recall)
        };
        json!({
            "Overall": json_f64(f1 * 100.0),
            "acc": json_f64(mean_count(self.right, self.n) * 100.0),
            "precision": json_f64(precision * 100.0),
            "recall": json_f64(recall * 100.0),
        })
    }
}

/// Scores POPE predictions; see the module docs for the layouts.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
) -> Result<Value, MetricsError> {
    let items = score_items(preds, reference, options, "pope")?;
    let categories = group_texts(&items, "category", options, "pope")?;
    let mut overall = Counts::default();
    let mut per_split: BTreeMap<&str, Counts> = BTreeMap::new();
    for (i, category) in categories.iter().enumerate() {
        let truth_yes = items.truth_yes[i];
        let pred_yes = items.extracted[i] == YesNo::Yes;
        let score = items.scores[i];
        match category {
            // An item without a category still counts once overall.
            None => overall.add(truth_yes, pred_yes, score),
            Some(list) => {
                for split in list.split(',') {
                    overall.add(truth_yes, pred_yes, score);
                    per_split
                        .entry(split)
                        .or_default()
                        .add(truth_yes, pred_yes, score);
                }
            }
        }
    }
    let mut out = match overall.row() {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let splits: Map<String, Value> = per_split
        .iter()
        .map(|(k, c)| (k.to_string(), c.row()))
        .collect();
    out.insert("categories".into(), Value::Object(splits));
    out.insert("rule".into(), json!(options.rule.name()));
    out.insert("ignored_predictions".into(), json!(items.ignored));
    out.insert("per_id".into(), per_id(&items));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explode_and_f1() {
        let reference = json!({
            "0": {"answer": "Yes", "category": "adversarial,popular"},
            "1": {"answer": "No", "category": "popular"},
            "2": {"answer": "Yes", "category": "random"},
        });
        let preds: Vec<Prediction> = [("0", "Yes"), ("1", "yes"), ("2", "No.")]
            .iter()
            .map(|(id, a)| Prediction {
                id: id.to_string(),
                answer: a.to_string(),
            })
            .collect();
        let out = score_json(&preds, &reference, &ScoreOptions::default()).unwrap();
        // Exploded rows: (Y,Y) twice, (N,Y), (Y,N): tp 2, fp 1, fn 1.
        let p: f64 = 2.0 / 3.0;
        assert_eq!(out["precision"], json!(p * 100.0));
        assert_eq!(out["Overall"], json!(2.0 * (p * p) / (p + p) * 100.0));
        assert_eq!(out["acc"], json!(50.0));
        assert_eq!(out["categories"]["random"]["Overall"], json!(0.0));
        assert_eq!(out["per_id"]["2"]["extracted"], json!("No"));
    }
}
