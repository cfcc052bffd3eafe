//! A realistic verification report: a chaos experiment with series and two fault windows (one
//! never healed), a load run with steps, thresholds, the seed's table, a capacity curve, a gate
//! and a soak, and a strategy × fault matrix, merged under one `verify` run with the seed's
//! claims judged from them.

use std::collections::BTreeMap;

use reports::{
    chaos::{FaultWindow, MatrixCell, ProbeResult, Recovery},
    claims,
    load::{
        CapacityCurve, CurvePoint, Gate, GateCheck, LoadStep, Loop, RequestStats, SeedFigures,
        SeedRow, Signal, Soak, ThresholdOutcome, Tolerance,
    },
    Artifact, ChaosReport, LoadReport, MatrixReport, RunReport, Series, Validity, Verdict,
};
use serde_json::json;

pub fn run(name: &str, suite: &str) -> RunReport {
    RunReport {
        started_at: "2026-05-01T10:00:00Z".into(),
        finished_at: "2026-05-01T10:01:02Z".into(),
        duration_ms: 62_000,
        sut: BTreeMap::from([
            ("kind".to_string(), "reference".to_string()),
            ("address".to_string(), "http://127.0.0.1:8080".to_string()),
        ]),
        ..RunReport::new(name, suite)
    }
}

fn in_dir(mut r: RunReport, dir: &str) -> RunReport {
    r.parameters.insert("dir".into(), json!(dir));
    r
}

/// Whether second `t` falls in a fault window of [`chaos`]'s.
fn faulted(t: f64) -> bool {
    (10.0..18.0).contains(&t) || t >= 24.0
}

pub fn chaos() -> RunReport {
    let mut r = run("kill-worker-under-load", "chaos");
    let mut accepted = Series::new("accepted/s", "s", "req/s");
    let mut failed = Series::new("failed/s", "s", "req/s");
    let mut p99 = Series::new("P99", "s", "ms");
    let mut backlog = Series::new("outbox backlog", "s", "messages");
    for i in 0..40 {
        let t = i as f64;
        let hit = faulted(t);
        accepted.push(
            t,
            if hit {
                20.0 + t
            } else {
                100.0 + (t * 0.7).sin() * 8.0
            },
        );
        failed.push(t, if hit { 30.0 } else { 1.0 });
        p99.push(
            t,
            if hit {
                400.0 + t * 3.0
            } else {
                40.0 + (t * 0.3).cos() * 5.0
            },
        );
        if i >= 15 {
            backlog.push(t, if hit { (t - 9.0) * 25.0 } else { 10.0 });
        }
    }
    // Recorded but empty: must not make a chart of its own.
    let connection = Series::new("broker connection", "s", "up");
    r.chaos = Some(ChaosReport {
        title: "A worker is killed while tasks flow".into(),
        hypothesis: "Every accepted task completes exactly once and P99 stays under 250 ms".into(),
        hypothesis_held: Some(false),
        steady_state: vec![
            probe("before", "error-rate", Some(0.01), "<= 0.05", Some(true)),
            probe("after", "error-rate", Some(0.2), "<= 0.05", Some(false)),
            probe("after", "p99", None, "<= 250", None),
        ],
        faults: vec![
            window("link-down", "api-broker", 10.0, Some(18.0)),
            window("kill", "worker-0", 24.0, None),
        ],
        recovery: Recovery {
            accepting_ms: Some(850.0),
            completing_ms: None,
        },
        series: vec![accepted, failed, p99, connection, backlog],
    });
    let mut ledger = Verdict::new("task-ledger");
    ledger
        .count("ok", 1180)
        .count("lost", 2)
        .anomaly("lost", json!({"task_id": "t-17", "accepted_at_s": 23.5}))
        .anomaly("lost", json!({"task_id": "t-42"}))
        .summary("2 of 1182 accepted tasks never completed");
    let mut undecided = Verdict::new("recovery");
    undecided
        .undecided()
        .summary("no task completed after the last heal");
    let mut fine = Verdict::new("duplicates");
    fine.summary("no task completed twice");
    r.verdicts = vec![ledger, undecided, fine];
    r.seal();
    r.artifacts = vec![
        Artifact {
            name: "history".into(),
            path: "history.jsonl".into(),
        },
        Artifact {
            name: "reference log".into(),
            path: "logs/reference.log".into(),
        },
    ];
    r
}

fn probe(phase: &str, name: &str, obs: Option<f64>, tol: &str, held: Option<bool>) -> ProbeResult {
    ProbeResult {
        phase: phase.into(),
        probe: name.into(),
        observed: obs,
        tolerance: tol.into(),
        held,
    }
}

fn window(fault: &str, target: &str, start_s: f64, end_s: Option<f64>) -> FaultWindow {
    FaultWindow {
        fault: fault.into(),
        target: target.into(),
        start_s,
        end_s,
        injected: true,
        accepting_ms: end_s.map(|_| 850.0),
        completing_ms: end_s.map(|_| 1_900.0),
    }
}

fn stats(name: &str, rps: f64, p50: f64, p99: f64, error_rate: f64) -> RequestStats {
    RequestStats {
        name: name.into(),
        requests: (rps * 30.0) as u64,
        failures: (rps * 30.0 * error_rate) as u64,
        error_rate,
        rps,
        mean_ms: p50 * 1.1,
        p50_ms: p50,
        p90_ms: p99 * 0.7,
        p99_ms: p99,
        max_ms: p99 * 2.0,
        statuses: BTreeMap::new(),
    }
}

fn step(label: &str, rps: f64, p99: f64, passed: bool) -> LoadStep {
    LoadStep {
        label: label.into(),
        sut_args: vec![],
        loop_kind: Loop::FixedRate,
        offered_rps: Some(rps),
        users: 64,
        duration_s: 30.0,
        aggregate: stats("Aggregated", rps * 0.98, p99 / 4.0, p99, 0.002),
        requests: vec![],
        tasks: Some(stats("TASK submit→SUCCESS", 40.0, 120.0, 480.0, 0.0)),
        thresholds: vec![ThresholdOutcome {
            rule: "p99 <= 250 ms".into(),
            observed: format!("{p99} ms"),
            passed,
        }],
        reports: vec![format!("goose/{}.html", label.replace(' ', "-"))],
    }
}

fn seed_row(step: &str, qps: f64, p99_ms: f64, seed: Option<(f64, f64)>) -> SeedRow {
    SeedRow {
        step: step.into(),
        sut_args: vec![],
        ours: SeedFigures {
            qps,
            p99_ms,
            error_rate: 0.001,
        },
        seed: seed.map(|(qps, p99_ms)| SeedFigures {
            qps,
            p99_ms,
            error_rate: 0.021,
        }),
        qps_gain: 1.0,
        p99_gain: 1.0,
    }
}

fn point(offered: f64, p50: f64, p99: f64, within: bool) -> CurvePoint {
    CurvePoint {
        offered_rps: offered,
        achieved_rps: offered.min(520.0),
        p50_ms: p50,
        p99_ms: p99,
        error_rate: if within { 0.001 } else { 0.04 },
        tasks_per_s: offered / 10.0,
        task_p50_ms: Some(p50 * 3.0),
        task_p99_ms: Some(p99 * 3.0),
        backlog_at_end: Some(if within { 0.0 } else { 900.0 }),
        within,
    }
}

pub fn load() -> RunReport {
    let mut r = run("capacity-and-seed-table", "loadtests");
    let mut backlog = Series::new("outbox backlog", "s", "messages");
    for i in 0..12 {
        backlog.push(
            i as f64 * 10.0,
            if i < 8 { 0.0 } else { 300.0 - i as f64 * 20.0 },
        );
    }
    let mut rss = Series::new("reference RSS", "s", "MiB");
    let mut rows = Series::new("task rows", "s", "rows");
    for i in 0..24 {
        rss.push(i as f64 * 60.0, 80.0 + (i % 6) as f64);
        rows.push(i as f64 * 60.0, 1000.0 + (i % 6) as f64 * 200.0);
    }
    r.load = Some(LoadReport {
        profile: "capacity".into(),
        steps: vec![
            step("capacity @ 200 req/s", 200.0, 90.0, true),
            step("capacity @ 600 req/s", 600.0, 900.0, false),
        ],
        seed_table: vec![
            seed_row("baseline", 11_554.0, 23.3, Some((120.0, 480.0))),
            seed_row("+ Redis cache", 11_900.0, 20.1, None),
            seed_row("+ gzip", 11_400.0, 18.2, None),
            seed_row("+ async logging", 11_272.0, 16.9, Some((860.0, 68.0))),
        ],
        capacity: vec![CapacityCurve {
            label: "sqlite, 2 workers".into(),
            workers: 2,
            store: "sqlite".into(),
            slo_p99_ms: 250.0,
            max_error_rate: 0.01,
            points: vec![
                point(100.0, 8.0, 30.0, true),
                point(200.0, 9.0, 45.0, true),
                point(300.0, 12.0, 80.0, true),
                point(400.0, 20.0, 190.0, true),
                point(500.0, 60.0, 420.0, false),
                point(600.0, 150.0, 900.0, false),
            ],
            knee_rps: Some(400.0),
            stopped_because: "P99 over the SLO twice in a row".into(),
            backlog: vec![backlog],
            drain_s: Some(42.0),
            signals: vec![Signal {
                what: "503 unavailable".into(),
                at_offered_rps: 500.0,
            }],
        }],
        comparisons: vec![],
        gate: Some(Gate {
            baseline: "baseline.json".into(),
            candidate: "this run".into(),
            tolerance: Tolerance {
                relative: 0.5,
                error_rate_floor_pct: 0.5,
                p99_floor_ms: 5.0,
            },
            checks: vec![
                gate_check("throughput", 520.0, 515.0, 346.0, true),
                gate_check("p99 GET user (cached)", 12.0, 40.0, 18.0, false),
            ],
            passed: false,
        }),
        soak: Some(Soak {
            retention_s: 600.0,
            series: vec![rss, rows],
        }),
    });
    let mut v = Verdict::new("load-thresholds");
    v.anomaly("threshold", json!({"step": "capacity @ 600 req/s"}))
        .summary("1 of 2 thresholds broken");
    r.verdicts = vec![v];
    r.seal();
    r
}

fn gate_check(metric: &str, baseline: f64, candidate: f64, limit: f64, passed: bool) -> GateCheck {
    GateCheck {
        metric: metric.into(),
        baseline,
        candidate,
        limit,
        passed,
    }
}

fn cell(
    strategy: &str,
    experiment: &str,
    lost: u64,
    predicted: &str,
    as_predicted: bool,
) -> MatrixCell {
    MatrixCell {
        strategy: strategy.into(),
        experiment: experiment.into(),
        validity: if lost > 0 {
            Validity::Invalid
        } else {
            Validity::Valid
        },
        predicted: Some(predicted.into()),
        as_predicted: Some(as_predicted),
        anomalies: if lost > 0 {
            BTreeMap::from([("lost".to_string(), lost)])
        } else {
            BTreeMap::new()
        },
        recovery: Recovery {
            accepting_ms: Some(300.0),
            completing_ms: Some(2_500.0),
        },
        run: format!("{strategy}-{experiment}"),
    }
}

pub fn matrix() -> RunReport {
    let mut r = run("strategy-matrix", "chaos");
    let cells = vec![
        cell("robust", "worker-kill", 0, "valid", true),
        cell("robust", "broker-kill", 0, "valid", true),
        cell("ack-auto", "worker-kill", 11, "lost", true),
        cell("ack-auto", "broker-kill", 0, "lost", false),
        cell("dedupe-redis-setnx", "worker-kill", 3, "valid", false),
    ];
    r.matrix = Some(MatrixReport {
        strategies: vec![
            "robust".into(),
            "ack-auto".into(),
            "dedupe-redis-setnx".into(),
        ],
        experiments: vec!["worker-kill".into(), "broker-kill".into()],
        cells,
    });
    let mut v = Verdict::new("matrix-predictions");
    v.anomaly(
        "not_as_predicted",
        json!({"strategy": "dedupe-redis-setnx", "experiment": "worker-kill"}),
    )
    .summary("2 of 5 cells not as predicted");
    r.verdicts = vec![v];
    r.seal();
    r
}

/// A chaos run whose series are all empty.
pub fn quiet_chaos() -> RunReport {
    let mut r = chaos();
    r.name = "quiet-experiment".into();
    let c = r.chaos.as_mut().unwrap();
    for s in &mut c.series {
        s.points.clear();
    }
    r
}

/// `verify` merging the suites' runs, each in its own directory, with the claims judged.
pub fn verify() -> RunReport {
    let mut r = run("verify", "verify");
    r.runs = vec![
        in_dir(chaos(), "chaos/kill-worker"),
        in_dir(load(), "loadtests/capacity"),
        in_dir(matrix(), "chaos/matrix"),
        in_dir(quiet_chaos(), "chaos/quiet"),
    ];
    r.validity = Validity::all(r.runs.iter().map(|c| c.validity));
    r.claims = claims::judge(&r.runs);
    r
}

/// Every run of the tree, parents first.
pub fn all_runs(r: &RunReport) -> Vec<&RunReport> {
    let mut out = vec![r];
    for c in &r.runs {
        out.extend(all_runs(c));
    }
    out
}
