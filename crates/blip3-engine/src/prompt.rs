//! The instruct chat template (spec §11.1).

/// The model card's system prompt.
pub const DEFAULT_SYSTEM: &str = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/// The `<image>` placeholder token text.
pub const IMAGE_TOKEN: &str = "<image>";

/// `<|system|>\n{system}<|end|>\n<|user|>\n<image>\n{question}<|end|>\n<|assistant|>\n`.
pub fn instruct_prompt(question: &str, system: Option<&str>) -> String {
    let system = system.unwrap_or(DEFAULT_SYSTEM);
    format!(
        "<|system|>\n{system}<|end|>\n<|user|>\n{IMAGE_TOKEN}\n{question}<|end|>\n<|assistant|>\n"
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
}
