//! The token rules of the CoreNLP 3.4.1 PTB lexer as pycocoevalcap runs it (`-preserveLines
//! -lowerCase`, default options otherwise), reconstructed from the tokenizer's observed output.
//!
//! Each rule is a pattern, an optional trailing context (looked at but not consumed) and an
//! action that turns the matched text into the token text. At every position the rule with the
//! longest match *including* its trailing context wins, and among equally long matches the one
//! listed first: the same resolution a generated scanner uses.

use std::sync::OnceLock;

use super::pattern::{alt, lit, masked, nocase, one, opt, plus, rep, seq, star, words, Pat};
use super::tables::{DIGITS, EXTRA_LETTERS, LETTERS, SYMBOLS};

/// What a rule does with the text it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Emit the text unchanged.
    Keep,
    /// Emit the text without soft hyphens (a lone soft hyphen becomes `-`).
    StripShy,
    /// Emit a fixed string.
    Fixed(&'static str),
    /// A quote token: map curly and guillemet quotes to the LaTeX-style ASCII ones.
    Quote,
    /// A clitic (`'s`, `n't`): normalise its apostrophe.
    Clitic,
    /// SGML tag: its spaces become no-break spaces.
    Sgml,
    /// Phone number: brackets become `-LRB-`/`-RRB-`, spaces no-break spaces.
    Phone,
    /// Fraction with a whole part: the space becomes a no-break space.
    Fraction,
    /// A vulgar fraction character spelled out (`½` → `1/2`).
    VulgarFraction,
    /// Currency sign normalised to its Penn Treebank form.
    Currency,
    /// Text with `&amp;` written as `&`.
    Ampersand,
    /// Emoticon: its brackets become `-LRB-` and so on.
    Smiley,
    /// Nothing is emitted (spacing, untokenizable characters).
    Skip,
    /// A line break (`-preserveLines`).
    Newline,
}

/// One token rule.
struct Rule {
    pat: Pat,
    look: Option<Pat>,
    act: Act,
}

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    crate::pytext::in_ranges(table, c)
}

/// A digit as the lexer sees it.
fn digit(c: char) -> bool {
    in_table(DIGITS, c)
}

/// A letter in the narrow sense (Java's `isLetter` as the lexer was generated).
fn letter_j(c: char) -> bool {
    in_table(LETTERS, c)
}

/// A letter in the wide sense used by ordinary words: also combining marks, modifier letters
/// and the soft hyphen.
fn letter(c: char) -> bool {
    letter_j(c) || in_table(EXTRA_LETTERS, c) || c == '\u{AD}'
}

fn alnum_j(c: char) -> bool {
    letter_j(c) || digit(c)
}

fn ascii_alpha(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn ascii_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn ascii_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn not_ascii_alpha(c: char) -> bool {
    !c.is_ascii_alphabetic()
}

/// Horizontal spacing that the lexer's trailing contexts recognise.
fn space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{A0}' | '\u{2000}'..='\u{200A}' | '\u{3000}'
    )
}

/// A single line-break character (`\r\n` is handled as a pair by [`newline`]).
fn newline_char(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{B}' | '\u{C}' | '\u{2028}' | '\u{2029}')
}

/// Spacing or a line break, as trailing contexts see them (these include NEL, which as a token
/// is an ellipsis).
fn space_nl(c: char) -> bool {
    space(c) || newline_char(c) || c == '\u{85}'
}

/// Straight or right single quote used as an apostrophe.
fn apos_char(c: char) -> bool {
    matches!(c, '\'' | '\u{92}' | '\u{2019}')
}

/// Characters that may stand for an apostrophe inside a word.
fn apos_etc_char(c: char) -> bool {
    apos_char(c) || matches!(c, '`' | '\u{91}' | '\u{2018}' | '\u{201B}')
}

/// Quote characters that pair up into one- or two-character quote tokens.
fn quote_char(c: char) -> bool {
    matches!(
        c,
        '`' | '\u{2018}'..='\u{201F}' | '\u{91}'..='\u{94}' | '\u{2039}' | '\u{203A}' | '\u{AB}' | '\u{BB}'
    )
}

fn symbol(c: char) -> bool {
    in_table(SYMBOLS, c)
}

fn apos() -> Pat {
    alt(vec![one(apos_char), nocase("&apos;")])
}

fn apos_etc() -> Pat {
    alt(vec![one(apos_etc_char), nocase("&apos;")])
}

fn newline() -> Pat {
    alt(vec![lit("\r\n"), one(newline_char)])
}

/// A letter, including the SGML entities for accented vowels.
fn letter_p() -> Pat {
    alt(vec![
        one(letter),
        seq(vec![
            lit("&"),
            one(|c| "aeiouAEIOU".contains(c)),
            alt(vec![nocase("acute;"), nocase("grave;"), nocase("uml;")]),
        ]),
    ])
}

fn word() -> Pat {
    let tail = || star(alt(vec![letter_p(), one(digit)]));
    seq(vec![
        letter_p(),
        tail(),
        star(seq(vec![
            one(|c| matches!(c, '.' | '!' | '?')),
            letter_p(),
            tail(),
        ])),
    ])
}

/// `'s`, `'m`, `'d`, `'re`, `'ve`, `'ll` in any case.
fn redaux() -> Pat {
    seq(vec![apos(), redaux_suffix()])
}

fn redaux_suffix() -> Pat {
    alt(vec![
        one(|c| "msdMSD".contains(c)),
        nocase("re"),
        nocase("ve"),
        nocase("ll"),
    ])
}

/// `n't` with any apostrophe-like character.
fn sredaux() -> Pat {
    seq(vec![
        one(|c| c == 'n' || c == 'N'),
        apos_etc(),
        one(|c| c == 't' || c == 'T'),
    ])
}

fn num() -> Pat {
    alt(vec![
        plus(one(digit)),
        seq(vec![
            star(one(digit)),
            plus(seq(vec![
                one(|c| matches!(c, '.' | ':' | ',' | '\u{AD}' | '\u{66B}' | '\u{66C}')),
                plus(one(digit)),
            ])),
        ]),
    ])
}

/// An alphanumeric run with an optional `d'`/`o'`/`l'` prefix.
fn thing_part() -> Pat {
    seq(vec![
        opt(seq(vec![
            one(|c| "dDoOlL".contains(c)),
            apos_etc(),
            one(alnum_j),
        ])),
        plus(one(alnum_j)),
    ])
}

fn hyphen() -> Pat {
    one(|c| matches!(c, '-' | '_' | '\u{58A}' | '\u{2010}' | '\u{2011}'))
}

fn thing() -> Pat {
    // A soft hyphen may follow a joining hyphen; the action removes it.
    seq(vec![
        thing_part(),
        star(seq(vec![
            star(lit("\u{AD}")),
            hyphen(),
            star(lit("\u{AD}")),
            thing_part(),
        ])),
    ])
}

fn acro() -> Pat {
    alt(vec![
        seq(vec![
            one(ascii_alpha),
            plus(seq(vec![lit("."), one(ascii_alpha)])),
        ]),
        nocase("ph.d"),
        nocase("ed.d"),
        seq(vec![
            words(&["Canada", "Sino", "Korean", "EU", "Japan", "non"]),
            lit("-U.S"),
        ]),
        seq(vec![lit("U.S.-"), words(&["U.K", "U.S.S.R"])]),
    ])
}

/// Abbreviations that keep their period (case masks as in [`Pat::Masked`]); like sentence-final
/// ones, they also split from a single following letter (`Feb.n` → `Feb.` `n`).
const ABBREVS: &[&str] = &[
    "al", "Az", "co", "ct", "ga", "jr", "ky", "La", "md", "mo", "Pa", "rd", "rt", "sq", "sr", "va",
    "vt", "ala", "apr", "Ark", "aug", "bhd", "cos", "dak", "dec", "Del", "esq", "est", "etc",
    "ext", "feb", "fla", "fri", "Ill", "inc", "ind", "jan", "jul", "jun", "kan", "ltd", "mar",
    "mon", "neb", "nev", "nov", "oct", "Ore", "plc", "pt=e", "pt=y", "sep", "seq", "sys", "tel",
    "Tex", "thu", "tue", "wed", "wis", "wyo", "ariz", "assn", "bldg", "blvd", "bros", "colo",
    "conn", "corp", "intl", "kans", "Mass", "mich", "minn", "Miss", "mont", "okla", "penn",
    "ppt=e", "ppt=y", "pt=es", "pt=ys", "sept", "tenn", "tues", "univ", "Wash", "wisc", "calif",
    "ppt=es", "ppt=ys", "thurs", "bancorp",
];

/// Titles and other abbreviations that keep their period and are never sentence-final.
const TITLES: &[&str] = &[
    "cf", "dr", "ft", "lt", "mr", "ms", "mt", "ph", "st", "vs", "wm", "adj", "adm", "adv", "ave",
    "cie", "col", "cpl", "det", "drs", "ens", "gen", "gov", "hon", "jos", "maj", "m=fg", "mme",
    "mrs", "m=tg", "pfc", "pvt", "rep", "rev", "sen", "sfc", "sgt", "spc", "ste", "alex", "asst",
    "atty", "brig", "capt", "cmdr", "dept", "elec", "govs", "insp", "invt", "mlle", "msgr", "natl",
    "pres", "prof", "reps", "sens", "supt", "assoc", "attys", "comdr", "lieut", "profs", "supts",
    "treas", "messrs",
];

/// Abbreviations that keep their period only before a number (`fig. 3`, `No. 5`).
const NUMBER_ABBREVS: &[&str] = &["art", "ca", "fig", "figs", "no", "nos", "op", "pp", "prop"];

/// Words that, after a single letter and its period, mark that period as sentence-final
/// (first letter as written, the rest in any case).
const SENTENCE_STARTS: &[&str] = &[
    "A",
    "About",
    "Additionally",
    "After",
    "An",
    "As",
    "At",
    "But",
    "Earlier",
    "He",
    "Her",
    "Here",
    "However",
    "If",
    "In",
    "It",
    "Last",
    "Many",
    "More",
    "Now",
    "Once",
    "One",
    "Other",
    "Our",
    "She",
    "Since",
    "So",
    "Some",
    "Such",
    "That",
    "The",
    "Their",
    "Then",
    "There",
    "These",
    "They",
    "This",
    "We",
    "What",
    "When",
    "While",
    "Yet",
    "You",
    "Mr.",
    "Ms.",
];

/// `<tag attr="value">`, `</tag>`, `<!...>`, `<?...>`.
fn sgml() -> Pat {
    let name = || {
        seq(vec![
            one(ascii_alpha),
            star(one(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c))),
        ])
    };
    let sp = || one(|c| c == ' ');
    let value = alt(vec![
        seq(vec![lit("'"), star(one(|c| c != '\'')), lit("'")]),
        seq(vec![lit("\""), star(one(|c| c != '"')), lit("\"")]),
        name(),
    ]);
    let attr = seq(vec![
        name(),
        opt(seq(vec![star(sp()), lit("="), star(sp()), value])),
    ]);
    seq(vec![
        lit("<"),
        alt(vec![
            seq(vec![
                one(|c| c == '!' || c == '?'),
                one(|c| c.is_ascii_alphabetic() || c == '-'),
                star(one(|c| !matches!(c, '>' | '\r' | '\n'))),
            ]),
            seq(vec![
                name(),
                star(seq(vec![plus(sp()), attr])),
                star(sp()),
                opt(lit("/")),
            ]),
            seq(vec![lit("/"), name()]),
        ]),
        star(sp()),
        lit(">"),
    ])
}

fn url_stop(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\u{C}' | '\r' | '"' | '<' | '>' | '|' | '(' | ')'
    )
}

fn url_end_stop(c: char) -> bool {
    url_stop(c) || matches!(c, '.' | '!' | '?' | '{' | '}' | ',' | '-')
}

fn url_path() -> Pat {
    seq(vec![
        lit("/"),
        plus(one(|c| !url_stop(c))),
        one(|c| !url_end_stop(c)),
    ])
}

fn full_url() -> Pat {
    seq(vec![
        nocase("http"),
        opt(nocase("s")),
        lit("://"),
        plus(one(|c| !url_stop(c))),
        one(|c| !url_end_stop(c)),
    ])
}

fn likely_url() -> Pat {
    let www_label = || plus(one(|c| !url_end_stop(c) || c == '-'));
    let label = || {
        plus(one(|c| {
            !(url_stop(c)
                || matches!(c, '`' | '\'' | '.' | '!' | '?' | '{' | '}' | '$')
                || ('\u{2C}'..='\u{5F}').contains(&c))
        }))
    };
    seq(vec![
        alt(vec![
            seq(vec![
                nocase("www."),
                plus(seq(vec![www_label(), lit(".")])),
                rep(one(ascii_alpha), 2, 4),
            ]),
            seq(vec![
                plus(seq(vec![label(), lit(".")])),
                words(&["com", "net", "org", "edu"]),
            ]),
        ]),
        opt(url_path()),
    ])
}

/// An e-mail address, optionally with its opening or closing angle bracket.
fn email() -> Pat {
    fn local(c: char) -> bool {
        !(url_stop(c) || matches!(c, '\u{A0}' | '{' | '}'))
    }
    fn part(c: char) -> bool {
        local(c) && c != '.'
    }
    seq(vec![
        opt(lit("<")),
        one(ascii_alnum),
        star(one(local)),
        lit("@"),
        star(seq(vec![plus(one(part)), lit(".")])),
        plus(one(part)),
        opt(lit(">")),
    ])
}

fn phone() -> Pat {
    let d = || one(ascii_digit);
    let sep = || one(|c| matches!(c, '-' | ' ' | '\u{A0}'));
    let dotted = seq(vec![
        opt(seq(vec![
            opt(seq(vec![lit("+"), opt(lit("+"))])),
            rep(d(), 2, 4),
            lit("."),
        ])),
        rep(d(), 2, 4),
        lit("."),
        rep(d(), 3, 4),
        lit("."),
        rep(d(), 3, 5),
    ]);
    let spaced = seq(vec![
        alt(vec![
            seq(vec![
                lit("("),
                rep(d(), 2, 3),
                lit(")"),
                opt(one(|c| c == ' ' || c == '\u{A0}')),
            ]),
            seq(vec![
                opt(seq(vec![lit("+"), opt(lit("+"))])),
                opt(seq(vec![rep(d(), 2, 4), sep()])),
                rep(d(), 2, 4),
                sep(),
            ]),
        ]),
        rep(d(), 3, 4),
        opt(sep()),
        rep(d(), 3, 5),
    ]);
    alt(vec![spaced, dotted])
}

fn smiley() -> Pat {
    seq(vec![
        opt(one(|c| c == '<' || c == '>')),
        one(|c| matches!(c, ':' | ';' | '=')),
        opt(one(|c| matches!(c, '-' | 'o' | '*' | '\''))),
        one(|c| "()DPdpO\\{@|[]".contains(c)),
    ])
}

fn asian_smiley() -> Pat {
    let eye2 = |c: char| "-^x=~<>'".contains(c);
    alt(vec![
        seq(vec![one(eye2), lit("_"), one(eye2)]),
        seq(vec![
            lit("("),
            one(eye2),
            opt(one(|c| c == '_' || c == '.')),
            one(eye2),
            lit(")"),
        ]),
        seq(vec![
            lit("("),
            one(|c| "^x=~<>'".contains(c)),
            lit("-"),
            one(|c| "^x=~<>'`".contains(c)),
            lit(")"),
        ]),
    ])
}

fn rule(pat: Pat, act: Act) -> Rule {
    Rule {
        pat,
        look: None,
        act,
    }
}

fn rule_look(pat: Pat, look: Pat, act: Act) -> Rule {
    Rule {
        pat,
        look: Some(look),
        act,
    }
}

/// The rules in priority order.
fn rules() -> Vec<Rule> {
    use Act::*;
    let frac = seq(vec![
        opt(seq(vec![
            rep(one(digit), 1, 4),
            one(|c| matches!(c, '-' | ' ' | '\u{A0}')),
        ])),
        rep(one(digit), 1, 4),
        alt(vec![lit("/"), lit("\\/"), lit("\u{2044}")]),
        rep(one(digit), 1, 4),
    ]);
    let alnums = || plus(one(ascii_alnum));
    let mut rules = vec![
        rule(sgml(), Sgml),
        rule(
            alt(vec![
                nocase("&md;"),
                nocase("&mdash;"),
                nocase("&ndash;"),
                one(|c| {
                    matches!(
                        c,
                        '\u{96}' | '\u{97}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
                    )
                }),
            ]),
            Fixed("--"),
        ),
        rule(nocase("&amp;"), Fixed("&")),
        rule(
            seq(vec![
                lit("&"),
                alt(vec![
                    alt(["HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq"]
                        .into_iter()
                        .map(nocase)
                        .collect()),
                    seq(vec![lit("#"), plus(one(ascii_digit))]),
                ]),
                lit(";"),
            ]),
            Keep,
        ),
        // Ahead of the word rules so that `Feb.n` splits after the period (a tie with `Feb.n`).
        rule_look(seq(vec![masked(ABBREVS), lit(".")]), one(|_| true), Keep),
        rule_look(word(), redaux(), StripShy),
        rule_look(
            seq(vec![
                star(one(|c| c.is_ascii_alphabetic() || c == '\u{AD}')),
                one(|c| c.is_ascii_alphabetic() && c != 'n' && c != 'N'),
                star(lit("\u{AD}")),
            ]),
            sredaux(),
            StripShy,
        ),
        rule(word(), StripShy),
        rule(
            alt(vec![
                seq(vec![apos(), nocase("n"), apos()]),
                seq(vec![one(|c| "lLdDjJ".contains(c)), apos()]),
                seq(vec![words(&["Dunkin", "somethin", "ol"]), apos()]),
                seq(vec![apos(), nocase("em")]),
                seq(vec![
                    one(|c| c == 'n' || (c.is_ascii_uppercase() && c != 'I' && c != 'Y')),
                    apos_etc(),
                    rep(one(letter_j), 2, usize::MAX),
                ]),
                seq(vec![
                    apos(),
                    one(|c| ('2'..='9').contains(&c)),
                    nocase("0s"),
                ]),
                seq(vec![apos(), nocase("til"), opt(nocase("l"))]),
                seq(vec![
                    plus(one(letter_j)),
                    one(|c| "aeiouyAEIOUY".contains(c)),
                    apos_etc(),
                    one(|c| "aeiou".contains(c) || c.is_ascii_uppercase()),
                    star(one(letter_j)),
                ]),
                seq(vec![apos(), nocase("cause")]),
                seq(vec![lit("cont'd"), opt(lit("."))]),
                words(&[
                    "nor'easter",
                    "c'mon",
                    "e'er",
                    "s'mores",
                    "ev'ry",
                    "li'l",
                    "nat'l",
                ]),
                seq(vec![lit("O"), apos_etc(), lit("o")]),
            ]),
            Keep,
        ),
        rule_look(
            seq(vec![lit("'"), nocase("n")]),
            alt(vec![one(space_nl), Pat::End]),
            Keep,
        ),
        rule(
            seq(vec![
                alt(vec![
                    one(|c| c == '\u{92}' || c == '\u{2019}'),
                    nocase("&apos;"),
                ]),
                nocase("n"),
            ]),
            Keep,
        ),
        rule_look(
            seq(vec![one(|c| c == 'y' || c == 'Y'), apos()]),
            one(letter_j),
            Keep,
        ),
        rule(full_url(), Keep),
        rule(likely_url(), Keep),
        rule(email(), Keep),
        rule(
            alt(vec![
                seq(vec![
                    lit("@"),
                    one(|c| c.is_ascii_alphabetic() || c == '_'),
                    star(one(|c| c.is_ascii_alphanumeric() || c == '_')),
                ]),
                seq(vec![lit("#"), plus(one(letter))]),
            ]),
            Keep,
        ),
        rule_look(
            seq(vec![lit("'"), redaux_suffix()]),
            one(not_ascii_alpha),
            Clitic,
        ),
        // Curly and entity apostrophes make a clitic whatever follows.
        rule(
            seq(vec![
                alt(vec![
                    one(|c| c == '\u{92}' || c == '\u{2019}'),
                    nocase("&apos;"),
                ]),
                redaux_suffix(),
            ]),
            Clitic,
        ),
        // At the very end of the text only these clitic forms survive as clitics.
        rule_look(
            alt(vec![
                seq(vec![apos(), one(|c| "msdMSD".contains(c))]),
                seq(vec![
                    alt(vec![
                        one(|c| c == '\u{92}' || c == '\u{2019}'),
                        nocase("&apos;"),
                    ]),
                    alt(vec![nocase("re"), nocase("ve"), nocase("ll")]),
                ]),
            ]),
            Pat::End,
            Clitic,
        ),
        rule(sredaux(), Clitic),
        rule(
            seq(vec![
                rep(one(digit), 1, 2),
                one(|c| c == '-' || c == '/'),
                rep(one(digit), 1, 2),
                one(|c| c == '-' || c == '/'),
                rep(one(digit), 2, 4),
            ]),
            Keep,
        ),
        rule(
            seq(vec![opt(one(|c| c == '-' || c == '+')), num()]),
            StripShy,
        ),
        rule(
            seq(vec![
                opt(one(|c| {
                    matches!(c, '\u{207A}' | '\u{207B}' | '\u{208A}' | '\u{208B}')
                })),
                alt(vec![
                    plus(one(|c| {
                        matches!(
                            c,
                            '\u{2070}' | '\u{B9}' | '\u{B2}' | '\u{B3}' | '\u{2074}'..='\u{2079}'
                        )
                    })),
                    plus(one(|c| ('\u{2080}'..='\u{2089}').contains(&c))),
                ]),
            ]),
            Keep,
        ),
        rule(phone(), Phone),
        rule(frac, Fraction),
        rule(
            one(|c| matches!(c, '\u{BC}' | '\u{BD}' | '\u{BE}' | '\u{2153}' | '\u{2154}')),
            VulgarFraction,
        ),
        rule(
            alt(vec![
                seq(vec![
                    lit("-"),
                    words(&["RRB", "LRB", "RCB", "LCB", "RSB", "LSB"]),
                    lit("-"),
                ]),
                lit("C.D.s"),
                lit("pro-"),
                lit("anti-"),
                seq(vec![
                    lit("S"),
                    alt(vec![nocase("&amp;"), lit("&")]),
                    lit("P-500"),
                ]),
                seq(vec![
                    lit("S"),
                    alt(vec![nocase("&amp;"), lit("&")]),
                    lit("Ls"),
                ]),
                seq(vec![lit("Cap"), apos(), lit("n")]),
                seq(vec![lit("c"), apos(), lit("est")]),
            ]),
            Ampersand,
        ),
        rule_look(
            seq(vec![lit("'"), one(ascii_digit), one(ascii_digit)]),
            one(space_nl),
            Keep,
        ),
        rule(
            alt(vec![
                seq(vec![one(|c| c == 'c' || c == 'C'), lit("++")]),
                seq(vec![one(|c| "cCfF".contains(c)), lit("#")]),
            ]),
            Keep,
        ),
        rule(
            alt(vec![
                seq(vec![star(one(|c| c.is_ascii_uppercase())), lit("$")]),
                lit("#"),
            ]),
            Keep,
        ),
        rule(
            one(|c| {
                matches!(
                    c,
                    '\u{A2}' | '\u{A3}' | '\u{A4}' | '\u{80}' | '\u{20A0}' | '\u{20AC}'
                )
            }),
            Currency,
        ),
        rule(seq(vec![masked(ABBREVS), lit(".")]), Keep),
        rule(seq(vec![masked(TITLES), lit(".")]), Keep),
        rule_look(
            seq(vec![
                alt(NUMBER_ABBREVS.iter().map(|w| nocase(w)).collect()),
                lit("."),
            ]),
            seq(vec![opt(one(space_nl)), one(ascii_digit)]),
            Keep,
        ),
        rule(seq(vec![acro(), lit(".")]), Keep),
        rule(seq(vec![one(ascii_alpha), lit(".")]), Keep),
        rule_look(
            one(ascii_alpha),
            seq(vec![
                lit("."),
                alt(vec![
                    seq(vec![
                        plus(one(space_nl)),
                        masked(SENTENCE_STARTS),
                        one(space_nl),
                    ]),
                    seq(vec![plus(one(space_nl)), sgml(), one(space_nl)]),
                ]),
            ]),
            Keep,
        ),
        rule_look(
            seq(vec![alt(vec![word(), thing()]), lit(".")]),
            one(|c| matches!(c, ',' | ';' | ':')),
            StripShy,
        ),
        rule(alt(vec![lit("\""), nocase("&quot;")]), Quote),
        rule(lit("''"), Quote),
        rule(apos(), Quote),
        rule(rep(one(quote_char), 1, 2), Quote),
        rule(
            alt(vec![
                seq(vec![lit("..."), star(lit("."))]),
                one(|c| c == '\u{85}' || c == '\u{2026}'),
                seq(vec![
                    lit("."),
                    one(|c| c == ' ' || c == '\u{A0}'),
                    lit("."),
                    one(|c| c == ' ' || c == '\u{A0}'),
                    lit("."),
                ]),
            ]),
            Fixed("..."),
        ),
        rule(
            alt(vec![plus(lit("@")), plus(lit("#")), plus(lit("_"))]),
            Keep,
        ),
        rule(alt(vec![plus(lit("*")), rep(lit("\\*"), 1, 3)]), Keep),
        rule(one(|c| matches!(c, ',' | ';' | ':' | '\u{3001}')), Keep),
        rule(plus(one(|c| c == '?' || c == '!')), Keep),
        rule(
            one(|c| {
                matches!(
                    c,
                    '.' | '\u{BF}'
                        | '\u{A1}'
                        | '\u{37E}'
                        | '\u{589}'
                        | '\u{61F}'
                        | '\u{6D4}'
                        | '\u{700}'..='\u{702}' | '\u{7FA}' | '\u{3002}'
                )
            }),
            Keep,
        ),
        rule(lit("="), Keep),
        rule(lit("/"), Keep),
        // Slashed compounds (`and/or`, `24/7`, `a/b-c`, `x-ray/2`).
        rule(
            alt(vec![
                seq(vec![
                    alnums(),
                    rep(seq(vec![opt(lit("\\")), lit("/"), alnums()]), 1, 2),
                    star(seq(vec![lit("-"), alnums()])),
                ]),
                seq(vec![
                    alnums(),
                    star(seq(vec![lit("-"), alnums()])),
                    lit("-"),
                    plus(one(ascii_alpha)),
                    lit("/"),
                    alnums(),
                ]),
            ]),
            Keep,
        ),
        rule(
            alt(vec![
                seq(vec![
                    one(ascii_alnum),
                    star(one(|c| c.is_ascii_alphanumeric() || c == '.' || c == ',')),
                    plus(seq(vec![
                        lit("-"),
                        alt(vec![plus(one(ascii_alnum)), seq(vec![acro(), lit(".")])]),
                    ])),
                ]),
                seq(vec![
                    one(|c| "dDoOlL".contains(c)),
                    apos(),
                    rep(one(alnum_j), 2, usize::MAX),
                ]),
            ]),
            Keep,
        ),
        rule(thing(), StripShy),
        rule(
            seq(vec![
                plus(one(|c| c.is_ascii_uppercase())),
                plus(seq(vec![
                    alt(vec![lit("+"), lit("&"), nocase("&amp;")]),
                    plus(one(|c| c.is_ascii_uppercase())),
                ])),
            ]),
            Ampersand,
        ),
        rule_look(
            seq(vec![apos(), one(|c| c == 't' || c == 'T')]),
            alt(vec![nocase("is"), nocase("was")]),
            Keep,
        ),
        rule(plus(lit("-")), StripShy),
        rule(alt(vec![lit("<<"), lit(">>")]), Keep),
        rule(alt(vec![lit("<"), nocase("&lt;")]), Fixed("<")),
        rule(alt(vec![lit(">"), nocase("&gt;")]), Fixed(">")),
        rule_look(
            smiley(),
            alt(vec![one(|c| !c.is_ascii_alphanumeric()), Pat::End]),
            Smiley,
        ),
        rule(asian_smiley(), Smiley),
        rule(lit("("), Fixed("-LRB-")),
        rule(lit(")"), Fixed("-RRB-")),
        rule(lit("["), Fixed("-LSB-")),
        rule(lit("]"), Fixed("-RSB-")),
        rule(lit("{"), Fixed("-LCB-")),
        rule(lit("}"), Fixed("-RCB-")),
        rule(one(|c| symbol(c) || c == '&' || c == '+' || c == '$'), Keep),
        rule(nocase("&nbsp;"), Skip),
        rule(newline(), Newline),
    ];
    // `cannot` → `can not`, `gonna` → `gon na`, ...: the first half, then the rest as a word.
    // These go before the word rules, which match the same length.
    let splits = [
        ("can", "not"),
        ("gon", "na"),
        ("got", "ta"),
        ("lem", "me"),
        ("gim", "me"),
        ("wan", "na"),
    ];
    let position = 4;
    for (k, (first, rest)) in splits.into_iter().enumerate() {
        rules.insert(position + k, rule_look(nocase(first), nocase(rest), Keep));
    }
    rules
}

fn all_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(rules)
}

/// Maps one quote character to its LaTeX-style ASCII form; straight quotes are handled by the
/// caller (their direction does not survive pycocoevalcap's filtering anyway).
fn map_quote(c: char) -> &'static str {
    match c {
        '`' | '\u{2018}' | '\u{201B}' | '\u{91}' | '\u{2039}' => "`",
        '\'' | '\u{2019}' | '\u{92}' | '\u{203A}' => "'",
        '\u{201C}' | '\u{93}' | '\u{AB}' => "``",
        '\u{201D}' | '\u{94}' | '\u{BB}' | '"' => "''",
        _ => "",
    }
}

fn quote_text(text: &str) -> String {
    if text == "&quot;" {
        return "''".into();
    }
    if text == "&apos;" {
        return "'".into();
    }
    // Entities in other cases pass through unchanged.
    if text.starts_with('&') {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        let m = map_quote(c);
        if m.is_empty() {
            out.push(c);
        } else {
            out.push_str(m);
        }
    }
    out
}

/// Writes every `&amp;` (in any case) as `&`.
fn replace_amp_entity(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        out.push('&');
        let after = &rest[i + 1..];
        rest = match after.get(..4) {
            Some(w) if w.eq_ignore_ascii_case("amp;") => &after[4..],
            _ => after,
        };
    }
    out.push_str(rest);
    out
}

fn strip_shy(text: &str) -> String {
    let s: String = text.chars().filter(|&c| c != '\u{AD}').collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn apply(act: Act, text: &str) -> Option<String> {
    Some(match act {
        Act::Keep => text.to_string(),
        Act::StripShy => {
            let s = strip_shy(text);
            // A run of two or more hyphens is the Penn Treebank dash.
            if s.len() >= 2 && s.chars().all(|c| c == '-') {
                "--".into()
            } else {
                s
            }
        }
        Act::Fixed(s) => s.to_string(),
        Act::Quote => quote_text(text),
        Act::Clitic => {
            let t = text.replace("&apos;", "'");
            t.chars()
                .map(|c| match c {
                    '\u{2019}' | '\u{92}' => '\'',
                    '\u{2018}' | '\u{201B}' | '\u{91}' => '`',
                    c => c,
                })
                .collect()
        }
        Act::Sgml | Act::Fraction => text.replace(' ', "\u{A0}"),
        Act::Phone => text
            .replace(' ', "\u{A0}")
            .replace('(', "-LRB-")
            .replace(')', "-RRB-"),
        Act::VulgarFraction => match text {
            "\u{BC}" => "1/4",
            "\u{BD}" => "1/2",
            "\u{BE}" => "3/4",
            "\u{2153}" => "1/3",
            "\u{2154}" => "2/3",
            other => other,
        }
        .to_string(),
        Act::Currency => match text {
            "\u{A2}" => "cents",
            "\u{A3}" => "#",
            _ => "$",
        }
        .to_string(),
        Act::Ampersand => replace_amp_entity(text),
        Act::Smiley => text.replace('(', "-LRB-").replace(')', "-RRB-"),
        Act::Skip | Act::Newline => return None,
    })
}

/// Fast path for the commonest token: a run of ASCII letters followed by a space, tab, line
/// feed, carriage return, form feed or the end of the text is a plain word, unless it starts like `cannot`, `gonna`, ... (which
/// split). No other rule can match such a run more longly: they all need a digit, apostrophe,
/// period, hyphen, slash or other symbol inside or right after it.
fn plain_word(s: &[char], i: usize) -> Option<usize> {
    let len = s[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if len == 0 {
        return None;
    }
    let j = i + len;
    // Only these end every URL and e-mail pattern too (other spacing may sit inside a URL).
    if j < s.len() && !matches!(s[j], ' ' | '\t' | '\n' | '\r' | '\u{C}') {
        return None;
    }
    if len >= 3 {
        let head: String = s[i..i + 3].iter().collect::<String>().to_ascii_lowercase();
        if ["can", "gon", "got", "lem", "gim", "wan"].contains(&head.as_str()) {
            return None;
        }
    }
    Some(j)
}

/// Tokenises a whole document into lines of raw tokens (before lower-casing and before
/// pycocoevalcap's punctuation filter). Line breaks are the lexer's, which include `\r`,
/// vertical tab, form feed and the Unicode line and paragraph separators.
pub(super) fn tokenize_lines(text: &str) -> Vec<Vec<String>> {
    let s: Vec<char> = text.chars().collect();
    let rules = all_rules();
    let mut lines = vec![Vec::new()];
    let mut i = 0;
    while i < s.len() {
        if space(s[i]) {
            // No rule starts with spacing.
            i += 1;
            continue;
        }
        if let Some(j) = plain_word(&s, i) {
            if let Some(line) = lines.last_mut() {
                line.push(s[i..j].iter().collect());
            }
            i = j;
            continue;
        }
        let mut best: Option<(usize, usize, usize)> = None; // (total, token, rule)
        for (k, r) in rules.iter().enumerate() {
            if !r.pat.can_start(s[i]) {
                continue;
            }
            let ends = r.pat.ends(&s, &[i]);
            let cand = match &r.look {
                None => ends.last().map(|&e| (e, e)),
                Some(look) => {
                    let mut found: Option<(usize, usize)> = None;
                    for &e in &ends {
                        if let Some(t) = look.longest(&s, e) {
                            if found.is_none_or(|(bt, _)| t >= bt) {
                                found = Some((t, e));
                            }
                        }
                    }
                    found
                }
            };
            if let Some((total, tok)) = cand {
                if tok > i && best.is_none_or(|(bt, _, _)| total > bt) {
                    best = Some((total, tok, k));
                }
            }
        }
        match best {
            Some((_, tok, k)) => {
                let text: String = s[i..tok].iter().collect();
                let act = rules[k].act;
                if act == Act::Newline {
                    lines.push(Vec::new());
                } else if let Some(t) = apply(act, &text) {
                    if let Some(line) = lines.last_mut() {
                        line.push(t);
                    }
                }
                i = tok;
            }
            // Spacing and characters no rule accepts are dropped, as the lexer drops them.
            None => i += 1,
        }
    }
    lines
}
