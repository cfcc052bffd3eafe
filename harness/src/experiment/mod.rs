//! An experiment, in the spirit of Chaos Toolkit: a title and a hypothesis, a steady-state
//! hypothesis (probes with tolerances, judged before the faults and after they heal), the
//! method (a workload beside a fault schedule), rollbacks that always run, and the checkers
//! that judge the history. Declared as data (JSON): unknown fields are errors, so a misspelt
//! `"fualts"` cannot silently make a run that injects nothing and passes.
//!
//! The run: broker → links → webhook sink → SUT → signals → workload beside the nemesis →
//! rollbacks → final read → checkers and probes → `verdict.json` in the run directory.

mod account;
mod steady;

use std::{collections::BTreeMap, future::Future, path::Path, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

pub use steady::{Probe, SteadyState};

use crate::{
    checker::{self, Checker},
    client::Client,
    conformance::Conformance,
    final_read::FinalRead,
    history::{f, History},
    infra::{Broker, BrokerChoice},
    nemesis::{self, Fault, Nemesis, Step},
    ops::Recorder,
    run::RunDir,
    signals::{Sample, Sampler, Source},
    sink::{Receiver, Sink},
    sut::{link_name, Deployment, External, Store, SutConfig},
    workload::{self, Generator, Limits, Mix, Tally},
};

/// Objectives the SLO and recovery checkers hold the run to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
            // Not 0, which any run meets: a system that answers one request in twenty with a
            // 5xx or not at all fails an experiment that did not say otherwise.
            availability: 0.95,
            recovery: Duration::from_secs(30),
        }
    }
}

/// A rollback: what runs after the method, whether it ended, failed or was interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rollback", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Rollback {
    /// Heal every fault still in force and start every process of the system that is down.
    HealAll,
    /// Heal one fault, injected or not (e.g. an alarm raised outside the schedule).
    Heal { fault: Fault },
}

/// What to run; every field has a default, so `{}` is a valid experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    /// A line for people; the name when empty.
    pub title: String,
    /// What the experiment expects of the system.
    pub hypothesis: String,
    pub seed: u64,
    /// The broker the run needs: a private `node` for broker faults, a `cluster` for member
    /// loss; `auto` takes `AMQP_URL`, else a private node.
    pub broker: BrokerChoice,
    /// Extra `rabbitmq.conf` lines for the private node(s), e.g. `consumer_timeout = 5000`.
    pub broker_config: Vec<String>,
    pub sut: SutConfig,
    pub mix: Mix,
    /// Operations in total.
    pub ops: u64,
    #[serde(with = "crate::duration")]
    pub duration: Duration,
    pub concurrency: usize,
    /// Operations per second; unbounded when absent.
    pub rate: Option<f64>,
    pub steady_state: SteadyState,
    pub faults: Vec<Step>,
    pub rollbacks: Vec<Rollback>,
    /// Checkers to apply (see [`CHECKERS`]); all that apply when empty.
    pub checkers: Vec<String>,
    /// Tag every task with a callback to the harness's sink and check the callbacks.
    pub callbacks: bool,
    /// How the sink answers callbacks (failing first, slowly).
    pub receiver: Receiver,
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
            title: String::new(),
            hypothesis: String::new(),
            seed: 1,
            broker: BrokerChoice::Auto,
            broker_config: Vec::new(),
            sut: SutConfig::default(),
            mix: Mix::default(),
            ops: 500,
            duration: Duration::from_secs(60),
            concurrency: 8,
            rate: None,
            steady_state: SteadyState::default(),
            faults: Vec::new(),
            rollbacks: vec![Rollback::HealAll],
            checkers: Vec::new(),
            callbacks: true,
            receiver: Receiver::default(),
            token: None,
            request_timeout: Duration::from_secs(5),
            settle_timeout: Duration::from_secs(30),
            objectives: Objectives::default(),
            external: None,
        }
    }
}

/// Every checker an experiment can name; `steady-state` and `contract` are judged by the run.
pub const CHECKERS: [&str; 11] = [
    "task-ledger",
    "idempotency",
    "bank",
    "dead-letters",
    "queue-residue",
    "slo",
    "callbacks",
    "recovery",
    "users",
    "steady-state",
    "contract",
];

const DEFAULT_HYPOTHESIS: &str = "Nothing accepted is lost or done twice, every task ends in \
     its documented state, and the steady state returns once the faults heal.";

/// A bad experiment file: where, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{origin}: at `{path}`: {message}")]
    Format {
        origin: String,
        path: String,
        message: String,
    },
    #[error("{origin}: {problems}")]
    Invalid { origin: String, problems: String },
    #[error("cannot read {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
}

impl Experiment {
    /// Reads an experiment from JSON, refusing unknown fields and faults that cannot apply;
    /// errors name the origin (a file), the field's path and the line.
    pub fn parse(text: &str, origin: &str) -> Result<Experiment, ExperimentError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let exp: Experiment =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ExperimentError::Format {
                origin: origin.to_string(),
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        de.end().map_err(|e| ExperimentError::Format {
            origin: origin.to_string(),
            path: ".".into(),
            message: e.to_string(),
        })?;
        let problems = exp.problems();
        if problems.is_empty() {
            Ok(exp)
        } else {
            Err(ExperimentError::Invalid {
                origin: origin.to_string(),
                problems: problems.join("; "),
            })
        }
    }

    /// Reads an experiment file.
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
            origin: origin.clone(),
            source,
        })?;
        Experiment::parse(&text, &origin)
    }

    /// What cannot work in this experiment, before anything is started.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checkers
            .iter()
            .filter(|c| !CHECKERS.contains(&c.as_str()))
            .map(|c| format!("unknown checker `{c}` (known: {})", CHECKERS.join(", ")))
            .collect();
        out.extend(self.faults.iter().enumerate().filter_map(|(i, step)| {
            self.fault_problem(&step.fault)
                .map(|p| format!("faults[{i}] ({}): {p}", step.fault.kind()))
        }));
        if self.ops == 0 || self.concurrency == 0 {
            out.push("`ops` and `concurrency` must be at least 1".into());
        }
        if self.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
            out.push("`rate` must be positive".into());
        }
        out
    }

    /// The processes and links of the system this experiment starts.
    fn processes(&self) -> Vec<String> {
        self.sut.process_names()
    }

    fn links(&self) -> Vec<String> {
        let mut to = vec!["broker"];
        if self.sut.store == Store::Mysql {
            to.push("store");
        }
        if self.sut.redis {
            to.push("redis");
        }
        self.processes()
            .iter()
            .flat_map(|p| to.iter().map(move |t| link_name(p, t)))
            .collect()
    }

    fn fault_problem(&self, fault: &Fault) -> Option<String> {
        let target = fault.target();
        let external = self.external.is_some();
        match fault {
            Fault::Kill { .. } | Fault::Restart { .. } | Fault::Pause { .. } => {
                if external {
                    return Some("an external system's processes are not the harness's".into());
                }
                let known = self.processes();
                (!known.contains(&target))
                    .then(|| format!("no process `{target}` (known: {})", known.join(", ")))
            }
            _ if fault.on_broker() => match (self.broker, fault) {
                (BrokerChoice::Cluster, _) => None,
                (_, f) if f.on_cluster() => Some("needs `\"broker\": \"cluster\"`".into()),
                (BrokerChoice::Node, _) => None,
                _ => Some("needs a broker the harness starts: `\"broker\": \"node\"`".into()),
            },
            _ => {
                if external || !self.sut.via_links {
                    return Some("link faults need the reference started with `via_links`".into());
                }
                let known = self.links();
                (!known.contains(&target))
                    .then(|| format!("no link `{target}` (known: {})", known.join(", ")))
            }
        }
    }

    fn wants(&self, checker: &str) -> bool {
        self.checkers.is_empty() || self.checkers.iter().any(|c| c == checker)
    }

    /// The title, or the name when none was given.
    pub fn title(&self) -> &str {
        if self.title.is_empty() {
            &self.name
        } else {
            &self.title
        }
    }

    /// Time to recover after each heal, held to the objective.
    fn recovery_checker(&self) -> checker::Recovery {
        checker::Recovery {
            f: f::SUBMIT.to_string(),
            limit_ms: self.objectives.recovery.as_secs_f64() * 1000.0,
        }
    }

    /// The checkers this experiment's verdict is made of.
    pub fn checkers(&self) -> Vec<Box<dyn Checker>> {
        let submit = || f::SUBMIT.to_string();
        let mut all: Vec<Box<dyn Checker>> = vec![
            Box::new(checker::TaskLedger),
            Box::new(checker::Idempotency),
            Box::new(checker::Bank),
            Box::new(checker::DeadLetters),
            Box::new(checker::QueueResidue),
            Box::new(checker::Users),
            Box::new(checker::Slo {
                f: submit(),
                p99_ms: self.objectives.p99_ms,
                availability: self.objectives.availability,
            }),
        ];
        if self.callbacks {
            all.push(Box::new(checker::Callbacks));
        }
        if !self.faults.is_empty() {
            all.push(Box::new(self.recovery_checker()));
        }
        all.retain(|c| self.wants(c.name()));
        all
    }
}

/// The workload beside the fault schedule.
async fn drive(
    exp: &Experiment,
    recorder: &Recorder,
    sink: Option<&Sink>,
    nemesis: &Nemesis<'_>,
) -> Tally {
    let mut mix = exp.mix.clone();
    mix.callback_base = sink.map(Sink::base_url);
    let limits = Limits {
        ops: exp.ops,
        duration: exp.duration,
        concurrency: exp.concurrency,
        rate: exp.rate,
    };
    let (tally, ()) = tokio::join!(
        workload::run(recorder, Generator::new(exp.seed, mix), &limits),
        nemesis::run_schedule(nemesis, &exp.faults)
    );
    tally
}

/// Runs the experiment's rollbacks.
async fn roll_back(exp: &Experiment, nemesis: &Nemesis<'_>) {
    for rollback in &exp.rollbacks {
        match rollback {
            Rollback::HealAll => nemesis.heal_all().await,
            Rollback::Heal { fault } => {
                if let Err(e) = nemesis.heal(fault).await {
                    tracing::warn!(?fault, error = %e, "rollback could not heal");
                }
            }
        }
    }
}

/// Runs `exp` against `broker`, writing everything into `run`; returns the report.
pub async fn execute(
    exp: &Experiment,
    broker: &Broker,
    run: &RunDir,
) -> anyhow::Result<reports::RunReport> {
    execute_until(exp, broker, run, std::future::pending()).await
}

/// Like [`execute`], but stops the method when `interrupt` completes (Ctrl-C): the rollbacks
/// still run, everything started is stopped, and the report says the run was interrupted.
pub async fn execute_until(
    exp: &Experiment,
    broker: &Broker,
    run: &RunDir,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<reports::RunReport> {
    if let Some(problem) = broker_problem(exp, broker) {
        anyhow::bail!("{}: {problem}", exp.name);
    }
    run.write_json("experiment.json", exp)?;
    let deployment = Deployment::start(&exp.sut, exp.external.as_ref(), broker, run.path()).await?;
    // The history's clock starts with the method, so its times read as seconds into the run.
    let history = History::to_file(&run.file("history.jsonl"))?;
    let sink = if exp.callbacks {
        Some(
            Sink::start(
                &exp.sut.callback_secret,
                history.clone(),
                exp.receiver.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let conformance = Arc::new(Conformance::of_this_contract());
    let client = Client::new(&deployment.base_url, exp.token.clone(), exp.request_timeout)
        .with_conformance(conformance.clone());
    let recorder = Recorder::new(client.clone(), history.clone());
    let sampling_from = history.now_ns() as f64 / 1e9;
    let sampler = Sampler::start(
        Source {
            base_url: deployment.base_url.clone(),
            token: exp.token.clone(),
            amqp_url: Some(broker.amqp_url()),
            names: Some(deployment.names.clone()),
            broker_metrics: broker.metrics_urls(),
        },
        Duration::from_millis(500),
    );
    let nemesis = Nemesis::new(
        deployment.sut.as_ref(),
        deployment.links.as_ref(),
        broker,
        history.clone(),
    );
    let tally = tokio::select! {
        tally = drive(exp, &recorder, sink.as_ref(), &nemesis) => Some(tally),
        () = interrupt => None,
    };
    roll_back(exp, &nemesis).await;
    let Some(tally) = tally else {
        tracing::warn!("interrupted: rolled back; stopping the system");
        sampler.stop().await;
        deployment.stop().await;
        history.flush()?;
        let mut verdict = reports::Verdict::new("interrupted");
        verdict.undecided();
        verdict.summary("the run was interrupted; rollbacks ran and the system was stopped");
        return Ok(run.finish(
            "harness",
            deployment.describe(&exp.sut, broker),
            BTreeMap::new(),
            vec![verdict],
        )?);
    };

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
    let mut samples = sampler.stop().await;
    for s in &mut samples {
        s.t += sampling_from;
    }
    if deployment.stop_processes().await {
        read.reread_work_queues(&mut state).await;
    }
    deployment.teardown().await;
    history.flush()?;
    run.write_json("final.json", &state)?;
    let mut verdicts = checker::check_all(&exp.checkers(), &ops, &state);
    let (probes, steady_verdict) = steady::judge(&exp.steady_state, &ops, &samples);
    if exp.wants("steady-state") {
        verdicts.push(steady_verdict);
    }
    if exp.wants("contract") {
        // Every answer the workload got, held to the contract's document as it came.
        verdicts.push(conformance.verdict());
    }

    let parameters = BTreeMap::from([
        ("seed".to_string(), serde_json::json!(exp.seed)),
        ("workload".to_string(), serde_json::to_value(tally)?),
        ("faults".to_string(), serde_json::to_value(&exp.faults)?),
    ]);
    let mut report = run.report(
        "harness",
        deployment.describe(&exp.sut, broker),
        parameters,
        verdicts,
    );
    let recoveries = exp.recovery_checker().per_heal(&ops, &state);
    report.chaos = Some(chaos_account(
        exp,
        &report,
        probes,
        &ops,
        &samples,
        &recoveries,
    ));
    run.write_report(&mut report)?;
    Ok(report)
}

/// Broker faults need a broker the harness started; found before anything starts.
fn broker_problem(exp: &Experiment, broker: &Broker) -> Option<String> {
    let needs_node = exp.faults.iter().any(|s| s.fault.on_broker());
    let needs_cluster = exp.faults.iter().any(|s| s.fault.on_cluster());
    if needs_cluster {
        broker.cluster().err()
    } else if needs_node {
        broker.node().err()
    } else {
        None
    }
}

/// The experiment's account for the reports.
fn chaos_account(
    exp: &Experiment,
    report: &reports::RunReport,
    steady_state: Vec<reports::chaos::ProbeResult>,
    ops: &[crate::history::Op],
    samples: &[Sample],
    recoveries: &[checker::HealRecovery],
) -> reports::ChaosReport {
    let recovery = report.verdicts.iter().find(|v| v.checker == "recovery");
    let measured = |name: &str| recovery.and_then(|v| v.measurements.get(name).copied());
    reports::ChaosReport {
        title: exp.title().to_string(),
        hypothesis: if exp.hypothesis.is_empty() {
            DEFAULT_HYPOTHESIS.to_string()
        } else {
            exp.hypothesis.clone()
        },
        hypothesis_held: match report.validity {
            reports::Validity::Valid => Some(true),
            reports::Validity::Invalid => Some(false),
            reports::Validity::Unknown => None,
        },
        steady_state,
        faults: account::fault_windows(ops, recoveries),
        recovery: reports::chaos::Recovery {
            accepting_ms: measured("max_recovery_ms"),
            completing_ms: measured("max_completion_recovery_ms"),
        },
        series: account::series(ops, samples),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment, String> {
        Experiment::parse(text, "test.json").map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_object_is_the_default_experiment() {
        assert_eq!(parse("{}").unwrap(), Experiment::default());
        assert!(parse(r#"{"ops": "many"}"#).is_err());
    }

    #[test]
    fn a_misspelt_field_is_refused_with_its_path_and_line() {
        let e = parse("{\n  \"name\": \"x\",\n  \"fualts\": []\n}").unwrap_err();
        assert!(
            e.contains("unknown field `fualts`") && e.contains("line 3"),
            "{e}"
        );
        let e = parse(r#"{"sut": {"wrokers": 3}}"#).unwrap_err();
        assert!(e.contains("wrokers"), "{e}");
        let e =
            parse(r#"{"faults": [{"at": "1s", "hold": "1s", "fault": "kill", "proces": "api"}]}"#)
                .unwrap_err();
        assert!(e.contains("faults[0]") && e.contains("proces"), "{e}");
        let e = parse(r#"{"steady_state": {"probes": [{"probe": "p99", "max": 3}]}}"#).unwrap_err();
        assert!(e.contains("steady_state.probes[0]"), "{e}");
    }

    #[test]
    fn faults_that_cannot_apply_are_refused_before_anything_starts() {
        let kill = |p: &str| {
            format!(
                r#"{{"faults": [{{"at": "1s", "hold": "1s", "fault": "kill", "process": "{p}"}}]}}"#
            )
        };
        assert!(parse(&kill("worker-1")).is_ok());
        let e = parse(&kill("worker-2")).unwrap_err();
        assert!(e.contains("no process `worker-2`"), "{e}");
        let e = parse(r#"{"faults": [{"at": "1s", "hold": "1s", "fault": "link-down", "link": "worker-0-store"}]}"#)
            .unwrap_err();
        assert!(e.contains("no link `worker-0-store`"), "{e}");
        let e = parse(r#"{"faults": [{"at": "1s", "hold": "1s", "fault": "broker-kill"}]}"#)
            .unwrap_err();
        assert!(e.contains(r#""broker": "node""#), "{e}");
        assert!(parse(
            r#"{"broker": "node", "faults": [{"at": "1s", "hold": "1s", "fault": "broker-kill"}]}"#
        )
        .is_ok());
        let e = parse(r#"{"broker": "node", "faults": [{"at": "1s", "hold": "1s", "fault": "member-loss", "member": 1}]}"#)
            .unwrap_err();
        assert!(e.contains("cluster"), "{e}");
        let e = parse(r#"{"checkers": ["ledger"]}"#).unwrap_err();
        assert!(e.contains("unknown checker `ledger`"), "{e}");
    }

    #[test]
    fn defaults_are_not_vacuous() {
        let exp = Experiment::default();
        assert!(exp.objectives.availability >= 0.9);
        assert!(!exp.steady_state.probes.is_empty());
        assert_eq!(exp.rollbacks, vec![Rollback::HealAll]);
        let names: Vec<String> = exp
            .checkers()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert!(names.contains(&"task-ledger".to_string()) && names.contains(&"slo".to_string()));
        let only = parse(r#"{"checkers": ["bank"]}"#).unwrap();
        assert_eq!(only.checkers().len(), 1);
    }

    /// The shipped examples stay valid as the format evolves.
    #[test]
    fn shipped_experiments_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let exp = Experiment::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!exp.name.is_empty());
            n += 1;
        }
        assert!(n > 0, "examples exist");
    }
}
