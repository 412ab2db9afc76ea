//! NLTK's averaged perceptron part-of-speech tagger (`nltk.pos_tag`, English), with the
//! weights of the pre-trained model embedded as data.
//!
//! Words in the model's tag dictionary get their tag directly; every other word is scored by
//! summing the weights of its features (bias, suffix, first letter, the two previous tags, the
//! surrounding words and suffixes) per tag, and the highest score wins, ties going to the
//! alphabetically last tag. The sums run in the reference's feature order over the same
//! doubles (`weight·1000` is an exact integer for every weight), so they are bit-identical.

use std::collections::HashMap;

use crate::MetricsError;

/// Non-decimal characters Python's `str.isdigit` accepts (superscripts, circled digits, ...),
/// from Python 3.11's Unicode 14 database.
const OTHER_DIGITS: [(u32, u32); 20] = [
    (0xB2, 0xB3),
    (0xB9, 0xB9),
    (0x1369, 0x1371),
    (0x19DA, 0x19DA),
    (0x2070, 0x2070),
    (0x2074, 0x2079),
    (0x2080, 0x2089),
    (0x2460, 0x2468),
    (0x2474, 0x247C),
    (0x2488, 0x2490),
    (0x24EA, 0x24EA),
    (0x24F5, 0x24FD),
    (0x24FF, 0x24FF),
    (0x2776, 0x277E),
    (0x2780, 0x2788),
    (0x278A, 0x2792),
    (0x10A40, 0x10A43),
    (0x10E60, 0x10E68),
    (0x11052, 0x1105A),
    (0x1F100, 0x1F10A),
];

/// Python's `str.isdigit` for one character.
fn is_py_digit(c: char) -> bool {
    crate::vqa::is_decimal_digit(c)
        || OTHER_DIGITS
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&u32::from(c)))
}

/// The last (up to) three characters, as `s[-3:]`.
fn suffix3(s: &str) -> &str {
    let start = s.char_indices().rev().nth(2).map_or(0, |(i, _)| i);
    &s[start..]
}

/// The pre-trained model.
pub struct PerceptronTagger {
    classes: Vec<String>,
    tagdict: HashMap<String, u8>,
    weights: HashMap<String, Vec<(u8, f64)>>,
}

impl PerceptronTagger {
    /// Parses the embedded table: a `classes` line, `tagdict\tWORD\tTAG` lines and
    /// `w\tFEATURE\tCLASS:MILLIS ...` lines; `#` lines are comments.
    pub fn parse(text: &str) -> Result<Self, MetricsError> {
        let mut classes: Vec<String> = Vec::new();
        let mut tagdict = HashMap::new();
        let mut weights = HashMap::new();
        for (n, line) in text.split('\n').enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| MetricsError::Format {
                location: format!("tagger.txt line {}", n + 1),
                problem: what.to_string(),
            };
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["classes", list] => classes = list.split(' ').map(str::to_string).collect(),
                ["tagdict", word, tag] => {
                    let i = classes
                        .iter()
                        .position(|c| c == tag)
                        .ok_or_else(|| bad("tag not among the classes"))?;
                    tagdict.insert((*word).to_string(), i as u8);
                }
                ["w", feature, cells] => {
                    // A feature may have no weights left (the reference keeps it, empty).
                    let parsed = cells
                        .split(' ')
                        .filter(|cell| !cell.is_empty())
                        .map(|cell| {
                            let (class, milli) = cell.split_once(':')?;
                            let class: u8 = class.parse().ok()?;
                            let milli: i32 = milli.parse().ok()?;
                            // The reference's weights are the doubles nearest to millis/1000.
                            ((class as usize) < classes.len())
                                .then_some((class, f64::from(milli) / 1000.0))
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("bad weight cell"))?;
                    weights.insert((*feature).to_string(), parsed);
                }
                _ => return Err(bad("unexpected entry")),
            }
        }
        if classes.is_empty() || classes.len() > usize::from(u8::MAX) {
            return Err(MetricsError::Format {
                location: "tagger.txt".into(),
                problem: "no usable class list".into(),
            });
        }
        Ok(Self {
            classes,
            tagdict,
            weights,
        })
    }

    /// The tagger's word normalisation for context features.
    fn normalize(word: &str) -> String {
        if word.contains('-') && !word.starts_with('-') {
            return "!HYPHEN".into();
        }
        if word.chars().count() == 4 && word.chars().all(is_py_digit) {
            return "!YEAR".into();
        }
        if word.chars().next().is_some_and(is_py_digit) {
            return "!DIGITS".into();
        }
        word.to_lowercase()
    }

    /// Tags a token sequence (one call of `pos_tag`).
    pub fn tag(&self, tokens: &[String]) -> Vec<String> {
        let mut context: Vec<String> = vec!["-START-".into(), "-START2-".into()];
        context.extend(tokens.iter().map(|w| Self::normalize(w)));
        context.extend(["-END-".to_string(), "-END2-".to_string()]);
        let mut prev = "-START-".to_string();
        let mut prev2 = "-START2-".to_string();
        let mut out = Vec::with_capacity(tokens.len());
        for (i, word) in tokens.iter().enumerate() {
            let tag = match self.tagdict.get(word.as_str()) {
                Some(&c) => self.classes[usize::from(c)].clone(),
                None => self.predict(&Self::features(i + 2, word, &context, &prev, &prev2)),
            };
            prev2 = std::mem::replace(&mut prev, tag.clone());
            out.push(tag);
        }
        out
    }

    /// The feature strings of one position, in the reference's order.
    fn features(i: usize, word: &str, context: &[String], prev: &str, prev2: &str) -> Vec<String> {
        let first = word.chars().next().map(String::from).unwrap_or_default();
        vec![
            "bias".to_string(),
            format!("i suffix {}", suffix3(word)),
            format!("i pref1 {first}"),
            format!("i-1 tag {prev}"),
            format!("i-2 tag {prev2}"),
            format!("i tag+i-2 tag {prev} {prev2}"),
            format!("i word {}", context[i]),
            format!("i-1 tag+i word {prev} {}", context[i]),
            format!("i-1 word {}", context[i - 1]),
            format!("i-1 suffix {}", suffix3(&context[i - 1])),
            format!("i-2 word {}", context[i - 2]),
            format!("i+1 word {}", context[i + 1]),
            format!("i+1 suffix {}", suffix3(&context[i + 1])),
            format!("i+2 word {}", context[i + 2]),
        ]
    }

    fn predict(&self, features: &[String]) -> String {
        let mut scores = vec![0.0f64; self.classes.len()];
        for f in features {
            if let Some(ws) = self.weights.get(f) {
                for &(class, w) in ws {
                    scores[usize::from(class)] += w;
                }
            }
        }
        // max over (score, label): the higher score, then the later label.
        let mut best = 0;
        for c in 1..self.classes.len() {
            let better = scores[c] > scores[best]
                || (scores[c] == scores[best] && self.classes[c] > self.classes[best]);
            if better {
                best = c;
            }
        }
        self.classes[best].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_suffixes() {
        assert_eq!(PerceptronTagger::normalize("well-being"), "!HYPHEN");
        assert_eq!(PerceptronTagger::normalize("-x"), "-x");
        assert_eq!(PerceptronTagger::normalize("1984"), "!YEAR");
        assert_eq!(PerceptronTagger::normalize("²²²²"), "!YEAR");
        assert_eq!(PerceptronTagger::normalize("3rd"), "!DIGITS");
        assert_eq!(PerceptronTagger::normalize("Dogs"), "dogs");
        assert_eq!(suffix3("ab"), "ab");
        assert_eq!(suffix3("café"), "afé");
    }
}
