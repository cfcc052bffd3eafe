//! The `loadtests` binary end to end against the reference on the real broker: thresholds
//! fail a run that breaks them, the regression gate passes a run's own baseline and fails a
//! worse configuration (stored and side by side), and a target off this machine is refused.
//!
//! Runs are short (a few seconds of load each) and read-only where the gate judges them, so
//! their figures are steady enough on a shared machine; each run starts its own reference.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, MutexGuard},
};

use reports::{RunReport, Validity};

/// Load runs one at a time: a run beside another would measure the other's load too, and the
/// gate compares runs made at different moments.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `loadtests <args>` with runs under `out`; the shared broker unless AMQP_URL says otherwise.
fn loadtests(out: &Path, args: &[&str]) -> Output {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let output = Command::new(env!("CARGO_BIN_EXE_loadtests"))
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--no-print-metrics")
        .env("AMQP_URL", url)
        .output()
        .expect("loadtests runs");
    eprintln!(
        "loadtests {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn latest(out: &Path) -> RunReport {
    RunReport::read_json(&out.join("latest/verdict.json")).expect("verdict.json")
}

fn verdict<'a>(report: &'a RunReport, checker: &str) -> &'a reports::Verdict {
    report
        .verdicts
        .iter()
        .find(|v| v.checker.starts_with(checker))
        .unwrap_or_else(|| panic!("no verdict {checker}: {:#?}", report.verdicts))
}

/// A read-only workload: its figures vary little between runs.
const READS: [&str; 4] = ["--mix", "cached=1", "--run-time", "4s"];

#[test]
fn a_run_that_breaks_its_error_rate_threshold_fails() {
    let _serial = serial();
    let out = tempfile::tempdir().unwrap();
    // Fifty requests a second allowed: nearly every request of the run is answered 429.
    let run = loadtests(
        out.path(),
        &[&["run", "--sut-args=--rate-limit 50"][..], &READS].concat(),
    );
    assert_eq!(run.status.code(), Some(1), "a failed threshold exits 1");
    let report = latest(out.path());
    assert_eq!(report.validity, Validity::Invalid);
    let v = verdict(&report, "thresholds:");
    assert_eq!(v.anomaly_count("threshold_failed"), 1, "{v:#?}");
    assert!(v.anomalies[0].examples[0]["rule"]
        .as_str()
        .unwrap()
        .starts_with("error-rate<"));
    let step = &report.load.as_ref().unwrap().steps[0];
    assert!(step.aggregate.statuses.get("429").copied().unwrap_or(0) > 0);
    let goose = out.path().join("latest").join(&step.reports[0]);
    assert!(goose.is_file(), "goose's report is in the run directory");
}

fn gate_run(out: &Path, baseline: &Path, extra: &[&str]) -> (Output, RunReport) {
    let baseline = baseline.to_str().unwrap();
    let args = [&["run"][..], &READS, &["--baseline", baseline], extra].concat();
    let output = loadtests(out, &args);
    (output, latest(out))
}

#[test]
fn the_gate_passes_a_runs_own_baseline_three_times_and_fails_a_worse_switch() {
    let _serial = serial();
    let out = tempfile::tempdir().unwrap();
    let baseline: PathBuf = out.path().join("baseline.json");
    let (made, _) = gate_run(out.path(), &baseline, &["--update-baseline"]);
    assert_eq!(made.status.code(), Some(0));
    assert!(baseline.is_file());
    for attempt in 1..=3 {
        let (again, report) = gate_run(out.path(), &baseline, &[]);
        let gate = verdict(&report, "regression-gate");
        assert_eq!(
            gate.validity,
            Validity::Valid,
            "attempt {attempt}: {gate:#?}"
        );
        assert_eq!(again.status.code(), Some(0), "attempt {attempt}");
    }
    // The same set-up with a rate limit far below its load: errors jump, throughput falls.
    let (worse, report) = gate_run(out.path(), &baseline, &["--sut-args=--rate-limit 50"]);
    assert_eq!(worse.status.code(), Some(1));
    let gate = verdict(&report, "regression-gate");
    assert_eq!(gate.validity, Validity::Invalid, "{gate:#?}");
    assert!(gate.anomaly_count("regression") >= 1);
}

#[test]
fn the_side_by_side_gate_catches_a_worse_candidate() {
    let _serial = serial();
    let out = tempfile::tempdir().unwrap();
    let args = [&["gate"][..], &READS, &["--candidate-args=--rate-limit 50"]].concat();
    let run = loadtests(out.path(), &args);
    assert_eq!(run.status.code(), Some(1));
    let report = latest(out.path());
    let load = report.load.as_ref().unwrap();
    assert_eq!(load.steps.len(), 2, "baseline and candidate ran");
    let gate = load.gate.as_ref().unwrap();
    assert!(!gate.passed);
    assert!(
        gate.candidate.contains("--rate-limit 50"),
        "{}",
        gate.candidate
    );
}

#[test]
fn a_target_off_this_machine_needs_an_explicit_opt_in() {
    let out = tempfile::tempdir().unwrap();
    let run = loadtests(out.path(), &["run", "--host", "http://192.0.2.10:8080"]);
    assert_eq!(run.status.code(), Some(3));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}
