//! The AMQP message body of a task: self-contained, so a worker needs no read to start it.

use serde::{Deserialize, Serialize};

use crate::model::TaskSpec;

/// A task as it travels through the broker. The AMQP `message_id` carries the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: uuid::Uuid,
    #[serde(flatten)]
    pub spec: TaskSpec,
}

/// Why a delivery could not be understood; such messages go straight to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("undecodable task message: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl TaskMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("task message serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Topic routing key: `task.<type>`.
    pub fn routing_key(&self) -> String {
        contract::message::routing_key(self.spec.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CreditPayload, SleepPayload};

    #[test]
    fn round_trips() {
        for spec in [
            TaskSpec::Credit(CreditPayload {
                account: "acc".into(),
                amount: -3,
            }),
            TaskSpec::Sleep(SleepPayload { ms: 10 }),
            TaskSpec::Poison(serde_json::Value::Null),
        ] {
            let m = TaskMessage {
                task_id: uuid::Uuid::now_v7(),
                spec,
            };
            assert_eq!(TaskMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn wire_format_is_flat_json() {
        let id = uuid::Uuid::nil();
        let m = TaskMessage {
            task_id: id,
            spec: TaskSpec::Credit(CreditPayload {
                account: "a".into(),
                amount: 1,
            }),
        };
        let v: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        let payload = serde_json::json!({"account": "a", "amount": 1});
        assert_eq!(
            v,
            contract::message::task_body(&id.to_string(), "credit", &payload),
            "the contract's form"
        );
        assert_eq!(m.routing_key(), "task.credit");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(TaskMessage::decode(b"{\"task_id\": 1}").is_err());
        assert!(TaskMessage::decode(b"\xff").is_err());
    }
}
