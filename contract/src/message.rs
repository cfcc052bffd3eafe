//! The task message on the wire: persistent JSON `{task_id, type, payload}` published to the
//! task exchange with routing key `task.<type>` and the task id as AMQP `message_id`.

use serde_json::{json, Value};

/// The body of a task's message.
pub fn task_body(task_id: &str, kind: &str, payload: &Value) -> Value {
    json!({"task_id": task_id, "type": kind, "payload": payload})
}

/// The routing key of a task of type `kind`.
pub fn routing_key(kind: &str) -> String {
    format!("task.{kind}")
}
