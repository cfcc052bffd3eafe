//! The system under test as real processes behind real links, and whole experiments.

use std::time::Duration;

use harness::{
    client::Client,
    experiment::{self, Experiment},
    infra::Broker,
    links::Links,
    nemesis::{Fault, Step},
    run::RunDir,
    sut::{ReferenceSut, SutConfig},
};
use reports::Validity;
use serde_json::json;

use crate::support::{amqp_url, init_tracing, runs_dir};

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
    let sut = ReferenceSut::start(&config, &amqp_url(), Some(&links), dir.path())
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
        &amqp_url(),
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

/// A whole experiment: workload, a worker killed and a link slowed mid-run, final read,
/// checkers, run directory. The robust defaults come out valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_runs_end_to_end_and_writes_its_run_directory() {
    init_tracing();
    let exp = Experiment {
        name: "it-kill-worker".into(),
        // Paced so the workload outlasts the faults and shows the recovery.
        ops: 200,
        rate: Some(60.0),
        concurrency: 4,
        mix: harness::workload::Mix {
            poison: 1,
            reuse_rate: 0.05,
            ..Default::default()
        },
        faults: vec![
            Step {
                at: Duration::from_millis(500),
                hold: Duration::from_millis(800),
                fault: Fault::Kill {
                    process: "worker-0".into(),
                },
            },
            Step {
                at: Duration::from_millis(300),
                hold: Duration::from_secs(1),
                fault: Fault::Latency {
                    link: "worker-1-broker".into(),
                    ms: 100,
                    jitter_ms: 0,
                },
            },
        ],
        ..Experiment::default()
    };
    let run = RunDir::create(Some(&runs_dir()), &exp.name).unwrap();
    let broker = Broker::External(amqp_url());
    let report = experiment::execute(&exp, &broker, &run).await.unwrap();
    for v in &report.verdicts {
        println!("{:<14} {:?} {}", v.checker, v.validity, v.summary);
    }
    let by_name = |n: &str| {
        report
            .verdicts
            .iter()
            .find(|v| v.checker == n)
            .unwrap_or_else(|| panic!("verdict {n}"))
    };
    for checker in [
        "task-ledger",
        "idempotency",
        "bank",
        "dead-letters",
        "queue-residue",
        "callbacks",
        "recovery",
    ] {
        assert_eq!(
            by_name(checker).validity,
            Validity::Valid,
            "{:?}",
            by_name(checker)
        );
    }
    assert!(by_name("task-ledger").counts["ok"] > 50);
    assert!(
        by_name("idempotency").counts["rejections_422"] > 0,
        "key reuse was exercised"
    );
    assert!(
        by_name("dead-letters").counts["failed_tasks"] > 0,
        "poison tasks were dead-lettered"
    );
    for file in [
        "experiment.json",
        "history.jsonl",
        "final.json",
        "verdict.json",
        "logs/api.log",
        "logs/worker-0.log",
    ] {
        assert!(run.file(file).is_file(), "{file} in the run directory");
    }
    let history = std::fs::read_to_string(run.file("history.jsonl")).unwrap();
    assert!(
        history.contains("\"start-fault\"") && history.contains("\"stop-fault\""),
        "faults are in the history"
    );
}
