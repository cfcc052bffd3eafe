//! Idempotency-Key semantics (IETF httpapi draft), per key:
//!
//! - every success (2xx) answers with the same status, body bytes and task as the first, so a
//!   replay that answers 200 where the first said 202 diverges (`divergent_response`);
//! - a body other than the accepted one is refused with 422, never accepted
//!   (`accepted_other_body`), and the accepted body is never refused with 422
//!   (`rejected_same_body`);
//! - 409 only while another request with the key is in flight and none has completed with
//!   202 before the 409 was sent (`conflict_without_concurrency`, `conflict_after_completion`).

use reports::Verdict;
use serde_json::json;

use super::{canonical, submissions, Checker, Submission};
use crate::{
    final_state::FinalState,
    history::{Op, OpType},
};

pub struct Idempotency;

impl Checker for Idempotency {
    fn name(&self) -> &str {
        "idempotency"
    }

    fn check(&self, history: &[Op], _state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let subs = submissions(history);
        let (mut replays, mut conflicts, mut rejections) = (0, 0, 0);
        for (key, list) in &subs {
            replays += list.iter().filter(|s| s.replayed).count() as u64;
            conflicts += list.iter().filter(|s| s.status == Some(409)).count() as u64;
            rejections += list.iter().filter(|s| s.status == Some(422)).count() as u64;
            check_key(&mut v, key, list);
        }
        v.count("keys", subs.len() as u64)
            .count("submissions", subs.values().map(|l| l.len() as u64).sum())
            .count("replays", replays)
            .count("conflicts_409", conflicts)
            .count("rejections_422", rejections);
        if subs.is_empty() {
            v.undecided();
        }
        let bad: u64 = v.anomalies.iter().map(|a| a.count).sum();
        v.summary(format!("{} keys, {replays} replays, {conflicts} conflicts, {rejections} rejections, {bad} violations", subs.len()));
        v
    }
}

fn check_key(v: &mut Verdict, key: &str, list: &[Submission]) {
    let accepted: Vec<&Submission> = list.iter().filter(|s| s.outcome == OpType::Ok).collect();
    let Some(first) = accepted
        .iter()
        .min_by_key(|s| s.completed_ns.unwrap_or(u64::MAX))
    else {
        return check_conflicts(v, key, list, None);
    };
    let accepted_body = canonical(&first.body);
    for s in &accepted {
        if s.status != first.status
            || s.body_sha256 != first.body_sha256
            || s.task_id != first.task_id
        {
            let example = json!({"key": key,
                "first": {"status": first.status, "task_id": first.task_id, "sha256": first.body_sha256},
                "other": {"status": s.status, "task_id": s.task_id, "sha256": s.body_sha256, "index": s.index}});
            v.anomaly("divergent_response", example);
        }
        if canonical(&s.body) != accepted_body {
            v.anomaly(
                "accepted_other_body",
                json!({"key": key, "index": s.index, "body": s.body}),
            );
        }
    }
    for s in list.iter().filter(|s| s.status == Some(422)) {
        if canonical(&s.body) == accepted_body {
            v.anomaly("rejected_same_body", json!({"key": key, "index": s.index}));
        }
    }
    check_conflicts(v, key, list, first.completed_ns);
}

/// A 409 must overlap another request with the key, and come before any 202 completed.
fn check_conflicts(v: &mut Verdict, key: &str, list: &[Submission], first_ok_ns: Option<u64>) {
    for c in list.iter().filter(|s| s.status == Some(409)) {
        if first_ok_ns.is_some_and(|done| done < c.invoked_ns) {
            v.anomaly(
                "conflict_after_completion",
                json!({"key": key, "index": c.index}),
            );
            continue;
        }
        let c_end = c.completed_ns.unwrap_or(u64::MAX);
        // An unknown outcome (a client timeout) may still be running at the server: it
        // overlaps everything after its invocation.
        let overlaps = list.iter().any(|o| {
            o.index != c.index
                && o.outcome != OpType::Fail
                && o.invoked_ns < c_end
                && (o.outcome == OpType::Info || o.completed_ns.is_none_or(|e| e > c.invoked_ns))
        });
        if !overlaps {
            v.anomaly(
                "conflict_without_concurrency",
                json!({"key": key, "index": c.index}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checker::fixtures::*,
        history::{f, History, Process},
    };

    fn body(amount: i64) -> serde_json::Value {
        credit("a", amount)
    }

    /// A 409 answered while process 0's first request with the key is still open.
    fn conflict_during(h: &History, key: &str) {
        let first = h.invoke(
            Process::Client(0),
            f::SUBMIT,
            json!({"key": key, "body": body(1)}),
        );
        submit(
            h,
            1,
            key,
            body(1),
            OpType::Fail,
            json!({"status": 409, "code": "CONFLICT_ERR"}),
        );
        let done = json!({"status": 202, "code": "OK", "task_id": "t1", "body_sha256": "sha-t1", "replayed": false});
        h.complete(&first, OpType::Ok, done, None);
    }

    fn clean() -> History {
        let h = History::new();
        conflict_during(&h, "k1");
        accepted(&h, 2, "k1", body(1), "t1", true);
        // Same JSON, other key order: still the same body.
        let reordered: serde_json::Value =
            serde_json::from_str(r#"{"payload":{"amount":1,"account":"a"},"type":"credit"}"#)
                .unwrap();
        accepted(&h, 3, "k1", reordered, "t1", true);
        submit(
            &h,
            4,
            "k1",
            body(2),
            OpType::Fail,
            json!({"status": 422, "code": "IDEMPOTENCY_KEY_REUSED"}),
        );
        h
    }

    #[test]
    fn clean_history_is_valid() {
        let v = Idempotency.check(&clean().ops(), &FinalState::default());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(
            (
                v.counts["replays"],
                v.counts["conflicts_409"],
                v.counts["rejections_422"]
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn a_replay_with_other_bytes_or_task_diverges() {
        let h = clean();
        accepted(&h, 5, "k1", body(1), "t-other", true);
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.anomaly_count("divergent_response"), 1, "{v:?}");
    }

    #[test]
    fn a_replay_with_another_success_status_diverges() {
        let h = clean();
        let replay = json!({"status": 200, "code": "OK", "task_id": "t1", "body_sha256": "sha-t1", "replayed": true});
        submit(&h, 6, "k1", body(1), OpType::Ok, replay);
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.anomaly_count("divergent_response"), 1, "{v:?}");
    }

    #[test]
    fn accepting_another_body_is_caught() {
        let h = clean();
        let done = json!({"status": 202, "code": "OK", "task_id": "t1", "body_sha256": "sha-t1", "replayed": true});
        submit(&h, 6, "k1", body(3), OpType::Ok, done);
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.anomaly_count("accepted_other_body"), 1, "{v:?}");
    }

    #[test]
    fn refusing_the_same_body_is_caught() {
        let h = clean();
        submit(&h, 7, "k1", body(1), OpType::Fail, json!({"status": 422}));
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.anomaly_count("rejected_same_body"), 1, "{v:?}");
    }

    #[test]
    fn a_409_while_a_timed_out_request_may_still_run_is_legitimate() {
        let h = History::new();
        submit(&h, 0, "k", body(1), OpType::Info, json!({}));
        submit(&h, 1, "k", body(1), OpType::Fail, json!({"status": 409}));
        accepted(&h, 2, "k", body(1), "t1", true);
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn a_409_after_completion_or_alone_is_caught() {
        let h = clean();
        submit(&h, 8, "k1", body(1), OpType::Fail, json!({"status": 409}));
        submit(
            &h,
            9,
            "lonely",
            body(1),
            OpType::Fail,
            json!({"status": 409}),
        );
        let v = Idempotency.check(&h.ops(), &FinalState::default());
        assert_eq!(v.anomaly_count("conflict_after_completion"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("conflict_without_concurrency"), 1, "{v:?}");
    }
}
