//! Private RabbitMQ nodes and clusters started from the local `rabbitmq-server` installation
//! (Debian's 3.10.8 here), and the broker faults on them: graceful stop, restart, kill -9,
//! pause (SIGSTOP), memory alarm, cluster member loss.
//!
//! Nodes run as the current user straight from `/usr/lib/rabbitmq/bin` (the `/usr/sbin`
//! wrappers switch to the `rabbitmq` user, its HOME and its cookie), each with its own loopback
//! ports, data, logs, HOME and cookie and its own config file, so the machine's broker
//! (127.0.0.1:5672) is never touched: every CLI call names its node with `-n` and carries that
//! node's environment.
//!
//! [`shared_node`] and [`shared_cluster`] are started once per test process on first use and
//! reused by every test in it; their processes die and their directories are deleted when the
//! process exits (epmd, which the machine's broker shares, stays).

mod cluster;
mod node;
pub mod partition;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::sync::OnceCell;

pub use cluster::{Cluster, Membership};
pub use node::{Alarm, Node, NodeOptions};

/// Where the package keeps the real scripts (not the `/usr/sbin` user-switching wrappers).
const BIN: &str = "/usr/lib/rabbitmq/bin";

fn tool(name: &str) -> PathBuf {
    Path::new(BIN).join(name)
}

/// Is the `rabbitmq-server` package installed (so private nodes can be started)?
pub fn installed() -> bool {
    tool("rabbitmq-server").exists()
}

/// Why a private node or cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum RabbitError {
    #[error("rabbitmq-server is not installed ({0} is missing); apt-get install rabbitmq-server")]
    NotInstalled(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free loopback port found for a RabbitMQ node")]
    NoFreePort,
    #[error("node {node} did not start: {reason}\n--- from {log} ---\n{excerpt}")]
    Start {
        node: String,
        reason: String,
        log: PathBuf,
        excerpt: String,
    },
    #[error("`{command}` for node {node} failed: {detail}")]
    Cli {
        node: String,
        command: String,
        detail: String,
    },
    #[error("node {node}: {detail}")]
    Node { node: String, detail: String },
    #[error("cluster: {0}")]
    Cluster(String),
}

/// This process's directory for shared nodes: `<tmp>/rmq-harness-<pid>`, deleted at exit.
fn run_dir() -> Result<PathBuf, RabbitError> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rmq-harness-{}", std::process::id()));
        remove_stale_run_dirs();
        crate::proc::remove_at_exit(&dir);
        dir
    });
    std::fs::create_dir_all(dir).map_err(|source| RabbitError::Io {
        what: "cannot create",
        path: dir.clone(),
        source,
    })?;
    Ok(dir.clone())
}

/// Deletes the run directories of test processes that died without their exit hook (SIGKILL,
/// a crash); their nodes died with them (PDEATHSIG), only the data is left.
fn remove_stale_run_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rmq-harness-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One private node for this test process, started on first use and reused by every test.
///
/// For tests that do not fault it: a test that stops, kills, pauses or alarms a node should
/// start its own with [`Node::start`] (about 5 s), so no other test sees the fault. Should a
/// failed test leave it down, paused or alarmed anyway, the next caller gets it healed.
pub async fn shared_node() -> Result<Arc<Node>, RabbitError> {
    static SHARED: OnceCell<Arc<Node>> = OnceCell::const_new();
    let node = SHARED
        .get_or_try_init(|| async {
            let base = run_dir()?.join("node");
            Ok::<_, RabbitError>(Arc::new(Node::start(&base, 1).await?))
        })
        .await?;
    node.heal().await?;
    Ok(node.clone())
}

/// One three-node cluster for this test process, formed once on first use and reused.
///
/// Tests that fault it hold [`Cluster::hold_exclusive`] and bring every member back before
/// returning; tests that need it whole hold [`Cluster::hold_steady`]. Both first heal what a
/// failed test may have left broken.
pub async fn shared_cluster() -> Result<Arc<Cluster>, RabbitError> {
    static SHARED: OnceCell<Arc<Cluster>> = OnceCell::const_new();
    let cluster = SHARED
        .get_or_try_init(|| async {
            let base = run_dir()?.join("cluster");
            Ok::<_, RabbitError>(Arc::new(Cluster::start(&base, 3).await?))
        })
        .await?;
    Ok(cluster.clone())
}

/// How long a node may take from spawn to accepting AMQP connections (5–7 s is usual; a busy
/// 2-core machine booting three at once needs more).
const START_TIMEOUT: Duration = Duration::from_secs(60);
