//! Running a property: proptest generates the cases, each case drives the live system and
//! returns the checkers' verdicts, and a case fails when any verdict is invalid.

use std::fmt::Debug;

use harness::{
    checker::{self, Checker},
    final_state::FinalState,
    history::History,
};
use proptest::{
    strategy::Strategy,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};
use reports::{RunReport, Validity, Verdict};
use scenarios::{report::PropertyRun, world::World};

/// Runs `case` over values of `strategy`; returns the outcome and what the cases found.
pub fn run_property<S>(
    name: &str,
    config: Config,
    strategy: &S,
    case: impl Fn(S::Value) -> Result<Vec<Verdict>, TestCaseError>,
) -> (Result<(), TestError<S::Value>>, PropertyRun)
where
    S: Strategy,
    S::Value: Debug,
{
    let run = PropertyRun::new(name);
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(strategy, |value| {
        let verdicts = case(value)?;
        run.case(&verdicts);
        let broken: Vec<String> = verdicts
            .iter()
            .filter(|v| v.validity == Validity::Invalid)
            .map(|v| {
                format!(
                    "{}: {} {:?}",
                    v.checker,
                    v.summary,
                    v.anomalies.first().map(|a| &a.examples)
                )
            })
            .collect();
        if broken.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(broken.join("; ")))
        }
    });
    (outcome, run)
}

/// Runs `checkers` over a case's history and final state, with the contract's verdict on the
/// answers the case got.
pub fn verdicts(
    world: &World,
    checkers: &[Box<dyn Checker>],
    history: &History,
    state: &FinalState,
) -> Vec<Verdict> {
    let mut all = checker::check_all(checkers, &history.ops(), state);
    all.push(world.conformance.since_last());
    all
}

/// Panics with the counterexample unless the property held, and unless its run decided: a
/// checker that could not judge a case (nothing to judge, a read that failed) is no pass.
pub fn assert_held<T: Debug>(outcome: Result<(), TestError<T>>, report: &RunReport) {
    if let Err(e) = outcome {
        panic!("property failed: {e}");
    }
    let undecided: Vec<String> = report
        .verdicts
        .iter()
        .filter(|v| v.validity != Validity::Valid)
        .map(|v| format!("{}: {}", v.checker, v.summary))
        .collect();
    assert!(
        undecided.is_empty(),
        "the property held but its run is {:?}: {}",
        report.validity,
        undecided.join("; ")
    );
}

/// Panics unless the property failed, printing the shrunk counterexample it found.
pub fn assert_found<T: Debug>(what: &str, outcome: Result<(), TestError<T>>) {
    match outcome {
        Err(TestError::Fail(reason, input)) => {
            eprintln!(
                "{what}: found, as expected.\n  minimal counterexample: {input:?}\n  why: {}",
                reason.message()
            );
        }
        Err(TestError::Abort(reason)) => panic!(
            "{what}: aborted ({}) instead of finding the weakness",
            reason.message()
        ),
        Ok(()) => panic!("{what}: no case failed; the checks did not find the known weakness"),
    }
}
