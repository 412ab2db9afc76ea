//! How pandas turns VLMEvalKit's text columns into values, and what the `.xlsx` eval file does
//! to them. VLMEvalKit reads a benchmark TSV with `pd.read_csv`, writes the predictions into an
//! `.xlsx` file (xlsxwriter) and reads it back (`pd.read_excel`, openpyxl) before scoring; both
//! readers convert whole columns to numbers or booleans when every value parses, and treat a
//! fixed set of strings as missing. The scorers replay this so that, e.g., an option `1.0` or a
//! prediction `None` is seen exactly as VLMEvalKit sees it.
//!
//! Modelled on pandas 2.2, xlsxwriter 3.3 and openpyxl 3.1 (the behaviour the goldens record).
//! Not modelled: openpyxl's handling of literal `_xHHHH_` text, and `file://` / `external:` links.

use crate::vlmevalkit::Rule;

/// Strings pandas reads as missing (`STR_NA_VALUES`, pandas 2.x).
pub const NA_STRINGS: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// Longest URL (or URL anchor) xlsxwriter writes, in UTF-16 units; longer ones leave the cell
/// empty.
const MAX_URL_UTF16: usize = 2079;
/// Longest string an `.xlsx` cell holds, in UTF-16 units (longer strings are truncated).
const MAX_STRING_UTF16: usize = 32767;

/// One value of a pandas column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NaN / missing.
    Missing,
    /// A string value.
    Text(String),
    /// An integer value (int64 / uint64 column, or an integer in an object column).
    Int(i128),
    /// A float value.
    Float(f64),
    /// A boolean value.
    Bool(bool),
}

impl Cell {
    /// A cell from raw text as pandas reads it: the NA strings are missing.
    pub fn from_text(text: Option<&str>) -> Cell {
        match text {
            Some(t) if !NA_STRINGS.contains(&t) => Cell::Text(t.to_string()),
            _ => Cell::Missing,
        }
    }

    /// Python's `str(value)`; `None` for a missing value (whose `str` would be "nan").
    pub fn py_str(&self) -> Option<String> {
        match self {
            Cell::Missing => None,
            Cell::Text(s) => Some(s.clone()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) if f.is_nan() => None,
            Cell::Float(f) => Some(crate::pytext::float_repr(*f)),
            Cell::Bool(b) => Some(if *b { "True" } else { "False" }.into()),
        }
    }

    /// `str(value)` with a missing value spelled as Python does ("nan").
    pub fn py_str_or_nan(&self) -> String {
        self.py_str().unwrap_or_else(|| "nan".into())
    }

    /// The text of a string-typed value (`None` for numbers, booleans and missing values).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A number as the pandas parsers accept it: surrounding ASCII whitespace, an optional sign,
/// digits with an optional fraction and exponent, or `inf` / `infinity`. Integers must fit
/// int64 or uint64; floats must not overflow.
enum Number {
    Int(i128),
    Float(f64),
}

fn parse_number(s: &str) -> Option<Number> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty() {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        let v: i128 = t.parse().ok()?;
        return (i128::from(i64::MIN)..=i128::from(u64::MAX))
            .contains(&v)
            .then_some(Number::Int(v));
    }
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        let v = if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Some(Number::Float(v));
    }
    if !is_decimal_float(body) {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    v.is_finite().then_some(Number::Float(v))
}

/// `digits [. digits?] | . digits`, then an optional `e[+-]digits`.
fn is_decimal_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == b.len()
}

fn bool_text(s: &str) -> Option<bool> {
    match s {
        "True" | "TRUE" | "true" => Some(true),
        "False" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

/// Which pandas reader is typing a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `pd.read_csv` (C parser): every cell is text.
    Csv,
    /// `pd.read_excel`: cells may already be numbers or booleans, and booleans count as
    /// numbers (a boolean column with a missing value becomes 1.0 / 0.0).
    Excel,
}

/// pandas' type inference over one column: numeric if every present value parses as a number
/// (int64 when all are integers and none is missing, else float64), else boolean if every
/// present value is a boolean spelling, else left as it is (an object column).
pub fn infer_column(cells: Vec<Cell>, reader: Reader) -> Vec<Cell> {
    let present: Vec<&Cell> = cells.iter().filter(|c| **c != Cell::Missing).collect();
    if present.is_empty() {
        return cells;
    }
    let any_missing = present.len() < cells.len();
    let all_bool_cells = present.iter().all(|c| matches!(c, Cell::Bool(_)));
    if reader == Reader::Excel && all_bool_cells && !any_missing {
        return cells;
    }
    let numbers: Option<Vec<Number>> = present
        .iter()
        .map(|c| match c {
            Cell::Int(i) => Some(Number::Int(*i)),
            Cell::Float(f) => Some(Number::Float(*f)),
            Cell::Text(s) => parse_number(s),
            Cell::Bool(b) if reader == Reader::Excel => Some(Number::Int(i128::from(*b))),
            _ => None,
        })
        .collect();
    if let Some(numbers) = numbers {
        let all_int = numbers.iter().all(|n| matches!(n, Number::Int(_)));
        let mut numbers = numbers.into_iter();
        return cells
            .into_iter()
            .map(|c| match c {
                Cell::Missing => Cell::Missing,
                _ => match numbers.next() {
                    Some(Number::Int(i)) if all_int && !any_missing => Cell::Int(i),
                    Some(Number::Int(i)) => Cell::Float(i as f64),
                    Some(Number::Float(f)) => Cell::Float(f),
                    None => Cell::Missing,
                },
            })
            .collect();
    }
    let all_bool = present.iter().all(|c| match c {
        Cell::Bool(_) => true,
        Cell::Text(s) => bool_text(s).is_some(),
        _ => false,
    });
    if all_bool {
        return cells
            .into_iter()
            .map(|c| match c {
                Cell::Text(s) => bool_text(&s).map_or(Cell::Missing, Cell::Bool),
                other => other,
            })
            .collect();
    }
    cells
}

/// Types a column as read: `Missing` is an empty field or cell, `Text` the raw text (the NA
/// strings included, which become missing here).
fn infer_raw(raw: Vec<Cell>, reader: Reader) -> Vec<Cell> {
    // pandas quirk: integers past int64 need uint64; when that fails (a missing value or a
    // negative number alongside), the column keeps every raw text, "" and "NA" included.
    let mut needs_uint64 = false;
    let mut all_int = true;
    let mut any_na = false;
    let mut any_negative = false;
    for cell in &raw {
        let number = match cell {
            Cell::Missing => None,
            Cell::Text(t) if NA_STRINGS.contains(&t.as_str()) => None,
            Cell::Text(t) => Some(parse_number(t)),
            Cell::Int(i) => Some(Some(Number::Int(*i))),
            _ => Some(None),
        };
        match number {
            None => any_na = true,
            Some(Some(Number::Int(i))) if i <= i128::from(u64::MAX) => {
                needs_uint64 |= i > i128::from(i64::MAX);
                any_negative |= i < 0;
            }
            Some(_) => all_int = false,
        }
    }
    if all_int && needs_uint64 && (any_na || any_negative) {
        return raw
            .into_iter()
            .map(|c| match c {
                Cell::Missing => Cell::Text(String::new()),
                other => other,
            })
            .collect();
    }
    let cells = raw
        .into_iter()
        .map(|c| match c {
            Cell::Text(t) => Cell::from_text(Some(&t)),
            other => other,
        })
        .collect();
    infer_column(cells, reader)
}

/// A column as `pd.read_csv` types it, from its raw texts (`None` = empty field).
pub fn read_csv_column(texts: &[Option<&str>]) -> Vec<Cell> {
    let raw = texts
        .iter()
        .map(|t| match t {
            Some(t) if !t.is_empty() => Cell::Text(t.to_string()),
            _ => Cell::Missing,
        })
        .collect();
    infer_raw(raw, Reader::Csv)
}

fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Truncates to `max` UTF-16 units without splitting a surrogate pair.
fn utf16_truncate(s: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &s[..i];
        }
    }
    s
}

/// Control characters other than tab and newline are stored as `_xHHHH_` escapes, which the
/// reader leaves in place.
fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}') {
            out.push_str(&format!("_x{:04X}_", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_url(s: &str) -> bool {
    let web = ["http://", "https://", "ftp://", "ftps://"];
    web.iter().any(|p| s.starts_with(p))
}

/// The cell a string becomes once written by xlsxwriter and read back by openpyxl (before
/// pandas' NA strings and typing apply).
fn xlsx_text(s: &str, rule: Rule) -> Cell {
    if s.is_empty() {
        return Cell::Missing;
    }
    // 2024's writer turned strings that look like formulas into formulas, read back as 0.
    if rule == Rule::V2024 && (s.starts_with('=') || (s.starts_with("{=") && s.ends_with('}'))) {
        return Cell::Int(0);
    }
    let mut text = s;
    if s.contains(':') {
        if is_url(s) {
            let (link, anchor) = s.split_once('#').unwrap_or((s, ""));
            if utf16_len(link) > MAX_URL_UTF16 || utf16_len(anchor) > MAX_URL_UTF16 {
                return Cell::Missing;
            }
        } else if let Some(rest) = s.strip_prefix("mailto:") {
            text = rest;
        } else if let Some(rest) = s.strip_prefix("internal:") {
            text = rest;
        }
    }
    Cell::Text(escape_controls(utf16_truncate(text, MAX_STRING_UTF16)))
}

/// The cell a number becomes: written with `%.16G`, read back as an int when integral (pandas'
/// openpyxl reader turns integral floats into ints). Infinities are written as "inf".
fn xlsx_number(x: f64) -> Cell {
    if x.is_nan() {
        return Cell::Missing;
    }
    if x.is_infinite() {
        return Cell::Text(if x > 0.0 { "inf" } else { "-inf" }.into());
    }
    let text = crate::pytext::format_upper_g16(x);
    let Ok(value) = text.parse::<f64>() else {
        return Cell::Missing;
    };
    if value.fract() == 0.0 && value.abs() < 1e38 {
        Cell::Int(value as i128)
    } else {
        Cell::Float(value)
    }
}

/// One column written to an `.xlsx` file by VLMEvalKit's `dump` and read back by its `load`.
pub fn xlsx_round_trip(cells: Vec<Cell>, rule: Rule) -> Vec<Cell> {
    let read = cells
        .into_iter()
        .map(|c| match c {
            Cell::Missing => Cell::Missing,
            Cell::Text(s) => xlsx_text(&s, rule),
            Cell::Int(i) => xlsx_number(i as f64),
            Cell::Float(f) => xlsx_number(f),
            Cell::Bool(b) => Cell::Bool(b),
        })
        .collect();
    infer_raw(read, Reader::Excel)
}

/// `times` successive `.xlsx` round trips.
pub fn xlsx_round_trips(mut cells: Vec<Cell>, rule: Rule, times: usize) -> Vec<Cell> {
    for _ in 0..times {
        cells = xlsx_round_trip(cells, rule);
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(cells: &[Cell]) -> Vec<Option<String>> {
        cells.iter().map(Cell::py_str).collect()
    }

    fn csv(texts: &[&str]) -> Vec<Option<String>> {
        let t: Vec<Option<&str>> = texts.iter().map(|s| Some(*s)).collect();
        strs(&read_csv_column(&t))
    }

    fn s(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|x| Some(x.to_string())).collect()
    }

    #[test]
    fn read_csv_typing() {
        assert_eq!(csv(&[" 1", "+2", "007"]), s(&["1", "2", "7"]));
        assert_eq!(
            csv(&["1.", ".5", "1e3", "-0"]),
            s(&["1.0", "0.5", "1000.0", "0.0"])
        );
        assert_eq!(csv(&["1", ""]), vec![Some("1.0".into()), None]);
        assert_eq!(csv(&["1_000", "2"]), s(&["1_000", "2"]));
        assert_eq!(csv(&["1e400", "2"]), s(&["1e400", "2"]));
        assert_eq!(csv(&["true", "FALSE"]), s(&["True", "False"]));
        assert_eq!(csv(&[" True", "FALSE"]), s(&[" True", "FALSE"]));
        assert_eq!(csv(&["None", "x"]), vec![None, Some("x".into())]);
        assert_eq!(csv(&["inf", "1"]), s(&["inf", "1.0"]));
        assert_eq!(
            csv(&["9223372036854775808", "1"]),
            s(&["9223372036854775808", "1"])
        );
        let t = [Some("12345678901234567890"), None, Some("NA")];
        assert_eq!(
            strs(&read_csv_column(&t)),
            s(&["12345678901234567890", "", "NA"])
        );
    }

    #[test]
    fn xlsx_round_trip_values() {
        let col =
            |v: &[&str]| -> Vec<Cell> { v.iter().map(|x| Cell::Text(x.to_string())).collect() };
        let rt = |c: Vec<Cell>, r: Rule| strs(&xlsx_round_trip(c, r));
        assert_eq!(
            rt(col(&["", "None", "=B", "a\rb", "x"]), Rule::V2024),
            vec![
                None,
                None,
                Some("0".into()),
                Some("a_x000D_b".into()),
                Some("x".into())
            ]
        );
        assert_eq!(rt(col(&["=B", "x"]), Rule::Head), s(&["=B", "x"]));
        // Integral floats without a missing value come back as integers.
        assert_eq!(
            rt(vec![Cell::Float(1.0), Cell::Float(2.0)], Rule::V2024),
            s(&["1", "2"])
        );
        assert_eq!(
            rt(vec![Cell::Float(1.0), Cell::Missing], Rule::V2024),
            vec![Some("1.0".into()), None]
        );
        assert_eq!(
            rt(vec![Cell::Float(0.1 + 0.2), Cell::Float(0.5)], Rule::V2024),
            s(&["0.3", "0.5"])
        );
        // Numeric-looking strings become numbers on the way back.
        assert_eq!(
            rt(col(&["1", "2", "3.0"]), Rule::V2024),
            s(&["1.0", "2.0", "3.0"])
        );
        let long = "😀".repeat(20000);
        let back = rt(col(&[&long]), Rule::V2024);
        assert_eq!(back[0].as_ref().map(|x| x.chars().count()), Some(16383));
        let url = format!("http://{}", "a".repeat(2100));
        assert_eq!(rt(col(&[&url, "x"]), Rule::V2024)[0], None);
        assert_eq!(rt(col(&["mailto:x", "y"]), Rule::V2024), s(&["x", "y"]));
        // Booleans with a missing value come back as floats; without, as booleans.
        assert_eq!(
            rt(
                vec![Cell::Bool(true), Cell::Missing, Cell::Bool(false)],
                Rule::V2024
            ),
            vec![Some("1.0".into()), None, Some("0.0".into())]
        );
        assert_eq!(
            rt(vec![Cell::Bool(true), Cell::Bool(false)], Rule::V2024),
            s(&["True", "False"])
        );
        assert_eq!(
            rt(
                vec![Cell::Bool(true), Cell::Int(1), Cell::Int(2)],
                Rule::V2024
            ),
            s(&["1", "1", "2"])
        );
    }
}
