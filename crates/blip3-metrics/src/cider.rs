//! CIDEr-D exactly as pycocoevalcap 1.2's `Cider` computes it (spec `eval-protocols.md`
//! §3.2.2): n-grams up to 4, Gaussian length penalty with sigma 6, document frequencies counted
//! over the evaluated images only, the "length" taken as the number of bigrams (the reference
//! code's quirk), the zero-norm guard, ×10 per image and the mean over images.
//!
//! Floating-point operations follow the Python code in the same order, including NumPy's
//! pairwise summation in `np.mean`, so results agree to the last bit or nearly so.

use std::collections::HashMap;
use std::f64::consts::E;

use crate::ptb;
use crate::{MetricsError, Prediction};

/// Longest n-gram counted.
const N: usize = 4;
/// Standard deviation of the length penalty.
const SIGMA: f64 = 6.0;

/// One image to score: its candidate and its references, already tokenised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiderInput {
    /// Tokenised candidate caption (tokens separated by whitespace).
    pub candidate: String,
    /// Tokenised reference captions; at least one.
    pub references: Vec<String>,
}

/// Corpus and per-image CIDEr-D, on pycocoevalcap's scale (not ×100).
#[derive(Debug, Clone, PartialEq)]
pub struct CiderScores {
    /// Mean of the per-image scores.
    pub corpus: f64,
    /// One score per input, in input order.
    pub per_image: Vec<f64>,
}

/// Splits like Python's `str.split()` with no argument (any Unicode whitespace Python knows).
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// Python's `str.isspace` for one character.
fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{B}'
            | '\u{C}'
            | '\r'
            | '\u{1C}'..='\u{1F}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// N-gram counts in first-occurrence order (1-grams first), as Python's dict keeps them.
struct Counts {
    /// (n-gram joined by spaces, n - 1, count)
    grams: Vec<(String, usize, usize)>,
}

fn precook(s: &str) -> Counts {
    let words: Vec<&str> = py_split(s).collect();
    let mut grams: Vec<(String, usize, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for k in 1..=N {
        for i in 0..(words.len() + 1).saturating_sub(k) {
            let key = words[i..i + k].join(" ");
            match index.get(&key) {
                Some(&j) => grams[j].2 += 1,
                None => {
                    index.insert(key.clone(), grams.len());
                    grams.push((key, k - 1, 1));
                }
            }
        }
    }
    Counts { grams }
}

/// A tf-idf vector per n, with norms and the bigram "length".
struct Vector {
    /// Per n: n-gram → weight, and the n-grams in insertion order.
    weights: Vec<HashMap<String, f64>>,
    order: Vec<Vec<String>>,
    norm: [f64; N],
    length: usize,
}

fn counts_to_vec(counts: &Counts, df: &HashMap<String, f64>, ref_len: f64) -> Vector {
    let mut weights: Vec<HashMap<String, f64>> = vec![HashMap::new(); N];
    let mut order: Vec<Vec<String>> = vec![Vec::new(); N];
    let mut norm = [0.0f64; N];
    let mut length = 0usize;
    for (gram, n, tf) in &counts.grams {
        let d = df.get(gram).copied().unwrap_or(0.0).max(1.0).ln();
        let w = *tf as f64 * (ref_len - d);
        weights[*n].insert(gram.clone(), w);
        order[*n].push(gram.clone());
        norm[*n] += w * w;
        // The reference code counts the bigrams here (its n is zero-based).
        if *n == 1 {
            length += tf;
        }
    }
    for x in norm.iter_mut() {
        *x = x.sqrt();
    }
    Vector {
        weights,
        order,
        norm,
        length,
    }
}

fn sim(hyp: &Vector, reference: &Vector) -> [f64; N] {
    let delta = hyp.length as f64 - reference.length as f64;
    let mut val = [0.0f64; N];
    for (n, v) in val.iter_mut().enumerate() {
        for gram in &hyp.order[n] {
            let vh = hyp.weights[n].get(gram).copied().unwrap_or(0.0);
            let vr = reference.weights[n].get(gram).copied().unwrap_or(0.0);
            // Python's min(a, b) returns a unless b < a.
            let m = if vr < vh { vr } else { vh };
            *v += m * vr;
        }
        if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
            *v /= hyp.norm[n] * reference.norm[n];
        }
        *v *= E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    }
    val
}

/// Sums like NumPy's `add.reduce` on a contiguous float64 array (pairwise summation).
fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&a[..n2]) + numpy_sum(&a[n2..])
    }
}

/// `np.mean` of a float64 array (NaN for an empty one, as NumPy returns).
fn numpy_mean(a: &[f64]) -> f64 {
    numpy_sum(a) / a.len() as f64
}

/// CIDEr-D of already tokenised candidates and references. Document frequencies come from the
/// references of exactly these images. Errors if an image has no reference.
pub fn cider_d(items: &[CiderInput]) -> Result<CiderScores, MetricsError> {
    if let Some(i) = items.iter().position(|it| it.references.is_empty()) {
        return Err(MetricsError::Mismatch(format!(
            "image #{i} has no reference caption"
        )));
    }
    let refs: Vec<Vec<Counts>> = items
        .iter()
        .map(|it| it.references.iter().map(|r| precook(r)).collect())
        .collect();
    let tests: Vec<Counts> = items.iter().map(|it| precook(&it.candidate)).collect();

    let mut df: HashMap<String, f64> = HashMap::new();
    for image_refs in &refs {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for counts in image_refs {
            for (gram, _, _) in &counts.grams {
                seen.insert(gram);
            }
        }
        for gram in seen {
            *df.entry(gram.to_string()).or_insert(0.0) += 1.0;
        }
    }

    let ref_len = (items.len() as f64).ln();
    let mut per_image = Vec::with_capacity(items.len());
    for (test, image_refs) in tests.iter().zip(&refs) {
        let hyp = counts_to_vec(test, &df, ref_len);
        let mut score = [0.0f64; N];
        for r in image_refs {
            let rv = counts_to_vec(r, &df, ref_len);
            let s = sim(&hyp, &rv);
            for (total, x) in score.iter_mut().zip(s) {
                *total += x;
            }
        }
        let mut avg = numpy_mean(&score);
        avg /= image_refs.len() as f64;
        avg *= 10.0;
        per_image.push(avg);
    }
    Ok(CiderScores {
        corpus: numpy_mean(&per_image),
        per_image,
    })
}

/// CIDEr-D of raw captions: references and candidates are tokenised with the PTB port in two
/// batches (references image by image, then the candidates), as pycocoevalcap's harness does.
pub fn cider_d_raw<S: AsRef<str>>(
    candidates: &[S],
    references: &[Vec<S>],
) -> Result<CiderScores, MetricsError> {
    if candidates.len() != references.len() {
        return Err(MetricsError::Mismatch(format!(
            "{} candidates but {} reference sets",
            candidates.len(),
            references.len()
        )));
    }
    let refs = ptb::tokenize_groups(references);
    let cands = ptb::tokenize_batch(candidates);
    let items: Vec<CiderInput> = cands
        .into_iter()
        .zip(refs)
        .map(|(candidate, references)| CiderInput {
            candidate,
            references,
        })
        .collect();
    cider_d(&items)
}

/// Scores predictions against `{id: [reference strings]}` for `blip3 score --task cider`.
///
/// Both sides are raw text, tokenised with the PTB port; images are taken in prediction order.
/// Returns `{"CIDEr": corpus, "per_id": {id: score}, "images": n}` with the corpus value on
/// pycocoevalcap's scale (harnesses report ×100). Refuses predictions without references,
/// references without a prediction, repeated ids, empty reference lists and non-string
/// references.
pub fn score_json(
    preds: &[Prediction],
    reference: &serde_json::Value,
) -> Result<serde_json::Value, MetricsError> {
    let map = reference.as_object().ok_or_else(|| MetricsError::Format {
        location: "reference".into(),
        problem: "expected a JSON object {id: [reference strings]}".into(),
    })?;
    let mut refs_by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    for (id, value) in map {
        let list = value.as_array().ok_or_else(|| MetricsError::Format {
            location: format!("reference id {id}"),
            problem: "expected a list of reference strings".into(),
        })?;
        if list.is_empty() {
            return Err(MetricsError::Format {
                location: format!("reference id {id}"),
                problem: "empty list of references".into(),
            });
        }
        let mut strings = Vec::with_capacity(list.len());
        for (k, r) in list.iter().enumerate() {
            let s = r.as_str().ok_or_else(|| MetricsError::Format {
                location: format!("reference id {id} item {k}"),
                problem: format!("reference is not a string: {r}"),
            })?;
            strings.push(s);
        }
        refs_by_id.insert(id.as_str(), strings);
    }

    let mut seen = std::collections::HashSet::new();
    for p in preds {
        if !seen.insert(p.id.as_str()) {
            return Err(MetricsError::Mismatch(format!(
                "prediction id {} appears twice",
                p.id
            )));
        }
        if !refs_by_id.contains_key(p.id.as_str()) {
            return Err(MetricsError::Mismatch(format!(
                "prediction id {} has no references",
                p.id
            )));
        }
    }
    let mut missing: Vec<&str> = refs_by_id
        .keys()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(MetricsError::Mismatch(format!(
            "reference ids without a prediction: {}",
            missing.join(", ")
        )));
    }
    if preds.is_empty() {
        return Err(MetricsError::Mismatch("no predictions to score".into()));
    }

    let candidates: Vec<&str> = preds.iter().map(|p| p.answer.as_str()).collect();
    let references: Vec<Vec<&str>> = preds
        .iter()
        .map(|p| refs_by_id.get(p.id.as_str()).cloned().unwrap_or_default())
        .collect();
    let scores = cider_d_raw(&candidates, &references)?;
    let per_id: serde_json::Map<String, serde_json::Value> = preds
        .iter()
        .zip(&scores.per_image)
        .map(|(p, s)| (p.id.clone(), serde_json::json!(s)))
        .collect();
    Ok(serde_json::json!({
        "CIDEr": scores.corpus,
        "per_id": per_id,
        "images": preds.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_golden() {
        let cands = [
            "A man is surfing on a wave.",
            "Dogs",
            "A plate with rice and broccoli, isn't it?",
        ];
        let refs = vec![
            vec![
                "A man riding a wave on top of a surfboard.",
                "A surfer rides a large wave in the ocean.",
            ],
            vec![
                "Two dogs playing with a frisbee in the park.",
                "A couple of dogs that are running on grass.",
            ],
            vec![
                "A plate of food with broccoli and rice.",
                "The dinner plate has rice, broccoli, and chicken.",
            ],
        ];
        let s = cider_d_raw(&cands, &refs).unwrap();
        let want = [1.06803769, 0.43125592, 1.70463278];
        for (got, want) in s.per_image.iter().zip(want) {
            assert!((got - want).abs() < 1e-8, "{got} vs {want}");
        }
        assert!((s.corpus - 1.067975463680568).abs() < 1e-12, "{}", s.corpus);
    }

    #[test]
    fn single_image_has_zero_idf_and_empty_candidates_score_zero() {
        let s = cider_d(&[CiderInput {
            candidate: "a dog".into(),
            references: vec!["a dog".into()],
        }])
        .unwrap();
        assert_eq!(s.per_image, vec![0.0]);
        let s = cider_d(&[
            CiderInput {
                candidate: String::new(),
                references: vec!["a dog".into()],
            },
            CiderInput {
                candidate: "a cat".into(),
                references: vec!["a cat".into()],
            },
        ])
        .unwrap();
        assert_eq!(s.per_image[0], 0.0);
        assert!(cider_d(&[CiderInput {
            candidate: "x".into(),
            references: vec![],
        }])
        .is_err());
    }

    #[test]
    fn numpy_pairwise_sum_order() {
        assert_eq!(numpy_sum(&[1e16, 1.0, 1.0, -1e16]), 0.0);
        let v: Vec<f64> = (0..300).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let s = numpy_sum(&v);
        assert!((s - v.iter().sum::<f64>()).abs() < 1e-12);
        assert!(py_split("a\u{a0}b  c\u{1c}d").eq(["a", "b", "c", "d"]));
    }
}
