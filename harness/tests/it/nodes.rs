//! Private RabbitMQ nodes and clusters started from the local installation, and the broker
//! faults on them. Skipped (with a note) where `rabbitmq-server` is not installed.
//!
//! Destructive single-node tests start their own node; the cluster tests share the run's
//! cluster, the faulting one holding it exclusively and rejoining what it killed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{stream::FuturesUnordered, StreamExt};
use harness::infra::rabbit::{self, Node};
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm,
};

/// Longest wait for a confirm that must arrive.
const CONFIRM: Duration = Duration::from_secs(30);

fn skip() -> bool {
    crate::support::init_tracing();
    let missing = !rabbit::installed();
    if missing {
        eprintln!("skipped: rabbitmq-server is not installed (apt-get install rabbitmq-server)");
    }
    missing
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

#[derive(Clone, Copy)]
enum Kind {
    Transient,
    Durable,
    Quorum,
}

async fn declare(ch: &Channel, queue: &str, kind: Kind) {
    let mut args = FieldTable::default();
    if let Kind::Quorum = kind {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    let opts = QueueDeclareOptions {
        durable: !matches!(kind, Kind::Transient),
        ..Default::default()
    };
    ch.queue_declare(queue.into(), opts, args)
        .await
        .unwrap_or_else(|e| panic!("declare {queue}: {e}"));
}

/// Exact number of ready messages.
async fn depth(conn: &Connection, queue: &str) -> u32 {
    harness::final_read::depth(conn, queue)
        .await
        .unwrap_or_else(|e| panic!("passive declare {queue}: {e}"))
}

/// A persistent message to `queue` through the default exchange.
async fn publish(ch: &Channel, queue: &str, body: &[u8]) -> lapin::Result<PublisherConfirm> {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
}

async fn publish_confirmed(ch: &Channel, queue: &str, body: &[u8]) {
    let confirm = publish(ch, queue, body).await.expect("publish");
    let confirmation = tokio::time::timeout(CONFIRM, confirm)
        .await
        .expect("confirm arrives")
        .expect("confirm");
    assert!(confirmation.is_ack(), "broker acks {queue}");
}

/// Consumes `count` messages (manual acks), failing if the queue goes quiet for `idle` first.
async fn consume(conn: &Connection, queue: &str, count: usize, idle: Duration) -> Vec<Vec<u8>> {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(500, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut deliveries = ch
        .basic_consume(
            queue.into(),
            "nodes-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut bodies = Vec::with_capacity(count);
    while bodies.len() < count {
        let delivery = tokio::time::timeout(idle, deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("{queue}: only {} of {count} delivered", bodies.len()))
            .expect("consumer open")
            .expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        bodies.push(delivery.data);
    }
    let _ = ch.close(200, "consumed".into()).await;
    bodies
}

async fn delete(conn: &Connection, queue: &str) {
    let ch = conn.create_channel().await.expect("channel");
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = ch.close(200, "deleted".into()).await;
}

fn numbered(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("m{i}").into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_node_serves_and_keeps_durable_messages_across_stop_and_kill() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1).await.expect("node starts");
    println!(
        "single node start (spawn → AMQP ready): {:?} ({})",
        node.last_start_time().unwrap(),
        node.name()
    );
    assert!(node.is_running());
    assert!(node.name().ends_with("@localhost"));
    assert_ne!(node.port(), 5672, "never the machine's broker port");

    // Serves: a round trip through a transient queue, then 100 persistent messages kept in a
    // durable one.
    let conn = connect(&node.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "roundtrip", Kind::Transient).await;
    publish_confirmed(&ch, "roundtrip", b"hello").await;
    assert_eq!(
        consume(&conn, "roundtrip", 1, CONFIRM).await,
        vec![b"hello".to_vec()]
    );
    declare(&ch, "durable", Kind::Durable).await;
    for body in numbered(100) {
        publish_confirmed(&ch, "durable", &body).await;
    }
    let _ = conn.close(200, "bye".into()).await;

    node.stop().await.expect("graceful stop");
    assert!(!node.is_running());
    assert!(
        Connection::connect(&node.amqp_url(), ConnectionProperties::default())
            .await
            .is_err(),
        "a stopped node refuses connections"
    );
    node.start_again().await.expect("starts again after stop");
    println!(
        "start again after stop: {:?}",
        node.last_start_time().unwrap()
    );
    let conn = connect(&node.amqp_url()).await;
    assert_eq!(
        depth(&conn, "durable").await,
        100,
        "durable messages survive a stop"
    );
    let _ = conn.close(200, "bye".into()).await;

    node.kill();
    assert!(!node.is_running());
    node.start_again()
        .await
        .expect("starts again after kill -9");
    println!(
        "start again after kill -9: {:?}",
        node.last_start_time().unwrap()
    );
    let conn = connect(&node.amqp_url()).await;
    assert_eq!(
        consume(&conn, "durable", 100, CONFIRM).await,
        numbered(100),
        "confirmed persistent messages survive kill -9, in order"
    );
    let _ = conn.close(200, "bye".into()).await;

    node.stop().await.expect("final stop");
    assert!(!node.is_running());
}

/// Publishes one message with confirm in the background; the task returns how long it took.
fn confirm_in_background(ch: &Channel, queue: &'static str) -> tokio::task::JoinHandle<Duration> {
    let ch = ch.clone();
    tokio::spawn(async move {
        let began = Instant::now();
        publish_confirmed(&ch, queue, b"stalled?").await;
        began.elapsed()
    })
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stalls_confirms_and_memory_alarm_blocks_publishers() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1).await.expect("node starts");
    let conn = connect(&node.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "faults", Kind::Transient).await;
    publish_confirmed(&ch, "faults", b"before").await;

    node.pause();
    assert!(node.is_paused() && node.is_running());
    let pending = confirm_in_background(&ch, "faults");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!pending.is_finished(), "no confirm from a paused node");
    node.resume();
    let stall = tokio::time::timeout(CONFIRM, pending)
        .await
        .expect("confirm after resume")
        .unwrap();
    println!("publish stalled by a 3 s pause: {stall:?}");

    node.set_memory_alarm(true).await.expect("alarm on");
    assert!(node.memory_alarm_active().await.unwrap());
    let pending = confirm_in_background(&ch, "faults");
    wait_for("the broker blocks the publishing connection", || {
        conn.status().blocked()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pending.is_finished(),
        "no confirm while the memory alarm is on"
    );
    node.set_memory_alarm(false).await.expect("alarm off");
    let blocked = tokio::time::timeout(CONFIRM, pending)
        .await
        .expect("confirm once the alarm clears")
        .unwrap();
    wait_for("the broker unblocks the connection", || {
        !conn.status().blocked()
    })
    .await;
    println!("publish blocked by the memory alarm: {blocked:?}");
    assert_eq!(depth(&conn, "faults").await, 3);
    let _ = conn.close(200, "bye".into()).await;

    // The watermark is runtime state: a restart clears the alarm.
    node.set_memory_alarm(true).await.expect("alarm on again");
    node.restart().await.expect("restart");
    assert!(
        !node.memory_alarm_active().await.unwrap(),
        "restart clears the alarm"
    );
    node.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_node_is_started_once_and_serves() {
    if skip() {
        return;
    }
    let node = rabbit::shared_node().await.expect("shared node");
    let again = rabbit::shared_node().await.expect("shared node");
    assert!(Arc::ptr_eq(&node, &again), "one node per test process");
    let conn = connect(&node.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    let queue = format!("shared-{}", uuid::Uuid::new_v4());
    declare(&ch, &queue, Kind::Transient).await;
    publish_confirmed(&ch, &queue, b"x").await;
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is there");
    assert_eq!(got.delivery.data, b"x");
    delete(&conn, &queue).await;
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_is_one_cluster_and_serves_from_every_node() {
    if skip() {
        return;
    }
    let cluster = rabbit::shared_cluster().await.expect("cluster forms");
    let _steady = cluster.hold_steady().await.expect("cluster whole");
    println!(
        "cluster of 3 formed in {:?}; node starts: {:?}",
        cluster.formation_time(),
        cluster
            .nodes()
            .iter()
            .map(|n| n.last_start_time())
            .collect::<Vec<_>>()
    );
    let names: BTreeSet<String> = cluster.nodes().iter().map(|n| n.name().into()).collect();
    assert_eq!(names.len(), 3);
    for i in 0..3 {
        let seen = cluster.membership(i).await.expect("cluster_status");
        let running: BTreeSet<String> = seen.running_nodes.into_iter().collect();
        let disk: BTreeSet<String> = seen.disk_nodes.into_iter().collect();
        assert_eq!(running, names, "node {i} sees all three running");
        assert_eq!(disk, names, "node {i} sees all three as members");
    }

    // A quorum queue declared on one node, written through another, read through the third.
    let queue = format!("cluster-{}", uuid::Uuid::new_v4());
    let urls = cluster.amqp_urls();
    let (c0, c1, c2) = (
        connect(&urls[0]).await,
        connect(&urls[1]).await,
        connect(&urls[2]).await,
    );
    declare(&confirm_channel(&c0).await, &queue, Kind::Quorum).await;
    let ch = confirm_channel(&c1).await;
    for body in numbered(50) {
        publish_confirmed(&ch, &queue, &body).await;
    }
    assert_eq!(consume(&c2, &queue, 50, CONFIRM).await, numbered(50));
    let leader = cluster.leader_of(&queue).await.expect("list_queues");
    assert!(leader.is_some(), "the quorum queue has a leader");
    assert_eq!(cluster.leader_of("no-such-queue").await.unwrap(), None);
    delete(&c0, &queue).await;

    // Every member runs the management agent, so `list_queues` counts the messages of a quorum
    // queue wherever it is led (declared through a member, it is led there).
    let mut counted = Vec::new();
    for (i, conn) in [&c0, &c1, &c2].into_iter().enumerate() {
        let queue = format!("counted-{i}-{}", uuid::Uuid::new_v4());
        let ch = confirm_channel(conn).await;
        declare(&ch, &queue, Kind::Quorum).await;
        for body in numbered(5) {
            publish_confirmed(&ch, &queue, &body).await;
        }
        counted.push(queue);
    }
    let listed = listed_messages(cluster.node(0), &counted, 5).await;
    for queue in &counted {
        let leader = cluster.leader_of(queue).await.unwrap();
        assert_eq!(
            listed[queue],
            Some(5),
            "list_queues counts {queue} led by {leader:?}"
        );
        delete(&c0, queue).await;
    }
}

/// The `messages` column of `rabbitmqctl list_queues` for `queues`, polled until each shows
/// `expected` (statistics lag up to 5 s) or 15 s pass.
async fn listed_messages(
    node: &Node,
    queues: &[String],
    expected: u64,
) -> BTreeMap<String, Option<u64>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = node
            .ctl(&[
                "list_queues",
                "name",
                "messages",
                "--formatter",
                "json",
                "--quiet",
            ])
            .await
            .expect("list_queues");
        let listed: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let counts: BTreeMap<String, Option<u64>> = queues
            .iter()
            .map(|name| {
                let count = listed
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|q| q["name"] == name.as_str())
                    .and_then(|q| q["messages"].as_u64());
                (name.clone(), count)
            })
            .collect();
        if counts.values().all(|c| *c == Some(expected)) || Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What happened to each publish of the stream.
#[derive(Default)]
struct Outcomes {
    confirmed: BTreeSet<u32>,
    nacked: BTreeSet<u32>,
    /// No answer or an error: it may or may not be in the queue.
    unknown: BTreeSet<u32>,
    worst_stall: Duration,
}

impl Outcomes {
    fn record(&mut self, seq: u32, took: Duration, result: Option<lapin::Result<bool>>) {
        self.worst_stall = self.worst_stall.max(took);
        match result {
            Some(Ok(true)) => self.confirmed.insert(seq),
            Some(Ok(false)) => self.nacked.insert(seq),
            _ => self.unknown.insert(seq),
        };
    }
}

/// Publishes `total` numbered messages with up to `window` unconfirmed, killing `victim` of
/// the cluster once `kill_at` have been sent.
async fn stream_with_kill(
    cluster: &rabbit::Cluster,
    ch: &Channel,
    queue: &str,
    total: u32,
    kill_at: u32,
    victim: usize,
) -> Outcomes {
    const WINDOW: usize = 100;
    let mut outcomes = Outcomes::default();
    let mut inflight = FuturesUnordered::new();
    for seq in 0..total {
        if seq == kill_at {
            cluster.lose_member(victim);
        }
        while inflight.len() >= WINDOW {
            let (seq, took, result) = inflight.next().await.unwrap();
            outcomes.record(seq, took, result);
        }
        let sent = Instant::now();
        match publish(ch, queue, seq.to_string().as_bytes()).await {
            Ok(confirm) => inflight.push(async move {
                let result = tokio::time::timeout(CONFIRM, confirm).await.ok();
                (seq, sent.elapsed(), result.map(|r| r.map(|c| c.is_ack())))
            }),
            Err(_) => outcomes.record(seq, sent.elapsed(), None),
        }
    }
    while let Some((seq, took, result)) = inflight.next().await {
        outcomes.record(seq, took, result);
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_quorum_queue_leader_mid_stream_loses_no_confirmed_message() {
    if skip() {
        return;
    }
    let cluster = rabbit::shared_cluster().await.expect("cluster forms");
    let _exclusive = cluster.hold_exclusive().await.expect("cluster whole");
    let queue = format!("kill-{}", uuid::Uuid::new_v4());
    let urls = cluster.amqp_urls();
    let setup = connect(&urls[0]).await;
    declare(&confirm_channel(&setup).await, &queue, Kind::Quorum).await;
    let leader = cluster
        .leader_of(&queue)
        .await
        .expect("list_queues")
        .expect("a leader");
    let _ = setup.close(200, "declared".into()).await;

    // Publish through a node that survives; kill the leader a third of the way in.
    let via = (leader + 1) % 3;
    let conn = connect(&urls[via]).await;
    let ch = confirm_channel(&conn).await;
    let total = 2000;
    let began = Instant::now();
    let outcomes = stream_with_kill(&cluster, &ch, &queue, total, total / 3, leader).await;
    let streamed = began.elapsed();

    let count = depth(&conn, &queue).await as usize;
    let received = consume(&conn, &queue, count, CONFIRM).await;
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for body in &received {
        let seq: u32 = std::str::from_utf8(body).unwrap().parse().unwrap();
        *seen.entry(seq).or_default() += 1;
    }
    let lost: Vec<u32> = outcomes
        .confirmed
        .iter()
        .copied()
        .filter(|s| !seen.contains_key(s))
        .collect();
    let duplicated: Vec<u32> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&s, _)| s)
        .collect();
    let unexpected: Vec<u32> = seen.keys().copied().filter(|&s| s >= total).collect();
    let new_leader = cluster.leader_of(&queue).await.expect("list_queues");
    println!(
        "quorum queue, kill -9 of leader {leader} after {} of {total} publishes via node {via}: \
         {} confirmed, {} nacked, {} unknown, {} received, {} lost, {} duplicated, \
         worst confirm wait {:?}, stream {:?}, new leader {new_leader:?}",
        total / 3,
        outcomes.confirmed.len(),
        outcomes.nacked.len(),
        outcomes.unknown.len(),
        received.len(),
        lost.len(),
        duplicated.len(),
        outcomes.worst_stall,
        streamed,
    );
    assert!(lost.is_empty(), "confirmed messages lost: {lost:?}");
    assert!(
        unexpected.is_empty(),
        "messages never published: {unexpected:?}"
    );
    assert!(
        outcomes.confirmed.len() as u32 > total / 2,
        "most publishes are confirmed"
    );
    if !duplicated.is_empty() {
        println!("duplicates (not a loss): {duplicated:?}");
    }
    assert_ne!(new_leader, Some(leader), "a surviving member leads");

    let began = Instant::now();
    cluster
        .rejoin(leader)
        .await
        .expect("the killed member rejoins");
    println!(
        "killed member back as a running member in {:?}",
        began.elapsed()
    );
    for i in 0..3 {
        let seen = cluster.membership(i).await.expect("cluster_status");
        assert_eq!(seen.running_nodes.len(), 3, "node {i} sees three running");
    }
    delete(&conn, &queue).await;
    let _ = conn.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_boot_says_why_with_its_log() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = rabbit::NodeOptions {
        config: vec!["no_such_setting = 1".into()],
        ..Default::default()
    };
    let began = Instant::now();
    let err = Node::start_with(dir.path(), 1, &opts)
        .await
        .expect_err("a bad config fails the boot");
    let text = err.to_string();
    println!("boot failure reported in {:?}:\n{text}", began.elapsed());
    assert!(matches!(err, rabbit::RabbitError::Start { .. }), "{text}");
    assert!(
        text.contains("no_such_setting"),
        "the log tail names the cause: {text}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "no waiting out the timeout"
    );
}

/// The sampler reads the task queue's unacknowledged messages from the node's
/// rabbitmq_prometheus endpoint (the series the chaos reports chart beside the fault windows):
/// it rises while a consumer holds deliveries and falls back once they are acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_reads_unacknowledged_messages_from_the_node() {
    use harness::signals::{Sampler, Source};
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), 1).await.expect("node starts");
    let names = contract::topology::Names {
        prefix: "signals".into(),
        retry_delays: Vec::new(),
    };
    let queue = names.task_queue();
    let conn = connect(&node.amqp_url()).await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, &queue, Kind::Quorum).await;
    for body in numbered(7) {
        publish_confirmed(&ch, &queue, &body).await;
    }
    let holder = conn.create_channel().await.expect("channel");
    holder
        .basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut deliveries = holder
        .basic_consume(
            queue.as_str().into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut held = Vec::new();
    while held.len() < 7 {
        let d = tokio::time::timeout(CONFIRM, deliveries.next())
            .await
            .expect("delivered")
            .expect("consumer open")
            .expect("delivery");
        held.push(d);
    }

    let sampler = Sampler::start(
        Source {
            // Nothing listens there: the system's own signals are absent, the broker's are not.
            base_url: "http://127.0.0.1:9".into(),
            token: None,
            amqp_url: None,
            names: Some(names),
            broker_metrics: vec![node.metrics_url()],
        },
        Duration::from_millis(250),
    );
    let unacked = |s: &Sampler| s.last().and_then(|x| x.get("task queue unacked"));
    let until = |what: &'static str, want: f64| {
        let sampler = &sampler;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while unacked(sampler) != Some(want) {
                assert!(
                    Instant::now() < deadline,
                    "{what}: the sampler read {:?} unacknowledged, not {want}",
                    unacked(sampler)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until("held", 7.0).await;
    for d in held {
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    until("acknowledged", 0.0).await;
    sampler.stop().await;
    let _ = conn.close(200, "bye".into()).await;
    node.stop().await.expect("stop");
}
