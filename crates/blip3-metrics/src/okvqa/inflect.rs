//! `inflection.singularize` (PyPI `inflection` 0.5.1, a port of the Rails inflector): a word
//! ending in an uncountable is returned unchanged; otherwise the first matching rule of an
//! ordered table rewrites it. The table is the library's data: its irregular pairs (as the
//! library inserts them in front) followed by its singular rules.

use fancy_regex::Regex;

use super::pyre::{compile, sub, BOUNDARY, END};
use crate::MetricsError;

/// Words that are their own singular (matched at the end of the word after a boundary).
const UNCOUNTABLES: [&str; 9] = [
    "equipment",
    "fish",
    "information",
    "jeans",
    "money",
    "rice",
    "series",
    "sheep",
    "species",
];

/// `(pattern, replacement)` in the library's order; `$` stands for Python's end anchor.
const SINGULARS: [(&str, &str); 42] = [
    ("(?i)(z)ombies$", "${1}ombie"),
    ("k[iI][nN][eE]$", "cow"),
    ("K[iI][nN][eE]$", "Cow"),
    ("(?i)(m)oves$", "${1}ove"),
    ("(?i)(s)exes$", "${1}ex"),
    ("(?i)(c)hildren$", "${1}hild"),
    ("(?i)(h)umans$", "${1}uman"),
    ("(?i)(m)en$", "${1}an"),
    ("(?i)(p)eople$", "${1}erson"),
    ("(?i)(database)s$", "${1}"),
    ("(?i)(quiz)zes$", "${1}"),
    ("(?i)(matr)ices$", "${1}ix"),
    ("(?i)(vert|ind)ices$", "${1}ex"),
    ("(?i)(passer)sby$", "${1}by"),
    ("(?i)^(ox)en", "${1}"),
    ("(?i)(alias|status)(es)?$", "${1}"),
    ("(?i)(octop|vir)(us|i)$", "${1}us"),
    ("(?i)^(a)x[ie]s$", "${1}xis"),
    ("(?i)(cris|test)(is|es)$", "${1}is"),
    ("(?i)(shoe)s$", "${1}"),
    ("(?i)(o)es$", "${1}"),
    ("(?i)(bus)(es)?$", "${1}"),
    ("(?i)(m|l)ice$", "${1}ouse"),
    ("(?i)(x|ch|ss|sh)es$", "${1}"),
    ("(?i)(m)ovies$", "${1}ovie"),
    ("(?i)(s)eries$", "${1}eries"),
    ("(?i)([^aeiouy]|qu)ies$", "${1}y"),
    ("(?i)([lr])ves$", "${1}f"),
    ("(?i)(tive)s$", "${1}"),
    ("(?i)(hive)s$", "${1}"),
    ("(?i)([^f])ves$", "${1}fe"),
    ("(?i)(t)he(sis|ses)$", "${1}hesis"),
    ("(?i)(s)ynop(sis|ses)$", "${1}ynopsis"),
    ("(?i)(p)rogno(sis|ses)$", "${1}rognosis"),
    ("(?i)(p)arenthe(sis|ses)$", "${1}arenthesis"),
    ("(?i)(d)iagno(sis|ses)$", "${1}iagnosis"),
    ("(?i)(b)a(sis|ses)$", "${1}asis"),
    ("(?i)(a)naly(sis|ses)$", "${1}nalysis"),
    ("(?i)([ti])a$", "${1}um"),
    ("(?i)(n)ews$", "${1}ews"),
    ("(?i)(ss)$", "${1}"),
    ("(?i)s$", ""),
];

/// The compiled singularisation rules.
pub struct Singularizer {
    uncountables: Vec<Regex>,
    rules: Vec<(Regex, &'static str)>,
}

impl Singularizer {
    /// Compiles the rules.
    pub fn new() -> Result<Self, MetricsError> {
        let uncountables = UNCOUNTABLES
            .iter()
            .map(|u| compile(&format!(r"(?i){BOUNDARY}({u})\z")))
            .collect::<Result<_, _>>()?;
        let rules = SINGULARS
            .iter()
            .map(|(p, r)| compile(&p.replace('$', END)).map(|re| (re, *r)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            uncountables,
            rules,
        })
    }

    /// `inflection.singularize(word)`.
    pub fn singularize(&self, word: &str) -> Result<String, MetricsError> {
        for re in &self.uncountables {
            if re
                .is_match(word)
                .map_err(|e| super::pyre::runtime_error(re, e))?
            {
                return Ok(word.to_string());
            }
        }
        for (re, replacement) in &self.rules {
            if re
                .is_match(word)
                .map_err(|e| super::pyre::runtime_error(re, e))?
            {
                return Ok(sub(re, word, replacement)?.into_owned());
            }
        }
        Ok(word.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_examples() {
        let s = Singularizer::new().unwrap();
        for (plural, singular) in [
            ("posts", "post"),
            ("octopi", "octopus"),
            ("sheep", "sheep"),
            ("word", "word"),
            ("CamelOctopi", "CamelOctopus"),
            ("people", "person"),
            ("Kine", "Cow"),
            ("oxenford", "oxford"),
            ("specimen", "speciman"),
            ("fried-rice", "fried-rice"),
            ("price", "price"),
            ("wives", "wife"),
            ("glasses", "glass"),
        ] {
            assert_eq!(s.singularize(plural).unwrap(), singular, "{plural}");
        }
    }
}
