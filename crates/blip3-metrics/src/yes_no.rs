//! VLMEvalKit's Yes/No answer extraction (`YOrN_Extraction`, spec §3.4.3), used by MME and
//! POPE: lower-case, strip punctuation the way the VQA evaluation does, split into words, and
//! answer "Yes" when `yes` is a word and `no` is not (and the reverse for "No").

use crate::pytext;
use crate::vlmevalkit::Rule;

/// Punctuation removed (or turned into a space) before splitting into words.
const PUNCTUATION: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// The period rule's `re.sub` is given `re.UNICODE` where `count` goes, so it removes at most
/// this many periods.
const MAX_PERIODS_REMOVED: usize = 32;

/// The extracted answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YesNo {
    /// `yes` is a word and `no` is not.
    Yes,
    /// `no` is a word and `yes` is not.
    No,
    /// Neither or both.
    Unknown,
}

impl YesNo {
    /// The label VLMEvalKit stores ("Yes", "No", "Unknown").
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "Yes",
            YesNo::No => "No",
            YesNo::Unknown => "Unknown",
        }
    }
}

/// VLMEvalKit's `process_punctuation` on already lower-cased text. Each punctuation mark is
/// deleted when the text has it next to a space, or has a digit-comma-digit anywhere, and is
/// otherwise replaced by a space. Then periods not followed by a digit are deleted (HEAD: and
/// not preceded by one), at most 32 of them.
pub fn process_punctuation(text: &str, rule: Rule) -> String {
    let chars: Vec<char> = text.chars().collect();
    let comma_between_digits = chars
        .windows(3)
        .any(|w| w[1] == ',' && pytext::is_decimal(w[0]) && pytext::is_decimal(w[2]));
    let mut out = text.to_string();
    for p in PUNCTUATION {
        let beside_space = text.contains(&format!("{p} ")) || text.contains(&format!(" {p}"));
        let with = if beside_space || comma_between_digits {
            ""
        } else {
            " "
        };
        out = out.replace(p, with);
    }
    let chars: Vec<char> = out.chars().collect();
    let mut result = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let digit_after = chars.get(i + 1).is_some_and(|n| pytext::is_decimal(*n));
        let digit_before = i > 0 && pytext::is_decimal(chars[i - 1]);
        let strip = c == '.'
            && removed < MAX_PERIODS_REMOVED
            && !digit_after
            && (rule == Rule::V2024 || !digit_before);
        if strip {
            removed += 1;
        } else {
            result.push(c);
        }
    }
    result
}

/// `YOrN_Extraction` of one model output.
pub fn extract(output: &str, rule: Rule) -> YesNo {
    let cleaned = process_punctuation(&pytext::lower(output), rule);
    let mut yes = false;
    let mut no = false;
    for word in pytext::split(&cleaned) {
        yes |= word == "yes";
        no |= word == "no";
    }
    match (yes, no) {
        (true, false) => YesNo::Yes,
        (false, true) => YesNo::No,
        _ => YesNo::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extraction() {
        let e = |s: &str| extract(s, Rule::V2024).as_str();
        assert_eq!(e("Yes."), "Yes");
        assert_eq!(e("No, there is not."), "No");
        assert_eq!(e("yes/no"), "Unknown");
        assert_eq!(e("yes-no"), "Unknown");
        assert_eq!(e("no-yes"), "Unknown");
        assert_eq!(e("1,000 yes-no"), "Unknown");
        assert_eq!(e("nope"), "Unknown");
        assert_eq!(e("yes\u{1c}"), "Yes");
        assert_eq!(e(&"yes. ".repeat(40)), "Yes");
    }

    #[test]
    fn punctuation_rules() {
        assert_eq!(process_punctuation("yes3.", Rule::V2024), "yes3");
        assert_eq!(process_punctuation("yes3.", Rule::Head), "yes3.");
        assert_eq!(process_punctuation("a (b)", Rule::V2024), "a b ");
        assert_eq!(process_punctuation("a(b)", Rule::V2024), "a b ");
        assert_eq!(process_punctuation("1,2 (b)", Rule::V2024), "12 b");
        assert_eq!(process_punctuation("3.5.", Rule::V2024), "3.5");
        let many = ".".repeat(40);
        assert_eq!(process_punctuation(&many, Rule::V2024), ".".repeat(8));
    }
}
