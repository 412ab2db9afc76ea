//! Predictions files: one JSON object per line, `{"id": ..., "answer": "..."}`.
//! Ids may be strings or integers; both are kept as their string form.

use std::path::Path;

use crate::MetricsError;

/// One model answer for one benchmark item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// The item's id as a string (`12` and `"12"` are the same id).
    pub id: String,
    /// The model's answer text.
    pub answer: String,
}

/// Turns a JSON id (string or integer) into its string form.
pub fn id_string(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// Parses predictions from JSONL text; `name` is used in error messages.
/// Blank lines are skipped; a repeated id is an error.
pub fn parse_predictions(text: &str, name: &str) -> Result<Vec<Prediction>, MetricsError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = format!("{name} line {}", i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| MetricsError::Format {
                location: location.clone(),
                problem: format!("not JSON ({e})"),
            })?;
        let id = value
            .get("id")
            .and_then(id_string)
            .ok_or_else(|| MetricsError::Format {
                location: location.clone(),
                problem: "no \"id\" (string or integer)".into(),
            })?;
        let answer = value
            .get("answer")
            .and_then(|a| a.as_str())
            .ok_or_else(|| MetricsError::Format {
                location: location.clone(),
                problem: "no \"answer\" string".into(),
            })?
            .to_string();
        if !seen.insert(id.clone()) {
            return Err(MetricsError::Format {
                location,
                problem: format!("id {id} appears twice"),
            });
        }
        out.push(Prediction { id, answer });
    }
    Ok(out)
}

/// Reads a predictions JSONL file.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|e| MetricsError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_predictions(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_and_string_ids_and_bad_lines() {
        let p = parse_predictions(
            "{\"id\": 3, \"answer\": \"a\"}\n\n{\"id\":\"x\",\"answer\":\"\"}\n",
            "p",
        )
        .unwrap();
        assert_eq!(p[0].id, "3");
        assert_eq!(p[1].id, "x");
        let e = parse_predictions("{\"id\": 3}", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p line 1") && e.contains("answer"), "{e}");
        let e = parse_predictions(
            "{\"id\":1,\"answer\":\"a\"}\n{\"id\":\"1\",\"answer\":\"b\"}",
            "p",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
        assert!(parse_predictions("[1,2", "p").is_err());
    }
}
