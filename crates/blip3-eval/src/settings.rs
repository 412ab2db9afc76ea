//! What a run was asked to do, recorded in `run.json` beside its
//! predictions: a rerun resumes only under the same settings, and the
//! report prints them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// The settings that decide a run's answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `--task`.
    pub task: String,
    /// `--model` as given.
    pub model: String,
    /// The model's revision: the engine's fingerprint of its config and weights.
    pub model_revision: String,
    /// Family member (`blip3-r1 base`, `xgenmm-v15 instruct`, …).
    pub family: String,
    /// Weight format in memory (`--dtype` as resolved: f32, bf16).
    pub weight_format: String,
    /// `--quantize`, if any.
    pub quantize: Option<String>,
    /// `--data`.
    pub data: String,
    /// MD5 of the data file (TSV tasks).
    pub data_md5: Option<String>,
    /// Items asked for (`--limit`), if limited.
    pub limit: Option<usize>,
    /// Demonstrations per item (`--shots`).
    pub shots: usize,
    /// Sampler seed (`--seed`).
    pub seed: u32,
    /// Few-shot query-set size.
    pub query_set_size: usize,
    /// `<image placeholder>` tokens after each `<image>`.
    pub placeholders: usize,
    /// OpenFlamingo's zero-shot convention: two text-only demonstrations.
    pub zero_shot_text_demos: bool,
    /// Answer budget.
    pub max_new_tokens: usize,
    /// Decoding rule.
    pub decoding: String,
    /// Scorer options (VQA ground-truth normalisation, answer-extraction rule).
    pub scorer: String,
}

/// Name of the settings file in a run folder.
pub const SETTINGS_FILE: &str = "run.json";

/// Records `settings` in `out`, or checks them against those already there,
/// so that a resumed run never mixes answers from two configurations.
pub fn record_or_check(out: &Path, settings: &Settings) -> Result<(), EvalError> {
    std::fs::create_dir_all(out).map_err(|e| EvalError::io(out, e))?;
    let path = out.join(SETTINGS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let old: Settings = serde_json::from_str(&text).map_err(|e| {
                EvalError::data(
                    path.display().to_string(),
                    format!("not a run record ({e})"),
                )
            })?;
            let diffs = differences(&old, settings);
            if diffs.is_empty() {
                Ok(())
            } else {
                Err(EvalError::Usage(format!(
                    "{} holds a run with other settings ({}); use another --out, or delete it to start over",
                    out.display(),
                    diffs.join(", ")
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(settings)
                .map_err(|e| EvalError::data(path.display().to_string(), e.to_string()))?;
            std::fs::write(&path, text).map_err(|e| EvalError::io(&path, e))
        }
        Err(e) => Err(EvalError::io(&path, e)),
    }
}

fn differences(old: &Settings, new: &Settings) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["unreadable".into()];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: was {v}, now {}",
                b.get(k).cloned().unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) fn example() -> Settings {
    Settings {
        task: "coco".into(),
        model: "m".into(),
        model_revision: "abc".into(),
        family: "blip3-r1 base".into(),
        weight_format: "f32".into(),
        quantize: None,
        data: "d.json".into(),
        data_md5: None,
        limit: Some(3),
        shots: 4,
        seed: 42,
        query_set_size: 2048,
        placeholders: 0,
        zero_shot_text_demos: false,
        max_new_tokens: 20,
        decoding: "greedy".into(),
        scorer: "cider".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_run_must_keep_its_settings() {
        let out = std::env::temp_dir().join(format!("blip3-settings-{}", std::process::id()));
        std::fs::remove_dir_all(&out).ok();
        let s = example();
        record_or_check(&out, &s).unwrap();
        record_or_check(&out, &s).unwrap();
        let mut other = s.clone();
        other.shots = 8;
        let e = record_or_check(&out, &other).unwrap_err().to_string();
        assert!(e.contains("shots: was 4, now 8"), "{e}");
        std::fs::remove_dir_all(&out).ok();
    }
}
