//! Added tokens (`<|system|>`, `<image>`, …) and the split of text on them.
//!
//! Python's `PreTrainedTokenizer.tokenize` cuts the text at every added token
//! (leftmost, longest match), then honours each token's `rstrip`/`lstrip` flag by
//! stripping whitespace from the neighbouring text. That is why the newline after
//! `<|user|>` produces no id in the BLIP-3 prompt (spec §11.3).

/// One added token with the flags that affect splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// Literal text of the token.
    pub content: String,
    /// Token id.
    pub id: u32,
    /// Strip whitespace after the token.
    pub rstrip: bool,
    /// Strip whitespace before the token.
    pub lstrip: bool,
    /// Whether the tokenizer treats it as a named special token (skipped when decoding).
    pub special: bool,
}

/// A piece of split text: either plain text or an added token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Text to run through SentencePiece.
    Text(&'a str),
    /// An added token, by index into the token list.
    Token(usize),
}

/// Splits `text` at added tokens (leftmost, then longest match) and applies the
/// `rstrip`/`lstrip` flags to the neighbouring text segments. Empty text segments
/// are dropped.
pub fn split_on_added<'a>(text: &'a str, tokens: &[AddedToken]) -> Vec<Segment<'a>> {
    split_on_added_where(text, tokens, |_, _| true)
}

/// [`split_on_added`], recognising token `tokens[i]` at byte `pos` only
/// where `allowed(pos, i)` says so (elsewhere its text stays text).
pub fn split_on_added_where<'a>(
    text: &'a str,
    tokens: &[AddedToken],
    allowed: impl Fn(usize, usize) -> bool,
) -> Vec<Segment<'a>> {
    let mut raw: Vec<Segment<'a>> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let best = tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                !t.content.is_empty() && rest.starts_with(t.content.as_str()) && allowed(pos, *i)
            })
            .max_by_key(|(_, t)| t.content.len());
        match best {
            Some((index, token)) => {
                raw.push(Segment::Text(&text[start..pos]));
                raw.push(Segment::Token(index));
                pos += token.content.len();
                start = pos;
            }
            None => pos += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    raw.push(Segment::Text(&text[start..]));

    // Apply the strip flags to the text on either side of each token.
    for i in 0..raw.len() {
        if let Segment::Token(index) = raw[i] {
            let token = &tokens[index];
            if token.rstrip {
                if let Some(Segment::Text(t)) = raw.get_mut(i + 1) {
                    *t = t.trim_start();
                }
            }
            if token.lstrip && i > 0 {
                if let Some(Segment::Text(t)) = raw.get_mut(i - 1) {
                    *t = t.trim_end();
                }
            }
        }
    }
    raw.retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(content: &str, id: u32, rstrip: bool) -> AddedToken {
        AddedToken {
            content: content.into(),
            id,
            rstrip,
            lstrip: false,
            special: true,
        }
    }

    #[test]
    fn rstrip_eats_following_whitespace_only_for_flagged_tokens() {
        let tokens = vec![tok("<|user|>", 32010, true), tok("<image>", 32012, false)];
        let segs = split_on_added("<|user|>\n<image>\nHi", &tokens);
        assert_eq!(
            segs,
            vec![Segment::Token(0), Segment::Token(1), Segment::Text("\nHi")]
        );
    }

    #[test]
    fn longest_match_wins() {
        let tokens = vec![
            tok("<image>", 1, false),
            tok("<image placeholder>", 2, false),
        ];
        let segs = split_on_added("a<image placeholder>b", &tokens);
        assert_eq!(
            segs,
            vec![Segment::Text("a"), Segment::Token(1), Segment::Text("b")]
        );
    }
}
