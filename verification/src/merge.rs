//! One report from the stages: each suite's run reports read back from their directories, a
//! verdict per stage (its runs and its exit status together, so a suite that crashed before
//! writing a report still fails the verification), and the seed's claims judged by them all.

use std::path::Path;

use reports::{claims, RunReport, Validity, Verdict};
use serde_json::json;

use crate::stage::{describe, tail, Exit, Outcome};

/// The run reports under `run/<base>` (one per run directory; the `latest` link skipped), each
/// with its directory, relative to `run`, in `parameters.dir`.
pub fn collect(run: &Path, base: &str) -> Vec<RunReport> {
    let Ok(entries) = std::fs::read_dir(run.join(base)) else {
        return Vec::new();
    };
    let mut dirs: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .filter_map(|name| {
            let rel = format!("{base}/{name}");
            let mut report = RunReport::read_json(&run.join(&rel).join("verdict.json")).ok()?;
            report.parameters.insert("dir".into(), json!(rel));
            Some(report)
        })
        .collect()
}

/// The verdict of one stage, `None` when it was skipped. `expects_reports`: a suite stage must
/// leave at least one run report; without one it decided nothing.
pub fn stage_verdict(
    outcome: &Outcome,
    runs: &[RunReport],
    expects_reports: bool,
    run: &Path,
) -> Option<Verdict> {
    let code = match &outcome.exit {
        Exit::Skipped(_) => return None,
        Exit::Status(code) => Some(*code),
        Exit::Abnormal(_) => None,
    };
    let mut v = Verdict::new(outcome.name);
    v.measure("seconds", outcome.elapsed.as_secs_f64())
        .count("runs", runs.len() as u64);
    // The experiments themselves decide, not the chaos suite's "as predicted": a verification
    // asks whether this system, as configured, lost anything.
    let leaves = leaves(runs);
    let children = Validity::all(leaves.iter().map(|r| r.validity));
    let failed = code != Some(0);
    if failed || children == Validity::Invalid {
        v.anomaly(
            "stage_failed",
            json!({"exit": describe(&outcome.exit), "log": outcome.log,
                   "tail": tail(run, outcome, 15)}),
        );
        if code == Some(2) && children != Validity::Invalid {
            v.validity = Validity::Unknown;
        }
    } else if children == Validity::Unknown || (expects_reports && runs.is_empty()) {
        v.undecided();
    }
    let invalid = leaves
        .iter()
        .filter(|r| r.validity == Validity::Invalid)
        .count();
    v.summary(format!(
        "{} in {:.0} s; {} runs, {invalid} invalid; output in {}",
        describe(&outcome.exit),
        outcome.elapsed.as_secs_f64(),
        leaves.len(),
        outcome.log.display()
    ));
    Some(v)
}

/// The runs that ran something: each run without nested runs (a chaos suite's cells).
fn leaves(runs: &[RunReport]) -> Vec<&RunReport> {
    let mut out = Vec::new();
    for r in runs {
        if r.runs.is_empty() {
            out.push(r);
        } else {
            out.extend(leaves(&r.runs));
        }
    }
    out
}

/// The verification's report: the stages' verdicts, their runs, and the claims they judge
/// together with `evidence` (earlier runs, which judge claims but are not part of the verdict).
pub fn merge(mut report: RunReport, runs: Vec<RunReport>, evidence: &[RunReport]) -> RunReport {
    let mut judged = runs.clone();
    judged.extend_from_slice(evidence);
    report.claims = claims::judge(&judged);
    report.runs = runs;
    report.seal();
    report
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;

    fn outcome(exit: Exit) -> Outcome {
        Outcome {
            name: "load",
            exit,
            elapsed: Duration::from_secs(3),
            log: PathBuf::from("logs/load.log"),
        }
    }

    fn child(validity: Validity) -> RunReport {
        let mut v = Verdict::new("task-ledger");
        v.validity = validity;
        let mut report = RunReport::new("child", "loadtests");
        report.verdicts.push(v);
        report.seal();
        report
    }

    /// Where the stages' logs would be: none exist, so a failure's tail is empty.
    fn run_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn a_stage_passes_only_with_exit_zero_and_valid_runs() {
        let tmp = run_dir();
        let dir = tmp.path();
        let ok = stage_verdict(
            &outcome(Exit::Status(0)),
            &[child(Validity::Valid)],
            true,
            dir,
        )
        .unwrap();
        assert_eq!(ok.validity, Validity::Valid);
        let crashed = stage_verdict(
            &outcome(Exit::Status(101)),
            &[child(Validity::Valid)],
            true,
            dir,
        )
        .unwrap();
        assert_eq!(crashed.validity, Validity::Invalid);
        let silent = stage_verdict(&outcome(Exit::Status(0)), &[], true, dir).unwrap();
        assert_eq!(
            silent.validity,
            Validity::Unknown,
            "no report decides nothing"
        );
        let bad_run = stage_verdict(
            &outcome(Exit::Status(2)),
            &[child(Validity::Invalid)],
            true,
            dir,
        )
        .unwrap();
        assert_eq!(bad_run.validity, Validity::Invalid);
        assert!(stage_verdict(&outcome(Exit::Skipped("x".into())), &[], true, dir).is_none());
    }

    #[test]
    fn a_cell_that_lost_tasks_fails_the_stage_even_when_the_suite_predicted_it() {
        let tmp = run_dir();
        let mut suite = child(Validity::Valid);
        suite.runs.push(child(Validity::Invalid));
        let v = stage_verdict(&outcome(Exit::Status(0)), &[suite], true, tmp.path()).unwrap();
        assert_eq!(v.validity, Validity::Invalid);
    }

    #[test]
    fn evidence_judges_claims_without_touching_the_verdict() {
        let shell = child(Validity::Valid);
        let mut earlier = child(Validity::Invalid);
        earlier.matrix = Some(reports::MatrixReport {
            strategies: vec!["robust".into()],
            experiments: vec!["worker-kill".into()],
            cells: vec![reports::chaos::MatrixCell {
                strategy: "robust".into(),
                experiment: "worker-kill".into(),
                validity: Validity::Valid,
                predicted: None,
                as_predicted: None,
                anomalies: Default::default(),
                recovery: Default::default(),
                run: "cell".into(),
            }],
        });
        let merged = merge(shell, vec![], &[earlier]);
        assert_eq!(merged.validity, Validity::Valid);
        assert!(
            merged.runs.is_empty(),
            "evidence is not one of this run's runs"
        );
        let ack = merged
            .claims
            .iter()
            .find(|c| c.id == "manual-ack-loses-nothing")
            .unwrap();
        assert_eq!(ack.verdict, reports::ClaimVerdict::Confirmed);
    }

    #[test]
    fn collect_reads_each_run_directory_once_and_records_where_it_is() {
        let tmp = run_dir();
        let run = tmp.path();
        let base = run.join("load");
        for name in ["a", "b"] {
            let dir = harness::run::RunDir::create(Some(&base), name).unwrap();
            dir.finish("loadtests", Default::default(), Default::default(), vec![])
                .unwrap();
        }
        let runs = collect(run, "load");
        assert_eq!(runs.len(), 2, "the latest link is not a second run");
        assert!(runs[0].parameters["dir"]
            .as_str()
            .unwrap()
            .starts_with("load/"));
    }
}
