//! MME scores as VLMEvalKit computes them (`MME_rating`, spec §3.4.3). Each answer is
//! extracted with [`crate::yes_no::extract`] and scored 1 when it equals the ground truth.
//! Per subtask: acc = 100 · mean score, acc⁺ = 100 · mean over images of the product of the
//! image's first two scores, subtask score = acc + acc⁺ (at most 200). Perception is the sum
//! over the ten perception subtasks, reasoning (cognition) over the four reasoning ones; all
//! fourteen must be present, as in VLMEvalKit.
//!
//! REF layout: `{id: {"answer": "Yes"|"No", "category": "OCR", "image_path": "..."}}`.
//!
//! Output (JSON): `perception`, `reasoning` (VLMEvalKit's names), `total` = perception +
//! reasoning (the card's MME-total), `subtasks` (each subtask's score, extra categories
//! included), `acc` and `acc_plus` per subtask, and `per_id` with `extracted` ("Yes", "No" or
//! "Unknown") and `score`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::pandas_cells::Cell;
use crate::vlmevalkit::{json_f64, mean_count, RefTable, ScoreOptions};
use crate::yes_no;
use crate::{MetricsError, Prediction};

/// The perception subtasks, in the order VLMEvalKit sums them.
pub const PERCEPTION: [&str; 10] = [
    "OCR",
    "artwork",
    "celebrity",
    "color",
    "count",
    "existence",
    "landmark",
    "position",
    "posters",
    "scene",
];

/// The reasoning (cognition) subtasks, in the order VLMEvalKit sums them.
pub const REASONING: [&str; 4] = [
    "code_reasoning",
    "commonsense_reasoning",
    "numerical_calculation",
    "text_translation",
];

/// `.xlsx` round trips before extraction (the eval file), before the score is computed (plus
/// the match storage file), and before the rating function reads the storage file again.
const PREDICTION_TRIPS: usize = 1;
const ANSWER_TRIPS: usize = 2;
const GROUP_TRIPS: usize = 3;

/// Per-item extraction and score, shared with [`crate::pope`].
pub(crate) struct YesNoItems {
    pub table: RefTable,
    pub extracted: Vec<yes_no::YesNo>,
    pub scores: Vec<bool>,
    /// The ground truth is "Yes".
    pub truth_yes: Vec<bool>,
    pub ignored: usize,
}

/// Extracts and scores every item of a Yes/No REF (`answer` as VLMEvalKit's storage file holds
/// it, compared with the extracted label).
pub(crate) fn score_items(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
    what: &str,
) -> Result<YesNoItems, MetricsError> {
    let table = RefTable::parse(reference, what)?;
    if !table.has_column("answer") {
        return Err(MetricsError::Format {
            location: format!("{what} reference"),
            problem: "no \"answer\" field".into(),
        });
    }
    let (answers, ignored) = table.join(preds, what)?;
    let predictions = RefTable::prediction_texts(
        &answers,
        options.rule,
        PREDICTION_TRIPS,
        options.raw_predictions,
    );
    let extracted: Vec<yes_no::YesNo> = predictions
        .iter()
        .map(|p| yes_no::extract(p, options.rule))
        .collect();
    let truth = table.via_xlsx("answer", options.rule, ANSWER_TRIPS);
    let scores = truth
        .iter()
        .zip(&extracted)
        .map(|(t, e)| t.as_text() == Some(e.as_str()))
        .collect();
    // The rating functions re-read the storage file once more before comparing with "Yes".
    let truth_yes = table
        .via_xlsx("answer", options.rule, GROUP_TRIPS)
        .iter()
        .map(|t| t.as_text() == Some("Yes"))
        .collect();
    Ok(YesNoItems {
        table,
        extracted,
        scores,
        truth_yes,
        ignored,
    })
}

/// The `per_id` object: extracted label and score of each item.
pub(crate) fn per_id(items: &YesNoItems) -> Value {
    let mut out = Map::new();
    for (i, id) in items.table.ids.iter().enumerate() {
        out.insert(
            id.clone(),
            json!({"extracted": items.extracted[i].as_str(), "score": items.scores[i]}),
        );
    }
    Value::Object(out)
}

/// Text values of a grouping field after the storage round trips; a missing value is an error.
pub(crate) fn group_texts(
    items: &YesNoItems,
    key: &str,
    options: &ScoreOptions,
    what: &str,
) -> Result<Vec<Option<String>>, MetricsError> {
    if !items.table.has_column(key) {
        return Err(MetricsError::Format {
            location: format!("{what} reference"),
            problem: format!("no {key:?} field"),
        });
    }
    Ok(items
        .table
        .via_xlsx(key, options.rule, GROUP_TRIPS)
        .iter()
        .map(Cell::py_str)
        .collect())
}

/// Scores MME predictions; see the module docs for the layouts.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
) -> Result<Value, MetricsError> {
    let items = score_items(preds, reference, options, "mme")?;
    let categories = group_texts(&items, "category", options, "mme")?;
    let paths = group_texts(&items, "image_path", options, "mme")?;

    // category -> image -> scores, images in first-seen (item) order.
    let mut stats: BTreeMap<String, Vec<(String, Vec<bool>)>> = BTreeMap::new();
    for i in 0..items.table.len() {
        let id = &items.table.ids[i];
        let (Some(category), Some(path)) = (&categories[i], &paths[i]) else {
            return Err(MetricsError::Format {
                location: format!("mme reference item {id}"),
                problem: "missing category or image_path".into(),
            });
        };
        let images = stats.entry(category.clone()).or_default();
        match images.iter_mut().find(|(p, _)| p == path) {
            Some((_, scores)) => scores.push(items.scores[i]),
            None => images.push((path.clone(), vec![items.scores[i]])),
        }
    }

    let mut subtasks = Map::new();
    let mut accs = Map::new();
    let mut pluses = Map::new();
    let mut score_of: BTreeMap<&str, f64> = BTreeMap::new();
    for (category, images) in &stats {
        let n: usize = images.iter().map(|(_, s)| s.len()).sum();
        let right: usize = images
            .iter()
            .map(|(_, s)| s.iter().filter(|x| **x).count())
            .sum();
        let mut both = 0;
        for (path, s) in images {
            if s.len() < 2 {
                return Err(MetricsError::Format {
                    location: format!("mme category {category}"),
                    problem: format!("image {path} has {} question(s); acc+ needs two", s.len()),
                });
            }
            both += usize::from(s[0] && s[1]);
        }
        let acc = mean_count(right, n) * 100.0;
        let plus = mean_count(both, images.len()) * 100.0;
        let score = acc + plus;
        subtasks.insert(category.clone(), json_f64(score));
        accs.insert(category.clone(), json_f64(acc));
        pluses.insert(category.clone(), json_f64(plus));
        score_of.insert(category, score);
    }
    let sum = |names: &[&str]| -> Result<f64, MetricsError> {
        let mut total = 0.0;
        for name in names {
            total += score_of.get(name).ok_or_else(|| {
                MetricsError::Mismatch(format!(
                    "mme: subtask {name} has no items (VLMEvalKit needs all fourteen)"
                ))
            })?;
        }
        Ok(total)
    };
    let perception = sum(&PERCEPTION)?;
    let reasoning = sum(&REASONING)?;
    Ok(json!({
        "perception": json_f64(perception),
        "reasoning": json_f64(reasoning),
        "total": json_f64(perception + reasoning),
        "subtasks": subtasks,
        "acc": accs,
        "acc_plus": pluses,
        "rule": options.rule.name(),
        "ignored_predictions": items.ignored,
        "per_id": per_id(&items),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_every_subtask_and_two_questions_per_image() {
        let mut reference = Map::new();
        let mut preds = Vec::new();
        let mut id = 0;
        for cat in PERCEPTION.iter().chain(REASONING.iter()) {
            for q in 0..2 {
                reference.insert(
                    id.to_string(),
                    json!({"answer": if q == 0 {"Yes"} else {"No"}, "category": cat, "image_path": format!("{cat}.jpg")}),
                );
                preds.push(Prediction {
                    id: id.to_string(),
                    answer: if *cat == "OCR" { "yes" } else { "Yes" }.to_string(),
                });
                id += 1;
            }
        }
        let reference = Value::Object(reference);
        let out = score_json(&preds, &reference, &ScoreOptions::default()).unwrap();
        assert_eq!(out["subtasks"]["OCR"], json!(50.0));
        assert_eq!(out["perception"], json!(500.0));
        assert_eq!(out["reasoning"], json!(200.0));
        assert_eq!(out["total"], json!(700.0));

        let mut partial = reference.as_object().unwrap().clone();
        partial.remove("0");
        let e = score_json(
            &preds,
            &Value::Object(partial.clone()),
            &ScoreOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("acc+ needs two"), "{e}");
        partial.remove("1");
        let e = score_json(&preds, &Value::Object(partial), &ScoreOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("subtask OCR"), "{e}");
    }
}
