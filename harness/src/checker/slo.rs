//! Latency and availability of one operation against a service-level objective: the p99 of
//! every completed operation (timeouts at the time the client gave up) stays under a limit, and
//! the share of operations the service answered stays above a target. An answer is a success
//! or an HTTP refusal (a correct 409 or 422 is the service working); unknown outcomes (5xx,
//! timeouts, resets) and refused connections count as unavailable. A run in which the service
//! answered nothing breaks any objective.

use hdrhistogram::Histogram;
use reports::Verdict;
use serde_json::json;

use super::Checker;
use crate::{
    final_state::FinalState,
    history::{pairs, Op, OpType, Pair},
};

pub struct Slo {
    /// Operation judged, e.g. `submit`.
    pub f: String,
    pub p99_ms: f64,
    /// Fraction of operations that must succeed, e.g. 0.999.
    pub availability: f64,
}

impl Checker for Slo {
    fn name(&self) -> &str {
        "slo"
    }

    fn check(&self, history: &[Op], _state: &FinalState) -> Verdict {
        let mut v = Verdict::new(self.name());
        let ops: Vec<_> = pairs(history)
            .into_iter()
            .filter(|p| p.invoke.f == self.f)
            .collect();
        // Microseconds from 1 µs to one hour; longer latencies saturate at an hour.
        let mut latencies =
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for micros in ops
            .iter()
            .filter_map(|p| p.latency_ns())
            .map(|ns| ns / 1_000)
        {
            latencies.saturating_record(micros.max(1));
        }
        let answered: Vec<_> = ops.iter().filter(|p| answered_by_service(p)).collect();
        let total = ops.len() as u64;
        v.count("operations", total)
            .count("answered", answered.len() as u64)
            .count("unanswered", total - answered.len() as u64);
        if total == 0 {
            v.undecided();
            v.summary(format!("no {} operations", self.f));
            return v;
        }
        let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
        let availability = answered.len() as f64 / total as f64;
        v.measure("p50_ms", ms(0.5))
            .measure("p95_ms", ms(0.95))
            .measure("p99_ms", ms(0.99))
            .measure("max_ms", latencies.max() as f64 / 1000.0)
            .measure("availability", availability);
        if answered.is_empty() {
            v.anomaly("unavailable", json!({"f": self.f, "operations": total}));
        }
        if !latencies.is_empty() && ms(0.99) > self.p99_ms {
            v.anomaly(
                "latency",
                json!({"f": self.f, "p99_ms": ms(0.99), "limit_ms": self.p99_ms}),
            );
        }
        if availability < self.availability {
            v.anomaly(
                "availability",
                json!({"f": self.f, "availability": availability, "target": self.availability}),
            );
        }
        v.summary(format!(
            "{}: p99 {:.1} ms (limit {}), availability {:.4} (target {})",
            self.f,
            ms(0.99),
            self.p99_ms,
            availability,
            self.availability
        ));
        v
    }
}

/// A success, or a refusal the service itself sent (an HTTP status); not a refused connection.
fn answered_by_service(p: &Pair<'_>) -> bool {
    match p.outcome() {
        OpType::Ok => true,
        OpType::Fail => p
            .completion
            .is_some_and(|c| c.value.get("status").is_some()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{f, History, Process};

    /// 100 submissions, one a second; `outcome(i)` gives each one's result and latency.
    fn history(outcome: impl Fn(u64) -> (OpType, serde_json::Value, u64)) -> Vec<Op> {
        // History timestamps are real; write ops with synthetic times instead.
        let h = History::new();
        let mut latency = Vec::new();
        for i in 0..100u64 {
            let inv = h.invoke(Process::Client(i), f::SUBMIT, json!({}));
            let (kind, value, ms) = outcome(i);
            h.complete(&inv, kind, value, None);
            latency.push(ms);
        }
        let mut ops = h.ops();
        for (n, op) in ops.iter_mut().enumerate() {
            let at = (n as u64 / 2) * 1_000_000_000;
            op.time_ns = at + (n as u64 % 2) * latency[n / 2] * 1_000_000;
        }
        ops
    }

    /// `failures` of 100 time out after 2 s; the rest succeed in `latency_ms`.
    fn run(latency_ms: u64, failures: u64) -> Vec<Op> {
        history(|i| {
            if i < failures {
                (OpType::Info, json!(null), 2_000)
            } else {
                (OpType::Ok, json!({"status": 202}), latency_ms)
            }
        })
    }

    fn slo() -> Slo {
        Slo {
            f: f::SUBMIT.into(),
            p99_ms: 50.0,
            availability: 0.99,
        }
    }

    fn check(ops: &[Op]) -> Verdict {
        slo().check(ops, &FinalState::default())
    }

    #[test]
    fn fast_and_available_is_valid() {
        let v = check(&run(10, 0));
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert!((v.measurements["p99_ms"] - 10.0).abs() < 0.1, "{v:?}");
    }

    #[test]
    fn slow_or_unavailable_breaks_the_slo() {
        assert_eq!(check(&run(80, 0)).anomaly_count("latency"), 1);
        assert_eq!(check(&run(10, 5)).anomaly_count("availability"), 1);
    }

    #[test]
    fn timeouts_count_in_the_latency_at_the_time_the_client_gave_up() {
        let v = check(&run(10, 2));
        assert!(v.measurements["p99_ms"] >= 2_000.0, "{v:?}");
        assert_eq!(v.anomaly_count("latency"), 1);
    }

    #[test]
    fn http_refusals_are_answers_and_refused_connections_are_not() {
        let refusals = history(|_| (OpType::Fail, json!({"status": 422}), 5));
        assert_eq!(check(&refusals).validity, reports::Validity::Valid);
        let api_down = history(|_| (OpType::Fail, json!(null), 0));
        let v = check(&api_down);
        assert_eq!(v.anomaly_count("availability"), 1, "{v:?}");
        assert_eq!(v.anomaly_count("unavailable"), 1, "{v:?}");
    }

    #[test]
    fn a_service_that_answers_nothing_breaks_even_a_lax_objective() {
        let lax = Slo {
            p99_ms: 1e9,
            availability: 0.0,
            ..slo()
        };
        let v = lax.check(&run(10, 100), &FinalState::default());
        assert_eq!(v.anomaly_count("unavailable"), 1, "{v:?}");
        assert_eq!(v.validity, reports::Validity::Invalid);
    }
}
