//! Checkers: each reads the history and the final state and returns a verdict with counts,
//! measurements and examples of every anomaly it found.
//!
//! Conventions of the `submit` operation they rely on (the client writes them):
//! invocation value `{key, body}`; completion value `{status, code, task_id?, body_sha256,
//! replayed}`; `ok` for 2xx, `fail` for definite refusals (4xx, a refused connection), `info`
//! for unknown outcomes (5xx, timeouts, broken connections).

mod bank;
mod callbacks;
mod dead_letters;
mod idempotency;
mod ledger;
mod recovery;
mod residue;
mod slo;
mod users;

use std::collections::BTreeMap;

pub use bank::Bank;
pub use callbacks::Callbacks;
pub use dead_letters::DeadLetters;
pub use idempotency::Idempotency;
pub use ledger::TaskLedger;
pub use recovery::{HealRecovery, Recovery};
use reports::Verdict;
pub use residue::QueueResidue;
pub use slo::Slo;
pub use users::Users;

use crate::{
    final_state::FinalState,
    history::{f, pairs, Op, OpType, Pair},
};

/// A property checked over a history and the final state.
pub trait Checker: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self, history: &[Op], state: &FinalState) -> Verdict;
}

/// Runs every checker.
pub fn check_all(
    checkers: &[Box<dyn Checker>],
    history: &[Op],
    state: &FinalState,
) -> Vec<Verdict> {
    checkers.iter().map(|c| c.check(history, state)).collect()
}

/// One submission: a `submit` invocation and its completion.
#[derive(Debug, Clone)]
pub(crate) struct Submission {
    pub body: serde_json::Value,
    pub outcome: OpType,
    pub status: Option<u64>,
    pub task_id: Option<String>,
    pub body_sha256: Option<String>,
    pub replayed: bool,
    pub invoked_ns: u64,
    pub completed_ns: Option<u64>,
    pub index: u64,
}

/// The submissions of a history, by idempotency key, in invocation order.
pub(crate) fn submissions(history: &[Op]) -> BTreeMap<String, Vec<Submission>> {
    let mut by_key: BTreeMap<String, Vec<Submission>> = BTreeMap::new();
    for p in pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::SUBMIT)
    {
        let value = p.completion.map(|c| &c.value);
        let field = |name: &str| value.and_then(|v| v.get(name));
        let key = p.invoke.value["key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_key.entry(key).or_default().push(Submission {
            body: p.invoke.value["body"].clone(),
            outcome: p.outcome(),
            status: field("status").and_then(|s| s.as_u64()),
            task_id: field("task_id")
                .and_then(|s| s.as_str())
                .map(str::to_string),
            body_sha256: field("body_sha256")
                .and_then(|s| s.as_str())
                .map(str::to_string),
            replayed: field("replayed").and_then(|s| s.as_bool()).unwrap_or(false),
            invoked_ns: p.invoke.time_ns,
            completed_ns: p.completion.map(|c| c.time_ns),
            index: p.invoke.index,
        });
    }
    by_key
}

/// The task ids each key is known to map to: from accepted submissions, and from callbacks
/// whose URL carried the key.
pub(crate) fn tasks_by_key(
    subs: &BTreeMap<String, Vec<Submission>>,
    state: &FinalState,
) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut map: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (key, list) in subs {
        for s in list.iter().filter(|s| s.outcome == OpType::Ok) {
            if let Some(id) = &s.task_id {
                map.entry(key.clone()).or_default().insert(id.clone());
            }
        }
    }
    for cb in &state.callbacks {
        if let (Some(key), Some(id)) = (&cb.key, &cb.task_id) {
            if subs.contains_key(key) {
                map.entry(key.clone()).or_default().insert(id.clone());
            }
        }
    }
    map
}

/// The accepted submissions that asked for a callback. Taken from what the workload sent, not
/// from the task view, which the contract does not oblige to show `callback_url`.
pub(crate) fn asking_for_callbacks(history: &[Op]) -> Vec<Pair<'_>> {
    pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::SUBMIT && p.outcome() == OpType::Ok)
        .filter(|p| {
            p.invoke.value["body"]
                .get("callback_url")
                .is_some_and(|u| !u.is_null())
        })
        .collect()
}

/// Task ids whose accepted submission asked for a callback.
pub(crate) fn owed_callbacks(history: &[Op]) -> std::collections::BTreeSet<String> {
    asking_for_callbacks(history)
        .into_iter()
        .filter_map(|p| p.completion?.value["task_id"].as_str().map(str::to_string))
        .collect()
}

/// JSON text of a value with object keys sorted, for comparing bodies whatever their order.
pub(crate) fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders of small histories for the checkers' tests.

    use serde_json::{json, Value};

    use crate::{
        final_state::CallbackRecord,
        history::{f, History, OpType, Process, NEMESIS},
    };

    /// A validly signed SUCCESS callback for `task`, sent to the hook of `key`.
    pub fn called_back(key: &str, task: &str) -> CallbackRecord {
        CallbackRecord {
            key: Some(key.into()),
            event_id: Some(format!("e-{task}")),
            task_id: Some(task.into()),
            status: Some("SUCCESS".into()),
            signature_valid: true,
            time_ns: 0,
        }
    }

    /// Records a submission of `body` under `key` by `process` with the given completion.
    pub fn submit(
        h: &History,
        process: u64,
        key: &str,
        body: Value,
        kind: OpType,
        completion: Value,
    ) {
        let inv = h.invoke(
            Process::Client(process),
            f::SUBMIT,
            json!({"key": key, "body": body}),
        );
        h.complete(&inv, kind, completion, None);
    }

    /// An accepted submission creating (or replaying) `task_id`.
    pub fn accepted(
        h: &History,
        process: u64,
        key: &str,
        body: Value,
        task_id: &str,
        replayed: bool,
    ) {
        let completion = json!({"status": 202, "code": "OK", "task_id": task_id, "body_sha256": format!("sha-{task_id}"), "replayed": replayed});
        submit(h, process, key, body, OpType::Ok, completion);
    }

    pub fn credit(account: &str, amount: i64) -> Value {
        json!({"type": "credit", "payload": {"account": account, "amount": amount}})
    }

    pub fn fault(h: &History, f_name: &str, what: &str) {
        let inv = h.invoke(NEMESIS, f_name, json!({"fault": what}));
        h.complete(&inv, OpType::Ok, json!(null), None);
    }

    pub fn f_start() -> &'static str {
        f::START_FAULT
    }

    pub fn f_stop() -> &'static str {
        f::STOP_FAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"s"}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(
            canonical(&a),
            r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }
}
