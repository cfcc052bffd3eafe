//! Human-readable renderings of a [`RunReport`]: `report.md` for a CI job summary,
//! `junit.xml` for test-result readers, and `report.html`, one self-contained page with charts.
//!
//! The Markdown and HTML share one view of the report ([`view`]) and are laid out by templates
//! under `reports/templates/`, compiled into the binary so a rendering never depends on the
//! working directory. Charts are inline SVG drawn by plotters; JUnit XML is written by
//! quick-junit, so escaping and the element structure are the crate's concern, not ours.

use std::path::{Path, PathBuf};

use crate::{ReportError, RunReport};

mod charts;
mod format;
mod html;
mod junit;
mod markdown;
mod templates;
mod view;

pub use charts::{BAND_FILL, PALETTE};

/// The files [`write_all`] writes, in that order.
pub const FILES: [&str; 3] = ["report.md", "junit.xml", "report.html"];

/// Markdown fit for a GitHub job summary (`$GITHUB_STEP_SUMMARY`).
pub fn markdown(report: &RunReport) -> String {
    markdown::render(report)
}

/// JUnit XML: one test suite per run (nested runs flattened), one test case per verdict,
/// load threshold, gate check and matrix cell.
pub fn junit(report: &RunReport) -> String {
    junit::render(report)
}

/// One self-contained HTML page (inline CSS and SVG, nothing fetched) with the charts.
pub fn html(report: &RunReport) -> String {
    html::render(report)
}

/// Writes `report.md`, `junit.xml` and `report.html` into `dir` (created if missing) and
/// returns their paths.
pub fn write_all(dir: &Path, report: &RunReport) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let renderings = [markdown(report), junit(report), html(report)];
    FILES
        .iter()
        .zip(renderings)
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| io_error(&path, source))?;
            Ok(path)
        })
        .collect()
}

fn io_error(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.display().to_string(),
        source,
    }
}
