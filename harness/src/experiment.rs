//! An experiment: a system under test, a workload, a fault schedule and the checkers' limits,
//! declared as data (JSON), and the run that executes it end to end:
//!
//! broker → links → webhook sink → SUT → workload beside the nemesis → final read → checkers →
//! `verdict.json` in the run directory.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    checker::{self, Checker},
    client::Client,
    final_read::FinalRead,
    history::History,
    infra::Broker,
    links::Links,
    nemesis::{self, Nemesis, Step},
    ops::Recorder,
    run::RunDir,
    sink::Sink,
    sut::{ReferenceSut, SutConfig},
    workload::{self, Generator, Limits, Mix},
};

/// Objectives the SLO and recovery checkers hold the run to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Objectives {
    /// p99 of accepted submissions, in milliseconds.
    pub p99_ms: f64,
    /// Share of submissions that must be accepted.
    pub availability: f64,
    /// Longest time from a heal to the next accepted submission.
    #[serde(with = "crate::duration")]
    pub recovery: Duration,
}

impl Default for Objectives {
    fn default() -> Self {
        Objectives {
            p99_ms: 1000.0,
            availability: 0.0,
            recovery: Duration::from_secs(30),
        }
    }
}

/// What to run; every field has a default, so `{}` is a valid experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub name: String,
    pub seed: u64,
    pub sut: SutConfig,
    pub mix: Mix,
    /// Operations in total.
    pub ops: u64,
    #[serde(with = "crate::duration")]
    pub duration: Duration,
    pub concurrency: usize,
    /// Operations per second; unbounded when absent.
    pub rate: Option<f64>,
    pub faults: Vec<Step>,
    /// Tag every task with a callback to the harness's sink and check the callbacks.
    pub callbacks: bool,
    /// Bearer token for the SUT's API.
    pub token: Option<String>,
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
    /// How long the final read waits for the system to settle.
    #[serde(with = "crate::duration")]
    pub settle_timeout: Duration,
    pub objectives: Objectives,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            name: "run".into(),
            seed: 1,
            sut: SutConfig::default(),
            mix: Mix::default(),
            ops: 500,
            duration: Duration::from_secs(60),
            concurrency: 8,
            rate: None,
            faults: Vec::new(),
            callbacks: true,
            token: None,
            request_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(30),
            objectives: Objectives::default(),
        }
    }
}

impl Experiment {
    /// The checkers this experiment's verdict is made of.
    pub fn checkers(&self) -> Vec<Box<dyn Checker>> {
        let mut all: Vec<Box<dyn Checker>> = vec![
            Box::new(checker::TaskLedger),
            Box::new(checker::Idempotency),
            Box::new(checker::Bank),
            Box::new(checker::DeadLetters),
            Box::new(checker::QueueResidue),
            Box::new(checker::Slo {
                f: crate::history::f::SUBMIT.into(),
                p99_ms: self.objectives.p99_ms,
                availability: self.objectives.availability,
            }),
        ];
        if self.callbacks {
            all.push(Box::new(checker::Callbacks));
        }
        if !self.faults.is_empty() {
            let limit_ms = self.objectives.recovery.as_secs_f64() * 1000.0;
            all.push(Box::new(checker::Recovery {
                f: crate::history::f::SUBMIT.into(),
                limit_ms,
            }));
        }
        all
    }
}

/// Runs `exp` against `broker`, writing everything into `run`; returns the report.
pub async fn execute(
    exp: &Experiment,
    broker: &Broker,
    run: &RunDir,
) -> anyhow::Result<reports::RunReport> {
    run.write_json("experiment.json", exp)?;
    let history = History::to_file(&run.file("history.jsonl"))?;
    let links = if exp.sut.via_links {
        Some(Links::start().await?)
    } else {
        None
    };
    let sink = if exp.callbacks {
        Some(Sink::start(&exp.sut.callback_secret, history.clone(), 0).await?)
    } else {
        None
    };
    tracing::info!(run = %run.path().display(), broker = %broker.describe(), "starting the system under test");
    let sut = ReferenceSut::start(&exp.sut, &broker.amqp_url(), links.as_ref(), run.path()).await?;
    let client = Client::new(&sut.base_url(), exp.token.clone(), exp.request_timeout);
    let recorder = Recorder::new(client.clone(), history.clone());

    let mut mix = exp.mix.clone();
    mix.callback_base = sink.as_ref().map(Sink::base_url);
    let limits = Limits {
        ops: exp.ops,
        duration: exp.duration,
        concurrency: exp.concurrency,
        rate: exp.rate,
    };
    let nemesis = Nemesis {
        sut: &sut,
        links: links.as_ref(),
        broker,
        history: history.clone(),
    };
    let (tally, ()) = tokio::join!(
        workload::run(&recorder, Generator::new(exp.seed, mix), &limits),
        nemesis::run_schedule(&nemesis, &exp.faults)
    );

    tracing::info!("final read");
    let amqp_url = broker.amqp_url();
    let read = FinalRead {
        client: &client,
        amqp_url: &amqp_url,
        names: &sut.names,
        sink: sink.as_ref(),
        settle_timeout: exp.settle_timeout,
    };
    let ops = history.ops();
    let state = read.read(&ops).await;
    history.flush()?;
    run.write_json("final.json", &state)?;
    let verdicts = checker::check_all(&exp.checkers(), &ops, &state);

    sut.stop(Duration::from_secs(10)).await;
    if let Err(e) = sut.teardown().await {
        tracing::warn!(error = %e, "topology not deleted");
    }
    let mut sut_info = BTreeMap::from([
        ("kind".to_string(), "reference".to_string()),
        ("prefix".to_string(), sut.names.prefix.clone()),
        ("workers".to_string(), exp.sut.workers.to_string()),
        ("args".to_string(), exp.sut.args.join(" ")),
        ("broker".to_string(), broker.describe()),
    ]);
    sut_info.insert(
        "links".into(),
        links.as_ref().map_or("none".into(), Links::url),
    );
    let parameters = BTreeMap::from([
        ("seed".to_string(), serde_json::json!(exp.seed)),
        ("workload".to_string(), serde_json::to_value(tally)?),
        ("faults".to_string(), serde_json::to_value(&exp.faults)?),
    ]);
    Ok(run.finish("harness", sut_info, parameters, verdicts)?)
}
