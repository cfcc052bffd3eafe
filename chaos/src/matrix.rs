//! The strategy × fault matrix: the same experiments against the robust defaults and against
//! each naive strategy of the reference, with the deviation each naive strategy is predicted to
//! show written down before the run (`chaos/matrix.json`). A cell is as predicted when the
//! robust strategy comes out valid, and a naive one shows its predicted anomaly (or, where no
//! deviation is predicted, comes out valid too).

use std::{collections::BTreeMap, path::Path};

use harness::experiment::Experiment;
use reports::{chaos::MatrixCell, RunReport, Validity};
use serde::{Deserialize, Serialize};

/// The strategy every other is compared with.
pub const ROBUST: &str = "robust";

/// A strategy: flags given to every process of the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub name: String,
    pub args: Vec<String>,
    /// Needs a Redis (`--dedupe redis-setnx`).
    #[serde(default)]
    pub redis: bool,
    pub why: String,
}

/// What a naive strategy is expected to do under one experiment; no checker means no
/// deviation is expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    pub strategy: String,
    pub experiment: String,
    pub checker: Option<String>,
    pub anomaly: Option<String>,
    pub why: String,
}

impl Prediction {
    /// How the report writes it: `valid`, or `checker: anomaly`.
    pub fn label(&self) -> String {
        match (&self.checker, &self.anomaly) {
            (Some(c), Some(a)) => format!("{c}: {a}"),
            _ => "valid".into(),
        }
    }
}

/// `chaos/matrix.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub strategies: Vec<Strategy>,
    pub predictions: Vec<Prediction>,
}

/// One experiment to run against one strategy.
#[derive(Debug, Clone)]
pub struct Cell {
    pub strategy: Strategy,
    pub experiment: Experiment,
    pub prediction: Option<Prediction>,
}

impl Cell {
    /// `experiment@strategy`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.experiment.name, self.strategy.name)
    }
}

impl Matrix {
    /// Reads and checks the file: strategies and experiments it names must exist.
    pub fn load(path: &Path, experiments: &[String]) -> anyhow::Result<Matrix> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let matrix: Matrix =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for p in &matrix.predictions {
            if matrix.strategy(&p.strategy).is_none() {
                anyhow::bail!(
                    "{}: prediction for unknown strategy `{}`",
                    path.display(),
                    p.strategy
                );
            }
            if !experiments.contains(&p.experiment) {
                anyhow::bail!(
                    "{}: prediction for unknown experiment `{}`",
                    path.display(),
                    p.experiment
                );
            }
        }
        if matrix.strategy(ROBUST).is_none() {
            anyhow::bail!("{}: no `{ROBUST}` strategy", path.display());
        }
        Ok(matrix)
    }

    pub fn strategy(&self, name: &str) -> Option<&Strategy> {
        self.strategies.iter().find(|s| s.name == name)
    }

    /// The robust column over `experiments`, then every prediction about them.
    pub fn predicted_cells(&self, experiments: &[&Experiment]) -> Vec<Cell> {
        let robust = self.strategy(ROBUST).expect("checked at load");
        let mut cells: Vec<Cell> = experiments.iter().map(|e| cell(robust, e, None)).collect();
        for p in &self.predictions {
            if let Some(e) = experiments.iter().find(|e| e.name == p.experiment) {
                let s = self.strategy(&p.strategy).expect("checked at load");
                cells.push(cell(s, e, Some(p.clone())));
            }
        }
        cells
    }

    /// Every strategy against every experiment (predictions where there are some).
    pub fn all_cells(&self, experiments: &[&Experiment]) -> Vec<Cell> {
        let prediction = |s: &Strategy, e: &Experiment| {
            self.predictions
                .iter()
                .find(|p| p.strategy == s.name && p.experiment == e.name)
                .cloned()
        };
        self.strategies
            .iter()
            .flat_map(|s| {
                experiments
                    .iter()
                    .map(move |e| cell(s, e, prediction(s, e)))
            })
            .collect()
    }
}

fn cell(strategy: &Strategy, experiment: &Experiment, prediction: Option<Prediction>) -> Cell {
    Cell {
        strategy: strategy.clone(),
        experiment: apply(strategy, experiment),
        prediction,
    }
}

/// The experiment with the strategy's flags: each replaces the same flag if the experiment set
/// it (the reference refuses a flag given twice).
pub fn apply(strategy: &Strategy, experiment: &Experiment) -> Experiment {
    let mut e = experiment.clone();
    for pair in strategy.args.chunks(2) {
        let args = &mut e.sut.args;
        match args.iter().position(|a| a == &pair[0]) {
            Some(i) => {
                let end = (i + pair.len()).min(args.len());
                args.splice(i..end, pair.iter().cloned());
            }
            None => args.extend(pair.iter().cloned()),
        }
    }
    e.sut.redis |= strategy.redis;
    e
}

/// Anomalies by kind over every verdict of a run.
pub fn anomalies(report: &RunReport) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for v in &report.verdicts {
        for a in &v.anomalies {
            *out.entry(format!("{}: {}", v.checker, a.kind)).or_default() += a.count;
        }
    }
    out
}

/// Whether a run came out as predicted: valid where nothing was predicted, else showing the
/// predicted anomaly; `None` when the run could not decide and the prediction did not show.
pub fn as_predicted(prediction: Option<&Prediction>, report: &RunReport) -> Option<bool> {
    let shown = match prediction.and_then(|p| Some((p.checker.as_ref()?, p.anomaly.as_ref()?))) {
        None => report.validity == Validity::Valid,
        Some((checker, anomaly)) => report
            .verdicts
            .iter()
            .any(|v| &v.checker == checker && v.anomaly_count(anomaly) > 0),
    };
    match (shown, report.validity) {
        (true, _) => Some(true),
        (false, Validity::Unknown) => None,
        (false, _) => Some(false),
    }
}

/// The matrix cell of a finished run.
pub fn judge(cell: &Cell, report: &RunReport, run: &str) -> MatrixCell {
    MatrixCell {
        strategy: cell.strategy.name.clone(),
        experiment: cell.experiment.name.clone(),
        validity: report.validity,
        predicted: cell.prediction.as_ref().map(Prediction::label),
        as_predicted: as_predicted(cell.prediction.as_ref(), report),
        anomalies: anomalies(report),
        recovery: report
            .chaos
            .as_ref()
            .map(|c| c.recovery.clone())
            .unwrap_or_default(),
        run: run.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Matrix {
        let catalogue =
            crate::catalogue::Catalogue::load(&crate::catalogue::default_dir()).unwrap();
        let names: Vec<String> = catalogue.entries.iter().map(|e| e.name.clone()).collect();
        Matrix::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("matrix.json"),
            &names,
        )
        .unwrap()
    }

    #[test]
    fn the_shipped_matrix_predicts_something_for_every_naive_strategy() {
        let m = shipped();
        for s in m.strategies.iter().filter(|s| s.name != ROBUST) {
            assert!(
                m.predictions.iter().any(|p| p.strategy == s.name),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn a_strategy_replaces_a_flag_the_experiment_set() {
        let s = Strategy {
            name: "cache-off".into(),
            args: vec!["--cache".into(), "off".into()],
            redis: false,
            why: String::new(),
        };
        let mut e = Experiment::default();
        e.sut.args = vec!["--cache".into(), "redis".into(), "--x".into()];
        assert_eq!(apply(&s, &e).sut.args, ["--cache", "off", "--x"]);
        e.sut.args.clear();
        assert_eq!(apply(&s, &e).sut.args, ["--cache", "off"]);
    }

    #[test]
    fn a_prediction_is_met_only_by_its_anomaly() {
        let mut report = RunReport::read_json(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verdict.json"),
        )
        .unwrap();
        let lost = Prediction {
            strategy: "ack-auto".into(),
            experiment: "worker-kill".into(),
            checker: Some("task-ledger".into()),
            anomaly: Some("lost".into()),
            why: String::new(),
        };
        assert_eq!(as_predicted(Some(&lost), &report), Some(false));
        assert_eq!(as_predicted(None, &report), Some(true));
        let ledger = report
            .verdicts
            .iter_mut()
            .find(|v| v.checker == "task-ledger")
            .unwrap();
        ledger.anomaly("lost", serde_json::json!({"task_id": "t"}));
        report.seal();
        assert_eq!(as_predicted(Some(&lost), &report), Some(true));
        assert_eq!(as_predicted(None, &report), Some(false));
        report.validity = Validity::Unknown;
        assert_eq!(as_predicted(None, &report), None);
    }
}
