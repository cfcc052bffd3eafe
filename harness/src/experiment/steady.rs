//! The steady-state hypothesis (Chaos Toolkit's term): probes with tolerances, judged on the
//! run's history and signals before the first fault and again once the last fault has healed
//! and the system had time to recover. A system that recovers but then runs degraded (slower,
//! failing more, a queue that never drains) deviates from its steady state even when no task
//! was lost.

use std::time::Duration;

use reports::{chaos::ProbeResult, Verdict};
use serde::{Deserialize, Serialize};

use crate::{
    checker::{Checker, Slo},
    final_state::FinalState,
    history::{f, pairs, Op, OpType, Pair, NEMESIS},
    signals::Sample,
};

/// The probes and when the `after` phase starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SteadyState {
    pub probes: Vec<Probe>,
    /// From the last heal to the start of the `after` phase: recovering is not steady.
    #[serde(with = "crate::duration")]
    pub after_heal: Duration,
}

impl Default for SteadyState {
    /// Few failures, a bounded P99 and a ready system: what any API is expected to show when
    /// nothing is wrong. The P99 bound leaves room for one stall of a shared machine's disk
    /// (fsyncs of up to a second were seen here): a phase is a few hundred requests, so its
    /// P99 is a handful of them.
    fn default() -> Self {
        SteadyState {
            probes: vec![
                Probe::ErrorRate { max: 0.01 },
                Probe::P99 { max_ms: 2000.0 },
                Probe::Ready,
            ],
            after_heal: Duration::from_secs(3),
        }
    }
}

/// One probe and its tolerance, over the submissions of a phase (an HTTP refusal such as a
/// correct 422 is an answer, not an error; see [`Slo`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "probe", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Probe {
    /// Share of submissions the service did not answer (5xx, timeouts, refused connections).
    ErrorRate { max: f64 },
    /// P99 of submissions, in milliseconds.
    P99 { max_ms: f64 },
    /// Accepted submissions per second.
    Throughput { min: f64 },
    /// Work waiting (outbox backlog plus task queue depth) at the phase's last sample.
    QueueDepth { max: f64 },
    /// `/readyz` said ready in every sample of the phase.
    Ready,
}

impl Probe {
    fn name(&self) -> &'static str {
        match self {
            Probe::ErrorRate { .. } => "error-rate",
            Probe::P99 { .. } => "p99",
            Probe::Throughput { .. } => "throughput",
            Probe::QueueDepth { .. } => "queue-depth",
            Probe::Ready => "ready",
        }
    }

    fn tolerance(&self) -> String {
        match self {
            Probe::ErrorRate { max } => format!("<= {max}"),
            Probe::P99 { max_ms } => format!("<= {max_ms} ms"),
            Probe::Throughput { min } => format!(">= {min}/s"),
            Probe::QueueDepth { max } => format!("<= {max}"),
            Probe::Ready => "always".into(),
        }
    }

    /// What the phase shows for this probe, and whether it is within tolerance.
    fn observe(&self, phase: &Phase<'_>) -> (Option<f64>, Option<bool>) {
        let slo = &phase.slo;
        let within = |observed: Option<f64>, ok: &dyn Fn(f64) -> bool| (observed, observed.map(ok));
        match self {
            Probe::ErrorRate { max } => within(
                slo.measurements.get("availability").map(|a| 1.0 - a),
                &|e| e <= *max,
            ),
            Probe::P99 { max_ms } => {
                within(slo.measurements.get("p99_ms").copied(), &|p| p <= *max_ms)
            }
            Probe::Throughput { min } => within(phase.throughput(), &|t| t >= *min),
            Probe::QueueDepth { max } => {
                within(phase.samples.last().and_then(|s| s.backlog()), &|d| {
                    d <= *max
                })
            }
            Probe::Ready => {
                let seen: Vec<bool> = phase.samples.iter().filter_map(|s| s.ready).collect();
                let all = !seen.is_empty() && seen.iter().all(|r| *r);
                within(
                    (!seen.is_empty()).then_some(f64::from(u8::from(all))),
                    &|r| r == 1.0,
                )
            }
        }
    }
}

/// A stretch of the run: its submissions (by invocation time) and its samples.
struct Phase<'a> {
    name: &'static str,
    ops: Vec<Op>,
    samples: Vec<&'a Sample>,
    seconds: f64,
    /// The submissions' P99 and availability, measured once for every probe.
    slo: Verdict,
}

impl Phase<'_> {
    fn throughput(&self) -> Option<f64> {
        let accepted = pairs(&self.ops)
            .iter()
            .filter(|p| p.outcome() == OpType::Ok)
            .count();
        (self.seconds > 0.0 && !self.ops.is_empty()).then(|| accepted as f64 / self.seconds)
    }
}

/// The submissions invoked in `[from, to)` (history nanoseconds) and answered before
/// `answered_by`: one still waiting when a fault began was judged by the fault, not by the phase.
fn phase<'a>(
    name: &'static str,
    history: &[Op],
    samples: &'a [Sample],
    (from, to): (u64, u64),
    answered_by: u64,
) -> Phase<'a> {
    let answered_in_time = |p: &Pair<'_>| p.completion.is_none_or(|c| c.time_ns < answered_by);
    let ops: Vec<Op> = pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::SUBMIT && (from..to).contains(&p.invoke.time_ns))
        .filter(answered_in_time)
        .flat_map(|p| std::iter::once(p.invoke).chain(p.completion))
        .cloned()
        .collect();
    let at = |s: &Sample| (s.t * 1e9) as u64;
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| (from..to).contains(&at(s)))
        .collect();
    // A phase shorter than the sampling interval holds no sample: the one in force at its end
    // (the latest taken before it) is what the system said then.
    let samples = if inside.is_empty() {
        samples.iter().rfind(|s| at(s) < to).into_iter().collect()
    } else {
        inside
    };
    let slo = Slo {
        f: f::SUBMIT.into(),
        p99_ms: f64::INFINITY,
        availability: 0.0,
    }
    .check(&ops, &FinalState::default());
    Phase {
        name,
        ops,
        samples,
        seconds: (to - from) as f64 / 1e9,
        slo,
    }
}

/// Before the first fault, and from `after_heal` past the last heal to the last submission.
/// Without faults the whole run is one `before` phase. A fault may bite as soon as its injection
/// is invoked, so `before` ends there; a heal holds only once it has completed.
fn phases<'a>(history: &[Op], samples: &'a [Sample], after_heal: Duration) -> Vec<Phase<'a>> {
    let submits = || history.iter().filter(|o| o.f == f::SUBMIT);
    let (Some(first), Some(last)) = (
        submits().map(|o| o.time_ns).min(),
        submits().map(|o| o.time_ns).max(),
    ) else {
        return Vec::new();
    };
    let nemesis = |name: &'static str, invoked: bool| {
        history
            .iter()
            .filter(move |o| {
                o.process == NEMESIS && o.f == name && (o.kind == OpType::Invoke) == invoked
            })
            .map(|o| o.time_ns)
    };
    let Some(first_fault) = nemesis(f::START_FAULT, true).min() else {
        return vec![phase(
            "before",
            history,
            samples,
            (first, last + 1),
            u64::MAX,
        )];
    };
    let healed = nemesis(f::STOP_FAULT, false).max().unwrap_or(u64::MAX - 1);
    let after = healed.saturating_add(after_heal.as_nanos() as u64);
    vec![
        phase(
            "before",
            history,
            samples,
            (first, first_fault),
            first_fault,
        ),
        phase(
            "after",
            history,
            samples,
            (after, last.max(after).saturating_add(1)),
            u64::MAX,
        ),
    ]
}

/// Judges every probe in every phase. `samples` are on the history's clock (seconds).
pub fn judge(
    steady: &SteadyState,
    history: &[Op],
    samples: &[Sample],
) -> (Vec<ProbeResult>, Verdict) {
    let mut v = Verdict::new("steady-state");
    let mut results = Vec::new();
    for phase in phases(history, samples, steady.after_heal) {
        for probe in &steady.probes {
            let (observed, held) = probe.observe(&phase);
            let result = ProbeResult {
                phase: phase.name.into(),
                probe: probe.name().into(),
                observed,
                tolerance: probe.tolerance(),
                held,
            };
            if held == Some(false) {
                v.anomaly(
                    "deviated",
                    serde_json::to_value(&result).expect("serialises"),
                );
            }
            results.push(result);
        }
    }
    let count = |held: Option<bool>| results.iter().filter(|r| r.held == held).count() as u64;
    v.count("probes", results.len() as u64)
        .count("held", count(Some(true)))
        .count("unobserved", count(None));
    if steady.probes.is_empty() {
        v.summary("no probes");
    } else if results.is_empty() {
        v.undecided();
        v.summary("no submissions to probe");
    } else if v.anomaly_count("deviated") > 0 {
        v.summary(format!(
            "deviated: {}",
            deviations(&results).collect::<Vec<_>>().join(", ")
        ));
    } else if count(None) > 0 {
        v.undecided();
        v.summary("a phase had nothing to observe (schedule faults later, or run longer)");
    } else {
        v.summary(format!(
            "held: {} probes in {} phases",
            results.len(),
            phases_of(&results)
        ));
    }
    (results, v)
}

fn deviations(results: &[ProbeResult]) -> impl Iterator<Item = String> + '_ {
    results.iter().filter(|r| r.held == Some(false)).map(|r| {
        format!(
            "{} {} {:.3} (tolerance {})",
            r.phase,
            r.probe,
            r.observed.unwrap_or(f64::NAN),
            r.tolerance
        )
    })
}

fn phases_of(results: &[ProbeResult]) -> usize {
    let mut names: Vec<&str> = results.iter().map(|r| r.phase.as_str()).collect();
    names.dedup();
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, Process};
    use serde_json::json;

    /// `n` submissions a second apart, answered as `outcome(i)` says, with a fault from
    /// `fault.0` to `fault.1` seconds.
    fn history(n: u64, fault: Option<(u64, u64)>, outcome: impl Fn(u64) -> OpType) -> Vec<Op> {
        let h = History::new();
        for i in 0..n {
            let inv = h.invoke(Process::Client(0), f::SUBMIT, json!({}));
            let status = if outcome(i) == OpType::Ok {
                json!({"status": 202})
            } else {
                json!(null)
            };
            h.complete(&inv, outcome(i), status, None);
        }
        if fault.is_some() {
            for name in [f::START_FAULT, f::STOP_FAULT] {
                let inv = h.invoke(NEMESIS, name, json!({}));
                h.complete(&inv, OpType::Ok, json!({}), None);
            }
        }
        let mut ops = h.ops();
        let (start, stop) = fault.unwrap_or((0, 0));
        let mut nemesis_ops = 0;
        for op in ops.iter_mut() {
            op.time_ns = if op.process == NEMESIS {
                nemesis_ops += 1;
                let s = if nemesis_ops <= 2 { start } else { stop };
                s * 1_000_000_000 + 1
            } else {
                (op.index / 2) * 1_000_000_000 + (op.index % 2) * 5_000_000
            };
        }
        ops
    }

    fn judged(ops: &[Op]) -> (Vec<ProbeResult>, Verdict) {
        judge(
            &SteadyState {
                probes: vec![
                    Probe::ErrorRate { max: 0.1 },
                    Probe::Throughput { min: 0.5 },
                ],
                after_heal: Duration::from_secs(2),
            },
            ops,
            &[],
        )
    }

    #[test]
    fn a_system_that_comes_back_whole_holds() {
        let ops = history(40, Some((10, 20)), |i| {
            if (10..20).contains(&i) {
                OpType::Info
            } else {
                OpType::Ok
            }
        });
        let (results, v) = judged(&ops);
        assert_eq!(v.validity, reports::Validity::Valid, "{v:?}");
        assert_eq!(results.len(), 4);
    }

    #[test]
    fn a_system_that_stays_degraded_after_the_heal_deviates() {
        let ops = history(40, Some((10, 20)), |i| {
            if i >= 10 && i % 2 == 0 {
                OpType::Info
            } else {
                OpType::Ok
            }
        });
        let (results, v) = judged(&ops);
        assert_eq!(v.validity, reports::Validity::Invalid, "{v:?}");
        let after_error = results
            .iter()
            .find(|r| r.phase == "after" && r.probe == "error-rate")
            .unwrap();
        assert_eq!(after_error.held, Some(false), "{results:?}");
    }

    /// A run shorter than the sampling interval: the sample taken as it began still speaks.
    #[test]
    fn a_phase_without_a_sample_of_its_own_uses_the_one_in_force() {
        let mut ops = history(3, None, |_| OpType::Ok);
        for op in &mut ops {
            op.time_ns += 1_000_000_000;
        }
        let ready = |ready: bool, t: f64| Sample {
            t,
            ready: Some(ready),
            ..Sample::default()
        };
        let steady = SteadyState {
            probes: vec![Probe::Ready],
            after_heal: Duration::from_secs(2),
        };
        let (results, v) = judge(&steady, &ops, &[ready(true, 0.5)]);
        assert_eq!(v.validity, reports::Validity::Valid, "{results:?}");
        let (_, v) = judge(&steady, &ops, &[ready(false, 0.5)]);
        assert_eq!(v.validity, reports::Validity::Invalid);
        let (_, v) = judge(&steady, &ops, &[ready(true, 60.0)]);
        assert_eq!(
            v.validity,
            reports::Validity::Unknown,
            "a later sample does not count"
        );
    }

    /// Fast submissions every second but at `slow_at`, whose answer takes 3.9 s, around a fault
    /// whose injection is invoked at 10 s and completes at 10.2 s, healed at 15 s.
    fn slow_submission_near_a_fault(slow_at_ms: u64) -> Vec<Op> {
        let h = History::new();
        let mut times = Vec::new();
        let mut submit = |at_ms: u64, took_ms: u64| {
            let inv = h.invoke(Process::Client(0), f::SUBMIT, json!({}));
            h.complete(&inv, OpType::Ok, json!({"status": 202}), None);
            times.extend([at_ms, at_ms + took_ms]);
        };
        for s in (0..10).chain(18..28) {
            submit(s * 1000, 5);
        }
        submit(slow_at_ms, 3900);
        for (name, at_ms, took_ms) in [(f::START_FAULT, 10_000, 200), (f::STOP_FAULT, 15_000, 50)] {
            let inv = h.invoke(NEMESIS, name, json!({}));
            h.complete(&inv, OpType::Ok, json!({}), None);
            times.extend([at_ms, at_ms + took_ms]);
        }
        let mut ops = h.ops();
        for (op, ms) in ops.iter_mut().zip(times) {
            op.time_ns = ms * 1_000_000;
        }
        ops
    }

    /// A submission the fault slowed is the fault's, even when it began while the injection was
    /// still being applied (seen: a store link cut stalled requests invoked 0.1 s after the
    /// injection began, before it completed) or before it.
    #[test]
    fn the_before_phase_ends_when_a_fault_begins_to_be_injected() {
        let steady = SteadyState {
            probes: vec![
                Probe::ErrorRate { max: 0.01 },
                Probe::P99 { max_ms: 2000.0 },
            ],
            after_heal: Duration::from_secs(3),
        };
        for slow_at_ms in [10_100, 9_500] {
            let (results, v) = judge(&steady, &slow_submission_near_a_fault(slow_at_ms), &[]);
            assert_eq!(v.validity, reports::Validity::Valid, "{results:?}");
            assert_eq!(v.counts["held"], 4, "{results:?}");
        }
        let (results, v) = judge(&steady, &slow_submission_near_a_fault(5_000), &[]);
        assert_eq!(v.validity, reports::Validity::Invalid, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| r.phase == "before" && r.probe == "p99" && r.held == Some(false)),
            "{results:?}"
        );
    }

    #[test]
    fn a_fault_until_the_end_leaves_the_after_phase_unobserved() {
        let ops = history(20, Some((5, 19)), |_| OpType::Ok);
        let (_, v) = judged(&ops);
        assert_eq!(v.validity, reports::Validity::Unknown, "{v:?}");
    }
}
