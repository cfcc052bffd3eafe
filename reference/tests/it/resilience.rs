//! Faults on real processes and real sockets: a worker killed or stopped mid-stream, a broker
//! connection cut and restored.

use std::{collections::BTreeMap, time::Duration};

use reference::{message::TaskMessage, model::now_ms, store::Store, Mode};
use serde_json::json;

use crate::support::{
    link::{broker_addr, Link},
    process::Proc,
    wait_until, BrokerProbe, Client, World,
};

const ACCOUNTS: [&str; 5] = ["a0", "a1", "a2", "a3", "a4"];

/// Submits `n` credits of 1..=5 spread over the accounts; returns the expected balances.
async fn submit_credits(c: &Client, n: usize) -> (Vec<String>, BTreeMap<&'static str, i64>) {
    let mut want = BTreeMap::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let (account, amount) = (ACCOUNTS[i % ACCOUNTS.len()], (i % 5 + 1) as i64);
        *want.entry(account).or_insert(0) += amount;
        ids.push(
            c.submit_ok(
                &json!({"type": "credit", "payload": {"account": account, "amount": amount}}),
            )
            .await,
        );
    }
    (ids, want)
}

async fn all_succeeded(c: &Client, ids: &[String], limit: Duration) {
    for id in ids {
        let t = c.wait_terminal(id, limit).await;
        assert_eq!(t["status"], "SUCCESS", "{t}");
    }
}

async fn balances(c: &Client) -> BTreeMap<&'static str, i64> {
    let mut got = BTreeMap::new();
    for a in ACCOUNTS {
        got.insert(a, c.balance(a).await);
    }
    got
}

/// kill -9 of the worker while it holds unacked deliveries, then a restart: every task ends
/// SUCCESS and every balance is the sum of its distinct credits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let world = World::new("kill");
    let args = world.args(&[]);
    let api = Proc::start("api", &args, world.dir.path()).await;
    // Slow tasks keep deliveries in flight when the kill lands.
    let slow = json!({"type": "sleep", "payload": {"ms": 300}});
    let mut worker = Proc::start("worker", &args, world.dir.path()).await;
    let (mut ids, want) = submit_credits(&api.client, 150).await;
    for _ in 0..20 {
        ids.push(api.client.submit_ok(&slow).await);
    }
    let c = api.client.clone();
    let some_done = wait_until(Duration::from_secs(20), || async {
        c.balance("a0").await > 0
    })
    .await;
    assert!(some_done, "worker made progress before the kill");
    worker.kill();
    let restarted = Proc::start("worker", &args, world.dir.path()).await;
    all_succeeded(&api.client, &ids, Duration::from_secs(60)).await;
    assert_eq!(balances(&api.client).await, want);
    let probe = BrokerProbe::connect().await;
    assert_eq!(
        probe.depth(&world.topology().names.task_queue()).await,
        0,
        "no residue"
    );
    drop((restarted, api));
}

/// SIGTERM lets in-flight tasks finish and ack; the process exits 0 and nothing is redone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_then_exits_cleanly() {
    let world = World::new("sigterm");
    let args = world.args(&[]);
    let api = Proc::start("api", &args, world.dir.path()).await;
    let mut worker = Proc::start("worker", &args, world.dir.path()).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            api.client
                .submit_ok(&json!({"type": "sleep", "payload": {"ms": 1500}}))
                .await,
        );
    }
    // A delivery still buffered at SIGTERM goes back to the queue untouched; signal once all
    // four are being worked on, so that each one is in-flight work to finish.
    let c = api.client.clone();
    let all_running = wait_until(Duration::from_secs(10), || async {
        for id in &ids {
            if c.task(id).await["status"] != "RUNNING" {
                return false;
            }
        }
        true
    })
    .await;
    assert!(all_running, "the worker took all four tasks");
    let status = worker.terminate(Duration::from_secs(20));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        worker.log_text()
    );
    for id in &ids {
        let t = api.client.task(id).await;
        assert_eq!(
            (t["status"].as_str(), t["attempts"].as_i64()),
            (Some("SUCCESS"), Some(1)),
            "{t}"
        );
    }
    assert!(worker.log_text().contains("finishing in-flight tasks"));
}

/// With the broker unreachable the outbox API keeps accepting; when the link returns, the
/// relay drains the outbox and the worker reconnects and processes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_keeps_accepting_and_drains_after_the_broker_returns() {
    let mut world = World::new("outbox");
    let link = Link::start(broker_addr()).await;
    let via_link = link.amqp_url();
    let api = world.start(Mode::Api, &["--amqp-url", &via_link]).await;
    let worker = world.start(Mode::Worker, &["--amqp-url", &via_link]).await;
    let c = &api.client;
    all_succeeded(
        c,
        &[c.submit_ok(&json!({"type": "echo"})).await],
        Duration::from_secs(20),
    )
    .await;

    link.cut().await;
    let broker = api.running.as_ref().unwrap().broker().clone();
    assert!(wait_until(Duration::from_secs(10), || async { !broker.is_connected() }).await);
    let ready = c.get("/readyz").await.expect(200, "OK");
    assert_eq!(
        (
            ready["data"]["broker"].as_str(),
            ready["data"]["ready"].as_bool()
        ),
        (Some("down"), Some(true))
    );
    let (ids, want) = submit_credits(c, 20).await;
    for id in &ids {
        assert_eq!(c.task(id).await["status"], "PENDING");
    }
    let backlog = String::from_utf8(c.get("/metrics").await.bytes.to_vec()).unwrap();
    assert!(
        backlog.contains("reference_outbox_backlog"),
        "backlog gauge exported"
    );

    link.restore().await;
    all_succeeded(c, &ids, Duration::from_secs(60)).await;
    assert_eq!(balances(c).await, want);
    assert!(
        metric(c, "reference_outbox_relay_interruptions_total").await >= 1.0,
        "the relay's interruption is counted"
    );
    worker.stop().await;
    api.stop().await;
}

/// An idle system costs (almost) nothing: its loops wait for work or their poll, never spin.
/// Spinning would burn a core; the bound is a tenth of one, far above an idle process's use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_system_does_not_spin() {
    let world = World::new("idle");
    let args = world.args(&["--poll-interval", "200ms"]);
    let app = Proc::start("all", &args, world.dir.path()).await;
    // Work first, so that every loop has been through its busy path once.
    let echo = json!({"type": "echo"});
    let ids: Vec<String> =
        futures_util::future::join_all((0..20).map(|_| app.client.submit_ok(&echo))).await;
    all_succeeded(&app.client, &ids, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, began) = (app.cpu_time(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = app.cpu_time() - before;
    let idle_for = began.elapsed();
    assert!(
        used < idle_for / 10,
        "idle for {idle_for:?}, the system used {used:?} of CPU"
    );
}

/// The value of one Prometheus sample (`name{labels}`) in the process's `/metrics`; 0 when absent.
async fn metric(c: &Client, sample: &str) -> f64 {
    let text = String::from_utf8(c.get("/metrics").await.bytes.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The outbox's counters are exact on a healthy broker (a process of its own, so that no other
/// test's counts mix in): every task published once, none counted as failed, the relay never
/// interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_counts_what_it_published_and_nothing_failed() {
    const TASKS: usize = 600;
    let world = World::new("counters");
    let api = Proc::start("api", &world.args(&[]), world.dir.path()).await;
    api.client.submit_echoes(TASKS).await;
    let published = r#"reference_tasks_published_total{strategy="outbox"}"#;
    let all = wait_until(Duration::from_secs(20), || async {
        metric(&api.client, published).await >= TASKS as f64
    })
    .await;
    assert!(all, "{} published", metric(&api.client, published).await);
    assert_eq!(metric(&api.client, published).await, TASKS as f64);
    let failed = r#"reference_tasks_publish_failed_total{strategy="outbox"}"#;
    assert_eq!(metric(&api.client, failed).await, 0.0);
    let interrupted = "reference_outbox_relay_interruptions_total";
    assert_eq!(metric(&api.client, interrupted).await, 0.0);
}

/// A copy of a finished credit that comes back after housekeeping swept its dedupe record (a
/// dead-letter queue re-driven days later, a message stuck in a retry queue) is still not
/// applied again: the task's end status stops it. A process of its own, so that the duplicate
/// counter is this test's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_arriving_after_its_dedupe_record_was_swept_is_not_applied_again() {
    let world = World::new("swept");
    let all = Proc::start("all", &world.args(&[]), world.dir.path()).await;
    let c = &all.client;
    let body = json!({"type": "credit", "payload": {"account": "late", "amount": 7}});
    let id = c.submit_ok(&body).await;
    assert_eq!(
        c.wait_terminal(&id, Duration::from_secs(20)).await["status"],
        "SUCCESS"
    );
    let store = Store::connect(&world.db_url, Duration::from_secs(10))
        .await
        .unwrap();
    let swept = store.sweep_retention(now_ms() + 1, 100, 1).await.unwrap();
    assert_eq!(swept.processed, 1, "the dedupe record is swept");

    let copy = TaskMessage {
        task_id: id.parse().unwrap(),
        spec: serde_json::from_value(body).unwrap(),
    };
    BrokerProbe::connect()
        .await
        .publish(
            &world.topology().names.task_exchange(),
            &copy.routing_key(),
            &copy.encode(),
            &id,
        )
        .await;
    let skipped = r#"reference_tasks_duplicates_skipped_total{dedupe="store"}"#;
    let seen = wait_until(Duration::from_secs(20), || async {
        metric(c, skipped).await >= 1.0
    })
    .await;
    assert!(seen, "the copy is consumed and skipped as a duplicate");
    assert_eq!(c.balance("late").await, 7, "the credit is applied once");
}
