//! Conventions shared by the VLMEvalKit scorers ([`crate::mcq`], [`crate::mmbench`],
//! [`crate::mmmu`], [`crate::mme`], [`crate::pope`]): which VLMEvalKit release's rules apply,
//! the REF JSON layout they read, and how a prediction reaches the scorer.
//!
//! **REF JSON.** An object keyed by item id (VLMEvalKit's `index`, as a string); each value is
//! an object of that item's TSV fields, as text (`null` or an absent key = an empty field).
//! [`crate::vlmevalkit_tsv::build_reference`] writes it from a benchmark TSV. The values are
//! the TSV's texts: the scorers replay how pandas types them and how VLMEvalKit's `.xlsx` eval
//! file changes them ([`crate::pandas_cells`]), so the REF may hold `"1.0"` or `"None"` just as
//! the TSV does. Items are processed in id order (numeric ids numerically), which is the TSV's
//! order for VLMEvalKit's files.

use std::collections::{BTreeMap, HashMap};

use crate::pandas_cells::{self, Cell};
use crate::{MetricsError, Prediction};

/// Which VLMEvalKit rules to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// `ddd6df88` (May 2024), the release the r-v1 model card's numbers were produced with.
    #[default]
    V2024,
    /// `e8e78f05` (HEAD): the later `can_infer` (letter among the last tokens, text match only
    /// for short answers, an "answer is X" pattern), per-row scoring for non-circular MCQ, a
    /// fixed period rule in Yes/No extraction, no formula cells in the eval file.
    Head,
}

impl Rule {
    /// Parses `2024` or `head`.
    pub fn parse(name: &str) -> Result<Rule, MetricsError> {
        match name {
            "2024" => Ok(Rule::V2024),
            "head" | "HEAD" => Ok(Rule::Head),
            other => Err(MetricsError::Format {
                location: "rule".into(),
                problem: format!("unknown VLMEvalKit rule {other:?} (expected 2024 or head)"),
            }),
        }
    }

    /// The rule's name as [`Rule::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::V2024 => "2024",
            Rule::Head => "head",
        }
    }
}

/// Options shared by the VLMEvalKit scorers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Which release's rules to follow.
    pub rule: Rule,
    /// Score the prediction strings verbatim instead of as they come back from VLMEvalKit's
    /// `.xlsx` eval file (where e.g. an empty answer or "None" reads as "nan").
    pub raw_predictions: bool,
}

/// The REF JSON as columns over its items, in id order.
#[derive(Debug, Clone)]
pub(crate) struct RefTable {
    /// Item ids, in processing order.
    pub ids: Vec<String>,
    fields: Vec<BTreeMap<String, String>>,
    keys: std::collections::BTreeSet<String>,
}

/// Sort key putting integer ids first, in numeric order, then the others as strings.
fn id_order(id: &str) -> (u8, i128, &str) {
    match id.parse::<i128>() {
        Ok(n) => (0, n, ""),
        Err(_) => (1, 0, id),
    }
}

impl RefTable {
    /// Reads a REF JSON object; `what` names the benchmark in errors.
    pub fn parse(reference: &serde_json::Value, what: &str) -> Result<RefTable, MetricsError> {
        let obj = reference.as_object().ok_or_else(|| MetricsError::Format {
            location: format!("{what} reference"),
            problem: "not a JSON object keyed by item id".into(),
        })?;
        let mut items: Vec<(&String, BTreeMap<String, String>)> = Vec::with_capacity(obj.len());
        let mut keys = std::collections::BTreeSet::new();
        for (id, entry) in obj {
            let location = format!("{what} reference item {id}");
            let fields = entry.as_object().ok_or_else(|| MetricsError::Format {
                location: location.clone(),
                problem: "not a JSON object".into(),
            })?;
            let mut row = BTreeMap::new();
            for (key, value) in fields {
                keys.insert(key.clone());
                let text = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                    _ => {
                        return Err(MetricsError::Format {
                            location,
                            problem: format!("field {key:?} is not text"),
                        })
                    }
                };
                row.insert(key.clone(), text);
            }
            items.push((id, row));
        }
        items.sort_by(|a, b| id_order(a.0).cmp(&id_order(b.0)));
        Ok(RefTable {
            ids: items.iter().map(|(id, _)| (*id).clone()).collect(),
            fields: items.into_iter().map(|(_, f)| f).collect(),
            keys,
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether any item has the field `key` (even as `null`): the TSV had that column.
    pub fn has_column(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// All field names that occur.
    pub fn columns(&self) -> impl Iterator<Item = &String> {
        self.keys.iter()
    }

    /// The raw texts of one field, in item order.
    pub fn texts(&self, key: &str) -> Vec<Option<&str>> {
        self.fields
            .iter()
            .map(|f| f.get(key).map(String::as_str))
            .collect()
    }

    /// One field typed as `pd.read_csv` types the TSV column.
    pub fn read_csv(&self, key: &str) -> Vec<Cell> {
        pandas_cells::read_csv_column(&self.texts(key))
    }

    /// One field as VLMEvalKit reads it back after `times` `.xlsx` round trips.
    pub fn via_xlsx(&self, key: &str, rule: Rule, times: usize) -> Vec<Cell> {
        pandas_cells::xlsx_round_trips(self.read_csv(key), rule, times)
    }

    /// The predictions for the items, in item order; an item without one is an error, a
    /// prediction for an unknown id is ignored (VLMEvalKit drops it too). Returns the answers
    /// and the number of ignored predictions.
    pub fn join<'p>(
        &self,
        preds: &'p [Prediction],
        what: &str,
    ) -> Result<(Vec<&'p str>, usize), MetricsError> {
        let by_id: HashMap<&str, &str> = preds
            .iter()
            .map(|p| (p.id.as_str(), p.answer.as_str()))
            .collect();
        let mut answers = Vec::with_capacity(self.len());
        let mut missing = Vec::new();
        for id in &self.ids {
            match by_id.get(id.as_str()) {
                Some(a) => answers.push(*a),
                None => missing.push(id.as_str()),
            }
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).copied().collect();
            return Err(MetricsError::Mismatch(format!(
                "{what}: {} reference item(s) have no prediction (e.g. {})",
                missing.len(),
                shown.join(", ")
            )));
        }
        let known: std::collections::HashSet<&str> = self.ids.iter().map(String::as_str).collect();
        let ignored = preds
            .iter()
            .filter(|p| !known.contains(p.id.as_str()))
            .count();
        Ok((answers, ignored))
    }

    /// The prediction strings as the scorer reads them: through `times` `.xlsx` round trips
    /// and `str()` (a missing value reads as "nan"), unless `raw`.
    pub fn prediction_texts(answers: &[&str], rule: Rule, times: usize, raw: bool) -> Vec<String> {
        if raw {
            return answers.iter().map(|a| a.to_string()).collect();
        }
        let cells = answers.iter().map(|a| Cell::Text(a.to_string())).collect();
        pandas_cells::xlsx_round_trips(cells, rule, times)
            .iter()
            .map(Cell::py_str_or_nan)
            .collect()
    }
}

/// Benchmarks whose VLMEvalKit score is defined by an LLM judge (spec §3.3, §3.4.6-3.4.7):
/// (dataset key prefix, judge model, why).
const JUDGED: [(&str, &str, &str); 3] = [
    (
        "MMVet",
        "gpt-4-1106-preview",
        "every answer is graded 0.0-1.0 by the judge",
    ),
    (
        "MathVista",
        "gpt-4-1106-preview",
        "the judge extracts the answer of every item the exact prefetch does not settle",
    ),
    (
        "LLaVABench",
        "gpt-4-1106-preview",
        "the judge rates every answer against a reference answer",
    ),
];

/// For a benchmark that needs an LLM judge, the report `blip3 score` gives instead of a score:
/// `{"status": "needs a judge", "benchmark", "judge", "reason"}`; `None` for benchmarks the
/// scorers here handle offline.
pub fn needs_judge(dataset_key: &str) -> Option<serde_json::Value> {
    JUDGED
        .iter()
        .find(|(prefix, _, _)| dataset_key.starts_with(prefix))
        .map(|(_, judge, reason)| {
            serde_json::json!({
                "status": "needs a judge",
                "benchmark": dataset_key,
                "judge": judge,
                "reason": reason,
            })
        })
}

/// JSON number, or `null` for NaN (VLMEvalKit's tables show NaN for empty groups).
pub(crate) fn json_f64(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// `np.mean` of 0/1 values: exact count over n (NaN when empty).
pub(crate) fn mean_count(hits: usize, n: usize) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        hits as f64 / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_table_orders_ids_and_joins() {
        let r = serde_json::json!({"10": {"a": "x"}, "9": {"a": null, "b": 1}, "z": {}});
        let t = RefTable::parse(&r, "t").unwrap();
        assert_eq!(t.ids, ["9", "10", "z"]);
        assert!(t.has_column("a") && t.has_column("b") && !t.has_column("c"));
        assert_eq!(t.texts("a"), [None, Some("x"), None]);
        assert_eq!(t.texts("b"), [Some("1"), None, None]);
        let preds: Vec<Prediction> = ["9", "10", "z", "extra"]
            .iter()
            .map(|id| Prediction {
                id: id.to_string(),
                answer: format!("p{id}"),
            })
            .collect();
        let (answers, ignored) = t.join(&preds, "t").unwrap();
        assert_eq!(answers, ["p9", "p10", "pz"]);
        assert_eq!(ignored, 1);
        let e = t.join(&preds[..1], "t").unwrap_err().to_string();
        assert!(e.contains("2 reference item(s)") && e.contains("10"), "{e}");
        assert!(RefTable::parse(&serde_json::json!([1]), "t").is_err());
        assert!(RefTable::parse(&serde_json::json!({"1": {"a": [1]}}), "t").is_err());
    }

    #[test]
    fn judged_benchmarks() {
        let r = needs_judge("MMVet").unwrap();
        assert_eq!(r["status"], "needs a judge");
        assert!(needs_judge("MathVista_MINI").is_some());
        assert!(needs_judge("MMBench_DEV_EN").is_none());
    }

    #[test]
    fn predictions_through_the_eval_file() {
        let got = RefTable::prediction_texts(&["", "None", "B", "=B"], Rule::V2024, 1, false);
        assert_eq!(got, ["nan", "nan", "B", "0"]);
        let got = RefTable::prediction_texts(&["1", "2"], Rule::V2024, 1, false);
        assert_eq!(got, ["1", "2"]);
        let got = RefTable::prediction_texts(&["1", "2.0"], Rule::V2024, 2, false);
        assert_eq!(got, ["1", "2"]);
        let got = RefTable::prediction_texts(&["", "=B"], Rule::Head, 1, true);
        assert_eq!(got, ["", "=B"]);
    }
}
