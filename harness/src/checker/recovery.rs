//! Time to recover after a fault heals: from the start of each heal (`stop-fault` invoked by
//! the nemesis; restarting a process is part of recovering) to the first operation invoked
//! after it that succeeds. Invalid when that exceeds the limit (`slow_recovery`), or when
//! operations ran after a heal and none succeeded (`not_recovered`). A heal after which no
//! operation ran at all is unobserved: the verdict is then undecided rather than valid.
//!
//! Accepting work is not doing it (an outbox API accepts while the broker is away), so when
//! callbacks were received the checker also measures from each heal to the first task that
//! completes after it (`max_completion_recovery_ms`), held to the same limit.

use reports::{Validity, Verdict};
use serde_json::json;

use super::Checker;
use crate::{
    final_state::FinalState,
    history::{f, pairs, Op, OpType, NEMESIS},
};

pub struct Recovery {
    /// Operation that shows the system is back, e.g. `submit`.
    pub f: String,
    pub limit_ms: f64,
}

impl Checker for Recovery {
    fn name(&self) -> &str {
        "recovery"
    }

    fn check(&self, history: &[Op], state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let heals: Vec<&Op> = history
            .iter()
            .filter(|o| o.process == NEMESIS && o.f == f::STOP_FAULT && o.kind == OpType::Invoke)
            .collect();
        let ops: Vec<_> = pairs(history)
            .into_iter()
            .filter(|p| p.invoke.f == self.f)
            .collect();
        let oks: Vec<(u64, u64)> = ops
            .iter()
            .filter(|p| p.outcome() == OpType::Ok)
            .filter_map(|p| Some((p.invoke.time_ns, p.completion?.time_ns)))
            .collect();
        let (mut worst, mut unobserved): (f64, u64) = (0.0, 0);
        for heal in &heals {
            let first = oks
                .iter()
                .filter(|(inv, _)| *inv >= heal.time_ns)
                .map(|(_, done)| *done)
                .min();
            let observed = ops.iter().any(|p| p.invoke.time_ns >= heal.time_ns);
            match first {
                Some(done) => {
                    let ms = (done - heal.time_ns) as f64 / 1e6;
                    worst = worst.max(ms);
                    if ms > self.limit_ms {
                        v.anomaly("slow_recovery", json!({"healed_at_ns": heal.time_ns, "recovery_ms": ms, "limit_ms": self.limit_ms}));
                    }
                }
                None if observed => {
                    v.anomaly(
                        "not_recovered",
                        json!({"healed_at_ns": heal.time_ns, "fault": heal.value}),
                    );
                }
                None => unobserved += 1,
            }
        }
        let worst_completion = self.completion_recovery(&mut v, &heals, state);
        v.count("heals", heals.len() as u64)
            .count("unobserved", unobserved)
            .measure("max_recovery_ms", worst);
        if (heals.is_empty() || unobserved > 0) && v.validity == Validity::Valid {
            v.validity = Validity::Unknown;
        }
        v.summary(format!(
            "{} heals ({unobserved} unobserved), worst recovery {worst:.0} ms to accept, \
             {worst_completion:.0} ms to complete (limit {})",
            heals.len(),
            self.limit_ms
        ));
        v
    }
}

impl Recovery {
    /// From each heal to the first callback after it: work done again, not just accepted.
    fn completion_recovery(&self, v: &mut Verdict, heals: &[&Op], state: &FinalState) -> f64 {
        let completions: Vec<u64> = state.callbacks.iter().map(|c| c.time_ns).collect();
        let mut worst: f64 = 0.0;
        for heal in heals {
            let Some(first) = completions.iter().filter(|t| **t >= heal.time_ns).min() else {
                continue;
            };
            let ms = (first - heal.time_ns) as f64 / 1e6;
            worst = worst.max(ms);
            if ms > self.limit_ms {
                let example = json!({"healed_at_ns": heal.time_ns, "recovery_ms": ms, "limit_ms": self.limit_ms});
                v.anomaly("slow_completion_recovery", example);
            }
        }
        v.measure("max_completion_recovery_ms", worst);
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{checker::fixtures::*, history::History};

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
}
