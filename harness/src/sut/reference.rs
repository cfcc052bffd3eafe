//! The reference system as the system under test: an `api` process and N `worker` processes
//! with chosen strategies, each wired to the broker (and to a MySQL store, and a Redis) through
//! its own link, so that a fault can hit one path and not the others.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use contract::topology::Names;
use serde::{Deserialize, Serialize};

use super::{process::SutProcess, SutError};
use crate::links::Links;

/// Where the reference keeps its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// One SQLite file in the run directory, shared by the processes of this host.
    Sqlite,
    /// A MySQL/MariaDB database (see [`Backends`]); each process reaches it through its own link.
    Mysql,
}

/// Where the system's dependencies are: the broker, and the MySQL and Redis it was given.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    pub amqp_url: String,
    pub mysql_url: Option<String>,
    pub redis_url: Option<String>,
}

/// How to start the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SutConfig {
    /// Workers in all, counting the API's own when `combined`.
    pub workers: usize,
    /// The API process runs a worker too (`reference all`): SQLite's one-process deployment,
    /// where no second process contends for the file's one writer.
    pub combined: bool,
    /// Flags given to every process: strategy switches (`--dedupe none`), tuning.
    pub args: Vec<String>,
    /// Retry delays; short by default so that runs end quickly.
    #[serde(with = "crate::duration::list")]
    pub retry_delays: Vec<Duration>,
    pub store: Store,
    /// Give the processes a Redis (`--cache redis`, `--dedupe redis-setnx` need one).
    pub redis: bool,
    /// Wire every process through its own fault-proxy link.
    pub via_links: bool,
    pub callback_secret: String,
    /// Queue prefix; unique per run when absent.
    pub prefix: Option<String>,
}

impl SutConfig {
    /// The names of the processes this configuration starts: the API first.
    pub fn process_names(&self) -> Vec<String> {
        let separate = self.workers - usize::from(self.combined && self.workers > 0);
        let workers = (0..separate).map(|i| format!("worker-{i}"));
        std::iter::once("api".to_string()).chain(workers).collect()
    }
}

impl Default for SutConfig {
    fn default() -> Self {
        SutConfig {
            workers: 2,
            combined: false,
            args: Vec::new(),
            retry_delays: vec![
                Duration::from_millis(200),
                Duration::from_millis(400),
                Duration::from_millis(800),
            ],
            store: Store::Sqlite,
            redis: false,
            via_links: true,
            callback_secret: "harness-secret".into(),
            prefix: None,
        }
    }
}

/// A started reference system.
pub struct ReferenceSut {
    pub api: SutProcess,
    pub workers: Vec<SutProcess>,
    pub names: Names,
    binary: PathBuf,
    /// The broker, directly (for final reads and teardown).
    amqp_url: String,
    torn_down: std::sync::atomic::AtomicBool,
}

/// A run that panicked or returned early still deletes its queues and exchanges.
impl Drop for ReferenceSut {
    fn drop(&mut self) {
        if !self.torn_down.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = self.teardown_command().output();
        }
    }
}

/// Name of the link between a process and the broker or the store.
pub fn link_name(process: &str, to: &str) -> String {
    format!("{process}-{to}")
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> Result<String, SutError> {
    let mut u = url::Url::parse(url).map_err(|e| SutError::Config(format!("`{url}`: {e}")))?;
    u.set_host(Some(&addr.ip().to_string()))
        .map_err(|e| SutError::Config(e.to_string()))?;
    u.set_port(Some(addr.port()))
        .map_err(|_| SutError::Config(format!("`{url}` cannot take a port")))?;
    Ok(u.to_string())
}

/// The `host:port` a URL points at.
fn target(url: &str, default_port: u16) -> Result<SocketAddr, SutError> {
    let u = url::Url::parse(url).map_err(|e| SutError::Config(format!("`{url}`: {e}")))?;
    let host = u.host_str().unwrap_or("127.0.0.1");
    let port = u.port().unwrap_or(default_port);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| SutError::Config(format!("`{url}`: {e}")))?
        .next()
        .ok_or_else(|| SutError::Config(format!("`{url}` resolves to nothing")))
}

impl ReferenceSut {
    /// Starts the API, then the workers (the API declares the topology first).
    pub async fn start(
        config: &SutConfig,
        backends: &Backends,
        links: Option<&Links>,
        dir: &Path,
    ) -> Result<ReferenceSut, SutError> {
        let binary = super::reference_binary()?;
        let prefix = config
            .prefix
            .clone()
            .unwrap_or_else(|| format!("h-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
        let names = Names {
            prefix,
            retry_delays: config.retry_delays.clone(),
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(SutError::Io)?;
        let wiring = Wiring {
            config,
            backends,
            links: links.filter(|_| config.via_links),
            dir,
            names: &names,
        };
        if config.combined && config.workers == 0 {
            return Err(SutError::Config(
                "a combined API runs a worker: `workers` must be at least 1".into(),
            ));
        }
        let process_names = config.process_names();
        let api_mode = if config.combined { "all" } else { "api" };
        let api = SutProcess::new("api", &binary, wiring.args(api_mode, "api").await?, &logs)?;
        api.start().await?;
        let mut workers = Vec::with_capacity(process_names.len() - 1);
        for name in &process_names[1..] {
            let w = SutProcess::new(name, &binary, wiring.args("worker", name).await?, &logs)?;
            w.start().await?;
            workers.push(w);
        }
        Ok(ReferenceSut {
            api,
            workers,
            names,
            binary,
            amqp_url: backends.amqp_url.clone(),
            torn_down: Default::default(),
        })
    }

    pub fn base_url(&self) -> String {
        self.api.base_url()
    }

    /// Every process: the API first.
    pub fn processes(&self) -> impl Iterator<Item = &SutProcess> {
        std::iter::once(&self.api).chain(self.workers.iter())
    }

    /// SIGTERM to every process (API first, so intake stops before the workers drain).
    pub async fn stop(&self, grace: Duration) {
        for p in self.processes() {
            p.stop(grace).await;
        }
    }

    /// Deletes the run's queues and exchanges (the reference's `teardown`).
    pub async fn teardown(&self) -> Result<(), SutError> {
        let out = tokio::process::Command::from(self.teardown_command())
            .output()
            .await
            .map_err(SutError::Io)?;
        self.torn_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if out.status.success() {
            Ok(())
        } else {
            Err(SutError::Config(format!(
                "teardown failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }

    fn teardown_command(&self) -> std::process::Command {
        let delays: Vec<String> = self
            .names
            .retry_delays
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.args([
            "teardown",
            "--prefix",
            &self.names.prefix,
            "--amqp-url",
            &self.amqp_url,
        ])
        .args(["--retry-delays", &delays.join(",")]);
        cmd
    }
}

/// Builds each process's command line, creating its links.
struct Wiring<'a> {
    config: &'a SutConfig,
    backends: &'a Backends,
    links: Option<&'a Links>,
    dir: &'a Path,
    names: &'a Names,
}

impl Wiring<'_> {
    /// `url` as process `name` reaches it: through a new link `<name>-<to>` when links are on.
    async fn route(
        &self,
        name: &str,
        to: &str,
        url: &str,
        default_port: u16,
    ) -> Result<String, SutError> {
        match self.links {
            Some(links) => {
                let listen = links
                    .create(&link_name(name, to), target(url, default_port)?)
                    .await?;
                through(url, listen)
            }
            None => Ok(url.to_string()),
        }
    }

    async fn args(&self, mode: &str, name: &str) -> Result<Vec<String>, SutError> {
        let c = self.config;
        let database = match &c.store {
            Store::Sqlite => format!("sqlite://{}", self.dir.join("store.db").display()),
            Store::Mysql => {
                let url = self.backends.mysql_url.as_deref().ok_or_else(|| {
                    SutError::Config("store mysql needs a MySQL (see infra::services)".into())
                })?;
                self.route(name, "store", url, 3306).await?
            }
        };
        let delays: Vec<String> = c
            .retry_delays
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        let mut args = vec![
            mode.to_string(),
            "--prefix".into(),
            self.names.prefix.clone(),
            "--amqp-url".into(),
            self.route(name, "broker", &self.backends.amqp_url, 5672)
                .await?,
            "--database-url".into(),
            database,
            "--retry-delays".into(),
            delays.join(","),
            "--callback-allow".into(),
            "127.0.0.1".into(),
            "--callback-secret".into(),
            c.callback_secret.clone(),
            "--log-format".into(),
            "json".into(),
        ];
        if let Some(redis) = &self.backends.redis_url {
            let routed = self.route(name, "redis", redis, 6379).await?;
            args.extend(["--redis-url".into(), routed]);
        }
        args.extend(c.args.iter().cloned());
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rerouted_through_links() {
        let addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(
            through("amqp://guest:guest@127.0.0.1:5672/%2f", addr).unwrap(),
            "amqp://guest:guest@127.0.0.1:40001/%2f"
        );
        assert_eq!(
            through("mysql://root@127.0.0.1/db", addr).unwrap(),
            "mysql://root@127.0.0.1:40001/db"
        );
        assert_eq!(
            target("amqp://guest:guest@127.0.0.1/%2f", 5672)
                .unwrap()
                .port(),
            5672
        );
    }

    #[test]
    fn a_combined_api_counts_as_a_worker() {
        let mut c = SutConfig {
            workers: 2,
            ..SutConfig::default()
        };
        assert_eq!(c.process_names(), ["api", "worker-0", "worker-1"]);
        c.combined = true;
        assert_eq!(c.process_names(), ["api", "worker-0"]);
        c.workers = 1;
        assert_eq!(c.process_names(), ["api"]);
    }

    #[test]
    fn config_reads_from_json_with_defaults() {
        let c: SutConfig = serde_json::from_str(
            r#"{"workers": 3, "args": ["--dedupe", "none"], "retry_delays": ["1s", "2s"]}"#,
        )
        .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(
            c.retry_delays,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );
        assert!(c.via_links);
        assert_eq!(c.store, Store::Sqlite);
    }
}
