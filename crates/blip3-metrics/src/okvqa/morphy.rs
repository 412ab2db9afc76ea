//! WordNet's verb lemmatisation as NLTK's `WordNetLemmatizer().lemmatize(word, "v")` does it
//! (NLTK 3.8.1 `_morphy`), over the WordNet 3.0 verb lemmas and exception list embedded as
//! data.
//!
//! An exception-list entry answers directly (the word itself and its listed bases, kept if
//! they are verbs). Otherwise the detachment rules (`-s`, `-ies→-y`, `-es→-e`, `-es`,
//! `-ed→-e`, `-ed`, `-ing→-e`, `-ing`) are applied once and the word and its candidates that
//! are verbs are returned; if none is, the rules are applied again to the candidates, round
//! after round, until some verb turns up or no rule applies. The lemma is the shortest
//! result (the first of equal length); a word with no result is returned as it is. Nothing
//! is lower-cased, as in the reference.

use std::collections::{HashMap, HashSet};

use crate::MetricsError;

/// Verb detachment rules, in WordNet's order.
const VERB_RULES: [(&str, &str); 8] = [
    ("s", ""),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
];

/// Bound on candidate forms per round; only adversarial inputs (long runs of suffixes)
/// come near it, and the reference would spend exponential time on those.
const MAX_FORMS: usize = 1 << 16;

/// WordNet 3.0 verb lemmas and exceptions.
pub struct VerbMorphy {
    lemmas: HashSet<String>,
    exceptions: HashMap<String, Vec<String>>,
}

impl VerbMorphy {
    /// Parses the embedded table: `lemma\tLEMMA` and `exc\tFORM\tBASE...` lines; `#` lines
    /// are comments.
    pub fn parse(text: &str) -> Result<Self, MetricsError> {
        let mut lemmas = HashSet::new();
        let mut exceptions = HashMap::new();
        for (n, line) in text.split('\n').enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["lemma", lemma] => {
                    lemmas.insert((*lemma).to_string());
                }
                ["exc", form, bases @ ..] => {
                    exceptions.insert(
                        (*form).to_string(),
                        bases.iter().map(|b| (*b).to_string()).collect(),
                    );
                }
                _ => {
                    return Err(MetricsError::Format {
                        location: format!("wordnet_verbs.txt line {}", n + 1),
                        problem: "unexpected entry".into(),
                    })
                }
            }
        }
        Ok(Self { lemmas, exceptions })
    }

    fn apply_rules(forms: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for form in forms {
            for (old, new) in VERB_RULES {
                if let Some(stem) = form.strip_suffix(old) {
                    out.push(format!("{stem}{new}"));
                }
            }
        }
        out
    }

    /// The forms that are verb lemmas, first occurrence first, without repeats.
    fn filter(&self, forms: &[String]) -> Vec<String> {
        let mut seen = HashSet::new();
        forms
            .iter()
            .filter(|f| self.lemmas.contains(f.as_str()) && seen.insert(f.as_str()))
            .cloned()
            .collect()
    }

    /// All verb lemmas WordNet finds for a form (`_morphy(form, "v")`).
    pub fn morphy(&self, form: &str) -> Vec<String> {
        if let Some(bases) = self.exceptions.get(form) {
            let mut forms = vec![form.to_string()];
            forms.extend(bases.iter().cloned());
            return self.filter(&forms);
        }
        let mut forms = Self::apply_rules(&[form.to_string()]);
        let mut with_original = vec![form.to_string()];
        with_original.extend(forms.iter().cloned());
        let results = self.filter(&with_original);
        if !results.is_empty() {
            return results;
        }
        while !forms.is_empty() && forms.len() <= MAX_FORMS {
            forms = Self::apply_rules(&forms);
            let results = self.filter(&forms);
            if !results.is_empty() {
                return results;
            }
        }
        Vec::new()
    }

    /// `WordNetLemmatizer().lemmatize(word, "v")`: the shortest lemma, or the word itself.
    pub fn lemmatize(&self, word: &str) -> String {
        let lemmas = self.morphy(word);
        let mut best: Option<&String> = None;
        for l in &lemmas {
            if best.is_none_or(|b| l.chars().count() < b.chars().count()) {
                best = Some(l);
            }
        }
        best.cloned().unwrap_or_else(|| word.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_exceptions() {
        let m = VerbMorphy::parse(
            "# test\nlemma\thike\nlemma\tsing\nlemma\tsinge\nlemma\tbuild\nlemma\tbe\nexc\tbeing\tbe\n",
        )
        .unwrap();
        assert_eq!(m.lemmatize("hiking"), "hike");
        assert_eq!(m.lemmatize("singing"), "sing");
        assert_eq!(m.lemmatize("sing"), "sing");
        assert_eq!(m.lemmatize("building"), "build");
        assert_eq!(m.lemmatize("being"), "be");
        assert_eq!(m.lemmatize("Hiking"), "Hiking");
        assert_eq!(m.lemmatize("king"), "king");
        assert!(VerbMorphy::parse("nonsense").is_err());
    }
}
