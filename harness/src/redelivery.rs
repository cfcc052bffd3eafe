//! Duplicate deliveries: a task's message published again straight to the task exchange, as
//! a broker redelivery would deliver it (after a lost ack, a consumer crash, a relay retry).
//! A system that deduplicates applies the task's effect once whatever the copies.

use contract::topology::Names;
use lapin::{options::BasicPublishOptions, BasicProperties};
use serde_json::{json, Value};

use crate::history::{f, History, OpType, Process};

/// Publishes the message of task `task_id` (of submitted `body`) once more, with confirms,
/// and records it in the history as a `redeliver` operation.
pub async fn redeliver(
    amqp_url: &str,
    names: &Names,
    history: &History,
    process: Process,
    task_id: &str,
    body: &Value,
) -> OpType {
    let inv = history.invoke(process, f::REDELIVER, json!({"task_id": task_id}));
    match publish(amqp_url, names, task_id, body).await {
        Ok(()) => {
            history.complete(&inv, OpType::Ok, json!({"task_id": task_id}), None);
            OpType::Ok
        }
        Err(e) => {
            history.complete(&inv, OpType::Info, Value::Null, Some(e.to_string()));
            OpType::Info
        }
    }
}

async fn publish(amqp_url: &str, names: &Names, task_id: &str, body: &Value) -> lapin::Result<()> {
    let kind = body["type"].as_str().unwrap_or_default();
    let message = contract::message::task_body(task_id, kind, &body["payload"]);
    let conn = lapin::Connection::connect(amqp_url, Default::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(Default::default()).await?;
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(task_id.into());
    let bytes = serde_json::to_vec(&message).expect("JSON serialises");
    ch.basic_publish(
        names.task_exchange().into(),
        contract::message::routing_key(kind).into(),
        BasicPublishOptions::default(),
        &bytes,
        props,
    )
    .await?
    .await?;
    ch.close(200, "redelivered".into()).await?;
    conn.close(200, "redelivered".into()).await
}
