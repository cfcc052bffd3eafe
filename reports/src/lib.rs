//! The report every suite emits: one run, its verdicts, and the files it produced.
//!
//! These types are the schema: `schema/run-report.schema.json` is generated from them (a test
//! keeps it current), so tools in any language can read `verdict.json`.

use std::{collections::BTreeMap, path::Path};

pub mod chaos;
pub mod claims;
pub mod load;
pub mod render;
mod series;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use chaos::{ChaosReport, MatrixReport};
pub use claims::{Claim, ClaimVerdict};
pub use load::LoadReport;
pub use series::Series;

/// Identifies the format; bumped when it changes. v2 added the load suite's measurements, v3
/// the chaos suite's (experiment accounts and the strategy matrix), v4 merged runs (one
/// verification's suites in one report) and the seed's claims ledger, v5 each fault window's
/// time to recover.
pub const SCHEMA: &str = "rmq-harness/run-report/v5";

/// Earlier formats this version still reads: each is a subset of the current one.
const READABLE: [&str; 5] = [
    "rmq-harness/run-report/v1",
    "rmq-harness/run-report/v2",
    "rmq-harness/run-report/v3",
    "rmq-harness/run-report/v4",
    SCHEMA,
];

/// Whether a checker found the property to hold (Jepsen's `:valid?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    /// The history could not decide (e.g. nothing was observed).
    Unknown,
}

impl Validity {
    /// Combines verdicts: any invalid is invalid; otherwise any unknown is unknown.
    pub fn all(items: impl IntoIterator<Item = Validity>) -> Validity {
        items
            .into_iter()
            .fold(Validity::Valid, |acc, v| match (acc, v) {
                (Validity::Invalid, _) | (_, Validity::Invalid) => Validity::Invalid,
                (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
                _ => Validity::Valid,
            })
    }
}

/// One kind of anomaly a checker found, with how often and a few examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Anomaly {
    /// Short name, e.g. `lost`, `duplicated`, `balance_mismatch`.
    pub kind: String,
    pub count: u64,
    /// Up to a handful of concrete cases, as the checker describes them.
    pub examples: Vec<serde_json::Value>,
}

/// What one checker concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// Checker name, e.g. `task-ledger`.
    pub checker: String,
    pub validity: Validity,
    /// One line for humans.
    pub summary: String,
    /// Counts by category (e.g. `ok`, `lost`, `attempted`).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Measured figures (e.g. `ok_fraction`, `p99_ms`).
    #[serde(default)]
    pub measurements: BTreeMap<String, f64>,
    #[serde(default)]
    pub anomalies: Vec<Anomaly>,
}

impl Verdict {
    /// Maximum examples kept per anomaly kind.
    pub const MAX_EXAMPLES: usize = 5;

    pub fn new(checker: &str) -> Verdict {
        Verdict {
            checker: checker.to_string(),
            validity: Validity::Valid,
            summary: String::new(),
            counts: BTreeMap::new(),
            measurements: BTreeMap::new(),
            anomalies: Vec::new(),
        }
    }

    pub fn count(&mut self, name: &str, n: u64) -> &mut Self {
        self.counts.insert(name.to_string(), n);
        self
    }

    pub fn measure(&mut self, name: &str, value: f64) -> &mut Self {
        self.measurements.insert(name.to_string(), value);
        self
    }

    /// The checker could not decide: unknown, unless an anomaly already made it invalid (a
    /// definite finding outweighs missing evidence elsewhere).
    pub fn undecided(&mut self) -> &mut Self {
        if self.validity == Validity::Valid {
            self.validity = Validity::Unknown;
        }
        self
    }

    /// Records one anomaly case; the verdict becomes invalid.
    pub fn anomaly(&mut self, kind: &str, example: serde_json::Value) -> &mut Self {
        self.validity = Validity::Invalid;
        match self.anomalies.iter_mut().find(|a| a.kind == kind) {
            Some(a) => {
                a.count += 1;
                if a.examples.len() < Self::MAX_EXAMPLES {
                    a.examples.push(example);
                }
            }
            None => self.anomalies.push(Anomaly {
                kind: kind.to_string(),
                count: 1,
                examples: vec![example],
            }),
        }
        self
    }

    /// How many cases of `kind` were found.
    pub fn anomaly_count(&self, kind: &str) -> u64 {
        self.anomalies
            .iter()
            .find(|a| a.kind == kind)
            .map_or(0, |a| a.count)
    }

    pub fn summary(&mut self, text: impl Into<String>) -> &mut Self {
        self.summary = text.into();
        self
    }
}

/// A file a run produced (history, logs, final state, load reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    pub name: String,
    /// Relative to the run directory.
    pub path: String,
}

/// One run of a suite: what ran, against what, and what was concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Run name, e.g. `kill-worker-under-load`.
    pub name: String,
    /// Suite that produced it: `scenarios`, `loadtests`, `chaos`, `harness`, or `verify` (the
    /// main command's merged run).
    pub suite: String,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// The system under test: kind, address, strategies, and anything else worth recording.
    #[serde(default)]
    pub sut: BTreeMap<String, String>,
    /// Parameters of the run (seed, workload, faults).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub verdicts: Vec<Verdict>,
    /// All verdicts combined.
    pub validity: Validity,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// What a load run measured (suite `loadtests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    /// What a chaos experiment showed (suite `chaos`, `harness`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosReport>,
    /// The strategy × fault matrix (suite `chaos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<MatrixReport>,
    /// The suites' runs a verification merged (suite `verify`), each with its directory
    /// relative to this one in `parameters.dir`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunReport>,
    /// The seed's checkable claims, judged by the runs (see [`claims::judge`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a run report: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} has schema `{found}`, this version reads `{SCHEMA}`")]
    Schema { path: String, found: String },
}

impl RunReport {
    /// An empty report of run `name` by `suite`, in this schema: no times, no verdicts
    /// (valid until one says otherwise), nothing measured.
    pub fn new(name: &str, suite: &str) -> RunReport {
        RunReport {
            schema: SCHEMA.to_string(),
            name: name.to_string(),
            suite: suite.to_string(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_ms: 0,
            sut: BTreeMap::new(),
            parameters: BTreeMap::new(),
            verdicts: Vec::new(),
            validity: Validity::Valid,
            artifacts: Vec::new(),
            load: None,
            chaos: None,
            matrix: None,
            runs: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// Recomputes [`RunReport::validity`] from the verdicts.
    pub fn seal(&mut self) {
        self.validity = Validity::all(self.verdicts.iter().map(|v| v.validity));
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).expect("report serialises");
        std::fs::write(path, text + "\n").map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<RunReport, ReportError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut report: RunReport =
            serde_json::from_str(&text).map_err(|source| ReportError::Format {
                path: shown.clone(),
                source,
            })?;
        if !READABLE.contains(&report.schema.as_str()) {
            return Err(ReportError::Schema {
                path: shown,
                found: report.schema,
            });
        }
        // An older format is a subset of this one: it reads as this one.
        report.schema = SCHEMA.to_string();
        Ok(report)
    }
}

/// The JSON Schema of [`RunReport`].
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RunReport)).expect("schema serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies_make_a_verdict_invalid_and_keep_few_examples() {
        let mut v = Verdict::new("task-ledger");
        assert_eq!(v.validity, Validity::Valid);
        for i in 0..9 {
            v.anomaly("lost", serde_json::json!({"task": i}));
        }
        assert_eq!(v.validity, Validity::Invalid);
        assert_eq!(v.anomaly_count("lost"), 9);
        assert_eq!(v.anomalies[0].examples.len(), Verdict::MAX_EXAMPLES);
    }

    #[test]
    fn validity_combines() {
        use Validity::*;
        assert_eq!(Validity::all([Valid, Valid]), Valid);
        assert_eq!(Validity::all([Valid, Unknown]), Unknown);
        assert_eq!(Validity::all([Unknown, Invalid, Valid]), Invalid);
        assert_eq!(Validity::all([]), Valid);
    }

    #[test]
    fn report_round_trips_and_checks_its_schema_tag() {
        let dir = std::env::temp_dir().join(format!("report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("verdict.json");
        let mut report = RunReport {
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            duration_ms: 1000,
            verdicts: vec![Verdict::new("a")],
            validity: Validity::Unknown,
            ..RunReport::new("r", "harness")
        };
        report.seal();
        assert_eq!(report.validity, Validity::Valid);
        report.write_json(&path).unwrap();
        assert_eq!(RunReport::read_json(&path).unwrap(), report);
        report.schema = "other/v9".into();
        report.write_json(&path).unwrap();
        assert!(matches!(
            RunReport::read_json(&path),
            Err(ReportError::Schema { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `schema/run-report.schema.json` is what the types generate; regenerate with
    /// `UPDATE_SCHEMA=1 cargo test -p reports`.
    #[test]
    fn committed_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/run-report.schema.json");
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale; run UPDATE_SCHEMA=1 cargo test -p reports",
            path.display()
        );
    }
}
