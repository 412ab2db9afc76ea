//! Few-shot prompts for the base models in the OpenFlamingo convention
//! (family spec §1.5) and the post-processing of their answers (§1.6).
//!
//! A demonstration is `<image>{placeholders}{prompt}{answer}<|endofchunk|>`
//! followed by a newline (OpenFlamingo's `evaluate.py`), the query is
//! `<image>{placeholders}{prompt}`; images go in the same order, the
//! demonstrations' first and the query's last.

use blip3_tokenizer::MarkedText;

use crate::prompt::{END_OF_CHUNK_TOKEN, IMAGE_PLACEHOLDER_TOKEN, IMAGE_TOKEN};

/// The evaluation task, which fixes the prompt strings and the post-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `Output:{caption}`.
    Caption,
    /// `Question:{q} Short answer:{a}`.
    Vqa,
}

impl Task {
    /// OpenFlamingo's default answer length (20 caption tokens, 5 for VQA).
    pub fn default_max_new_tokens(self) -> usize {
        match self {
            Self::Caption => 20,
            Self::Vqa => 5,
        }
    }
}

/// One demonstration: its question (VQA) and its answer or caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demo {
    /// The question (VQA only).
    pub question: Option<String>,
    /// The answer (VQA) or caption.
    pub answer: String,
}

/// Appends the text that follows an image: `Output:` or
/// `Question:{q} Short answer:` (the question is data, not template).
fn push_lead(text: &mut MarkedText, task: Task, question: Option<&str>) {
    match task {
        Task::Caption => text.template("Output:"),
        Task::Vqa => {
            text.template("Question:");
            text.plain(question.unwrap_or_default());
            text.template(" Short answer:");
        }
    }
}

/// `<image>` followed by `placeholders` copies of `<image placeholder>`
/// (the model card uses Q − 1 = 127 so each image occupies Q + 127 positions).
fn image_block(placeholders: usize) -> String {
    let mut s = String::from(IMAGE_TOKEN);
    s.push_str(&IMAGE_PLACEHOLDER_TOKEN.repeat(placeholders));
    s
}

/// The whole few-shot prompt for `demos` then a query with `question` (VQA).
pub fn prompt(task: Task, demos: &[Demo], question: Option<&str>, placeholders: usize) -> String {
    marked_prompt(task, demos, question, placeholders, true)
        .as_str()
        .to_string()
}

/// [`prompt`] with its parts marked: image blocks, the task's lead words and
/// `<|endofchunk|>` are template, questions and answers are plain text (a
/// dataset answer that reads `<image>` stays text). With `demo_images`
/// false the demonstrations are text only: OpenFlamingo's zero-shot
/// convention, which deletes their `<image>` and passes only the query image.
pub fn marked_prompt(
    task: Task,
    demos: &[Demo],
    question: Option<&str>,
    placeholders: usize,
    demo_images: bool,
) -> MarkedText {
    let mut text = MarkedText::new();
    for demo in demos {
        if demo_images {
            text.template(&image_block(placeholders));
        }
        push_lead(&mut text, task, demo.question.as_deref());
        text.plain(&demo.answer);
        text.template(END_OF_CHUNK_TOKEN);
        text.template("\n");
    }
    text.template(&image_block(placeholders));
    push_lead(&mut text, task, question);
    text
}

/// OpenFlamingo's post-processing: captions are cut at the first `Output`
/// and lose their `"`; VQA answers are cut at the first `Question`, `Answer`
/// or `Short`, then at the first `", "`. Surrounding whitespace is trimmed.
pub fn postprocess(task: Task, generated: &str) -> String {
    let cut = |s: &str, marker: &str| s.split(marker).next().unwrap_or_default().to_string();
    match task {
        Task::Caption => cut(generated, "Output").replace('"', "").trim().to_string(),
        Task::Vqa => {
            let mut s = generated.to_string();
            for marker in ["Question", "Answer", "Short"] {
                s = cut(&s, marker);
            }
            cut(&s, ", ").trim().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vqa_prompt_follows_openflamingo() {
        let demos = [Demo {
            question: Some("What color?".into()),
            answer: "red".into(),
        }];
        assert_eq!(
            prompt(Task::Vqa, &demos, Some("How many?"), 0),
            "<image>Question:What color? Short answer:red<|endofchunk|>\n<image>Question:How many? Short answer:"
        );
        let p = prompt(Task::Caption, &[], None, 2);
        assert_eq!(p, "<image><image placeholder><image placeholder>Output:");
    }

    #[test]
    fn data_is_plain_and_text_only_demos_drop_their_image() {
        let demos = [Demo {
            question: None,
            answer: "a <image> sign".into(),
        }];
        let m = marked_prompt(Task::Caption, &demos, None, 0, false);
        assert_eq!(
            m.as_str(),
            "Output:a <image> sign<|endofchunk|>\n<image>Output:"
        );
        let plain: Vec<&str> = m
            .parts()
            .filter(|(_, k)| *k == blip3_tokenizer::TextKind::Plain)
            .map(|(t, _)| t)
            .collect();
        assert_eq!(plain, ["a <image> sign"]);
    }

    #[test]
    fn postprocessing_cuts_at_the_markers() {
        assert_eq!(postprocess(Task::Caption, " a \"dog\" Output: x"), "a dog");
        assert_eq!(postprocess(Task::Vqa, " two, three Question: x"), "two");
        assert_eq!(postprocess(Task::Vqa, "yes Short answer"), "yes");
    }
}
