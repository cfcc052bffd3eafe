//! `report.html`: the Markdown's sections plus the charts, in one file that fetches nothing
//! (inline CSS, inline SVG), so it can be archived as a CI artifact and opened anywhere.
//! Laid out by `templates/report.html`.

use super::{
    charts, templates,
    view::{self, Charts, CurveCharts, Section},
};
use crate::RunReport;

pub fn render(report: &RunReport) -> String {
    let mut view = view::build(report);
    for section in &mut view.sections {
        section.charts = charts_of(section);
    }
    templates::render("report.html", &view)
}

/// The charts of one run's own measurements (its nested runs chart theirs in their sections).
fn charts_of(section: &Section<'_>) -> Charts {
    let mut out = Charts::default();
    if let Some(chaos) = section.chaos {
        out.timeline = charts::timeline(chaos);
    }
    if let Some(load) = section.load {
        out.seed_table = charts::seed_table(&load.seed_table);
        out.capacity = load
            .capacity
            .iter()
            .map(|curve| CurveCharts {
                curve: charts::capacity(curve),
                backlog: charts::over_time("backlog", &curve.backlog),
            })
            .collect();
        if let Some(soak) = &load.soak {
            out.soak = charts::over_time("soak", &soak.series);
        }
    }
    out
}
