//! The run's report, as markdown and as one self-contained HTML page: the
//! metric in the layout of the model card's tables (with the card's own
//! number beside it), the per-category charts, and the exact settings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::settings::Settings;
use crate::task::{Task, TASKS};
use crate::{plot, EvalError};

/// The model card's pre-training table (base r-v1): per task, 0/4/8 shots.
const CARD_PRETRAIN: &[(&str, [f64; 3])] = &[
    ("coco", [81.7, 110.5, 112.1]),
    ("nocaps", [80.2, 101.7, 104.4]),
    ("textcaps", [60.7, 84.6, 87.7]),
    ("okvqa", [26.5, 49.2, 49.1]),
    ("textvqa", [36.0, 46.1, 46.4]),
    ("vizwiz", [21.2, 38.4, 44.3]),
    ("vqav2", [48.1, 63.9, 63.8]),
];

/// The model card's instruct table (r-v1 instruct), by column title.
const CARD_INSTRUCT: &[(&str, f64)] = &[
    ("SEED-IMG", 72.1),
    ("MMBench-dev", 74.1),
    ("MME-total", 1827.0),
    ("MME-P", 1467.0),
    ("MME-C", 360.0),
    ("MMStar", 44.6),
    ("MMMU-val", 39.8),
    ("MM-Vet", 45.1),
    ("MathVista-mini", 39.3),
    ("ScienceQA-test", 74.2),
    ("POPE", 87.2),
    ("AI2D", 75.8),
];

/// A chart of the report.
#[derive(Debug, Clone)]
pub enum Chart {
    /// Horizontal bars: (label, value) on `0..=max`.
    Bars {
        /// Title and file stem.
        title: String,
        /// Bars.
        values: Vec<(String, f64)>,
        /// Scale end.
        max: f64,
    },
    /// A yes/no confusion matrix `[[tp, fn], [fp, tn]]`.
    Confusion {
        /// Title and file stem.
        title: String,
        /// Counts.
        counts: [[u64; 2]; 2],
    },
}

/// What the scorer found, ready for the report.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Table columns this run fills: (column title as in the card, value),
    /// or a note instead of a value (a judge is needed).
    pub columns: Vec<(String, Result<f64, String>)>,
    /// Further metrics worth a line (accuracy, precision, recall, …).
    pub details: Vec<(String, String)>,
    /// Charts.
    pub charts: Vec<Chart>,
    /// Items scored.
    pub items: usize,
    /// Items whose answer failed (scored as empty answers).
    pub failed: usize,
}

fn card_value(task: &Task, column: &str, shots: usize) -> Option<f64> {
    if task.is_few_shot() {
        let slot = match shots {
            0 => 0,
            4 => 1,
            8 => 2,
            _ => return None,
        };
        CARD_PRETRAIN
            .iter()
            .find(|(name, _)| *name == task.name)
            .map(|(_, v)| v[slot])
    } else {
        CARD_INSTRUCT
            .iter()
            .find(|(title, _)| *title == column)
            .map(|(_, v)| *v)
    }
}

/// The column titles of the card's table this task belongs to.
fn table_columns(task: &Task) -> Vec<String> {
    if task.is_few_shot() {
        TASKS
            .iter()
            .filter(|t| t.is_few_shot())
            .map(|t| t.title.to_string())
            .collect()
    } else {
        CARD_INSTRUCT.iter().map(|(t, _)| t.to_string()).collect()
    }
}

fn format_value(v: f64) -> String {
    format!("{v:.1}")
}

/// The rows of the metric table: ours, then the card's.
fn table_rows(
    task: &Task,
    settings: &Settings,
    summary: &Summary,
) -> (Vec<String>, Vec<Vec<String>>) {
    let columns = table_columns(task);
    let mut header = vec!["model".to_string()];
    if task.is_few_shot() {
        header.push("shots".into());
    }
    header.extend(columns.iter().cloned());
    let cell = |col: &str| -> String {
        summary.columns.iter().find(|(c, _)| c == col).map_or_else(
            || "–".to_string(),
            |(_, v)| match v {
                Ok(v) => format_value(*v),
                Err(note) => note.clone(),
            },
        )
    };
    let card = |col: &str| -> String {
        let ours = summary.columns.iter().any(|(c, _)| c == col);
        match (ours, card_value(task, col, settings.shots)) {
            (true, Some(v)) => format_value(v),
            _ => "–".to_string(),
        }
    };
    let mut ours = vec![format!("blip3-rs ({})", settings.model)];
    let card_name = if task.is_few_shot() {
        "model card (r-v1 base)"
    } else {
        "model card (r-v1 instruct)"
    };
    let mut theirs = vec![card_name.to_string()];
    if task.is_few_shot() {
        ours.push(settings.shots.to_string());
        theirs.push(settings.shots.to_string());
    }
    ours.extend(columns.iter().map(|c| cell(c)));
    theirs.extend(columns.iter().map(|c| card(c)));
    (header, vec![ours, theirs])
}

fn settings_rows(settings: &Settings) -> Vec<(String, String)> {
    let value = serde_json::to_value(settings).unwrap_or_default();
    value
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let shown = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "–".into(),
                        other => other.to_string(),
                    };
                    (k.clone(), shown)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A file name for a chart: its title lower-cased, runs of other
/// characters turned into one `-`.
fn file_stem(title: &str) -> String {
    let mut stem = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.ends_with('-') {
            stem.push('-');
        }
    }
    stem.trim_matches('-').to_string()
}

fn render_chart(chart: &Chart) -> Result<(String, String), EvalError> {
    match chart {
        Chart::Bars { title, values, max } => Ok((title.clone(), plot::bars(title, values, *max)?)),
        Chart::Confusion { title, counts } => Ok((title.clone(), plot::confusion(title, *counts)?)),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes `report.md`, `report.html` and one SVG per chart into `out`;
/// returns the paths written.
pub fn write(
    out: &Path,
    task: &Task,
    settings: &Settings,
    summary: &Summary,
) -> Result<Vec<PathBuf>, EvalError> {
    let (header, rows) = table_rows(task, settings, summary);
    let charts: Vec<(String, String)> = summary
        .charts
        .iter()
        .map(render_chart)
        .collect::<Result<_, _>>()?;
    let mut written = Vec::new();
    let mut svg_files = Vec::new();
    for (title, svg) in &charts {
        let path = out.join(format!("{}.svg", file_stem(title)));
        std::fs::write(&path, svg).map_err(|e| EvalError::io(&path, e))?;
        svg_files.push((title.clone(), path.clone()));
        written.push(path);
    }

    let mut md = String::new();
    let _ = writeln!(md, "# {}: blip3 eval\n", task.title);
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
    for row in &rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        md,
        "\n{} items scored, {} failed (scored as empty answers).\n",
        summary.items, summary.failed
    );
    if !summary.details.is_empty() {
        let _ = writeln!(md, "## Metrics\n");
        for (k, v) in &summary.details {
            let _ = writeln!(md, "- {k}: {v}");
        }
        md.push('\n');
    }
    for (title, path) in &svg_files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let _ = writeln!(md, "![{title}]({name})\n");
    }
    let _ = writeln!(md, "## Settings\n\n| setting | value |\n|---|---|");
    for (k, v) in settings_rows(settings) {
        let _ = writeln!(md, "| {k} | `{v}` |");
    }
    let md_path = out.join("report.md");
    std::fs::write(&md_path, &md).map_err(|e| EvalError::io(&md_path, e))?;
    written.push(md_path);

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}: blip3 eval</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 10px;text-align:right}}th{{background:#eef}}td:first-child,th:first-child{{text-align:left}}table.settings td{{text-align:left}}code{{background:#f4f4f4}}figure{{margin:1em 0}}</style></head><body>\n<h1>{title}: blip3 eval</h1>\n<table><tr>",
        title = escape(task.title)
    );
    for h in &header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>");
    for row in &rows {
        html.push_str("<tr>");
        for c in row {
            let _ = write!(html, "<td>{}</td>", escape(c));
        }
        html.push_str("</tr>");
    }
    let _ = write!(
        html,
        "</table>\n<p>{} items scored, {} failed (scored as empty answers).</p>\n",
        summary.items, summary.failed
    );
    if !summary.details.is_empty() {
        html.push_str("<h2>Metrics</h2><ul>");
        for (k, v) in &summary.details {
            let _ = write!(html, "<li>{}: {}</li>", escape(k), escape(v));
        }
        html.push_str("</ul>\n");
    }
    for (title, svg) in &charts {
        let _ = writeln!(
            html,
            "<figure aria-label=\"{}\">{svg}</figure>",
            escape(title)
        );
    }
    html.push_str(
        "<h2>Settings</h2><table class=\"settings\"><tr><th>setting</th><th>value</th></tr>",
    );
    for (k, v) in settings_rows(settings) {
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    html.push_str("</table>\n</body></html>\n");
    let html_path = out.join("report.html");
    std::fs::write(&html_path, &html).map_err(|e| EvalError::io(&html_path, e))?;
    written.push(html_path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_table_layout_settings_and_charts() {
        let out = std::env::temp_dir().join(format!("blip3-report-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let task = Task::named("mme").unwrap();
        let mut settings = crate::settings::example();
        settings.task = "mme".into();
        let summary = Summary {
            columns: vec![
                ("MME-total".into(), Ok(1500.0)),
                ("MME-P".into(), Ok(1200.0)),
                ("MME-C".into(), Ok(300.0)),
            ],
            details: vec![("OCR".into(), "100.0".into())],
            charts: vec![Chart::Bars {
                title: "MME subtasks".into(),
                values: vec![("OCR".into(), 100.0)],
                max: 200.0,
            }],
            items: 4,
            failed: 1,
        };
        let files = write(&out, &task, &settings, &summary).unwrap();
        assert_eq!(files.len(), 3);
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("| model | SEED-IMG | MMBench-dev | MME-total |"),
            "{md}"
        );
        assert!(
            md.contains("| blip3-rs (m) | – | – | 1500.0 | 1200.0 | 300.0 |"),
            "{md}"
        );
        assert!(
            md.contains("| model card (r-v1 instruct) | – | – | 1827.0 | 1467.0 | 360.0 |"),
            "{md}"
        );
        assert!(md.contains("| shots | `4` |") && md.contains("mme-subtasks.svg"));
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<svg") && html.contains("<td>1500.0</td>"));
        std::fs::remove_dir_all(&out).ok();
    }
}
