//! MMBench circular evaluation (spec §3.4.2): an item and its rotated copies (ids g + k·10⁶,
//! options shifted, each with its own answer letter) count as one question, right only if every
//! copy present is answered right. Scoring is [`crate::mcq`] with circular grouping; the card's
//! MMBench-dev number is `Overall` of split `dev`.
//!
//! REF layout: `{id: {"answer": "B", "A": …, "B": …, "C": …, "D": …, "category": …,
//! "l2-category": …, "split": "dev"}}` with integer ids.

use serde_json::Value;

use crate::mcq::{self, McqOptions};
use crate::vlmevalkit::ScoreOptions;
use crate::{MetricsError, Prediction};

/// Scores MMBench predictions as VLMEvalKit scores `MMBench_DEV_EN` under `options.rule`.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
) -> Result<Value, MetricsError> {
    mcq::score_json(
        preds,
        reference,
        &McqOptions::for_dataset("MMBench_DEV_EN", *options),
    )
}
