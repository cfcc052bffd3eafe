//! Real dependencies, provisioned in the order of design §4: a URL from the environment, a
//! private node (or cluster) started from the local `rabbitmq-server` installation, a container
//! where an engine runs, else a clear error naming the ways to provide a broker.
//!
//! Broker faults only ever touch brokers the harness started itself.

pub mod container;
pub mod rabbit;
pub mod services;
pub mod tls;

use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

/// A port on 127.0.0.1 for a server the harness starts or a link it creates: free now, never
/// handed out before by this process, and below Linux's ephemeral range (32768+). In that range
/// listeners on port 0 and outgoing connections take ports at any moment, and port 0 itself
/// hands a released port out again: a reference process once found the port it was given there
/// taken before it could bind it.
pub fn free_port() -> std::io::Result<u16> {
    use std::{collections::BTreeSet, net::TcpListener, sync::Mutex};
    const RANGE: std::ops::Range<u16> = 20000..32000;
    // The machine broker's distribution and management ports, bound or not.
    const RESERVED: [u16; 3] = [25672, 15672, 15692];
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN.lock().expect("ports lock");
    for _ in 0..1000 {
        let port = rand::random_range(RANGE);
        if RESERVED.contains(&port) || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no free loopback port in {RANGE:?}"),
    ))
}

/// Which broker a run wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BrokerChoice {
    /// `AMQP_URL` when set, else a private node, else a container.
    #[default]
    Auto,
    /// A private node of this run (needed for broker faults).
    Node,
    /// A private three-node cluster of this run (needed for member loss).
    Cluster,
    /// A container (testcontainers).
    Container,
}

/// The broker of a run.
pub enum Broker {
    /// Given by URL: used as is, never faulted.
    External(String),
    Node(Arc<rabbit::Node>),
    Cluster(Arc<rabbit::Cluster>),
    Container(container::BrokerContainer),
}

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error(
        "no broker: set AMQP_URL, or install rabbitmq-server (private nodes; `./verify` or \
         scripts/services.sh installs it), or run a container engine (scripts/docker.sh)"
    )]
    NoBroker,
    #[error(transparent)]
    Rabbit(#[from] rabbit::RabbitError),
    #[error(transparent)]
    Container(#[from] container::ContainerError),
}

impl Broker {
    /// Provisions the broker `choice` asks for; private nodes keep their data under `base` and
    /// get `config` as extra `rabbitmq.conf` lines (e.g. `consumer_timeout = 5000`).
    pub async fn provision(
        choice: BrokerChoice,
        base: &Path,
        config: &[String],
    ) -> Result<Broker, InfraError> {
        let options = rabbit::NodeOptions {
            config: config.to_vec(),
            ..Default::default()
        };
        match choice {
            BrokerChoice::Auto => Self::auto(base).await,
            BrokerChoice::Node => Ok(Broker::Node(Arc::new(
                rabbit::Node::start_with(base, 1, &options).await?,
            ))),
            BrokerChoice::Cluster => Ok(Broker::Cluster(Arc::new(
                rabbit::Cluster::start_with(base, 3, &options).await?,
            ))),
            BrokerChoice::Container => {
                Ok(Broker::Container(container::start_rabbitmq(None).await?))
            }
        }
    }

    async fn auto(base: &Path) -> Result<Broker, InfraError> {
        if let Ok(url) = std::env::var("AMQP_URL") {
            if !url.is_empty() {
                return Ok(Broker::External(url));
            }
        }
        if rabbit::installed() {
            return Ok(Broker::Node(Arc::new(rabbit::Node::start(base, 1).await?)));
        }
        if container::engine().is_some() {
            return Ok(Broker::Container(container::start_rabbitmq(None).await?));
        }
        Err(InfraError::NoBroker)
    }

    /// The URL clients connect to (the first member, for a cluster).
    pub fn amqp_url(&self) -> String {
        match self {
            Broker::External(url) => url.clone(),
            Broker::Node(n) => n.amqp_url(),
            Broker::Cluster(c) => c.amqp_urls().into_iter().next().unwrap_or_default(),
            Broker::Container(c) => c.amqp_url(),
        }
    }

    /// Prometheus endpoints with the broker's per-queue figures (every member of a cluster:
    /// each reports the queues it leads); none for a broker the harness did not start.
    pub fn metrics_urls(&self) -> Vec<String> {
        match self {
            Broker::Node(n) => vec![n.metrics_url()],
            Broker::Cluster(c) => c.nodes().iter().map(|n| n.metrics_url()).collect(),
            Broker::External(_) | Broker::Container(_) => Vec::new(),
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match self {
            Broker::External(url) => format!("external {}", redact(url)),
            Broker::Node(n) => format!("private node {}", n.name()),
            Broker::Cluster(c) => format!("private cluster of {}", c.nodes().len()),
            Broker::Container(c) => format!("container {}", c.image()),
        }
    }

    /// The node faults act on: the private node, or a cluster's first member.
    pub fn node(&self) -> Result<&rabbit::Node, String> {
        match self {
            Broker::Node(n) => Ok(n),
            Broker::Cluster(c) => c
                .nodes()
                .first()
                .map(|n| n.as_ref())
                .ok_or_else(|| "empty cluster".into()),
            _ => Err(format!(
                "{} cannot be faulted; use a private node (--broker node)",
                self.describe()
            )),
        }
    }

    /// The private cluster, for member faults.
    pub fn cluster(&self) -> Result<&rabbit::Cluster, String> {
        match self {
            Broker::Cluster(c) => Ok(c),
            _ => Err(format!(
                "member loss needs a cluster (--broker cluster), not {}",
                self.describe()
            )),
        }
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's ephemeral range, `low high`.
    fn ephemeral_range() -> (u16, u16) {
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let mut bounds = text.split_whitespace().map(|n| n.parse().unwrap());
        (bounds.next().unwrap(), bounds.next().unwrap())
    }

    #[test]
    fn free_ports_are_distinct_and_outside_the_kernels_ephemeral_range() {
        let (low, high) = ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        for p in ports {
            assert!(
                p < low || p > high,
                "{p} is in the ephemeral range {low}-{high}"
            );
            assert!(![5672, 15672, 15692, 25672].contains(&p));
        }
    }
}
