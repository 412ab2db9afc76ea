//! The tokenisation pycocoevalcap 1.2 applies before CIDEr: Stanford CoreNLP 3.4.1
//! `PTBTokenizer -preserveLines -lowerCase`, then removal of the punctuation tokens in
//! [`PUNCTUATIONS`] and joining with single spaces (spec `eval-protocols.md` §3.2.2).
//!
//! The lexer here is a re-implementation written from the real tokenizer's observed behaviour
//! (thousands of probe strings run through the jar that ships in the pycocoevalcap wheel; the
//! `ptb_cases` golden under `testdata/eval/cider/` pins a few hundred of them). What it covers:
//!
//! - clitics: `n't` (`don't` → `do n't`, `can't` → `ca n't`, `won't` → `wo n't`), `'s 'm 'd 're
//!   've 'll` in any case and with curly or Windows-1252 apostrophes; `cannot`-style splits
//!   (`gonna` → `gon na`, `'tis` → `'t is`); words that keep their apostrophe (`o'clock`,
//!   `ma'am`, `rock 'n' roll`, `'90s`, `y'all` → `y' all`);
//! - quotes: straight, curly, guillemets and Windows-1252 quotes become `` ` `` / `'` / ` `` ` /
//!   `''` (all dropped afterwards), except `‚ „ ‟`, which stay, and pairs such as `“‘` that form
//!   one token (kept, as pycocoevalcap keeps them);
//! - brackets become `-lrb-`, `-rrb-`, `-lsb-`, … after lower-casing, so pycocoevalcap's filter
//!   (which lists the upper-case forms) keeps them;
//! - abbreviations that keep their period (`mr.`, `inc.`, `etc.`, single letters, `u.s.`-style
//!   acronyms, `fig.`/`no.` before a number, any word before `,;:`), with the lexer's case masks;
//!   a single letter before a sentence-opening word (`plan b. The …`) loses its period;
//! - numbers with `,` `.` `:` separators, signs, dates, fractions (`1 1/2` joined by a no-break
//!   space), vulgar fractions spelled out (`½` → `1/2`), phone numbers;
//! - hyphenated and slashed words (`well-known`, `and/or`, `24/7`), URLs, e-mail addresses,
//!   `@names`, `#tags`, SGML tags (`<image>`), emoticons (`:)` → `:-rrb-`), ellipses (`…` → `...`),
//!   dashes (`–`, `—` → `--`), currency (`€` → `$`, `£` → `#`, `¢` → `cents`), `&amp;` and other
//!   entities;
//! - which characters are letters, digits, symbols or dropped, for the whole Basic Multilingual
//!   Plane; characters outside it (emoji) are dropped, as the lexer drops each UTF-16 surrogate;
//! - line breaks the lexer sees inside a caption (`\r`, vertical tab, form feed, U+2028, U+2029)
//!   shift the alignment of every later caption in the batch, exactly as in pycocoevalcap, which
//!   only replaces `\n` (see [`tokenize_batch`]).
//!
//! Known gaps (behaviour not reproduced; none occurs in ordinary captions). Differential fuzzing
//! against the jar agreed on 18,000 of 18,000 caption-like strings and on about 99.8% of
//! strings of random ASCII punctuation, digits and assorted Unicode; the residue is:
//! - soft hyphens (U+00AD) and underscores inside hyphenated or slashed compounds, and a few
//!   digit-led compounds such as `45.x`, can be split differently;
//! - the list of words after which a single letter's period is sentence-final (`plan B. The`)
//!   was found by exhaustive probing up to five letters plus a list of longer candidates; a
//!   longer word missing from the lexer's list would leave the period attached;
//! - abbreviations longer than five letters were probed from a candidate list (`messrs`,
//!   `bancorp` were found); an unlisted one would lose its period;
//! - Java decides the final sigma of a lower-cased `Σ` with its word-break iterator; this port
//!   approximates the word as the surrounding run of letters and digits;
//! - the tokenizer's extra sentence-final `.` tokens and the left/right choice for straight quotes
//!   are not modelled: both are always removed by the punctuation filter;
//! - British-to-American respelling is off in this configuration and not implemented.

mod lexer;
mod pattern;
mod tables;

/// The tokens pycocoevalcap removes after tokenising.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Tokenises a text the way the Java tokenizer does, returning one string per output line:
/// tokens lower-cased, punctuation tokens removed, joined with single spaces.
pub fn tokenize_document(text: &str) -> Vec<String> {
    lexer::tokenize_lines(text)
        .into_iter()
        .map(|tokens| {
            tokens
                .into_iter()
                .map(|t| java_lowercase(&t))
                .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Lower-cases a token like Java's `String.toLowerCase`: per character, except that a capital
/// sigma becomes final `ς` when a cased letter precedes it and none follows it within the same
/// word (Java looks across digits inside a word, unlike Rust's `str::to_lowercase`).
fn java_lowercase(token: &str) -> String {
    if !token.contains('\u{3A3}') {
        return token.to_lowercase();
    }
    let chars: Vec<char> = token.chars().collect();
    let in_word = |c: char| c.is_alphanumeric() || c == '\u{AD}';
    let cased = |c: char| (c.is_lowercase() || c.is_uppercase()) && c != '\u{AA}' && c != '\u{BA}';
    let mut out = String::with_capacity(token.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != '\u{3A3}' {
            out.extend(c.to_lowercase());
            continue;
        }
        let start = chars[..i]
            .iter()
            .rposition(|&x| !in_word(x))
            .map_or(0, |p| p + 1);
        let end = chars[i + 1..]
            .iter()
            .position(|&x| !in_word(x))
            .map_or(chars.len(), |p| i + 1 + p);
        let before = chars[start..i].iter().any(|&x| cased(x));
        let after = chars[i + 1..end].iter().any(|&x| cased(x));
        out.push(if before && !after {
            '\u{3C2}'
        } else {
            '\u{3C3}'
        });
    }
    out
}

/// Tokenises one caption as pycocoevalcap does when it is the only caption in the batch.
pub fn tokenize(caption: &str) -> String {
    tokenize_batch(&[caption]).pop().unwrap_or_default()
}

/// Tokenises captions exactly as one `PTBTokenizer().tokenize` call does: `\n` inside a caption
/// becomes a space, the captions are joined by `\n` into one document, and output line `i` is
/// assigned to caption `i`. The result has one string per caption.
pub fn tokenize_batch<S: AsRef<str>>(captions: &[S]) -> Vec<String> {
    let document = captions
        .iter()
        .map(|c| c.as_ref().replace('\n', " "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut lines = tokenize_document(&document);
    // The lexer never yields fewer lines than the document has; extra lines (from other line
    // breaks inside a caption) fall off the end, as Python's `zip` drops them.
    lines.resize(captions.len(), String::new());
    lines
}

/// Tokenises groups of captions (for example the references of each image) in one batch, the
/// way pycocoevalcap tokenises a `{image: [captions]}` dictionary, and regroups the results.
pub fn tokenize_groups<S: AsRef<str>>(groups: &[Vec<S>]) -> Vec<Vec<String>> {
    let flat: Vec<&str> = groups.iter().flatten().map(|s| s.as_ref()).collect();
    let mut tokens = tokenize_batch(&flat).into_iter();
    groups
        .iter()
        .map(|g| tokens.by_ref().take(g.len()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clitics_punctuation_and_brackets() {
        assert_eq!(
            tokenize("A plate with rice and broccoli, isn't it?"),
            "a plate with rice and broccoli is n't it"
        );
        assert_eq!(
            tokenize("I cannot go (now)."),
            "i can not go -lrb- now -rrb-"
        );
        assert_eq!(
            tokenize("He said \"hello\" to Mr. Smith."),
            "he said hello to mr. smith"
        );
        assert_eq!(tokenize("“Curly” don’t"), "curly do n't");
    }

    #[test]
    fn batch_alignment_follows_the_lexers_line_breaks() {
        assert_eq!(tokenize_batch(&["a\nb", "c"]), vec!["a b", "c"]);
        // `\r` is a line break for the lexer but not for pycocoevalcap: captions shift.
        assert_eq!(tokenize_batch(&["a\rb", "c"]), vec!["a", "b"]);
        assert_eq!(
            tokenize_groups(&[vec!["x", "y"], vec!["z"]]),
            vec![
                vec!["x".to_string(), "y".to_string()],
                vec!["z".to_string()]
            ]
        );
        assert_eq!(tokenize(""), "");
    }
}
