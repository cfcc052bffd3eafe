//! The system a load run drives: the reference, started through the harness with its
//! fault-proxy links off (so the proxy's cost is not in the figures), or any system that speaks
//! the contract, attached by URL.

use std::{net::IpAddr, path::Path, time::Duration};

use contract::topology::Names;
use harness::{
    infra::{Broker, BrokerChoice},
    sut::{Deployment, Store, SutConfig},
};

/// Environment variable holding the bearer token for an attached system.
pub const TOKEN_ENV: &str = "LOADTESTS_TOKEN";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{0} is not a loopback address; load tests only leave this machine with --allow-remote \
         (and then only against a system you are allowed to load)"
    )]
    NotLoopback(String),
    #[error("--host {0} is not a URL: {1}")]
    BadUrl(String, url::ParseError),
}

/// Refuses a target off this machine unless the user opted in.
pub fn check_host(url: &str, allow_remote: bool) -> Result<(), TargetError> {
    let parsed = url::Url::parse(url).map_err(|e| TargetError::BadUrl(url.to_string(), e))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    if loopback || allow_remote {
        Ok(())
    } else {
        Err(TargetError::NotLoopback(url.to_string()))
    }
}

/// How to start the reference for a load run.
#[derive(Debug, Clone)]
pub struct ReferenceSpec {
    pub workers: usize,
    /// The API process runs a worker too (`--layout combined`).
    pub combined: bool,
    pub store: Store,
    /// Give it a Redis (for `--cache redis`).
    pub redis: bool,
    /// Extra flags of every process, e.g. `--cache off`.
    pub args: Vec<String>,
}

/// A system under load.
pub struct Target {
    pub base_url: String,
    /// The broker the system uses, when known: task completions are read from its events
    /// exchange and queue depths from its queues.
    pub amqp_url: Option<String>,
    pub names: Option<Names>,
    pub token: Option<String>,
    /// The reference's flags (empty for an attached system).
    pub sut_args: Vec<String>,
    /// Process ids of the reference's processes (API first).
    pub pids: Vec<i32>,
    /// The reference's directory: its SQLite store and its logs.
    pub dir: Option<std::path::PathBuf>,
    deployment: Option<Deployment>,
}

impl Target {
    /// Starts the reference on `broker`, its logs and store under `dir`, with a fresh token.
    pub async fn start(spec: &ReferenceSpec, broker: &Broker, dir: &Path) -> anyhow::Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut args = vec!["--token".to_string(), token.clone()];
        args.extend(spec.args.iter().cloned());
        let config = SutConfig {
            workers: spec.workers,
            combined: spec.combined,
            args,
            store: spec.store.clone(),
            redis: spec.redis,
            via_links: false,
            ..SutConfig::default()
        };
        let deployment = Deployment::start(&config, None, broker, dir).await?;
        let pids = deployment
            .sut
            .iter()
            .flat_map(|s| s.processes())
            .filter_map(|p| p.pid())
            .collect();
        Ok(Target {
            base_url: deployment.base_url.clone(),
            amqp_url: Some(broker.amqp_url()),
            names: Some(deployment.names.clone()),
            token: Some(token),
            sut_args: spec.args.clone(),
            pids,
            dir: Some(dir.to_path_buf()),
            deployment: Some(deployment),
        })
    }

    /// Attaches to a system by URL; its token comes from [`TOKEN_ENV`], and its broker and
    /// prefix, when given, let the run read completions and queue depths.
    pub fn attach(
        base_url: &str,
        amqp_url: Option<String>,
        prefix: Option<String>,
        allow_remote: bool,
    ) -> anyhow::Result<Self> {
        check_host(base_url, allow_remote)?;
        let names = prefix.map(|prefix| Names {
            prefix,
            retry_delays: Vec::new(),
        });
        Ok(Target {
            base_url: base_url.trim_end_matches('/').to_string(),
            amqp_url,
            names,
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            sut_args: Vec::new(),
            pids: Vec::new(),
            dir: None,
            deployment: None,
        })
    }

    /// Whether the harness started this system.
    pub fn is_reference(&self) -> bool {
        self.deployment.is_some()
    }

    /// Stops what was started (gracefully) and deletes its topology.
    pub async fn stop(self) {
        if let Some(d) = self.deployment {
            d.stop().await;
        }
    }
}

/// Provisions the broker for runs that start the reference (design §4's order).
pub async fn broker(choice: BrokerChoice, run_dir: &Path) -> anyhow::Result<Broker> {
    Ok(Broker::provision(choice, &run_dir.join("broker"), &[]).await?)
}

/// How long to wait for a started system's first answers.
pub const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_opt_in() {
        assert!(check_host("http://127.0.0.1:8080", false).is_ok());
        assert!(check_host("http://localhost:1", false).is_ok());
        assert!(check_host("http://[::1]:1", false).is_ok());
        assert!(matches!(
            check_host("http://10.0.0.5:8080", false),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(check_host("http://staging.example.com", true).is_ok());
        assert!(matches!(
            check_host("not a url", true),
            Err(TargetError::BadUrl(..))
        ));
    }
}
