//! An experiment's account for the reports: the fault windows as the nemesis recorded them,
//! and the series a reader would rather look at than read (accepted and failed submissions and
//! P99 per second, beside the system's own signals), all on the history's clock in seconds.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use reports::{chaos::FaultWindow, Series};

use crate::{
    checker::HealRecovery,
    history::{f, pairs, Op, OpType, NEMESIS},
    signals::{self, Sample},
};

/// The nemesis's operations of kind `f`: each invocation with its completion. Steps overlap,
/// so completions are matched by fault, not by order ([`pairs`] assumes one operation at a time
/// per process).
fn nemesis_ops<'a>(history: &'a [Op], f: &str) -> Vec<(&'a Op, Option<&'a Op>)> {
    let ours: Vec<&Op> = history
        .iter()
        .filter(|o| o.process == NEMESIS && o.f == f)
        .collect();
    let mut taken = vec![false; ours.len()];
    let mut out = Vec::new();
    for (i, invoke) in ours.iter().enumerate() {
        if invoke.kind != OpType::Invoke {
            continue;
        }
        let done = (i + 1..ours.len()).find(|&j| {
            !taken[j] && ours[j].kind != OpType::Invoke && ours[j].value == invoke.value
        });
        if let Some(j) = done {
            taken[j] = true;
        }
        out.push((*invoke, done.map(|j| ours[j])));
    }
    out
}

/// Each `start-fault` paired with the first `stop-fault` of the same fault after it.
pub fn fault_windows(history: &[Op], recoveries: &[HealRecovery]) -> Vec<FaultWindow> {
    let mut heals = nemesis_ops(history, f::STOP_FAULT);
    nemesis_ops(history, f::START_FAULT)
        .into_iter()
        .map(|(start, started)| {
            let heal = heals
                .iter()
                .position(|(h, _)| h.value == start.value && h.time_ns >= start.time_ns)
                .map(|i| heals.remove(i));
            let fault: Option<crate::nemesis::Fault> =
                serde_json::from_value(start.value.clone()).ok();
            let recovery =
                heal.and_then(|(h, _)| recoveries.iter().find(|r| r.heal_ns == h.time_ns));
            FaultWindow {
                fault: fault.as_ref().map(|f| f.kind()).unwrap_or_default(),
                target: fault.as_ref().map(|f| f.target()).unwrap_or_default(),
                start_s: secs(start.time_ns),
                end_s: heal.and_then(|(_, done)| done).map(|c| secs(c.time_ns)),
                injected: started.is_some_and(|c| c.kind == OpType::Ok),
                accepting_ms: recovery.and_then(|r| r.accepting_ms),
                completing_ms: recovery.and_then(|r| r.completing_ms),
            }
        })
        .collect()
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Per second of the run: submissions accepted, submissions not answered (5xx, timeouts,
/// refused connections) and the P99 of those completed in that second; then the signals.
pub fn series(history: &[Op], samples: &[Sample]) -> Vec<Series> {
    let mut accepted = BTreeMap::<u64, f64>::new();
    let mut failed = BTreeMap::<u64, f64>::new();
    let mut latency = BTreeMap::<u64, Histogram<u64>>::new();
    for p in pairs(history).iter().filter(|p| p.invoke.f == f::SUBMIT) {
        let Some(done) = p.completion else { continue };
        let second = done.time_ns / 1_000_000_000;
        match done.kind {
            OpType::Ok => *accepted.entry(second).or_default() += 1.0,
            OpType::Fail if done.value.get("status").is_some() => {}
            _ => *failed.entry(second).or_default() += 1.0,
        }
        let micros = p.latency_ns().unwrap_or(0) / 1_000;
        latency
            .entry(second)
            .or_insert_with(|| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"))
            .saturating_record(micros.max(1));
    }
    let last = latency.keys().max().copied().unwrap_or(0);
    let per_second = |name: &str, unit: &str, values: &BTreeMap<u64, f64>| {
        let mut s = Series::new(name, "s", unit);
        for second in 0..=last {
            s.push(second as f64, values.get(&second).copied().unwrap_or(0.0));
        }
        s
    };
    let p99: BTreeMap<u64, f64> = latency
        .iter()
        .map(|(s, h)| (*s, h.value_at_quantile(0.99) as f64 / 1000.0))
        .collect();
    let mut out = vec![
        per_second("accepted", "submissions/s", &accepted),
        per_second("failed", "submissions/s", &failed),
    ];
    let mut p99_series = Series::new("p99", "s", "ms");
    for (second, ms) in p99 {
        p99_series.push(second as f64, ms);
    }
    out.push(p99_series);
    out.extend(signals::series(samples));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        history::{History, Process},
        nemesis::Fault,
    };
    use serde_json::json;

    #[test]
    fn windows_pair_each_start_with_its_heal() {
        let h = History::new();
        let kill = serde_json::to_value(Fault::Kill {
            process: "worker-0".into(),
        })
        .unwrap();
        let alarm = serde_json::to_value(Fault::MemoryAlarm).unwrap();
        for (name, value, kind) in [
            (f::START_FAULT, &kill, OpType::Ok),
            (f::START_FAULT, &alarm, OpType::Info),
        ] {
            let inv = h.invoke(NEMESIS, name, value.clone());
            h.complete(&inv, kind, value.clone(), None);
        }
        // Overlapping heals: the kill's heal completes after another heal began.
        let kill_heal = h.invoke(NEMESIS, f::STOP_FAULT, kill.clone());
        let other = h.invoke(
            NEMESIS,
            f::STOP_FAULT,
            json!({"fault": "slicer", "link": "x"}),
        );
        h.complete(
            &other,
            OpType::Ok,
            json!({"fault": "slicer", "link": "x"}),
            None,
        );
        h.complete(&kill_heal, OpType::Ok, kill.clone(), None);
        let inv = h.invoke(Process::Client(1), f::SUBMIT, json!({}));
        h.complete(&inv, OpType::Ok, json!({"status": 202}), None);
        let recovery = crate::checker::Recovery {
            f: f::SUBMIT.into(),
            limit_ms: 1_000.0,
        };
        let ops = h.ops();
        let recoveries = recovery.per_heal(&ops, &crate::final_state::FinalState::default());
        let windows = fault_windows(&ops, &recoveries);
        assert_eq!(windows.len(), 2);
        assert_eq!(
            (windows[0].fault.as_str(), windows[0].target.as_str()),
            ("kill", "worker-0")
        );
        assert!(windows[0].end_s.is_some() && windows[0].injected);
        // The submission accepted after the heal is its recovery; nothing completed.
        assert!(windows[0].accepting_ms.is_some_and(|ms| ms >= 0.0));
        assert_eq!(windows[0].completing_ms, None);
        assert_eq!(
            (windows[1].fault.as_str(), windows[1].target.as_str()),
            ("memory-alarm", "broker")
        );
        assert!(windows[1].end_s.is_none() && !windows[1].injected);
        assert_eq!(
            windows[1].accepting_ms, None,
            "never healed, never recovered"
        );
        let series = series(&h.ops(), &[]);
        assert_eq!(series[0].name, "accepted");
        assert_eq!(series[0].points.iter().map(|p| p[1]).sum::<f64>(), 1.0);
    }
}
