//! Python `re` semantics on top of `fancy-regex`, for the patterns the reference tokenizers
//! use. Python's classes differ from Rust's at the edges, so patterns are written with
//! explicit classes built from these pieces:
//!
//! * `\w` in Python is `str.isalnum()` or `_`: letters and numbers of every kind
//!   ([`WORD`]), where Rust's `\w` would add combining marks and connector punctuation and
//!   drop `No` numbers such as `½`.
//! * `\s` in Python is `str.isspace()`: Rust's `\s` plus U+001C–U+001F ([`SPACE`]).
//! * `$` without MULTILINE also matches before a final newline ([`END`]).
//! * `\b` is a boundary between [`WORD`] and non-[`WORD`] characters ([`BOUNDARY`]).

use std::borrow::Cow;

use fancy_regex::Regex;

use crate::MetricsError;

/// Members of Python's `\w`, for use inside `[...]`.
pub const WORD: &str = r"\p{L}\p{N}_";
/// Members of Python's `\s`, for use inside `[...]`.
pub const SPACE: &str = r"\s\x1C-\x1F";
/// Python's `$` (no MULTILINE).
pub const END: &str = r"(?=\n?\z)";
/// Python's `\b` for `str` patterns.
pub const BOUNDARY: &str =
    r"(?:(?<=[\p{L}\p{N}_])(?![\p{L}\p{N}_])|(?<![\p{L}\p{N}_])(?=[\p{L}\p{N}_]))";

/// Compiles a pattern; the patterns are fixed, so an error here is a bug in this crate.
pub fn compile(pattern: &str) -> Result<Regex, MetricsError> {
    Regex::new(pattern).map_err(|e| MetricsError::Format {
        location: "OK-VQA stemmer pattern".into(),
        problem: format!("{pattern}: {e}"),
    })
}

/// `re.sub(pattern, replacement, text)`; the replacement uses `$1` / `${1}` / `$0`.
pub fn sub<'t>(re: &Regex, text: &'t str, replacement: &str) -> Result<Cow<'t, str>, MetricsError> {
    re.try_replacen(text, 0, replacement)
        .map_err(|e| runtime_error(re, e))
}

/// A matching error (backtracking limit), reported instead of panicking.
pub fn runtime_error(re: &Regex, e: fancy_regex::Error) -> MetricsError {
    MetricsError::Format {
        location: "OK-VQA stemmer".into(),
        problem: format!("pattern {} failed: {e}", re.as_str()),
    }
}

/// Python's `str.isspace()` for one character.
pub fn is_space(c: char) -> bool {
    crate::vqa::is_py_space(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_python() {
        let w = compile(&format!("^[{WORD}]+$")).unwrap();
        assert!(w.is_match("a½_١").unwrap());
        assert!(!w.is_match("a\u{301}").unwrap()); // combining mark: not \w in Python
        let e = compile(&format!("a{END}")).unwrap();
        assert!(e.is_match("a\n").unwrap() && !e.is_match("a\n\n").unwrap());
        let b = compile(&format!("{BOUNDARY}x")).unwrap();
        assert!(b.is_match("-x").unwrap() && !b.is_match("ax").unwrap());
        assert_eq!(
            sub(&compile("(a)").unwrap(), "bab", "<$1>").unwrap(),
            "b<a>b"
        );
    }
}
