//! junit.xml: read back with a plain XML reader (what CI's JUnit readers see) and with
//! quick-junit's own reader.

use quick_xml::{escape::resolve_predefined_entity, events::Event, Reader, XmlVersion};
use reports::{render, RunReport, Validity};

use crate::fixtures;

/// A `<testcase>` as read back: its suite, name, and failure (message, text) if any.
#[derive(Debug)]
struct Case {
    suite: String,
    name: String,
    failure: Option<(String, String)>,
}

/// Reads suites and test cases with quick-xml's event reader, independent of quick-junit.
fn read(xml: &str) -> (Vec<String>, Vec<Case>, Vec<(String, String)>) {
    let mut reader = Reader::from_str(xml);
    let (mut suites, mut cases, mut properties) = (Vec::new(), Vec::<Case>::new(), Vec::new());
    let mut in_failure = false;
    let attr = |e: &quick_xml::events::BytesStart, key: &str| -> String {
        e.try_get_attribute(key)
            .unwrap()
            .map(|a| {
                a.normalized_value(XmlVersion::Implicit1_0)
                    .unwrap()
                    .into_owned()
            })
            .unwrap_or_default()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuite" => suites.push(attr(&e, "name")),
                b"testcase" => cases.push(Case {
                    suite: suites.last().cloned().unwrap_or_default(),
                    name: attr(&e, "name"),
                    failure: None,
                }),
                b"failure" => {
                    let case = cases.last_mut().expect("a failure inside a testcase");
                    case.failure = Some((attr(&e, "message"), String::new()));
                    in_failure = true;
                }
                b"property" => properties.push((attr(&e, "name"), attr(&e, "value"))),
                _ => {}
            },
            Event::Text(t) if in_failure => {
                let text = t.xml10_content().unwrap().into_owned();
                cases
                    .last_mut()
                    .unwrap()
                    .failure
                    .as_mut()
                    .unwrap()
                    .1
                    .push_str(&text);
            }
            // quick-xml hands entity references (`&quot;`) over as events of their own.
            Event::GeneralRef(r) if in_failure => {
                let name = r.decode().unwrap();
                let text = match r.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&name).unwrap().to_string(),
                };
                cases
                    .last_mut()
                    .unwrap()
                    .failure
                    .as_mut()
                    .unwrap()
                    .1
                    .push_str(&text);
            }
            Event::End(e) if e.name().as_ref() == b"failure" => in_failure = false,
            Event::Eof => break,
            _ => {}
        }
    }
    (suites, cases, properties)
}

fn case<'a>(cases: &'a [Case], suite: &str, name: &str) -> &'a Case {
    cases
        .iter()
        .find(|c| c.suite == suite && c.name == name)
        .unwrap_or_else(|| panic!("no testcase {suite}/{name} in {cases:#?}"))
}

#[test]
fn one_suite_per_run_and_one_case_per_verdict_threshold_gate_check_and_cell() {
    let report = fixtures::verify();
    let xml = render::junit(&report);
    let (suites, cases, _) = read(&xml);
    let runs = fixtures::all_runs(&report);
    assert_eq!(
        suites,
        runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "nested runs flattened, parents first"
    );
    let expected = |r: &RunReport| {
        let load = r.load.as_ref().map_or(0, |l| {
            l.steps.iter().map(|s| s.thresholds.len()).sum::<usize>()
                + l.gate.as_ref().map_or(0, |g| g.checks.len())
        });
        r.verdicts.len() + load + r.matrix.as_ref().map_or(0, |m| m.cells.len())
    };
    assert_eq!(cases.len(), runs.iter().map(|r| expected(r)).sum::<usize>());
    let failing_verdicts = runs
        .iter()
        .flat_map(|r| &r.verdicts)
        .filter(|v| v.validity != Validity::Valid)
        .count();
    // + the broken threshold, the regressed gate check, and the two cells not as predicted.
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    assert_eq!(failures, failing_verdicts + 1 + 1 + 2, "{cases:#?}");
    // Claims are findings, not failures: properties of the top suite, never test cases.
    assert!(!cases.iter().any(|c| c.name.contains("claim")));
}

#[test]
fn a_failing_verdict_is_a_failure_with_its_summary_and_anomalies() {
    let (_, cases, _) = read(&render::junit(&fixtures::chaos()));
    let ledger = case(&cases, "kill-worker-under-load", "task-ledger");
    let (message, text) = ledger.failure.as_ref().expect("a failure");
    assert_eq!(message, "2 of 1182 accepted tasks never completed");
    assert!(text.contains("lost ×2"), "{text}");
    assert!(text.contains(r#""task_id":"t-17""#), "{text}");
    assert!(text.contains("t-42"), "every example kept: {text}");
    assert!(case(&cases, "kill-worker-under-load", "duplicates")
        .failure
        .is_none());
}

#[test]
fn an_undecided_verdict_fails_as_undecided() {
    let (_, cases, _) = read(&render::junit(&fixtures::chaos()));
    let (message, _) = case(&cases, "kill-worker-under-load", "recovery")
        .failure
        .as_ref()
        .expect("undecided fails: an undecided run exits non-zero");
    assert_eq!(message, "undecided: no task completed after the last heal");
}

#[test]
fn thresholds_gate_checks_and_cells_fail_with_their_figures() {
    let (_, cases, _) = read(&render::junit(&fixtures::verify()));
    let load = "capacity-and-seed-table";
    let broken = case(
        &cases,
        load,
        "threshold capacity @ 600 req/s: p99 <= 250 ms",
    );
    assert_eq!(
        broken.failure.as_ref().unwrap().0,
        "p99 <= 250 ms broken: observed 900 ms"
    );
    assert!(case(
        &cases,
        load,
        "threshold capacity @ 200 req/s: p99 <= 250 ms"
    )
    .failure
    .is_none());
    let gate = case(&cases, load, "gate p99 GET user (cached)");
    assert!(gate
        .failure
        .as_ref()
        .unwrap()
        .0
        .contains("candidate 40, limit 18"));
    // Losing tasks as predicted passes; not losing them when predicted to is a surprise.
    let m = "strategy-matrix";
    assert!(case(&cases, m, "cell ack-auto × worker-kill")
        .failure
        .is_none());
    let surprise = case(&cases, m, "cell ack-auto × broker-kill");
    assert!(surprise
        .failure
        .as_ref()
        .unwrap()
        .0
        .starts_with("not as predicted"));
}

#[test]
fn claims_ride_along_as_properties_and_quick_junit_reads_the_file_back() {
    let report = fixtures::verify();
    let xml = render::junit(&report);
    let (_, _, properties) = read(&xml);
    for c in &report.claims {
        let name = format!("claim {}", c.id);
        let (_, value) = properties
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(value.contains(&c.evidence), "{value}");
    }
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("quick-junit reads it");
    assert_eq!(parsed.name.as_ref().map(|n| n.as_str()), Some("verify"));
    assert_eq!(parsed.test_suites.len(), fixtures::all_runs(&report).len());
    let failures: usize = parsed.test_suites.iter().map(|s| s.failures).sum();
    assert_eq!(failures, parsed.failures);
    assert!(failures > 0);
}
