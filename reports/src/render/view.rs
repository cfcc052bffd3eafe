//! The report as the templates see it: the tree of runs flattened into sections in reading
//! order (a run, then each of its runs), each knowing its heading level, its anchor and its
//! directory relative to the top run's, so links from one file reach every nested run's files.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{charts::Chart, format::under};
use crate::{
    chaos::{ChaosReport, MatrixCell},
    load::LoadReport,
    Artifact, Claim, MatrixReport, RunReport, Validity, Verdict,
};

/// Everything a template renders.
#[derive(Serialize)]
pub struct View<'a> {
    pub sections: Vec<Section<'a>>,
    pub schema: &'static str,
}

/// One run's part of a rendering.
#[derive(Serialize)]
pub struct Section<'a> {
    /// HTML anchor, unique in the page.
    pub id: String,
    pub depth: usize,
    /// `#`s of the run's heading in Markdown, and of its subsections (one deeper).
    pub h: String,
    pub hh: String,
    /// The run's directory relative to the top run's, with a trailing `/` (empty for the top).
    pub base: String,
    pub name: &'a str,
    pub suite: &'a str,
    pub validity: Validity,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    pub duration_ms: u64,
    pub sut: &'a BTreeMap<String, String>,
    /// The SUT in one phrase for the title: its kind, else its first entry.
    pub sut_short: String,
    pub parameters: &'a BTreeMap<String, serde_json::Value>,
    pub verdicts: &'a [Verdict],
    pub artifacts: &'a [Artifact],
    pub claims: &'a [Claim],
    pub load: Option<&'a LoadReport>,
    pub chaos: Option<&'a ChaosReport>,
    pub matrix: Option<MatrixView<'a>>,
    pub runs: Vec<RunRow<'a>>,
    /// Filled by the HTML rendering only.
    pub charts: Charts,
}

/// A nested run in its parent's summary table.
#[derive(Serialize)]
pub struct RunRow<'a> {
    /// The section's anchor in the page.
    pub id: String,
    pub name: &'a str,
    pub suite: &'a str,
    pub validity: Validity,
    pub duration_ms: u64,
    /// Its directory relative to the top run's, with a trailing `/`, when `parameters.dir`
    /// names one.
    pub dir: Option<String>,
}

/// The matrix as a grid: a row per strategy, a column per experiment.
#[derive(Serialize)]
pub struct MatrixView<'a> {
    pub experiments: Vec<&'a str>,
    pub rows: Vec<MatrixRow<'a>>,
    pub cells: usize,
    pub as_predicted: usize,
    pub not_as_predicted: usize,
}

#[derive(Serialize)]
pub struct MatrixRow<'a> {
    pub strategy: &'a str,
    /// In the order of [`MatrixView::experiments`]; `None` where the pair did not run.
    pub cells: Vec<Option<&'a MatrixCell>>,
}

/// The charts of one section, by what they chart.
#[derive(Default, Serialize)]
pub struct Charts {
    pub timeline: Vec<Chart>,
    /// One entry per capacity curve, in the report's order.
    pub capacity: Vec<CurveCharts>,
    pub seed_table: Option<Chart>,
    pub soak: Vec<Chart>,
}

#[derive(Default, Serialize)]
pub struct CurveCharts {
    pub curve: Option<Chart>,
    pub backlog: Vec<Chart>,
}

/// The report's sections in reading order.
pub fn build(report: &RunReport) -> View<'_> {
    let mut sections = Vec::new();
    flatten(report, 0, String::new(), &mut sections);
    View {
        sections,
        schema: crate::SCHEMA,
    }
}

/// Appends `report`'s section and, after it, its runs' sections; returns its anchor.
fn flatten<'a>(
    report: &'a RunReport,
    depth: usize,
    base: String,
    out: &mut Vec<Section<'a>>,
) -> String {
    let at = out.len();
    let id = format!("run-{at}");
    out.push(section(report, depth, id.clone(), base.clone()));
    let rows = report
        .runs
        .iter()
        .map(|child| {
            let dir = child_dir(child, &base);
            let id = flatten(child, depth + 1, dir.clone().unwrap_or(base.clone()), out);
            RunRow {
                id,
                name: &child.name,
                suite: &child.suite,
                validity: child.validity,
                duration_ms: child.duration_ms,
                dir,
            }
        })
        .collect();
    out[at].runs = rows;
    id
}

/// A nested run's directory relative to the top run's, from its `parameters.dir` (relative to
/// its parent's).
fn child_dir(child: &RunReport, base: &str) -> Option<String> {
    let dir = child.parameters.get("dir")?.as_str()?.trim_end_matches('/');
    Some(format!("{}/", under(dir, base)))
}

fn section(report: &RunReport, depth: usize, id: String, base: String) -> Section<'_> {
    // Markdown has six heading levels: a run's subsections need one below its heading.
    let level = (depth + 1).min(5);
    Section {
        id,
        depth,
        h: "#".repeat(level),
        hh: "#".repeat(level + 1),
        base,
        name: &report.name,
        suite: &report.suite,
        validity: report.validity,
        started_at: &report.started_at,
        finished_at: &report.finished_at,
        duration_ms: report.duration_ms,
        sut: &report.sut,
        sut_short: sut_short(&report.sut),
        parameters: &report.parameters,
        verdicts: &report.verdicts,
        artifacts: &report.artifacts,
        claims: &report.claims,
        load: report.load.as_ref(),
        chaos: report.chaos.as_ref(),
        matrix: report.matrix.as_ref().map(matrix),
        runs: Vec::new(),
        charts: Charts::default(),
    }
}

fn sut_short(sut: &BTreeMap<String, String>) -> String {
    sut.get("kind")
        .or_else(|| sut.values().next())
        .cloned()
        .unwrap_or_default()
}

fn matrix(m: &MatrixReport) -> MatrixView<'_> {
    // A matrix may leave its axes empty (its cells name them): take them from the cells then,
    // in order of first appearance.
    let strategies = axis(&m.strategies, m.cells.iter().map(|c| c.strategy.as_str()));
    let experiments = axis(
        &m.experiments,
        m.cells.iter().map(|c| c.experiment.as_str()),
    );
    let find = |s: &str, e: &str| {
        m.cells
            .iter()
            .find(|c| c.strategy == s && c.experiment == e)
    };
    let rows = strategies
        .iter()
        .map(|s| MatrixRow {
            strategy: s,
            cells: experiments.iter().map(|e| find(s, e)).collect(),
        })
        .collect();
    MatrixView {
        rows,
        cells: m.cells.len(),
        as_predicted: m
            .cells
            .iter()
            .filter(|c| c.as_predicted == Some(true))
            .count(),
        not_as_predicted: m
            .cells
            .iter()
            .filter(|c| c.as_predicted == Some(false))
            .count(),
        experiments,
    }
}

/// The names an axis declares, then any more its cells use.
fn axis<'a>(given: &'a [String], used: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = given.iter().map(String::as_str).collect();
    for name in used {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
