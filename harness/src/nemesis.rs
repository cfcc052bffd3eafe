//! The nemesis: injects faults into processes, links and brokers, heals them, and records both
//! in the history (`start-fault`, `stop-fault` by the process `nemesis`), so checkers can tell
//! what happened when.

use std::{sync::Mutex, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    history::{f, History, OpType, NEMESIS},
    infra::{rabbit::Alarm, Broker},
    links::{LinkError, Links, Stream},
    sut::{ReferenceSut, SutError, SutProcess},
};

/// How long a graceful stop may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One fault, and (implicitly) how it heals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// kill -9 of a process (`api`, `worker-0`, ...); healed by starting it again.
    Kill { process: String },
    /// A deploy's restart: SIGTERM (the process drains and exits), then, at the heal, started
    /// again. Steps of these one after another make a rolling restart.
    Restart { process: String },
    /// SIGSTOP; healed by SIGCONT.
    Pause { process: String },
    /// A link refuses and cuts connections; healed by enabling it.
    LinkDown { link: String },
    /// Latency added to one direction of a link: what comes back (`downstream`, the default)
    /// or what the process sends (`upstream`).
    Latency {
        link: String,
        ms: u32,
        #[serde(default)]
        jitter_ms: u32,
        #[serde(default)]
        stream: Stream,
    },
    /// Nothing passes a link, or one direction of it when `stream` is given: connections stay
    /// open and what is sent waits (a consumer's acks held with `upstream`); healed by
    /// removing it. A cut while it holds loses what waits.
    Blackhole {
        link: String,
        #[serde(default)]
        stream: Option<Stream>,
    },
    /// Connections over a link are reset (TCP RST).
    ResetPeer {
        link: String,
        #[serde(default)]
        after_ms: u32,
    },
    /// A link limited to `kb_per_s`.
    Bandwidth { link: String, kb_per_s: u32 },
    /// Writes over a link split into small delayed pieces.
    Slicer { link: String },
    /// A link closes connections after `bytes`.
    LimitData {
        link: String,
        bytes: u32,
        /// `downstream` (what the upstream sends back; the default) or `upstream`.
        #[serde(default)]
        stream: Stream,
    },
    /// A link delays closes.
    SlowClose { link: String, ms: u32 },
    /// The broker node stops (gracefully); healed by starting it again.
    BrokerStop,
    /// kill -9 of the broker node; healed by starting it again.
    BrokerKill,
    /// SIGSTOP of the broker node; healed by SIGCONT.
    BrokerPause,
    /// A memory alarm: the broker blocks publishers; healed by clearing it.
    MemoryAlarm,
    /// A disk alarm (free-space limit above the disk's size): publishers blocked likewise.
    DiskAlarm,
    /// kill -9 of one cluster member; healed by its rejoin.
    MemberLoss { member: usize },
    /// One cluster member cut off from the others (its clients still reach it); healed by
    /// reconnecting it.
    Partition { member: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum NemesisError {
    #[error("no process `{0}` in the system under test")]
    NoProcess(String),
    #[error("link faults need links (the SUT was started without them)")]
    NoLinks,
    #[error("broker faults need a broker the harness started: {0}")]
    Broker(String),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Sut(#[from] SutError),
}

impl Fault {
    /// The fault's kind as written in experiment files, e.g. `link-down`.
    pub fn kind(&self) -> String {
        let value = serde_json::to_value(self).expect("fault serialises");
        value["fault"].as_str().unwrap_or_default().to_string()
    }

    /// What it hits: a process, a link, or the broker.
    pub fn target(&self) -> String {
        match self {
            Fault::Kill { process } | Fault::Restart { process } | Fault::Pause { process } => {
                process.clone()
            }
            Fault::LinkDown { link }
            | Fault::Latency { link, .. }
            | Fault::Blackhole { link, .. }
            | Fault::ResetPeer { link, .. }
            | Fault::Bandwidth { link, .. }
            | Fault::Slicer { link }
            | Fault::LimitData { link, .. }
            | Fault::SlowClose { link, .. } => link.clone(),
            Fault::MemberLoss { member } | Fault::Partition { member } => {
                format!("member-{member}")
            }
            _ => "broker".into(),
        }
    }

    /// Whether it acts on the broker itself (needs a broker the harness started).
    pub fn on_broker(&self) -> bool {
        matches!(
            self,
            Fault::BrokerStop
                | Fault::BrokerKill
                | Fault::BrokerPause
                | Fault::MemoryAlarm
                | Fault::DiskAlarm
        ) || self.on_cluster()
    }

    /// Whether it needs a cluster.
    pub fn on_cluster(&self) -> bool {
        matches!(self, Fault::MemberLoss { .. } | Fault::Partition { .. })
    }
}

/// What the nemesis can reach, and the faults in force now (so that a rollback heals exactly
/// those, also after a cancelled schedule).
pub struct Nemesis<'a> {
    /// The reference's processes; `None` for an external system (no process faults).
    pub sut: Option<&'a ReferenceSut>,
    pub links: Option<&'a Links>,
    pub broker: &'a Broker,
    pub history: History,
    active: Mutex<Vec<Fault>>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        sut: Option<&'a ReferenceSut>,
        links: Option<&'a Links>,
        broker: &'a Broker,
        history: History,
    ) -> Nemesis<'a> {
        Nemesis {
            sut,
            links,
            broker,
            history,
            active: Mutex::new(Vec::new()),
        }
    }

    /// Faults injected and not yet healed.
    pub fn active(&self) -> Vec<Fault> {
        self.active.lock().expect("nemesis lock").clone()
    }

    /// Heals every fault still in force, and starts any of the system's processes that is
    /// not running (a rollback: runs after the method, also when it failed or was cancelled).
    pub async fn heal_all(&self) {
        for fault in self.active() {
            if let Err(e) = self.heal(&fault).await {
                tracing::warn!(?fault, error = %e, "rollback could not heal");
            }
        }
        for process in self.sut.into_iter().flat_map(ReferenceSut::processes) {
            process.resume();
            if !process.is_running() {
                if let Err(e) = process.restart().await {
                    tracing::warn!(process = %process.name, error = %e, "rollback could not start");
                }
            }
        }
    }
    fn process(&self, name: &str) -> Result<&SutProcess, NemesisError> {
        self.sut
            .and_then(|s| s.processes().find(|p| p.name == name))
            .ok_or_else(|| NemesisError::NoProcess(name.to_string()))
    }

    fn links(&self) -> Result<&Links, NemesisError> {
        self.links.ok_or(NemesisError::NoLinks)
    }

    /// Injects `fault`, recording it.
    pub async fn start(&self, fault: &Fault) -> Result<(), NemesisError> {
        // In force from the first attempt: a half-done injection is healed too.
        self.active
            .lock()
            .expect("nemesis lock")
            .push(fault.clone());
        self.recorded(f::START_FAULT, fault, self.inject(fault))
            .await
    }

    /// Heals `fault`, recording it.
    pub async fn heal(&self, fault: &Fault) -> Result<(), NemesisError> {
        let result = self.recorded(f::STOP_FAULT, fault, self.undo(fault)).await;
        let mut active = self.active.lock().expect("nemesis lock");
        if let Some(i) = active.iter().position(|a| a == fault) {
            active.remove(i);
        }
        result
    }

    async fn recorded(
        &self,
        f: &str,
        fault: &Fault,
        act: impl std::future::Future<Output = Result<(), NemesisError>>,
    ) -> Result<(), NemesisError> {
        let value = serde_json::to_value(fault).expect("fault serialises");
        let inv = self.history.invoke(NEMESIS, f, value.clone());
        let result = act.await;
        match &result {
            Ok(()) => self.history.complete(&inv, OpType::Ok, value, None),
            Err(e) => self
                .history
                .complete(&inv, OpType::Info, value, Some(e.to_string())),
        }
        tracing::info!(%f, ?fault, ok = result.is_ok(), "nemesis");
        result
    }

    fn node(&self) -> Result<&crate::infra::rabbit::Node, NemesisError> {
        self.broker.node().map_err(NemesisError::Broker)
    }

    fn cluster(&self) -> Result<&crate::infra::rabbit::Cluster, NemesisError> {
        self.broker.cluster().map_err(NemesisError::Broker)
    }

    async fn inject(&self, fault: &Fault) -> Result<(), NemesisError> {
        let broker = |e: crate::infra::rabbit::RabbitError| NemesisError::Broker(e.to_string());
        match fault {
            Fault::Kill { process } => self.process(process)?.kill(),
            Fault::Restart { process } => {
                self.process(process)?.stop(STOP_GRACE).await;
            }
            Fault::Pause { process } => self.process(process)?.pause(),
            Fault::LinkDown { link } => self.links()?.down(link).await?,
            Fault::Latency {
                link,
                ms,
                jitter_ms,
                stream,
            } => {
                self.links()?
                    .latency(link, *ms, *jitter_ms, *stream)
                    .await?
            }
            Fault::Blackhole { link, stream } => self.links()?.blackhole(link, 0, *stream).await?,
            Fault::ResetPeer { link, after_ms } => {
                self.links()?.reset_peer(link, *after_ms).await?
            }
            Fault::Bandwidth { link, kb_per_s } => self.links()?.bandwidth(link, *kb_per_s).await?,
            Fault::Slicer { link } => self.links()?.slicer(link, 64, 32, 500).await?,
            Fault::LimitData {
                link,
                bytes,
                stream,
            } => self.links()?.limit_data(link, *bytes, *stream).await?,
            Fault::SlowClose { link, ms } => self.links()?.slow_close(link, *ms).await?,
            Fault::BrokerStop => self.node()?.stop().await.map_err(broker)?,
            Fault::BrokerKill => self.node()?.kill(),
            Fault::BrokerPause => self.node()?.pause(),
            Fault::MemoryAlarm => self
                .node()?
                .set_alarm(Alarm::Memory, true)
                .await
                .map_err(broker)?,
            Fault::DiskAlarm => self
                .node()?
                .set_alarm(Alarm::Disk, true)
                .await
                .map_err(broker)?,
            Fault::MemberLoss { member } => self.cluster()?.lose_member(*member),
            Fault::Partition { member } => {
                self.cluster()?.partition(*member).await.map_err(broker)?
            }
        }
        Ok(())
    }

    async fn undo(&self, fault: &Fault) -> Result<(), NemesisError> {
        let broker = |e: crate::infra::rabbit::RabbitError| NemesisError::Broker(e.to_string());
        match fault {
            Fault::Kill { process } | Fault::Restart { process } => {
                self.process(process)?.restart().await?
            }
            Fault::Pause { process } => self.process(process)?.resume(),
            Fault::LinkDown { link } => self.links()?.up(link).await?,
            Fault::Latency { link, .. }
            | Fault::Blackhole { link, .. }
            | Fault::ResetPeer { link, .. }
            | Fault::Bandwidth { link, .. }
            | Fault::Slicer { link }
            | Fault::LimitData { link, .. }
            | Fault::SlowClose { link, .. } => self.links()?.clear(link).await?,
            Fault::BrokerStop | Fault::BrokerKill => {
                self.node()?.start_again().await.map_err(broker)?
            }
            Fault::BrokerPause => self.node()?.resume(),
            Fault::MemoryAlarm => self
                .node()?
                .set_alarm(Alarm::Memory, false)
                .await
                .map_err(broker)?,
            Fault::DiskAlarm => self
                .node()?
                .set_alarm(Alarm::Disk, false)
                .await
                .map_err(broker)?,
            Fault::MemberLoss { member } => {
                self.cluster()?.rejoin(*member).await.map_err(broker)?
            }
            Fault::Partition { member } => self
                .cluster()?
                .heal_partition(*member)
                .await
                .map_err(broker)?,
        }
        Ok(())
    }
}

/// A fault at a time, held for a while, then healed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Since the workload started.
    #[serde(with = "crate::duration")]
    pub at: Duration,
    #[serde(with = "crate::duration")]
    pub hold: Duration,
    #[serde(flatten)]
    pub fault: Fault,
}

/// By hand, because serde cannot refuse unknown fields of a struct that flattens another: the
/// timing is taken out and the rest must be exactly one fault.
impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut timing = |name: &'static str| {
            let value = map
                .remove(name)
                .ok_or_else(|| D::Error::missing_field(name))?;
            crate::duration::deserialize(value)
                .map_err(|e| D::Error::custom(format!("`{name}`: {e}")))
        };
        let (at, hold) = (timing("at")?, timing("hold")?);
        let given: Vec<String> = map.keys().cloned().collect();
        let fault = Fault::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        // Serde lets a unit variant (`broker-kill`) through with any fields beside its tag.
        let known = serde_json::to_value(&fault).map_err(D::Error::custom)?;
        if let Some(extra) = given.iter().find(|k| known.get(k.as_str()).is_none()) {
            return Err(D::Error::custom(format!(
                "unknown field `{extra}` for fault `{}`",
                fault.kind()
            )));
        }
        Ok(Step { at, hold, fault })
    }
}

/// Runs every step of a schedule (steps may overlap); errors are recorded, not fatal.
pub async fn run_schedule(nemesis: &Nemesis<'_>, steps: &[Step]) {
    let started = tokio::time::Instant::now();
    let runs = steps.iter().map(|step| async move {
        tokio::time::sleep_until(started + step.at).await;
        if nemesis.start(&step.fault).await.is_ok() {
            tokio::time::sleep(step.hold).await;
        }
        let _ = nemesis.heal(&step.fault).await;
    });
    futures_util::future::join_all(runs).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_from_json() {
        let steps: Vec<Step> = serde_json::from_str(
            r#"[{"at": "2s", "hold": "500ms", "fault": "kill", "process": "worker-0"},
                {"at": "1s", "hold": "3s", "fault": "latency", "link": "api-broker", "ms": 200},
                {"at": "4s", "hold": "1s", "fault": "member-loss", "member": 2}]"#,
        )
        .unwrap();
        assert_eq!(
            steps[0].fault,
            Fault::Kill {
                process: "worker-0".into()
            }
        );
        assert_eq!(
            steps[1].fault,
            Fault::Latency {
                link: "api-broker".into(),
                ms: 200,
                jitter_ms: 0,
                stream: Stream::Downstream
            }
        );
        assert_eq!(steps[2].hold, Duration::from_secs(1));
        assert!(serde_json::from_str::<Vec<Step>>(
            r#"[{"at": "1s", "hold": "1s", "fault": "unplug"}]"#
        )
        .is_err());
        let misspelt = serde_json::from_str::<Vec<Step>>(
            r#"[{"at": "1s", "hold": "1s", "fault": "kill", "proces": "api"}]"#,
        )
        .unwrap_err();
        assert!(misspelt.to_string().contains("proces"), "{misspelt}");
        assert!(serde_json::from_str::<Vec<Step>>(
            r#"[{"at": "1s", "hold": "1s", "fault": "broker-kill", "extra": 1}]"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Vec<Step>>(r#"[{"hold": "1s", "fault": "broker-kill"}]"#)
                .unwrap_err()
                .to_string()
                .contains("at")
        );
    }
}
