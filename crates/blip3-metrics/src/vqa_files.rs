//! VQAv2-style question and annotation files, as the official API and OpenFlamingo read them:
//! `{"questions": [{"question_id", "image_id", "question"}, ...]}` and
//! `{"annotations": [{"question_id", "answers": [{"answer", "answer_id", ...}, ...],
//! "answer_type", "question_type", "multiple_choice_answer", ...}, ...]}`.
//!
//! Ids may be integers (VQAv2, OK-VQA, TextVQA) or strings; both are kept as their string
//! form, matching the ids of predictions files. Answer objects keep their other fields
//! (`answer_id`, `answer_confidence`), which decide leave-one-out in [`crate::vqa`].

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::predictions::id_string;
use crate::vqa::{ref_answer, RefAnswer, VqaReferences};
use crate::MetricsError;

/// One question of a questions file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaQuestion {
    /// Question id (string form).
    pub question_id: String,
    /// Image id (string form; VQAv2 uses integers, TextVQA and VizWiz strings).
    pub image_id: String,
    /// The question text.
    pub question: String,
}

/// One annotation: the reference answers of a question.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaAnnotation {
    /// Question id (string form).
    pub question_id: String,
    /// Image id, when the annotation has one.
    pub image_id: Option<String>,
    /// The human answers, in file order.
    pub answers: Vec<RefAnswer>,
    /// `answer_type` (`yes/no`, `number`, `other`), when present.
    pub answer_type: Option<String>,
    /// `question_type` (e.g. `what color is the`), when present.
    pub question_type: Option<String>,
    /// `multiple_choice_answer` (the most common answer), when present.
    pub multiple_choice_answer: Option<String>,
}

/// A questions file joined with its annotations file.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaDataset {
    /// Questions in file order.
    pub questions: Vec<VqaQuestion>,
    /// Annotations by question id.
    pub annotations: BTreeMap<String, VqaAnnotation>,
}

impl VqaDataset {
    /// The reference answers per question id, ready for [`crate::vqa::score`].
    pub fn references(&self) -> VqaReferences {
        self.annotations
            .iter()
            .map(|(id, a)| (id.clone(), a.answers.clone()))
            .collect()
    }

    /// The reference answers of one question.
    pub fn answers(&self, question_id: &str) -> Option<&[RefAnswer]> {
        self.annotations
            .get(question_id)
            .map(|a| a.answers.as_slice())
    }
}

fn format_error(location: String, problem: impl Into<String>) -> MetricsError {
    MetricsError::Format {
        location,
        problem: problem.into(),
    }
}

/// The array under `key` of a top-level object.
fn top_list<'a>(value: &'a Value, key: &str, name: &str) -> Result<&'a [Value], MetricsError> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| format_error(name.to_string(), format!("no \"{key}\" list")))
}

fn required_id(entry: &Value, key: &str, location: &str) -> Result<String, MetricsError> {
    entry.get(key).and_then(id_string).ok_or_else(|| {
        format_error(
            location.to_string(),
            format!("no \"{key}\" (string or integer)"),
        )
    })
}

fn optional_string(entry: &Value, key: &str) -> Option<String> {
    entry.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Parses a questions file.
pub fn parse_questions(value: &Value) -> Result<Vec<VqaQuestion>, MetricsError> {
    let list = top_list(value, "questions", "questions file")?;
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, q)| {
            let location = format!("questions[{i}]");
            let question_id = required_id(q, "question_id", &location)?;
            if !seen.insert(question_id.clone()) {
                return Err(format_error(
                    location,
                    format!("question id {question_id} appears twice"),
                ));
            }
            Ok(VqaQuestion {
                image_id: required_id(q, "image_id", &location)?,
                question: optional_string(q, "question")
                    .ok_or_else(|| format_error(location.clone(), "no \"question\" string"))?,
                question_id,
            })
        })
        .collect()
}

/// Parses an annotations file, keeping file order.
pub fn parse_annotations(value: &Value) -> Result<Vec<VqaAnnotation>, MetricsError> {
    let list = top_list(value, "annotations", "annotations file")?;
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let location = format!("annotations[{i}]");
            let question_id = required_id(a, "question_id", &location)?;
            if !seen.insert(question_id.clone()) {
                return Err(format_error(
                    location,
                    format!("question id {question_id} appears twice"),
                ));
            }
            let answers = a
                .get("answers")
                .and_then(Value::as_array)
                .ok_or_else(|| format_error(location.clone(), "no \"answers\" list"))?
                .iter()
                .enumerate()
                .map(|(j, ans)| ref_answer(ans, &format!("{location}.answers[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(VqaAnnotation {
                image_id: a.get("image_id").and_then(id_string),
                answers,
                answer_type: optional_string(a, "answer_type"),
                question_type: optional_string(a, "question_type"),
                multiple_choice_answer: optional_string(a, "multiple_choice_answer"),
                question_id,
            })
        })
        .collect()
}

/// Joins parsed questions and annotations; every annotation must belong to a question.
pub fn join(
    questions: Vec<VqaQuestion>,
    annotations: Vec<VqaAnnotation>,
) -> Result<VqaDataset, MetricsError> {
    let known: std::collections::HashSet<&str> =
        questions.iter().map(|q| q.question_id.as_str()).collect();
    if let Some(orphan) = annotations
        .iter()
        .find(|a| !known.contains(a.question_id.as_str()))
    {
        return Err(MetricsError::Mismatch(format!(
            "annotation for question id {} has no question in the questions file",
            orphan.question_id
        )));
    }
    let annotations = annotations
        .into_iter()
        .map(|a| (a.question_id.clone(), a))
        .collect();
    Ok(VqaDataset {
        questions,
        annotations,
    })
}

fn read_json(path: &Path) -> Result<Value, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|e| MetricsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| MetricsError::Format {
        location: path.display().to_string(),
        problem: format!("not JSON ({e})"),
    })
}

/// Reads an annotations file alone (all that scoring needs).
pub fn read_annotations(path: &Path) -> Result<Vec<VqaAnnotation>, MetricsError> {
    parse_annotations(&read_json(path)?).map_err(|e| with_file(e, path))
}

/// Reads a questions file and its annotations file.
pub fn read_vqa_files(questions: &Path, annotations: &Path) -> Result<VqaDataset, MetricsError> {
    let q = parse_questions(&read_json(questions)?).map_err(|e| with_file(e, questions))?;
    let a = read_annotations(annotations)?;
    join(q, a)
}

/// Prefixes a format error's location with the file it came from.
fn with_file(e: MetricsError, path: &Path) -> MetricsError {
    match e {
        MetricsError::Format { location, problem } => MetricsError::Format {
            location: format!("{}: {location}", path.display()),
            problem,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_joins() {
        let q = json!({"questions": [
            {"question_id": 1, "image_id": 9, "question": "what?"},
            {"question_id": "x", "image_id": "img", "question": "who?"}]});
        let a = json!({"annotations": [{"question_id": 1, "answers": [
            {"answer": "yes", "answer_id": 1, "answer_confidence": "yes"}, {"answer": "no", "answer_id": 2}],
            "answer_type": "yes/no", "question_type": "is the", "multiple_choice_answer": "yes"}]});
        let ds = join(parse_questions(&q).unwrap(), parse_annotations(&a).unwrap()).unwrap();
        assert_eq!(ds.questions[1].image_id, "img");
        let ann = &ds.annotations["1"];
        assert_eq!(ann.answer_type.as_deref(), Some("yes/no"));
        assert_eq!(ds.answers("1").unwrap()[1].answer, "no");
        assert_eq!(ds.references().len(), 1);
    }

    #[test]
    fn errors() {
        assert!(parse_questions(&json!({})).is_err());
        assert!(
            parse_questions(&json!({"questions": [{"question_id": 1, "image_id": 1}]})).is_err()
        );
        assert!(parse_annotations(&json!({"annotations": [{"question_id": 1}]})).is_err());
        assert!(parse_annotations(&json!({"annotations": [{"answers": []}]})).is_err());
        let dup = json!({"annotations": [{"question_id": 1, "answers": []}, {"question_id": 1, "answers": []}]});
        assert!(parse_annotations(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let a = parse_annotations(&json!({"annotations": [{"question_id": 2, "answers": []}]}))
            .unwrap();
        assert!(join(vec![], a).is_err());
    }
}
