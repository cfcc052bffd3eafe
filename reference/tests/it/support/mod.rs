//! Shared test support: a unique prefix and store per test, the app in-process or as a real
//! process, a client speaking the contract, and cleanup of everything left on the broker.

pub mod link;
pub mod process;

use std::{future::Future, sync::Once, time::Duration};

use clap::Parser;
use reference::{
    broker::{topology::Names, Topology},
    config::QueueType,
    Config, Mode, Running,
};
use serde_json::Value;

/// The broker every test uses (the machine's, or `AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// Fast retry delays keep lifecycle tests short; the schedule test uses the defaults.
pub const FAST_RETRIES: &str = "100ms,200ms,400ms";

/// One test's isolated world: queue prefix, store file, and cleanup of both.
pub struct World {
    pub prefix: String,
    pub db_url: String,
    pub dir: tempfile::TempDir,
    retry_delays: Vec<Duration>,
}

impl World {
    pub fn new(name: &str) -> World {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = format!(
            "it-{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let db_url = format!("sqlite://{}", dir.path().join("store.db").display());
        World {
            prefix,
            db_url,
            dir,
            retry_delays: parse_delays(FAST_RETRIES),
        }
    }

    /// Arguments every app of this world gets; `extra` comes last and wins.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--prefix",
            &self.prefix,
            "--database-url",
            &self.db_url,
            "--amqp-url",
            &amqp_url(),
            "--http-addr",
            "127.0.0.1:0",
            "--retry-delays",
            FAST_RETRIES,
            "--poll-interval",
            "50ms",
            "--callback-allow",
            "127.0.0.1",
            "--connect-timeout",
            "10s",
            "--shutdown-timeout",
            "10s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        override_args(&mut args, extra);
        args
    }

    pub fn config(&mut self, extra: &[&str]) -> Config {
        let args = self.args(extra);
        let config = Cli::try_parse_from(std::iter::once("reference".to_string()).chain(args))
            .expect("test arguments parse")
            .config;
        // Remember every delay used, so cleanup deletes every retry queue.
        self.retry_delays
            .extend(config.tuning.retry_delays.iter().copied());
        config
    }

    /// Starts an app in this process.
    pub async fn start(&mut self, mode: Mode, extra: &[&str]) -> App {
        let running = reference::start(self.config(extra), mode)
            .await
            .expect("app starts");
        App::new(running)
    }

    pub fn topology(&self) -> Topology {
        let names = Names {
            prefix: self.prefix.clone(),
            retry_delays: self.retry_delays.clone(),
        };
        Topology {
            names,
            queue_type: QueueType::Classic,
        }
    }
}

/// Sets each `--flag value` pair of `extra` in `args`, replacing an earlier value of the flag
/// (clap refuses a repeated flag, or appends to a list one); a lone `--flag` is appended.
pub fn override_args(args: &mut Vec<String>, extra: &[&str]) {
    let mut i = 0;
    while i < extra.len() {
        let flag = extra[i];
        let value = extra.get(i + 1).filter(|v| !v.starts_with("--"));
        match (args.iter().position(|a| a == flag), value) {
            (Some(at), Some(v)) => args[at + 1] = v.to_string(),
            (None, Some(v)) => args.extend([flag.to_string(), v.to_string()]),
            (_, None) => args.push(flag.to_string()),
        }
        i += if value.is_some() { 2 } else { 1 };
    }
}

fn parse_delays(s: &str) -> Vec<Duration> {
    s.split(',')
        .map(|d| humantime::parse_duration(d).expect("delay"))
        .collect()
}

/// Deletes the world's queues and exchanges even when the test panicked.
impl Drop for World {
    fn drop(&mut self) {
        let topology = self.topology();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(conn) = lapin::Connection::connect(&amqp_url(), Default::default()).await
                {
                    let _ = topology.delete(&conn).await;
                    let _ = conn.close(200, "cleanup".into()).await;
                }
            });
        })
        .join();
    }
}

/// An app started in-process, with a client for its contract.
pub struct App {
    pub running: Option<Running>,
    pub client: Client,
}

impl App {
    pub fn new(running: Running) -> App {
        let client = Client::new(format!("http://{}", running.http_addr));
        App {
            running: Some(running),
            client,
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A thin HTTP client for the contract.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: bytes::Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Asserts the envelope's status and code; returns the envelope.
    pub fn expect(&self, status: u16, code: &str) -> Value {
        let v = self.json();
        assert_eq!(
            (self.status, v["code"].as_str().unwrap_or("?")),
            (status, code),
            "{v}"
        );
        v
    }
}

impl Client {
    pub fn new(base: String) -> Client {
        Client {
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.expect("request is answered");
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        Reply {
            status,
            headers,
            bytes: res.bytes().await.expect("body"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Submits a task under an Idempotency-Key.
    pub async fn submit(&self, key: &str, body: &Value) -> Reply {
        self.send(
            self.http
                .post(self.url("/api/v1/tasks"))
                .header("idempotency-key", key)
                .json(body),
        )
        .await
    }

    /// `n` echo tasks, 32 at a time, each expected to be accepted.
    pub async fn submit_echoes(&self, n: usize) {
        use futures_util::StreamExt;
        let echo = serde_json::json!({"type": "echo"});
        futures_util::stream::iter(0..n)
            .for_each_concurrent(32, |_| async {
                self.submit_ok(&echo).await;
            })
            .await;
    }

    /// Submits a task with a fresh key and returns its id.
    pub async fn submit_ok(&self, body: &Value) -> String {
        let reply = self.submit(&uuid::Uuid::new_v4().to_string(), body).await;
        let v = reply.expect(202, "OK");
        v["data"]["task_id"].as_str().expect("task id").to_string()
    }

    pub async fn task(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/tasks/{id}"))
            .await
            .expect(200, "OK")["data"]
            .clone()
    }

    /// Waits until the task has a terminal status and returns it.
    pub async fn wait_terminal(&self, id: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let task = self.task(id).await;
            if matches!(task["status"].as_str(), Some("SUCCESS" | "FAILED")) {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} did not end within {limit:?}; last seen {task}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn balance(&self, account: &str) -> i64 {
        let reply = self.get(&format!("/api/v1/accounts/{account}")).await;
        match reply.status {
            404 => 0,
            _ => reply.expect(200, "OK")["data"]["balance"]
                .as_i64()
                .expect("balance"),
        }
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the broker directly, as an operator would.
pub struct BrokerProbe {
    conn: lapin::Connection,
}

impl BrokerProbe {
    pub async fn connect() -> BrokerProbe {
        BrokerProbe {
            conn: lapin::Connection::connect(&amqp_url(), Default::default())
                .await
                .expect("probe connects"),
        }
    }

    /// Exact message count of a queue (passive declare; management statistics lag).
    pub async fn depth(&self, queue: &str) -> u32 {
        let ch = self.conn.create_channel().await.expect("channel");
        let opts = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        ch.queue_declare(queue.into(), opts, Default::default())
            .await
            .expect("queue exists")
            .message_count()
    }

    /// Takes every message of a queue; returns their message ids.
    pub async fn drain_ids(&self, queue: &str) -> Vec<String> {
        let ch = self.conn.create_channel().await.expect("channel");
        let mut ids = Vec::new();
        while let Some(m) = ch
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            ids.push(
                m.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            );
        }
        ids
    }

    /// Publishes a persistent message straight to `exchange`, as an operator re-driving or
    /// injecting one would.
    pub async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8], message_id: &str) {
        let ch = self.conn.create_channel().await.expect("channel");
        let props = lapin::BasicProperties::default()
            .with_message_id(message_id.into())
            .with_delivery_mode(2);
        ch.basic_publish(
            exchange.into(),
            routing_key.into(),
            Default::default(),
            body,
            props,
        )
        .await
        .expect("basic.publish");
    }

    /// Subscribes to every task event of `exchange` on a queue of its own.
    pub async fn events(&self, exchange: &str) -> lapin::Consumer {
        let ch = self.conn.create_channel().await.expect("channel");
        let exclusive = lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("".into(), exclusive, Default::default())
            .await
            .expect("event queue");
        ch.queue_bind(
            q.name().clone(),
            exchange.into(),
            "task.#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("event queue bound");
        let no_ack = lapin::options::BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        };
        ch.basic_consume(q.name().clone(), "probe".into(), no_ack, Default::default())
            .await
            .expect("event consumer")
    }
}
