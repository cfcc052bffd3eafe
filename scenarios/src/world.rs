//! The live system a property runs against: the reference started by the harness (real
//! processes, each behind its own fault-proxy link) on the real broker, shared by the cases of
//! one property. Cases stay apart by their keys and accounts, and read only what they made.

use std::{sync::Arc, time::Duration};

use harness::{
    client::Client,
    conformance::Conformance,
    final_read::FinalRead,
    final_state::FinalState,
    history::History,
    infra::Broker,
    links::{Links, Stream},
    nemesis::{Fault, Nemesis},
    ops::Recorder,
    sut::{Deployment, ReferenceSut, SutConfig},
};

/// The broker every scenario uses: `AMQP_URL`, else the machine's.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Retry delays short enough that a case waits tenths of seconds for a poison task's end.
pub fn fast_retries() -> Vec<Duration> {
    vec![
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_millis(150),
    ]
}

/// A started system and what it needs.
pub struct World {
    pub deployment: Deployment,
    /// Holds every answer to the contract's document.
    pub client: Client,
    pub conformance: Arc<Conformance>,
    pub amqp_url: String,
    /// The broker, as the nemesis sees it (shared: never faulted).
    broker: Broker,
    _dir: tempfile::TempDir,
}

impl World {
    /// Starts the reference with `args` (strategy switches) and `workers` workers, and a Redis
    /// when `redis` (the `redis` cache and the `redis-setnx` dedupe need one).
    pub async fn start(args: &[&str], workers: usize, redis: bool) -> World {
        World::start_config(SutConfig {
            workers,
            args: args.iter().map(|a| a.to_string()).collect(),
            retry_delays: fast_retries(),
            redis,
            ..SutConfig::default()
        })
        .await
    }

    /// Starts the reference as `config` says.
    pub async fn start_config(config: SutConfig) -> World {
        harness::init_test_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Broker::External(amqp_url());
        let deployment = match Deployment::start(&config, None, &broker, dir.path()).await {
            Ok(d) => d,
            // Kept, so that the processes' logs say why.
            Err(e) => panic!(
                "the reference starts: {e:#} (logs in {})",
                dir.keep().display()
            ),
        };
        let conformance = Arc::new(Conformance::of_this_contract());
        let client = Client::new(&deployment.base_url, None, Duration::from_secs(5))
            .with_conformance(conformance.clone());
        World {
            deployment,
            client,
            conformance,
            amqp_url: amqp_url(),
            broker,
            _dir: dir,
        }
    }

    /// `ms` ± `jitter_ms` of latency on one direction of link `link`, for the rest of the
    /// world's life.
    pub async fn slowed(self, link: &str, ms: u32, jitter_ms: u32, stream: Stream) -> World {
        self.links()
            .latency(link, ms, jitter_ms, stream)
            .await
            .unwrap_or_else(|e| panic!("latency on link {link}: {e}"));
        self
    }

    /// The reference's processes.
    pub fn sut(&self) -> &ReferenceSut {
        self.deployment.sut.as_ref().expect("a started reference")
    }

    /// The links between its processes and the broker.
    pub fn links(&self) -> &Links {
        self.deployment.links.as_ref().expect("started with links")
    }

    /// A recorder writing into `history`.
    pub fn recorder(&self, history: &History) -> Recorder {
        Recorder::new(self.client.clone(), history.clone())
    }

    /// Waits for the system to settle, then reads what `history` touched.
    pub async fn final_state(&self, history: &History, settle: Duration) -> FinalState {
        let read = FinalRead {
            client: &self.client,
            amqp_url: &self.amqp_url,
            names: &self.deployment.names,
            sink: None,
            settle_timeout: settle,
        };
        read.read(&history.ops()).await
    }

    /// A nemesis recording into `history`.
    pub fn nemesis(&self, history: &History) -> Nemesis<'_> {
        Nemesis::new(
            self.deployment.sut.as_ref(),
            self.deployment.links.as_ref(),
            &self.broker,
            history.clone(),
        )
    }

    /// kill -9 of worker `worker` (modulo the workers), started again after `down`; both
    /// recorded in `history`.
    pub async fn crash_worker(
        &self,
        history: &History,
        worker: usize,
        down: Duration,
    ) -> Result<(), String> {
        let nemesis = self.nemesis(history);
        let fault = Fault::Kill {
            process: format!("worker-{}", worker % self.sut().workers.len().max(1)),
        };
        nemesis.start(&fault).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(down).await;
        nemesis.heal(&fault).await.map_err(|e| e.to_string())
    }

    /// Stops the processes and deletes the queues.
    pub async fn stop(self) {
        self.deployment.stop().await;
    }
}

/// A unique tag for one case's keys and accounts.
pub fn case_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}
