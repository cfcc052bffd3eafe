//! Dead-letter accounting: every FAILED task is in the dead-letter queue (`missing`), and every
//! dead letter is a FAILED task (`stray` when its task ended otherwise, `unknown` when no task
//! of the run has its id). Copies of one task are counted, not faulted: dead-lettering is
//! at-least-once. When the dead-letter queue or a task could not be read, what depends on it
//! is undecided rather than judged.

use std::collections::{BTreeMap, BTreeSet};

use reports::Verdict;
use serde_json::json;

use super::Checker;
use crate::{final_state::FinalState, history::Op};

pub struct DeadLetters;

impl Checker for DeadLetters {
    fn name(&self) -> &str {
        "dead-letters"
    }

    fn check(&self, _history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let mut copies: BTreeMap<String, u64> = BTreeMap::new();
        for d in &state.dead_letters {
            *copies
                .entry(d.message_id.clone().unwrap_or_default())
                .or_default() += 1;
        }
        let failed: BTreeSet<&String> = state
            .tasks
            .iter()
            .filter(|(_, t)| t.status == "FAILED")
            .map(|(id, _)| id)
            .collect();
        for id in failed.iter().filter(|_| !state.unread.dead_letters) {
            if !copies.contains_key(*id) {
                v.anomaly("missing", json!({"task_id": id}));
            }
        }
        for id in copies.keys() {
            match state.tasks.get(id) {
                Some(t) if t.status != "FAILED" => {
                    v.anomaly("stray", json!({"task_id": id, "status": t.status}));
                }
                Some(_) => {}
                None if state.unread.tasks.contains(id) => {}
                None => {
                    v.anomaly("unknown", json!({"message_id": id}));
                }
            }
        }
        let extra: u64 = copies.values().map(|n| n - 1).sum();
        let unread_letters = copies
            .keys()
            .filter(|id| state.unread.tasks.contains(*id))
            .count();
        if state.unread.dead_letters || unread_letters > 0 {
            v.undecided();
        }
        v.count("failed_tasks", failed.len() as u64)
            .count("dead_letters", state.dead_letters.len() as u64)
            .count("extra_copies", extra);
        v.summary(format!(
            "{} failed tasks, {} dead letters ({extra} extra copies); {} missing, {} stray, {} unknown",
            failed.len(),
            state.dead_letters.len(),
            v.anomaly_count("missing"),
            v.anomaly_count("stray"),
            v.anomaly_count("unknown")
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::final_state::{DeadLetter, TaskView};

    fn state() -> FinalState {
        let mut s = FinalState::default();
        for (id, status) in [("f1", "FAILED"), ("f2", "FAILED"), ("ok", "SUCCESS")] {
            let t = TaskView {
                status: status.into(),
                attempts: 4,
                kind: "poison".into(),
                payload: json!(null),
                error: None,
                callback_url: None,
            };
            s.tasks.insert(id.into(), t);
        }
        for id in ["f1", "f2", "f2"] {
            s.dead_letters.push(DeadLetter {
                message_id: Some(id.into()),
                body: json!(null),
            });
        }
        s
    }

    #[test]
    fn every_failed_task_dead_lettered_is_valid_even_with_copies() {
        let v = DeadLetters.check(&[], &state());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(v.counts["extra_copies"], 1);
    }

    #[test]
    fn missing_stray_and_unknown_dead_letters_are_caught() {
        let mut s = state();
        s.dead_letters
            .retain(|d| d.message_id.as_deref() != Some("f1"));
        s.dead_letters.push(DeadLetter {
            message_id: Some("ok".into()),
            body: json!(null),
        });
        s.dead_letters.push(DeadLetter {
            message_id: Some("ghost".into()),
            body: json!(null),
        });
        let v = DeadLetters.check(&[], &s);
        assert_eq!(
            (
                v.anomaly_count("missing"),
                v.anomaly_count("stray"),
                v.anomaly_count("unknown")
            ),
            (1, 1, 1),
            "{v:?}"
        );
    }

    #[test]
    fn an_unreadable_dead_letter_queue_decides_nothing_about_missing_letters() {
        let mut s = state();
        s.dead_letters.clear();
        s.unread.dead_letters = true;
        let v = DeadLetters.check(&[], &s);
        assert_eq!(
            (v.validity, v.anomaly_count("missing")),
            (reports::Validity::Unknown, 0),
            "{v:?}"
        );
    }
}
