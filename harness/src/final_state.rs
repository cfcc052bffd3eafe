//! What the final-read phase observes once the system has settled: task statuses, balances,
//! queue depths, dead-letter contents and the callbacks the webhook sink received.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A task as the contract's `GET /api/v1/tasks/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub status: String,
    pub attempts: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub callback_url: Option<String>,
}

impl TaskView {
    pub fn is_terminal(&self) -> bool {
        self.status == "SUCCESS" || self.status == "FAILED"
    }
}

/// A message found in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// The body, when it is JSON.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// A callback the webhook sink received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// The idempotency key the workload put in the callback URL's path, if any.
    pub key: Option<String>,
    pub event_id: Option<String>,
    pub task_id: Option<String>,
    /// The task status the callback reports.
    pub status: Option<String>,
    pub signature_valid: bool,
    /// When it arrived, on the history's clock.
    pub time_ns: u64,
}

/// Everything the final read observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalState {
    /// Tasks by id, as read at the end.
    pub tasks: BTreeMap<String, TaskView>,
    /// Task ids the final read asked for and the system did not know (404).
    pub missing: BTreeSet<String>,
    /// Balances by account (0 for accounts never credited).
    pub balances: BTreeMap<String, i64>,
    /// Messages ready in each queue of the system's topology.
    pub queues: BTreeMap<String, u64>,
    /// Name of the dead-letter queue among `queues`.
    pub dead_letter_queue: Option<String>,
    pub dead_letters: Vec<DeadLetter>,
    pub callbacks: Vec<CallbackRecord>,
    /// Whether the final read considered the system settled (nothing in flight).
    pub settled: bool,
    /// What could not be read, and why.
    pub notes: Vec<String>,
    /// What the final read asked for and got no answer to: a checker that needs it is
    /// undecided, never misled into calling it lost or zero.
    #[serde(default)]
    pub unread: Unread,
}

/// Reads of the final-read phase that failed (a timeout, a 5xx, a broken broker channel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unread {
    pub tasks: BTreeSet<String>,
    pub balances: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub dead_letters: bool,
}

impl Unread {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.balances.is_empty()
            && self.queues.is_empty()
            && !self.dead_letters
    }
}
