//! The system under test as real processes behind real links, and whole experiments.

use std::time::Duration;

use harness::{
    client::Client,
    infra::{
        rabbit::{Node, NodeOptions},
        tls::TestPki,
    },
    links::Links,
    sut::{ReferenceSut, SutConfig, SutProcess},
};
use serde_json::json;

use crate::support::{backends, init_tracing};

async fn wait_status(c: &Client, id: &str, want: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if c.task(id)
            .await
            .ok()
            .flatten()
            .is_some_and(|t| t.status == want)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn submit(c: &Client, key: &str) -> String {
    let s = c
        .submit(key, &json!({"type": "echo", "payload": key}))
        .await
        .expect("submitted");
    assert_eq!(s.status, 202, "{s:?}");
    s.task_id.expect("task id")
}

/// Processes start, and kill -9, pause, resume and restart do what they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sut_processes_start_are_killed_paused_and_restarted() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let links = Links::start().await.unwrap();
    let config = SutConfig {
        workers: 1,
        ..SutConfig::default()
    };
    let sut = ReferenceSut::start(&config, &backends(), Some(&links), dir.path())
        .await
        .unwrap();
    let c = Client::new(&sut.base_url(), None, Duration::from_secs(2));
    let first = submit(&c, "k1").await;
    assert!(wait_status(&c, &first, "SUCCESS", Duration::from_secs(20)).await);

    let worker = &sut.workers[0];
    worker.kill();
    assert!(!worker.is_running());
    let waiting = submit(&c, "k2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.task(&waiting).await.unwrap().unwrap().status,
        "PENDING",
        "no worker, no progress"
    );
    worker.restart().await.unwrap();
    assert!(
        wait_status(&c, &waiting, "SUCCESS", Duration::from_secs(20)).await,
        "restarted worker drains the queue"
    );

    sut.api.pause();
    assert!(!c.ready().await, "a paused API answers nothing");
    sut.api.resume();
    assert!(c.wait_ready(Duration::from_secs(10)).await);

    sut.stop(Duration::from_secs(10)).await;
    assert!(!sut.api.is_running() && !worker.is_running());
    assert!(
        std::fs::read_to_string(sut.api.log_path())
            .unwrap()
            .contains("\"ready\""),
        "logs are captured"
    );
    sut.teardown().await.unwrap();
}

/// A combined API runs the worker in its own process: no worker process, and its tasks end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_api_processes_its_own_tasks() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = SutConfig {
        workers: 1,
        combined: true,
        via_links: false,
        ..SutConfig::default()
    };
    let sut = ReferenceSut::start(&config, &backends(), None, dir.path())
        .await
        .unwrap();
    assert!(sut.workers.is_empty(), "the API's process is the worker");
    let c = Client::new(&sut.base_url(), None, Duration::from_secs(2));
    let id = submit(&c, "combined").await;
    assert!(wait_status(&c, &id, "SUCCESS", Duration::from_secs(20)).await);
    sut.stop(Duration::from_secs(10)).await;
    sut.teardown().await.unwrap();
}

/// A link fault reaches the running system: the API's broker link goes down (the outbox API
/// keeps accepting, unready broker), comes back, and the backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_faults_reach_the_running_system() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let links = Links::start().await.unwrap();
    let sut = ReferenceSut::start(
        &SutConfig {
            workers: 1,
            ..SutConfig::default()
        },
        &backends(),
        Some(&links),
        dir.path(),
    )
    .await
    .unwrap();
    let c = Client::new(&sut.base_url(), None, Duration::from_secs(2));
    links.down("api-broker").await.unwrap();
    let ids = [submit(&c, "d1").await, submit(&c, "d2").await];
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &ids {
        assert_eq!(
            c.task(id).await.unwrap().unwrap().status,
            "PENDING",
            "the outbox holds it while the link is down"
        );
    }
    links.up("api-broker").await.unwrap();
    for id in &ids {
        assert!(
            wait_status(&c, id, "SUCCESS", Duration::from_secs(30)).await,
            "drained after the link returned"
        );
    }
    sut.stop(Duration::from_secs(10)).await;
    sut.teardown().await.unwrap();
}

/// A SUT dropped without an explicit teardown (a test that panicked) deletes its topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_system_leaves_no_queues_behind() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = SutConfig {
        workers: 0,
        via_links: false,
        ..SutConfig::default()
    };
    let sut = ReferenceSut::start(&config, &backends(), None, dir.path())
        .await
        .unwrap();
    let queue = sut.names.task_queue();
    let conn = lapin::Connection::connect(&crate::support::amqp_url(), Default::default())
        .await
        .unwrap();
    let exists = async |name: &str| harness::final_read::depth(&conn, name).await.is_ok();

    assert!(exists(&queue).await, "the system declared its queue");
    drop(sut);
    assert!(
        !exists(&queue).await,
        "dropping the system deleted its queue"
    );
}

/// The system reaches a broker over TLS: with `--amqp-ca-file` naming the private CA, it
/// connects over `amqps://` and runs a task, and the broker reports the connections as TLS;
/// without the CA, it does not start and says that the certificate's issuer is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_speaks_tls_to_the_broker_and_refuses_an_unknown_issuer() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki")).unwrap();
    let tls_port = harness::infra::free_port().unwrap();
    let opts = NodeOptions {
        config: pki.rabbitmq_listener(tls_port),
        ..NodeOptions::default()
    };
    let node = Node::start_with(&dir.path().join("node"), 0, &opts)
        .await
        .unwrap();
    let binary = harness::sut::reference_binary().unwrap();
    let database = format!("sqlite://{}", dir.path().join("tls.db").display());
    let args = |extra: &[&str]| -> Vec<String> {
        let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");
        ["all", "--amqp-url", &url, "--database-url", &database]
            .iter()
            .chain(&["--prefix", "tls", "--connect-timeout", "3s"])
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    let refused = std::process::Command::new(&binary)
        .args(args(&["--http-addr", "127.0.0.1:0"]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "started without the CA");
    assert!(
        stderr.contains("UnknownIssuer"),
        "the cause is named: {stderr}"
    );

    let ca = pki.ca_file().display().to_string();
    let sut = SutProcess::new("all", &binary, args(&["--amqp-ca-file", &ca]), dir.path()).unwrap();
    sut.start().await.unwrap();
    let c = Client::new(&sut.base_url(), None, Duration::from_secs(2));
    let id = submit(&c, "over-tls").await;
    assert!(wait_status(&c, &id, "SUCCESS", Duration::from_secs(20)).await);
    let ssl = node
        .ctl(&["list_connections", "ssl", "--silent"])
        .await
        .unwrap();
    let flags: Vec<&str> = ssl.split_whitespace().collect();
    assert!(
        !flags.is_empty() && flags.iter().all(|f| *f == "true"),
        "every connection is TLS: {ssl}"
    );
    sut.stop(Duration::from_secs(10)).await;
}
