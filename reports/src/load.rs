//! What a load run measured (suite `loadtests`): each load step's figures per request, the
//! seed's before/after table, capacity curves with their knee, comparator ratios and the
//! regression gate. The renderings chart these; `verdict.json` keeps them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Series;

/// How the load was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Loop {
    /// Each user sends its next request when the last one answered: a stalled server is
    /// offered less load, so its stall is under-counted (coordinated omission).
    Closed,
    /// Requests are released at a fixed rate, with goose's coordinated-omission mitigation
    /// backfilling what a stall kept from being sent.
    FixedRate,
}

/// Latency and outcome of one kind of request (a row of goose's report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestStats {
    /// As goose's report names it, e.g. `GET user (cached)` or `TASK submit→SUCCESS`.
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    /// Failures over requests, as a fraction (0.02 is 2 %).
    pub error_rate: f64,
    /// Requests per second over the step.
    pub rps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses by HTTP status (`"202"`, `"503"`); custom rows have none.
    #[serde(default)]
    pub statuses: BTreeMap<String, u64>,
}

/// A `--threshold` rule and what the step observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ThresholdOutcome {
    pub rule: String,
    pub observed: String,
    pub passed: bool,
}

/// One goose run against one configuration of the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadStep {
    /// E.g. `seed-table: + Redis cache` or `capacity (2 workers) @ 400 req/s`.
    pub label: String,
    /// Flags the reference ran with (empty for an external system).
    #[serde(default)]
    pub sut_args: Vec<String>,
    #[serde(rename = "loop")]
    pub loop_kind: Loop,
    /// Requests per second released (fixed rate); `None` for closed loop.
    pub offered_rps: Option<f64>,
    pub users: u64,
    pub duration_s: f64,
    /// Every HTTP request together (the task rows excluded).
    pub aggregate: RequestStats,
    /// Each request kind, HTTP and task rows.
    pub requests: Vec<RequestStats>,
    /// Submit → SUCCESS of the end-to-end tasks, when the step ran them.
    pub tasks: Option<RequestStats>,
    #[serde(default)]
    pub thresholds: Vec<ThresholdOutcome>,
    /// goose's reports of this step, relative to the run directory.
    #[serde(default)]
    pub reports: Vec<String>,
}

/// QPS, P99 and error rate: the seed's table columns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeedFigures {
    pub qps: f64,
    pub p99_ms: f64,
    /// As a fraction (0.021 is 2.1 %).
    pub error_rate: f64,
}

/// One step of the seed's optimisation ladder (chapter 2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeedRow {
    /// The seed's name for the step, e.g. `+ Redis cache`.
    pub step: String,
    /// The reference's switches that make this step.
    pub sut_args: Vec<String>,
    pub ours: SeedFigures,
    /// The seed's own figures, for the rows it gives (before and after).
    pub seed: Option<SeedFigures>,
    /// QPS of this row over the previous row's (1.0 for the first).
    pub qps_gain: f64,
    /// P99 of the previous row over this row's (above 1 is faster).
    pub p99_gain: f64,
}

/// A sign of overload and the offered rate it first appeared at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Signal {
    /// `429 rate limited`, `503 unavailable`, `broker flow control`.
    pub what: String,
    pub at_offered_rps: f64,
}

/// One point of a capacity curve: a step held at an offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CurvePoint {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    /// End-to-end tasks completed per second, their P50 and P99.
    pub tasks_per_s: f64,
    pub task_p50_ms: Option<f64>,
    pub task_p99_ms: Option<f64>,
    /// Outbox backlog and task-queue depth when the step ended.
    pub backlog_at_end: Option<f64>,
    /// Within the SLO and the error limit.
    pub within: bool,
}

/// The step-load search of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CapacityCurve {
    /// E.g. `mysql, 2 workers`.
    pub label: String,
    pub workers: u64,
    pub store: String,
    pub slo_p99_ms: f64,
    pub max_error_rate: f64,
    pub points: Vec<CurvePoint>,
    /// The highest offered rate sustained within the SLO and the error limit.
    pub knee_rps: Option<f64>,
    /// Why the search stopped.
    pub stopped_because: String,
    /// Outbox backlog and queue depth over the whole search, and through the drain.
    #[serde(default)]
    pub backlog: Vec<Series>,
    /// Seconds from the end of the load to an empty backlog; `None` when it did not drain.
    pub drain_s: Option<f64>,
    #[serde(default)]
    pub signals: Vec<Signal>,
}

/// A rate measured by one side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measured {
    pub label: String,
    /// Per second, in `unit`.
    pub rate: f64,
    /// `req/s` or `msg/s`.
    pub unit: String,
    pub p99_ms: Option<f64>,
}

/// The reference against a comparator, driven the same way in the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    /// E.g. `cached user read vs bare axum handler`.
    pub name: String,
    /// `goose` or `wrk`.
    pub generator: String,
    /// Medians of the rounds.
    pub ours: Measured,
    pub comparator: Measured,
    /// The median of the rounds' ratios, each `ours / comparator` of one round.
    pub ratio: f64,
    /// Each round's ratio.
    #[serde(default)]
    pub ratios: Vec<f64>,
}

/// How much worse a candidate may be than its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tolerance {
    /// Relative change allowed: 0.5 lets the error rate and P99 grow by 50 % and the
    /// throughput fall to 1/1.5 of the baseline (the seed's gray-release rule).
    pub relative: f64,
    /// Error-rate growth below this many percentage points never counts.
    pub error_rate_floor_pct: f64,
    /// P99 growth below this many milliseconds never counts.
    pub p99_floor_ms: f64,
}

/// One figure compared by the regression gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateCheck {
    /// E.g. `error rate`, `p99 GET user (cached)`, `throughput`.
    pub metric: String,
    pub baseline: f64,
    pub candidate: f64,
    /// The worst value the candidate may have.
    pub limit: f64,
    pub passed: bool,
}

/// The regression gate: a candidate against a baseline (stored, or run beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gate {
    /// Where the baseline came from: a file, or the configuration run beside the candidate.
    pub baseline: String,
    pub candidate: String,
    pub tolerance: Tolerance,
    pub checks: Vec<GateCheck>,
    pub passed: bool,
}

/// A long run's sizes over time: memory, store rows and bytes, logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Soak {
    /// The retention the system ran with, in seconds.
    pub retention_s: f64,
    pub series: Vec<Series>,
}

/// Everything a load run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoadReport {
    /// The profile that ran: `mixed`, `seed-table`, `capacity`, `e2e`, `compare`, `gate`,
    /// `soak`.
    pub profile: String,
    #[serde(default)]
    pub steps: Vec<LoadStep>,
    #[serde(default)]
    pub seed_table: Vec<SeedRow>,
    #[serde(default)]
    pub capacity: Vec<CapacityCurve>,
    #[serde(default)]
    pub comparisons: Vec<Comparison>,
    pub gate: Option<Gate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<Soak>,
}
