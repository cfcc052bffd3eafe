//! An experiment: a system under test, a workload, a fault schedule and the checkers' limits,
//! declared as data (JSON), and the run that executes it end to end:
//!
//! broker → links → webhook sink → SUT → workload beside the nemesis → final read → checkers →
//! `verdict.json` in the run directory.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    checker::{self, Checker},
    client::Client,
    conformance::Conformance,
    final_read::FinalRead,
    history::History,
    infra::Broker,
    nemesis::{self, Nemesis, Step},
    ops::Recorder,
    run::RunDir,
    sink::Sink,
    sut::{Deployment, External, SutConfig},
    workload::{self, Generator, Limits, Mix, Tally},
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
    /// Attach to this system instead of starting the reference (`sut` is then ignored).
    pub external: Option<External>,
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
            external: None,
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

/// The workload beside the fault schedule.
async fn drive(
    exp: &Experiment,
    d: &Deployment,
    broker: &Broker,
    recorder: &Recorder,
    sink: Option<&Sink>,
) -> Tally {
    let mut mix = exp.mix.clone();
    mix.callback_base = sink.map(Sink::base_url);
    let limits = Limits {
        ops: exp.ops,
        duration: exp.duration,
        concurrency: exp.concurrency,
        rate: exp.rate,
    };
    let nemesis = Nemesis {
        sut: d.sut.as_ref(),
        links: d.links.as_ref(),
        broker,
        history: recorder.history.clone(),
    };
    let (tally, ()) = tokio::join!(
        workload::run(recorder, Generator::new(exp.seed, mix), &limits),
        nemesis::run_schedule(&nemesis, &exp.faults)
    );
    tally
}

/// Runs `exp` against `broker`, writing everything into `run`; returns the report.
pub async fn execute(
    exp: &Experiment,
    broker: &Broker,
    run: &RunDir,
) -> anyhow::Result<reports::RunReport> {
    run.write_json("experiment.json", exp)?;
    let history = History::to_file(&run.file("history.jsonl"))?;
    let sink = if exp.callbacks {
        Some(Sink::start(&exp.sut.callback_secret, history.clone(), 0).await?)
    } else {
        None
    };
    let deployment = Deployment::start(&exp.sut, exp.external.as_ref(), broker, run.path()).await?;
    let conformance = Arc::new(Conformance::of_this_contract());
    let client = Client::new(&deployment.base_url, exp.token.clone(), exp.request_timeout)
        .with_conformance(conformance.clone());
    let recorder = Recorder::new(client.clone(), history.clone());
    let tally = drive(exp, &deployment, broker, &recorder, sink.as_ref()).await;

    tracing::info!("final read");
    let amqp_url = broker.amqp_url();
    let read = FinalRead {
        client: &client,
        amqp_url: &amqp_url,
        names: &deployment.names,
        sink: sink.as_ref(),
        settle_timeout: exp.settle_timeout,
    };
    let ops = history.ops();
    let mut state = read.read(&ops).await;
    if deployment.stop_processes().await {
        read.reread_work_queues(&mut state).await;
    }
    deployment.teardown().await;
    history.flush()?;
    run.write_json("final.json", &state)?;
    let mut verdicts = checker::check_all(&exp.checkers(), &ops, &state);
    // Every answer the workload got, held to the contract's document as it came.
    verdicts.push(conformance.verdict());

    let parameters = BTreeMap::from([
        ("seed".to_string(), serde_json::json!(exp.seed)),
        ("workload".to_string(), serde_json::to_value(tally)?),
        ("faults".to_string(), serde_json::to_value(&exp.faults)?),
    ]);
    Ok(run.finish(
        "harness",
        deployment.describe(&exp.sut, broker),
        parameters,
        verdicts,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_is_the_default_experiment() {
        assert_eq!(
            serde_json::from_str::<Experiment>("{}").unwrap(),
            Experiment::default()
        );
        assert!(serde_json::from_str::<Experiment>(r#"{"ops": "many"}"#).is_err());
    }

    /// The shipped examples stay valid as the format evolves.
    #[test]
    fn shipped_experiments_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let exp: Experiment =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!exp.name.is_empty());
            n += 1;
        }
        assert!(n > 0, "examples exist");
    }
}
