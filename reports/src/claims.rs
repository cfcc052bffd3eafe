//! The seed's checkable claims, judged by runs: its QPS/P99/error-rate table (§2.5), retries then
//! the dead-letter queue (§3.3), manual acknowledgement (§3.3), idempotency by Redis SETNX (§4.4),
//! its recovery time (§5) and the stability of the architecture under each fault kind (§4.2,
//! §5). Each claim is confirmed, refuted with a counterexample, or not yet tested by the runs
//! given, with the figures that decided it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{chaos::MatrixCell, load::SeedRow, RunReport, Validity};

/// How the runs judged a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimVerdict {
    Confirmed,
    Refuted,
    NotYetTested,
}

/// One checkable claim of the seed and what the runs showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Claim {
    /// Stable identifier, e.g. `seed-table` or `stable:worker-kill`.
    pub id: String,
    /// The claim, in the seed's sense.
    pub claim: String,
    /// Where the seed makes it, e.g. `§3.3`.
    pub source: String,
    pub verdict: ClaimVerdict,
    /// The figures that decided it; for an untested claim, the command that would test it.
    pub evidence: String,
    /// A concrete case that refutes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<serde_json::Value>,
    /// The runs that tested it, by name.
    #[serde(default)]
    pub runs: Vec<String>,
}

impl Claim {
    fn new(id: &str, source: &str, claim: &str) -> Claim {
        Claim {
            id: id.to_string(),
            claim: claim.to_string(),
            source: source.to_string(),
            verdict: ClaimVerdict::NotYetTested,
            evidence: String::new(),
            counterexample: None,
            runs: Vec::new(),
        }
    }

    fn untested(mut self, how: &str) -> Claim {
        self.evidence = format!("not tested by these runs; `{how}` tests it");
        self
    }

    fn decided(mut self, held: bool, evidence: String) -> Claim {
        self.verdict = if held {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Refuted
        };
        self.evidence = evidence;
        self
    }
}

/// Judges every claim by `reports` and the runs they merged.
pub fn judge(reports: &[RunReport]) -> Vec<Claim> {
    let mut all = Vec::new();
    for r in reports {
        walk(r, &mut all);
    }
    let cells: Vec<(&RunReport, &MatrixCell)> = all
        .iter()
        .flat_map(|r| {
            r.matrix
                .iter()
                .flat_map(move |m| m.cells.iter().map(move |c| (*r, c)))
        })
        .collect();
    let mut claims = vec![
        seed_table(&all),
        retries(&all),
        manual_ack(&cells),
        setnx(&cells),
        recovery(&cells),
    ];
    claims.extend(stability(&cells));
    claims
}

fn walk<'a>(report: &'a RunReport, out: &mut Vec<&'a RunReport>) {
    out.push(report);
    for r in &report.runs {
        walk(r, out);
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn pct(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

fn seed_table(all: &[&RunReport]) -> Claim {
    let claim = Claim::new(
        "seed-table",
        "§2.5",
        "Redis caching, gzip, a database index and asynchronous log writing take the API from \
         120 to 860 QPS, P99 from 480 ms to 68 ms and the error rate from 2.1 % to 0.2 %",
    );
    let Some((run, rows)) = all
        .iter()
        .filter_map(|r| Some((r, &r.load.as_ref()?.seed_table)))
        .rfind(|(_, rows)| rows.len() >= 2)
    else {
        return claim.untested("loadtests seed-table");
    };
    let (first, last): (&SeedRow, &SeedRow) = (&rows[0], &rows[rows.len() - 1]);
    let (before, after) = (first.ours, last.ours);
    let held = after.qps > before.qps
        && after.p99_ms < before.p99_ms
        && after.error_rate <= before.error_rate;
    let mut claim = claim.decided(
        held,
        format!(
            "ours, same workload, one row per step: {:.0} → {:.0} QPS ({:.2}×), P99 {:.1} → \
             {:.1} ms ({:.2}× faster), errors {} → {}; the seed: 120 → 860 QPS (7.17×), P99 \
             480 → 68 ms (7.06×), errors 2.1 % → 0.2 %",
            before.qps,
            after.qps,
            after.qps / before.qps.max(f64::MIN_POSITIVE),
            before.p99_ms,
            after.p99_ms,
            before.p99_ms / after.p99_ms.max(f64::MIN_POSITIVE),
            pct(before.error_rate),
            pct(after.error_rate)
        ),
    );
    if !held {
        claim.counterexample = Some(json!({"before": first, "after": last}));
    }
    claim.runs.push(run.name.clone());
    claim
}

fn retries(all: &[&RunReport]) -> Claim {
    let claim = Claim::new(
        "retries-then-dead-letter",
        "§3.3",
        "A task that keeps failing is retried with exponential backoff (1 s, 2 s, 4 s) and goes \
         to the dead-letter queue after 3 retries",
    );
    let tested: Vec<(&RunReport, &crate::Verdict)> = all
        .iter()
        .flat_map(|r| r.verdicts.iter().map(move |v| (*r, v)))
        .filter(|(_, v)| {
            v.checker == "dead-letters" && v.counts.get("failed_tasks").is_some_and(|n| *n > 0)
        })
        .collect();
    if tested.is_empty() {
        return claim.untested("chaos run poison-under-load");
    }
    let failed: u64 = tested.iter().map(|(_, v)| v.counts["failed_tasks"]).sum();
    let refuting = tested.iter().find(|(_, v)| v.validity == Validity::Invalid);
    let schedules: Vec<String> = tested
        .iter()
        .filter_map(|(r, _)| r.sut.get("retry_delays").cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let schedule = if schedules.is_empty() {
        String::new()
    } else {
        format!(" with retry delays {}", schedules.join("; "))
    };
    let mut claim = claim.decided(
        refuting.is_none(),
        format!(
            "{} that always failed, in {}{schedule}: each ended FAILED with one dead letter \
             after its retries (the gaps between attempts are configured, not measured here)",
            plural(failed, "task"),
            plural(tested.len() as u64, "run"),
        ),
    );
    if let Some((r, v)) = refuting {
        claim.counterexample = Some(json!({"run": r.name, "verdict": v.summary,
            "anomalies": v.anomalies}));
    }
    claim.runs = tested.iter().map(|(r, _)| r.name.clone()).collect();
    claim.runs.dedup();
    claim
}

fn lost(cell: &MatrixCell) -> u64 {
    cell.anomalies.get("lost").copied().unwrap_or(0)
}

fn by_strategy<'a>(
    cells: &[(&'a RunReport, &'a MatrixCell)],
    strategy: &str,
) -> Vec<(&'a RunReport, &'a MatrixCell)> {
    cells
        .iter()
        .filter(|(_, c)| c.strategy == strategy && c.validity != Validity::Unknown)
        .copied()
        .collect()
}

fn manual_ack(cells: &[(&RunReport, &MatrixCell)]) -> Claim {
    let claim = Claim::new(
        "manual-ack-loses-nothing",
        "§3.3",
        "Acknowledging a message explicitly after it was processed (manual ack) loses no task \
         when a consumer dies",
    );
    let robust = by_strategy(cells, "robust");
    if robust.is_empty() {
        return claim.untested("chaos run worker-kill");
    }
    let lost_total: u64 = robust.iter().map(|(_, c)| lost(c)).sum();
    let auto = by_strategy(cells, "ack-auto");
    let contrast = if auto.is_empty() {
        String::new()
    } else {
        let n: u64 = auto.iter().map(|(_, c)| lost(c)).sum();
        format!("; {n} lost by the auto-ack strategy in the same runs")
    };
    let mut claim = claim.decided(
        lost_total == 0,
        format!(
            "{} lost with manual ack after commit, over {}{contrast}",
            plural(lost_total, "task"),
            plural(robust.len() as u64, "fault experiment"),
        ),
    );
    if let Some((_, c)) = robust.iter().find(|(_, c)| lost(c) > 0) {
        claim.counterexample = Some(json!({"experiment": c.experiment, "lost": lost(c),
            "run": c.run}));
    }
    claim.runs = run_names(&robust);
    claim
}

fn run_names(cells: &[(&RunReport, &MatrixCell)]) -> Vec<String> {
    cells
        .iter()
        .map(|(r, c)| format!("{}/{}", r.name, c.run))
        .collect()
}

fn setnx(cells: &[(&RunReport, &MatrixCell)]) -> Claim {
    let claim = Claim::new(
        "idempotency-by-setnx",
        "§4.4",
        "Checking a message's key with Redis SETNX before processing makes consumption \
         idempotent: a redelivered message is neither applied twice nor lost",
    );
    let runs = by_strategy(cells, "dedupe-redis-setnx");
    if runs.is_empty() {
        return claim.untested("chaos matrix worker-kill");
    }
    let broken = runs.iter().find(|(_, c)| !c.anomalies.is_empty());
    let mut claim = claim.decided(
        broken.is_none(),
        format!(
            "SETNX dedupe under {}: {}",
            plural(runs.len() as u64, "fault experiment"),
            runs.iter()
                .map(|(_, c)| format!("{} {}", c.experiment, anomalies(c)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    if let Some((_, c)) = broken {
        claim.counterexample = Some(json!({"experiment": c.experiment,
            "anomalies": c.anomalies, "run": c.run,
            "why": "the key is set before the effect commits: a consumer killed in between \
                    leaves the key, and the redelivery is skipped as a duplicate"}));
    }
    claim.runs = run_names(&runs);
    claim
}

fn anomalies(c: &MatrixCell) -> String {
    if c.anomalies.is_empty() {
        return "nothing found".into();
    }
    c.anomalies
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The seed's time to recover after automation, in milliseconds (1 min 28 s).
const SEED_MTTR_MS: f64 = 88_000.0;

fn recovery(cells: &[(&RunReport, &MatrixCell)]) -> Claim {
    let claim = Claim::new(
        "recovery-time",
        "§5",
        "With automated recovery the mean time to recovery falls from 15 min 32 s to 1 min 28 s",
    );
    let timed: Vec<(&RunReport, &MatrixCell, f64)> = by_strategy(cells, "robust")
        .into_iter()
        .filter_map(|(r, c)| Some((r, c, c.recovery.completing_ms?)))
        .collect();
    if timed.is_empty() {
        return claim.untested("chaos run --all");
    }
    let mean = timed.iter().map(|t| t.2).sum::<f64>() / timed.len() as f64;
    let worst = timed
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("not empty");
    let mut claim = claim.decided(
        mean <= SEED_MTTR_MS,
        format!(
            "mean {:.2} s from a heal to the next completed task over {} (worst {:.2} s, \
             {}), with no person involved; the seed: 1 min 28 s",
            mean / 1000.0,
            plural(timed.len() as u64, "fault experiment"),
            worst.2 / 1000.0,
            worst.1.experiment
        ),
    );
    if mean > SEED_MTTR_MS {
        claim.counterexample = Some(json!({"experiment": worst.1.experiment,
            "completing_ms": worst.2, "run": worst.1.run}));
    }
    claim.runs = timed
        .iter()
        .map(|(r, c, _)| format!("{}/{}", r.name, c.run))
        .collect();
    claim
}

/// One claim per fault kind the robust strategy ran under.
fn stability(cells: &[(&RunReport, &MatrixCell)]) -> Vec<Claim> {
    let robust: Vec<_> = cells
        .iter()
        .filter(|(_, c)| c.strategy == "robust")
        .collect();
    if robust.is_empty() {
        return vec![Claim::new(
            "stable",
            "§4.2, §5",
            "The architecture is stable: under faults it loses nothing, duplicates nothing and \
             recovers",
        )
        .untested("chaos run --all")];
    }
    robust
        .iter()
        .map(|(r, c)| {
            let claim = Claim::new(
                &format!("stable:{}", c.experiment),
                "§4.2, §5",
                &format!(
                    "The architecture is stable under `{}`: nothing lost or duplicated, the \
                     steady state holds before and after",
                    c.experiment
                ),
            );
            let mut claim = match c.validity {
                Validity::Unknown => claim.untested(&format!("chaos run {}", c.experiment)),
                v => {
                    let mut claim = claim.decided(v == Validity::Valid, anomalies(c));
                    if v == Validity::Invalid {
                        claim.counterexample =
                            Some(json!({"anomalies": c.anomalies, "run": c.run}));
                    }
                    claim
                }
            };
            claim.runs.push(format!("{}/{}", r.name, c.run));
            claim
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{chaos::Recovery, MatrixReport, Verdict};

    fn report(name: &str) -> RunReport {
        RunReport::new(name, "chaos")
    }

    fn cell(strategy: &str, experiment: &str, lost: u64, completing_ms: f64) -> MatrixCell {
        let anomalies = if lost > 0 {
            BTreeMap::from([("lost".to_string(), lost)])
        } else {
            BTreeMap::new()
        };
        MatrixCell {
            strategy: strategy.into(),
            experiment: experiment.into(),
            validity: if lost > 0 {
                Validity::Invalid
            } else {
                Validity::Valid
            },
            predicted: None,
            as_predicted: None,
            anomalies,
            recovery: Recovery {
                accepting_ms: Some(10.0),
                completing_ms: Some(completing_ms),
            },
            run: format!("{strategy}-{experiment}"),
        }
    }

    fn matrix(cells: Vec<MatrixCell>) -> RunReport {
        let mut r = report("matrix");
        r.matrix = Some(MatrixReport {
            strategies: vec![],
            experiments: vec![],
            cells,
        });
        r
    }

    fn verdict_of<'a>(claims: &'a [Claim], id: &str) -> &'a Claim {
        claims.iter().find(|c| c.id == id).expect(id)
    }

    #[test]
    fn nothing_run_leaves_every_claim_untested() {
        let claims = judge(&[report("empty")]);
        assert!(claims
            .iter()
            .all(|c| c.verdict == ClaimVerdict::NotYetTested && c.evidence.contains('`')));
    }

    #[test]
    fn a_lossy_robust_cell_refutes_manual_ack_and_stability_with_its_case() {
        let claims = judge(&[matrix(vec![
            cell("robust", "worker-kill", 0, 2_000.0),
            cell("robust", "broker-kill", 3, 200_000.0),
            cell("ack-auto", "worker-kill", 11, 1_000.0),
        ])]);
        let ack = verdict_of(&claims, "manual-ack-loses-nothing");
        assert_eq!(ack.verdict, ClaimVerdict::Refuted);
        assert_eq!(ack.counterexample.as_ref().unwrap()["lost"], 3);
        assert!(ack.evidence.contains("11 lost by the auto-ack"));
        assert_eq!(
            verdict_of(&claims, "stable:worker-kill").verdict,
            ClaimVerdict::Confirmed
        );
        assert_eq!(
            verdict_of(&claims, "stable:broker-kill").verdict,
            ClaimVerdict::Refuted
        );
        // Mean of 2 s and 200 s is over the seed's 88 s.
        assert_eq!(
            verdict_of(&claims, "recovery-time").verdict,
            ClaimVerdict::Refuted
        );
    }

    #[test]
    fn setnx_is_refuted_by_any_anomaly_and_confirmed_by_clean_runs() {
        let lossy = judge(&[matrix(vec![cell(
            "dedupe-redis-setnx",
            "worker-kill",
            9,
            1.0,
        )])]);
        let c = verdict_of(&lossy, "idempotency-by-setnx");
        assert_eq!(c.verdict, ClaimVerdict::Refuted);
        assert!(c.evidence.contains("lost ×9"));
        let clean = judge(&[matrix(vec![cell("dedupe-redis-setnx", "api-kill", 0, 1.0)])]);
        assert_eq!(
            verdict_of(&clean, "idempotency-by-setnx").verdict,
            ClaimVerdict::Confirmed
        );
    }

    #[test]
    fn the_seed_table_is_judged_by_direction_with_both_tables_in_the_evidence() {
        use crate::load::{LoadReport, SeedFigures};
        let row = |qps, p99_ms| SeedRow {
            step: String::new(),
            sut_args: vec![],
            ours: SeedFigures {
                qps,
                p99_ms,
                error_rate: 0.0,
            },
            seed: None,
            qps_gain: 1.0,
            p99_gain: 1.0,
        };
        let mut r = report("seed");
        r.load = Some(LoadReport {
            profile: "seed-table".into(),
            seed_table: vec![row(11_554.0, 23.3), row(11_272.0, 16.9)],
            ..LoadReport::default()
        });
        let claims = judge(&[r]);
        let c = verdict_of(&claims, "seed-table");
        assert_eq!(c.verdict, ClaimVerdict::Refuted, "QPS fell");
        assert!(c.evidence.contains("11554 → 11272 QPS"), "{}", c.evidence);
    }

    #[test]
    fn retries_are_judged_by_the_dead_letter_checker_in_nested_runs() {
        let mut child = report("poison");
        child.sut.insert("retry_delays".into(), "1s,2s,4s".into());
        let mut v = Verdict::new("dead-letters");
        v.count("failed_tasks", 4);
        child.verdicts.push(v.clone());
        let mut parent = report("verify");
        parent.runs.push(child.clone());
        let claims = judge(&[parent.clone()]);
        let c = verdict_of(&claims, "retries-then-dead-letter");
        assert_eq!(c.verdict, ClaimVerdict::Confirmed);
        assert!(c.evidence.contains("1s,2s,4s"));
        v.anomaly("missing", json!({"task_id": "t"}));
        parent.runs[0].verdicts[0] = v;
        let claims = judge(&[parent]);
        assert_eq!(
            verdict_of(&claims, "retries-then-dead-letter").verdict,
            ClaimVerdict::Refuted
        );
    }
}
