//! A cluster of private nodes and member loss.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Node, NodeOptions, RabbitError};

/// How long a restarted member may take to be seen running by the others (after its boot).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);

/// Cluster membership as one node sees it (`rabbitmqctl cluster_status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Every member, running or not (all members are disc nodes here).
    pub disk_nodes: Vec<String>,
    /// The members running now.
    pub running_nodes: Vec<String>,
}

/// N private nodes joined into one cluster, sharing a cookie; every node runs
/// `rabbitmq_management_agent`, so queue counts are right wherever a quorum queue is led.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Arc<Node>>,
    formation: Duration,
    /// Readers need the cluster whole; a writer faults it (see [`Cluster::hold_exclusive`]).
    faults: RwLock<()>,
    healing: Mutex<()>,
    /// Members cut off now: their rules are removed when the cluster is dropped, whatever
    /// happened to the run.
    partitioned: Mutex<Vec<usize>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in std::mem::take(self.partitioned.get_mut()) {
            for rule in self.partition_rules(i).unwrap_or_default() {
                let _ = std::process::Command::new("iptables")
                    .arg("-D")
                    .args(&rule)
                    .output();
            }
        }
    }
}

impl Cluster {
    /// Boots `size` nodes under `base` at once, then joins each to the first (`stop_app`,
    /// `reset`, `join_cluster`, `start_app`: about 3 s each) and waits until every node is a
    /// running member.
    pub async fn start(base: &Path, size: usize) -> Result<Cluster, RabbitError> {
        Cluster::start_with(base, size, &NodeOptions::default()).await
    }

    /// Like [`Cluster::start`], every node with `options`' config lines and cookie.
    pub async fn start_with(
        base: &Path,
        size: usize,
        options: &NodeOptions,
    ) -> Result<Cluster, RabbitError> {
        if size == 0 {
            return Err(RabbitError::Cluster(
                "a cluster needs at least one node".into(),
            ));
        }
        let began = Instant::now();
        let seed_opts = options.clone();
        // With the management agent running, `stop_app` takes 5.5 s instead of 0.4 s (the
        // agent's statistics shutdown waits out a timer), so joiners boot without it and get it
        // in their plugins file just before `start_app`, which loads it; every later boot has it.
        let joiner_opts = NodeOptions {
            plugins: Vec::new(),
            ..seed_opts.clone()
        };
        let boots = (1..=size).map(|i| {
            let opts = NodeOptions {
                // Each member's inter-node traffic from an address of its own (partitions).
                dist_source: Some(std::net::Ipv4Addr::new(127, 0, 0, 10 + i as u8)),
                ..(if i == 1 { &seed_opts } else { &joiner_opts }).clone()
            };
            async move { Node::start_with(base, i, &opts).await }
        });
        let nodes: Vec<Arc<Node>> = futures_util::future::try_join_all(boots)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        let booted = began.elapsed();
        for node in &nodes[1..] {
            join(node, &nodes[0], &seed_opts.plugins).await?;
        }
        let mut cluster = Cluster {
            nodes,
            formation: Duration::ZERO,
            faults: RwLock::new(()),
            healing: Mutex::new(()),
            partitioned: Mutex::new(Vec::new()),
        };
        let all: Vec<usize> = (0..size).collect();
        cluster.await_seen_running(&all).await?;
        cluster.formation = began.elapsed();
        tracing::info!(
            size,
            boot = ?booted,
            formation = ?cluster.formation,
            nodes = ?cluster.nodes.iter().map(|n| n.name()).collect::<Vec<_>>(),
            "RabbitMQ cluster formed"
        );
        Ok(cluster)
    }

    /// The members, in start order (node 0 is the one the others joined).
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Member `i`.
    pub fn node(&self, i: usize) -> &Arc<Node> {
        &self.nodes[i]
    }

    /// The members' AMQP URLs, in start order.
    pub fn amqp_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.amqp_url()).collect()
    }

    /// Spawn of the first node to every member running in one cluster.
    pub fn formation_time(&self) -> Duration {
        self.formation
    }

    /// Waits until no test faults the cluster, brings back any member a failed test left
    /// down, and keeps faulting tests out while the guard lives.
    pub async fn hold_steady(&self) -> Result<RwLockReadGuard<'_, ()>, RabbitError> {
        let guard = self.faults.read().await;
        self.heal().await?;
        Ok(guard)
    }

    /// Exclusive use for a test that faults members: waits for the other users, heals the
    /// cluster, and keeps every other user out while the guard lives. Rejoin what you broke
    /// before dropping it (the next holder heals it otherwise, but later).
    pub async fn hold_exclusive(&self) -> Result<RwLockWriteGuard<'_, ()>, RabbitError> {
        let guard = self.faults.write().await;
        self.heal().await?;
        Ok(guard)
    }

    /// Resumes paused members, restarts dead ones and waits until they are members again,
    /// clears memory alarms.
    pub async fn heal(&self) -> Result<(), RabbitError> {
        let _one = self.healing.lock().await;
        let mut restarted = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.heal().await? {
                tracing::warn!(node = %node.name(), "restarted a cluster member left down");
                restarted.push(i);
            }
        }
        self.await_seen_running(&restarted).await
    }

    /// Cluster membership as member `via` sees it.
    pub async fn membership(&self, via: usize) -> Result<Membership, RabbitError> {
        let out = self.nodes[via]
            .ctl(&["cluster_status", "--formatter", "json"])
            .await?;
        let status = parse_json(&out, "cluster_status")?;
        Ok(Membership {
            disk_nodes: strings(&status["disk_nodes"]),
            running_nodes: strings(&status["running_nodes"]),
        })
    }

    /// A partition: member `i` is cut off from the others (its VM keeps running and clients
    /// still reach it); returns once the others have dropped it.
    pub async fn partition(&self, i: usize) -> Result<(), RabbitError> {
        for rule in self.partition_rules(i)? {
            super::partition::iptables("-A", &rule).await?;
        }
        // Drop the connections now rather than at the next tick (seconds to a minute).
        self.partitioned.lock().await.push(i);
        let isolated = &self.nodes[i];
        for other in self.nodes.iter().filter(|n| n.name() != isolated.name()) {
            let drop = |name: &str| format!("erlang:disconnect_node('{name}').");
            other.ctl(&["eval", &drop(isolated.name())]).await?;
            isolated.ctl(&["eval", &drop(other.name())]).await?;
        }
        tracing::info!(node = %isolated.name(), "member partitioned");
        Ok(())
    }

    /// Ends the partition of member `i` and waits until every member sees it running again.
    pub async fn heal_partition(&self, i: usize) -> Result<(), RabbitError> {
        for rule in self.partition_rules(i)? {
            super::partition::iptables("-D", &rule).await?;
        }
        self.partitioned.lock().await.retain(|p| *p != i);
        self.await_seen_running(&[i]).await
    }

    fn partition_rules(&self, i: usize) -> Result<Vec<Vec<String>>, RabbitError> {
        let others: Vec<&Node> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(|j| self.nodes[j].as_ref())
            .collect();
        let tag = format!(
            "rmq-harness-{}-{}",
            std::process::id(),
            self.nodes[i].name()
        );
        super::partition::rules(&self.nodes[i], &others, &tag)
    }

    /// Member loss: kill -9 of member `i`.
    pub fn lose_member(&self, i: usize) {
        self.nodes[i].kill();
    }

    /// Brings member `i` back (resumes or starts it again with its data) and waits until
    /// every other running member sees it running.
    pub async fn rejoin(&self, i: usize) -> Result<(), RabbitError> {
        let began = Instant::now();
        let node = &self.nodes[i];
        node.resume();
        if !node.is_running() {
            node.start_again().await?;
        }
        self.await_seen_running(&[i]).await?;
        tracing::info!(node = %node.name(), took = ?began.elapsed(), "member rejoined");
        Ok(())
    }

    /// Waits until every running, unpaused member lists all of `members` as running.
    async fn await_seen_running(&self, members: &[usize]) -> Result<(), RabbitError> {
        if members.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = members.iter().map(|&i| self.nodes[i].name()).collect();
        let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
        loop {
            let seen = self.seen_running_by_all(&names).await;
            match seen {
                Ok(true) => return Ok(()),
                Ok(false) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Ok(false) => {
                    return Err(RabbitError::Cluster(format!(
                        "{names:?} not all running members within {MEMBERSHIP_TIMEOUT:?}"
                    )))
                }
                Err(e) => {
                    return Err(RabbitError::Cluster(format!(
                        "cannot tell whether {names:?} are running members: {e}"
                    )))
                }
            }
        }
    }

    /// Asks every reachable member at once (each CLI call is a VM start of its own).
    async fn seen_running_by_all(&self, names: &[&str]) -> Result<bool, RabbitError> {
        let views = self.reachable().into_iter().map(|j| self.membership(j));
        let views = futures_util::future::try_join_all(views).await?;
        Ok(views.iter().all(|view| {
            names
                .iter()
                .all(|name| view.running_nodes.iter().any(|n| n == name))
        }))
    }

    /// Members whose VM runs and is not paused, so a CLI call to them can answer.
    fn reachable(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&j| self.nodes[j].is_running() && !self.nodes[j].is_paused())
            .collect()
    }

    /// The member leading quorum queue `queue` (vhost `/`), as a reachable member reports it;
    /// `None` if no such queue or no leader now (an election in progress, a classic queue).
    pub async fn leader_of(&self, queue: &str) -> Result<Option<usize>, RabbitError> {
        let mut last = None;
        for j in self.reachable() {
            let listed = self.nodes[j]
                .ctl(&[
                    "list_queues",
                    "name",
                    "leader",
                    "--formatter",
                    "json",
                    "--quiet",
                ])
                .await;
            let out = match listed {
                Ok(out) => out,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let queues = parse_json(&out, "list_queues")?;
            let leader = queues
                .as_array()
                .into_iter()
                .flatten()
                .find(|q| q["name"] == queue)
                .and_then(|q| q["leader"].as_str())
                .and_then(|name| self.nodes.iter().position(|n| n.name() == name));
            return Ok(leader);
        }
        Err(last.unwrap_or_else(|| RabbitError::Cluster("no member is reachable".into())))
    }
}

/// Makes `node` leave its own one-node cluster and join `seed`'s, then starts it with
/// `plugins`.
async fn join(node: &Node, seed: &Node, plugins: &[String]) -> Result<(), RabbitError> {
    let began = Instant::now();
    let mut steps = Vec::new();
    // join_cluster prints harmless "tracked connection table" errors on 3.10.
    for args in [
        &["stop_app"][..],
        &["reset"],
        &["join_cluster", seed.name()],
    ] {
        let step = Instant::now();
        node.ctl(args).await?;
        steps.push(format!("{} {:.1?}", args[0], step.elapsed()));
    }
    node.write_plugins(plugins)?;
    let step = Instant::now();
    node.ctl(&["start_app"]).await?;
    steps.push(format!("start_app {:.1?}", step.elapsed()));
    tracing::info!(node = %node.name(), seed = %seed.name(), took = ?began.elapsed(), ?steps, "joined cluster");
    Ok(())
}

fn parse_json(out: &str, what: &str) -> Result<serde_json::Value, RabbitError> {
    serde_json::from_str(out.trim()).map_err(|e| {
        RabbitError::Cluster(format!("unexpected {what} output ({e}): {}", out.trim()))
    })
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}
