//! `junit.xml`, written by quick-junit (nextest's crate): one `<testsuite>` per run, the tree
//! flattened, each named after its run; one `<testcase>` per verdict, load threshold, gate
//! check and matrix cell.
//!
//! An invalid verdict is a failure with its summary and anomalies. An undecided one is a
//! failure too (message `undecided: …`): an undecided run exits non-zero, and a reader that
//! showed it green would hide that. The seed's claims are not test cases (refuting the seed
//! is a finding, not a failure of ours): they ride along as properties of the top suite.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{
    chaos::MatrixCell,
    load::{GateCheck, LoadStep, ThresholdOutcome},
    Claim, RunReport, Validity, Verdict,
};

pub fn render(report: &RunReport) -> String {
    let mut out = Report::new(report.name.as_str());
    out.set_time(Duration::from_millis(report.duration_ms));
    let mut suites = Vec::new();
    flatten(report, &mut suites);
    if let Some(top) = suites.first_mut() {
        top.add_properties(report.claims.iter().map(claim));
    }
    out.add_test_suites(suites);
    out.to_string()
        .expect("quick-junit writes XML into a String, which cannot fail")
}

fn flatten(report: &RunReport, out: &mut Vec<TestSuite>) {
    out.push(suite(report));
    for run in &report.runs {
        flatten(run, out);
    }
}

fn suite(report: &RunReport) -> TestSuite {
    let mut suite = TestSuite::new(report.name.as_str());
    suite.set_time(Duration::from_millis(report.duration_ms));
    suite.add_property(Property::new("suite", report.suite.as_str()));
    suite.add_properties(
        report
            .sut
            .iter()
            .map(|(k, v)| Property::new(format!("sut.{k}"), v)),
    );
    let class = report.name.as_str();
    let mut cases: Vec<TestCase> = report.verdicts.iter().map(verdict).collect();
    if let Some(load) = &report.load {
        cases.extend(load.steps.iter().flat_map(|step| {
            step.thresholds
                .iter()
                .map(move |outcome| threshold(step, outcome))
        }));
        if let Some(gate) = &load.gate {
            cases.extend(gate.checks.iter().map(gate_check));
        }
    }
    if let Some(matrix) = &report.matrix {
        cases.extend(matrix.cells.iter().map(cell));
    }
    for case in &mut cases {
        case.set_classname(class);
    }
    suite.add_test_cases(cases);
    suite
}

fn failure(kind: &str, message: String, text: String) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status
        .set_type(kind)
        .set_message(message)
        .set_description(text);
    status
}

/// A checker's verdict; its anomalies with their examples are the failure's text.
fn verdict(v: &Verdict) -> TestCase {
    let summary = if v.summary.is_empty() {
        format!("{} found the property {}", v.checker, words(v.validity))
    } else {
        v.summary.clone()
    };
    let details = details(v);
    let status = match v.validity {
        Validity::Valid => TestCaseStatus::success(),
        Validity::Invalid => failure("invalid", summary.clone(), details.clone()),
        Validity::Unknown => failure(
            "undecided",
            format!("undecided: {summary}"),
            details.clone(),
        ),
    };
    let mut case = TestCase::new(v.checker.as_str(), status);
    if v.validity == Validity::Valid {
        case.set_system_out(details);
    }
    case
}

fn words(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "undecided",
    }
}

/// Summary, counts, measurements, then each anomaly kind with its count and examples.
fn details(v: &Verdict) -> String {
    let mut lines = vec![v.summary.clone()];
    if !v.counts.is_empty() {
        let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        lines.push(format!("counts: {}", counts.join(", ")));
    }
    if !v.measurements.is_empty() {
        let m: Vec<String> = v
            .measurements
            .iter()
            .map(|(k, x)| format!("{k}={x}"))
            .collect();
        lines.push(format!("measurements: {}", m.join(", ")));
    }
    for a in &v.anomalies {
        lines.push(format!("{} ×{}:", a.kind, a.count));
        lines.extend(a.examples.iter().map(|e| format!("  {e}")));
    }
    lines.join("\n")
}

/// A goose `--threshold` rule on one load step.
fn threshold(step: &LoadStep, outcome: &ThresholdOutcome) -> TestCase {
    let name = format!("threshold {}: {}", step.label, outcome.rule);
    let observed = format!("observed {}", outcome.observed);
    let status = if outcome.passed {
        TestCaseStatus::success()
    } else {
        failure(
            "threshold",
            format!("{} broken: {observed}", outcome.rule),
            format!("step `{}`: rule {}, {observed}", step.label, outcome.rule),
        )
    };
    let mut case = TestCase::new(name, status);
    if outcome.passed {
        case.set_system_out(observed);
    }
    case
}

/// One figure of the regression gate.
fn gate_check(check: &GateCheck) -> TestCase {
    let figures = format!(
        "baseline {}, candidate {}, limit {}",
        check.baseline, check.candidate, check.limit
    );
    let status = if check.passed {
        TestCaseStatus::success()
    } else {
        failure(
            "regression",
            format!("{} regressed: {figures}", check.metric),
            figures.clone(),
        )
    };
    let mut case = TestCase::new(format!("gate {}", check.metric), status);
    if check.passed {
        case.set_system_out(figures);
    }
    case
}

/// One strategy × experiment cell. What is tested is the prediction: a strategy expected to
/// lose tasks that loses them behaved as predicted and passes; an invalid cell with no
/// prediction fails, and an undecided one fails as undecided.
fn cell(c: &MatrixCell) -> TestCase {
    let name = format!("cell {} × {}", c.strategy, c.experiment);
    let found = if c.anomalies.is_empty() {
        words(c.validity).to_string()
    } else {
        let kinds: Vec<String> = c
            .anomalies
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        format!("{}: {}", words(c.validity), kinds.join(", "))
    };
    let predicted = c.predicted.as_deref().unwrap_or("nothing");
    let text = format!("predicted {predicted}; found {found}; run {}", c.run);
    let status = match (c.validity, c.as_predicted) {
        (Validity::Unknown, _) => failure("undecided", format!("undecided: {text}"), text.clone()),
        (_, Some(false)) => failure(
            "not-as-predicted",
            format!("not as predicted: {text}"),
            text.clone(),
        ),
        (Validity::Invalid, None) => failure("invalid", found.clone(), text.clone()),
        _ => TestCaseStatus::success(),
    };
    let passed = matches!(status, TestCaseStatus::Success { .. });
    let mut case = TestCase::new(name, status);
    if passed {
        case.set_system_out(text);
    }
    case
}

/// A claim of the seed as a property: `claim <id>` = `<verdict> (<source>): <evidence>`.
fn claim(c: &Claim) -> Property {
    let verdict = serde_json::to_value(c.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Property::new(
        format!("claim {}", c.id),
        format!("{verdict} ({}): {}", c.source, c.evidence),
    )
}
