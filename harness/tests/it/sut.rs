//! The system under test as real processes behind real links, and whole experiments.

use std::time::Duration;

use harness::{
    client::Client,
    links::Links,
    sut::{ReferenceSut, SutConfig},
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
