//! A chaos run: cells (an experiment against a strategy) one after another, each in its own
//! run directory inside the suite's, each with the broker it asks for (a private node for broker
//! faults, a cluster for member loss), then one report over all of them: a verdict per cell
//! (as predicted or not), the matrix, and the recovery table.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use harness::{
    experiment,
    infra::{Broker, BrokerChoice},
    run::RunDir,
};
use reports::{
    chaos::{MatrixCell, MatrixReport},
    RunReport, Validity, Verdict,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::matrix::{self, Cell};

/// What every cell of a run shares.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the suite's run directory goes.
    pub out: Option<PathBuf>,
    /// Replaces every experiment's seed.
    pub seed: Option<u64>,
    /// Replaces every experiment's broker choice.
    pub broker: Option<BrokerChoice>,
}

/// Runs `cells` in order into a run directory named `name`; stops early when `cancel` fires
/// (the running cell rolls back and stops everything it started).
pub async fn run(
    name: &str,
    cells: Vec<Cell>,
    options: &Options,
    cancel: CancellationToken,
) -> anyhow::Result<(RunReport, RunDir)> {
    let dir = RunDir::create(options.out.as_deref(), name)?;
    eprintln!(
        "chaos: {} cells, run directory {}",
        cells.len(),
        dir.path().display()
    );
    let mut judged = Vec::new();
    let mut runs = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let began = Instant::now();
        eprint!(
            "[{}/{}] {} (seed {}) ... ",
            i + 1,
            cells.len(),
            cell.label(),
            seed(cell, options)
        );
        let outcome = run_cell(cell, options, &dir, &cancel).await;
        let judged_cell = match outcome {
            Ok((mut report, run)) => {
                let judged = matrix::judge(cell, &report, &run);
                report.parameters.insert("dir".into(), json!(run));
                runs.push(report);
                judged
            }
            Err(e) => unrunnable(cell, &e),
        };
        eprintln!(
            "{} in {:.0} s",
            describe(&judged_cell),
            began.elapsed().as_secs_f64()
        );
        judged.push(judged_cell);
    }
    let mut report = dir.report(
        "chaos",
        sut(),
        parameters(&cells, options),
        verdicts(&judged, &cells),
    );
    if cancel.is_cancelled() {
        let mut v = Verdict::new("interrupted");
        v.undecided()
            .summary("the run was interrupted; later cells did not run");
        report.verdicts.push(v);
    }
    std::fs::write(dir.file("recovery.md"), crate::recovery::table(&judged))?;
    report.matrix = Some(matrix_report(judged));
    // The cells' own reports, so that one verdict.json (and its renderings) tells the whole run.
    report.runs = runs;
    dir.write_report(&mut report)?;
    Ok((report, dir))
}

fn seed(cell: &Cell, options: &Options) -> u64 {
    options.seed.unwrap_or(cell.experiment.seed)
}

async fn run_cell(
    cell: &Cell,
    options: &Options,
    suite: &RunDir,
    cancel: &CancellationToken,
) -> anyhow::Result<(RunReport, String)> {
    let mut exp = cell.experiment.clone();
    exp.seed = seed(cell, options);
    exp.name = cell.label();
    let child = RunDir::create(Some(suite.path()), &exp.name)?;
    let choice = options.broker.unwrap_or(exp.broker);
    let broker = Broker::provision(choice, &child.file("broker"), &exp.broker_config).await?;
    let report = experiment::execute_until(&exp, &broker, &child, cancel.cancelled()).await?;
    let rel = child
        .path()
        .strip_prefix(suite.path())
        .unwrap_or(child.path())
        .display()
        .to_string();
    Ok((report, rel))
}

/// A cell that could not run (no broker, a process that would not start): undecided.
fn unrunnable(cell: &Cell, error: &anyhow::Error) -> MatrixCell {
    tracing::error!(cell = %cell.label(), error = %format!("{error:#}"), "cell did not run");
    MatrixCell {
        strategy: cell.strategy.name.clone(),
        experiment: cell.experiment.name.clone(),
        validity: Validity::Unknown,
        predicted: cell.prediction.as_ref().map(matrix::Prediction::label),
        as_predicted: None,
        anomalies: BTreeMap::from([(format!("error: {error:#}"), 1)]),
        recovery: Default::default(),
        run: String::new(),
    }
}

fn describe(c: &MatrixCell) -> String {
    let verdict = format!("{:?}", c.validity).to_lowercase();
    let anomalies: Vec<String> = c
        .anomalies
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect();
    let expected = match c.as_predicted {
        Some(true) => "as predicted",
        Some(false) => "NOT AS PREDICTED",
        None => "not run",
    };
    format!("{verdict} [{}] {expected}", anomalies.join(", "))
}

fn sut() -> BTreeMap<String, String> {
    BTreeMap::from([("kind".to_string(), "reference".to_string())])
}

fn parameters(cells: &[Cell], options: &Options) -> BTreeMap<String, serde_json::Value> {
    let labels: Vec<String> = cells.iter().map(Cell::label).collect();
    BTreeMap::from([
        ("seed".to_string(), json!(options.seed)),
        ("cells".to_string(), json!(labels)),
    ])
}

/// A verdict per cell: valid when it came out as predicted.
fn verdicts(judged: &[MatrixCell], cells: &[Cell]) -> Vec<Verdict> {
    judged
        .iter()
        .zip(cells)
        .map(|(c, cell)| {
            let mut v = Verdict::new(&cell.label());
            for (kind, n) in &c.anomalies {
                v.count(kind, *n);
            }
            let why = cell.prediction.as_ref().map_or("", |p| p.why.as_str());
            match c.as_predicted {
                Some(true) => v.summary(format!("{} as predicted {why}", describe_validity(c))),
                Some(false) => v
                    .anomaly(
                        "not_as_predicted",
                        json!({"predicted": c.predicted, "run": c.run}),
                    )
                    .summary(format!(
                        "{}; predicted {}",
                        describe(c),
                        c.predicted.clone().unwrap_or("valid".into())
                    )),
                None => v.undecided().summary(describe(c)),
            };
            v
        })
        .collect()
}

fn describe_validity(c: &MatrixCell) -> String {
    format!("{:?}", c.validity).to_lowercase()
}

fn matrix_report(cells: Vec<MatrixCell>) -> MatrixReport {
    let mut strategies: Vec<String> = Vec::new();
    let mut experiments: Vec<String> = Vec::new();
    for c in &cells {
        if !strategies.contains(&c.strategy) {
            strategies.push(c.strategy.clone());
        }
        if !experiments.contains(&c.experiment) {
            experiments.push(c.experiment.clone());
        }
    }
    MatrixReport {
        strategies,
        experiments,
        cells,
    }
}
