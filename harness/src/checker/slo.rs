//! Latency and availability of one operation against a service-level objective: the p99 of
//! answered operations stays under a limit, and the share of operations answered stays above
//! a target. An answer is a success or a definite refusal (a correct 409 or 422 is the service
//! working); unknown outcomes (5xx, timeouts, resets) count as unavailable.

use hdrhistogram::Histogram;
use reports::Verdict;
use serde_json::json;

use super::Checker;
use crate::{
    final_state::FinalState,
    history::{pairs, Op, OpType},
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
        let answered: Vec<_> = ops.iter().filter(|p| p.outcome() != OpType::Info).collect();
        for p in &answered {
            let micros = p.latency_ns().unwrap_or(0) / 1_000;
            latencies.saturating_record(micros.max(1));
        }
        let total = ops.len() as u64;
        v.count("operations", total)
            .count("answered", answered.len() as u64)
            .count("unanswered", total - answered.len() as u64);
        if total == 0 {
            v.validity = reports::Validity::Unknown;
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
        if !answered.is_empty() && ms(0.99) > self.p99_ms {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{f, History, Process};

    fn run(latency_ms: u64, failures: usize) -> Vec<Op> {
        // History timestamps are real; write ops with synthetic times instead.
        let h = History::new();
        let mut ops = Vec::new();
        for i in 0..100u64 {
            let inv = h.invoke(Process::Client(i), f::SUBMIT, json!({}));
            let kind = if (i as usize) < failures {
                OpType::Info
            } else {
                OpType::Ok
            };
            h.complete(&inv, kind, json!({}), None);
        }
        for (n, mut op) in h.ops().into_iter().enumerate() {
            op.time_ns = (n as u64 / 2) * 1_000_000_000
                + if n % 2 == 1 {
                    latency_ms * 1_000_000
                } else {
                    0
                };
            ops.push(op);
        }
        ops
    }

    fn slo() -> Slo {
        Slo {
            f: f::SUBMIT.into(),
            p99_ms: 50.0,
            availability: 0.99,
        }
    }

    #[test]
    fn fast_and_available_is_valid() {
        let v = slo().check(&run(10, 1), &FinalState::default());
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert!((v.measurements["p99_ms"] - 10.0).abs() < 0.1, "{v:?}");
    }

    #[test]
    fn slow_or_unavailable_breaks_the_slo() {
        assert_eq!(
            slo()
                .check(&run(80, 0), &FinalState::default())
                .anomaly_count("latency"),
            1
        );
        assert_eq!(
            slo()
                .check(&run(10, 5), &FinalState::default())
                .anomaly_count("availability"),
            1
        );
    }
}
