//! VLMEvalKit's answer extraction for multiple-choice questions (`can_infer`, spec §3.4.1):
//! first look for an option letter standing alone in the prediction, then for exactly one
//! option whose text occurs in it.
//!
//! Both rules are implemented ([`Rule`]): the 2024 one the r-v1 numbers were produced with, and
//! HEAD's, which only accepts a letter among the last four words, skips the text match for
//! answers much longer than the options, and also reads "(correct) answer is X".

use crate::pytext;
use crate::vlmevalkit::Rule;

/// Outputs VLMEvalKit treats as a refusal: they extract as `Z`.
const REFUSALS: [&str; 4] = [
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
];

/// The API wrapper's failure text: no letter is read from it (the text match still runs).
const API_FAILURE: &str = "Failed to obtain answer via API";

/// Characters that separate words in the letter search, besides whitespace.
const SEPARATORS: &str = ".()[],:;!*#{}";

/// HEAD only takes a single letter when its first occurrence is among this many last words.
const HEAD_LAST_WORDS: usize = 4;

/// One question's options: `(letter, text)`, letters in the order VLMEvalKit lists them (A, B,
/// …); the text is `str()` of the option's value.
pub type Choices = [(char, String)];

/// The letter test (`can_infer_option`): a refusal gives `Z`; otherwise exactly one option
/// letter must appear as a whole word (after turning `.()[],:;!*#{}` into spaces); with no
/// option letter, a standalone `Z` gives `Z`. `None` when the test fails.
pub fn can_infer_option(answer: &str, choices: &Choices, rule: Rule) -> Option<char> {
    if answer.contains(API_FAILURE) {
        return None;
    }
    if REFUSALS.iter().any(|r| answer.contains(r)) {
        return Some('Z');
    }
    let spaced: String = answer
        .chars()
        .map(|c| if SEPARATORS.contains(c) { ' ' } else { c })
        .collect();
    let words: Vec<&str> = pytext::split(&spaced).collect();
    let is_word = |letter: char| {
        let mut buf = [0u8; 4];
        let s: &str = letter.encode_utf8(&mut buf);
        words.iter().position(|w| *w == s)
    };
    let present: Vec<(char, usize)> = choices
        .iter()
        .filter_map(|(letter, _)| is_word(*letter).map(|pos| (*letter, pos)))
        .collect();
    match present.as_slice() {
        [(letter, pos)] => {
            let near_end = *pos + HEAD_LAST_WORDS >= words.len();
            if rule == Rule::V2024 || near_end {
                return Some(*letter);
            }
        }
        [] if words.contains(&"Z") => return Some('Z'),
        _ => {}
    }
    if rule == Rule::Head {
        if let Some(letter) = verbose_answer_letter(answer) {
            if choices.iter().any(|(l, _)| *l == letter) {
                return Some(letter);
            }
        }
    }
    None
}

/// Whether `c` matches the pattern letter `p` case-insensitively as Python's `re` does (which
/// also folds ſ to s and İ / ı to i).
fn folds_to(c: char, p: char) -> bool {
    c.to_ascii_lowercase() == p || (p == 's' && c == 'ſ') || (p == 'i' && (c == 'İ' || c == 'ı'))
}

/// HEAD's `(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**`: the letter of the leftmost
/// "answer is X" (the optional "correct" prefix never changes which letter that is),
/// upper-cased. Only the leftmost match counts.
fn verbose_answer_letter(answer: &str) -> Option<char> {
    let chars: Vec<char> = answer.chars().collect();
    let word_at = |i: usize, word: &str| -> Option<usize> {
        let mut j = i;
        for p in word.chars() {
            if j < chars.len() && folds_to(chars[j], p) {
                j += 1;
            } else {
                return None;
            }
        }
        Some(j)
    };
    let spaces_at = |i: usize| -> Option<usize> {
        let n = chars[i..]
            .iter()
            .take_while(|c| pytext::is_space(**c))
            .count();
        (n > 0).then_some(i + n)
    };
    (0..chars.len()).find_map(|start| {
        let j = word_at(start, "answer")?;
        let j = spaces_at(j)?;
        let j = word_at(j, "is")?;
        let mut j = spaces_at(j)?;
        while j < chars.len() && chars[j] == '*' {
            j += 1;
        }
        let letter = chars.get(j)?.to_ascii_uppercase();
        ('A'..='D').contains(&letter).then_some(letter)
    })
}

/// The text test (`can_infer_text`): the letter of the only option whose lower-cased text
/// occurs in the lower-cased answer. HEAD skips it when the answer is more than twice as long
/// as all option texts together.
pub fn can_infer_text(answer: &str, choices: &Choices, rule: Rule) -> Option<char> {
    let answer = pytext::lower(answer);
    if rule == Rule::Head {
        let total: usize = choices.iter().map(|(_, t)| pytext::len(t)).sum();
        if pytext::len(&answer) > 2 * total {
            return None;
        }
    }
    let mut found = choices
        .iter()
        .filter(|(_, text)| answer.contains(&pytext::lower(text)));
    match (found.next(), found.next()) {
        (Some((letter, _)), None) => Some(*letter),
        _ => None,
    }
}

/// `can_infer`: the letter test, then the text test. `None` when neither finds an answer.
pub fn can_infer(answer: &str, choices: &Choices, rule: Rule) -> Option<char> {
    can_infer_option(answer, choices, rule).or_else(|| can_infer_text(answer, choices, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abcd() -> Vec<(char, String)> {
        ["cat", "dog", "a cute teddy bear", "bird"]
            .iter()
            .enumerate()
            .map(|(i, t)| ((b'A' + i as u8) as char, t.to_string()))
            .collect()
    }

    #[test]
    fn letters_and_text() {
        let c = abcd();
        let v = |s: &str| can_infer(s, &c, Rule::V2024);
        assert_eq!(v("The answer is (B)."), Some('B'));
        assert_eq!(v("b"), None);
        assert_eq!(v("A and B"), None);
        assert_eq!(v("B?"), None);
        assert_eq!(v("a cute teddy bear"), Some('C'));
        assert_eq!(v("cat and dog"), None);
        assert_eq!(v("Z"), Some('Z'));
        assert_eq!(v("Z B"), Some('B'));
        assert_eq!(v("Cannot determine the answer: B"), Some('Z'));
        assert_eq!(v("Failed to obtain answer via API B"), None);
        assert_eq!(v("Failed to obtain answer via API dog"), Some('B'));
    }

    #[test]
    fn head_rules() {
        let c = abcd();
        let h = |s: &str| can_infer(s, &c, Rule::Head);
        assert_eq!(h("B is right, the others are wrong here"), None);
        assert_eq!(h("so it is B in the end"), Some('B'));
        assert_eq!(h("answer is c"), Some('C'));
        assert_eq!(h("anſwer ıs **d**"), Some('D'));
        assert_eq!(h("The answer is because"), Some('B'));
        assert_eq!(h("answer is E"), None);
        let long = format!("dog {}", "x".repeat(60));
        assert_eq!(h(&long), None);
        assert_eq!(can_infer(&long, &c, Rule::V2024), Some('B'));
    }
}
