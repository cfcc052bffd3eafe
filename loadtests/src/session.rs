//! What every profile shares: the options, the run directory, the broker, starting or
//! attaching the system, seeding it, and writing the verdict.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use clap::{Args, ValueEnum};
use goose::config::GooseConfiguration;
use harness::{
    infra::{Broker, BrokerChoice},
    run::RunDir,
    sut::Store,
};
use reports::{load::LoadStep, LoadReport, RunReport, Verdict};

use crate::{
    attack::Runner,
    completions::{Completions, Subscription},
    seed,
    target::{self, ReferenceSpec, Target},
    workload::{Waiter, Workload},
};

/// The store of a started reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// One SQLite file (a single host's processes).
    Sqlite,
    /// MariaDB/MySQL: `DATABASE_URL`, else a private server (several processes share it).
    Mysql,
}

impl StoreKind {
    pub fn harness(self) -> Store {
        match self {
            StoreKind::Sqlite => Store::Sqlite,
            StoreKind::Mysql => Store::Mysql,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Mysql => "mysql",
        }
    }
}

/// How the reference's processes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// An API process and `--workers` worker processes (every store; MariaDB's deployment).
    Separate,
    /// The API process runs a worker too (`reference all`), plus `--workers` - 1 worker
    /// processes: SQLite's one-process deployment, whose one writer no other process contends
    /// with. Every guarantee is the same; only the processes differ.
    Combined,
}

/// How end-to-end transactions learn a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitBy {
    /// The system's events exchange (needs its broker: known for the reference, `--amqp-url`
    /// and `--prefix` for another system); costs the system nothing.
    Events,
    /// `GET /api/v1/tasks/{id}` every 5 ms, outside goose's figures (adds load).
    Poll,
}

/// Options every profile takes, besides goose's own.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Directory the run directory is created in [default: HARNESS_RUNS_DIR, else target/harness/runs].
    #[arg(long, help_heading = "Run")]
    pub out: Option<PathBuf>,

    /// Broker for the reference: auto (AMQP_URL, else a private node, else a container) | node | cluster.
    #[arg(long, value_enum, default_value_t = BrokerChoice::Auto, help_heading = "System under test")]
    pub broker: BrokerChoice,

    /// Store of the reference.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite, help_heading = "System under test")]
    pub store: StoreKind,

    /// Workers of the reference: worker processes beside its API process, or with
    /// `--layout combined` counting the API's own.
    #[arg(long, default_value_t = 1, help_heading = "System under test")]
    pub workers: usize,

    /// How the reference's processes are laid out.
    #[arg(long, value_enum, default_value_t = Layout::Separate, help_heading = "System under test")]
    pub layout: Layout,

    /// Extra flags for every reference process, e.g. "--cache off --publish confirm".
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "",
        help_heading = "System under test"
    )]
    pub sut_args: String,

    /// With --host: the system's broker, so that task ends are read from its events exchange
    /// and queue depths from its queues.
    #[arg(
        long,
        env = "LOADTESTS_AMQP_URL",
        hide_env_values = true,
        help_heading = "System under test"
    )]
    pub amqp_url: Option<String>,

    /// With --host: the system's AMQP prefix (its events exchange is `<prefix>.events`).
    #[arg(long, help_heading = "System under test")]
    pub prefix: Option<String>,

    /// Allow --host off this machine (a staging system you are allowed to load). The token
    /// comes from LOADTESTS_TOKEN and is never logged.
    #[arg(long, help_heading = "System under test")]
    pub allow_remote: bool,

    /// Requests one load step may send before it stops itself.
    #[arg(long, default_value_t = 1_000_000, help_heading = "Bounds")]
    pub max_requests: u64,

    /// Error rate, in percent, every run is held to (an error-rate threshold is always set).
    #[arg(long, default_value_t = 1.0, help_heading = "Bounds")]
    pub max_error_rate: f64,

    /// How long an end-to-end task may take before it counts as failed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", help_heading = "Bounds")]
    pub task_timeout: Duration,

    /// How end-to-end transactions learn that a task ended.
    #[arg(long, value_enum, default_value_t = WaitBy::Events, help_heading = "Bounds")]
    pub wait: WaitBy,
}

impl Common {
    /// `--sut-args` split into flags.
    pub fn sut_args(&self) -> Vec<String> {
        self.sut_args
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

/// A system under load, seeded, with its workload.
pub struct Loaded {
    pub target: Target,
    pub workload: Arc<Workload>,
    subscription: Option<Subscription>,
}

impl Loaded {
    pub async fn stop(self) {
        if let Some(s) = self.subscription {
            s.close().await;
        }
        self.target.stop().await;
    }

    /// Where the sampler reads the backlog.
    pub fn backlog_source(&self) -> harness::signals::Source {
        harness::signals::Source {
            base_url: self.target.base_url.clone(),
            token: self.target.token.clone(),
            amqp_url: self.target.amqp_url.clone(),
            names: self.target.names.clone(),
            // The backlog is what load runs read; unacknowledged counts are for faults.
            broker_metrics: Vec::new(),
        }
    }
}

/// One run of a profile.
pub struct Session {
    pub run: RunDir,
    pub common: Common,
    pub goose: GooseConfiguration,
    broker: Option<Broker>,
    systems: usize,
}

impl Session {
    /// Creates the run directory and, unless `--host` names a system, the broker.
    pub async fn start(
        name: &str,
        common: Common,
        goose: GooseConfiguration,
    ) -> anyhow::Result<Session> {
        anyhow::ensure!(
            (0.0..=100.0).contains(&common.max_error_rate),
            "--max-error-rate is a percentage between 0 and 100"
        );
        if let Some(host) = &goose.host {
            target::check_host(host, common.allow_remote)?;
        }
        let run = RunDir::create(common.out.as_deref(), name)?;
        eprintln!("run directory: {}", run.path().display());
        let broker = match goose.host {
            Some(_) => None,
            None => Some(target::broker(common.broker, run.path()).await?),
        };
        Ok(Session {
            run,
            common,
            goose,
            broker,
            systems: 0,
        })
    }

    /// Whether this session drives the reference it starts (no `--host`).
    pub fn starts_reference(&self) -> bool {
        self.broker.is_some()
    }

    /// The broker of the started reference.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The reference as `--store`, `--workers` and `--sut-args` say, plus `extra` flags.
    pub fn spec(&self, extra: &[String]) -> ReferenceSpec {
        let mut args = self.common.sut_args();
        args.extend(extra.iter().cloned());
        ReferenceSpec {
            workers: self.common.workers,
            combined: self.common.layout == Layout::Combined,
            store: self.common.store.harness(),
            redis: args
                .windows(2)
                .any(|w| w[0] == "--cache" && w[1] == "redis"),
            args,
        }
    }

    /// Starts the reference as `spec` says (or attaches to `--host`), seeds it and builds
    /// the workload.
    pub async fn load(&mut self, spec: &ReferenceSpec) -> anyhow::Result<Loaded> {
        self.systems += 1;
        let target = match (&self.broker, &self.goose.host) {
            (Some(broker), _) => {
                let dir = self.run.file(&format!("sut-{}", self.systems));
                eprintln!(
                    "starting the reference ({} workers{}, {} store{})",
                    spec.workers,
                    if spec.combined {
                        ", one in the API's process"
                    } else {
                        ""
                    },
                    match spec.store {
                        Store::Sqlite => "sqlite",
                        Store::Mysql => "mysql",
                    },
                    if spec.args.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", spec.args.join(" "))
                    }
                );
                Target::start(spec, broker, &dir).await?
            }
            (None, Some(host)) => Target::attach(
                host,
                self.common.amqp_url.clone(),
                self.common.prefix.clone(),
                self.common.allow_remote,
            )?,
            (None, None) => unreachable!("a session has a broker or a host"),
        };
        let seeded = seed::seed(&target, target::WARMUP_TIMEOUT).await?;
        let (waiter, subscription) = self.waiter(&target).await?;
        let workload = Arc::new(Workload::new(seeded, waiter, self.common.task_timeout));
        Ok(Loaded {
            target,
            workload,
            subscription,
        })
    }

    async fn waiter(&self, target: &Target) -> anyhow::Result<(Waiter, Option<Subscription>)> {
        let events = match (&self.common.wait, &target.amqp_url, &target.names) {
            (WaitBy::Events, Some(url), Some(names)) => Some((url, names.events_exchange())),
            (WaitBy::Events, _, _) => {
                eprintln!(
                    "note: the system's broker is not known (--amqp-url, --prefix); \
                     end-to-end tasks are polled"
                );
                None
            }
            (WaitBy::Poll, _, _) => None,
        };
        match events {
            Some((url, exchange)) => {
                let completions = Arc::new(Completions::default());
                let sub = completions.subscribe(url, &exchange).await?;
                Ok((Waiter::Events(completions), Some(sub)))
            }
            None => Ok((Waiter::Poll(reqwest::Client::new()), None)),
        }
    }

    pub fn runner(&self) -> Runner {
        Runner {
            goose: self.goose.clone(),
            run_dir: self.run.path().to_path_buf(),
            max_error_rate: self.common.max_error_rate / 100.0,
            max_requests: self.common.max_requests,
        }
    }

    /// What the report says of the system under test.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut sut = BTreeMap::new();
        match (&self.broker, &self.goose.host) {
            (Some(broker), _) => {
                sut.insert("kind".into(), "reference".into());
                sut.insert("broker".into(), broker.describe());
                sut.insert("store".into(), self.common.store.name().into());
                sut.insert("workers".into(), self.common.workers.to_string());
                sut.insert(
                    "layout".into(),
                    format!("{:?}", self.common.layout).to_lowercase(),
                );
                sut.insert("args".into(), self.common.sut_args.clone());
            }
            (None, Some(host)) => {
                sut.insert("kind".into(), "external".into());
                sut.insert("base_url".into(), host.clone());
            }
            (None, None) => {}
        }
        sut
    }

    /// Writes `verdict.json` with the load measurements and returns the report; with
    /// `judge_steps`, each step's thresholds are a verdict of their own.
    pub fn finish(
        &self,
        parameters: BTreeMap<String, serde_json::Value>,
        mut verdicts: Vec<Verdict>,
        load: LoadReport,
        judge_steps: bool,
    ) -> anyhow::Result<RunReport> {
        if judge_steps {
            verdicts.splice(0..0, load.steps.iter().map(threshold_verdict));
        }
        let mut report = self
            .run
            .report("loadtests", self.describe(), parameters, verdicts);
        report.load = Some(load);
        self.run.write_report(&mut report)?;
        Ok(report)
    }
}

/// A step's thresholds as a verdict: invalid when one failed.
pub fn threshold_verdict(step: &LoadStep) -> Verdict {
    let mut v = Verdict::new(&format!("thresholds: {}", step.label));
    let failed = step.thresholds.iter().filter(|t| !t.passed).count();
    v.count("rules", step.thresholds.len() as u64)
        .count("failed", failed as u64)
        .measure("rps", step.aggregate.rps)
        .measure("p99_ms", step.aggregate.p99_ms)
        .measure("error_rate", step.aggregate.error_rate);
    for t in step.thresholds.iter().filter(|t| !t.passed) {
        v.anomaly(
            "threshold_failed",
            serde_json::json!({"rule": t.rule, "observed": t.observed}),
        );
    }
    let rules: Vec<&str> = step.thresholds.iter().map(|t| t.rule.as_str()).collect();
    v.summary(format!(
        "{} of {} rules passed ({})",
        step.thresholds.len() - failed,
        step.thresholds.len(),
        rules.join("; ")
    ));
    v
}

/// One line per step for the console.
pub fn summary_line(step: &LoadStep) -> String {
    let a = &step.aggregate;
    let mut line = format!(
        "{:>9.1} req/s  p50 {:>7.2} ms  p99 {:>8.2} ms  errors {:>6.2} %",
        a.rps,
        a.p50_ms,
        a.p99_ms,
        a.error_rate * 100.0
    );
    if let Some(t) = &step.tasks {
        line.push_str(&format!(
            "  | tasks {:.1}/s p50 {:.1} ms p99 {:.1} ms",
            t.rps, t.p50_ms, t.p99_ms
        ));
    }
    let failed: Vec<&str> = step
        .thresholds
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.rule.as_str())
        .collect();
    if !failed.is_empty() {
        line.push_str(&format!("  FAILED: {}", failed.join("; ")));
    }
    line
}
