//! report.md: what a GitHub job summary shows.

use reports::{claims::ClaimVerdict, render};

use crate::fixtures;

#[test]
fn the_title_line_names_the_run_its_validity_duration_and_sut() {
    let md = render::markdown(&fixtures::chaos());
    let title = md.lines().next().unwrap();
    assert_eq!(
        title,
        "# ❌ kill-worker-under-load · invalid · 1 min 02 s · SUT reference"
    );
    assert!(md.contains("address `http://127.0.0.1:8080`"), "{md}");
}

#[test]
fn the_claims_ledger_comes_first_with_the_counterexamples_of_refuted_claims() {
    let report = fixtures::verify();
    let md = render::markdown(&report);
    let ledger = md.find("## Claims of the seed").expect("a claims ledger");
    let verdicts = md.find("## Verdicts").expect("verdicts");
    assert!(ledger < verdicts, "the ledger comes before the verdicts");
    let refuted: Vec<_> = report
        .claims
        .iter()
        .filter(|c| c.verdict == ClaimVerdict::Refuted)
        .collect();
    assert!(!refuted.is_empty(), "the fixture refutes some claims");
    for c in refuted {
        let heading = format!("Counterexample to `{}`", c.id);
        let at = md
            .find(&heading)
            .unwrap_or_else(|| panic!("{heading} missing:\n{md}"));
        let example = serde_json::to_string_pretty(c.counterexample.as_ref().unwrap()).unwrap();
        assert!(
            md[at..].contains(&example),
            "{} shows its counterexample",
            c.id
        );
    }
    // The seed-table claim is refuted here (our QPS fell): its row says so.
    assert!(md.contains("| ❌ refuted |"), "{md}");
}

#[test]
fn verdicts_show_each_anomaly_kind_with_its_count_and_first_example() {
    let md = render::markdown(&fixtures::chaos());
    let row = md
        .lines()
        .find(|l| l.starts_with("| `task-ledger`"))
        .expect("task-ledger row");
    assert!(row.contains("❌ invalid"), "{row}");
    assert!(
        row.contains("2 of 1182 accepted tasks never completed"),
        "{row}"
    );
    assert!(row.contains("`lost` ×2"), "{row}");
    assert!(
        row.contains(r#"{"accepted_at_s":23.5,"task_id":"t-17"}"#),
        "{row}"
    );
    assert!(!row.contains("t-42"), "only the first example: {row}");
    let undecided = md.lines().find(|l| l.starts_with("| `recovery`")).unwrap();
    assert!(undecided.contains("❔ unknown"), "{undecided}");
}

#[test]
fn load_chaos_and_matrix_read_as_tables() {
    let md = render::markdown(&fixtures::verify());
    for needle in [
        // steps: label, offered, achieved, P50, P99, error rate, goose report under its dir
        "| capacity @ 600 req/s | fixed-rate | 64 | 600 | 588 | 225 ms | 900 ms | 0.20 % |",
        "[goose/capacity-@-600-req/s.html](loadtests/capacity/goose/capacity-@-600-req/s.html)",
        "| capacity @ 600 req/s | `p99 <= 250 ms` | 900 ms | ❌ fail |",
        // the seed's table, ours beside the seed's
        "| baseline | 11554 | 120 | 23.3 ms | 480 ms |",
        "| + Redis cache | 11900 | — |",
        // capacity: knee, why it stopped, drain, a point outside the SLO
        "Knee: **400 req/s**; stopped because P99 over the SLO twice in a row; drain: 42 s.",
        "| 500 | 500 | 60 ms | 420 ms | 4.00 % |",
        "Signs of overload: 503 unavailable from 500 req/s.",
        "| p99 GET user (cached) | 12 | 40 | 18 | ❌ |",
        // chaos
        "Hypothesis: Every accepted task completes exactly once and P99 stays under 250 ms — ❌ did not hold.",
        "| after | error-rate | 0.2 | `<= 0.05` | ❌ broken |",
        "| kill | worker-0 | 24 s | never healed | ✅ | — | — |",
        "| link-down | api-broker | 10 s | 18 s | ✅ | 850 ms | 1900 ms |",
        "completing tasks again in —.",
        "[history](chaos/kill-worker/history.jsonl)",
        // matrix: strategies × experiments
        "| strategy | worker-kill | broker-kill |",
        "| `ack-auto` | [❌ invalid](chaos/matrix/ack-auto-worker-kill/report.md) lost×11 · predicted `lost` · as predicted | [✅ valid](chaos/matrix/ack-auto-broker-kill/report.md) · predicted `lost` · NOT as predicted |",
        "| `dedupe-redis-setnx` |",
        // nested runs: a summary table linking each run's own report
        "| kill-worker-under-load | chaos | ❌ invalid | 1 min 02 s | [report.md](chaos/kill-worker/report.md) |",
        // a run without series says so
        "No series were recorded.",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    assert!(md.contains("| `dedupe-redis-setnx` | [❌ invalid]"), "{md}");
    assert!(
        md.contains("| — |"),
        "a pair that did not run reads as a dash"
    );
}

/// GitHub renders a table only while its rows stay together and keep the header's columns.
#[test]
fn every_table_keeps_its_rows_together_with_the_headers_columns() {
    let md = render::markdown(&fixtures::verify());
    let cells = |line: &str| line.replace("\\|", "").matches('|').count();
    let mut tables = 0;
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        tables += 1;
        let header = cells(lines[i]);
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("| ---")),
            "a table's second line is its separator: {:?}",
            &lines[i..(i + 2).min(lines.len())]
        );
        while i < lines.len() && lines[i].starts_with('|') {
            assert_eq!(cells(lines[i]), header, "row {:?}", lines[i]);
            i += 1;
        }
        assert!(
            lines.get(i).is_none_or(|l| l.is_empty()),
            "a blank line ends a table: {:?}",
            lines.get(i)
        );
    }
    assert!(tables >= 15, "{tables} tables");
}

#[test]
fn a_bare_report_and_a_deep_tree_render_in_every_format() {
    let bare = fixtures::run("bare", "harness");
    let mut deep = bare.clone();
    for i in 0..7 {
        let mut parent = fixtures::run(&format!("level-{i}"), "verify");
        parent.runs.push(deep);
        deep = parent;
    }
    for report in [&bare, &deep] {
        let md = render::markdown(report);
        assert!(md.contains("No checker ran."), "{md}");
        assert!(!md.contains("\n\n\n"), "one blank line at most:\n{md}");
        // Markdown has six heading levels: deeper runs stay at the fifth, their parts the sixth.
        assert!(!md.lines().any(|l| l.starts_with("#######")), "{md}");
        assert!(render::junit(report).contains("<testsuite name=\"bare\""));
        assert!(render::html(report).contains("</html>"));
    }
}
