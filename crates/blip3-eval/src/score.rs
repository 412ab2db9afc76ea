//! From a run's answers to the benchmark's numbers: the scorer each task
//! uses (`blip3_metrics`), the headline columns of the model card's table,
//! and the charts of the report. `blip3 score` calls [`score_named`].

use serde_json::Value;

use blip3_metrics::vlmevalkit::{Rule, ScoreOptions};
use blip3_metrics::vqa::{GtNormalization, VqaOptions};
use blip3_metrics::{mcq, mme, pope, Prediction};

use crate::judge::Judge;
use crate::report::{Chart, Summary};
use crate::run::PredictionRecord;
use crate::task::{Metric, Task};
use crate::EvalError;

/// The scorer settings a user may change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScorerOptions {
    /// VQA ground-truth normalisation.
    pub vqa_gt: GtNormalization,
    /// VLMEvalKit release whose extraction rules apply.
    pub rule: Rule,
}

/// The scorer names `blip3 score --task` takes.
pub const SCORERS: &[&str] = &[
    "cider", "vqa", "okvqa", "pope", "mme", "mmbench", "mcq", "mmmu",
];

/// A one-line description of the scorer and its options, for the run record.
pub fn describe(task: &Task, options: &ScorerOptions) -> String {
    match task.metric {
        Metric::Cider => "CIDEr-D (pycocoevalcap 1.2, PTB tokenizer)".into(),
        Metric::VqaAccuracy { stem } => format!(
            "VQA accuracy, {:?} ground-truth normalisation{}",
            options.vqa_gt,
            if stem { ", OK-VQA stemming" } else { "" }
        ),
        Metric::Judge => "needs an LLM judge".into(),
        _ => format!(
            "VLMEvalKit {} extraction, exact matching (no judge)",
            options.rule.name()
        ),
    }
}

fn vqa_options(options: &ScorerOptions, stem: bool) -> VqaOptions {
    VqaOptions {
        gt_normalization: options.vqa_gt,
        okvqa_stemming: stem,
    }
}

fn vlmevalkit_options(options: &ScorerOptions) -> ScoreOptions {
    ScoreOptions {
        rule: options.rule,
        ..ScoreOptions::default()
    }
}

/// Scores `preds` with the scorer `name` (see [`SCORERS`]); the JSON is the
/// scorer's own (`per_id` included).
pub fn score_named(
    name: &str,
    preds: &[Prediction],
    reference: &Value,
    options: &ScorerOptions,
) -> Result<Value, EvalError> {
    let value = match name {
        "cider" => blip3_metrics::cider::score_json(preds, reference)?,
        "vqa" => blip3_metrics::vqa::score_json(preds, reference, vqa_options(options, false))?,
        "okvqa" => blip3_metrics::vqa::score_json(preds, reference, vqa_options(options, true))?,
        "pope" => pope::score_json(preds, reference, &vlmevalkit_options(options))?,
        "mme" => mme::score_json(preds, reference, &vlmevalkit_options(options))?,
        "mmbench" => {
            blip3_metrics::mmbench::score_json(preds, reference, &vlmevalkit_options(options))?
        }
        "mmmu" => blip3_metrics::mmmu::score_json(preds, reference, &vlmevalkit_options(options))?,
        "mcq" => mcq::score_json(
            preds,
            reference,
            &mcq::McqOptions::plain(vlmevalkit_options(options)),
        )?,
        other => {
            return Err(EvalError::Usage(format!(
                "unknown scorer {other:?}; known: {}",
                SCORERS.join(", ")
            )))
        }
    };
    Ok(value)
}

/// The scorer a task's metric uses, by [`SCORERS`] name.
fn scorer_of(metric: Metric) -> Option<&'static str> {
    Some(match metric {
        Metric::Cider => "cider",
        Metric::VqaAccuracy { stem: false } => "vqa",
        Metric::VqaAccuracy { stem: true } => "okvqa",
        Metric::MultipleChoice => "mcq",
        Metric::CircularChoice => "mmbench",
        Metric::Mmmu => "mmmu",
        Metric::Mme => "mme",
        Metric::Pope => "pope",
        Metric::Judge => return None,
    })
}

/// A run's scores: the scorer's JSON and the report's summary.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The scorer's output (`per_id` included).
    pub metrics: Value,
    /// Columns, details and charts for the report.
    pub summary: Summary,
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

/// (label, value × scale) for a map of numbers, or of per-split maps of
/// numbers (VLMEvalKit's per-split category tables): labels then name the
/// split when there are several.
fn bars_of(v: Option<&Value>, scale: f64) -> Vec<(String, f64)> {
    let Some(o) = v.and_then(Value::as_object) else {
        return Vec::new();
    };
    let flat = |o: &serde_json::Map<String, Value>, prefix: &str| -> Vec<(String, f64)> {
        o.iter()
            .filter_map(|(k, x)| x.as_f64().map(|x| (format!("{prefix}{k}"), x * scale)))
            .collect()
    };
    let splits: Vec<(&String, &serde_json::Map<String, Value>)> = o
        .iter()
        .filter_map(|(k, x)| x.as_object().map(|m| (k, m)))
        .collect();
    match splits.len() {
        0 => flat(o, ""),
        1 => flat(splits[0].1, ""),
        _ => splits
            .iter()
            .flat_map(|(split, m)| flat(m, &format!("{split}: ")))
            .collect(),
    }
}

/// POPE's confusion counts `[[tp, fn], [fp, tn]]`, one count per item.
fn pope_confusion(metrics: &Value, reference: &Value) -> [[u64; 2]; 2] {
    let mut counts = [[0u64; 2]; 2];
    let Some(per_id) = metrics.get("per_id").and_then(Value::as_object) else {
        return counts;
    };
    for (id, item) in per_id {
        let truth_yes = reference
            .get(id)
            .and_then(|r| r.get("answer"))
            .and_then(Value::as_str)
            .is_some_and(|a| a.eq_ignore_ascii_case("yes"));
        let said_yes = item.get("extracted").and_then(Value::as_str) == Some("Yes");
        counts[usize::from(!truth_yes)][usize::from(!said_yes)] += 1;
    }
    counts
}

fn summarise(task: &Task, metrics: &Value, reference: &Value) -> Summary {
    let mut summary = Summary {
        columns: Vec::new(),
        details: Vec::new(),
        charts: Vec::new(),
        items: 0,
        failed: 0,
    };
    let col = |v: Option<f64>| v.ok_or_else(|| "not scored".to_string());
    match task.metric {
        Metric::Cider => {
            // The card reports CIDEr ×100.
            summary.columns.push((
                task.title.into(),
                col(number(metrics, &["CIDEr"]).map(|c| c * 100.0)),
            ));
        }
        Metric::VqaAccuracy { .. } => {
            summary
                .columns
                .push((task.title.into(), col(number(metrics, &["accuracy"]))));
        }
        Metric::MultipleChoice | Metric::CircularChoice | Metric::Mmmu => {
            let overall = number(metrics, &["Overall"])
                .or_else(|| number(metrics, &["table", "none", "Overall"]))
                .or_else(|| number(metrics, &["table", "dev", "Overall"]))
                .or_else(|| number(metrics, &["table", "validation", "Overall"]));
            summary
                .columns
                .push((task.title.into(), col(overall.map(|v| v * 100.0))));
            for (key, title) in [
                ("categories", "categories"),
                ("l2-categories", "l2-categories"),
            ] {
                let values = bars_of(metrics.get(key), 100.0);
                if !values.is_empty() {
                    summary.charts.push(Chart::Bars {
                        title: format!("{} {title} (accuracy %)", task.title),
                        values,
                        max: 100.0,
                    });
                }
            }
        }
        Metric::Mme => {
            summary
                .columns
                .push(("MME-total".into(), col(number(metrics, &["total"]))));
            summary
                .columns
                .push(("MME-P".into(), col(number(metrics, &["perception"]))));
            summary
                .columns
                .push(("MME-C".into(), col(number(metrics, &["reasoning"]))));
            let values = bars_of(metrics.get("subtasks"), 1.0);
            for (k, v) in &values {
                summary
                    .details
                    .push((format!("subtask {k}"), format!("{v:.2}")));
            }
            summary.charts.push(Chart::Bars {
                title: "MME subtasks (acc + acc+)".into(),
                values,
                max: 200.0,
            });
        }
        Metric::Pope => {
            summary
                .columns
                .push((task.title.into(), col(number(metrics, &["Overall"]))));
            for key in ["acc", "precision", "recall"] {
                if let Some(v) = number(metrics, &[key]) {
                    summary.details.push((key.into(), format!("{v:.2}")));
                }
            }
            summary.charts.push(Chart::Confusion {
                title: "POPE answers (items)".into(),
                counts: pope_confusion(metrics, reference),
            });
        }
        Metric::Judge => match number(metrics, &["score"]) {
            Some(score) => {
                summary.columns.push((task.title.into(), Ok(score)));
                if let Some(j) = metrics.get("judge").and_then(Value::as_str) {
                    summary.details.push((
                        "judge".into(),
                        format!("{j} (blip3's grading prompt, not the benchmark's official one)"),
                    ));
                }
                let values = bars_of(metrics.get("categories"), 1.0);
                if !values.is_empty() {
                    summary.charts.push(Chart::Bars {
                        title: format!("{} categories (judged %)", task.title),
                        values,
                        max: 100.0,
                    });
                }
            }
            None => summary
                .columns
                .push((task.title.into(), Err("needs a judge (--judge-url)".into()))),
        },
    }
    summary
}

/// Grades every answer of a judge benchmark: `score` is the mean grade
/// ×100, also per `category`, with each item's grade under `per_id`.
pub fn judged(
    records: &[PredictionRecord],
    reference: &Value,
    judge: &Judge,
) -> Result<Value, EvalError> {
    let mut per_id = serde_json::Map::new();
    let mut categories: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    let mut total = 0.0;
    for r in records {
        let entry = reference.get(&r.id).ok_or_else(|| {
            EvalError::data("references", format!("no reference for item {}", r.id))
        })?;
        let text = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or_default();
        let grade = judge.grade(text("question"), text("answer"), &r.answer)?;
        total += grade;
        let c = categories.entry(text("category").to_string()).or_default();
        c.0 += grade;
        c.1 += 1;
        per_id.insert(r.id.clone(), grade.into());
    }
    let n = records.len().max(1) as f64;
    let categories: serde_json::Map<String, Value> = categories
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, (sum, count))| (k, (100.0 * sum / count as f64).into()))
        .collect();
    Ok(serde_json::json!({
        "score": 100.0 * total / n,
        "categories": categories,
        "judge": format!("{} at {}", judge.model, judge.url),
        "per_id": per_id,
    }))
}

/// Scores a finished run. Failed items count as empty answers (wrong).
/// Judge benchmarks are graded by `judge` when one is given.
pub fn score_run(
    task: &Task,
    records: &[PredictionRecord],
    reference: &Value,
    options: &ScorerOptions,
    judge: Option<&Judge>,
) -> Result<Scored, EvalError> {
    let preds: Vec<Prediction> = records
        .iter()
        .map(|r| Prediction {
            id: r.id.clone(),
            answer: r.answer.clone(),
        })
        .collect();
    let metrics = match (scorer_of(task.metric), judge) {
        (Some(name), _) => score_named(name, &preds, reference, options)?,
        (None, Some(judge)) => judged(records, reference, judge)?,
        (None, None) => serde_json::json!({"needs_judge": true}),
    };
    let mut summary = summarise(task, &metrics, reference);
    summary.items = records.len();
    summary.failed = records.iter().filter(|r| r.error.is_some()).count();
    Ok(Scored { metrics, summary })
}
