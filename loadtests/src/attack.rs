//! One load step: a goose attack built from the user's goose flags and the step's defaults,
//! its reports written into the run directory, and what it measured as a [`LoadStep`].
//!
//! Flags the user gives win over the step's defaults (goose's own rule for `GooseDefault`),
//! except the reports, which always go to the run directory too.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use goose::{
    config::GooseConfiguration,
    metrics::{GooseRequestMetricAggregate, GooseRequestMetricTimingData},
    prelude::*,
};
use reports::load::{LoadStep, Loop, RequestStats, ThresholdOutcome};

use crate::workload::{row, Mix, Workload};

/// What one step runs.
#[derive(Debug, Clone)]
pub struct Step {
    pub label: String,
    /// File name stem of this step's goose reports (`goose/<stem>.html`, ...).
    pub stem: String,
    pub users: usize,
    pub run_time: Duration,
    /// A fixed arrival rate (goose's throttle, with coordinated-omission mitigation);
    /// closed loop when absent.
    pub rate: Option<usize>,
    /// Thresholds when the user gave none.
    pub thresholds: Vec<String>,
    /// Stop the step as soon as a threshold fails (goose's default), or judge at the end.
    pub abort_on_threshold: bool,
    /// Print goose's tables when the step ends.
    pub print: bool,
    /// Requests this step sends at most, when fewer than the runner's bound.
    pub max_requests: Option<u64>,
}

/// Runs steps with the user's goose flags.
pub struct Runner {
    pub goose: GooseConfiguration,
    pub run_dir: PathBuf,
    /// The error-rate limit every run is held to, as a fraction.
    pub max_error_rate: f64,
    /// Requests one step may send at most.
    pub max_requests: u64,
}

/// The error-rate rule every step carries, and one for the task row when tasks run.
pub fn required_rules(rules: &[String], max_error_rate: f64, tasks: bool) -> Vec<String> {
    let mut rules = rules.to_vec();
    let pct = max_error_rate * 100.0;
    let unscoped_error_rule = |r: &String| r.starts_with("error-rate") && !r.contains(" for ");
    if !rules.iter().any(unscoped_error_rule) {
        rules.push(format!("error-rate<{pct}%"));
    }
    let task = row::task();
    let task_error_rule =
        |r: &String| r.starts_with("error-rate") && r.ends_with(&format!(" for {task}"));
    if tasks && !rules.iter().any(task_error_rule) {
        rules.push(format!("error-rate<{pct}% for {task}"));
    }
    rules
}

impl Runner {
    /// Runs `step` with `mix` of the workload's transactions.
    pub async fn run(
        &self,
        workload: &Arc<Workload>,
        mix: Mix,
        step: &Step,
        sut_args: &[String],
    ) -> anyhow::Result<LoadStep> {
        let bound = step
            .max_requests
            .map_or(self.max_requests, |n| n.min(self.max_requests));
        workload.limit_requests(bound);
        let scenario = workload.scenario(mix)?;
        let tasks = mix.end_to_end > 0;
        self.run_scenario(&workload.base_url, scenario, tasks, step, sut_args)
            .await
    }

    /// Runs `step` with `scenario` against `host`; a failed threshold is in the result, not
    /// an error. `tasks` says whether the scenario records end-to-end task rows.
    pub async fn run_scenario(
        &self,
        host: &str,
        scenario: Scenario,
        tasks: bool,
        step: &Step,
        sut_args: &[String],
    ) -> anyhow::Result<LoadStep> {
        let goose_dir = self.run_dir.join("goose");
        std::fs::create_dir_all(&goose_dir)?;
        let mut config = self.goose.clone();
        let reports: Vec<String> = ["html", "md", "json"]
            .iter()
            .map(|ext| format!("goose/{}.{ext}", step.stem))
            .collect();
        config
            .report_file
            .extend(reports.iter().map(|r| path_str(&self.run_dir.join(r))));
        let user_rules = std::mem::take(&mut config.threshold);
        let base = if user_rules.is_empty() {
            &step.thresholds
        } else {
            &user_rules
        };
        config.threshold = required_rules(base, self.max_error_rate, tasks);
        let fixed_rate = step.rate.or(config.throttle_requests).filter(|r| *r > 0);

        let mut attack = GooseAttack::initialize_with_config(config)?
            .register_scenario(scenario)
            .set_default(GooseDefault::Host, host)?
            .set_default(GooseDefault::Users, step.users)?
            .set_default(GooseDefault::IncreaseRate, step.users.to_string().as_str())?
            .set_default(
                GooseDefault::RunTime,
                step.run_time.as_secs().max(1) as usize,
            )?
            .set_default(GooseDefault::NoTelnet, true)?
            .set_default(GooseDefault::NoPrintMetrics, !step.print)?
            .set_default(GooseDefault::NoThresholdAbort, !step.abort_on_threshold)?;
        if let Some(rate) = fixed_rate {
            attack = attack
                .set_default(GooseDefault::ThrottleRequests, rate)?
                .set_default(
                    GooseDefault::CoordinatedOmissionMitigation,
                    GooseCoordinatedOmissionMitigation::Average,
                )?;
        }
        let (metrics, results) = match attack.execute().await {
            Ok(m) => {
                let results = m.thresholds.clone();
                (Box::new(m), results)
            }
            Err(GooseError::ThresholdsFailed { metrics, .. }) => {
                let results = metrics.thresholds.clone();
                (metrics.0, results)
            }
            Err(e) => return Err(e.into()),
        };
        goose::reset_killswitch();
        let seconds = counted_seconds(&metrics, self.goose.no_reset_metrics);
        Ok(LoadStep {
            label: step.label.clone(),
            sut_args: sut_args.to_vec(),
            loop_kind: if fixed_rate.is_some() {
                Loop::FixedRate
            } else {
                Loop::Closed
            },
            offered_rps: fixed_rate.map(|r| r as f64),
            users: metrics.maximum_users as u64,
            duration_s: seconds,
            aggregate: aggregate(&metrics, seconds, fixed_rate.is_some()),
            requests: rows(&metrics, seconds, fixed_rate.is_some()),
            tasks: metrics
                .requests
                .get(&row::task())
                .map(|a| stats(&row::task(), a, seconds, false)),
            thresholds: results
                .iter()
                .map(|r| ThresholdOutcome {
                    rule: r.rule.clone(),
                    observed: r.observed.clone(),
                    passed: r.passed,
                })
                .collect(),
            reports,
        })
    }
}

/// Seconds over which the requests were counted: from the metrics' reset as the users
/// settled (goose resets them on entering its one Maintain step) to the end, read from goose's
/// step history to the millisecond (its `duration` is whole seconds from the ramp's start).
fn counted_seconds(m: &GooseMetrics, no_reset: bool) -> f64 {
    use goose::test_plan::TestPlanStepAction as A;
    let maintains: Vec<_> = m
        .history
        .iter()
        .filter(|h| matches!(h.action, A::Maintaining))
        .collect();
    let start = match (maintains.as_slice(), no_reset) {
        ([only], false) => Some(only.timestamp),
        _ => m.history.first().map(|h| h.timestamp),
    };
    let end = m.history.last().map(|h| h.timestamp);
    match (start, end) {
        (Some(s), Some(e)) if e > s => (e - s).num_milliseconds() as f64 / 1000.0,
        _ => m.duration.max(1) as f64,
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Under a fixed rate, the times with goose's coordinated-omission backfill.
fn timings(a: &GooseRequestMetricAggregate, fixed_rate: bool) -> &GooseRequestMetricTimingData {
    match (&a.coordinated_omission_data, fixed_rate) {
        (Some(co), true) if co.counter > 0 => co,
        _ => &a.raw_data,
    }
}

fn stats(
    name: &str,
    a: &GooseRequestMetricAggregate,
    seconds: f64,
    fixed_rate: bool,
) -> RequestStats {
    let t = timings(a, fixed_rate);
    let requests = (a.success_count + a.fail_count) as u64;
    let ms = |us: u64| us as f64 / 1000.0;
    RequestStats {
        name: name.to_string(),
        requests,
        failures: a.fail_count as u64,
        error_rate: ratio(a.fail_count as u64, requests),
        rps: requests as f64 / seconds,
        mean_ms: if t.counter == 0 { 0.0 } else { t.average_ms() },
        p50_ms: ms(t.percentile_us(0.5)),
        p90_ms: ms(t.percentile_us(0.9)),
        p99_ms: ms(t.percentile_us(0.99)),
        max_ms: ms(t.maximum_time_us),
        statuses: a
            .status_code_counts
            .iter()
            .filter(|(code, _)| **code > 0)
            .map(|(code, n)| (code.to_string(), *n as u64))
            .collect(),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Every row, sorted by name.
fn rows(m: &GooseMetrics, seconds: f64, fixed_rate: bool) -> Vec<RequestStats> {
    let mut out: Vec<RequestStats> = m
        .requests
        .iter()
        .map(|(name, a)| stats(name, a, seconds, fixed_rate))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every HTTP row together: the task rows are not requests to the system.
fn aggregate(m: &GooseMetrics, seconds: f64, fixed_rate: bool) -> RequestStats {
    let http: Vec<&GooseRequestMetricAggregate> = m
        .requests
        .values()
        .filter(|a| a.custom_method.is_empty())
        .collect();
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut count, mut total_us, mut max_us) = (0u64, 0u64, 0u64);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    for a in &http {
        let t = timings(a, fixed_rate);
        for (floor, n) in t.times_us.iter() {
            *buckets.entry(*floor).or_default() += *n as u64;
        }
        count += t.counter as u64;
        total_us += t.total_time_us;
        max_us = max_us.max(t.maximum_time_us);
        ok += a.success_count as u64;
        failed += a.fail_count as u64;
        for (code, n) in a.status_code_counts.iter().filter(|(c, _)| **c > 0) {
            *statuses.entry(code.to_string()).or_default() += *n as u64;
        }
    }
    let pct = |p: f64| percentile(&buckets, count, p) as f64 / 1000.0;
    let requests = ok + failed;
    RequestStats {
        name: "Aggregated (HTTP)".into(),
        requests,
        failures: failed,
        error_rate: ratio(failed, requests),
        rps: requests as f64 / seconds,
        mean_ms: if count == 0 {
            0.0
        } else {
            total_us as f64 / count as f64 / 1000.0
        },
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
        max_ms: max_us as f64 / 1000.0,
        statuses,
    }
}

/// The bucket (by its lower bound, in µs) holding the `p` quantile of `count` times.
fn percentile(buckets: &BTreeMap<u64, u64>, count: u64, p: f64) -> u64 {
    if count == 0 {
        return 0;
    }
    let rank = ((p * count as f64).ceil() as u64).clamp(1, count);
    let mut seen = 0;
    for (floor, n) in buckets {
        seen += n;
        if seen >= rank {
            return *floor;
        }
    }
    buckets.keys().next_back().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_gets_an_error_rate_rule() {
        let rules = required_rules(&[], 0.01, false);
        assert_eq!(rules, vec!["error-rate<1%"]);
        let rules = required_rules(&["p99<50ms".into()], 0.01, true);
        assert_eq!(
            rules,
            vec![
                "p99<50ms".to_string(),
                "error-rate<1%".into(),
                "error-rate<1% for TASK submit-to-success".into()
            ]
        );
        // A scoped rule is not the overall one; the user's own overall rule is kept.
        let rules = required_rules(&["error-rate<5% for GET x".into()], 0.01, false);
        assert_eq!(rules.len(), 2);
        let rules = required_rules(&["error-rate<0.5%".into()], 0.01, false);
        assert_eq!(rules, vec!["error-rate<0.5%"]);
        // A latency rule for the task row is not its error-rate rule.
        let rules = required_rules(&["p99<2s for TASK submit-to-success".into()], 0.01, true);
        assert_eq!(rules.len(), 3);
    }

    #[test]
    fn percentiles_come_from_merged_buckets() {
        let buckets = BTreeMap::from([(1000, 98), (2000, 1), (50_000, 1)]);
        assert_eq!(percentile(&buckets, 100, 0.5), 1000);
        assert_eq!(percentile(&buckets, 100, 0.99), 2000);
        assert_eq!(percentile(&buckets, 100, 1.0), 50_000);
        assert_eq!(percentile(&BTreeMap::new(), 0, 0.99), 0);
    }
}
