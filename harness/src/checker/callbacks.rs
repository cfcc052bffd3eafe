//! Callbacks: every ended task submitted with a `callback_url` is called back at least once
//! (`missing_callback`), always under one event id (`multiple_event_ids`), with a valid
//! signature stamped within five minutes of the sink's clock (`bad_signature`), reporting the
//! task's final status (`status_mismatch`).
//! Extra deliveries of the same event are at-least-once and only counted.

use std::collections::{BTreeMap, BTreeSet};

use reports::Verdict;
use serde_json::json;

use super::{owed_callbacks, Checker};
use crate::{
    final_state::{CallbackRecord, FinalState},
    history::Op,
};

pub struct Callbacks;

impl Checker for Callbacks {
    fn name(&self) -> &str {
        "callbacks"
    }

    fn check(&self, history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let mut by_task: BTreeMap<&str, Vec<&CallbackRecord>> = BTreeMap::new();
        for cb in &state.callbacks {
            if !cb.signature_valid {
                v.anomaly(
                    "bad_signature",
                    json!({"task_id": cb.task_id, "event_id": cb.event_id}),
                );
            }
            if let Some(id) = cb.task_id.as_deref() {
                by_task.entry(id).or_default().push(cb);
            }
        }
        // Asked for by an accepted submission, or shown by the task (one never answered but
        // found through a callback or the dead-letter queue).
        let asked = owed_callbacks(history);
        let owed: Vec<(&String, &crate::final_state::TaskView)> = state
            .tasks
            .iter()
            .filter(|(id, t)| (asked.contains(*id) || t.callback_url.is_some()) && t.is_terminal())
            .collect();
        for (id, task) in &owed {
            let Some(calls) = by_task.get(id.as_str()) else {
                v.anomaly(
                    "missing_callback",
                    json!({"task_id": id, "status": task.status}),
                );
                continue;
            };
            let events: BTreeSet<&str> =
                calls.iter().filter_map(|c| c.event_id.as_deref()).collect();
            if events.len() > 1 {
                v.anomaly(
                    "multiple_event_ids",
                    json!({"task_id": id, "event_ids": events}),
                );
            }
            if let Some(c) = calls
                .iter()
                .find(|c| c.status.as_deref() != Some(task.status.as_str()))
            {
                v.anomaly(
                    "status_mismatch",
                    json!({"task_id": id, "final": task.status, "called_back": c.status}),
                );
            }
        }
        let redundant: usize = by_task.values().map(|c| c.len().saturating_sub(1)).sum();
        v.count("owed", owed.len() as u64)
            .count("callbacks", state.callbacks.len() as u64)
            .count("redundant_deliveries", redundant as u64);
        let unread = asked.intersection(&state.unread.tasks).count();
        v.count("unread", unread as u64);
        if (owed.is_empty() && state.callbacks.is_empty()) || unread > 0 {
            v.undecided();
        }
        v.summary(format!(
            "{} tasks owed a callback, {} callbacks received ({redundant} redundant); {} missing",
            owed.len(),
            state.callbacks.len(),
            v.anomaly_count("missing_callback")
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{checker::fixtures::accepted, final_state::TaskView, history::History};

    fn cb(task: &str, event: &str, status: &str) -> CallbackRecord {
        CallbackRecord {
            key: None,
            event_id: Some(event.into()),
            task_id: Some(task.into()),
            status: Some(status.into()),
            signature_valid: true,
            time_ns: 0,
        }
    }

    fn state() -> FinalState {
        let mut s = FinalState::default();
        for (id, status) in [("t1", "SUCCESS"), ("t2", "FAILED"), ("t3", "SUCCESS")] {
            let t = TaskView {
                status: status.into(),
                attempts: 1,
                kind: "echo".into(),
                payload: json!(null),
                error: None,
                callback_url: None,
            };
            s.tasks.insert(id.into(), t);
        }
        s.callbacks = vec![
            cb("t1", "e1", "SUCCESS"),
            cb("t1", "e1", "SUCCESS"),
            cb("t2", "e2", "FAILED"),
        ];
        s
    }

    /// t1 and t2 were submitted with a callback URL; t3 without.
    fn history() -> Vec<Op> {
        let h = History::new();
        for id in ["t1", "t2"] {
            let body =
                json!({"type": "echo", "callback_url": format!("http://127.0.0.1/hook/{id}")});
            accepted(&h, 0, id, body, id, false);
        }
        accepted(&h, 0, "t3", json!({"type": "echo"}), "t3", false);
        h.ops()
    }

    #[test]
    fn at_least_once_under_one_event_id_is_valid() {
        let v = Callbacks.check(&history(), &state());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(v.counts["redundant_deliveries"], 1);
    }

    #[test]
    fn missing_bad_and_inconsistent_callbacks_are_caught() {
        let mut s = state();
        s.callbacks.retain(|c| c.task_id.as_deref() != Some("t2"));
        s.callbacks.push(cb("t1", "e9", "SUCCESS"));
        let mut forged = cb("t1", "e1", "FAILED");
        forged.signature_valid = false;
        s.callbacks.push(forged);
        let v = Callbacks.check(&history(), &s);
        assert_eq!(v.anomaly_count("missing_callback"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("multiple_event_ids"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("bad_signature"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("status_mismatch"), 1, "{v:?}");
    }

    #[test]
    fn a_task_whose_read_failed_leaves_the_verdict_undecided() {
        let mut s = state();
        s.tasks.remove("t2");
        s.unread.tasks.insert("t2".into());
        s.callbacks.retain(|c| c.task_id.as_deref() != Some("t2"));
        let v = Callbacks.check(&history(), &s);
        assert_eq!(v.validity, reports::Validity::Unknown, "{v:?}");
    }
}
