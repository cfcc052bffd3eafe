//! `loadtests capacity`: step load at fixed arrival rates (goose's throttle, coordinated
//! omission mitigated) until P99 passes the SLO, the error rate passes its limit or the rate
//! is no longer sustained; the knee is the highest rate within all three. The backlog
//! (outbox, task queue) is sampled throughout, its drain timed once the load stops, and the
//! first 429s, 503s and broker flow control are located. Repeated per worker count.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{
    load::{CapacityCurve, CurvePoint, LoadStep, Signal},
    LoadReport, RunReport,
};

use harness::signals::{self, Sample, Sampler};

use crate::{
    attack::Step,
    session::{summary_line, Common, Loaded, Session},
    workload::Mix,
};

#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub common: Common,

    /// Transaction weights: cached, after-write, list, create, submit, balance, e2e.
    #[arg(long, default_value_t = Mix::WITH_TASKS, help_heading = "Workload")]
    pub mix: Mix,

    /// SLO: the P99 of all HTTP requests, in milliseconds.
    #[arg(long, default_value_t = 100.0, help_heading = "Capacity search")]
    pub slo_p99: f64,

    /// SLO of end-to-end tasks: their submit → SUCCESS P99, in milliseconds.
    #[arg(long, default_value_t = 2000.0, help_heading = "Capacity search")]
    pub task_slo_p99: f64,

    /// First offered rate, requests per second.
    #[arg(long, default_value_t = 100, help_heading = "Capacity search")]
    pub start_rps: usize,

    /// Each step offers this many times the last.
    #[arg(long, default_value_t = 1.5, help_heading = "Capacity search")]
    pub factor: f64,

    /// Highest rate offered.
    #[arg(long, default_value_t = 50_000, help_heading = "Capacity search")]
    pub max_rps: usize,

    /// Bisection steps between the last rate within the SLO and the first beyond it.
    #[arg(long, default_value_t = 2, help_heading = "Capacity search")]
    pub refine: u32,

    /// How long each rate is held.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s", help_heading = "Capacity search")]
    pub step_time: Duration,

    /// Worker processes to search with, one search each (e.g. 1,2,4 with --store mysql).
    #[arg(long, value_delimiter = ',', help_heading = "Capacity search")]
    pub worker_counts: Vec<usize>,

    /// The run fails when a knee is below this rate (requests per second); by default it
    /// fails only when no rate at all was within the SLO.
    #[arg(long, default_value_t = 0.0, help_heading = "Capacity search")]
    pub expect_rps: f64,

    /// How long to wait for the backlog to drain once the load stops.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s", help_heading = "Capacity search")]
    pub drain_timeout: Duration,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

/// A rate counts as sustained when at least this share of it was achieved. goose's throttle
/// itself releases about 92 % of its nominal rate (each 10 ms period overshoots by its timer's
/// lateness), so only a shortfall well beyond that says the system saturated.
const SUSTAINED: f64 = 0.8;

/// Enough users that waiting ones never hold the rate back.
fn users_for(rate: usize) -> usize {
    (rate / 4).clamp(16, 1024)
}

struct Limits {
    slo_p99: f64,
    task_slo_p99: f64,
    max_error_rate: f64,
}

impl Limits {
    /// Why a step is beyond the limits, if it is.
    fn breach(&self, step: &LoadStep, offered: f64) -> Option<String> {
        let a = &step.aggregate;
        if a.error_rate > self.max_error_rate {
            return Some(format!(
                "error rate {:.2} % > {:.2} % at {offered} req/s",
                a.error_rate * 100.0,
                self.max_error_rate * 100.0
            ));
        }
        if a.p99_ms > self.slo_p99 {
            return Some(format!(
                "P99 {:.1} ms > SLO {} ms at {offered} req/s",
                a.p99_ms, self.slo_p99
            ));
        }
        if let Some(t) = &step.tasks {
            if t.error_rate > self.max_error_rate || t.p99_ms > self.task_slo_p99 {
                return Some(format!(
                    "tasks P99 {:.1} ms (SLO {} ms), {:.2} % failed at {offered} req/s",
                    t.p99_ms,
                    self.task_slo_p99,
                    t.error_rate * 100.0
                ));
            }
        }
        if a.rps < offered * SUSTAINED {
            return Some(format!(
                "only {:.0} of {offered} req/s achieved (the system or the generator saturated)",
                a.rps
            ));
        }
        None
    }
}

fn point(step: &LoadStep, offered: f64, backlog: Option<f64>, within: bool) -> CurvePoint {
    CurvePoint {
        offered_rps: offered,
        achieved_rps: step.aggregate.rps,
        p50_ms: step.aggregate.p50_ms,
        p99_ms: step.aggregate.p99_ms,
        error_rate: step.aggregate.error_rate,
        tasks_per_s: step.tasks.as_ref().map_or(0.0, |t| t.rps),
        task_p50_ms: step.tasks.as_ref().map(|t| t.p50_ms),
        task_p99_ms: step.tasks.as_ref().map(|t| t.p99_ms),
        backlog_at_end: backlog,
        within,
    }
}

/// The next rates to try: geometric until the first breach, then bisection.
struct Search {
    factor: f64,
    max: usize,
    refine: u32,
    pass: Option<usize>,
    fail: Option<usize>,
    next: Option<usize>,
}

impl Search {
    fn new(start: usize, factor: f64, max: usize, refine: u32) -> Search {
        Search {
            factor,
            max,
            refine,
            pass: None,
            fail: None,
            next: Some(start.max(1)),
        }
    }

    fn record(&mut self, rate: usize, within: bool) {
        if within {
            self.pass = Some(self.pass.map_or(rate, |p| p.max(rate)));
        } else {
            self.fail = Some(self.fail.map_or(rate, |f| f.min(rate)));
        }
        self.next = match (self.pass, self.fail) {
            (_, None) if rate >= self.max => None,
            (_, None) => Some(((rate as f64 * self.factor).ceil() as usize).min(self.max)),
            (Some(p), Some(f)) if self.refine > 0 && f - p > p / 20 + 1 => {
                self.refine -= 1;
                Some((p + f) / 2)
            }
            _ => None,
        };
    }
}

/// Signs of overload in a step: 429s, 503s, broker flow control.
fn signals(step: &LoadStep, offered: f64, samples: &[Sample], window: (f64, f64)) -> Vec<Signal> {
    let mut out = Vec::new();
    for (code, what) in [("429", "429 rate limited"), ("503", "503 unavailable")] {
        if step.aggregate.statuses.get(code).copied().unwrap_or(0) > 0 {
            out.push(Signal {
                what: what.into(),
                at_offered_rps: offered,
            });
        }
    }
    let blocked = samples
        .iter()
        .any(|s| s.t >= window.0 && s.t <= window.1 && s.broker_blocked);
    if blocked {
        out.push(Signal {
            what: "broker flow control".into(),
            at_offered_rps: offered,
        });
    }
    out
}

async fn search(
    session: &Session,
    args: &CapacityArgs,
    loaded: &Loaded,
    workers: usize,
    steps: &mut Vec<LoadStep>,
) -> anyhow::Result<CapacityCurve> {
    let limits = Limits {
        slo_p99: args.slo_p99,
        task_slo_p99: args.task_slo_p99,
        max_error_rate: args.common.max_error_rate / 100.0,
    };
    let sampler = Sampler::start(loaded.backlog_source(), Duration::from_secs(1));
    let mut search = Search::new(args.start_rps, args.factor, args.max_rps, args.refine);
    let mut points = Vec::new();
    let mut found: Vec<Signal> = Vec::new();
    let mut stopped_because = format!("reached --max-rps {}", args.max_rps);
    while let Some(rate) = search.next {
        if search.fail.is_some() {
            // A step past the knee leaves a backlog; the next starts from an empty one.
            sampler.wait_drained(args.drain_timeout).await;
        }
        let step = Step {
            label: format!("capacity ({workers} workers) @ {rate} req/s"),
            stem: format!("capacity-w{workers}-{rate}"),
            users: users_for(rate),
            run_time: args.step_time,
            rate: Some(rate),
            // The SLO is judged on the HTTP rows by the search itself: goose's unscoped
            // rules would include the task row. Only the error-rate rules are goose's.
            thresholds: Vec::new(),
            abort_on_threshold: false,
            print: false,
            max_requests: None,
        };
        eprintln!("  {} req/s for {:?} ...", rate, args.step_time);
        let from = sampler.now();
        let measured = session
            .runner()
            .run(&loaded.workload, args.mix, &step, &loaded.target.sut_args)
            .await?;
        let offered = rate as f64;
        let breach = limits.breach(&measured, offered);
        let backlog = sampler.last().and_then(|s| s.backlog());
        eprintln!(
            "    {}{}",
            summary_line(&measured),
            backlog.map_or(String::new(), |b| format!("  backlog {b:.0}"))
        );
        for s in signals(
            &measured,
            offered,
            &sampler.samples(),
            (from, sampler.now()),
        ) {
            if !found.iter().any(|f| f.what == s.what) {
                found.push(s);
            }
        }
        points.push(point(&measured, offered, backlog, breach.is_none()));
        if let Some(why) = &breach {
            if search.fail.is_none() {
                stopped_because = why.clone();
            }
        }
        search.record(rate, breach.is_none());
        steps.push(measured);
    }
    eprintln!("  load stopped; timing the drain of the backlog");
    let drain_s = sampler.wait_drained(args.drain_timeout).await;
    points.sort_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps));
    Ok(CapacityCurve {
        label: format!("{}, {workers} workers", args.common.store.name()),
        workers: workers as u64,
        store: args.common.store.name().into(),
        slo_p99_ms: args.slo_p99,
        max_error_rate: limits.max_error_rate,
        knee_rps: points
            .iter()
            .filter(|p| p.within)
            .map(|p| p.offered_rps)
            .reduce(f64::max),
        points,
        stopped_because,
        backlog: signals::series(&sampler.stop().await)
            .into_iter()
            .filter(|s| s.name == "outbox backlog" || s.name == "task queue depth")
            .collect(),
        drain_s,
        signals: found,
    })
}

/// Prints a curve and its knee.
pub fn print(curve: &CapacityCurve) {
    println!(
        "capacity: {} (SLO P99 {} ms, errors ≤ {:.2} %)",
        curve.label,
        curve.slo_p99_ms,
        curve.max_error_rate * 100.0
    );
    println!(
        "  {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9}  within",
        "offered", "achieved", "p50 ms", "p99 ms", "errors", "tasks/s", "task p99", "backlog"
    );
    for p in &curve.points {
        println!(
            "  {:>10.0} {:>10.1} {:>9.2} {:>9.2} {:>6.2} % {:>9.1} {:>10} {:>9}  {}",
            p.offered_rps,
            p.achieved_rps,
            p.p50_ms,
            p.p99_ms,
            p.error_rate * 100.0,
            p.tasks_per_s,
            p.task_p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
            p.backlog_at_end.map_or("-".into(), |v| format!("{v:.0}")),
            if p.within { "yes" } else { "no" }
        );
    }
    match curve.knee_rps {
        Some(k) => println!(
            "  knee: {k:.0} req/s; stopped because {}",
            curve.stopped_because
        ),
        None => println!("  no rate was within the SLO; {}", curve.stopped_because),
    }
    match curve.drain_s {
        Some(s) => println!("  backlog drained {s:.1} s after the load stopped"),
        None => println!("  the backlog did not drain in time (or could not be read)"),
    }
    for s in &curve.signals {
        println!(
            "  first {} at {:.0} req/s offered",
            s.what, s.at_offered_rps
        );
    }
}

pub async fn run(args: CapacityArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(args.factor > 1.0, "--factor must be above 1");
    let mut session =
        Session::start("load-capacity", args.common.clone(), args.goose.clone()).await?;
    let counts = if args.worker_counts.is_empty() {
        vec![args.common.workers]
    } else {
        args.worker_counts.clone()
    };
    let mut curves = Vec::new();
    let mut steps = Vec::new();
    for workers in counts {
        let mut spec = session.spec(&[]);
        spec.workers = workers;
        let loaded = session.load(&spec).await?;
        eprintln!("capacity search with {workers} worker(s)");
        let curve = search(&session, &args, &loaded, workers, &mut steps).await;
        loaded.stop().await;
        let curve = curve?;
        print(&curve);
        curves.push(curve);
    }
    let verdicts = curves.iter().map(|c| verdict(c, args.expect_rps)).collect();
    let load = LoadReport {
        profile: "capacity".into(),
        steps,
        capacity: curves,
        ..Default::default()
    };
    let parameters = BTreeMap::from([
        ("mix".to_string(), serde_json::json!(args.mix.to_string())),
        ("slo_p99_ms".to_string(), serde_json::json!(args.slo_p99)),
        (
            "step_time".to_string(),
            serde_json::json!(humantime::format_duration(args.step_time).to_string()),
        ),
    ]);
    // Steps past the knee breach their thresholds by design: the curve is judged instead.
    session.finish(parameters, verdicts, load, false)
}

/// A curve as a verdict: invalid when no knee was found or it is below `expect_rps`.
fn verdict(curve: &CapacityCurve, expect_rps: f64) -> reports::Verdict {
    let mut v = reports::Verdict::new(&format!("capacity: {}", curve.label));
    v.count("steps", curve.points.len() as u64);
    match curve.knee_rps {
        Some(knee) if knee >= expect_rps => {
            v.measure("knee_rps", knee);
            v.summary(format!("knee {knee:.0} req/s ({})", curve.stopped_because));
        }
        Some(knee) => {
            v.measure("knee_rps", knee);
            v.anomaly(
                "capacity_below_expectation",
                serde_json::json!({"knee_rps": knee, "expected_rps": expect_rps}),
            );
            v.summary(format!("knee {knee:.0} req/s < expected {expect_rps:.0}"));
        }
        None => {
            v.anomaly(
                "no_rate_within_slo",
                serde_json::json!({"stopped_because": curve.stopped_because}),
            );
            v.summary(format!("no rate within the SLO: {}", curve.stopped_because));
        }
    }
    if let Some(d) = curve.drain_s {
        v.measure("drain_s", d);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_grows_then_bisects_then_stops() {
        let mut s = Search::new(100, 2.0, 10_000, 2);
        assert_eq!(s.next, Some(100));
        s.record(100, true);
        assert_eq!(s.next, Some(200));
        s.record(200, true);
        assert_eq!(s.next, Some(400));
        s.record(400, false);
        assert_eq!(s.next, Some(300));
        s.record(300, true);
        assert_eq!(s.next, Some(350));
        s.record(350, false);
        assert_eq!(s.next, None, "refinement steps used up");
    }

    #[test]
    fn the_search_stops_at_the_maximum() {
        let mut s = Search::new(100, 10.0, 500, 2);
        s.record(100, true);
        assert_eq!(s.next, Some(500));
        s.record(500, true);
        assert_eq!(s.next, None);
    }
}
