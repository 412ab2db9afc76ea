//! The report's charts as SVG text: per-category bars (MME subtasks, MMBench
//! categories) and POPE's confusion matrix.

use plotters::prelude::*;

use crate::EvalError;

/// A horizontal bar chart of `values` (label, value) on the scale `0..=max`.
pub fn bars(title: &str, values: &[(String, f64)], max: f64) -> Result<String, EvalError> {
    let mut svg = String::new();
    let height = 90 + 26 * values.len().max(1) as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        let draw = |e: String| EvalError::Usage(format!("drawing {title}: {e}"));
        root.fill(&WHITE).map_err(|e| draw(e.to_string()))?;
        let n = values.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(220)
            .build_cartesian_2d(0.0..max.max(f64::MIN_POSITIVE), (0..n).into_segmented())
            .map_err(|e| draw(e.to_string()))?;
        let labels: Vec<String> = values.iter().map(|(l, _)| l.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .x_labels(11)
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| draw(e.to_string()))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, (_, v))| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (v.clamp(0.0, max), SegmentValue::Exact(i + 1)),
                    ],
                    RGBColor(70, 110, 180).filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(|e| draw(e.to_string()))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    format!("{v:.1}"),
                    (v.clamp(0.0, max), SegmentValue::CenterOf(i)),
                    ("sans-serif", 13),
                )
            }))
            .map_err(|e| draw(e.to_string()))?;
        root.present().map_err(|e| draw(e.to_string()))?;
    }
    Ok(svg)
}

/// Counts of a yes/no classifier: `[[tp, fn], [fp, tn]]` (rows: truth yes/no,
/// columns: answered yes/no), as a shaded 2×2 grid.
pub fn confusion(title: &str, counts: [[u64; 2]; 2]) -> Result<String, EvalError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 380)).into_drawing_area();
        let draw = |e: String| EvalError::Usage(format!("drawing {title}: {e}"));
        root.fill(&WHITE).map_err(|e| draw(e.to_string()))?;
        let most = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
        root.draw(&Text::new(title.to_string(), (150, 12), ("sans-serif", 20)))
            .map_err(|e| draw(e.to_string()))?;
        let labels = [
            ("answered yes", (150, 350)),
            ("no or unclear", (285, 350)),
            ("truth yes", (10, 115)),
            ("truth no", (10, 255)),
        ];
        for (text, at) in labels {
            root.draw(&Text::new(text, at, ("sans-serif", 14)))
                .map_err(|e| draw(e.to_string()))?;
        }
        for (row, counts_row) in counts.iter().enumerate() {
            for (col, &n) in counts_row.iter().enumerate() {
                let (x, y) = (110 + 140 * col as i32, 50 + 140 * row as i32);
                let shade = (235.0 - 150.0 * n as f64 / most) as u8;
                root.draw(&Rectangle::new(
                    [(x, y), (x + 136, y + 136)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(|e| draw(e.to_string()))?;
                root.draw(&Text::new(
                    n.to_string(),
                    (x + 55, y + 60),
                    ("sans-serif", 22),
                ))
                .map_err(|e| draw(e.to_string()))?;
            }
        }
        root.present().map_err(|e| draw(e.to_string()))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let svg = bars(
            "MME",
            &[("OCR".into(), 120.0), ("color".into(), 80.5)],
            200.0,
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("OCR") && svg.contains("80.5"));
        let svg = confusion("POPE", [[5, 1], [2, 7]]).unwrap();
        assert!(
            svg.contains("\n5\n") && svg.contains("\n7\n") && svg.contains("truth no"),
            "{svg}"
        );
        assert!(bars("empty", &[], 100.0).unwrap().contains("empty"));
    }
}
