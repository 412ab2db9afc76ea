//! NLTK's Punkt sentence splitter (Kiss & Strunk 2006) with the pre-trained English model,
//! as `nltk.sent_tokenize` runs it (NLTK 3.8.1 `PunktSentenceTokenizer.tokenize`, boundary
//! realignment on).
//!
//! Candidate boundaries are `.`, `?` and `!` followed by punctuation or by whitespace and a
//! token. Around each candidate the text is split into Punkt word tokens and annotated:
//! the first pass marks sentence-final punctuation, ellipses and known abbreviations; the
//! second pass revisits a period-final token using the next token (known collocations, the
//! orthographic heuristic from the model's case statistics, frequent sentence starters,
//! initials and numbers). A candidate splits the text when a token marked as a break is
//! followed by another token. Offsets are byte offsets into the text throughout; every one
//! comes from a match or from an ASCII character, so it is always a character boundary.

use std::collections::{HashMap, HashSet};

use fancy_regex::{Captures, Regex};

use super::pyre::{compile, runtime_error, END, SPACE, WORD};
use crate::MetricsError;

// Orthographic context flags (where a word type was seen, and with which case).
const ORTHO_BEG_UC: u32 = 1 << 1;
const ORTHO_MID_UC: u32 = 1 << 2;
const ORTHO_UNK_UC: u32 = 1 << 3;
const ORTHO_BEG_LC: u32 = 1 << 4;
const ORTHO_MID_LC: u32 = 1 << 5;
const ORTHO_UNK_LC: u32 = 1 << 6;
const ORTHO_UC: u32 = ORTHO_BEG_UC + ORTHO_MID_UC + ORTHO_UNK_UC;
const ORTHO_LC: u32 = ORTHO_BEG_LC + ORTHO_MID_LC + ORTHO_UNK_LC;

/// Tokens that the orthographic heuristic never takes for a sentence start.
const PUNCTUATION: [&str; 6] = [";", ":", ",", ".", "!", "?"];

/// The trained model: abbreviations, collocations, sentence starters, case statistics.
#[derive(Debug, Default)]
pub struct PunktModel {
    abbrev_types: HashSet<String>,
    collocations: HashSet<(String, String)>,
    sent_starters: HashSet<String>,
    ortho_context: HashMap<String, u32>,
}

impl PunktModel {
    /// Parses the embedded table: `abbrev\tTYPE`, `colloc\tA\tB`, `starter\tTYPE`,
    /// `ortho\tTYPE\tFLAGS`; `#` lines are comments. Fields are taken verbatim (one
    /// abbreviation type ends in a space).
    pub fn parse(text: &str) -> Result<Self, MetricsError> {
        let mut model = Self::default();
        for (n, line) in text.split('\n').enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = || MetricsError::Format {
                location: format!("punkt_english.txt line {}", n + 1),
                problem: "unexpected entry".into(),
            };
            match fields.as_slice() {
                ["abbrev", t] => {
                    model.abbrev_types.insert((*t).to_string());
                }
                ["colloc", a, b] => {
                    model
                        .collocations
                        .insert(((*a).to_string(), (*b).to_string()));
                }
                ["starter", t] => {
                    model.sent_starters.insert((*t).to_string());
                }
                ["ortho", t, flags] => {
                    model
                        .ortho_context
                        .insert((*t).to_string(), flags.parse().map_err(|_| bad())?);
                }
                _ => return Err(bad()),
            }
        }
        Ok(model)
    }

    fn ortho(&self, typ: &str) -> u32 {
        self.ortho_context.get(typ).copied().unwrap_or(0)
    }
}

/// One Punkt word token and its annotations.
#[derive(Debug)]
struct Token {
    tok: String,
    typ: String,
    period_final: bool,
    sentbreak: Option<bool>,
    abbr: bool,
    ellipsis: bool,
}

/// The sentence splitter: the model plus the compiled language patterns.
pub struct PunktSplitter {
    model: PunktModel,
    word: Regex,
    period_context: Regex,
    realignment: Regex,
    numeric: Regex,
    ellipsis: Regex,
    initial: Regex,
}

/// Python's `str.rstrip()` length in bytes.
fn rstrip_len(text: &str) -> usize {
    text.trim_end_matches(super::pyre::is_space).len()
}

/// `text[start:end]` with Python's forgiving slice bounds.
fn slice(text: &str, start: usize, end: usize) -> &str {
    let end = end.min(text.len());
    if start >= end {
        return "";
    }
    text.get(start..end).unwrap_or("")
}

impl PunktSplitter {
    /// Compiles the English language patterns around a model.
    pub fn new(model: PunktModel) -> Result<Self, MetricsError> {
        // Characters that cannot appear within words, and multi-character punctuation.
        let non_word = r#"(?:[)";}\]\*:@'\({\[!\?])"#;
        let multi_char = format!(r"(?:\-{{2,}}|\.{{2,}}|(?:\.[{SPACE}]){{2,}}\.)");
        let word_start = r#"[^\("`{\[:;&\#\*@\)}\]\-,]"#;
        let s = format!("[{SPACE}]");
        let ns = format!("[^{SPACE}]");
        let word = format!(
            "{multi_char}|(?={word_start}){ns}+?(?={s}|{END}|{non_word}|{multi_char}|,(?={END}|{s}|{non_word}|{multi_char}))|{ns}"
        );
        let period_context =
            format!(r"[\.\?!](?=(?P<after_tok>{non_word}|{s}+(?P<next_tok>{ns}+)))");
        Ok(Self {
            model,
            word: compile(&word)?,
            period_context: compile(&period_context)?,
            realignment: compile(&format!(r#"\A["')\]}}]+?(?:{s}+|(?=--)|(?m:$))"#))?,
            numeric: compile(&format!(r"^-?[\.,]?\p{{Nd}}[\p{{Nd}},\.-]*\.?{END}"))?,
            ellipsis: compile(&format!(r"^\.\.+{END}"))?,
            initial: compile(&format!(r"^[[{WORD}]--\p{{Nd}}]\.{END}"))?,
        })
    }

    fn is_match(&self, re: &Regex, text: &str) -> Result<bool, MetricsError> {
        re.is_match(text).map_err(|e| runtime_error(re, e))
    }

    fn token(&self, tok: &str) -> Result<Token, MetricsError> {
        let lower = tok.to_lowercase();
        let typ = if self.is_match(&self.numeric, &lower)? {
            "##number##".to_string()
        } else {
            lower
        };
        Ok(Token {
            tok: tok.to_string(),
            typ,
            period_final: tok.ends_with('.'),
            sentbreak: None,
            abbr: false,
            ellipsis: false,
        })
    }

    /// Punkt's word tokens of a text, line by line.
    fn tokenize_words(&self, text: &str) -> Result<Vec<Token>, MetricsError> {
        let mut out = Vec::new();
        for line in text.split('\n') {
            if crate::vqa::py_strip(line).is_empty() {
                continue;
            }
            for m in self.word.find_iter(line) {
                let m = m.map_err(|e| runtime_error(&self.word, e))?;
                out.push(self.token(m.as_str())?);
            }
        }
        Ok(out)
    }

    fn first_pass(&self, t: &mut Token) -> Result<(), MetricsError> {
        if t.tok == "." || t.tok == "?" || t.tok == "!" {
            t.sentbreak = Some(true);
        } else if self.is_match(&self.ellipsis, &t.tok)? {
            t.ellipsis = true;
        } else if t.period_final && !t.tok.ends_with("..") {
            let stem = t.tok[..t.tok.len() - 1].to_lowercase();
            let last_part = stem.rsplit('-').next().unwrap_or(&stem);
            if self.model.abbrev_types.contains(&stem)
                || self.model.abbrev_types.contains(last_part)
            {
                t.abbr = true;
            } else {
                t.sentbreak = Some(true);
            }
        }
        Ok(())
    }

    fn type_no_period(typ: &str) -> &str {
        if typ.chars().count() > 1 && typ.ends_with('.') {
            &typ[..typ.len() - 1]
        } else {
            typ
        }
    }

    fn type_no_sentperiod(t: &Token) -> &str {
        if t.sentbreak == Some(true) {
            Self::type_no_period(&t.typ)
        } else {
            &t.typ
        }
    }

    fn first_upper(t: &Token) -> bool {
        t.tok.chars().next().is_some_and(char::is_uppercase)
    }

    fn first_lower(t: &Token) -> bool {
        t.tok.chars().next().is_some_and(char::is_lowercase)
    }

    /// Whether `t` starts a sentence: `Some(true)`, `Some(false)`, or `None` for unknown.
    fn ortho_heuristic(&self, t: &Token) -> Option<bool> {
        if PUNCTUATION.contains(&t.tok.as_str()) {
            return Some(false);
        }
        let ortho = self.model.ortho(Self::type_no_sentperiod(t));
        if Self::first_upper(t) && ortho & ORTHO_LC != 0 && ortho & ORTHO_MID_UC == 0 {
            return Some(true);
        }
        if Self::first_lower(t) && (ortho & ORTHO_UC != 0 || ortho & ORTHO_BEG_LC == 0) {
            return Some(false);
        }
        None
    }

    /// Revisits a period-final token in the light of the token after it.
    fn second_pass(&self, t1: &mut Token, t2: &Token) -> Result<(), MetricsError> {
        if !t1.period_final {
            return Ok(());
        }
        let typ = Self::type_no_period(&t1.typ).to_string();
        let next_typ = Self::type_no_sentperiod(t2).to_string();
        let is_initial = self.is_match(&self.initial, &t1.tok)?;
        if self
            .model
            .collocations
            .contains(&(typ.clone(), next_typ.clone()))
        {
            t1.sentbreak = Some(false);
            t1.abbr = true;
            return Ok(());
        }
        if (t1.abbr || t1.ellipsis) && !is_initial {
            if self.ortho_heuristic(t2) == Some(true) {
                t1.sentbreak = Some(true);
                return Ok(());
            }
            if Self::first_upper(t2) && self.model.sent_starters.contains(&next_typ) {
                t1.sentbreak = Some(true);
                return Ok(());
            }
        }
        if is_initial || typ == "##number##" {
            let starter = self.ortho_heuristic(t2);
            if starter == Some(false) {
                t1.sentbreak = Some(false);
                t1.abbr = true;
                return Ok(());
            }
            if starter.is_none()
                && is_initial
                && Self::first_upper(t2)
                && self.model.ortho(&next_typ) & ORTHO_LC == 0
            {
                t1.sentbreak = Some(false);
                t1.abbr = true;
            }
        }
        Ok(())
    }

    /// Whether a context holds a sentence break followed by another token.
    fn contains_sentbreak(&self, context: &str) -> Result<bool, MetricsError> {
        let mut tokens = self.tokenize_words(context)?;
        for t in tokens.iter_mut() {
            self.first_pass(t)?;
        }
        for i in 0..tokens.len() {
            if i + 1 < tokens.len() {
                let (head, tail) = tokens.split_at_mut(i + 1);
                self.second_pass(&mut head[i], &tail[0])?;
                if head[i].sentbreak == Some(true) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The candidate boundaries with the text around each (the word before, the boundary
    /// character and what follows it), skipping candidates whose word overlaps the last.
    fn potential_end_contexts<'t>(
        &self,
        text: &'t str,
    ) -> Result<Vec<(Captures<'t>, String)>, MetricsError> {
        let mut out = Vec::new();
        let mut prev_slice = (0usize, 0usize);
        let mut prev_match: Option<Captures<'t>> = None;
        let context = |c: &Captures<'t>, s: (usize, usize)| {
            let after = c.name("after_tok").map_or("", |m| m.as_str());
            format!("{}{}{}", slice(text, s.0, s.1), &c[0], after)
        };
        for caps in self.period_context.captures_iter(text) {
            let caps = caps.map_err(|e| runtime_error(&self.period_context, e))?;
            let start = caps.get(0).map_or(0, |m| m.start());
            let before = slice(text, prev_slice.1, start);
            // Index of the last ASCII whitespace in `before`; 0 also when there is none.
            let last_space = before
                .char_indices()
                .rev()
                .find(|(_, c)| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
                .map_or(0, |(i, _)| i);
            let word_start = if last_space != 0 {
                last_space + prev_slice.1 + 1
            } else {
                prev_slice.0
            };
            // A candidate whose word overlaps the next candidate's word is dropped.
            if let Some(pm) = prev_match.take() {
                if prev_slice.1 <= word_start {
                    let c = context(&pm, prev_slice);
                    out.push((pm, c));
                }
            }
            prev_match = Some(caps);
            prev_slice = (word_start, start);
        }
        if let Some(pm) = prev_match {
            let c = context(&pm, prev_slice);
            out.push((pm, c));
        }
        Ok(out)
    }

    /// Sentence spans (`_slices_from_text`).
    fn slices(&self, text: &str) -> Result<Vec<(usize, usize)>, MetricsError> {
        let mut out = Vec::new();
        let mut last_break = 0;
        for (caps, context) in self.potential_end_contexts(text)? {
            if self.contains_sentbreak(&context)? {
                let end = caps.get(0).map_or(0, |m| m.end());
                out.push((last_break, end));
                last_break = match caps.name("next_tok") {
                    Some(m) if !m.as_str().is_empty() => m.start(),
                    _ => end,
                };
            }
        }
        out.push((last_break, rstrip_len(text)));
        Ok(out)
    }

    /// Moves closing quotes and brackets after a boundary into the sentence before it.
    fn realign(
        &self,
        text: &str,
        slices: &[(usize, usize)],
    ) -> Result<Vec<(usize, usize)>, MetricsError> {
        let mut out = Vec::new();
        let mut realign = 0;
        for (i, &(start, stop)) in slices.iter().enumerate() {
            let s1 = (start + realign, stop);
            let Some(&s2) = slices.get(i + 1) else {
                if !slice(text, s1.0, s1.1).is_empty() {
                    out.push(s1);
                }
                continue;
            };
            let next = slice(text, s2.0, s2.1);
            let m = self
                .realignment
                .find(next)
                .map_err(|e| runtime_error(&self.realignment, e))?;
            if let Some(m) = m {
                out.push((s1.0, s2.0 + rstrip_len(m.as_str())));
                realign = m.end();
            } else {
                realign = 0;
                if !slice(text, s1.0, s1.1).is_empty() {
                    out.push(s1);
                }
            }
        }
        Ok(out)
    }

    /// Splits a text into sentences.
    pub fn sentences<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, MetricsError> {
        let slices = self.slices(text)?;
        Ok(self
            .realign(text, &slices)?
            .into_iter()
            .map(|(s, e)| slice(text, s, e))
            .collect())
    }
}
