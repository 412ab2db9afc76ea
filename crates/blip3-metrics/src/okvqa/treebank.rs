//! NLTK's word tokenizer for one sentence (`NLTKWordTokenizer`, the improved Treebank
//! tokenizer behind `word_tokenize`, NLTK 3.8.1): a fixed sequence of regular-expression
//! substitutions that pad quotes, punctuation, brackets and clitics with spaces, then a split
//! on whitespace. Parentheses are kept as they are (`convert_parentheses=False`).

use fancy_regex::Regex;

use super::pyre::{compile, sub, BOUNDARY, END, SPACE, WORD};
use crate::MetricsError;

/// The compiled substitution rules, in the order the reference applies them.
pub struct TreebankTokenizer {
    /// Rules applied to the sentence as given.
    before_padding: Vec<(Regex, &'static str)>,
    /// Rules applied after the sentence is wrapped in single spaces.
    after_padding: Vec<(Regex, &'static str)>,
}

impl TreebankTokenizer {
    /// Compiles the rules.
    pub fn new() -> Result<Self, MetricsError> {
        let rule = |p: String, r: &'static str| compile(&p).map(|re| (re, r));
        let before_padding = vec![
            // Starting quotes.
            rule("([«“‘„]|[`]+)".into(), " ${1} ")?,
            rule("^\"".into(), "``")?,
            rule("(``)".into(), " ${1} ")?,
            rule(r#"([ \(\[{<])("|'{2})"#.into(), "${1} `` ")?,
            rule(
                format!(r"(?i)(')(?!re|ve|ll|m|t|s|d|n)([{WORD}]){BOUNDARY}"),
                "${1} ${2}",
            )?,
            // Punctuation.
            rule(
                format!(r#"([^\.])(\.)([\]\)}}>"'»”’ ]*)[{SPACE}]*{END}"#),
                "${1} ${2} ${3} ",
            )?,
            rule(r"([:,])([^\p{Nd}])".into(), " ${1} ${2}")?,
            rule(format!("([:,]){END}"), " ${1} ")?,
            rule(r"\.{2,}".into(), " ${0} ")?,
            rule("[;@#$%&]".into(), " ${0} ")?,
            rule(
                format!(r#"([^\.])(\.)([\]\)}}>"']*)[{SPACE}]*{END}"#),
                "${1} ${2}${3} ",
            )?,
            rule("[?!]".into(), " ${0} ")?,
            rule("([^'])' ".into(), "${1} ' ")?,
            rule(r"[*]".into(), " ${0} ")?,
            // Brackets, then double dashes.
            rule(r"[\]\[\(\)\{\}<>]".into(), " ${0} ")?,
            rule("--".into(), " -- ")?,
        ];
        let contraction = |a: &str, b: &str, tail: &str| {
            rule(format!("(?i){BOUNDARY}({a})({b}){tail}"), " ${1} ${2} ")
        };
        let after_padding = vec![
            // Ending quotes.
            rule("([»”’])".into(), " ${1} ")?,
            rule("''".into(), " '' ")?,
            rule("\"".into(), " '' ")?,
            rule("([^' ])('[sS]|'[mM]|'[dD]|') ".into(), "${1} ${2} ")?,
            rule(
                "([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ".into(),
                "${1} ${2} ",
            )?,
            // Robert MacIntyre's contractions (the two-part list, then the three-part one).
            contraction("can", "not", BOUNDARY)?,
            contraction("d", "'ye", BOUNDARY)?,
            contraction("gim", "me", BOUNDARY)?,
            contraction("gon", "na", BOUNDARY)?,
            contraction("got", "ta", BOUNDARY)?,
            contraction("lem", "me", BOUNDARY)?,
            contraction("more", "'n", BOUNDARY)?,
            contraction("wan", "na", &format!("(?=[{SPACE}])"))?,
            rule(format!("(?i) ('t)(is){BOUNDARY}"), " ${1} ${2} ")?,
            rule(format!("(?i) ('t)(was){BOUNDARY}"), " ${1} ${2} ")?,
        ];
        Ok(Self {
            before_padding,
            after_padding,
        })
    }

    /// Splits one sentence into tokens.
    pub fn tokenize(&self, sentence: &str) -> Result<Vec<String>, MetricsError> {
        let mut text = sentence.to_string();
        for (re, replacement) in &self.before_padding {
            text = sub(re, &text, replacement)?.into_owned();
        }
        text = format!(" {text} ");
        for (re, replacement) in &self.after_padding {
            text = sub(re, &text, replacement)?.into_owned();
        }
        Ok(crate::vqa::py_split(&text).map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Vec<String> {
        TreebankTokenizer::new().unwrap().tokenize(s).unwrap()
    }

    #[test]
    fn nltk_examples() {
        // From NLTK's own documentation of NLTKWordTokenizer.
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        let want = "Good muffins cost $ 3.88 ( roughly 3,36 euros ) in New York. Please buy me two of them. Thanks .";
        assert_eq!(tok(s).join(" "), want);
        assert_eq!(
            tok("John's big idea isn't all that bad.").join(" "),
            "John 's big idea is n't all that bad ."
        );
        assert_eq!(
            tok("I cannot \"go\" wanna go 'tis").join(" "),
            "I can not `` go '' wan na go 't is"
        );
        assert_eq!(tok("dogs? cats!").join(" "), "dogs ? cats !");
    }
}
