//! VLMEvalKit's benchmark TSV files (spec §3.3): parsing them as `pd.read_csv(sep='\t')` does,
//! resolving their images, building the REF JSON the scorers read, and checking them against
//! the MD5 digests VLMEvalKit pins.
//!
//! The parser follows pandas' C tokenizer: a header row, tab-separated fields, fields that
//! start with `"` are quoted (tabs, newlines and doubled quotes `""` inside; text after the
//! closing quote is kept), `\n`, `\r\n` or `\r` end a row, blank lines are skipped, a UTF-8 BOM
//! is dropped, duplicate column names become `name.1`, `name.2`, ….
//!
//! Images: the `image` field holds base64 data, or a Python list literal of base64 strings for
//! multi-image items, or (64 characters or fewer) the index of another row whose image it
//! shares. Rows without an image are skipped, as VLMEvalKit does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use base64::Engine as _;
use md5::Digest as _;
use serde_json::{Map, Value};

use crate::pandas_cells::{read_csv_column, Cell};
use crate::MetricsError;

/// An image field this long or shorter is the index of the row whose image it shares.
const SHARED_IMAGE_MAX_CHARS: usize = 64;

/// A parsed TSV: column names and, per row, each field's text (`None` = empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tsv {
    /// Column names, in file order.
    pub columns: Vec<String>,
    /// Rows, each with one entry per column.
    pub rows: Vec<Vec<Option<String>>>,
}

fn format_error(name: &str, problem: impl Into<String>) -> MetricsError {
    MetricsError::Format {
        location: name.to_string(),
        problem: problem.into(),
    }
}

/// One tokenized record: its fields, whether it had any content, its first line number.
struct Record {
    fields: Vec<String>,
    blank: bool,
    line: usize,
}

fn tokenize(text: &str, name: &str) -> Result<Vec<Record>, MetricsError> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        AfterQuote,
    }
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut state = State::FieldStart;
    let mut blank = true;
    let mut line = 1;
    let mut record_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let newline = c == '\n' || c == '\r';
        if newline && c == '\r' && state != State::Quoted && chars.peek() == Some(&'\n') {
            chars.next();
        }
        if newline {
            line += 1;
        }
        match state {
            State::Quoted => {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        state = State::AfterQuote;
                    }
                } else {
                    field.push(c);
                }
            }
            _ if c == '\t' => {
                fields.push(std::mem::take(&mut field));
                state = State::FieldStart;
                blank = false;
            }
            _ if newline => {
                fields.push(std::mem::take(&mut field));
                records.push(Record {
                    fields: std::mem::take(&mut fields),
                    blank,
                    line: record_line,
                });
                record_line = line;
                blank = true;
                state = State::FieldStart;
            }
            State::FieldStart if c == '"' => {
                state = State::Quoted;
                blank = false;
            }
            _ => {
                field.push(c);
                if c != ' ' {
                    blank = false;
                }
                state = State::Unquoted;
            }
        }
    }
    if state == State::Quoted {
        return Err(format_error(
            name,
            format!("end of file inside a quoted field starting on line {record_line}"),
        ));
    }
    if !field.is_empty() || !fields.is_empty() || !blank {
        fields.push(field);
        records.push(Record {
            fields,
            blank,
            line: record_line,
        });
    }
    Ok(records)
}

/// Parses TSV text; `name` is used in error messages.
pub fn parse_tsv(text: &str, name: &str) -> Result<Tsv, MetricsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = tokenize(text, name)?.into_iter().filter(|r| !r.blank);
    let header = records
        .next()
        .ok_or_else(|| format_error(name, "no header row"))?;
    let mut columns: Vec<String> = Vec::with_capacity(header.fields.len());
    let mut seen: HashSet<String> = HashSet::new();
    for (i, raw) in header.fields.into_iter().enumerate() {
        let base = if raw.is_empty() {
            format!("Unnamed: {i}")
        } else {
            raw
        };
        let mut col = base.clone();
        let mut k = 1;
        while seen.contains(&col) {
            col = format!("{base}.{k}");
            k += 1;
        }
        seen.insert(col.clone());
        columns.push(col);
    }
    let mut rows = Vec::new();
    for record in records {
        if record.fields.len() > columns.len() {
            return Err(format_error(
                &format!("{name} line {}", record.line),
                format!(
                    "expected {} fields, saw {}",
                    columns.len(),
                    record.fields.len()
                ),
            ));
        }
        let mut row: Vec<Option<String>> = record
            .fields
            .into_iter()
            .map(|f| (!f.is_empty()).then_some(f))
            .collect();
        row.resize(columns.len(), None);
        rows.push(row);
    }
    Ok(Tsv { columns, rows })
}

/// Reads and parses a TSV file.
pub fn read_tsv(path: &Path) -> Result<Tsv, MetricsError> {
    let bytes = std::fs::read(path).map_err(|e| MetricsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| MetricsError::Read {
        path: path.to_path_buf(),
        reason: format!("not UTF-8 ({e})"),
    })?;
    parse_tsv(&text, &path.display().to_string())
}

impl Tsv {
    /// The position of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Row `i` as (column, text) pairs in column order.
    pub fn row_map(&self, i: usize) -> Vec<(&str, Option<&str>)> {
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.rows[i].iter().map(Option::as_deref))
            .collect()
    }

    /// The texts of one column.
    fn texts(&self, col: usize) -> Vec<Option<&str>> {
        self.rows.iter().map(|r| r[col].as_deref()).collect()
    }

    /// A column typed as pandas reads it.
    pub fn typed_column(&self, name: &str) -> Option<Vec<Cell>> {
        self.column(name).map(|c| read_csv_column(&self.texts(c)))
    }

    /// Each row's id: `str()` of its typed `index` value.
    pub fn ids(&self) -> Result<Vec<String>, MetricsError> {
        let cells = self
            .typed_column("index")
            .ok_or_else(|| format_error("tsv", "no \"index\" column"))?;
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(cells.len());
        for (i, cell) in cells.iter().enumerate() {
            let id = cell
                .py_str()
                .ok_or_else(|| format_error("tsv", format!("row {} has no index", i + 1)))?;
            if !seen.insert(id.clone()) {
                return Err(format_error("tsv", format!("index {id} appears twice")));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// The rows VLMEvalKit keeps (those with an image), as (row number, id).
    fn kept_rows(&self) -> Result<Vec<(usize, String)>, MetricsError> {
        let ids = self.ids()?;
        let Some(images) = self.typed_column("image") else {
            return Ok(ids.into_iter().enumerate().collect());
        };
        Ok(ids
            .into_iter()
            .enumerate()
            .filter(|(i, _)| images[*i] != Cell::Missing)
            .collect())
    }

    /// Resolves the image field of every kept row once (shared images followed), for lookups
    /// by id.
    pub fn images(&self) -> Result<TsvImages<'_>, MetricsError> {
        let col = self
            .column("image")
            .ok_or_else(|| format_error("tsv", "no \"image\" column"))?;
        let kept = self.kept_rows()?;
        let fields: Vec<&str> = kept
            .iter()
            .map(|(row, _)| self.rows[*row][col].as_deref().unwrap_or(""))
            .collect();
        let by_id: HashMap<&str, usize> = kept
            .iter()
            .enumerate()
            .map(|(k, (_, id))| (id.as_str(), k))
            .collect();
        // Resolved in file order, updating as it goes: a row may point at an earlier row whose
        // own pointer was already resolved (VLMEvalKit rewrites its map in place).
        let mut source: Vec<usize> = (0..kept.len()).collect();
        let is_data = |s: &str| s.chars().count() > SHARED_IMAGE_MAX_CHARS;
        for k in 0..kept.len() {
            if !is_data(fields[k]) {
                let target = by_id
                    .get(fields[k])
                    .map(|&t| source[t])
                    .filter(|&t| is_data(fields[t]))
                    .ok_or_else(|| {
                        format_error(
                            &format!("tsv row {}", kept[k].1),
                            format!("image field {:?} names no row with an image", fields[k]),
                        )
                    })?;
                source[k] = target;
            }
        }
        let by_id = kept
            .iter()
            .enumerate()
            .map(|(k, (_, id))| (id.clone(), k))
            .collect();
        Ok(TsvImages {
            fields,
            source,
            by_id,
            ids: kept.into_iter().map(|(_, id)| id).collect(),
        })
    }

    /// The decoded image bytes of item `id` (several for a multi-image item). Resolves every
    /// row; use [`Tsv::images`] for many lookups.
    pub fn image_bytes(&self, id: &str) -> Result<Vec<Vec<u8>>, MetricsError> {
        self.images()?.bytes(id)
    }
}

/// The resolved images of a [`Tsv`]'s kept rows.
#[derive(Debug)]
pub struct TsvImages<'a> {
    fields: Vec<&'a str>,
    source: Vec<usize>,
    by_id: HashMap<String, usize>,
    ids: Vec<String>,
}

impl TsvImages<'_> {
    /// Ids of the rows with an image, in file order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Item `id`'s images as base64 text (a list field gives several).
    pub fn base64(&self, id: &str) -> Result<Vec<String>, MetricsError> {
        let k = *self
            .by_id
            .get(id)
            .ok_or_else(|| format_error("tsv", format!("no row with index {id} and an image")))?;
        let value = self.fields[self.source[k]];
        if value.len() > 1 && value.starts_with('[') && value.ends_with(']') {
            parse_python_str_list(value)
                .ok_or_else(|| format_error(&format!("tsv row {id}"), "bad image list"))
        } else {
            Ok(vec![value.to_string()])
        }
    }

    /// Item `id`'s images, base64-decoded.
    pub fn bytes(&self, id: &str) -> Result<Vec<Vec<u8>>, MetricsError> {
        self.base64(id)?
            .iter()
            .map(|b64| decode_base64(b64).map_err(|e| format_error(&format!("tsv row {id}"), e)))
            .collect()
    }
}

/// Python's `base64.b64decode`: characters outside the alphabet are dropped, padding is
/// required, unused trailing bits are ignored.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    engine
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("bad base64 image ({e})"))
}

/// A Python list literal of string literals (`['a', "b"]`), as VLMEvalKit `eval`s it.
fn parse_python_str_list(s: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 1;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        match chars.get(i)? {
            ']' if i == chars.len() - 1 => return Some(out),
            q @ ('\'' | '"') => {
                let quote = *q;
                i += 1;
                let mut item = String::new();
                loop {
                    match chars.get(i)? {
                        '\\' => {
                            let escaped = *chars.get(i + 1)?;
                            item.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            i += 2;
                        }
                        c if *c == quote => {
                            i += 1;
                            break;
                        }
                        c => {
                            item.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(item);
                skip_ws(&mut i);
                match chars.get(i)? {
                    ',' => i += 1,
                    ']' if i == chars.len() - 1 => return Some(out),
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// The benchmarks whose REF JSON [`build_reference`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Benchmark {
    /// `MME` (Yes/No, per-image pairs).
    Mme,
    /// `POPE` (Yes/No, comma-separated splits).
    Pope,
    /// `MMBench_DEV_EN` and the other MMBench / CCBench files (circular).
    MmBench,
    /// `SEEDBench_IMG`.
    Seed,
    /// `MMStar`.
    MmStar,
    /// `MMMU_DEV_VAL` (open questions included).
    Mmmu,
    /// `ScienceQA_TEST` / `ScienceQA_VAL`.
    ScienceQa,
    /// `AI2D_TEST`.
    Ai2d,
}

impl Benchmark {
    /// The benchmark of a VLMEvalKit dataset key (`MMBench_DEV_EN`, `MME`, …).
    pub fn from_dataset_key(key: &str) -> Option<Benchmark> {
        let lower = key.to_lowercase();
        let b = if lower.contains("mmbench") || lower.contains("ccbench") {
            Benchmark::MmBench
        } else if lower.contains("mmmu") {
            Benchmark::Mmmu
        } else if lower.contains("seedbench") {
            Benchmark::Seed
        } else if lower.contains("mmstar") {
            Benchmark::MmStar
        } else if lower.contains("scienceqa") {
            Benchmark::ScienceQa
        } else if lower.contains("ai2d") {
            Benchmark::Ai2d
        } else if lower.contains("pope") {
            Benchmark::Pope
        } else if lower.contains("mme") {
            Benchmark::Mme
        } else {
            return None;
        };
        Some(b)
    }

    /// Whether the benchmark is scored as multiple choice.
    pub fn is_mcq(self) -> bool {
        !matches!(self, Benchmark::Mme | Benchmark::Pope)
    }
}

/// Builds the REF JSON of a benchmark from its TSV (layouts in [`crate::vlmevalkit`] and the
/// scorer modules): one entry per row with an image, keyed by its index, holding the fields
/// the scorer reads as the TSV's texts. Multiple choice: `answer`, the option letters with a
/// value, and `category`, `l2-category`, `split` where the file has them (matched
/// case-insensitively, as VLMEvalKit lower-cases those names; MMStar's `l2_category` is not
/// one of them, and VLMEvalKit does not report it). MME: `answer`, `category`, `image_path`.
/// POPE: `answer`, `category`.
pub fn build_reference(tsv: &Tsv, benchmark: Benchmark) -> Result<Value, MetricsError> {
    let answer = tsv
        .column("answer")
        .ok_or_else(|| format_error("tsv", "no \"answer\" column"))?;
    let mut fields: Vec<(String, usize, bool)> = vec![("answer".into(), answer, true)];
    if benchmark.is_mcq() {
        for (i, c) in tsv.columns.iter().enumerate() {
            let mut cs = c.chars();
            if let (Some(l), None) = (cs.next(), cs.next()) {
                if l.is_ascii_uppercase() {
                    fields.push((c.clone(), i, false));
                }
            }
        }
        for key in ["category", "l2-category", "split"] {
            if let Some(i) = tsv.columns.iter().position(|c| c.to_lowercase() == key) {
                fields.push((key.into(), i, true));
            }
        }
    } else {
        let keys: &[&str] = if benchmark == Benchmark::Mme {
            &["category", "image_path"]
        } else {
            &["category"]
        };
        for key in keys {
            let i = tsv
                .column(key)
                .ok_or_else(|| format_error("tsv", format!("no {key:?} column")))?;
            fields.push(((*key).into(), i, true));
        }
    }
    let mut out = Map::new();
    for (row, id) in tsv.kept_rows()? {
        let mut entry = Map::new();
        for (key, col, keep_null) in &fields {
            match &tsv.rows[row][*col] {
                Some(text) => {
                    entry.insert(key.clone(), Value::String(text.clone()));
                }
                None if *keep_null => {
                    entry.insert(key.clone(), Value::Null);
                }
                None => {}
            }
        }
        out.insert(id, Value::Object(entry));
    }
    Ok(Value::Object(out))
}

/// MD5 digests of VLMEvalKit's TSVs, as pinned at `ddd6df88` (`dataset_config.py`).
pub const DATASET_MD5: [(&str, &str); 38] = [
    ("MMBench_DEV_EN", "b6caf1133a01c6bb705cf753bb527ed8"),
    ("MMBench_TEST_EN", "6939fadb0ce626fefc0bdc9c64efc528"),
    ("MMBench_DEV_CN", "08b8fc3324a5ed74155350f57be69fbd"),
    ("MMBench_TEST_CN", "7e1239baf0ee4c8b513e19705a0f317e"),
    ("MMBench", "4115aea3383f3dd0083be6a633e0f820"),
    ("MMBench_CN", "2e053ffc90ea598b1feae13c36dc13ee"),
    ("MMBench_DEV_EN_V11", "30c05be8f2f347a50be25aa067248184"),
    ("MMBench_TEST_EN_V11", "26f0f15381a21720255091d3e0316ce6"),
    ("MMBench_DEV_CN_V11", "593f9b5f6bea453d870a798b34ae4f37"),
    ("MMBench_TEST_CN_V11", "74bbe4556dac745613c7cbe5ad787050"),
    ("MMBench_V11", "b9276414f57af1308dcc4d0cd9b42e7c"),
    ("MMBench_CN_V11", "95f6980dd1b4de38e3cbffe0305a3f25"),
    ("CCBench", "1de88b4257e7eee3f60b18d45eda6f07"),
    ("MME", "b36b43c3f09801f5d368627fb92187c3"),
    ("SEEDBench_IMG", "68017231464752261a2526d6ca3a10c0"),
    ("CORE_MM", "8a8da2f2232e79caf98415bfdf0a202d"),
    ("MMVet", "748aa6d4aa9d4de798306a63718455e3"),
    ("COCO_VAL", "72a5079dead060269ac222c5aa5128af"),
    ("OCRVQA_TEST", "ca46a6d74b403e9d6c0b670f6fc00db9"),
    ("OCRVQA_TESTCORE", "c5239fe77db8bdc1f2ad8e55e0d1fe97"),
    ("TextVQA_VAL", "b233b31f551bbf4056f2f955da3a92cd"),
    ("MMMU_DEV_VAL", "521afc0f3bf341e6654327792781644d"),
    ("MMMU_TEST", "c19875d11a2d348d07e5eb4bdf33166d"),
    ("MathVista_MINI", "f199b98e178e5a2a20e7048f5dcb0464"),
    ("ScienceQA_VAL", "96320d05e142e585e7204e72affd29f3"),
    ("ScienceQA_TEST", "e42e9e00f9c59a80d8a5db35bc32b71f"),
    ("HallusionBench", "0c23ac0dc9ef46832d7a24504f2a0c7c"),
    ("DocVQA_VAL", "d5ee77e1926ff10690d469c56b73eabf"),
    ("DocVQA_TEST", "6a2f28cac26ef2d3447374e8c6f6c8e9"),
    ("InfoVQA_VAL", "2342e9c225222f0ef4dec545ebb126fe"),
    ("InfoVQA_TEST", "df535bf51b88dc9718252c34131a6227"),
    ("AI2D_TEST", "0f593e0d1c7df9a3d69bf1f947e71975"),
    ("LLaVABench", "d382a093f749a697820d3dadd61c8428"),
    ("OCRBench", "e953d98a987cc6e26ef717b61260b778"),
    ("ChartQA_TEST", "c902e0aa9be5582a7aad6dcf52734b42"),
    ("MMStar", "e1ecd2140806c1b1bbf54b43372efb9e"),
    ("RealWorldQA", "92321028d2bc29040284b6674721e48f"),
    ("POPE", "c12f5acb142f2ef1f85a26ba2fbe41d5"),
];

/// Digests of files VLMEvalKit re-issued after `ddd6df88` (pinned at HEAD `e8e78f05`).
pub const DATASET_MD5_REISSUED: [(&str, &str); 1] =
    [("MMMU_DEV_VAL", "585e8ad75e73f75dcad265dfd0417d64")];

/// Lower-case hex MD5 digest of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digests VLMEvalKit accepts for dataset `key` (2024's first, then a re-issue's).
pub fn expected_md5(key: &str) -> Vec<&'static str> {
    DATASET_MD5
        .iter()
        .chain(DATASET_MD5_REISSUED.iter())
        .filter(|(k, _)| *k == key)
        .map(|(_, d)| *d)
        .collect()
}

/// Checks a TSV's bytes against the pinned digest of `key`: `Ok(true)` when it matches,
/// `Ok(false)` when VLMEvalKit pins no digest for `key` (it skips the check too), an error when
/// the file differs.
pub fn check_md5(key: &str, bytes: &[u8]) -> Result<bool, MetricsError> {
    let expected = expected_md5(key);
    if expected.is_empty() {
        return Ok(false);
    }
    let got = md5_hex(bytes);
    if expected.contains(&got.as_str()) {
        Ok(true)
    } else {
        Err(format_error(
            &format!("{key} TSV"),
            format!(
                "MD5 {got} does not match VLMEvalKit's {} (incomplete or different file)",
                expected.join(" / ")
            ),
        ))
    }
}

/// [`Tsv`] rows as maps, for callers that want `column → text` lookups.
pub fn rows_as_maps(tsv: &Tsv) -> Vec<BTreeMap<&str, Option<&str>>> {
    (0..tsv.rows.len())
        .map(|i| tsv.row_map(i).into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pandas_quoting_rules() {
        let t = parse_tsv(
            "\u{feff}a\tb\ta\t\n\"x\ty\"\t\"he said \"\"hi\"\"\"\t1\n\n   \n\"abc\"def\t\"q\r\nr\"\r\nx\"y\t\t\t\n\t",
            "t",
        )
        .unwrap();
        assert_eq!(t.columns, ["a", "b", "a.1", "Unnamed: 3"]);
        assert_eq!(
            t.rows,
            vec![
                vec![
                    Some("x\ty".into()),
                    Some("he said \"hi\"".into()),
                    Some("1".into()),
                    None
                ],
                vec![Some("abcdef".into()), Some("q\r\nr".into()), None, None],
                vec![Some("x\"y".into()), None, None, None],
                vec![None, None, None, None],
            ]
        );
        assert!(parse_tsv("a\tb\n\"x\t2\n", "t").is_err());
        assert!(parse_tsv("a\tb\n1\t2\t3\n", "t").is_err());
        assert!(parse_tsv("", "t").is_err());
    }

    #[test]
    fn shared_and_listed_images() {
        let img = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 60]);
        let text = format!(
            "index\timage\tanswer\n1\t{img}\tA\n2\t1\tB\n3\t\tC\n4\t['{img}', \"{img}\"]\tD\n5\t4\tA\n7\t2\tA\n"
        );
        let t = parse_tsv(&text, "t").unwrap();
        assert_eq!(t.image_bytes("2").unwrap(), vec![vec![7u8; 60]]);
        assert_eq!(t.image_bytes("5").unwrap().len(), 2);
        assert_eq!(t.image_bytes("7").unwrap(), vec![vec![7u8; 60]]);
        assert!(t.image_bytes("3").is_err());
        let bad = parse_tsv(&format!("{text}6\t3\tB\n"), "t").unwrap();
        let e = bad.images().unwrap_err().to_string();
        assert!(e.contains("names no row"), "{e}");
        let reference = build_reference(&t, Benchmark::Ai2d).unwrap();
        assert_eq!(reference.as_object().unwrap().len(), 5);
        assert!(reference.get("3").is_none());
    }

    #[test]
    fn md5_digests() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(!check_md5("NotADataset", b"x").unwrap());
        let e = check_md5("MME", b"x").unwrap_err().to_string();
        assert!(e.contains("b36b43c3f09801f5d368627fb92187c3"), "{e}");
        assert_eq!(expected_md5("MMMU_DEV_VAL").len(), 2);
    }
}
