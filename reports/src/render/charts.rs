//! The HTML page's charts: inline SVG drawn by plotters' SVG backend.
//!
//! The SVG backend writes text as `<text>` elements and leaves glyphs to the browser, so no
//! font library or embedded font is needed (plotters' `ttf`/`ab_glyph` features are off; its
//! fallback only estimates text extents for layout).
//!
//! Conventions the tests rely on (and a reader can check by eye):
//! - every data point is its own `<circle>` (filled within limits, hollow outside), besides the
//!   line through the points; nothing else in a chart is a circle;
//! - every fault window is its own `<rect>` filled with [`BAND_FILL`], a colour used for
//!   nothing else, drawn first so the grid and the data stay visible over it (Jepsen's plots
//!   shade nemesis activity the same way); an unhealed window runs to the chart's end;
//! - charts that share a run's clock share its x range, so the bands line up down the page.

use std::ops::Range;

use plotters::{
    coord::ranged1d::SegmentValue,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde::Serialize;

use crate::{
    chaos::{ChaosReport, FaultWindow},
    load::{CapacityCurve, SeedFigures, SeedRow},
    Series,
};

/// Fill of a fault window's band (an opaque light orange), and of nothing else.
pub const BAND_FILL: [u8; 3] = [0xFF, 0xD9, 0xA8];

/// Colours of the series, in order (Tableau's, without its orange, which is near the bands).
pub const PALETTE: [[u8; 3]; 8] = [
    [0x1F, 0x77, 0xB4],
    [0xD6, 0x27, 0x28],
    [0x2C, 0xA0, 0x2C],
    [0x94, 0x67, 0xBD],
    [0x8C, 0x56, 0x4B],
    [0xE3, 0x77, 0xC2],
    [0x17, 0xBE, 0xCF],
    [0x7F, 0x7F, 0x7F],
];

const GRID: RGBColor = RGBColor(0xEA, 0xEA, 0xEA);
const GRID_BOLD: RGBColor = RGBColor(0xD0, 0xD0, 0xD0);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);
/// Band labels: darker than the band so they read on it.
const BAND_INK: RGBColor = RGBColor(0xA3, 0x4A, 0x00);
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (960, 300);
const POINT_RADIUS: u32 = 3;

fn rgb([r, g, b]: [u8; 3]) -> RGBColor {
    RGBColor(r, g, b)
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02X}{g:02X}{b:02X}")
}

fn colour(i: usize) -> [u8; 3] {
    PALETTE[i % PALETTE.len()]
}

/// One chart as the HTML template places it.
#[derive(Debug, Serialize)]
pub struct Chart {
    /// `timeline`, `capacity`, `seed-table`, `soak` or `backlog`: the figure's `data-chart`.
    pub kind: &'static str,
    pub title: String,
    /// The y unit, for charts split by unit.
    pub unit: String,
    pub svg: String,
    pub legend: Vec<Legend>,
    /// Point elements drawn, and fault bands: the figure carries them so a reader of the
    /// page's source can check them against the report.
    pub points: usize,
    pub bands: usize,
}

/// A legend entry, laid out in HTML beneath the chart where the browser sets the text.
#[derive(Debug, Serialize)]
pub struct Legend {
    pub label: String,
    pub colour: String,
    /// `line` (a series), `hollow` (points outside a limit), `bar`, `band`, `marker`.
    pub mark: &'static str,
}

impl Legend {
    fn new(label: impl Into<String>, colour: [u8; 3], mark: &'static str) -> Legend {
        Legend {
            label: label.into(),
            colour: hex(colour),
            mark,
        }
    }
}

/// A line with its points; `filled[i]` false draws point `i` hollow.
struct Line {
    colour: [u8; 3],
    points: Vec<(f64, f64)>,
    filled: Vec<bool>,
}

struct Band {
    start: f64,
    end: Option<f64>,
    label: String,
}

/// What one x/y chart shows.
#[derive(Default)]
struct Plot {
    x_desc: String,
    y_desc: String,
    x_range: Option<Range<f64>>,
    lines: Vec<Line>,
    bands: Vec<Band>,
    /// A vertical marker (the knee) and its label.
    knee: Option<(f64, String)>,
    /// A horizontal limit (the SLO) and its label.
    limit: Option<(f64, String)>,
}

/// The timeline charts of one chaos experiment: one per y unit, every one with the fault
/// windows shaded. Empty when no series has a point.
pub fn timeline(chaos: &ChaosReport) -> Vec<Chart> {
    let x_range = clock_range(&chaos.series, &chaos.faults);
    by_unit(&chaos.series)
        .into_iter()
        .map(|(unit, members)| {
            let mut legend: Vec<Legend> = members
                .iter()
                .map(|(i, s)| Legend::new(&s.name, colour(*i), "line"))
                .collect();
            if !chaos.faults.is_empty() {
                legend.push(Legend::new("fault in force", BAND_FILL, "band"));
            }
            let plot = Plot {
                x_desc: members[0].1.x_unit.clone(),
                y_desc: unit.clone(),
                x_range: Some(x_range.clone()),
                lines: members.iter().map(|(i, s)| series_line(*i, s)).collect(),
                bands: chaos.faults.iter().map(band).collect(),
                ..Plot::default()
            };
            finish("timeline", title_of(&members), unit, plot, legend)
        })
        .collect()
}

/// Charts of series over time without faults (soak sizes, a capacity search's backlog): one
/// per y unit.
pub fn over_time(kind: &'static str, series: &[Series]) -> Vec<Chart> {
    by_unit(series)
        .into_iter()
        .map(|(unit, members)| {
            let legend = members
                .iter()
                .map(|(i, s)| Legend::new(&s.name, colour(*i), "line"))
                .collect();
            let plot = Plot {
                x_desc: members[0].1.x_unit.clone(),
                y_desc: unit.clone(),
                lines: members.iter().map(|(i, s)| series_line(*i, s)).collect(),
                ..Plot::default()
            };
            finish(kind, title_of(&members), unit, plot, legend)
        })
        .collect()
}

/// A capacity curve: P50 and P99 against the offered rate, the SLO as a limit line and the
/// knee marked. Points outside the SLO or the error limit are hollow.
pub fn capacity(curve: &CapacityCurve) -> Option<Chart> {
    if curve.points.is_empty() {
        return None;
    }
    let within: Vec<bool> = curve.points.iter().map(|p| p.within).collect();
    let line = |c: usize, f: fn(&crate::load::CurvePoint) -> f64| Line {
        colour: colour(c),
        points: curve.points.iter().map(|p| (p.offered_rps, f(p))).collect(),
        filled: within.clone(),
    };
    let mut legend = vec![
        Legend::new("P50", colour(0), "line"),
        Legend::new("P99", colour(1), "line"),
        Legend::new("outside SLO or error limit", colour(7), "hollow"),
    ];
    let knee = curve
        .knee_rps
        .map(|k| (k, format!("knee {} req/s", fmt(k))));
    if knee.is_some() {
        legend.push(Legend::new("knee", [0x33, 0x33, 0x33], "marker"));
    }
    let plot = Plot {
        x_desc: "offered req/s".into(),
        y_desc: "ms".into(),
        lines: vec![line(0, |p| p.p50_ms), line(1, |p| p.p99_ms)],
        knee,
        limit: Some((
            curve.slo_p99_ms,
            format!("SLO P99 {} ms", fmt(curve.slo_p99_ms)),
        )),
        ..Plot::default()
    };
    Some(finish(
        "capacity",
        format!("Capacity: {}", curve.label),
        "ms".into(),
        plot,
        legend,
    ))
}

/// The seed's table: our QPS and P99 beside the seed's, step by step, as paired bars.
pub fn seed_table(rows: &[SeedRow]) -> Option<Chart> {
    if rows.is_empty() {
        return None;
    }
    let ours = colour(0);
    let seed = colour(7);
    let svg = draw_or_note(|out| draw_seed_bars(out, rows, ours, seed));
    let bars = rows.len() + rows.iter().filter(|r| r.seed.is_some()).count();
    Some(Chart {
        kind: "seed-table",
        title: "The seed's table: ours beside the seed's".into(),
        unit: String::new(),
        svg,
        legend: vec![
            Legend::new("ours", ours, "bar"),
            Legend::new("the seed's", seed, "bar"),
        ],
        points: 2 * bars,
        bands: 0,
    })
}

fn finish(
    kind: &'static str,
    title: String,
    unit: String,
    plot: Plot,
    legend: Vec<Legend>,
) -> Chart {
    let points = plot.lines.iter().map(|l| l.points.len()).sum();
    let bands = plot.bands.len();
    Chart {
        kind,
        title,
        unit,
        svg: draw_or_note(|out| draw_plot(out, &plot)),
        legend,
        points,
        bands,
    }
}

/// Series with points, grouped by y unit in order of first appearance, each with its index
/// in `series` (which picks its colour, so a series keeps it across charts).
fn by_unit(series: &[Series]) -> Vec<(String, Vec<(usize, &Series)>)> {
    let mut groups: Vec<(String, Vec<(usize, &Series)>)> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(unit, _)| *unit == s.y_unit) {
            Some((_, members)) => members.push((i, s)),
            None => groups.push((s.y_unit.clone(), vec![(i, s)])),
        }
    }
    groups
}

fn title_of(members: &[(usize, &Series)]) -> String {
    members
        .iter()
        .map(|(_, s)| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn series_line(i: usize, s: &Series) -> Line {
    Line {
        colour: colour(i),
        points: s.points.iter().map(|p| (p[0], p[1])).collect(),
        filled: vec![true; s.points.len()],
    }
}

fn band(f: &FaultWindow) -> Band {
    let mut label = format!("{} {}", f.fault, f.target);
    if !f.injected {
        label.push_str(" (not injected)");
    }
    if f.end_s.is_none() {
        label.push_str(" (never healed)");
    }
    Band {
        start: f.start_s,
        end: f.end_s,
        label,
    }
}

/// The run's clock: from the earliest to the latest moment any series or fault mentions, so
/// every timeline of the run spans the same seconds.
fn clock_range(series: &[Series], faults: &[FaultWindow]) -> Range<f64> {
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p[0]))
        .chain(
            faults
                .iter()
                .flat_map(|f| [Some(f.start_s), f.end_s])
                .flatten(),
        );
    span(xs.chain([0.0]), false)
}

/// A range covering `values`; widened when empty or flat, with headroom above when asked
/// (latencies and counts read better with a little air over the top point).
fn span(values: impl Iterator<Item = f64>, headroom: bool) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return 0.0..1.0;
    }
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let air = if headroom { (hi - lo) * 0.08 } else { 0.0 };
    lo..hi + air
}

fn fmt(v: f64) -> String {
    super::format::num(Some(v))
}

fn draw_or_note(draw: impl FnOnce(&mut String) -> Result<(), String>) -> String {
    let mut out = String::new();
    match draw(&mut out) {
        Ok(()) => out,
        // A chart that cannot be drawn must not cost the rest of the report.
        Err(e) => format!("<p class=\"empty\">This chart could not be drawn: {e}</p>"),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw_plot(out: &mut String, plot: &Plot) -> Result<(), String> {
    let x = plot.x_range.clone().unwrap_or_else(|| {
        let xs = plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        span(xs.chain(plot.knee.as_ref().map(|k| k.0)), false)
    });
    let ys = plot.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let y = span(
        ys.chain([0.0]).chain(plot.limit.as_ref().map(|l| l.0)),
        true,
    );
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(err)?;
    // Bands first: the grid, the lines and the points are drawn over them.
    chart
        .draw_series(plot.bands.iter().map(|b| {
            let end = b.end.unwrap_or(x.end).min(x.end);
            Rectangle::new([(b.start, y.end), (end, y.start)], rgb(BAND_FILL).filled())
        }))
        .map_err(err)?;
    let label = |v: &f64| fmt(*v);
    chart
        .configure_mesh()
        .x_desc(plot.x_desc.as_str())
        .y_desc(plot.y_desc.as_str())
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .light_line_style(GRID)
        .max_light_lines(2)
        .bold_line_style(GRID_BOLD)
        .axis_style(INK)
        .label_style((FONT, 13).into_font().color(&INK))
        .axis_desc_style((FONT, 13).into_font().color(&INK))
        .draw()
        .map_err(err)?;
    let small = (FONT, 12).into_font();
    let top_left = Pos::new(HPos::Left, VPos::Top);
    chart
        .draw_series(plot.bands.iter().map(|b| {
            EmptyElement::at((b.start, y.end))
                + Text::new(
                    b.label.clone(),
                    (4, 4),
                    small.clone().color(&BAND_INK).pos(top_left),
                )
        }))
        .map_err(err)?;
    if let Some((limit, text)) = &plot.limit {
        let grey = rgb(PALETTE[7]);
        chart
            .draw_series([PathElement::new(
                vec![(x.start, *limit), (x.end, *limit)],
                grey.stroke_width(1),
            )])
            .map_err(err)?;
        chart
            .draw_series([EmptyElement::at((x.start, *limit))
                + Text::new(
                    text.clone(),
                    (4, -16),
                    small.clone().color(&grey).pos(top_left),
                )])
            .map_err(err)?;
    }
    if let Some((knee, text)) = &plot.knee {
        chart
            .draw_series([PathElement::new(
                vec![(*knee, y.start), (*knee, y.end)],
                INK.stroke_width(2),
            )])
            .map_err(err)?;
        chart
            .draw_series([EmptyElement::at((*knee, y.end))
                + Text::new(
                    text.clone(),
                    (6, 4),
                    small.clone().color(&INK).pos(top_left),
                )])
            .map_err(err)?;
    }
    for line in &plot.lines {
        draw_line(&mut chart, line)?;
    }
    root.present().map_err(err)
}

type Cartesian<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The line through the points, then each point as its own circle.
fn draw_line(chart: &mut Cartesian<'_, '_>, line: &Line) -> Result<(), String> {
    let c = rgb(line.colour);
    chart
        .draw_series(LineSeries::new(
            line.points.iter().copied(),
            c.stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .draw_series(line.points.iter().zip(&line.filled).map(|(&p, &filled)| {
            let style = if filled {
                c.filled()
            } else {
                // Hollow, on white, so the line does not show through it.
                c.stroke_width(2)
            };
            Circle::new(p, POINT_RADIUS, style)
        }))
        .map_err(err)?;
    Ok(())
}

/// Picks one figure of a seed-table row.
type Figure = fn(&SeedFigures) -> f64;

/// Two panels, QPS and P99; per step a bar of ours and, where the seed gives one, the seed's.
fn draw_seed_bars(
    out: &mut String,
    rows: &[SeedRow],
    ours: [u8; 3],
    seed: [u8; 3],
) -> Result<(), String> {
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let figures: [(&str, Figure); 2] = [("QPS", |f| f.qps), ("P99 ms", |f| f.p99_ms)];
    for (area, (desc, value)) in panels.iter().zip(figures) {
        let top = rows
            .iter()
            .flat_map(|r| [Some(value(&r.ours)), r.seed.as_ref().map(value)])
            .flatten();
        let y = span(top.chain([0.0]), true);
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((0..rows.len()).into_segmented(), y)
            .map_err(err)?;
        let names = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => rows.get(*i).map_or(String::new(), |r| short(&r.step)),
            _ => String::new(),
        };
        let label = |v: &f64| fmt(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len())
            .x_label_formatter(&names)
            .y_label_formatter(&label)
            .y_desc(desc)
            .light_line_style(GRID)
            .max_light_lines(2)
            .bold_line_style(GRID_BOLD)
            .axis_style(INK)
            .label_style((FONT, 12).into_font().color(&INK))
            .axis_desc_style((FONT, 13).into_font().color(&INK))
            .draw()
            .map_err(err)?;
        let bar = |i: usize, left: bool, v: f64, c: [u8; 3]| {
            let (a, b) = if left {
                (SegmentValue::Exact(i), SegmentValue::CenterOf(i))
            } else {
                (SegmentValue::CenterOf(i), SegmentValue::Exact(i + 1))
            };
            let mut r = Rectangle::new([(a, v), (b, 0.0)], rgb(c).filled());
            r.set_margin(0, 0, if left { 8 } else { 1 }, if left { 1 } else { 8 });
            r
        };
        let bars = rows.iter().enumerate().flat_map(|(i, r)| {
            let theirs = r.seed.as_ref().map(|s| bar(i, false, value(s), seed));
            std::iter::once(bar(i, true, value(&r.ours), ours)).chain(theirs)
        });
        chart.draw_series(bars).map_err(err)?;
    }
    root.present().map_err(err)
}

/// A step name short enough to sit under its bars.
fn short(name: &str) -> String {
    const MAX: usize = 18;
    match name.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_string(),
    }
}
