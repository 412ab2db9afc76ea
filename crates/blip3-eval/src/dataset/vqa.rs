//! VQA benchmarks (VQAv2, OK-VQA, TextVQA, VizWiz) in VQAv2's layout: a
//! questions file `{"questions": [{question_id, image_id, question}]}` and an
//! annotations file `{"annotations": [{question_id, answers: [{answer, ...}]}]}`.
//!
//! Image files are found as OpenFlamingo names them: VQAv2 and OK-VQA
//! `COCO_{train2014|val2014}_{image_id:012}.jpg` (the split from the image
//! folder's name), VizWiz the `image_id` string itself, TextVQA
//! `{image_id}.jpg`; an entry may also name its file in `image` or `file_name`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{id_of, read_json, Dataset, EvalItem, ImageRef};
use crate::EvalError;

/// The annotations file that goes with `questions`: given, or the same name
/// with `questions` replaced by `annotations` (OpenFlamingo's
/// `*_questions_vqa_format.json`), or VQAv2's `v2_mscoco_{split}_annotations.json`.
pub fn annotations_path(questions: &Path, given: Option<&Path>) -> Result<PathBuf, EvalError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let name = questions
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut candidates = Vec::new();
    if name.contains("questions") {
        candidates.push(name.replace("questions", "annotations"));
    }
    if let Some(split) = name
        .strip_prefix("v2_OpenEnded_mscoco_")
        .and_then(|s| s.strip_suffix("_questions.json"))
    {
        candidates.push(format!("v2_mscoco_{split}_annotations.json"));
    }
    let dir = questions.parent().unwrap_or(Path::new("."));
    candidates
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.exists())
        .ok_or_else(|| {
            EvalError::Usage(format!(
                "no annotations file found beside {}: give --annotations",
                questions.display()
            ))
        })
}

fn image_file(question: &Value, images: &Path) -> Option<PathBuf> {
    for key in ["image", "file_name"] {
        if let Some(f) = question.get(key).and_then(Value::as_str) {
            return Some(images.join(f));
        }
    }
    let image_id = question.get("image_id")?;
    if let Some(name) = image_id.as_str() {
        // VizWiz: the id is the file name.
        return Some(images.join(name));
    }
    let n = image_id.as_u64()?;
    let folder = images
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let mut candidates = Vec::new();
    if ["train2014", "val2014", "test2015"].contains(&folder) {
        candidates.push(images.join(format!("COCO_{folder}_{n:012}.jpg")));
    }
    candidates.push(images.join(format!("{n}.jpg")));
    candidates.push(images.join(format!("{n}.png")));
    let first = candidates[0].clone();
    Some(candidates.into_iter().find(|p| p.exists()).unwrap_or(first))
}

/// Questions as items and their human answers as the reference
/// (`{question_id: [answers in file order]}`).
pub fn load(
    questions_path: &Path,
    annotations: &Path,
    images: &Path,
) -> Result<Dataset, EvalError> {
    let qname = questions_path.display().to_string();
    let aname = annotations.display().to_string();
    let questions = read_json(questions_path)?;
    let annotations = read_json(annotations)?;
    let Some(questions) = questions.get("questions").and_then(Value::as_array) else {
        return Err(EvalError::data(&qname, "no \"questions\" array"));
    };
    let Some(annotations) = annotations.get("annotations").and_then(Value::as_array) else {
        return Err(EvalError::data(&aname, "no \"annotations\" array"));
    };
    let mut answers: HashMap<String, Vec<String>> = HashMap::new();
    for (i, a) in annotations.iter().enumerate() {
        let at = || format!("{aname}: annotations[{i}]");
        let id =
            id_of(a.get("question_id")).ok_or_else(|| EvalError::data(at(), "no question_id"))?;
        let list = a
            .get("answers")
            .and_then(Value::as_array)
            .ok_or_else(|| EvalError::data(at(), "no \"answers\" array"))?;
        let texts = list
            .iter()
            .map(|x| {
                x.get("answer")
                    .and_then(Value::as_str)
                    .or_else(|| x.as_str())
                    .map(str::to_string)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EvalError::data(at(), "an answer without an \"answer\" string"))?;
        if texts.is_empty() {
            return Err(EvalError::data(at(), "no answers"));
        }
        if answers.insert(id.clone(), texts).is_some() {
            return Err(EvalError::data(
                at(),
                format!("question {id} annotated twice"),
            ));
        }
    }
    let mut items = Vec::with_capacity(questions.len());
    let mut reference = serde_json::Map::new();
    for (i, q) in questions.iter().enumerate() {
        let at = || format!("{qname}: questions[{i}]");
        let id =
            id_of(q.get("question_id")).ok_or_else(|| EvalError::data(at(), "no question_id"))?;
        let text = q
            .get("question")
            .and_then(Value::as_str)
            .ok_or_else(|| EvalError::data(at(), "no \"question\" string"))?;
        let image = image_file(q, images).ok_or_else(|| EvalError::data(at(), "no image_id"))?;
        let human = answers
            .remove(&id)
            .ok_or_else(|| EvalError::data(at(), format!("question {id} has no annotation")))?;
        items.push(EvalItem {
            id: id.clone(),
            images: vec![ImageRef::File(image)],
            question: Some(text.to_string()),
            // OpenFlamingo's demonstrations show the first human answer.
            answer: human.first().cloned(),
        });
        if reference.insert(id.clone(), human.into()).is_some() {
            return Err(EvalError::data(
                at(),
                format!("question {id} appears twice"),
            ));
        }
    }
    Ok(Dataset {
        items,
        reference: Value::Object(reference),
        md5: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_answers_and_image_names() {
        let dir = std::env::temp_dir().join(format!("blip3-vqa-{}", std::process::id()));
        let images = dir.join("val2014");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("COCO_val2014_000000000042.jpg"), b"x").unwrap();
        let q = dir.join("val_questions_vqa_format.json");
        std::fs::write(
            &q,
            serde_json::json!({"questions": [
                {"question_id": 5, "image_id": 42, "question": "What?"},
                {"question_id": 6, "image_id": "VizWiz_val_1.jpg", "question": "Who?"}
            ]})
            .to_string(),
        )
        .unwrap();
        let a = dir.join("val_annotations_vqa_format.json");
        std::fs::write(
            &a,
            serde_json::json!({"annotations": [
                {"question_id": 6, "answers": [{"answer": "me", "answer_id": 1}]},
                {"question_id": 5, "answers": [{"answer": "two"}, {"answer": "2"}]}
            ]})
            .to_string(),
        )
        .unwrap();
        let found = annotations_path(&q, None).unwrap();
        assert_eq!(found, a);
        let loaded = load(&q, &found, &images).unwrap();
        let items = loaded.items;
        let refs = loaded.reference;
        assert_eq!(
            items[0].images[0],
            ImageRef::File(images.join("COCO_val2014_000000000042.jpg"))
        );
        assert_eq!(
            items[1].images[0],
            ImageRef::File(images.join("VizWiz_val_1.jpg"))
        );
        assert_eq!(items[0].answer.as_deref(), Some("two"));
        assert_eq!(refs["5"], serde_json::json!(["two", "2"]));
        std::fs::write(&a, serde_json::json!({"annotations": []}).to_string()).unwrap();
        let e = load(&q, &a, &images).unwrap_err().to_string();
        assert!(e.contains("no annotation"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
