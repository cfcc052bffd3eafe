//! Time to recover after a fault heals: from the start of each heal (`stop-fault` invoked by
//! the nemesis; restarting a process is part of recovering) to the first operation invoked
//! after it that succeeds. Invalid when that exceeds the limit (`slow_recovery`), or when
//! operations ran after a heal and none succeeded (`not_recovered`). A heal's window ends where
//! the next fault starts: a window closed by another fault before anything succeeded is
//! `interrupted` (counted, not judged) when it was shorter than the limit, and slow when it
//! was longer and operations kept failing in it. A heal after which no operation ran at all is
//! unobserved: the verdict is then undecided rather than valid.
//!
//! Accepting work is not doing it (an outbox API accepts while the broker is away), so when
//! callbacks were received the checker also measures from each heal to the first new event
//! (first delivery, valid signature) after it (`max_completion_recovery_ms`), held to the same
//! limit; a heal after which work was accepted but no new event ever came is `not_completed`.

use std::collections::BTreeSet;

use reports::Verdict;
use serde_json::json;

use super::{asking_for_callbacks, Checker};
use crate::{
    final_state::FinalState,
    history::{f, pairs, Op, OpType, Pair, NEMESIS},
};

pub struct Recovery {
    /// Operation that shows the system is back, e.g. `submit`.
    pub f: String,
    pub limit_ms: f64,
}

/// A heal and the end of its window: the next fault's start, or the end of the history.
struct Window<'a> {
    heal: &'a Op,
    end_ns: u64,
}

impl Window<'_> {
    fn contains(&self, t: u64) -> bool {
        t >= self.heal.time_ns && t < self.end_ns
    }

    fn ms_to(&self, t: u64) -> f64 {
        (t - self.heal.time_ns) as f64 / 1e6
    }

    /// Whether the window (to the next fault) lasted longer than `limit_ms`.
    fn longer_than(&self, limit_ms: f64) -> bool {
        self.end_ns != u64::MAX && self.ms_to(self.end_ns) > limit_ms
    }

    fn example(&self, ms: f64, limit_ms: f64) -> serde_json::Value {
        json!({"healed_at_ns": self.heal.time_ns, "recovery_ms": ms, "limit_ms": limit_ms})
    }

    /// To the completion of the first successful operation invoked in the window.
    fn first_ok_ms(&self, oks: &[(u64, u64)]) -> Option<f64> {
        oks.iter()
            .filter(|(invoked, _)| self.contains(*invoked))
            .map(|(_, done)| *done)
            .min()
            .map(|done| self.ms_to(done))
    }

    /// To the first new event in the window (`events` in order).
    fn first_event_ms(&self, events: &[u64]) -> Option<f64> {
        events
            .iter()
            .copied()
            .find(|t| self.contains(*t))
            .map(|t| self.ms_to(t))
    }
}

/// Time to recover after one heal, for the reports' fault windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealRecovery {
    /// When the heal was invoked, on the history's clock.
    pub heal_ns: u64,
    /// To the first operation invoked after the heal (before the next fault) that succeeded.
    pub accepting_ms: Option<f64>,
    /// To the first new event after the heal (before the next fault).
    pub completing_ms: Option<f64>,
}

fn windows(history: &[Op]) -> Vec<Window<'_>> {
    let nemesis = |name: &'static str| {
        history
            .iter()
            .filter(move |o| o.process == NEMESIS && o.f == name && o.kind == OpType::Invoke)
    };
    let starts: Vec<u64> = nemesis(f::START_FAULT).map(|o| o.time_ns).collect();
    nemesis(f::STOP_FAULT)
        .map(|heal| Window {
            heal,
            end_ns: starts
                .iter()
                .copied()
                .filter(|t| *t > heal.time_ns)
                .min()
                .unwrap_or(u64::MAX),
        })
        .collect()
}

impl Checker for Recovery {
    fn name(&self) -> &str {
        "recovery"
    }

    fn check(&self, history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let windows = windows(history);
        let ops = self.ops(history);
        let oks = successes(&ops);
        let (mut worst, mut unobserved, mut interrupted): (f64, u64, u64) = (0.0, 0, 0);
        for w in &windows {
            let observed = ops.iter().any(|p| w.contains(p.invoke.time_ns));
            match w.first_ok_ms(&oks) {
                Some(ms) => {
                    worst = worst.max(ms);
                    if ms > self.limit_ms {
                        v.anomaly("slow_recovery", w.example(ms, self.limit_ms));
                    }
                }
                None if w.end_ns != u64::MAX && !(observed && w.longer_than(self.limit_ms)) => {
                    interrupted += 1;
                }
                None if w.end_ns != u64::MAX => {
                    let ms = w.ms_to(w.end_ns);
                    worst = worst.max(ms);
                    v.anomaly("slow_recovery", w.example(ms, self.limit_ms));
                }
                None if observed => {
                    v.anomaly(
                        "not_recovered",
                        json!({"healed_at_ns": w.heal.time_ns, "fault": w.heal.value}),
                    );
                }
                None => unobserved += 1,
            }
        }
        let worst_completion = self.completion_recovery(&mut v, &windows, history, state);
        v.count("heals", windows.len() as u64)
            .count("unobserved", unobserved)
            .count("interrupted", interrupted)
            .measure("max_recovery_ms", worst);
        if windows.is_empty() || unobserved > 0 {
            v.undecided();
        }
        v.summary(format!(
            "{} heals ({unobserved} unobserved, {interrupted} interrupted), worst recovery \
             {worst:.0} ms to accept, {worst_completion:.0} ms to complete (limit {})",
            windows.len(),
            self.limit_ms
        ));
        v
    }
}

impl Recovery {
    /// Each heal's times to recover, in the history's order.
    pub fn per_heal(&self, history: &[Op], state: &FinalState) -> Vec<HealRecovery> {
        let oks = successes(&self.ops(history));
        let events = first_deliveries(state);
        windows(history)
            .iter()
            .map(|w| HealRecovery {
                heal_ns: w.heal.time_ns,
                accepting_ms: w.first_ok_ms(&oks),
                completing_ms: w.first_event_ms(&events),
            })
            .collect()
    }

    fn ops<'a>(&self, history: &'a [Op]) -> Vec<Pair<'a>> {
        pairs(history)
            .into_iter()
            .filter(|p| p.invoke.f == self.f)
            .collect()
    }

    /// From each heal to the first new event after it: work done again, not just accepted.
    fn completion_recovery(
        &self,
        v: &mut Verdict,
        windows: &[Window<'_>],
        history: &[Op],
        state: &FinalState,
    ) -> f64 {
        let events = first_deliveries(state);
        let asking: Vec<u64> = asking_for_callbacks(history)
            .iter()
            .map(|p| p.invoke.time_ns)
            .collect();
        let mut worst: f64 = 0.0;
        if events.is_empty() {
            v.measure("max_completion_recovery_ms", worst);
            return worst;
        }
        for w in windows {
            match w.first_event_ms(&events) {
                Some(ms) => {
                    worst = worst.max(ms);
                    if ms > self.limit_ms {
                        v.anomaly("slow_completion_recovery", w.example(ms, self.limit_ms));
                    }
                }
                None if w.end_ns == u64::MAX && asking.iter().any(|t| w.contains(*t)) => {
                    v.anomaly("not_completed", json!({"healed_at_ns": w.heal.time_ns}));
                }
                None if w.longer_than(self.limit_ms) && asking.iter().any(|t| w.contains(*t)) => {
                    let ms = w.ms_to(w.end_ns);
                    worst = worst.max(ms);
                    v.anomaly("slow_completion_recovery", w.example(ms, self.limit_ms));
                }
                None => {}
            }
        }
        v.measure("max_completion_recovery_ms", worst);
        worst
    }
}

/// Invocation and completion times of the operations that succeeded.
fn successes(ops: &[Pair<'_>]) -> Vec<(u64, u64)> {
    ops.iter()
        .filter(|p| p.outcome() == OpType::Ok)
        .filter_map(|p| Some((p.invoke.time_ns, p.completion?.time_ns)))
        .collect()
}

/// Arrival times of each event's first validly signed delivery, in order: a redelivery of an
/// old event shows no new work.
fn first_deliveries(state: &FinalState) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    let mut calls: Vec<_> = state
        .callbacks
        .iter()
        .filter(|c| c.signature_valid)
        .collect();
    calls.sort_by_key(|c| c.time_ns);
    calls
        .into_iter()
        .filter(|c| seen.insert(c.event_id.clone().or(c.task_id.clone())))
        .map(|c| c.time_ns)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{checker::fixtures::*, final_state::CallbackRecord, history::History};
    use reports::Validity;

    fn history(after_heal: Option<OpType>) -> Vec<Op> {
        let h = History::new();
        accepted(&h, 0, "k0", credit("a", 1), "t0", false);
        fault(&h, f_start(), "kill-worker");
        fault(&h, f_stop(), "kill-worker");
        match after_heal {
            Some(OpType::Ok) => accepted(&h, 1, "k1", credit("a", 1), "t1", false),
            Some(kind) => submit(&h, 1, "k1", credit("a", 1), kind, json!({"status": 503})),
            None => {}
        }
        h.ops()
    }

    fn recovery(limit_ms: f64, after_heal: Option<OpType>) -> Verdict {
        Recovery {
            f: f::SUBMIT.into(),
            limit_ms,
        }
        .check(&history(after_heal), &FinalState::default())
    }

    #[test]
    fn an_ok_after_the_heal_is_a_recovery() {
        let v = recovery(10_000.0, Some(OpType::Ok));
        assert_eq!(v.validity, Validity::Valid, "{v:?}");
    }

    #[test]
    fn failures_after_the_heal_or_a_slow_recovery_are_caught() {
        assert_eq!(
            recovery(10_000.0, Some(OpType::Info)).anomaly_count("not_recovered"),
            1
        );
        assert_eq!(
            recovery(0.0, Some(OpType::Ok)).anomaly_count("slow_recovery"),
            1
        );
    }

    #[test]
    fn completions_after_a_heal_are_measured_too() {
        let ops = history(Some(OpType::Ok));
        let heal = ops.iter().find(|o| o.f == f::STOP_FAULT).unwrap().time_ns;
        let mut state = FinalState::default();
        state.callbacks.push(crate::final_state::CallbackRecord {
            key: None,
            event_id: None,
            task_id: None,
            status: None,
            signature_valid: true,
            time_ns: heal + 2_000_000_000,
        });
        let check = |limit_ms| {
            Recovery {
                f: f::SUBMIT.into(),
                limit_ms,
            }
            .check(&ops, &state)
        };
        assert_eq!(check(10_000.0).validity, Validity::Valid);
        assert!((check(10_000.0).measurements["max_completion_recovery_ms"] - 2000.0).abs() < 1.0);
        assert_eq!(check(1_000.0).anomaly_count("slow_completion_recovery"), 1);
    }

    #[test]
    fn a_heal_with_nothing_after_it_is_undecided() {
        let v = recovery(10_000.0, None);
        assert_eq!(
            (v.validity, v.counts["unobserved"]),
            (Validity::Unknown, 1),
            "{v:?}"
        );
    }

    fn callback(event: &str, time_ns: u64) -> CallbackRecord {
        CallbackRecord {
            key: None,
            event_id: Some(event.into()),
            task_id: None,
            status: None,
            signature_valid: true,
            time_ns,
        }
    }

    /// A heal whose window the next fault closes while a submission still fails in it; the
    /// second heal is followed by a success.
    fn back_to_back_history() -> Vec<Op> {
        let h = History::new();
        fault(&h, f_start(), "kill-worker");
        fault(&h, f_stop(), "kill-worker");
        submit(&h, 1, "k1", credit("a", 1), OpType::Info, json!(null));
        fault(&h, f_start(), "kill-worker");
        fault(&h, f_stop(), "kill-worker");
        accepted(&h, 1, "k2", credit("a", 1), "t2", false);
        h.ops()
    }

    fn two_faults_back_to_back(limit_ms: f64) -> Verdict {
        Recovery {
            f: f::SUBMIT.into(),
            limit_ms,
        }
        .check(&back_to_back_history(), &FinalState::default())
    }

    #[test]
    fn a_window_closed_by_the_next_fault_is_interrupted_not_slow() {
        let v = two_faults_back_to_back(10_000.0);
        assert_eq!(v.validity, Validity::Valid, "{v:?}");
        assert_eq!(v.counts["interrupted"], 1, "{v:?}");
    }

    #[test]
    fn accepting_without_ever_completing_again_is_caught() {
        let check = |body: serde_json::Value| {
            let h = History::new();
            fault(&h, f_start(), "kill-worker");
            fault(&h, f_stop(), "kill-worker");
            accepted(&h, 1, "k1", body, "t1", false);
            let ops = h.ops();
            let heal = ops.iter().find(|o| o.f == f::STOP_FAULT).unwrap().time_ns;
            let mut state = FinalState::default();
            // Work completed before the fault, and an old event delivered again after the heal.
            state.callbacks.push(callback("e0", heal - 1));
            state.callbacks.push(callback("e0", heal + 1));
            Recovery {
                f: f::SUBMIT.into(),
                limit_ms: 10_000.0,
            }
            .check(&ops, &state)
            .anomaly_count("not_completed")
        };
        let asks = json!({"type": "echo", "callback_url": "http://127.0.0.1/hook/k1"});
        assert_eq!(check(asks), 1);
        assert_eq!(
            check(json!({"type": "echo"})),
            0,
            "no callback was asked for"
        );
    }

    #[test]
    fn each_heal_has_its_own_time_to_recover() {
        let ops = back_to_back_history();
        let second_heal = ops
            .iter()
            .filter(|o| o.f == f::STOP_FAULT && o.kind == OpType::Invoke)
            .nth(1)
            .unwrap();
        let mut state = FinalState::default();
        state
            .callbacks
            .push(callback("e2", second_heal.time_ns + 3_000_000));
        let per_heal = Recovery {
            f: f::SUBMIT.into(),
            limit_ms: 10_000.0,
        }
        .per_heal(&ops, &state);
        assert_eq!(per_heal.len(), 2);
        assert_eq!(
            (per_heal[0].accepting_ms, per_heal[0].completing_ms),
            (None, None),
            "the next fault came before anything succeeded"
        );
        assert_eq!(per_heal[1].heal_ns, second_heal.time_ns);
        assert!(per_heal[1].accepting_ms.is_some_and(|ms| ms >= 0.0));
        assert!((per_heal[1].completing_ms.unwrap() - 3.0).abs() < 1e-6);
    }

    #[test]
    fn a_window_cut_short_only_after_the_limit_is_slow() {
        let v = two_faults_back_to_back(0.0);
        assert_eq!(v.anomaly_count("slow_recovery"), 2, "{v:?}");
        assert_eq!(v.counts["interrupted"], 0, "{v:?}");
    }
}
