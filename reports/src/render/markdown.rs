//! `report.md`: fit for a GitHub job summary, so plain GitHub-flavoured Markdown (tables,
//! code spans, no HTML beyond `<br>` in cells). Laid out by `templates/report.md`.

use super::{templates, view};
use crate::RunReport;

pub fn render(report: &RunReport) -> String {
    squeeze(&templates::render("report.md", &view::build(report)))
}

/// Optional parts the template leaves out leave their blank lines behind; Markdown reads one
/// blank line like several, but the file reads better (and diffs smaller) with one.
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        blank = if line.trim().is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
