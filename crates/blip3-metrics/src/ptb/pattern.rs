//! A small regular-expression matcher over `char` slices that reports every position where a
//! match starting at a given position can end. The PTB lexer needs exactly that to reproduce the
//! longest-match rule of a generated scanner: each token rule is tried at the current position,
//! and the rule whose match (including trailing context) is longest wins.

/// A pattern: a regular expression built from the constructors below.
pub(super) enum Pat {
    /// One character accepted by the predicate.
    One(fn(char) -> bool),
    /// An exact string.
    Lit(&'static str),
    /// An ASCII string matched without regard to case.
    NoCase(&'static str),
    /// An abbreviation with a case mask: a lowercase ASCII letter matches either case, an
    /// uppercase letter only itself, and a letter after `=` only itself.
    Masked(&'static str),
    /// The patterns one after another.
    Seq(Vec<Pat>),
    /// Any one of the patterns.
    Alt(Vec<Pat>),
    /// The pattern repeated between `min` and `max` times.
    Rep(Box<Pat>, usize, usize),
    /// Matches the empty string at the end of the text only.
    End,
}

/// One character accepted by `f`.
pub(super) fn one(f: fn(char) -> bool) -> Pat {
    Pat::One(f)
}

/// An exact string.
pub(super) fn lit(s: &'static str) -> Pat {
    Pat::Lit(s)
}

/// An ASCII string in any case.
pub(super) fn nocase(s: &'static str) -> Pat {
    Pat::NoCase(s)
}

/// A sequence.
pub(super) fn seq(parts: Vec<Pat>) -> Pat {
    Pat::Seq(parts)
}

/// An alternation.
pub(super) fn alt(parts: Vec<Pat>) -> Pat {
    Pat::Alt(parts)
}

/// Any of the exact strings.
pub(super) fn words(list: &[&'static str]) -> Pat {
    Pat::Alt(list.iter().map(|w| Pat::Lit(w)).collect())
}

/// Any of the masked abbreviations (see [`Pat::Masked`]).
pub(super) fn masked(list: &[&'static str]) -> Pat {
    Pat::Alt(list.iter().map(|w| Pat::Masked(w)).collect())
}

/// Between `min` and `max` repetitions.
pub(super) fn rep(p: Pat, min: usize, max: usize) -> Pat {
    Pat::Rep(Box::new(p), min, max)
}

/// Zero or more.
pub(super) fn star(p: Pat) -> Pat {
    rep(p, 0, usize::MAX)
}

/// One or more.
pub(super) fn plus(p: Pat) -> Pat {
    rep(p, 1, usize::MAX)
}

/// Zero or one.
pub(super) fn opt(p: Pat) -> Pat {
    rep(p, 0, 1)
}

/// Sorts and deduplicates a set of positions.
fn normalise(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v.dedup();
    v
}

impl Pat {
    /// All end positions of matches of `self` that start at any position in `from`.
    pub(super) fn ends(&self, s: &[char], from: &[usize]) -> Vec<usize> {
        if from.is_empty() {
            return Vec::new();
        }
        match self {
            Pat::One(f) => normalise(
                from.iter()
                    .filter(|&&i| i < s.len() && f(s[i]))
                    .map(|&i| i + 1)
                    .collect(),
            ),
            Pat::Lit(w) => from
                .iter()
                .filter_map(|&i| match_str(s, i, w, |a, b| a == b))
                .collect(),
            Pat::NoCase(w) => from
                .iter()
                .filter_map(|&i| match_str(s, i, w, |a, b| a.eq_ignore_ascii_case(&b)))
                .collect(),
            Pat::Masked(w) => from.iter().filter_map(|&i| match_mask(s, i, w)).collect(),
            Pat::Seq(parts) => {
                let mut cur = from.to_vec();
                for p in parts {
                    cur = p.ends(s, &cur);
                    if cur.is_empty() {
                        break;
                    }
                }
                cur
            }
            Pat::Alt(parts) => normalise(parts.iter().flat_map(|p| p.ends(s, from)).collect()),
            Pat::Rep(p, min, max) => {
                let mut out = Vec::new();
                let mut seen: Vec<usize> = Vec::new();
                let mut cur = from.to_vec();
                let mut n = 0usize;
                loop {
                    if n >= *min {
                        out.extend_from_slice(&cur);
                    }
                    if n >= *max {
                        break;
                    }
                    let next = p.ends(s, &cur);
                    n += 1;
                    // Past the minimum, a position already reached adds nothing new.
                    let next: Vec<usize> = if n > *min {
                        next.into_iter().filter(|e| !seen.contains(e)).collect()
                    } else {
                        next
                    };
                    if next.is_empty() {
                        break;
                    }
                    if n >= *min {
                        seen.extend_from_slice(&next);
                    }
                    cur = next;
                }
                normalise(out)
            }
            Pat::End => from.iter().copied().filter(|&i| i == s.len()).collect(),
        }
    }

    /// Whether the pattern matches the empty string.
    pub(super) fn nullable(&self) -> bool {
        match self {
            Pat::One(_) | Pat::Masked(_) => false,
            Pat::Lit(w) | Pat::NoCase(w) => w.is_empty(),
            Pat::Seq(parts) => parts.iter().all(Pat::nullable),
            Pat::Alt(parts) => parts.iter().any(Pat::nullable),
            Pat::Rep(p, min, _) => *min == 0 || p.nullable(),
            Pat::End => true,
        }
    }

    /// Whether a non-empty match can start with `c` (a cheap filter before [`Pat::ends`]).
    pub(super) fn can_start(&self, c: char) -> bool {
        match self {
            Pat::One(f) => f(c),
            Pat::Lit(w) => w.starts_with(c),
            Pat::NoCase(w) => w.chars().next().is_some_and(|f| f.eq_ignore_ascii_case(&c)),
            Pat::Masked(_) => c.is_ascii_alphabetic(),
            Pat::Seq(parts) => {
                for p in parts {
                    if p.can_start(c) {
                        return true;
                    }
                    if !p.nullable() {
                        return false;
                    }
                }
                false
            }
            Pat::Alt(parts) => parts.iter().any(|p| p.can_start(c)),
            Pat::Rep(p, _, max) => *max > 0 && p.can_start(c),
            Pat::End => false,
        }
    }

    /// The longest match of `self` starting at `at`, if any.
    pub(super) fn longest(&self, s: &[char], at: usize) -> Option<usize> {
        self.ends(s, &[at]).last().copied()
    }
}

/// Matches the string `w` at `i` with the character comparison `eq`.
fn match_str(s: &[char], i: usize, w: &str, eq: impl Fn(char, char) -> bool) -> Option<usize> {
    let mut j = i;
    for c in w.chars() {
        if j >= s.len() || !eq(s[j], c) {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// Matches a masked abbreviation (see [`Pat::Masked`]) at `i`.
fn match_mask(s: &[char], i: usize, w: &str) -> Option<usize> {
    let mut j = i;
    let mut exact = false;
    for c in w.chars() {
        if c == '=' {
            exact = true;
            continue;
        }
        let got = *s.get(j)?;
        let ok = if exact || c.is_ascii_uppercase() || !c.is_ascii_alphabetic() {
            got == c
        } else {
            got.eq_ignore_ascii_case(&c)
        };
        if !ok {
            return None;
        }
        exact = false;
        j += 1;
    }
    Some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn repetition_and_alternation_report_every_end() {
        let s = chars("aaab");
        let p = plus(one(|c| c == 'a'));
        assert_eq!(p.ends(&s, &[0]), vec![1, 2, 3]);
        let p = seq(vec![star(one(|c| c == 'a')), lit("b")]);
        assert_eq!(p.longest(&s, 0), Some(4));
        let p = rep(one(|c| c == 'a'), 2, 2);
        assert_eq!(p.ends(&s, &[0]), vec![2]);
        assert_eq!(alt(vec![lit("aa"), lit("a")]).ends(&s, &[0]), vec![1, 2]);
        assert_eq!(opt(lit("x")).ends(&s, &[0]), vec![0]);
    }

    #[test]
    fn masks_and_caseless_literals() {
        let p = masked(&["Mass", "m=fg"]);
        assert_eq!(p.longest(&chars("MASS"), 0), Some(4));
        assert_eq!(p.longest(&chars("mass"), 0), None);
        assert_eq!(p.longest(&chars("MfG"), 0), Some(3));
        assert_eq!(p.longest(&chars("MFG"), 0), None);
        assert_eq!(nocase("n't").longest(&chars("N'T"), 0), Some(3));
        assert_eq!(Pat::End.ends(&chars("ab"), &[1, 2]), vec![2]);
    }
}
