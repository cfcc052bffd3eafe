//! Brokers in containers: one starts, serves (declare, publish with confirms, consume back), and
//! is gone once stopped or dropped.
//!
//! No engine is a failure, whose message says how to get one (scripts/docker.sh), unless the
//! environment says `HARNESS_CONTAINERS=skip`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::infra::container::{self, BrokerContainer};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use testcontainers::bollard::errors::Error as EngineError;

const MESSAGES: usize = 100;

/// True when the environment opts out; says so, since a skipped test proves nothing.
fn skipped() -> bool {
    let skip = std::env::var("HARNESS_CONTAINERS").as_deref() == Ok("skip");
    if skip {
        println!(
            "containers: SKIPPED (HARNESS_CONTAINERS=skip); nothing about containers was tested"
        );
    }
    skip
}

/// Starts a broker from the configured image, failing the test with the harness's explanation.
async fn start() -> BrokerContainer {
    let began = Instant::now();
    let broker = container::start_rabbitmq(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "containers: {} from {} serving at {} (node {}) after {:.1} s",
        &broker.id()[..12],
        broker.image(),
        broker.amqp_url(),
        broker.node(),
        began.elapsed().as_secs_f64()
    );
    assert_ne!(
        broker.port(),
        5672,
        "a container must not take the shared broker's port"
    );
    broker
}

/// Whether the broker's output shows `line` within 10 s: the engine streams it with a lag.
async fn logged(broker: &BrokerContainer, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.output().contains(line) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Whether the engine still knows the container.
async fn exists(id: &str) -> bool {
    let engine = testcontainers::core::client::docker_client_instance()
        .await
        .expect("engine client");
    match engine.inspect_container(id, None).await {
        Ok(_) => true,
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(e) => panic!("inspecting container {id}: {e}"),
    }
}

/// Declares a queue, publishes MESSAGES with confirms, consumes them back in order with manual
/// acks, and deletes the queue.
async fn round_trip(url: &str) {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect to the container's broker");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let queue = format!("it-containers-{}", uuid::Uuid::new_v4().simple());
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    for i in 0..MESSAGES {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                format!("message {i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("basic.publish")
            .await
            .expect("confirm");
        assert!(
            confirm.is_ack(),
            "message {i} was not confirmed: {confirm:?}"
        );
    }
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "it-containers".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    for i in 0..MESSAGES {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} not delivered within 10 s"))
            .expect("consumer ended")
            .expect("delivery");
        assert_eq!(
            String::from_utf8_lossy(&delivery.data),
            format!("message {i}")
        );
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let left = ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("queue.delete");
    assert_eq!(left, 0, "messages left in the queue after consuming all");
    conn.close(200, "done".into()).await.expect("close");
}

#[tokio::test]
async fn a_broker_container_starts_serves_and_is_gone_after_stop() {
    if skipped() {
        return;
    }
    let broker = start().await;
    let (id, url) = (broker.id().to_string(), broker.amqp_url());
    round_trip(&url).await;
    assert!(
        logged(&broker, "Server startup complete").await,
        "the broker's log was not collected:\n{}",
        broker.output()
    );

    let began = Instant::now();
    broker.stop().await.unwrap_or_else(|e| panic!("{e}"));
    println!(
        "containers: stopped and removed in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert!(!exists(&id).await, "container {id} still exists after stop");
    assert!(
        Connection::connect(&url, ConnectionProperties::default())
            .await
            .is_err(),
        "{url} still accepts connections after stop"
    );
}

#[tokio::test]
async fn a_dropped_broker_container_is_removed() {
    if skipped() {
        return;
    }
    let broker = start().await;
    let id = broker.id().to_string();
    drop(broker);
    assert!(!exists(&id).await, "container {id} still exists after drop");
}
