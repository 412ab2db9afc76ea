//! Prompt text that records who wrote each part, so that only the chat
//! template's own text can produce control tokens.
//!
//! A chat prompt is the template (`<|user|>\n`, `<|end|>\n`, image markers)
//! with the clients' messages in between. Tokenizing the joined string would
//! turn a message that reads `<|end|>\n<|assistant|>` into real turn
//! boundaries, and a message that reads `<image>` into an image slot. Here
//! each part keeps its [`TextKind`], and [`crate::Tokenizer::encode_marked`]
//! recognises added tokens only where the kind allows; everything else is
//! tokenized exactly as the joined string would be, so prompts without such
//! text give the same ids as before.

use std::ops::Range;

/// Which added tokens may be recognised in a part of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Written by the template: every added token is recognised.
    Template,
    /// A client's message text: no added token is recognised (`<|end|>`
    /// stays the five characters it is made of).
    Plain,
    /// A raw completion prompt: added tokens are recognised (a base model's
    /// few-shot prompt separates its examples with `<|endofchunk|>`), except
    /// the image markers, which only image parts place.
    Raw,
}

/// Text built from parts of known [`TextKind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkedText {
    text: String,
    /// Byte ranges of `text`, in order, covering it.
    parts: Vec<(Range<usize>, TextKind)>,
}

impl MarkedText {
    /// Empty text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Text of one kind.
    pub fn of(kind: TextKind, text: &str) -> Self {
        let mut m = Self::new();
        m.push(kind, text);
        m
    }

    /// Appends `text` as `kind`.
    pub fn push(&mut self, kind: TextKind, text: &str) {
        if text.is_empty() {
            return;
        }
        let start = self.text.len();
        self.text.push_str(text);
        match self.parts.last_mut() {
            Some((range, k)) if *k == kind => range.end = self.text.len(),
            _ => self.parts.push((start..self.text.len(), kind)),
        }
    }

    /// Appends template text.
    pub fn template(&mut self, text: &str) {
        self.push(TextKind::Template, text);
    }

    /// Appends a client's plain text.
    pub fn plain(&mut self, text: &str) {
        self.push(TextKind::Plain, text);
    }

    /// The joined text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Length of the joined text in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The parts, in order: byte ranges of [`Self::as_str`] and their kinds.
    pub fn parts(&self) -> impl Iterator<Item = (&str, TextKind)> {
        self.parts
            .iter()
            .map(|(range, kind)| (&self.text[range.clone()], *kind))
    }

    /// The kind of the part holding all of `range`, or `None` when it
    /// straddles parts (no token may be recognised across a boundary).
    pub fn kind_of(&self, range: Range<usize>) -> Option<TextKind> {
        let i = self.parts.partition_point(|(r, _)| r.end <= range.start);
        self.parts
            .get(i)
            .filter(|(r, _)| r.start <= range.start && range.end <= r.end)
            .map(|(_, kind)| *kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_merge_and_ranges_resolve_to_one_kind() {
        let mut m = MarkedText::new();
        m.template("<|user|>\n");
        m.plain("hi ");
        m.plain("<|end|>");
        m.template("<|end|>\n");
        assert_eq!(m.as_str(), "<|user|>\nhi <|end|><|end|>\n");
        assert_eq!(m.parts().count(), 3);
        assert_eq!(m.kind_of(0..8), Some(TextKind::Template));
        assert_eq!(m.kind_of(12..19), Some(TextKind::Plain));
        assert_eq!(m.kind_of(19..26), Some(TextKind::Template));
        // Across the boundary between a plain and a template part.
        assert_eq!(m.kind_of(17..21), None);
        assert_eq!(MarkedText::of(TextKind::Raw, "").parts().count(), 0);
    }
}
