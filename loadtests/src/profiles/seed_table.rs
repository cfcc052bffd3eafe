//! `loadtests seed-table`: the seed's chapter 2.5 ("优化前/优化后": QPS 120 → 860, P99 480 ms →
//! 68 ms, error rate 2.1 % → 0.2 %) along its optimisation path, one row per step, each a
//! fresh reference on the same broker under the same mixed workload:
//!
//! original API → Redis cache → gzip → database index → asynchronous log writing.
//!
//! The first row is the seed's "before" as an honest configuration: everything robust, no
//! cache, no compression, no secondary indexes, log lines written inside the request.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{
    load::{LoadStep, SeedFigures, SeedRow},
    LoadReport, RunReport,
};

use crate::{
    attack::Step,
    session::{summary_line, Common, Session},
    workload::Mix,
};

#[derive(Debug, Clone, Args)]
pub struct SeedTableArgs {
    #[command(flatten)]
    pub common: Common,

    /// Transaction weights: cached, after-write, list, create, submit, balance, e2e.
    #[arg(long, default_value_t = Mix::SEED, help_heading = "Workload")]
    pub mix: Mix,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

/// The seed's figures.
const SEED_BEFORE: SeedFigures = SeedFigures {
    qps: 120.0,
    p99_ms: 480.0,
    error_rate: 0.021,
};
const SEED_AFTER: SeedFigures = SeedFigures {
    qps: 860.0,
    p99_ms: 68.0,
    error_rate: 0.002,
};

/// The ladder: the seed's name of each step and the reference's switches for it.
pub fn ladder() -> Vec<(&'static str, Vec<String>)> {
    let flags = |cache: &str, gzip: &str, index: &str, log: &str| -> Vec<String> {
        [
            "--cache",
            cache,
            "--compression",
            gzip,
            "--db-indexes",
            index,
            "--log-writer",
            log,
        ]
        .map(str::to_string)
        .to_vec()
    };
    vec![
        ("original API", flags("off", "off", "none", "blocking")),
        ("+ Redis cache", flags("redis", "off", "none", "blocking")),
        ("+ gzip", flags("redis", "gzip", "none", "blocking")),
        (
            "+ database index",
            flags("redis", "gzip", "full", "blocking"),
        ),
        (
            "+ asynchronous log writing",
            flags("redis", "gzip", "full", "non-blocking"),
        ),
    ]
}

const USERS: usize = 64;
const RUN_TIME: Duration = Duration::from_secs(20);

/// The table's rows from the ladder's steps, with each step's gain over the one before.
pub fn rows(steps: &[(&str, LoadStep)]) -> Vec<SeedRow> {
    let last = steps.len().saturating_sub(1);
    let mut out: Vec<SeedRow> = Vec::new();
    for (i, (name, step)) in steps.iter().enumerate() {
        let ours = SeedFigures {
            qps: step.aggregate.rps,
            p99_ms: step.aggregate.p99_ms,
            error_rate: step.aggregate.error_rate,
        };
        let (qps_gain, p99_gain) = match out.last() {
            Some(prev) => (
                ours.qps / prev.ours.qps.max(f64::MIN_POSITIVE),
                prev.ours.p99_ms / ours.p99_ms.max(f64::MIN_POSITIVE),
            ),
            None => (1.0, 1.0),
        };
        let seed = match i {
            0 => Some(SEED_BEFORE),
            i if i == last => Some(SEED_AFTER),
            _ => None,
        };
        out.push(SeedRow {
            step: name.to_string(),
            sut_args: step.sut_args.clone(),
            ours,
            seed,
            qps_gain,
            p99_gain,
        });
    }
    out
}

/// Prints the seed's table shape with our figures beside the seed's.
pub fn print(rows: &[SeedRow]) {
    println!("the seed's optimisation table (chapter 2.5), measured");
    println!(
        "  {:<28} {:>10} {:>7} {:>10} {:>7} {:>8}   {:>8} {:>8} {:>7}",
        "step", "QPS", "gain", "P99 ms", "gain", "errors", "seed QPS", "seed P99", "errors"
    );
    for r in rows {
        let seed = r
            .seed
            .map_or(String::from("       -        -       -"), |s| {
                format!(
                    "{:>8} {:>6} ms {:>6.1} %",
                    s.qps,
                    s.p99_ms,
                    s.error_rate * 100.0
                )
            });
        println!(
            "  {:<28} {:>10.1} {:>6.2}x {:>10.2} {:>6.2}x {:>6.2} %   {seed}",
            r.step,
            r.ours.qps,
            r.qps_gain,
            r.ours.p99_ms,
            r.p99_gain,
            r.ours.error_rate * 100.0,
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "  before → after: QPS {:.2}x (seed {:.2}x), P99 {:.2}x faster (seed {:.2}x)",
            last.ours.qps / first.ours.qps.max(f64::MIN_POSITIVE),
            SEED_AFTER.qps / SEED_BEFORE.qps,
            first.ours.p99_ms / last.ours.p99_ms.max(f64::MIN_POSITIVE),
            SEED_BEFORE.p99_ms / SEED_AFTER.p99_ms,
        );
    }
}

pub async fn run(args: SeedTableArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(
        args.goose.host.is_none(),
        "seed-table changes the reference's switches row by row; it cannot drive --host"
    );
    let mut session =
        Session::start("load-seed-table", args.common.clone(), args.goose.clone()).await?;
    let ladder = ladder();
    let mut steps: Vec<(&str, LoadStep)> = Vec::new();
    for (i, (name, flags)) in ladder.iter().enumerate() {
        let spec = session.spec(flags);
        let loaded = session.load(&spec).await?;
        let step = Step {
            label: format!("seed-table: {name}"),
            stem: format!("seed-table-{}", i + 1),
            users: USERS,
            run_time: RUN_TIME,
            rate: None,
            thresholds: vec!["p99<1000ms".into()],
            abort_on_threshold: false,
            print: false,
            max_requests: None,
        };
        eprintln!(
            "[{}/{}] {name}: {}",
            i + 1,
            ladder.len(),
            spec.args.join(" ")
        );
        let result = session
            .runner()
            .run(&loaded.workload, args.mix, &step, &loaded.target.sut_args)
            .await;
        loaded.stop().await;
        let result = result?;
        eprintln!("      {}", summary_line(&result));
        steps.push((name, result));
    }
    let table = rows(&steps);
    print(&table);
    let load = LoadReport {
        profile: "seed-table".into(),
        steps: steps.into_iter().map(|(_, s)| s).collect(),
        seed_table: table,
        ..Default::default()
    };
    let parameters = BTreeMap::from([("mix".to_string(), serde_json::json!(args.mix.to_string()))]);
    session.finish(parameters, Vec::new(), load, true)
}
