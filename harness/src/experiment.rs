//! An experiment: a system under test, a workload, a fault schedule and the checkers' limits,
//! declared as data (JSON), and the run that executes it end to end:
//!
//! broker → links → webhook sink → SUT → workload beside the nemesis → final read → checkers →
//! `verdict.json` in the run directory.

use std::{collections::BTreeMap, time::Duration};

use contract::topology::Names;
use serde::{Deserialize, Serialize};

use crate::{
    checker::{self, Checker},
    client::Client,
    final_read::FinalRead,
    history::History,
    infra::{
        services::{Mysql, Redis},
        Broker,
    },
    links::Links,
    nemesis::{self, Nemesis, Step},
    ops::Recorder,
    run::RunDir,
    sink::Sink,
    sut::{Backends, ReferenceSut, Store, SutConfig},
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

/// A system that speaks the contract, attached by URL instead of started by the harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct External {
    pub base_url: String,
    /// Its topology's prefix and retry delays, for queue depths and dead letters.
    pub prefix: String,
    #[serde(with = "crate::duration::list", default)]
    pub retry_delays: Vec<Duration>,
}

/// The system under test and what was started for it.
struct Deployment {
    links: Option<Links>,
    sut: Option<ReferenceSut>,
    base_url: String,
    names: Names,
    // Held for the run's length: dropping them stops private servers.
    _mysql: Option<Mysql>,
    _redis: Option<Redis>,
}

impl Deployment {
    async fn start(exp: &Experiment, broker: &Broker, run: &RunDir) -> anyhow::Result<Deployment> {
        if let Some(ext) = &exp.external {
            let names = Names {
                prefix: ext.prefix.clone(),
                retry_delays: ext.retry_delays.clone(),
            };
            return Ok(Deployment {
                links: None,
                sut: None,
                base_url: ext.base_url.clone(),
                names,
                _mysql: None,
                _redis: None,
            });
        }
        let links = if exp.sut.via_links {
            Some(Links::start().await?)
        } else {
            None
        };
        let services = run.file("services");
        let mysql = match exp.sut.store {
            Store::Mysql => Some(Mysql::provision(&services).await?),
            Store::Sqlite => None,
        };
        let redis = if exp.sut.redis {
            Some(Redis::provision(&services).await?)
        } else {
            None
        };
        let backends = Backends {
            amqp_url: broker.amqp_url(),
            mysql_url: mysql.as_ref().map(Mysql::url),
            redis_url: redis.as_ref().map(|r| r.url().to_string()),
        };
        tracing::info!(run = %run.path().display(), broker = %broker.describe(), "starting the system under test");
        let sut = ReferenceSut::start(&exp.sut, &backends, links.as_ref(), run.path()).await?;
        let (base_url, names) = (sut.base_url(), sut.names.clone());
        Ok(Deployment {
            links,
            sut: Some(sut),
            base_url,
            names,
            _mysql: mysql,
            _redis: redis,
        })
    }

    /// What the report says of the system under test.
    fn describe(&self, exp: &Experiment, broker: &Broker) -> BTreeMap<String, String> {
        let kind = if self.sut.is_some() {
            "reference"
        } else {
            "external"
        };
        let mut info = BTreeMap::from([
            ("kind".to_string(), kind.to_string()),
            ("base_url".to_string(), self.base_url.clone()),
            ("prefix".to_string(), self.names.prefix.clone()),
            ("broker".to_string(), broker.describe()),
            (
                "links".to_string(),
                self.links.as_ref().map_or("none".into(), Links::url),
            ),
        ]);
        if self.sut.is_some() {
            info.insert("workers".into(), exp.sut.workers.to_string());
            info.insert("args".into(), exp.sut.args.join(" "));
        }
        info
    }

    async fn stop(&self) {
        if let Some(sut) = &self.sut {
            sut.stop(Duration::from_secs(10)).await;
            if let Err(e) = sut.teardown().await {
                tracing::warn!(error = %e, "topology not deleted");
            }
        }
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
    let deployment = Deployment::start(exp, broker, run).await?;
    let client = Client::new(&deployment.base_url, exp.token.clone(), exp.request_timeout);
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
    let state = read.read(&ops).await;
    history.flush()?;
    run.write_json("final.json", &state)?;
    let verdicts = checker::check_all(&exp.checkers(), &ops, &state);
    deployment.stop().await;

    let parameters = BTreeMap::from([
        ("seed".to_string(), serde_json::json!(exp.seed)),
        ("workload".to_string(), serde_json::to_value(tally)?),
        ("faults".to_string(), serde_json::to_value(&exp.faults)?),
    ]);
    Ok(run.finish(
        "harness",
        deployment.describe(exp, broker),
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
