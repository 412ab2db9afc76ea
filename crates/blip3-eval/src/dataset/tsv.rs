//! VLMEvalKit benchmarks (SEED, MMBench, MME, MMStar, MMMU, MM-Vet, MathVista,
//! ScienceQA, POPE, AI2D) from their TSV files with base64 images: the items,
//! each with the user text VLMEvalKit's May-2024 `build_prompt` writes, and
//! the scorer's reference built from the same file.
//!
//! Prompt text (spec `eval-protocols.md` §3.3): multiple choice is
//! `Hint: {hint}\n` (when the hint is not NaN) `Question: {question}\n`, then
//! `Options:\n` with `{letter}. {option}\n` for every option column that is
//! not NaN and `Please select the correct answer from the options above. \n`;
//! yes/no and open questions are the `question` field verbatim. Values are
//! printed as pandas typed them (a numeric option column prints `3` or `2.5`,
//! with NaN in it `3.0`), because that is what the model saw.

use std::path::Path;
use std::sync::Arc;

use blip3_metrics::pandas_cells::Cell;
use blip3_metrics::vlmevalkit_tsv::{self as vtsv, Benchmark, Tsv};

use super::{Dataset, EvalItem, ImageRef};
use crate::task::{Metric, Task};
use crate::EvalError;

/// Whether the task's prompt lists options.
fn is_multiple_choice(task: &Task) -> bool {
    matches!(
        task.metric,
        Metric::MultipleChoice | Metric::CircularChoice | Metric::Mmmu
    )
}

/// The typed cells of `name`, or a column of NaN when the file lacks it.
fn column(tsv: &Tsv, name: &str) -> Vec<Cell> {
    tsv.typed_column(name)
        .unwrap_or_else(|| vec![Cell::Missing; tsv.rows.len()])
}

/// The option letters that are columns of the file, in alphabetical order
/// (`string.ascii_uppercase` filtered by `cand in line`).
fn option_columns(tsv: &Tsv) -> Vec<(char, Vec<Cell>)> {
    ('A'..='Z')
        .filter_map(|l| {
            tsv.column(&l.to_string())
                .map(|_| (l, column(tsv, &l.to_string())))
        })
        .collect()
}

/// VLMEvalKit's user text for row `row`.
pub fn prompt_text(
    multiple_choice: bool,
    row: usize,
    question: &[Cell],
    hint: &[Cell],
    options: &[(char, Vec<Cell>)],
) -> String {
    let q = question[row].py_str_or_nan();
    if !multiple_choice {
        return q;
    }
    let mut text = String::new();
    if let Some(h) = hint[row].py_str() {
        text.push_str(&format!("Hint: {h}\n"));
    }
    text.push_str(&format!("Question: {q}\n"));
    let present: Vec<(char, String)> = options
        .iter()
        .filter_map(|(l, cells)| cells[row].py_str().map(|v| (*l, v)))
        .collect();
    if !present.is_empty() {
        text.push_str("Options:\n");
        for (l, v) in present {
            text.push_str(&format!("{l}. {v}\n"));
        }
        text.push_str("Please select the correct answer from the options above. \n");
    }
    text
}

/// Reads a VLMEvalKit TSV for `task`; with `check_md5`, a file whose MD5
/// differs from the one VLMEvalKit pins for the dataset is refused.
pub fn load(task: &Task, path: &Path, check_md5: bool) -> Result<Dataset, EvalError> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    let key = task.vlmevalkit_key.unwrap_or(task.name);
    let md5 = vtsv::md5_hex(&bytes);
    if check_md5 {
        vtsv::check_md5(key, &bytes).map_err(|e| {
            EvalError::data(
                path.display().to_string(),
                format!("{e}; --no-md5-check runs it anyway"),
            )
        })?;
    }
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| EvalError::data(&name, "not UTF-8 text"))?;
    let tsv = vtsv::parse_tsv(&text, &name)?;
    let ids = tsv.ids()?;
    let question = tsv
        .typed_column("question")
        .ok_or_else(|| EvalError::data(&name, "no \"question\" column"))?;
    let hint = column(&tsv, "hint");
    let options = option_columns(&tsv);
    let multiple_choice = is_multiple_choice(task);
    // Row of each id: a TSV may have tens of thousands of rows.
    let row_of: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(row, id)| (id.as_str(), row))
        .collect();
    let images = tsv.images()?;
    let mut items = Vec::with_capacity(images.ids().len());
    for id in images.ids() {
        let row = *row_of
            .get(id.as_str())
            .ok_or_else(|| EvalError::data(&name, format!("no row {id}")))?;
        let decoded = images
            .bytes(id)?
            .into_iter()
            .map(|b| ImageRef::Bytes(Arc::new(b)))
            .collect();
        items.push(EvalItem {
            id: id.clone(),
            images: decoded,
            question: Some(prompt_text(
                multiple_choice,
                row,
                &question,
                &hint,
                &options,
            )),
            answer: None,
        });
    }
    let reference = match Benchmark::from_dataset_key(key) {
        Some(b) => vtsv::build_reference(&tsv, b)?,
        // Judge benchmarks: what the judge needs, per item.
        None => {
            let answers = column(&tsv, "answer");
            let category = column(&tsv, "category");
            let mut map = serde_json::Map::new();
            for item in &items {
                let row = row_of.get(item.id.as_str()).copied().unwrap_or(0);
                map.insert(
                    item.id.clone(),
                    serde_json::json!({
                        "question": item.question,
                        "answer": answers[row].py_str(),
                        "category": category[row].py_str(),
                    }),
                );
            }
            serde_json::Value::Object(map)
        }
    };
    Ok(Dataset {
        items,
        reference,
        md5: Some(md5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(v: &[Option<&str>]) -> Vec<Cell> {
        blip3_metrics::pandas_cells::read_csv_column(v)
    }

    #[test]
    fn multiple_choice_prompt_as_vlmevalkit_2024_writes_it() {
        let question = cells(&[Some("What is it?"), Some("How many?")]);
        let hint = cells(&[Some("A photo."), None]);
        let options = vec![
            ('A', cells(&[Some("cat"), Some("1")])),
            ('B', cells(&[Some("dog"), Some("2.5")])),
            ('C', cells(&[None, None])),
        ];
        assert_eq!(
            prompt_text(true, 0, &question, &hint, &options),
            "Hint: A photo.\nQuestion: What is it?\nOptions:\nA. cat\nB. dog\nPlease select the correct answer from the options above. \n"
        );
        // B is a float column: pandas prints 2.5; A mixes text and stays text.
        assert_eq!(
            prompt_text(true, 1, &question, &hint, &options),
            "Question: How many?\nOptions:\nA. 1\nB. 2.5\nPlease select the correct answer from the options above. \n"
        );
        assert_eq!(
            prompt_text(false, 0, &question, &hint, &options),
            "What is it?"
        );
    }
}
