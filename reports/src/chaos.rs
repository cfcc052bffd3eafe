//! What a chaos experiment adds to its run: the hypothesis and whether it held, the
//! steady-state probes before and after the faults, the fault windows, the time to recover
//! after each heal, and the series the reports chart with the fault windows shaded.
//! A matrix run (strategy × fault) adds its cells.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Series, Validity};

/// One chaos experiment's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChaosReport {
    pub title: String,
    /// What the experiment expects of the system, in a sentence.
    pub hypothesis: String,
    /// Held when every probe held in both phases and every checker found nothing.
    pub hypothesis_held: Option<bool>,
    pub steady_state: Vec<ProbeResult>,
    pub faults: Vec<FaultWindow>,
    pub recovery: Recovery,
    /// Accepted and failed submissions per second, P99 per second, and the system's own
    /// signals (outbox backlog, queue depth, broker connection), on the run's clock (seconds).
    pub series: Vec<Series>,
}

/// Time to recover after the heals (the longest over the run's heals; each heal's is on its
/// fault window), in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    /// To the first submission accepted after a heal.
    pub accepting_ms: Option<f64>,
    /// To the first task completed (a new callback) after a heal: an outbox API accepts while
    /// nothing gets done, so this is the one users feel.
    pub completing_ms: Option<f64>,
}

/// A probe of the steady-state hypothesis in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeResult {
    /// `before` the faults or `after` they healed.
    pub phase: String,
    /// e.g. `error-rate`, `p99`, `throughput`, `queue-depth`, `ready`.
    pub probe: String,
    /// What was observed; absent when the phase had nothing to observe.
    pub observed: Option<f64>,
    /// The tolerance, e.g. `<= 0.05`.
    pub tolerance: String,
    pub held: Option<bool>,
}

/// When a fault was in force, in seconds since the run's workload began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultWindow {
    /// The fault's kind, e.g. `link-down`.
    pub fault: String,
    /// What it hit, e.g. `api-broker`, `worker-0`, `broker`.
    pub target: String,
    pub start_s: f64,
    /// Absent when the fault was never healed.
    pub end_s: Option<f64>,
    /// Whether the nemesis could inject it.
    pub injected: bool,
    /// From its heal to the first submission accepted after it (before the next fault);
    /// absent when none was (v5).
    #[serde(default)]
    pub accepting_ms: Option<f64>,
    /// From its heal to the first task completed after it (a new callback, before the next
    /// fault); absent when none was (v5).
    #[serde(default)]
    pub completing_ms: Option<f64>,
}

/// The strategy × fault matrix: each cell one experiment run against one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatrixReport {
    pub strategies: Vec<String>,
    pub experiments: Vec<String>,
    pub cells: Vec<MatrixCell>,
}

/// One experiment against one strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MatrixCell {
    pub strategy: String,
    pub experiment: String,
    pub validity: Validity,
    /// What was predicted before the run: `valid`, or the anomaly expected (`lost`, ...).
    pub predicted: Option<String>,
    /// Whether the outcome matched the prediction (none made: absent).
    pub as_predicted: Option<bool>,
    /// Anomalies by kind, summed over the checkers.
    pub anomalies: std::collections::BTreeMap<String, u64>,
    pub recovery: Recovery,
    /// The cell's run directory, relative to the matrix's.
    pub run: String,
}
