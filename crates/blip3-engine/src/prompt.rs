//! Prompt templates: the instruct chat frame (spec §11.1, family spec §2.7)
//! with one image marker per image, and raw prompts for the base models.

use blip3_tokenizer::MarkedText;

/// The model card's system prompt.
pub const DEFAULT_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// The `<image>` placeholder token text.
pub const IMAGE_TOKEN: &str = "<image>";

/// The base models' filler token (one added token whose text has a space).
pub const IMAGE_PLACEHOLDER_TOKEN: &str = "<image placeholder>";

/// The base models' end of an interleaved chunk.
pub const END_OF_CHUNK_TOKEN: &str = "<|endofchunk|>";

/// `<|system|>\n{system}<|end|>\n<|user|>\n{content}<|end|>\n<|assistant|>\n`
/// where `content` is `image_marker` once per image, then the question.
pub fn chat_prompt(
    question: &str,
    system: Option<&str>,
    image_marker: &str,
    num_images: usize,
) -> String {
    marked_chat_prompt(question, system, image_marker, num_images)
        .as_str()
        .to_string()
}

/// [`chat_prompt`] with the question and the system text marked plain (a
/// question that reads `<|end|>` or `<image>` stays text).
pub fn marked_chat_prompt(
    question: &str,
    system: Option<&str>,
    image_marker: &str,
    num_images: usize,
) -> MarkedText {
    let mut text = MarkedText::new();
    text.template("<|system|>\n");
    match system {
        Some(s) => text.plain(s),
        None => text.template(DEFAULT_SYSTEM),
    }
    text.template("<|end|>\n<|user|>\n");
    text.template(&image_marker.repeat(num_images));
    text.plain(question);
    text.template("<|end|>\n<|assistant|>\n");
    text
}

/// The r-v1 model card's one-image prompt:
/// `<|system|>\n{system}<|end|>\n<|user|>\n<image>\n{question}<|end|>\n<|assistant|>\n`.
pub fn instruct_prompt(question: &str, system: Option<&str>) -> String {
    chat_prompt(
        question,
        system,
        blip3_model::Family::Blip3R1.chat_image_marker(),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_matches_model_card() {
        let p = instruct_prompt("Q?", None);
        assert!(p.starts_with("<|system|>\nA chat between"));
        assert!(p.ends_with("<|user|>\n<image>\nQ?<|end|>\n<|assistant|>\n"));
    }

    #[test]
    fn v15_puts_one_inline_marker_per_image() {
        let p = chat_prompt("Describe both pictures.", None, "<image> ", 2);
        assert!(p.ends_with(
            "<|user|>\n<image> <image> Describe both pictures.<|end|>\n<|assistant|>\n"
        ));
        let none = chat_prompt("Hi", Some("S"), "<image> ", 0);
        assert_eq!(
            none,
            "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
        );
    }
}
