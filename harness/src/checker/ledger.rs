//! The task ledger, in the categories of RabbitMQ's own Jepsen suite, per submitted key:
//!
//! - **ok**: accepted (202) and its task ended (SUCCESS or FAILED);
//! - **lost**: accepted, but its task is unknown or never ended;
//! - **recovered**: never accepted, its outcome unknown (a submission timed out), yet its task
//!   exists and ended (seen through a callback carrying the key);
//! - **failed_but_ran**: every submission was definitely refused, yet a task ran for the key;
//! - **duplicated**: one key became more than one task;
//! - **unexpected**: a task the system ran (dead-lettered or called back) that no submission
//!   can account for.
//!
//! Valid when nothing is lost, duplicated, unexpected or run after a refusal. An accepted task
//! the final read could not read is `unread` and leaves the verdict undecided.

use std::collections::BTreeSet;

use reports::Verdict;
use serde_json::json;

use super::{submissions, tasks_by_key, Checker};
use crate::{
    final_state::FinalState,
    history::{Op, OpType},
};

pub struct TaskLedger;

impl Checker for TaskLedger {
    fn name(&self) -> &str {
        "task-ledger"
    }

    fn check(&self, history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let subs = submissions(history);
        let by_key = tasks_by_key(&subs, state);
        let (mut ok, mut lost, mut recovered, mut failed_keys, mut unread) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for (key, list) in &subs {
            let accepted = list.iter().any(|s| s.outcome == OpType::Ok);
            let ids = by_key.get(key).cloned().unwrap_or_default();
            if ids.len() > 1 {
                v.anomaly("duplicated", json!({"key": key, "task_ids": ids}));
            }
            let ended = ids
                .iter()
                .any(|id| state.tasks.get(id).is_some_and(|t| t.is_terminal()));
            let maybe = list.iter().any(|s| s.outcome == OpType::Info);
            match (accepted, ended) {
                (true, true) => ok += 1,
                (true, false) if ids.iter().any(|id| state.unread.tasks.contains(id)) => {
                    unread += 1;
                }
                (true, false) => {
                    lost += 1;
                    let id = ids.iter().next().cloned();
                    let seen = id
                        .as_ref()
                        .and_then(|id| state.tasks.get(id))
                        .map(|t| t.status.clone());
                    let status = seen.unwrap_or_else(|| "MISSING".to_string());
                    v.anomaly("lost", json!({"key": key, "task_id": id, "status": status}));
                }
                (false, true) if maybe => recovered += 1,
                (false, true) => {
                    v.anomaly("failed_but_ran", json!({"key": key, "task_ids": ids}));
                }
                (false, false) => failed_keys += 1,
            }
        }
        for id in unexpected(&by_key, state) {
            v.anomaly("unexpected", json!({"task_id": id}));
        }
        let attempted = subs.len() as u64;
        let (duplicated, unexpected) =
            (v.anomaly_count("duplicated"), v.anomaly_count("unexpected"));
        v.count("attempted", attempted)
            .count("ok", ok)
            .count("lost", lost)
            .count("recovered", recovered)
            .count("unread", unread)
            .count("never_accepted", failed_keys)
            .count("duplicated", duplicated)
            .count("unexpected", unexpected);
        let fraction = if attempted == 0 {
            1.0
        } else {
            ok as f64 / attempted as f64
        };
        v.measure("ok_fraction", fraction);
        if attempted == 0 || unread > 0 {
            v.undecided();
        }
        v.summary(format!(
            "{attempted} submitted: {ok} ok, {lost} lost, {recovered} recovered, {duplicated} duplicated, {unexpected} unexpected"
        ));
        v
    }
}

/// Task ids the system ran (dead-letter queue, callbacks) that no key accounts for.
fn unexpected(
    by_key: &std::collections::BTreeMap<String, BTreeSet<String>>,
    state: &FinalState,
) -> BTreeSet<String> {
    let known: BTreeSet<&String> = by_key.values().flatten().collect();
    let seen = state
        .dead_letters
        .iter()
        .filter_map(|d| d.message_id.clone())
        .chain(state.callbacks.iter().filter_map(|c| c.task_id.clone()));
    seen.filter(|id| !known.contains(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checker::fixtures::*,
        final_state::{DeadLetter, TaskView},
        history::History,
    };

    fn task(status: &str) -> TaskView {
        TaskView {
            status: status.into(),
            attempts: 1,
            kind: "echo".into(),
            payload: json!(null),
            error: None,
            callback_url: None,
        }
    }

    fn clean() -> (History, FinalState) {
        let h = History::new();
        let mut s = FinalState::default();
        for (i, status) in ["SUCCESS", "FAILED", "SUCCESS"].iter().enumerate() {
            let id = format!("t{i}");
            accepted(
                &h,
                i as u64,
                &format!("k{i}"),
                json!({"type": "echo"}),
                &id,
                false,
            );
            s.tasks.insert(id, task(status));
        }
        // A retry of k0 replays the same task.
        accepted(&h, 9, "k0", json!({"type": "echo"}), "t0", true);
        // k3 was refused: no task, not an anomaly.
        submit(
            &h,
            4,
            "k3",
            json!({"type": "echo"}),
            OpType::Fail,
            json!({"status": 400}),
        );
        (h, s)
    }

    #[test]
    fn clean_history_is_valid() {
        let (h, s) = clean();
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(
            (
                v.counts["ok"],
                v.counts["attempted"],
                v.counts["never_accepted"]
            ),
            (3, 4, 1)
        );
        assert_eq!(v.measurements["ok_fraction"], 0.75);
    }

    #[test]
    fn accepted_but_never_ended_is_lost() {
        let (h, mut s) = clean();
        s.tasks.insert("t2".into(), task("RUNNING"));
        s.tasks.remove("t1");
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Invalid);
        assert_eq!(v.anomaly_count("lost"), 2);
    }

    #[test]
    fn one_key_two_tasks_is_duplicated() {
        let (h, mut s) = clean();
        accepted(&h, 7, "k0", json!({"type": "echo"}), "t0-again", false);
        s.tasks.insert("t0-again".into(), task("SUCCESS"));
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("duplicated"), 1, "{v:?}");
    }

    #[test]
    fn a_task_nobody_submitted_is_unexpected() {
        let (h, mut s) = clean();
        s.dead_letters.push(DeadLetter {
            message_id: Some("ghost".into()),
            body: json!(null),
        });
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("unexpected"), 1, "{v:?}");
    }

    #[test]
    fn a_timed_out_submission_whose_task_ran_is_recovered() {
        let (h, mut s) = clean();
        submit(
            &h,
            5,
            "k5",
            json!({"type": "echo"}),
            OpType::Info,
            json!({"error": "timeout"}),
        );
        s.tasks.insert("t5".into(), task("SUCCESS"));
        s.callbacks.push(called_back("k5", "t5"));
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(v.counts["recovered"], 1);
    }

    #[test]
    fn a_task_run_for_a_definitely_refused_key_is_an_anomaly() {
        let (h, mut s) = clean();
        s.tasks.insert("t3".into(), task("SUCCESS"));
        s.callbacks.push(called_back("k3", "t3"));
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.anomaly_count("failed_but_ran"), 1, "{v:?}");
    }

    #[test]
    fn an_accepted_task_the_final_read_could_not_read_is_undecided_not_lost() {
        let (h, mut s) = clean();
        s.tasks.remove("t2");
        s.unread.tasks.insert("t2".into());
        let v = TaskLedger.check(&h.ops(), &s);
        assert_eq!(v.validity, reports::Validity::Unknown, "{v:?}");
        assert_eq!((v.counts["unread"], v.counts["lost"]), (1, 0));
    }

    #[test]
    fn an_empty_history_decides_nothing() {
        let v = TaskLedger.check(&[], &FinalState::default());
        assert_eq!(v.validity, reports::Validity::Unknown);
    }
}
