//! The broker's own rate for the task pipeline's messages: a raw lapin publisher (persistent
//! messages, publisher confirms) and a raw consumer (manual ack), each on its own connection,
//! moving the same number of messages of the same size through the same broker, on a durable
//! queue of the reference's default type (quorum). No store, no HTTP: the ceiling the
//! pipeline is compared against.

use std::time::Instant;

use futures_util::{stream::FuturesUnordered, StreamExt};
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};

/// Confirms awaited at once by the publisher.
const IN_FLIGHT: usize = 100;
/// Unacknowledged deliveries the consumer accepts.
const PREFETCH: u16 = 100;

/// Messages per second from the first publish to the last ack.
pub async fn measure(amqp_url: &str, messages: usize, body: &[u8]) -> anyhow::Result<f64> {
    let queue = format!("loadtests-raw-{}", uuid::Uuid::new_v4().simple());
    let publisher = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let consumer = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let pch = publisher.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    pch.queue_declare(queue.as_str().into(), durable, args)
        .await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let cch = consumer.create_channel().await?;
    cch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut deliveries = cch
        .basic_consume(
            queue.as_str().into(),
            "loadtests-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let started = Instant::now();
    let consume = async {
        let mut acked = 0;
        while acked < messages {
            let Some(d) = deliveries.next().await else {
                anyhow::bail!("the consumer was cancelled after {acked} messages");
            };
            d?.ack(BasicAckOptions::default()).await?;
            acked += 1;
        }
        Ok(started.elapsed())
    };
    let publish = async {
        let mut pending = FuturesUnordered::new();
        for i in 0..messages {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(format!("raw-{i}").into());
            let confirm = pch
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                )
                .await?;
            pending.push(confirm);
            if pending.len() >= IN_FLIGHT {
                anyhow::ensure!(
                    pending
                        .next()
                        .await
                        .transpose()?
                        .is_some_and(|c| c.is_ack()),
                    "nacked"
                );
            }
        }
        while let Some(c) = pending.next().await {
            anyhow::ensure!(c?.is_ack(), "a publish was nacked");
        }
        Ok(())
    };
    let (published, consumed) = tokio::join!(publish, consume);
    published?;
    let elapsed = consumed?;
    let _ = pch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = publisher.close(200, "done".into()).await;
    let _ = consumer.close(200, "done".into()).await;
    Ok(messages as f64 / elapsed.as_secs_f64())
}
