//! Time to recover after a fault heals: from each `stop-fault` of the nemesis to the first
//! operation invoked after it that succeeds. Invalid when that exceeds the limit, or when no
//! operation succeeds after a heal (`not_recovered`).

use reports::Verdict;
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

    fn check(&self, history: &[Op], _state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let heals: Vec<&Op> = history
            .iter()
            .filter(|o| o.process == NEMESIS && o.f == f::STOP_FAULT && o.kind != OpType::Invoke)
            .collect();
        let oks: Vec<(u64, u64)> = pairs(history)
            .into_iter()
            .filter(|p| p.invoke.f == self.f && p.outcome() == OpType::Ok)
            .filter_map(|p| Some((p.invoke.time_ns, p.completion?.time_ns)))
            .collect();
        let mut worst: f64 = 0.0;
        for heal in &heals {
            let first = oks
                .iter()
                .filter(|(inv, _)| *inv >= heal.time_ns)
                .map(|(_, done)| *done)
                .min();
            match first {
                Some(done) => {
                    let ms = (done - heal.time_ns) as f64 / 1e6;
                    worst = worst.max(ms);
                    if ms > self.limit_ms {
                        v.anomaly("slow_recovery", json!({"healed_at_ns": heal.time_ns, "recovery_ms": ms, "limit_ms": self.limit_ms}));
                    }
                }
                None => {
                    v.anomaly(
                        "not_recovered",
                        json!({"healed_at_ns": heal.time_ns, "fault": heal.value}),
                    );
                }
            }
        }
        v.count("heals", heals.len() as u64)
            .measure("max_recovery_ms", worst);
        if heals.is_empty() {
            v.validity = reports::Validity::Unknown;
        }
        v.summary(format!(
            "{} heals, worst recovery {worst:.0} ms (limit {})",
            heals.len(),
            self.limit_ms
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{checker::fixtures::*, history::History};

    fn history(ok_after_heal: bool) -> Vec<Op> {
        let h = History::new();
        accepted(&h, 0, "k0", credit("a", 1), "t0", false);
        fault(&h, f_start(), "kill-worker");
        fault(&h, f_stop(), "kill-worker");
        if ok_after_heal {
            accepted(&h, 1, "k1", credit("a", 1), "t1", false);
        }
        h.ops()
    }

    #[test]
    fn an_ok_after_the_heal_is_a_recovery() {
        let v = Recovery {
            f: f::SUBMIT.into(),
            limit_ms: 10_000.0,
        }
        .check(&history(true), &FinalState::default());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
    }

    #[test]
    fn no_ok_after_the_heal_or_a_slow_one_is_caught() {
        let v = Recovery {
            f: f::SUBMIT.into(),
            limit_ms: 10_000.0,
        }
        .check(&history(false), &FinalState::default());
        assert_eq!(v.anomaly_count("not_recovered"), 1);
        let v = Recovery {
            f: f::SUBMIT.into(),
            limit_ms: 0.0,
        }
        .check(&history(true), &FinalState::default());
        assert_eq!(v.anomaly_count("slow_recovery"), 1);
    }
}
