//! Every property writes a harness run directory (`suite: scenarios`): one verdict for the
//! property itself (with its counterexample when it failed) and the checkers' verdicts of its
//! cases, so the reports can include the scenarios beside load and chaos runs.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

use harness::run::RunDir;
use proptest::test_runner::TestError;
use reports::{RunReport, Validity, Verdict};
use serde_json::json;

/// Where scenario runs go: `HARNESS_RUNS_DIR`, else the workspace's `target/harness/runs`.
fn runs_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_RUNS_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("crate in a workspace");
            workspace.join("target")
        })
        .join("harness/runs")
}

/// Collects what one property's cases found.
pub struct PropertyRun {
    name: String,
    started: Instant,
    cases: AtomicU64,
    /// Per checker: the worst verdict seen across cases.
    worst: Mutex<BTreeMap<String, Verdict>>,
}

impl PropertyRun {
    pub fn new(name: &str) -> PropertyRun {
        PropertyRun {
            name: name.to_string(),
            started: Instant::now(),
            cases: AtomicU64::new(0),
            worst: Mutex::default(),
        }
    }

    /// Records one case's checker verdicts.
    pub fn case(&self, verdicts: &[Verdict]) {
        self.cases.fetch_add(1, Ordering::SeqCst);
        let mut worst = self.worst.lock().expect("lock");
        for v in verdicts {
            // Worse when combining with it changes the kept verdict: an undecided case
            // hides behind no valid one, an invalid behind nothing.
            let keep = worst
                .get(&v.checker)
                .is_none_or(|w| Validity::all([w.validity, v.validity]) != w.validity);
            if keep {
                worst.insert(v.checker.clone(), v.clone());
            }
        }
    }

    /// Counts a case that produced no checker verdicts.
    pub fn plain_case(&self) {
        self.cases.fetch_add(1, Ordering::SeqCst);
    }

    pub fn cases(&self) -> u64 {
        self.cases.load(Ordering::SeqCst)
    }

    /// Writes the run directory for a property expected to hold; the property's verdict is
    /// valid when it held.
    pub fn holds<T: Debug>(self, outcome: &Result<(), TestError<T>>) -> RunReport {
        self.holds_with(outcome, Vec::new())
    }

    /// [`PropertyRun::holds`], with verdicts of the whole run besides the cases' (e.g. the
    /// contract's coverage).
    pub fn holds_with<T: Debug>(
        self,
        outcome: &Result<(), TestError<T>>,
        extra: Vec<Verdict>,
    ) -> RunReport {
        let mut v = Verdict::new(&format!("property:{}", self.name));
        if let Err(e) = outcome {
            v.anomaly("counterexample", counterexample(e));
        }
        for e in &extra {
            self.case_verdicts_into_worst(e);
        }
        self.finish(v, "held", true)
    }

    fn case_verdicts_into_worst(&self, v: &Verdict) {
        self.worst
            .lock()
            .expect("lock")
            .insert(v.checker.clone(), v.clone());
    }

    /// Writes the run directory for a property run against a naive variant; the verdict is
    /// valid when the property failed, i.e. when the weakness was found.
    pub fn finds_weakness<T: Debug>(self, outcome: &Result<(), TestError<T>>) -> RunReport {
        let mut v = Verdict::new(&format!("weakness-found:{}", self.name));
        match outcome {
            Err(e @ TestError::Fail(..)) => {
                // The checkers' findings are the evidence, not failures of this run.
                let mut example = counterexample(e);
                let worst = self.worst.lock().expect("lock");
                let caught: Vec<&String> = worst
                    .values()
                    .filter(|c| c.validity == Validity::Invalid)
                    .map(|c| &c.summary)
                    .collect();
                example["caught_by"] = json!(caught);
                drop(worst);
                v.measure("found", 1.0);
                v.anomalies.push(reports::Anomaly {
                    kind: "counterexample".into(),
                    count: 1,
                    examples: vec![example],
                });
            }
            Err(e @ TestError::Abort(_)) => {
                v.anomaly("aborted", counterexample(e));
            }
            Ok(()) => {
                v.anomaly("not_found", json!({"cases": self.cases()}));
            }
        }
        self.finish(v, "found the weakness", false)
    }

    fn finish(self, mut property: Verdict, success: &str, with_cases: bool) -> RunReport {
        let cases = self.cases();
        property
            .count("cases", cases)
            .measure("seconds", self.started.elapsed().as_secs_f64());
        let ok = property.validity == Validity::Valid;
        property.summary(format!(
            "{cases} cases; {}",
            if ok {
                success.to_string()
            } else {
                format!("did not: {}", property.checker)
            }
        ));
        let mut verdicts = vec![property];
        if with_cases {
            verdicts.extend(self.worst.into_inner().expect("lock").into_values());
        }
        let dir = RunDir::create(Some(&runs_base()), &format!("scenarios-{}", self.name))
            .expect("run directory");
        let params = BTreeMap::from([("cases".to_string(), json!(cases))]);
        let sut = BTreeMap::from([("kind".to_string(), "reference".to_string())]);
        let mut report = dir.report("scenarios", sut, params, verdicts);
        // The directory is made when the property ends; its cases ran for this long.
        report.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        dir.write_report(&mut report).expect("verdict written");
        eprintln!(
            "property {}: {:?}, verdict in {}",
            self.name,
            report.validity,
            dir.path().display()
        );
        report
    }
}

fn counterexample<T: Debug>(e: &TestError<T>) -> serde_json::Value {
    match e {
        TestError::Fail(reason, input) => {
            json!({"reason": reason.message(), "minimal_input": format!("{input:?}")})
        }
        TestError::Abort(reason) => json!({"aborted": reason.message()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(validity: Validity) -> Verdict {
        let mut v = Verdict::new("ledger");
        match validity {
            Validity::Valid => {}
            Validity::Unknown => {
                v.undecided();
            }
            Validity::Invalid => {
                v.anomaly("lost", json!({}));
            }
        }
        v
    }

    fn worst_after(cases: &[Validity]) -> Validity {
        let run = PropertyRun::new("p");
        for c in cases {
            run.case(&[verdict(*c)]);
        }
        let worst = run.worst.lock().unwrap();
        worst["ledger"].validity
    }

    #[test]
    fn the_worst_case_of_each_checker_is_kept() {
        use Validity::*;
        assert_eq!(worst_after(&[Valid, Unknown, Valid]), Unknown);
        assert_eq!(worst_after(&[Unknown, Invalid, Unknown]), Invalid);
        assert_eq!(worst_after(&[Invalid, Unknown]), Invalid);
        assert_eq!(worst_after(&[Valid, Valid]), Valid);
    }
}
