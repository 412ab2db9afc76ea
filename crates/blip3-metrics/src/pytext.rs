//! Python text semantics that VLMEvalKit's scorers depend on: `str.isspace` / `str.split()`,
//! the `\d` class of `re` (Unicode decimal digits), `str.lower()`, `repr(float)` and C's
//! `%.16G` (how `.xlsx` writers print numbers). Tables follow Python 3.11 (Unicode 14).

/// `str.isspace()` for one character: Rust's `White_Space` plus the four information
/// separators U+001C..U+001F, which Python also splits on.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.split()` with no argument: runs of Python whitespace separate non-empty words.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// Unicode decimal digits (`Nd`), what `\d` matches in a Python `str` pattern.
const DECIMAL_RANGES: &[(u32, u32)] = &[
    (0x30, 0x39),
    (0x660, 0x669),
    (0x6F0, 0x6F9),
    (0x7C0, 0x7C9),
    (0x966, 0x96F),
    (0x9E6, 0x9EF),
    (0xA66, 0xA6F),
    (0xAE6, 0xAEF),
    (0xB66, 0xB6F),
    (0xBE6, 0xBEF),
    (0xC66, 0xC6F),
    (0xCE6, 0xCEF),
    (0xD66, 0xD6F),
    (0xDE6, 0xDEF),
    (0xE50, 0xE59),
    (0xED0, 0xED9),
    (0xF20, 0xF29),
    (0x1040, 0x1049),
    (0x1090, 0x1099),
    (0x17E0, 0x17E9),
    (0x1810, 0x1819),
    (0x1946, 0x194F),
    (0x19D0, 0x19D9),
    (0x1A80, 0x1A89),
    (0x1A90, 0x1A99),
    (0x1B50, 0x1B59),
    (0x1BB0, 0x1BB9),
    (0x1C40, 0x1C49),
    (0x1C50, 0x1C59),
    (0xA620, 0xA629),
    (0xA8D0, 0xA8D9),
    (0xA900, 0xA909),
    (0xA9D0, 0xA9D9),
    (0xA9F0, 0xA9F9),
    (0xAA50, 0xAA59),
    (0xABF0, 0xABF9),
    (0xFF10, 0xFF19),
    (0x104A0, 0x104A9),
    (0x10D30, 0x10D39),
    (0x11066, 0x1106F),
    (0x110F0, 0x110F9),
    (0x11136, 0x1113F),
    (0x111D0, 0x111D9),
    (0x112F0, 0x112F9),
    (0x11450, 0x11459),
    (0x114D0, 0x114D9),
    (0x11650, 0x11659),
    (0x116C0, 0x116C9),
    (0x11730, 0x11739),
    (0x118E0, 0x118E9),
    (0x11950, 0x11959),
    (0x11C50, 0x11C59),
    (0x11D50, 0x11D59),
    (0x11DA0, 0x11DA9),
    (0x16A60, 0x16A69),
    (0x16AC0, 0x16AC9),
    (0x16B50, 0x16B59),
    (0x1D7CE, 0x1D7FF),
    (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9),
    (0x1E950, 0x1E959),
    (0x1FBF0, 0x1FBF9),
];

/// Whether `c` lies in one of the sorted, disjoint inclusive `ranges`.
pub(crate) fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Whether `c` is matched by `\d` in a Python `str` regex.
pub fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    in_ranges(DECIMAL_RANGES, c)
}

/// `str.lower()`: full Unicode lower-casing, final sigma included (Rust's rules are the same;
/// only characters added after Unicode 14 can differ).
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Length in code points, as Python's `len(str)`.
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// Splits Rust's shortest round-trip scientific form (`1.5e16`) into digits and exponent.
fn shortest_digits(x: f64) -> (String, i32) {
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (digits, exp.parse().unwrap_or(0))
}

/// `repr(x)` / `str(x)` of a Python float: shortest round-trip digits, positional notation for
/// decimal exponents in `-4..16` (always with a fractional part), else `1e+16` style.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    let (digits, exp) = shortest_digits(x);
    if (-4..16).contains(&exp) {
        format!("{sign}{}", positional(&digits, exp, true))
    } else {
        let (head, tail) = digits.split_at(1);
        let mantissa = if tail.is_empty() {
            head.to_string()
        } else {
            format!("{head}.{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}

/// Places the decimal point in `digits` (value = d.ddd × 10^exp); `dot_zero` adds ".0" to
/// integers.
fn positional(digits: &str, exp: i32, dot_zero: bool) -> String {
    let n = digits.len() as i32;
    if exp < 0 {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else if exp + 1 >= n {
        let int = format!("{}{}", digits, "0".repeat((exp + 1 - n) as usize));
        if dot_zero {
            format!("{int}.0")
        } else {
            int
        }
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    }
}

/// C's `printf("%.16G", x)`: 16 significant digits, trailing zeros removed, exponent form
/// (`1E+16`) when the exponent is below -4 or at least 16. Finite values only.
pub fn format_upper_g16(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let sci = format!("{:.15e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if (-4..16).contains(&exp) {
        format!("{sign}{}", positional(digits, exp, false))
    } else {
        let (head, tail) = digits.split_at(1);
        let mantissa = if tail.is_empty() {
            head.to_string()
        } else {
            format!("{head}.{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}E{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_digits() {
        assert_eq!(
            split("a\u{1c}b \u{a0}c\u{3000}\n").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(!is_space('\u{200b}'));
        assert!(is_decimal('7') && is_decimal('٣') && is_decimal('１') && is_decimal('\u{1D7FF}'));
        assert!(!is_decimal('²') && !is_decimal('a') && !is_decimal('\u{1D800}'));
    }

    #[test]
    fn python_float_repr() {
        for (x, s) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1000.0, "1000.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_repr(x), s, "{x}");
        }
    }

    #[test]
    fn c_upper_g16() {
        for (x, s) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (0.1 + 0.2, "0.3"),
            (1e16, "1E+16"),
            (1e15, "1000000000000000"),
            (1e-5, "1E-05"),
            (1e-4, "0.0001"),
            (123456789012345678.0, "1.234567890123457E+17"),
            (-12.5, "-12.5"),
        ] {
            assert_eq!(format_upper_g16(x), s, "{x}");
        }
    }
}
