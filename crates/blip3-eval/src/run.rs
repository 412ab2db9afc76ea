//! A resumable benchmark run: items go to an [`Answerer`] in batches, each
//! answer is appended to `predictions.jsonl` as soon as its batch ends, and a
//! rerun with the same settings continues after the last recorded answer.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dataset::{EvalItem, ImageRef};
use crate::task::PromptStyle;
use crate::EvalError;

/// One demonstration shown before the query (few-shot tasks).
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// Its images (none for OpenFlamingo's text-only zero-shot demonstrations).
    pub images: Vec<ImageRef>,
    /// Its question (VQA).
    pub question: Option<String>,
    /// Its answer or caption.
    pub answer: String,
}

/// What the model is asked for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRequest {
    /// The item's id.
    pub id: String,
    /// Prompt convention.
    pub style: PromptStyle,
    /// Demonstrations, in prompt order.
    pub shots: Vec<Shot>,
    /// The query's images.
    pub images: Vec<ImageRef>,
    /// The query's question (VQA) or whole user text (chat tasks).
    pub question: Option<String>,
    /// Answer budget in tokens.
    pub max_new_tokens: usize,
}

/// The model's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer after the task's post-processing (what is scored).
    pub answer: String,
    /// The generated text as decoded.
    pub raw: String,
}

/// The model side of a run. The CLI implements it over the engine; tests
/// over a table of canned answers.
pub trait Answerer {
    /// Answers a batch; one result per request, in order. An `Err` is that
    /// item's failure (recorded, retried by the next run), not the run's.
    fn answer(&mut self, batch: &[EvalRequest]) -> Vec<Result<Answer, String>>;
}

/// How far a run is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Items answered (including those found from an earlier run).
    pub done: usize,
    /// Items in the run.
    pub total: usize,
    /// Of `done`, those answered in this process.
    pub answered_now: usize,
    /// Time spent answering in this process.
    pub elapsed: Duration,
}

impl Progress {
    /// Estimated time left, from this process's pace.
    pub fn eta(&self) -> Option<Duration> {
        if self.answered_now == 0 {
            return None;
        }
        let per_item = self.elapsed.as_secs_f64() / self.answered_now as f64;
        Some(Duration::from_secs_f64(
            per_item * (self.total - self.done) as f64,
        ))
    }
}

/// One line of `predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Item id.
    pub id: String,
    /// Post-processed answer ("" when the item failed).
    pub answer: String,
    /// Generated text.
    #[serde(default)]
    pub raw: String,
    /// Why the item failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The predictions file of a run folder.
pub fn predictions_path(out: &Path) -> PathBuf {
    out.join("predictions.jsonl")
}

/// Reads the answers recorded so far: the last record of each id wins; a
/// torn last line (the process was killed mid-write) is ignored.
pub fn read_records(path: &Path) -> Result<Vec<PredictionRecord>, EvalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(EvalError::io(path, e)),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut order: Vec<String> = Vec::new();
    let mut latest: HashMap<String, PredictionRecord> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let record: PredictionRecord = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(EvalError::data(
                    format!("{} line {}", path.display(), i + 1),
                    format!("not a prediction record ({e})"),
                ))
            }
        };
        if !latest.contains_key(&record.id) {
            order.push(record.id.clone());
        }
        latest.insert(record.id.clone(), record);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| latest.remove(&id))
        .collect())
}

/// Runs `requests` through `answerer`, `batch` at a time, skipping those
/// with a successful record in `out`'s predictions file. Returns the final
/// records, one per request, in request order.
pub fn run(
    requests: &[EvalRequest],
    answerer: &mut dyn Answerer,
    out: &Path,
    batch: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<PredictionRecord>, EvalError> {
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let path = predictions_path(out);
    let mut known: HashMap<String, PredictionRecord> = read_records(&path)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let pending: Vec<&EvalRequest> = requests
        .iter()
        .filter(|r| known.get(&r.id).is_none_or(|k| k.error.is_some()))
        .collect();
    // A torn last line (killed mid-write) is cut off before appending.
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            std::fs::write(&path, &bytes[..keep]).map_err(|e| EvalError::io(&path, e))?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| EvalError::io(&path, e))?;
    let total = requests.len();
    let start = Instant::now();
    let mut answered_now = 0;
    let report = |answered_now: usize| Progress {
        done: total - pending.len() + answered_now,
        total,
        answered_now,
        elapsed: start.elapsed(),
    };
    progress(report(0));
    for chunk in pending.chunks(batch.max(1)) {
        let owned: Vec<EvalRequest> = chunk.iter().map(|r| (*r).clone()).collect();
        let answers = answerer.answer(&owned);
        let mut lines = String::new();
        for (request, answer) in chunk.iter().zip(answers) {
            let record = match answer {
                Ok(a) => PredictionRecord {
                    id: request.id.clone(),
                    answer: a.answer,
                    raw: a.raw,
                    error: None,
                },
                Err(e) => PredictionRecord {
                    id: request.id.clone(),
                    answer: String::new(),
                    raw: String::new(),
                    error: Some(e),
                },
            };
            lines.push_str(
                &serde_json::to_string(&record)
                    .map_err(|e| EvalError::data(path.display().to_string(), e.to_string()))?,
            );
            lines.push('\n');
            known.insert(record.id.clone(), record);
        }
        file.write_all(lines.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| EvalError::io(&path, e))?;
        answered_now += chunk.len();
        progress(report(answered_now));
    }
    requests
        .iter()
        .map(|r| {
            known.remove(&r.id).ok_or_else(|| {
                EvalError::data(
                    path.display().to_string(),
                    format!("no answer for {}", r.id),
                )
            })
        })
        .collect()
}

/// The request for `item`, with its demonstrations.
pub fn request_for(
    item: &EvalItem,
    style: PromptStyle,
    shots: Vec<Shot>,
    max_new_tokens: usize,
) -> EvalRequest {
    EvalRequest {
        id: item.id.clone(),
        style,
        shots,
        images: item.images.clone(),
        question: item.question.clone(),
        max_new_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Canned {
        calls: usize,
        fail: Option<String>,
    }

    impl Answerer for Canned {
        fn answer(&mut self, batch: &[EvalRequest]) -> Vec<Result<Answer, String>> {
            self.calls += 1;
            batch
                .iter()
                .map(|r| {
                    if Some(&r.id) == self.fail.as_ref() {
                        Err("bad image".into())
                    } else {
                        Ok(Answer {
                            answer: format!("a{}", r.id),
                            raw: format!(" a{}", r.id),
                        })
                    }
                })
                .collect()
        }
    }

    fn requests(n: usize) -> Vec<EvalRequest> {
        (0..n)
            .map(|i| EvalRequest {
                id: i.to_string(),
                style: PromptStyle::Chat,
                shots: vec![],
                images: vec![],
                question: Some("q".into()),
                max_new_tokens: 1,
            })
            .collect()
    }

    #[test]
    fn resumes_after_recorded_answers_and_retries_failures() {
        let out = std::env::temp_dir().join(format!("blip3-run-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let reqs = requests(5);
        let mut a = Canned {
            calls: 0,
            fail: Some("3".into()),
        };
        let mut seen = Vec::new();
        let records = run(&reqs, &mut a, &out, 2, &mut |p| seen.push(p.done)).unwrap();
        assert_eq!(a.calls, 3);
        assert_eq!(seen, [0, 2, 4, 5]);
        assert_eq!(records[3].error.as_deref(), Some("bad image"));
        // Simulate a kill mid-write: a torn line at the end.
        let path = predictions_path(&out);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"id\": \"4\", \"ans").unwrap();
        drop(f);
        let mut b = Canned {
            calls: 0,
            fail: None,
        };
        let records = run(&reqs, &mut b, &out, 2, &mut |_| {}).unwrap();
        assert_eq!(b.calls, 1, "only the failed item is asked again");
        assert_eq!(records[3].answer, "a3");
        assert!(records.iter().all(|r| r.error.is_none()));
        assert_eq!(read_records(&path).unwrap().len(), 5);
        // A corrupt line in the middle is an error, not silently skipped.
        std::fs::write(&path, "garbage\n{\"id\":\"1\",\"answer\":\"x\"}\n").unwrap();
        assert!(read_records(&path)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn eta_follows_this_process_pace() {
        let p = Progress {
            done: 6,
            total: 10,
            answered_now: 2,
            elapsed: Duration::from_secs(4),
        };
        assert_eq!(p.eta(), Some(Duration::from_secs(8)));
    }
}
