//! `loadtests compare`: the reference against comparators anyone can rerun, driven the same
//! way in the same run, round after round, with goose and with wrk:
//!
//! - the cached `GET /api/v1/users/{id}` against a bare axum handler returning the same bytes
//!   (server and generator pinned to a core each with `--pin`);
//! - the task pipeline (202 → SUCCESS) against a raw lapin publisher (persistent, confirms)
//!   and consumer (manual ack) moving as many messages through the same broker.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::{Args, ValueEnum};
use goose::{config::GooseConfiguration, prelude::*};
use reports::{
    load::{Comparison, LoadStep, Measured},
    LoadReport, RunReport,
};

use crate::{
    attack::Step,
    comparators::raw_pair,
    session::{Common, Loaded, Session},
    workload::{row, Mix, Waiter},
    wrk::{self, Request, Wrk},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generator {
    Goose,
    Wrk,
    Both,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: Common,

    /// Load generator(s) to compare with.
    #[arg(long, value_enum, default_value_t = Generator::Both, help_heading = "Comparison")]
    pub generator: Generator,

    /// Rounds; figures are the medians, ratios the median of each round's ratio.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=15), help_heading = "Comparison")]
    pub rounds: u32,

    /// How long each read measurement runs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", help_heading = "Comparison")]
    pub duration: Duration,

    /// Concurrent connections (wrk) and users (goose) of the read measurements.
    #[arg(long, default_value_t = 64, help_heading = "Comparison")]
    pub connections: usize,

    /// Concurrent submitters of the pipeline measurement (closed loop: the submissions' P99 is
    /// at this concurrency).
    #[arg(long, default_value_t = 32, help_heading = "Comparison")]
    pub pipeline_connections: usize,

    /// Tasks (and raw messages) of each pipeline measurement.
    #[arg(long, default_value_t = 10_000, help_heading = "Comparison")]
    pub messages: usize,

    /// Do not pin the read servers to CPU 0 and the generator to CPU 1.
    #[arg(long, help_heading = "Comparison")]
    pub no_pin: bool,

    /// Which comparisons to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read,pipeline",
        help_heading = "Comparison"
    )]
    pub only: Vec<Which>,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Cached user read against a bare axum handler.
    Read,
    /// The task pipeline against a raw lapin publisher and consumer.
    Pipeline,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// One round: our rate and P99 beside the comparator's.
#[derive(Debug, Clone, Copy)]
struct Round {
    ours: (f64, Option<f64>),
    theirs: (f64, Option<f64>),
}

/// The rounds as a comparison.
fn comparison(
    name: &str,
    generator: &str,
    labels: (&str, &str),
    unit: &str,
    rounds: &[Round],
) -> Comparison {
    let med = |f: fn(&Round) -> Option<f64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r.ours.0 / r.theirs.0.max(f64::MIN_POSITIVE))
        .collect();
    Comparison {
        name: name.into(),
        generator: generator.into(),
        ours: Measured {
            label: labels.0.into(),
            rate: med(|r| Some(r.ours.0)).unwrap_or(0.0),
            unit: unit.into(),
            p99_ms: med(|r| r.ours.1),
        },
        comparator: Measured {
            label: labels.1.into(),
            rate: med(|r| Some(r.theirs.0)).unwrap_or(0.0),
            unit: unit.into(),
            p99_ms: med(|r| r.theirs.1),
        },
        ratio: median(ratios.clone()),
        ratios,
    }
}

pub fn print(c: &Comparison) {
    let p99 = |m: &Measured| {
        m.p99_ms
            .map_or(String::new(), |p| format!(", p99 {p:.2} ms"))
    };
    let (lo, hi) = c
        .ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "{} [{}]: {} {:.0} {}{} vs {} {:.0} {}{} → ratio {:.2} (rounds {:.2}–{:.2})",
        c.name,
        c.generator,
        c.ours.label,
        c.ours.rate,
        c.ours.unit,
        p99(&c.ours),
        c.comparator.label,
        c.comparator.rate,
        c.comparator.unit,
        p99(&c.comparator),
        c.ratio,
        lo,
        hi
    );
}

/// A goose scenario that GETs one path with the token.
fn get_scenario(path: String, token: Option<String>) -> Scenario {
    let f: TransactionFunction = Arc::new(move |user| {
        let (path, token) = (path.clone(), token.clone());
        Box::pin(async move {
            let mut rb = user.get_request_builder(&GooseMethod::Get, &path)?;
            if let Some(t) = &token {
                rb = rb.bearer_auth(t);
            }
            let req = GooseRequest::builder()
                .path(path.as_str())
                .name(row::CACHED_READ)
                .set_request_builder(rb)
                .build();
            user.request(req).await?;
            Ok(())
        })
    });
    Scenario::new("read").register_transaction(Transaction::new(f))
}

struct Ctx<'a> {
    session: &'a Session,
    args: &'a CompareArgs,
    steps: Vec<LoadStep>,
}

impl Ctx<'_> {
    fn wants(&self, g: Generator) -> bool {
        self.args.generator == Generator::Both || self.args.generator == g
    }

    async fn goose_read(
        &mut self,
        host: &str,
        path: &str,
        token: Option<String>,
        label: &str,
    ) -> anyhow::Result<(f64, Option<f64>)> {
        let step = Step {
            label: format!("compare: {label}"),
            stem: format!("compare-{}-{}", label.replace(' ', "-"), self.steps.len()),
            users: self.args.connections,
            run_time: self.args.duration,
            rate: None,
            thresholds: Vec::new(),
            abort_on_threshold: false,
            print: false,
            max_requests: None,
        };
        let measured = self
            .session
            .runner()
            .run_scenario(host, get_scenario(path.into(), token), false, &step, &[])
            .await?;
        let r = (measured.aggregate.rps, Some(measured.aggregate.p99_ms));
        self.steps.push(measured);
        Ok(r)
    }

    async fn wrk_read(
        &self,
        host: &str,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(f64, Option<f64>)> {
        let w = Wrk {
            base_url: host,
            token,
            connections: self.args.connections,
            duration: self.args.duration,
            cpu: (!self.args.no_pin).then_some(1),
        };
        let r = w.run(&Request::Get { path }).await?;
        anyhow::ensure!(r.non_2xx == 0, "{} of wrk's reads failed", r.non_2xx);
        Ok((r.rps, r.p99_ms))
    }
}

/// The cached read against the bare handler.
async fn reads(ctx: &mut Ctx<'_>, loaded: &Loaded) -> anyhow::Result<Vec<Comparison>> {
    let target = &loaded.target;
    let path = format!("/api/v1/users/{}", loaded.workload.hot_users[0]);
    let body = fetch(&target.base_url, &path, target.token.as_deref()).await?;
    let bare = crate::comparators::bare::spawn(ctx.session.run.path(), &body).await?;
    let pin = !ctx.args.no_pin;
    if pin {
        let pinned = target.pids.first().is_some_and(|p| wrk::pin(*p, 0))
            && wrk::pin(bare.pid(), 0)
            && wrk::pin(std::process::id() as i32, 1);
        if !pinned {
            eprintln!(
                "note: could not pin processes to CPUs (taskset missing?); figures are unpinned"
            );
        }
    }
    let mut goose_rounds = Vec::new();
    let mut wrk_rounds = Vec::new();
    let token = target.token.clone();
    for round in 1..=ctx.args.rounds {
        eprintln!("  read round {round}/{}", ctx.args.rounds);
        if ctx.wants(Generator::Goose) {
            let ours = ctx
                .goose_read(&target.base_url, &path, token.clone(), "reference read")
                .await?;
            let theirs = ctx
                .goose_read(&bare.base_url(), &path, None, "bare read")
                .await?;
            eprintln!(
                "    goose: reference {:.0} req/s, bare {:.0} req/s",
                ours.0, theirs.0
            );
            goose_rounds.push(Round { ours, theirs });
        }
        if ctx.wants(Generator::Wrk) {
            let ours = ctx
                .wrk_read(&target.base_url, &path, token.as_deref())
                .await?;
            let theirs = ctx.wrk_read(&bare.base_url(), &path, None).await?;
            eprintln!(
                "    wrk:   reference {:.0} req/s, bare {:.0} req/s",
                ours.0, theirs.0
            );
            wrk_rounds.push(Round { ours, theirs });
        }
    }
    if pin {
        target.pids.iter().for_each(|p| wrk::unpin(*p));
        wrk::unpin(std::process::id() as i32);
    }
    let name = "cached user read vs bare axum handler";
    let labels = ("reference", "bare axum");
    let mut out = Vec::new();
    if !goose_rounds.is_empty() {
        out.push(comparison(name, "goose", labels, "req/s", &goose_rounds));
    }
    if !wrk_rounds.is_empty() {
        out.push(comparison(name, "wrk", labels, "req/s", &wrk_rounds));
    }
    Ok(out)
}

async fn fetch(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut req = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await?;
    anyhow::ensure!(
        res.status().is_success(),
        "{path} answered {}",
        res.status()
    );
    Ok(res.bytes().await?.to_vec())
}

/// The pipeline with goose: N submissions, then until the N-th task ended.
async fn goose_pipeline(
    ctx: &mut Ctx<'_>,
    loaded: &Loaded,
    completions: &crate::completions::Completions,
) -> anyhow::Result<f64> {
    let n = ctx.args.messages as u64;
    let (before, _) = completions.tally();
    let step = Step {
        label: format!("compare: pipeline {n} tasks"),
        stem: format!("compare-pipeline-{}", ctx.steps.len()),
        users: 32,
        run_time: Duration::from_secs(600),
        rate: None,
        thresholds: Vec::new(),
        abort_on_threshold: false,
        print: false,
        max_requests: Some(n),
    };
    let mix = Mix::SUBMIT_ONLY;
    let started = Instant::now();
    let measured = ctx
        .session
        .runner()
        .run(&loaded.workload, mix, &step, &loaded.target.sut_args)
        .await?;
    let accepted = measured.aggregate.statuses.get("202").copied().unwrap_or(0);
    ctx.steps.push(measured);
    tasks_per_s(completions, before, accepted, started).await
}

/// Tasks per second from `started` to the end of the `accepted`-th task after `before`.
async fn tasks_per_s(
    completions: &crate::completions::Completions,
    before: u64,
    accepted: u64,
    started: Instant,
) -> anyhow::Result<f64> {
    anyhow::ensure!(accepted > 0, "no task was accepted");
    let last = completions
        .wait_count(before + accepted, Duration::from_secs(300))
        .await
        .ok_or_else(|| anyhow::anyhow!("{accepted} accepted tasks did not all end within 300 s"))?;
    Ok(accepted as f64 / (last - started).as_secs_f64())
}

/// The pipeline with wrk: submissions for as long as the raw pair took, then until they ended.
/// The pipeline with wrk: tasks per second, and the submissions' P99 (ms) as wrk saw it.
async fn wrk_pipeline(
    loaded: &Loaded,
    completions: &crate::completions::Completions,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<(f64, Option<f64>)> {
    let (before, _) = completions.tally();
    let w = Wrk {
        base_url: &loaded.target.base_url,
        token: loaded.target.token.as_deref(),
        connections,
        duration,
        cpu: None,
    };
    let started = Instant::now();
    let r = w
        .run(&Request::SubmitTask {
            body: r#"{"type":"echo","payload":{"n":1}}"#,
        })
        .await?;
    eprintln!(
        "    wrk:   {:.0} submissions/s accepted, P99 {}",
        (r.requests - r.non_2xx) as f64 / duration.as_secs_f64(),
        r.p99_ms.map_or("-".into(), |p| format!("{p:.2} ms"))
    );
    let rate = tasks_per_s(completions, before, r.requests - r.non_2xx, started).await?;
    Ok((rate, r.p99_ms))
}

/// The task pipeline against the raw lapin pair.
async fn pipeline(ctx: &mut Ctx<'_>, loaded: &Loaded) -> anyhow::Result<Vec<Comparison>> {
    let (Some(amqp), Waiter::Events(completions)) =
        (&loaded.target.amqp_url, &loaded.workload.waiter)
    else {
        eprintln!("note: the pipeline comparison needs the system's broker and events; skipped");
        return Ok(Vec::new());
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "task_id": uuid::Uuid::new_v4(), "type": "echo", "payload": {"n": 1}}))?;
    let mut goose_rounds = Vec::new();
    let mut wrk_rounds = Vec::new();
    for round in 1..=ctx.args.rounds {
        eprintln!("  pipeline round {round}/{}", ctx.args.rounds);
        let raw = raw_pair::measure(amqp, ctx.args.messages, &body).await?;
        if ctx.wants(Generator::Goose) {
            let ours = goose_pipeline(ctx, loaded, completions).await?;
            eprintln!("    goose: pipeline {ours:.0} tasks/s, raw pair {raw:.0} msg/s");
            goose_rounds.push(Round {
                ours: (ours, None),
                theirs: (raw, None),
            });
        }
        if ctx.wants(Generator::Wrk) {
            let raw_time =
                Duration::from_secs_f64(ctx.args.messages as f64 / raw).max(Duration::from_secs(2));
            let duration = raw_time.max(ctx.args.duration / 2);
            let (ours, submit_p99) =
                wrk_pipeline(loaded, completions, duration, ctx.args.pipeline_connections).await?;
            eprintln!("    wrk:   pipeline {ours:.0} tasks/s, raw pair {raw:.0} msg/s");
            wrk_rounds.push(Round {
                ours: (ours, submit_p99),
                theirs: (raw, None),
            });
        }
    }
    // With wrk, "ours" carries the submissions' P99 as wrk saw it.
    let name = "task pipeline (202 → SUCCESS) vs raw lapin publisher + consumer";
    let labels = ("reference tasks", "raw lapin pair");
    let mut out = Vec::new();
    if !goose_rounds.is_empty() {
        out.push(comparison(name, "goose", labels, "msg/s", &goose_rounds));
    }
    if !wrk_rounds.is_empty() {
        out.push(comparison(name, "wrk", labels, "msg/s", &wrk_rounds));
    }
    Ok(out)
}

pub async fn run(args: CompareArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(
        args.goose.host.is_none(),
        "compare starts the reference and its comparators itself; it cannot drive --host"
    );
    let mut args = args;
    if args.generator != Generator::Goose && !wrk::available() {
        anyhow::ensure!(
            args.generator == Generator::Both,
            "wrk is not installed (apt-get install wrk)"
        );
        eprintln!("note: wrk is not installed (apt-get install wrk); comparing with goose only");
        args.generator = Generator::Goose;
    }
    let mut session =
        Session::start("load-compare", args.common.clone(), args.goose.clone()).await?;
    let spec = session.spec(&[]);
    let loaded = session.load(&spec).await?;
    let mut ctx = Ctx {
        session: &session,
        args: &args,
        steps: Vec::new(),
    };
    let mut comparisons = Vec::new();
    let mut outcome = Ok(());
    if args.only.contains(&Which::Read) {
        match reads(&mut ctx, &loaded).await {
            Ok(c) => comparisons.extend(c),
            Err(e) => outcome = Err(e),
        }
    }
    if outcome.is_ok() && args.only.contains(&Which::Pipeline) {
        match pipeline(&mut ctx, &loaded).await {
            Ok(c) => comparisons.extend(c),
            Err(e) => outcome = Err(e),
        }
    }
    let steps = std::mem::take(&mut ctx.steps);
    loaded.stop().await;
    outcome?;
    comparisons.iter().for_each(print);
    let load = LoadReport {
        profile: "compare".into(),
        steps,
        comparisons,
        ..Default::default()
    };
    let parameters = BTreeMap::from([
        ("rounds".to_string(), serde_json::json!(args.rounds)),
        ("messages".to_string(), serde_json::json!(args.messages)),
        ("pinned".to_string(), serde_json::json!(!args.no_pin)),
    ]);
    session.finish(parameters, Vec::new(), load, true)
}
