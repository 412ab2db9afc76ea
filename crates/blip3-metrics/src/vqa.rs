//! VQA accuracy with the official answer normalisation (spec `eval-protocols.md` §3.2.1).
//!
//! The rules follow the GT-Vision-Lab `vqaEval.py` logic and OpenFlamingo's copy of it,
//! quirks included:
//!
//! * **Punctuation.** Each of ``; / [ ] " { } ( ) = + \ _ - > < @ ` , ? !`` is deleted when the
//!   *original* text contains it next to a space (`"p "` or `" p"`) or contains a
//!   digit-comma-digit sequence anywhere, and is replaced by a space otherwise. Then periods
//!   not followed by a (Unicode decimal) digit are deleted, but only the first **32** of them:
//!   the reference passes `re.UNICODE` (= 32) where `re.sub` expects the replacement count.
//!   (Its `(?!<=\d)` is a look-ahead typo that never rejects anything.)
//! * **Digits and articles.** Lower-case, split on (Python) whitespace, map `none`/`zero` … `ten`
//!   to digits, drop `a`/`an`/`the`, expand the fixed contraction table, join with one space.
//! * **Scoring.** Leave each reference answer out in turn, count the remaining answers equal
//!   to the prediction (exact string equality), score `min(1, m/3)`, and average. "Leave out"
//!   removes every entry *equal to the left-out answer object* (`item != gtAnsDatum` on
//!   dicts): VQAv2/TextVQA answers carry distinct `answer_id`s, so that is leave-one-out by
//!   position; plain-string references are treated the same way (each is its own entry); but
//!   answer objects without an id (OpenFlamingo's VizWiz files) that agree in every field
//!   (answer text after normalisation, `answer_confidence`, ...) are left out together, as the
//!   reference does.
//!   Per-question scores are stored as `round(100·acc, 2)`; the dataset score is
//!   `round(100·Σacc/n, 2)` with Python's round-half-even on the exact binary value.
//!
//! Sums run left to right in prediction order, as Python's `sum` did before 3.12 (3.12+
//! compensates rounding, which can move `accuracy_exact` by an ulp, never the rounded score
//! in practice).
//!
//! Which strings get normalised differs between the reference copies; [`GtNormalization`]
//! selects one. Text handling mirrors Python's `str` methods: whitespace is what
//! `str.isspace` accepts (Unicode `White_Space` plus the separators U+001C–U+001F), case
//! folding is full Unicode lower-casing, and no character outside ASCII is touched by the
//! punctuation rules.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::{MetricsError, Prediction};

/// Which answers are normalised before matching, as in each copy of the reference loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GtNormalization {
    /// GT-Vision-Lab `vqaEval.py` as released 2015–2021 (and copied by LAVIS and most
    /// harnesses): the prediction is always fully normalised; reference answers get only the
    /// punctuation step, and only when the answers are not all identical. References are used
    /// as stored otherwise (no whitespace stripping, no lower-casing).
    #[default]
    Official,
    /// GT-Vision-Lab `vqaEval.py` after its 2021 "processing answers" fix: newlines and tabs
    /// are stripped from every answer; when the references are not all identical, references
    /// *and* prediction get both steps, otherwise neither is normalised at all.
    Official2021,
    /// OpenFlamingo `vqa_metric.py` (the harness behind the BLIP-3 pretrain table): every
    /// reference answer is stripped and gets both steps, always; so is the prediction.
    OpenFlamingo,
}

impl GtNormalization {
    /// Parses `official`, `official-2021` or `open-flamingo` (also with `_`, or no separator).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "official" => Some(Self::Official),
            "official2021" => Some(Self::Official2021),
            "openflamingo" => Some(Self::OpenFlamingo),
            _ => None,
        }
    }
}

/// Options for [`score`] and [`score_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VqaOptions {
    /// Which answers get normalised.
    pub gt_normalization: GtNormalization,
    /// Apply the OK-VQA stemmer ([`crate::okvqa::stem`]) to every prediction first, as
    /// OpenFlamingo does for OK-VQA.
    pub okvqa_stemming: bool,
}

/// Corpus and per-question VQA accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct VqaScore {
    /// `round(100·mean, 2)`, the number the official evaluation reports.
    pub accuracy: f64,
    /// `100·Σacc/n` before rounding (summed in prediction order, left to right).
    pub accuracy_exact: f64,
    /// Per question, in prediction order: `round(100·acc, 2)`, as the official code stores
    /// it in `evalQA`.
    pub per_id: Vec<(String, f64)>,
    /// Number of questions scored.
    pub questions: usize,
    /// Reference questions that had no prediction (scoring covers the predictions, as
    /// OpenFlamingo does).
    pub unscored_references: usize,
}

/// The punctuation characters of the reference, in its order.
const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// `re.sub(periodStrip, "", text, re.UNICODE)` removes at most this many periods.
const PERIOD_STRIP_COUNT: usize = 32;

/// Number words the reference maps to digits.
const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// The reference's contraction table (data, kept verbatim; entries with capitals can never
/// match because words are lower-cased first, exactly as in the reference).
const CONTRACTIONS: [(&str, &str); 120] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// Whitespace as Python's `str.isspace` defines it (used by `strip()` and `split()`): Unicode
/// `White_Space` plus the information separators U+001C–U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no arguments.
pub(crate) fn py_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `str.strip()` with no arguments.
pub(crate) fn py_strip(text: &str) -> &str {
    text.trim_matches(is_py_space)
}

/// Python's `\d` in a `str` pattern: a Unicode decimal digit (general category Nd).
pub(crate) fn is_decimal_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    static ND: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let mut buf = [0u8; 4];
    ND.get_or_init(|| regex::Regex::new(r"^\p{Nd}$").ok())
        .as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

/// Whether `text` contains a digit, a comma and a digit in a row (the reference's
/// `commaStrip` search).
fn has_digit_comma_digit(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(3)
        .any(|w| w[1] == ',' && is_decimal_digit(w[0]) && is_decimal_digit(w[2]))
}

/// The reference's `processPunctuation`.
pub fn process_punctuation(text: &str) -> String {
    let delete_all = has_digit_comma_digit(text);
    // The delete-or-space decision is per punctuation character and looks at the original
    // text, so it is made once for each of them before any replacement.
    let delete: Vec<bool> = PUNCT
        .iter()
        .map(|p| delete_all || text.contains(&format!("{p} ")) || text.contains(&format!(" {p}")))
        .collect();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match PUNCT.iter().position(|&p| p == c) {
            Some(i) if delete[i] => {}
            Some(_) => out.push(' '),
            None => out.push(c),
        }
    }
    strip_periods(&out)
}

/// Deletes the first [`PERIOD_STRIP_COUNT`] periods that are not followed by a digit.
fn strip_periods(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_digit = chars.get(i + 1).is_some_and(|&n| is_decimal_digit(n));
        if c == '.' && !followed_by_digit && removed < PERIOD_STRIP_COUNT {
            removed += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// The reference's `processDigitArticle`.
pub fn process_digit_article(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = py_split(&lower)
        .map(|w| {
            NUMBER_WORDS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .collect();
    words.join(" ")
}

/// Replaces newlines and tabs with spaces and strips surrounding whitespace.
fn strip_newlines_tabs(text: &str) -> String {
    py_strip(&text.replace(['\n', '\t'], " ")).to_string()
}

/// The prediction normalisation: newlines/tabs to spaces, strip, punctuation, digits and
/// articles.
pub fn normalize_answer(text: &str) -> String {
    process_digit_article(&process_punctuation(&strip_newlines_tabs(text)))
}

/// OpenFlamingo's `postprocess_vqa_generation`: cut a raw generation at the first
/// `Question`, `Answer` or `Short` (case-sensitive), then at the first `", "`.
pub fn postprocess_vqa_generation(generation: &str) -> &str {
    let cut = ["Question", "Answer", "Short"]
        .iter()
        .filter_map(|m| generation.find(m))
        .min()
        .unwrap_or(generation.len());
    let head = &generation[..cut];
    head.find(", ").map_or(head, |i| &head[..i])
}

/// One reference answer: its text and, for answer objects, the object's other fields, which
/// decide which entries leave-one-out removes together (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct RefAnswer {
    /// The answer text.
    pub answer: String,
    /// For an answer object, its fields other than `"answer"`; `None` for a plain string,
    /// which only ever equals itself.
    pub fields: Option<Map<String, Value>>,
}

impl RefAnswer {
    /// A plain-string reference answer.
    pub fn plain(answer: impl Into<String>) -> Self {
        Self {
            answer: answer.into(),
            fields: None,
        }
    }
}

/// Whether all answers are the same string (`len(set(answers)) <= 1`).
fn all_identical(answers: &[String]) -> bool {
    answers.windows(2).all(|w| w[0] == w[1])
}

/// Python's `==` on JSON-decoded values: numbers compare by value (`1 == 1.0`), booleans equal
/// the numbers 0 and 1, containers compare element-wise.
fn py_value_eq(a: &Value, b: &Value) -> bool {
    fn num(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_value_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => py_map_eq(x, y),
        _ => matches!((num(a), num(b)), (Some(x), Some(y)) if x == y),
    }
}

fn py_map_eq(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| py_value_eq(v, w)))
}

/// Per-question accuracy in `[0, 1]` for one prediction (the model answer, after any OK-VQA
/// stemming) against its reference answers. Returns `None` when there are no reference
/// answers (the reference divides by zero).
pub fn question_accuracy(
    prediction: &str,
    references: &[RefAnswer],
    mode: GtNormalization,
) -> Option<f64> {
    if references.is_empty() {
        return None;
    }
    let raw: Vec<String> = references.iter().map(|r| r.answer.clone()).collect();
    let (pred, gts): (String, Vec<String>) = match mode {
        GtNormalization::Official => {
            let pred = normalize_answer(prediction);
            let gts = if all_identical(&raw) {
                raw
            } else {
                raw.iter().map(|a| process_punctuation(a)).collect()
            };
            (pred, gts)
        }
        GtNormalization::Official2021 => {
            let pred = strip_newlines_tabs(prediction);
            let gts: Vec<String> = raw.iter().map(|a| strip_newlines_tabs(a)).collect();
            if all_identical(&gts) {
                (pred, gts)
            } else {
                let norm = |s: &str| process_digit_article(&process_punctuation(s));
                (norm(&pred), gts.iter().map(|a| norm(a)).collect())
            }
        }
        GtNormalization::OpenFlamingo => (
            normalize_answer(prediction),
            raw.iter().map(|a| normalize_answer(a)).collect(),
        ),
    };
    // Two entries are "the same item" when their (normalised) texts and other fields agree;
    // a plain string is only ever the same as itself.
    let same = |i: usize, j: usize| {
        i == j
            || (gts[i] == gts[j]
                && matches!((&references[i].fields, &references[j].fields),
                    (Some(a), Some(b)) if py_map_eq(a, b)))
    };
    // Sum left to right as the reference does, so the float result is bit-identical.
    let mut sum = 0.0f64;
    for i in 0..gts.len() {
        let matching = (0..gts.len())
            .filter(|&j| !same(i, j) && gts[j] == pred)
            .count();
        sum += (matching as f64 / 3.0).min(1.0);
    }
    Some(sum / references.len() as f64)
}

/// Python's `round(x, 2)`: round half to even on the exact binary value, then back to the
/// nearest double. Rust's fixed-precision formatting is exact in the same way.
pub fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// Reference answers per question id.
pub type VqaReferences = BTreeMap<String, Vec<RefAnswer>>;

/// Reads references from JSON: either `{id: [answer, ...]}` where each answer is a string or
/// an object with a string `"answer"` (VQAv2 answer objects), or a whole VQAv2 annotation
/// file `{"annotations": [{"question_id", "answers": [...]}, ...]}`.
pub fn parse_references(reference: &Value) -> Result<VqaReferences, MetricsError> {
    let object = reference.as_object().ok_or_else(|| MetricsError::Format {
        location: "reference".into(),
        problem: "expected a JSON object {id: [answers]}".into(),
    })?;
    if is_annotation_file(object) {
        return crate::vqa_files::parse_annotations(reference).map(|anns| {
            anns.into_iter()
                .map(|a| (a.question_id, a.answers))
                .collect()
        });
    }
    let mut out = VqaReferences::new();
    for (id, answers) in object {
        let location = format!("reference[{id:?}]");
        let list = answers.as_array().ok_or_else(|| MetricsError::Format {
            location: location.clone(),
            problem: "expected a list of reference answers".into(),
        })?;
        let answers = list
            .iter()
            .enumerate()
            .map(|(i, a)| ref_answer(a, &format!("{location}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(id.clone(), answers);
    }
    Ok(out)
}

/// Whether an object is a VQAv2 annotation file rather than `{id: [answers]}`.
fn is_annotation_file(object: &Map<String, Value>) -> bool {
    object
        .get("annotations")
        .and_then(Value::as_array)
        .is_some_and(|anns| {
            anns.first()
                .is_some_and(|a| a.get("question_id").is_some() && a.get("answers").is_some())
        })
}

/// One reference answer: a string, or an object holding a string `"answer"`.
pub(crate) fn ref_answer(value: &Value, location: &str) -> Result<RefAnswer, MetricsError> {
    match value {
        Value::String(s) => Ok(RefAnswer::plain(s.clone())),
        Value::Object(o) => {
            let answer = o
                .get("answer")
                .and_then(Value::as_str)
                .ok_or_else(|| MetricsError::Format {
                    location: location.to_string(),
                    problem: "answer object without a string \"answer\"".into(),
                })?
                .to_string();
            let mut fields = o.clone();
            fields.remove("answer");
            Ok(RefAnswer {
                answer,
                fields: Some(fields),
            })
        }
        _ => Err(MetricsError::Format {
            location: location.to_string(),
            problem: "expected an answer string or {\"answer\": ...} object".into(),
        }),
    }
}

/// Scores predictions against references. Every prediction needs a reference entry with at
/// least one answer; references without a prediction are not scored (counted in
/// [`VqaScore::unscored_references`]).
pub fn score(
    preds: &[Prediction],
    references: &VqaReferences,
    options: VqaOptions,
) -> Result<VqaScore, MetricsError> {
    if preds.is_empty() {
        return Err(MetricsError::Mismatch("no predictions to score".into()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut per_id = Vec::with_capacity(preds.len());
    let mut sum = 0.0f64;
    for p in preds {
        if !seen.insert(p.id.as_str()) {
            return Err(MetricsError::Mismatch(format!(
                "prediction id {} appears twice",
                p.id
            )));
        }
        let answers = references.get(&p.id).ok_or_else(|| {
            MetricsError::Mismatch(format!("prediction id {} has no reference answers", p.id))
        })?;
        let prediction = if options.okvqa_stemming {
            crate::okvqa::stem(&p.answer)?
        } else {
            p.answer.clone()
        };
        let acc =
            question_accuracy(&prediction, answers, options.gt_normalization).ok_or_else(|| {
                MetricsError::Format {
                    location: format!("reference[{:?}]", p.id),
                    problem: "empty list of reference answers".into(),
                }
            })?;
        sum += acc;
        per_id.push((p.id.clone(), round2(100.0 * acc)));
    }
    let n = preds.len();
    // `round(100 * float(sum(accQA)) / len(accQA), 2)`: multiply first, then divide.
    let accuracy_exact = 100.0 * sum / n as f64;
    Ok(VqaScore {
        accuracy: round2(accuracy_exact),
        accuracy_exact,
        per_id,
        questions: n,
        // Every prediction id was found in the references above.
        unscored_references: references.len() - n,
    })
}

/// `blip3 score --task vqa`: scores predictions against a reference in JSON and returns
/// `{"accuracy", "accuracy_exact", "per_id": {id: round(100·acc, 2)}, "questions",
/// "unscored_references"}`.
pub fn score_json(
    preds: &[Prediction],
    reference: &Value,
    options: VqaOptions,
) -> Result<Value, MetricsError> {
    let references = parse_references(reference)?;
    let s = score(preds, &references, options)?;
    let per_id: Map<String, Value> = s
        .per_id
        .iter()
        .map(|(id, v)| (id.clone(), Value::from(*v)))
        .collect();
    Ok(serde_json::json!({
        "accuracy": s.accuracy,
        "accuracy_exact": s.accuracy_exact,
        "per_id": per_id,
        "questions": s.questions,
        "unscored_references": s.unscored_references,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(a: &[&str]) -> Vec<RefAnswer> {
        a.iter().map(|s| RefAnswer::plain(*s)).collect()
    }

    #[test]
    fn punctuation_rules() {
        // Next to a space: deleted; otherwise replaced by a space.
        assert_eq!(process_punctuation("a-b"), "a b");
        assert_eq!(process_punctuation("a -b"), "a b");
        // A digit-comma-digit anywhere deletes every punctuation mark.
        assert_eq!(process_punctuation("1,000 a-b"), "1000 ab");
        // Periods go unless a digit follows.
        assert_eq!(process_punctuation("3.5 dr. no."), "3.5 dr no");
        // Only the first 32 periods are removed.
        let dots = ".".repeat(40);
        assert_eq!(process_punctuation(&dots), ".".repeat(8));
        // Non-ASCII is untouched; a non-ASCII decimal digit counts as a digit.
        assert_eq!(process_punctuation("café.٣"), "café.٣");
        assert_eq!(process_punctuation("٣,٤-x"), "٣٤x");
    }

    #[test]
    fn digit_article_rules() {
        assert_eq!(process_digit_article("The  Two\tDogs"), "2 dogs");
        assert_eq!(process_digit_article("dont a an"), "don't");
        assert_eq!(process_digit_article("Im none"), "im 0");
        assert_eq!(process_digit_article("x\u{1f}y"), "x y");
        assert_eq!(normalize_answer(" Yes!\n"), "yes");
    }

    #[test]
    fn leave_one_out_scores() {
        let r = refs(&["yes"; 10]);
        assert_eq!(
            question_accuracy("yes", &r, GtNormalization::Official),
            Some(1.0)
        );
        let mut r = refs(&["no"; 10]);
        for (k, want) in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0)] {
            for a in r.iter_mut().take(k) {
                a.answer = "yes".into();
            }
            let got = question_accuracy("yes", &r, GtNormalization::Official).unwrap();
            assert!((got - want).abs() < 1e-12, "k={k}: {got}");
        }
        assert_eq!(
            question_accuracy("yes", &[], GtNormalization::Official),
            None
        );
    }

    #[test]
    fn modes_differ_on_raw_references() {
        // All identical and capitalised: Official leaves the references alone.
        let r = refs(&["Yes"; 10]);
        assert_eq!(
            question_accuracy("yes", &r, GtNormalization::Official),
            Some(0.0)
        );
        assert_eq!(
            question_accuracy("yes", &r, GtNormalization::OpenFlamingo),
            Some(1.0)
        );
        // Official2021 normalises nothing when the references agree.
        assert_eq!(
            question_accuracy("Yes", &r, GtNormalization::Official2021),
            Some(1.0)
        );
        assert_eq!(
            question_accuracy("yes.", &r, GtNormalization::Official2021),
            Some(0.0)
        );
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round2(0.125), 0.12);
        assert_eq!(round2(33.335), 33.34);
        assert_eq!(round2(100.0 * (2.0 / 3.0)), 66.67);
    }

    #[test]
    fn generation_postprocessing() {
        assert_eq!(
            postprocess_vqa_generation("two dogs, maybe Question: x"),
            "two dogs"
        );
        assert_eq!(postprocess_vqa_generation("red Short answer: blue"), "red ");
        assert_eq!(postprocess_vqa_generation("plain"), "plain");
    }

    #[test]
    fn reference_layouts_and_errors() {
        let v = serde_json::json!({"1": ["a", {"answer": "b", "answer_id": 2}]});
        let r = parse_references(&v).unwrap();
        assert_eq!(r["1"][0], RefAnswer::plain("a"));
        assert_eq!(r["1"][1].answer, "b");
        assert!(parse_references(&serde_json::json!([1])).is_err());
        assert!(parse_references(&serde_json::json!({"1": "a"})).is_err());
        assert!(parse_references(&serde_json::json!({"1": [3]})).is_err());
        assert!(parse_references(&serde_json::json!({"1": [{"x": 1}]})).is_err());
    }

    #[test]
    fn equal_answer_objects_are_left_out_together() {
        // Three identical id-less objects plus one other "yes": leaving out one of the three
        // removes all three, so only one match remains among the others.
        let obj = |a: &str, c: &str| {
            ref_answer(
                &serde_json::json!({"answer": a, "answer_confidence": c}),
                "t",
            )
            .unwrap()
        };
        let r = vec![
            obj("yes", "yes"),
            obj("yes", "yes"),
            obj("yes", "yes"),
            obj("yes", "no"),
        ];
        // i=0..2: others hold only the "no"-confidence yes -> 1/3; i=3: three matches -> 1.
        let got = question_accuracy("yes", &r, GtNormalization::OpenFlamingo).unwrap();
        assert_eq!(got, (1.0 / 3.0 + 1.0 / 3.0 + 1.0 / 3.0 + 1.0) / 4.0);
        // With distinct ids it is plain leave-one-out: three matches remain each time.
        let with_id = |i: u32| {
            ref_answer(&serde_json::json!({"answer": "yes", "answer_id": i}), "t").unwrap()
        };
        let r: Vec<_> = (1..=4).map(with_id).collect();
        assert_eq!(
            question_accuracy("yes", &r, GtNormalization::Official),
            Some(1.0)
        );
        assert!(py_value_eq(&serde_json::json!(1), &serde_json::json!(1.0)));
        assert!(py_value_eq(&serde_json::json!(true), &serde_json::json!(1)));
    }

    #[test]
    fn mode_names() {
        assert_eq!(
            GtNormalization::parse("open-flamingo"),
            Some(GtNormalization::OpenFlamingo)
        );
        assert_eq!(
            GtNormalization::parse("official_2021"),
            Some(GtNormalization::Official2021)
        );
        assert_eq!(GtNormalization::parse("x"), None);
    }
}
