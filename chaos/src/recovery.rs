//! The recovery table: time to recover per fault kind and strategy, from the matrix's cells,
//! with the seed's chapter 5 figures beside ours. The seed's incident (a database connection
//! pool exhausted during a sale) is our `store-link-slow`; its mean time to recovery went from
//! 15 min 32 s with people in the loop to 1 min 28 s with automated scaling.

use std::collections::BTreeSet;

use reports::chaos::MatrixCell;

/// The seed's MTTR before and after its automation, in seconds.
pub const SEED_MTTR_S: (f64, f64) = (15.0 * 60.0 + 32.0, 88.0);

/// The experiment that reproduces the seed's incident.
pub const SEED_INCIDENT: &str = "store-link-slow";

fn seconds(ms: Option<f64>) -> String {
    ms.map_or("–".into(), |ms| format!("{:.1} s", ms / 1000.0))
}

/// One cell as `accepting / completing`.
fn shown(cell: Option<&MatrixCell>) -> String {
    match cell {
        None => String::new(),
        Some(c) => format!(
            "{} / {}",
            seconds(c.recovery.accepting_ms),
            seconds(c.recovery.completing_ms)
        ),
    }
}

/// A Markdown table: a row per experiment, a column per strategy; each cell the longest time
/// from a heal to the next accepted submission / completed task. The seed's row comes first.
pub fn table(cells: &[MatrixCell]) -> String {
    let strategies: Vec<&str> = dedup(cells.iter().map(|c| c.strategy.as_str()));
    let experiments: BTreeSet<&str> = cells.iter().map(|c| c.experiment.as_str()).collect();
    let mut out = format!(
        "| fault | {} |\n|---|{}\n",
        strategies.join(" | "),
        "---|".repeat(strategies.len())
    );
    let ours = cells
        .iter()
        .find(|c| c.experiment == SEED_INCIDENT && c.strategy == crate::matrix::ROBUST);
    out += &format!(
        "| seed ch. 5, connection pool exhausted: MTTR {} min {} s before, {} min {} s after (ours, `{SEED_INCIDENT}`: {}) |{}\n",
        (SEED_MTTR_S.0 / 60.0).floor(),
        SEED_MTTR_S.0 % 60.0,
        (SEED_MTTR_S.1 / 60.0).floor(),
        SEED_MTTR_S.1 % 60.0,
        ours.map_or("not run".into(), |c| shown(Some(c))),
        " |".repeat(strategies.len())
    );
    for e in experiments {
        let row: Vec<String> = strategies
            .iter()
            .map(|s| shown(cells.iter().find(|c| c.experiment == e && c.strategy == *s)))
            .collect();
        out += &format!("| {e} | {} |\n", row.join(" | "));
    }
    out
}

/// In first-seen order.
fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reports::{chaos::Recovery, Validity};

    fn cell(experiment: &str, strategy: &str, ms: f64) -> MatrixCell {
        MatrixCell {
            strategy: strategy.into(),
            experiment: experiment.into(),
            validity: Validity::Valid,
            predicted: None,
            as_predicted: Some(true),
            anomalies: Default::default(),
            recovery: Recovery {
                accepting_ms: Some(ms),
                completing_ms: Some(ms * 2.0),
            },
            run: String::new(),
        }
    }

    #[test]
    fn the_table_has_the_seed_row_and_one_row_per_fault() {
        let t = table(&[
            cell("worker-kill", "robust", 1200.0),
            cell("worker-kill", "ack-auto", 900.0),
            cell("store-link-slow", "robust", 3000.0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| fault | robust | ack-auto |");
        assert!(
            lines[2].contains("15 min 32 s before, 1 min 28 s after"),
            "{t}"
        );
        assert!(lines[2].contains("3.0 s / 6.0 s"), "{t}");
        assert_eq!(lines[4], "| worker-kill | 1.2 s / 2.4 s | 0.9 s / 1.8 s |");
        assert_eq!(lines.len(), 5);
        let columns = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| columns(l) == columns(lines[0])), "{t}");
    }
}
