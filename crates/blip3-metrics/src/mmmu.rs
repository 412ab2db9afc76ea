//! MMMU scoring (spec §3.4.5): multiple choice as [`crate::mcq`], after VLMEvalKit's
//! `MMMU_preproc` turns each open question (no option A) into a two-option question whose A is
//! the ground-truth answer text and B is "Other Answers", with A as the right letter. An open
//! answer is therefore right when the prediction contains the answer text and not "other
//! answers" (or names the letter A on its own).
//!
//! REF layout: as [`crate::mcq`], options A…I where the question has them; open questions have
//! no letter keys and their answer text in `answer`. The card's MMMU-val number is the
//! `validation` split's `Overall`.

use serde_json::Value;

use crate::mcq::{self, McqOptions};
use crate::pandas_cells::Cell;
use crate::vlmevalkit::ScoreOptions;
use crate::{MetricsError, Prediction};

/// Option B's text for an open question.
pub const OTHER_ANSWERS: &str = "Other Answers";

/// `MMMU_preproc` on one item: when option A is missing, A becomes the answer (as the eval
/// file holds it) and B becomes [`OTHER_ANSWERS`].
pub fn preprocess(a: &mut Cell, b: &mut Cell, answer: &Cell) {
    if *a == Cell::Missing {
        *a = answer.clone();
        *b = Cell::Text(OTHER_ANSWERS.into());
    }
}

/// The letter scored as right: the answer when it is a single capital letter, else `A`.
pub fn ground_truth(answer: &Cell) -> String {
    match answer.as_text() {
        Some(s) if s.len() == 1 && s.bytes().all(|b| b.is_ascii_uppercase()) => s.to_string(),
        _ => "A".into(),
    }
}

/// Scores MMMU predictions as VLMEvalKit scores `MMMU_DEV_VAL` under `options.rule`.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: &ScoreOptions,
) -> Result<Value, MetricsError> {
    mcq::score_json(
        preds,
        reference,
        &McqOptions::for_dataset("MMMU_DEV_VAL", *options),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_questions_become_two_options() {
        let mut a = Cell::Missing;
        let mut b = Cell::Missing;
        preprocess(&mut a, &mut b, &Cell::Text("5".into()));
        assert_eq!(
            (a, b),
            (Cell::Text("5".into()), Cell::Text(OTHER_ANSWERS.into()))
        );
        assert_eq!(ground_truth(&Cell::Text("C".into())), "C");
        assert_eq!(ground_truth(&Cell::Text("5".into())), "A");
        assert_eq!(ground_truth(&Cell::Missing), "A");

        let reference = json!({
            "1": {"answer": "5", "split": "validation"},
            "2": {"answer": "Paris", "split": "validation"},
            "3": {"answer": "B", "A": "x", "B": "y", "split": "validation"},
        });
        let preds: Vec<Prediction> = [
            ("1", "It is 5."),
            ("2", "Paris or other answers"),
            ("3", "y"),
        ]
        .iter()
        .map(|(id, a)| Prediction {
            id: id.to_string(),
            answer: a.to_string(),
        })
        .collect();
        let out = score_json(&preds, &reference, &ScoreOptions::default()).unwrap();
        assert_eq!(out["per_id"]["1"]["extracted"], json!("A"));
        assert_eq!(out["per_id"]["2"]["extracted"], Value::Null);
        assert_eq!(out["Overall"], json!(2.0 / 3.0));
    }
}
