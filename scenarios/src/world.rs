//! The live system a property runs against: the reference started by the harness (real
//! processes, each behind its own fault-proxy link) on the real broker, shared by the cases of
//! one property. Cases stay apart by their keys and accounts, and read only what they made.

use std::time::Duration;

use harness::{
    client::Client,
    final_read::FinalRead,
    final_state::FinalState,
    history::History,
    infra::{services::Redis, Broker},
    links::Links,
    nemesis::{Fault, Nemesis},
    ops::Recorder,
    sut::{Backends, ReferenceSut, SutConfig},
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
    pub sut: ReferenceSut,
    pub client: Client,
    pub links: Links,
    pub amqp_url: String,
    /// The broker, as the nemesis sees it (shared: never faulted).
    broker: Broker,
    _redis: Option<Redis>,
    _dir: tempfile::TempDir,
}

impl World {
    /// Starts the reference with `args` (strategy switches) and `workers` workers, and a Redis
    /// when `redis` (the `redis` cache and the `redis-setnx` dedupe need one).
    pub async fn start(args: &[&str], workers: usize, redis: bool) -> World {
        harness::init_test_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let redis = if redis {
            Some(
                Redis::provision(dir.path())
                    .await
                    .expect("a Redis for the redis strategies"),
            )
        } else {
            None
        };
        let config = SutConfig {
            workers,
            args: args.iter().map(|a| a.to_string()).collect(),
            retry_delays: fast_retries(),
            redis: redis.is_some(),
            ..SutConfig::default()
        };
        let backends = Backends {
            amqp_url: amqp_url(),
            mysql_url: None,
            redis_url: redis.as_ref().map(|r| r.url().to_string()),
        };
        let links = Links::start().await.expect("fault proxy starts");
        let sut = ReferenceSut::start(&config, &backends, Some(&links), dir.path())
            .await
            .expect("the reference starts");
        let client = Client::new(&sut.base_url(), None, Duration::from_secs(5));
        World {
            sut,
            client,
            links,
            amqp_url: amqp_url(),
            broker: Broker::External(amqp_url()),
            _redis: redis,
            _dir: dir,
        }
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
            names: &self.sut.names,
            sink: None,
            settle_timeout: settle,
        };
        read.read(&history.ops()).await
    }

    /// A nemesis recording into `history`.
    pub fn nemesis(&self, history: &History) -> Nemesis<'_> {
        Nemesis {
            sut: Some(&self.sut),
            links: Some(&self.links),
            broker: &self.broker,
            history: history.clone(),
        }
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
            process: format!("worker-{}", worker % self.sut.workers.len().max(1)),
        };
        nemesis.start(&fault).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(down).await;
        nemesis.heal(&fault).await.map_err(|e| e.to_string())
    }

    /// Stops the processes and deletes the queues.
    pub async fn stop(self) {
        self.sut.stop(Duration::from_secs(10)).await;
        if let Err(e) = self.sut.teardown().await {
            tracing::warn!(error = %e, "topology not deleted");
        }
    }
}

/// A unique tag for one case's keys and accounts.
pub fn case_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}
