//! The task pipeline against the real broker: lifecycles, retries, dead-lettering, idempotency,
//! events, and the publish / retry / queue-type switches.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reference::Mode;
use serde_json::{json, Value};

use crate::support::{
    link::{broker_addr, Link},
    wait_until, BrokerProbe, Client, World,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn end_state(c: &Client, body: Value) -> (String, Value) {
    let id = c.submit_ok(&body).await;
    let task = c.wait_terminal(&id, LIMIT).await;
    (id, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_type_reaches_its_end_state() {
    let mut world = World::new("lifecycle");
    let app = world.start(Mode::All, &[]).await;
    let c = &app.client;

    let (_, echo) = end_state(c, json!({"type": "echo", "payload": {"hello": [1, 2]}})).await;
    assert_eq!(
        (echo["status"].as_str(), echo["attempts"].as_i64()),
        (Some("SUCCESS"), Some(1))
    );
    assert_eq!(echo["result"], json!({"hello": [1, 2]}));

    let (_, sleep) = end_state(c, json!({"type": "sleep", "payload": {"ms": 150}})).await;
    assert_eq!(
        (
            sleep["status"].as_str(),
            sleep["result"]["slept_ms"].as_i64()
        ),
        (Some("SUCCESS"), Some(150))
    );

    let (_, flaky) = end_state(c, json!({"type": "flaky", "payload": {"fail_times": 2}})).await;
    assert_eq!(
        (flaky["status"].as_str(), flaky["attempts"].as_i64()),
        (Some("SUCCESS"), Some(3))
    );

    let (flaky_dead, flaky5) =
        end_state(c, json!({"type": "flaky", "payload": {"fail_times": 5}})).await;
    assert_eq!(
        (flaky5["status"].as_str(), flaky5["attempts"].as_i64()),
        (Some("FAILED"), Some(4))
    );

    let (poison_id, poison) = end_state(c, json!({"type": "poison"})).await;
    assert_eq!(
        (poison["status"].as_str(), poison["attempts"].as_i64()),
        (Some("FAILED"), Some(4))
    );
    assert!(poison["error"].as_str().unwrap().contains("poison"));

    let (_, credit) = end_state(
        c,
        json!({"type": "credit", "payload": {"account": "acc-1", "amount": 42}}),
    )
    .await;
    assert_eq!(credit["status"], "SUCCESS");
    assert_eq!(c.balance("acc-1").await, 42);

    let probe = BrokerProbe::connect().await;
    let mut dead = probe
        .drain_ids(&world.topology().names.dead_letter_queue())
        .await;
    dead.sort();
    let mut want = vec![poison_id, flaky_dead];
    want.sort();
    assert_eq!(dead, want, "exactly the failed tasks are dead-lettered");
    for delay in ["100ms", "200ms", "400ms"] {
        assert_eq!(
            probe
                .depth(&format!("{}.tasks.retry.{delay}", world.prefix))
                .await,
            0
        );
    }
    assert_eq!(probe.depth(&world.topology().names.task_queue()).await, 0);
    app.stop().await;
}

/// Attempts of a poison task are spaced by the retry queues' delays (default 1 s, 2 s, 4 s),
/// and between them the task waits PENDING with the last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_default_backoff_schedule() {
    let mut world = World::new("schedule");
    let app = world
        .start(Mode::All, &["--retry-delays", "1s,2s,4s"])
        .await;
    let c = &app.client;
    let id = c.submit_ok(&json!({"type": "poison"})).await;
    let started = Instant::now();
    // When each attempt was first seen (RUNNING with a new attempt count).
    let mut seen_at: Vec<Duration> = Vec::new();
    // The attempts after which the task was seen waiting for its retry.
    let mut waited_after = std::collections::BTreeSet::new();
    loop {
        let t = c.task(&id).await;
        let attempts = t["attempts"].as_u64().unwrap_or(0) as usize;
        while seen_at.len() < attempts {
            seen_at.push(started.elapsed());
        }
        if t["status"] == "PENDING" && t["error"].as_str().is_some_and(|e| e.contains("poison")) {
            waited_after.insert(attempts);
        }
        if t["status"] == "FAILED" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "poison task ends FAILED: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        waited_after,
        [1, 2, 3].into(),
        "between attempts the task is PENDING with the last attempt's error"
    );
    let gaps: Vec<Duration> = seen_at.windows(2).map(|w| w[1] - w[0]).collect();
    println!("observed retry delays: {gaps:?}");
    let planned = [1.0, 2.0, 4.0];
    assert_eq!(gaps.len(), 3, "four attempts, three gaps: {seen_at:?}");
    for (gap, want) in gaps.iter().zip(planned) {
        // Never early (the queue's TTL holds the message); late only by scheduling and polling.
        let g = gap.as_secs_f64();
        assert!(
            g > want - 0.1 && g < want + 2.0,
            "gap {g:.2}s for a planned {want}s; all {gaps:?}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_replays_rejects_and_dedupes() {
    let mut world = World::new("idem");
    let app = world.start(Mode::All, &[]).await;
    let c = &app.client;
    let body = json!({"type": "credit", "payload": {"account": "idem", "amount": 7}});

    let first = c.submit("key-1", &body).await;
    first.expect(202, "OK");
    let again = c.submit("key-1", &body).await;
    assert_eq!(
        (again.status, &again.bytes),
        (202, &first.bytes),
        "replay is byte-identical"
    );
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(first.header("idempotent-replayed"), None);

    // Same JSON, other formatting and key order: the same request.
    let reordered = r#"{ "payload": {"amount": 7, "account": "idem"}, "type": "credit" }"#;
    let req = c
        .http
        .post(c.url("/api/v1/tasks"))
        .header("idempotency-key", "key-1")
        .header("content-type", "application/json");
    assert_eq!(c.send(req.body(reordered)).await.bytes, first.bytes);

    let other = json!({"type": "credit", "payload": {"account": "idem", "amount": 8}});
    c.submit("key-1", &other)
        .await
        .expect(422, "IDEMPOTENCY_KEY_REUSED");

    // Concurrent duplicates: one task, every 202 the same, the rest 409.
    let body2 = json!({"type": "credit", "payload": {"account": "idem", "amount": 100}});
    let replies = futures_util::future::join_all((0..8).map(|_| c.submit("key-2", &body2))).await;
    let accepted: Vec<_> = replies.iter().filter(|r| r.status == 202).collect();
    assert!(!accepted.is_empty());
    assert!(accepted.iter().all(|r| r.bytes == accepted[0].bytes));
    assert!(
        replies.iter().all(|r| r.status == 202 || r.status == 409),
        "{replies:?}"
    );

    let id = first.json()["data"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_terminal(&id, LIMIT).await;
    let id2 = accepted[0].json()["data"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_terminal(&id2, LIMIT).await;
    assert_eq!(
        c.balance("idem").await,
        107,
        "each key's credit applied exactly once"
    );
    app.stop().await;
}

/// A duplicate arriving while the first request still waits for the broker is 409; once the
/// first completes, the duplicate replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_while_first_is_in_flight_is_409() {
    let mut world = World::new("inflight");
    let link = Link::start(broker_addr()).await;
    let url = link.amqp_url();
    let app = world
        .start(Mode::Api, &["--publish", "confirm", "--amqp-url", &url])
        .await;
    link.set_latency(Duration::from_millis(400)).await;
    let c = app.client.clone();
    let body = json!({"type": "echo"});
    let first = tokio::spawn({
        let (c, body) = (c.clone(), body.clone());
        async move { c.submit("slow-key", &body).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.submit("slow-key", &body)
        .await
        .expect(409, "CONFLICT_ERR");
    let first = first.await.unwrap();
    first.expect(202, "OK");
    link.set_latency(Duration::ZERO).await;
    assert_eq!(c.submit("slow-key", &body).await.bytes, first.bytes);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_publish_events_with_stable_ids() {
    let mut world = World::new("events");
    let app = world.start(Mode::All, &[]).await;
    let probe = BrokerProbe::connect().await;
    let mut events = probe
        .events(&world.topology().names.events_exchange())
        .await;

    let ok_id = app.client.submit_ok(&json!({"type": "echo"})).await;
    let bad_id = app.client.submit_ok(&json!({"type": "poison"})).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (d, body) = next_event(&mut events).await;
        let message_id = d.properties.message_id().as_ref().unwrap().to_string();
        assert_eq!(body["event_id"].as_str(), Some(message_id.as_str()));
        let status = body["task"]["status"].as_str().unwrap().to_string();
        seen.push((
            d.routing_key.to_string(),
            body["task"]["id"].as_str().unwrap().to_string(),
            status,
        ));
    }
    seen.sort();
    let mut want = vec![
        ("task.failed".to_string(), bad_id, "FAILED".to_string()),
        ("task.succeeded".to_string(), ok_id, "SUCCESS".to_string()),
    ];
    want.sort();
    assert_eq!(seen, want);
    app.stop().await;
}

async fn next_event(events: &mut lapin::Consumer) -> (lapin::message::Delivery, Value) {
    let d = tokio::time::timeout(LIMIT, events.next())
        .await
        .expect("event arrives")
        .unwrap()
        .unwrap();
    let body = serde_json::from_slice(&d.data).unwrap();
    (d, body)
}

/// Waits for the event of task `id`, passing over others (events are at least once).
async fn event_of(events: &mut lapin::Consumer, id: &str) {
    while next_event(events).await.1["task"]["id"].as_str() != Some(id) {}
}

/// The events channel breaks with the broker connection; the dispatcher must open a fresh one
/// on the new connection, not keep publishing on the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_resume_after_the_broker_link_returns() {
    let mut world = World::new("events-relink");
    let link = Link::start(broker_addr()).await;
    let app = world
        .start(Mode::All, &["--amqp-url", &link.amqp_url()])
        .await;
    let probe = BrokerProbe::connect().await;
    let mut events = probe
        .events(&world.topology().names.events_exchange())
        .await;
    let before = app.client.submit_ok(&json!({"type": "echo"})).await;
    event_of(&mut events, &before).await;

    link.cut().await;
    let broker = app.running.as_ref().unwrap().broker().clone();
    assert!(wait_until(Duration::from_secs(10), || async { !broker.is_connected() }).await);
    link.restore().await;
    assert!(wait_until(LIMIT, || async { broker.is_connected() }).await);
    let after = app.client.submit_ok(&json!({"type": "echo"})).await;
    event_of(&mut events, &after).await;
    app.stop().await;
}

/// What is written wakes the outbox relay and the event dispatcher: with their idle polls an
/// hour apart (the tests' 50 ms polls would hide a missing wake-up), tasks are still published,
/// run and announced, one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wake_the_relay_and_the_dispatcher_without_their_polls() {
    let mut world = World::new("wakeups");
    let app = world.start(Mode::All, &["--poll-interval", "1h"]).await;
    let probe = BrokerProbe::connect().await;
    let mut events = probe
        .events(&world.topology().names.events_exchange())
        .await;
    // The first may ride on the loops' first pass at start-up; the others need a wake-up.
    for _ in 0..3 {
        let id = app.client.submit_ok(&json!({"type": "echo"})).await;
        event_of(&mut events, &id).await;
    }
    app.stop().await;
}

/// A backlog larger than one relay batch (500) is published batch after batch once the broker is
/// back, not one batch per wake-up: with the relay's idle poll an hour apart, every task
/// accepted while the API's broker link was down reaches the work queue after it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_backlog_larger_than_a_batch_drains_once_the_broker_returns() {
    const TASKS: usize = 1_200;
    let mut world = World::new("backlog");
    let link = Link::start(broker_addr()).await;
    let app = world
        .start(
            Mode::Api,
            &["--poll-interval", "1h", "--amqp-url", &link.amqp_url()],
        )
        .await;
    let broker = app.running.as_ref().unwrap().broker().clone();
    link.cut().await;
    assert!(wait_until(Duration::from_secs(10), || async { !broker.is_connected() }).await);
    app.client.submit_echoes(TASKS).await;
    link.restore().await;
    let probe = BrokerProbe::connect().await;
    let queue = world.topology().names.task_queue();
    let all_there = wait_until(LIMIT, || async {
        probe.depth(&queue).await as usize == TASKS
    })
    .await;
    assert!(
        all_there,
        "{} of {TASKS} accepted tasks reached the work queue",
        probe.depth(&queue).await
    );
    app.stop().await;
}

/// A graceful shutdown publishes the outbox's backlog before the process ends, batch after
/// batch, and ends once that is done rather than at its timeout: with confirms coming 2 s late,
/// the relay is still waiting on a batch when the shutdown begins and more than two batches are
/// left behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_publishes_the_outbox_backlog_and_ends_when_done() {
    const TASKS: usize = 1_200;
    let mut world = World::new("drain");
    let link = Link::start(broker_addr()).await;
    let app = world
        .start(
            Mode::Api,
            &["--amqp-url", &link.amqp_url(), "--shutdown-timeout", "5m"],
        )
        .await;
    link.set_latency(Duration::from_secs(2)).await;
    app.client.submit_echoes(TASKS).await;
    let stopped = tokio::time::timeout(Duration::from_secs(60), app.stop()).await;
    assert!(stopped.is_ok(), "the shutdown ran into its 5 min timeout");
    link.set_latency(Duration::ZERO).await;
    let probe = BrokerProbe::connect().await;
    let queue = world.topology().names.task_queue();
    let published: std::collections::BTreeSet<String> =
        probe.drain_ids(&queue).await.into_iter().collect();
    assert_eq!(published.len(), TASKS, "tasks published by the shutdown");
}

/// The seed-style publishing strategies still deliver on a healthy broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_fire_and_forget_publishing_deliver() {
    for publish in ["confirm", "fire-and-forget"] {
        let mut world = World::new("publish");
        let app = world.start(Mode::All, &["--publish", publish]).await;
        let (_, task) = end_state(
            &app.client,
            json!({"type": "credit", "payload": {"account": "p", "amount": 3}}),
        )
        .await;
        assert_eq!(task["status"], "SUCCESS", "--publish {publish}");
        assert_eq!(app.client.balance("p").await, 3);
        // Operators tell the strategies apart on the dashboard.
        let metrics = app.client.get("/metrics").await.bytes;
        let needle = format!("reference_tasks_published_total{{strategy=\"{publish}\"}}");
        assert!(
            String::from_utf8_lossy(&metrics).contains(&needle),
            "metrics lack {needle}"
        );
        app.stop().await;
    }
}

/// `--ack auto` (the seed's naive consumer) leaves nothing for the worker to settle: with a
/// prefetch of 2 it still runs all of 10 tasks, where deliveries left unsettled would stop it at
/// 2. The demonstrations of what this strategy loses rely on it working as named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ack_consumes_past_its_prefetch() {
    let mut world = World::new("autoack");
    let app = world
        .start(Mode::All, &["--ack", "auto", "--prefetch", "2"])
        .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(app.client.submit_ok(&json!({"type": "echo"})).await);
    }
    for id in &ids {
        assert_eq!(
            app.client.wait_terminal(id, LIMIT).await["status"],
            "SUCCESS"
        );
    }
    app.stop().await;
}

/// `--publish confirm` answers only once the broker has confirmed: when the confirm is late (the
/// broker link 8 s slow), the client hears 503 rather than a 202 for a task it cannot vouch for,
/// and a retry with the same key once the link is back is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_publishing_answers_only_after_the_broker_confirmed() {
    let mut world = World::new("confirm-late");
    let link = Link::start(broker_addr()).await;
    let app = world
        .start(
            Mode::Api,
            &["--publish", "confirm", "--amqp-url", &link.amqp_url()],
        )
        .await;
    let body = json!({"type": "echo"});
    app.client.submit_ok(&body).await;
    link.set_latency(Duration::from_secs(8)).await;
    let late = app.client.submit("late-confirm", &body).await;
    assert_eq!(late.status, 503, "{:?}", late.json());
    link.set_latency(Duration::ZERO).await;
    assert_eq!(app.client.submit("late-confirm", &body).await.status, 202);
    app.stop().await;
}

/// `--retry requeue` (the seed's first snippet) retries a poison task forever and never
/// dead-letters it: the weakness the backoff strategy fixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_strategy_loops_on_poison() {
    let mut world = World::new("requeue");
    let app = world.start(Mode::All, &["--retry", "requeue"]).await;
    let c = &app.client;
    let id = c.submit_ok(&json!({"type": "poison"})).await;
    let looping = wait_until(LIMIT, || async {
        c.task(&id).await["attempts"].as_i64().unwrap_or(0) > 20
    })
    .await;
    assert!(looping, "a poison task is redelivered without limit");
    assert_ne!(c.task(&id).await["status"], "FAILED");
    let probe = BrokerProbe::connect().await;
    assert_eq!(
        probe
            .depth(&world.topology().names.dead_letter_queue())
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_queues_work_too_and_garbage_is_dead_lettered() {
    let mut world = World::new("classic");
    let app = world.start(Mode::All, &["--queue-type", "classic"]).await;
    let (_, task) = end_state(&app.client, json!({"type": "echo"})).await;
    assert_eq!(task["status"], "SUCCESS");

    let probe = BrokerProbe::connect().await;
    probe
        .publish(
            &world.topology().names.task_exchange(),
            "task.echo",
            b"not json",
            "garbage-1",
        )
        .await;
    let dlq = world.topology().names.dead_letter_queue();
    assert!(
        wait_until(LIMIT, || async { probe.depth(&dlq).await == 1 }).await,
        "undecodable message dead-lettered"
    );
    assert_eq!(probe.drain_ids(&dlq).await, ["garbage-1"]);
    app.stop().await;
}
