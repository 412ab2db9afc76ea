//! The benchmarks `blip3 eval` knows: each fixes its dataset format, how the
//! model is asked (few-shot completion or a chat turn), the answer budget
//! and the scorer.

use crate::EvalError;

/// How a benchmark's files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// COCO-style caption JSON (`images` + `annotations`), or Karpathy's
    /// `dataset_coco.json` (`images[].sentences`, `split`).
    CocoCaptions,
    /// VQAv2-style question and annotation JSON files.
    VqaV2,
    /// A VLMEvalKit TSV with base64 images.
    VlmEvalKitTsv,
}

/// Which scorer turns answers into the benchmark's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// CIDEr-D (pycocoevalcap 1.2), reported ×100 as the model card does.
    Cider,
    /// VQA accuracy; `stem` applies the OK-VQA stemmer to predictions.
    VqaAccuracy {
        /// OK-VQA answer stemming.
        stem: bool,
    },
    /// Multiple choice with VLMEvalKit's `can_infer` (SEED, MMStar, AI2D, ScienceQA).
    MultipleChoice,
    /// MMBench: multiple choice, circular over the option rotations.
    CircularChoice,
    /// MMMU: multiple choice after `MMMU_preproc` (open questions too).
    Mmmu,
    /// MME: acc + acc⁺ per subtask, perception / cognition / total.
    Mme,
    /// POPE: F1 (the card's column), accuracy, precision, recall.
    Pope,
    /// Graded by an LLM judge (MM-Vet, MathVista): needs `--judge-url`.
    Judge,
}

/// How the model is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptStyle {
    /// OpenFlamingo few-shot completion (`<image>Output:`), base models.
    FewShotCaption,
    /// OpenFlamingo few-shot completion (`<image>Question:{q} Short answer:`).
    FewShotVqa,
    /// One chat turn, images first, then VLMEvalKit's prompt text.
    Chat,
}

/// One benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// The name given to `--task`.
    pub name: &'static str,
    /// The column title in the model card's table.
    pub title: &'static str,
    /// Dataset layout.
    pub format: DataFormat,
    /// Scorer.
    pub metric: Metric,
    /// Prompt convention.
    pub prompt: PromptStyle,
    /// VLMEvalKit's dataset key, whose MD5 is checked (TSV tasks).
    pub vlmevalkit_key: Option<&'static str>,
    /// Default answer budget (OpenFlamingo: 20 caption, 5 VQA tokens;
    /// VLMEvalKit's xgen-mm wrapper: 1024).
    pub max_new_tokens: usize,
}

const fn caption(name: &'static str, title: &'static str) -> Task {
    Task {
        name,
        title,
        format: DataFormat::CocoCaptions,
        metric: Metric::Cider,
        prompt: PromptStyle::FewShotCaption,
        vlmevalkit_key: None,
        max_new_tokens: 20,
    }
}

const fn vqa(name: &'static str, title: &'static str, stem: bool) -> Task {
    Task {
        name,
        title,
        format: DataFormat::VqaV2,
        metric: Metric::VqaAccuracy { stem },
        prompt: PromptStyle::FewShotVqa,
        vlmevalkit_key: None,
        max_new_tokens: 5,
    }
}

const fn tsv(name: &'static str, title: &'static str, key: &'static str, metric: Metric) -> Task {
    Task {
        name,
        title,
        format: DataFormat::VlmEvalKitTsv,
        metric,
        prompt: PromptStyle::Chat,
        vlmevalkit_key: Some(key),
        max_new_tokens: 1024,
    }
}

/// Every benchmark of the model card's two tables, in the tables' order.
pub const TASKS: &[Task] = &[
    caption("coco", "COCO"),
    caption("nocaps", "NoCaps"),
    caption("textcaps", "TextCaps"),
    vqa("okvqa", "OKVQA", true),
    vqa("textvqa", "TextVQA", false),
    vqa("vizwiz", "VizWiz", false),
    vqa("vqav2", "VQAv2", false),
    tsv("seed", "SEED-IMG", "SEEDBench_IMG", Metric::MultipleChoice),
    tsv(
        "mmbench",
        "MMBench-dev",
        "MMBench_DEV_EN",
        Metric::CircularChoice,
    ),
    tsv("mme", "MME", "MME", Metric::Mme),
    tsv("mmstar", "MMStar", "MMStar", Metric::MultipleChoice),
    tsv("mmmu", "MMMU-val", "MMMU_DEV_VAL", Metric::Mmmu),
    tsv("mmvet", "MM-Vet", "MMVet", Metric::Judge),
    tsv(
        "mathvista",
        "MathVista-mini",
        "MathVista_MINI",
        Metric::Judge,
    ),
    tsv(
        "scienceqa",
        "ScienceQA-test",
        "ScienceQA_TEST",
        Metric::MultipleChoice,
    ),
    tsv("pope", "POPE", "POPE", Metric::Pope),
    tsv("ai2d", "AI2D", "AI2D_TEST", Metric::MultipleChoice),
];

impl Task {
    /// The task called `name` (case-insensitive).
    pub fn named(name: &str) -> Result<Task, EvalError> {
        TASKS
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
                EvalError::Usage(format!(
                    "unknown task {name:?}; known: {}",
                    known.join(", ")
                ))
            })
    }

    /// Whether the task is few-shot (pre-training table).
    pub fn is_few_shot(&self) -> bool {
        matches!(
            self.prompt,
            PromptStyle::FewShotCaption | PromptStyle::FewShotVqa
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for t in TASKS {
            assert_eq!(Task::named(&t.name.to_uppercase()).unwrap(), *t);
            assert_eq!(TASKS.iter().filter(|u| u.name == t.name).count(), 1);
        }
        let e = Task::named("imagenet").unwrap_err().to_string();
        assert!(e.contains("imagenet") && e.contains("coco"), "{e}");
    }
}
