//! The nemesis: injects faults into processes, links and brokers, heals them, and records both
//! in the history (`start-fault`, `stop-fault` by the process `nemesis`), so checkers can tell
//! what happened when.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    history::{f, History, OpType, NEMESIS},
    infra::Broker,
    links::{LinkError, Links},
    sut::{ReferenceSut, SutError, SutProcess},
};

/// One fault, and (implicitly) how it heals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 of a process (`api`, `worker-0`, ...); healed by starting it again.
    Kill { process: String },
    /// SIGSTOP; healed by SIGCONT.
    Pause { process: String },
    /// A link refuses and cuts connections; healed by enabling it.
    LinkDown { link: String },
    /// Latency added to what comes back over a link.
    Latency {
        link: String,
        ms: u32,
        #[serde(default)]
        jitter_ms: u32,
    },
    /// Nothing passes a link (connections stay open); healed by removing it.
    Blackhole { link: String },
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
    LimitData { link: String, bytes: u32 },
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
    /// kill -9 of one cluster member; healed by its rejoin.
    MemberLoss { member: usize },
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

/// What the nemesis can reach.
pub struct Nemesis<'a> {
    /// The reference's processes; `None` for an external system (no process faults).
    pub sut: Option<&'a ReferenceSut>,
    pub links: Option<&'a Links>,
    pub broker: &'a Broker,
    pub history: History,
}

impl Nemesis<'_> {
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
        self.recorded(f::START_FAULT, fault, self.inject(fault))
            .await
    }

    /// Heals `fault`, recording it.
    pub async fn heal(&self, fault: &Fault) -> Result<(), NemesisError> {
        self.recorded(f::STOP_FAULT, fault, self.undo(fault)).await
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

    async fn inject(&self, fault: &Fault) -> Result<(), NemesisError> {
        match fault {
            Fault::Kill { process } => self.process(process)?.kill(),
            Fault::Pause { process } => self.process(process)?.pause(),
            Fault::LinkDown { link } => self.links()?.down(link).await?,
            Fault::Latency {
                link,
                ms,
                jitter_ms,
            } => self.links()?.latency(link, *ms, *jitter_ms).await?,
            Fault::Blackhole { link } => self.links()?.blackhole(link, 0).await?,
            Fault::ResetPeer { link, after_ms } => {
                self.links()?.reset_peer(link, *after_ms).await?
            }
            Fault::Bandwidth { link, kb_per_s } => self.links()?.bandwidth(link, *kb_per_s).await?,
            Fault::Slicer { link } => self.links()?.slicer(link, 64, 32, 500).await?,
            Fault::LimitData { link, bytes } => self.links()?.limit_data(link, *bytes).await?,
            Fault::SlowClose { link, ms } => self.links()?.slow_close(link, *ms).await?,
            broker_fault => self
                .broker
                .inject(broker_fault)
                .await
                .map_err(NemesisError::Broker)?,
        }
        Ok(())
    }

    async fn undo(&self, fault: &Fault) -> Result<(), NemesisError> {
        match fault {
            Fault::Kill { process } => self.process(process)?.restart().await?,
            Fault::Pause { process } => self.process(process)?.resume(),
            Fault::LinkDown { link } => self.links()?.up(link).await?,
            Fault::Latency { link, .. }
            | Fault::Blackhole { link }
            | Fault::ResetPeer { link, .. }
            | Fault::Bandwidth { link, .. }
            | Fault::Slicer { link }
            | Fault::LimitData { link, .. }
            | Fault::SlowClose { link, .. } => self.links()?.clear(link).await?,
            broker_fault => self
                .broker
                .heal(broker_fault)
                .await
                .map_err(NemesisError::Broker)?,
        }
        Ok(())
    }
}

/// A fault at a time, held for a while, then healed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Since the workload started.
    #[serde(with = "crate::duration")]
    pub at: Duration,
    #[serde(with = "crate::duration")]
    pub hold: Duration,
    #[serde(flatten)]
    pub fault: Fault,
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
                jitter_ms: 0
            }
        );
        assert_eq!(steps[2].hold, Duration::from_secs(1));
        assert!(serde_json::from_str::<Vec<Step>>(
            r#"[{"at": "1s", "hold": "1s", "fault": "unplug"}]"#
        )
        .is_err());
    }
}
