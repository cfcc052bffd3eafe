//! Queue residue: once the system has settled, the task queue and the retry queues are empty.
//! Messages left there are work nobody will do (or do late): a stuck consumer, a lost ack.

use reports::Verdict;
use serde_json::json;

use super::Checker;
use crate::{final_state::FinalState, history::Op};

pub struct QueueResidue;

impl Checker for QueueResidue {
    fn name(&self) -> &str {
        "queue-residue"
    }

    fn check(&self, _history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let work_queues = state
            .queues
            .iter()
            .filter(|(name, _)| Some(*name) != state.dead_letter_queue.as_ref());
        let mut left = 0;
        for (name, depth) in work_queues {
            if *depth > 0 {
                left += depth;
                v.anomaly("residue", json!({"queue": name, "messages": depth}));
            }
        }
        if !state.settled {
            v.anomaly(
                "not_settled",
                json!({"note": "the system was still busy when the final read ended"}),
            );
        }
        if state.queues.is_empty() || !state.unread.queues.is_empty() {
            v.undecided();
        }
        v.count("queues", state.queues.len() as u64)
            .count("messages_left", left);
        v.summary(format!(
            "{left} messages left in {} work queues",
            state.queues.len().saturating_sub(1)
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(task_queue: u64) -> FinalState {
        let mut s = FinalState {
            settled: true,
            dead_letter_queue: Some("p.dlq".into()),
            ..Default::default()
        };
        s.queues.insert("p.tasks.q".into(), task_queue);
        s.queues.insert("p.tasks.retry.1000ms".into(), 0);
        s.queues.insert("p.dlq".into(), 7);
        s
    }

    #[test]
    fn empty_work_queues_are_valid_whatever_the_dead_letters() {
        let v = QueueResidue.check(&[], &state(0));
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn messages_left_are_residue() {
        let v = QueueResidue.check(&[], &state(3));
        assert_eq!(v.anomaly_count("residue"), 1);
        assert_eq!(v.counts["messages_left"], 3);
    }

    #[test]
    fn an_unsettled_system_is_reported() {
        let mut s = state(0);
        s.settled = false;
        assert_eq!(QueueResidue.check(&[], &s).anomaly_count("not_settled"), 1);
    }

    #[test]
    fn an_unread_queue_is_undecided_but_never_hides_a_finding() {
        let mut s = state(0);
        s.unread.queues.insert("p.tasks.retry.2000ms".into());
        let v = QueueResidue.check(&[], &s);
        assert_eq!(v.validity, reports::Validity::Unknown, "{v:?}");
        s.settled = false;
        let v = QueueResidue.check(&[], &s);
        assert_eq!(v.validity, reports::Validity::Invalid, "{v:?}");
    }
}
