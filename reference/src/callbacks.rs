//! Result callbacks and task events: allow-list, event body, HMAC-SHA256 signature.
//!
//! A callback is POSTed with `X-Event-Id` (the same on every retry and on a duplicate finish)
//! and `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use serde::{Deserialize, Serialize};

use crate::model::{now_ms, rfc3339, Task, TaskStatus};

/// Namespace of event ids: v5 UUIDs of `<task id>:<status>`, stable across redeliveries.
const EVENT_NAMESPACE: uuid::Uuid = uuid::uuid!("6f0c5d1e-8a55-4d0b-9a57-3b0c3f7e2a10");

/// What a callback or an event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub event_id: uuid::Uuid,
    /// `task.succeeded` or `task.failed`; also the events exchange routing key.
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: String,
    pub task: Task,
}

impl TaskEvent {
    pub fn for_task(task: &Task) -> TaskEvent {
        let kind = match task.status {
            TaskStatus::Success => "task.succeeded",
            _ => "task.failed",
        };
        TaskEvent {
            event_id: event_id(task.id, task.status),
            kind: kind.to_string(),
            occurred_at: rfc3339(now_ms()),
            task: task.clone(),
        }
    }
}

/// The id of a task's terminal event: the same for every delivery of it (retries, a second
/// finish by a redelivered copy). Shaped as a UUIDv7 carrying the task's own timestamp, with
/// the rest from a name-based hash of task and outcome, so that ids of events written
/// together sort together and the store's index on them grows at its end.
pub fn event_id(task_id: uuid::Uuid, status: TaskStatus) -> uuid::Uuid {
    let hashed = uuid::Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{task_id}:{}", status.as_str()).as_bytes(),
    );
    let mut bytes = *hashed.as_bytes();
    bytes[..6].copy_from_slice(&task_id.as_bytes()[..6]);
    uuid::Builder::from_bytes(bytes)
        .with_version(uuid::Version::SortRand)
        .with_variant(uuid::Variant::RFC4122)
        .into_uuid()
}

pub use contract::signature::{sign, verify, verify_fresh};

/// Hosts callbacks may reach, so that a task cannot make the worker call arbitrary URLs.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowList {
    /// Entries are `host` (any port) or `host:port`; they were checked by the configuration.
    pub fn parse(entries: &[String]) -> AllowList {
        let entries = entries
            .iter()
            .filter_map(|e| url::Url::parse(&format!("http://{e}/")).ok())
            .filter_map(|u| Some((u.host_str()?.to_ascii_lowercase(), u.port())))
            .collect();
        AllowList { entries }
    }

    /// Accepts an http(s) URL whose host (and port, when the entry names one) is listed.
    pub fn check(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default();
        let allowed = self
            .entries
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port));
        if allowed {
            Ok(url)
        } else {
            Err(format!("host `{host}` is not on the callback allow-list"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_stable_per_task_and_outcome() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            event_id(id, TaskStatus::Success),
            event_id(id, TaskStatus::Success)
        );
        assert_ne!(
            event_id(id, TaskStatus::Success),
            event_id(id, TaskStatus::Failed)
        );
        let later = uuid::Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let latest = uuid::Uuid::now_v7();
        assert!(
            event_id(later, TaskStatus::Success) < event_id(latest, TaskStatus::Failed),
            "ids follow their tasks' time"
        );
        assert_eq!(event_id(id, TaskStatus::Success).get_version_num(), 7);
    }

    #[test]
    fn allow_list_matches_host_and_optional_port() {
        let allow = AllowList::parse(&["127.0.0.1".into(), "hooks.example:8443".into()]);
        assert!(allow.check("http://127.0.0.1:9999/cb").is_ok());
        assert!(allow.check("https://hooks.example:8443/x").is_ok());
        assert!(
            allow.check("https://hooks.example/x").is_err(),
            "port 443 is not 8443"
        );
        assert!(allow.check("http://10.0.0.1/").is_err());
        assert!(allow.check("ftp://127.0.0.1/").is_err());
        assert!(allow.check("not a url").is_err());
        assert!(
            AllowList::default().check("http://127.0.0.1/").is_err(),
            "empty list allows nothing"
        );
    }
}
