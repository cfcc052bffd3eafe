//! Domain types shared by the API, the store and the worker.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a task is in its lifecycle: PENDING → RUNNING → SUCCESS | FAILED.
///
/// A failed attempt that will be retried goes back to PENDING (waiting in a retry queue) with
/// `error` set; FAILED means the retries are exhausted and the message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    Running,
    Success,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Success, Self::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failed)
    }
}

/// The task types of the contract, with their typed payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum TaskSpec {
    /// Adds `amount` to an account's balance: the effect checkers count.
    Credit(CreditPayload),
    /// Succeeds with its payload as the result.
    Echo(serde_json::Value),
    /// Succeeds after `ms` milliseconds.
    Sleep(SleepPayload),
    /// Fails its first `fail_times` attempts, then succeeds.
    Flaky(FlakyPayload),
    /// Always fails.
    Poison(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditPayload {
    /// 1–64 characters of `[A-Za-z0-9_-]`.
    pub account: String,
    /// A non-zero amount in minor units; negative amounts debit.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SleepPayload {
    /// 0–60000.
    pub ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlakyPayload {
    /// 0–100.
    pub fail_times: u32,
}

impl TaskSpec {
    pub const KINDS: [&'static str; 5] = ["credit", "echo", "sleep", "flaky", "poison"];

    pub fn kind(&self) -> &'static str {
        match self {
            TaskSpec::Credit(_) => "credit",
            TaskSpec::Echo(_) => "echo",
            TaskSpec::Sleep(_) => "sleep",
            TaskSpec::Flaky(_) => "flaky",
            TaskSpec::Poison(_) => "poison",
        }
    }

    /// The payload as stored and shown.
    pub fn payload(&self) -> serde_json::Value {
        match serde_json::to_value(self).expect("task spec serialises") {
            serde_json::Value::Object(mut m) => {
                m.remove("payload").unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        }
    }

    /// Rebuilds a spec from its stored kind and payload.
    pub fn from_parts(kind: &str, payload: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"type": kind, "payload": payload}))
    }
}

/// A task as `GET /api/v1/tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: serde_json::Value,
    pub callback_url: Option<String>,
    pub status: TaskStatus,
    /// Attempts started so far (redeliveries count).
    pub attempts: i64,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The body of `202 Accepted` for a new task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskAccepted {
    pub task_id: uuid::Uuid,
    pub status: TaskStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    /// Sum of the credits applied, in minor units.
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: i64,
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 rendering of a store timestamp.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_kind_and_payload() {
        let spec = TaskSpec::Credit(CreditPayload {
            account: "a1".into(),
            amount: 5,
        });
        assert_eq!(spec.kind(), "credit");
        assert_eq!(
            TaskSpec::from_parts(spec.kind(), spec.payload()).unwrap(),
            spec
        );
        let echo = TaskSpec::Echo(serde_json::json!([1, 2]));
        assert_eq!(TaskSpec::from_parts("echo", echo.payload()).unwrap(), echo);
    }

    #[test]
    fn status_strings_round_trip() {
        for s in [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Success,
            TaskStatus::Failed,
        ] {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("DONE"), None);
    }

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
