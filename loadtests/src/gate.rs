//! The regression gate: a candidate step against a baseline step, with the seed's gray-release
//! rule (chapter 5: roll back when the error rate jumps by 50 %) as the default tolerance,
//! and absolute floors so that noise at tiny values (0.01 % → 0.02 %) is no regression.
//!
//! Baselines are files (a [`LoadStep`] with a format tag), kept in the repository and
//! refreshed with `--update-baseline`.

use std::path::Path;

use clap::Args;
use reports::load::{Gate, GateCheck, LoadStep, Loop, Tolerance};
use serde::{Deserialize, Serialize};

use crate::workload::row;

const FORMAT: &str = "rmq-harness/load-baseline/v1";

/// Rows with fewer requests than this in either run are too thin to judge their P99.
const MIN_REQUESTS: u64 = 200;

/// The gate's tolerance, as flags.
#[derive(Debug, Clone, Args)]
pub struct ToleranceArgs {
    /// How much worse the candidate may be, in percent: error rate and P99 may grow by this
    /// much, throughput may fall to 100/(100+this) of the baseline.
    #[arg(long, default_value_t = 50.0, help_heading = "Regression gate")]
    pub tolerance: f64,
    /// Error-rate growth below this many percentage points never fails the gate.
    #[arg(long, default_value_t = 0.5, help_heading = "Regression gate")]
    pub error_floor: f64,
    /// P99 growth below this many milliseconds never fails the gate.
    #[arg(long, default_value_t = 5.0, help_heading = "Regression gate")]
    pub p99_floor: f64,
}

impl ToleranceArgs {
    pub fn tolerance(&self) -> Tolerance {
        Tolerance {
            relative: self.tolerance / 100.0,
            error_rate_floor_pct: self.error_floor,
            p99_floor_ms: self.p99_floor,
        }
    }
}

/// A stored baseline.
#[derive(Debug, Serialize, Deserialize)]
struct BaselineFile {
    format: String,
    /// What made it, for the reader: profile, flags, machine notes.
    made_with: String,
    step: LoadStep,
}

/// Reads a baseline written by [`write`].
pub fn read(path: &Path) -> anyhow::Result<LoadStep> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "no baseline at {} ({e}); make one with --update-baseline",
            path.display()
        )
    })?;
    let file: BaselineFile = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a load baseline: {e}", path.display()))?;
    anyhow::ensure!(
        file.format == FORMAT,
        "{} has format `{}`, this version reads `{FORMAT}`",
        path.display(),
        file.format
    );
    Ok(file.step)
}

/// Stores `step` as the baseline at `path`.
pub fn write(path: &Path, step: &LoadStep, made_with: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = BaselineFile {
        format: FORMAT.into(),
        made_with: made_with.into(),
        step: step.clone(),
    };
    std::fs::write(path, serde_json::to_string_pretty(&file)? + "\n")?;
    Ok(())
}

/// "Higher is worse" limit: the baseline grown by the tolerance, never less than the floor
/// above it.
fn growth_limit(baseline: f64, relative: f64, floor: f64) -> f64 {
    (baseline * (1.0 + relative)).max(baseline + floor)
}

fn worse_if_higher(metric: &str, baseline: f64, candidate: f64, limit: f64) -> GateCheck {
    GateCheck {
        metric: metric.into(),
        baseline,
        candidate,
        limit,
        passed: candidate <= limit,
    }
}

/// Judges `candidate` against `baseline`.
pub fn compare(
    baseline_name: &str,
    baseline: &LoadStep,
    candidate_name: &str,
    candidate: &LoadStep,
    tol: Tolerance,
) -> Gate {
    let (b, c) = (&baseline.aggregate, &candidate.aggregate);
    let mut checks = vec![worse_if_higher(
        "error rate (%)",
        b.error_rate * 100.0,
        c.error_rate * 100.0,
        growth_limit(b.error_rate * 100.0, tol.relative, tol.error_rate_floor_pct),
    )];
    // Closed loop, throughput is what a regression costs; at a fixed rate, latency is.
    if baseline.loop_kind == Loop::Closed && candidate.loop_kind == Loop::Closed {
        let limit = b.rps / (1.0 + tol.relative);
        checks.push(GateCheck {
            metric: "throughput (req/s)".into(),
            baseline: b.rps,
            candidate: c.rps,
            limit,
            passed: c.rps >= limit,
        });
    }
    checks.push(worse_if_higher(
        "p99 (ms)",
        b.p99_ms,
        c.p99_ms,
        growth_limit(b.p99_ms, tol.relative, tol.p99_floor_ms),
    ));
    let task = row::task();
    let rows = baseline.requests.iter().filter_map(|br| {
        let cr = candidate.requests.iter().find(|r| r.name == br.name)?;
        (br.requests >= MIN_REQUESTS && cr.requests >= MIN_REQUESTS).then_some((br, cr))
    });
    for (br, cr) in rows {
        let limit = growth_limit(br.p99_ms, tol.relative, tol.p99_floor_ms);
        checks.push(worse_if_higher(
            &format!("p99 {} (ms)", br.name),
            br.p99_ms,
            cr.p99_ms,
            limit,
        ));
        if br.name == task {
            checks.push(worse_if_higher(
                &format!("error rate {} (%)", br.name),
                br.error_rate * 100.0,
                cr.error_rate * 100.0,
                growth_limit(
                    br.error_rate * 100.0,
                    tol.relative,
                    tol.error_rate_floor_pct,
                ),
            ));
        }
    }
    let passed = checks.iter().all(|c| c.passed);
    Gate {
        baseline: baseline_name.into(),
        candidate: candidate_name.into(),
        tolerance: tol,
        checks,
        passed,
    }
}

/// The gate as a verdict: invalid when a check failed.
pub fn verdict(gate: &Gate) -> reports::Verdict {
    let mut v = reports::Verdict::new("regression-gate");
    let failed: Vec<&GateCheck> = gate.checks.iter().filter(|c| !c.passed).collect();
    v.count("checks", gate.checks.len() as u64)
        .count("failed", failed.len() as u64);
    for c in &failed {
        v.anomaly(
            "regression",
            serde_json::json!({"metric": c.metric, "baseline": c.baseline,
                               "candidate": c.candidate, "limit": c.limit}),
        );
    }
    v.summary(format!(
        "{} against {}: {} of {} checks within {:.0} % (floors {} pp, {} ms)",
        gate.candidate,
        gate.baseline,
        gate.checks.len() - failed.len(),
        gate.checks.len(),
        gate.tolerance.relative * 100.0,
        gate.tolerance.error_rate_floor_pct,
        gate.tolerance.p99_floor_ms
    ));
    v
}

/// The gate's table for the console.
pub fn print(gate: &Gate) {
    println!(
        "regression gate: {} against {} ({})",
        gate.candidate,
        gate.baseline,
        if gate.passed { "PASS" } else { "FAIL" }
    );
    println!(
        "  {:<44} {:>12} {:>12} {:>12}  result",
        "metric", "baseline", "candidate", "limit"
    );
    for c in &gate.checks {
        println!(
            "  {:<44} {:>12.2} {:>12.2} {:>12.2}  {}",
            c.metric,
            c.baseline,
            c.candidate,
            c.limit,
            if c.passed { "ok" } else { "REGRESSION" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reports::load::RequestStats;

    fn step(rps: f64, p99: f64, errors: f64) -> LoadStep {
        let stats = RequestStats {
            name: "GET user (cached)".into(),
            requests: 10_000,
            failures: (errors * 10_000.0) as u64,
            error_rate: errors,
            rps,
            mean_ms: 1.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: p99,
            max_ms: 10.0,
            statuses: Default::default(),
        };
        LoadStep {
            label: "s".into(),
            sut_args: vec![],
            loop_kind: Loop::Closed,
            offered_rps: None,
            users: 8,
            duration_s: 10.0,
            aggregate: stats.clone(),
            requests: vec![stats],
            tasks: None,
            thresholds: vec![],
            reports: vec![],
        }
    }

    const TOL: Tolerance = Tolerance {
        relative: 0.5,
        error_rate_floor_pct: 0.5,
        p99_floor_ms: 5.0,
    };

    #[test]
    fn the_same_figures_pass() {
        assert!(
            compare(
                "b",
                &step(1000.0, 10.0, 0.0),
                "c",
                &step(1000.0, 10.0, 0.0),
                TOL
            )
            .passed
        );
    }

    #[test]
    fn a_jump_in_errors_fails_but_noise_near_zero_does_not() {
        let base = step(1000.0, 10.0, 0.02);
        let g = compare("b", &base, "c", &step(1000.0, 10.0, 0.031), TOL);
        assert!(!g.passed, "2 % -> 3.1 % is a 55 % jump");
        assert!(compare("b", &base, "c", &step(1000.0, 10.0, 0.029), TOL).passed);
        let tiny = step(1000.0, 10.0, 0.0001);
        assert!(compare("b", &tiny, "c", &step(1000.0, 10.0, 0.0002), TOL).passed);
    }

    #[test]
    fn slower_or_less_throughput_fails_beyond_the_tolerance() {
        let base = step(1000.0, 20.0, 0.0);
        assert!(!compare("b", &base, "c", &step(600.0, 20.0, 0.0), TOL).passed);
        assert!(compare("b", &base, "c", &step(700.0, 20.0, 0.0), TOL).passed);
        assert!(!compare("b", &base, "c", &step(1000.0, 31.0, 0.0), TOL).passed);
        // 1 ms -> 2 ms is +100 %, but under the 5 ms floor.
        let fast = step(1000.0, 1.0, 0.0);
        assert!(compare("b", &fast, "c", &step(1000.0, 2.0, 0.0), TOL).passed);
    }

    #[test]
    fn a_baseline_file_round_trips_and_a_missing_one_says_how_to_make_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b/base.json");
        write(&path, &step(1.0, 2.0, 0.0), "test").unwrap();
        assert_eq!(read(&path).unwrap(), step(1.0, 2.0, 0.0));
        let err = read(&dir.path().join("none.json")).unwrap_err().to_string();
        assert!(err.contains("--update-baseline"), "{err}");
    }
}
