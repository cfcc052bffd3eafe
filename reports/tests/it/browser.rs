//! report.html as a browser draws it: Debian's headless Chromium loads the page from disk,
//! then the DOM it built is counted (a point element per data point, a band per fault window)
//! and its screenshot is checked for the band and series colours actually painted.
//!
//! Chromium is a test dependency of this crate: scripts/services.sh installs it. A missing
//! Chromium fails these tests rather than skipping them, so CI cannot pass without drawing.

use std::{
    collections::BTreeMap,
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reports::{
    render::{self, BAND_FILL, PALETTE},
    RunReport,
};

use crate::fixtures;

fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: run scripts/services.sh, which installs it \
                 (apt-get install --no-install-recommends chromium)"
            )
        })
}

/// Runs headless Chromium on `page` with `args`, its own profile under `dir`, and its standard
/// output into `dir/<name>.out`; gives up after two minutes rather than hang the suite.
fn run_chromium(dir: &Path, name: &str, page: &Path, args: &[String]) -> String {
    let out_path = dir.join(format!("{name}.out"));
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("{name}-profile")).display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish {name} within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium {name} exited with {status}");
    std::fs::read_to_string(out_path).unwrap()
}

/// The fixture rendered into a fresh directory: (directory guard, report.html).
fn rendered(report: &RunReport) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    render::write_all(dir.path(), report).unwrap();
    let page = dir.path().join("report.html");
    (dir, page)
}

/// A `<figure class="chart">` of the DOM: its data attributes and its inner markup.
#[derive(Debug)]
struct Figure {
    chart: String,
    run: String,
    unit: String,
    body: String,
}

fn attr(tag: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    tag.find(&key)
        .map(|at| {
            let rest = &tag[at + key.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .unwrap_or_default()
}

fn figures(dom: &str) -> Vec<Figure> {
    dom.match_indices("<figure")
        .map(|(at, _)| {
            let rest = &dom[at..];
            let open = &rest[..rest.find('>').unwrap()];
            let end = rest.find("</figure>").expect("figure closed");
            assert!(open.contains("class=\"chart\""), "{open}");
            Figure {
                chart: attr(open, "data-chart"),
                run: attr(open, "data-run"),
                unit: attr(open, "data-unit"),
                body: rest[open.len()..end].to_string(),
            }
        })
        .collect()
}

/// Start tags named `name` in `markup`, each up to its `>`.
fn tags<'a>(markup: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    markup
        .match_indices(&open)
        .map(|(at, _)| {
            let rest = &markup[at..];
            &rest[..rest.find('>').unwrap()]
        })
        .collect()
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn filled_with(markup: &str, name: &str, colour: [u8; 3]) -> usize {
    let fill = format!("fill=\"{}\"", hex(colour));
    tags(markup, name)
        .iter()
        .filter(|t| t.to_ascii_lowercase().contains(&fill))
        .count()
}

/// Points per y unit of a chaos report's series, as its timeline figures should draw them.
fn points_by_unit(run: &RunReport) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in &run.chaos.as_ref().unwrap().series {
        if !s.points.is_empty() {
            *out.entry(s.y_unit.clone()).or_default() += s.points.len();
        }
    }
    out
}

#[test]
fn the_page_fetches_nothing() {
    let html = render::html(&fixtures::verify());
    for banned in [
        "<script", "<link", "@import", "url(", " src=", "<iframe", "<img",
    ] {
        assert!(!html.contains(banned), "{banned} in a self-contained page");
    }
    for (at, _) in html.match_indices("href=\"") {
        let target = &html[at + 6..];
        assert!(
            !target.starts_with("http"),
            "external link {}",
            &target[..40]
        );
    }
}

#[test]
fn chromium_draws_a_point_per_data_point_and_a_band_per_fault_window() {
    let report = fixtures::verify();
    let (dir, page) = rendered(&report);
    let dom = run_chromium(dir.path(), "dom", &page, &["--dump-dom".to_string()]);
    assert!(
        dom.contains("</html>"),
        "a whole DOM: {}",
        &dom[..dom.len().min(300)]
    );
    let figures = figures(&dom);
    let runs = fixtures::all_runs(&report);

    for run in runs.iter().filter(|r| r.chaos.is_some()) {
        let faults = run.chaos.as_ref().unwrap().faults.len();
        let timeline: Vec<&Figure> = figures
            .iter()
            .filter(|f| f.chart == "timeline" && f.run == run.name)
            .collect();
        let expected = points_by_unit(run);
        let drawn: BTreeMap<String, usize> = timeline
            .iter()
            .map(|f| (f.unit.clone(), tags(&f.body, "circle").len()))
            .collect();
        assert_eq!(drawn, expected, "points per timeline of {}", run.name);
        for f in &timeline {
            assert_eq!(
                filled_with(&f.body, "rect", BAND_FILL),
                faults,
                "bands in the {} timeline of {}",
                f.unit,
                run.name
            );
        }
    }
    // The run whose series are all empty says so instead of charting nothing.
    assert!(!figures.iter().any(|f| f.run == "quiet-experiment"));
    assert!(dom.contains("No series were recorded."));

    let load = runs.iter().find(|r| r.load.is_some()).unwrap();
    let load_report = load.load.as_ref().unwrap();
    let capacity: Vec<&Figure> = figures.iter().filter(|f| f.chart == "capacity").collect();
    assert_eq!(capacity.len(), load_report.capacity.len());
    for (figure, curve) in capacity.iter().zip(&load_report.capacity) {
        // P50 and P99 of every point; the knee is a line, not a point.
        assert_eq!(tags(&figure.body, "circle").len(), 2 * curve.points.len());
        assert!(figure.body.contains("knee 400 req/s"));
        assert_eq!(filled_with(&figure.body, "rect", BAND_FILL), 0);
    }
    let seed: Vec<&Figure> = figures.iter().filter(|f| f.chart == "seed-table").collect();
    assert_eq!(seed.len(), 1);
    let rows = &load_report.seed_table;
    // Per step a bar of ours in each panel (QPS, P99), and the seed's where it gives figures.
    assert_eq!(
        filled_with(&seed[0].body, "rect", PALETTE[0]),
        2 * rows.len()
    );
    let theirs = rows.iter().filter(|r| r.seed.is_some()).count();
    assert_eq!(filled_with(&seed[0].body, "rect", PALETTE[7]), 2 * theirs);

    let soak = load_report.soak.as_ref().unwrap();
    let soak_points: usize = figures
        .iter()
        .filter(|f| f.chart == "soak")
        .map(|f| tags(&f.body, "circle").len())
        .sum();
    assert_eq!(
        soak_points,
        soak.series.iter().map(|s| s.points.len()).sum::<usize>()
    );
    // The matrix is a coloured table, with a cell per strategy × experiment.
    let matrix = &dom[dom.find("<table class=\"matrix\"").expect("matrix table")..];
    let matrix = &matrix[..matrix.find("</table>").unwrap()];
    assert_eq!(tags(matrix, "td").len(), 3 * 2);
    assert_eq!(matrix.matches("class=\"cell invalid").count(), 2);
}

#[test]
fn chromium_paints_the_fault_bands_and_the_series() {
    let report = fixtures::verify();
    let (dir, page) = rendered(&report);
    let shot = dir.path().join("shot.png");
    run_chromium(
        dir.path(),
        "screenshot",
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000".to_string(),
        ],
    );
    let mut reader = png::Decoder::new(BufReader::new(File::open(&shot).unwrap()))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let step = info.color_type.samples();
    assert!(step >= 3, "a colour screenshot: {:?}", info.color_type);
    assert_eq!((info.width, info.height), (1280, 4000));
    let painted = |[r, g, b]: [u8; 3]| {
        pixels[..info.buffer_size()]
            .chunks_exact(step)
            .filter(|p| p[0].abs_diff(r) <= 3 && p[1].abs_diff(g) <= 3 && p[2].abs_diff(b) <= 3)
            .count()
    };
    // Each timeline band is tens of pixels wide and the plot's height tall: thousands of
    // pixels, far more than the legend's swatches (14×14 each) could account for.
    let band = painted(BAND_FILL);
    assert!(band > 5_000, "fault bands painted on {band} pixels");
    // The first series: its line and its filled points, far beyond its legend swatch.
    let series = painted(PALETTE[0]);
    assert!(series > 500, "series colour painted on {series} pixels");
}
