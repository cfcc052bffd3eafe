//! The run directory: `<base>/<UTC timestamp>-<name>/` holding the history, the final state,
//! the SUT's logs and `verdict.json` (a [`reports::RunReport`]), with `<base>/latest` pointing at
//! the newest run. The base is `--out`, else `HARNESS_RUNS_DIR`, else
//! `$CARGO_TARGET_DIR/harness/runs`, else `target/harness/runs`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use reports::{Artifact, RunReport, Validity, Verdict};

pub struct RunDir {
    path: PathBuf,
    name: String,
    started_at: time::OffsetDateTime,
    started: Instant,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Keeps names safe as directory names.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "run".into()
    } else {
        s
    }
}

impl RunDir {
    /// Where runs go when no `--out` is given.
    pub fn default_base() -> PathBuf {
        if let Some(dir) = std::env::var_os("HARNESS_RUNS_DIR") {
            return PathBuf::from(dir);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"));
        target.join("harness").join("runs")
    }

    /// Creates a fresh run directory under `base` (or the default) and points `latest` at it.
    pub fn create(base: Option<&Path>, name: &str) -> std::io::Result<RunDir> {
        let base = base
            .map(Path::to_path_buf)
            .unwrap_or_else(Self::default_base);
        std::fs::create_dir_all(&base)?;
        // Absolute, because child processes (a private broker's HOME, for one) resolve a
        // relative path against their own working directory.
        let base = base.canonicalize()?;
        let started_at = time::OffsetDateTime::now_utc();
        let stamp = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            started_at.year(),
            u8::from(started_at.month()),
            started_at.day(),
            started_at.hour(),
            started_at.minute(),
            started_at.second()
        );
        let stem = format!("{stamp}-{}", sanitize(name));
        let mut path = base.join(&stem);
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = base.join(format!("{stem}-{n}"));
        }
        std::fs::create_dir_all(path.join("logs"))?;
        point_latest(&base, &path)?;
        Ok(RunDir {
            path,
            name: name.to_string(),
            started_at,
            started: Instant::now(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a JSON file in the run directory.
    pub fn write_json(
        &self,
        name: &str,
        value: &impl serde::Serialize,
    ) -> std::io::Result<PathBuf> {
        let path = self.file(name);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(value).expect("serialisable") + "\n",
        )?;
        Ok(path)
    }

    /// Every file of the run, relative to it, for the report.
    fn artifacts(&self) -> Vec<Artifact> {
        let mut out = Vec::new();
        collect(&self.path, &self.path, &mut out);
        // The report and its renderings describe the run; they are not its artifacts.
        out.retain(|a| {
            a.path != "verdict.json" && !reports::render::FILES.contains(&a.path.as_str())
        });
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Writes `verdict.json` and returns the report.
    pub fn finish(
        &self,
        suite: &str,
        sut: BTreeMap<String, String>,
        parameters: BTreeMap<String, serde_json::Value>,
        verdicts: Vec<Verdict>,
    ) -> Result<RunReport, reports::ReportError> {
        let mut report = self.report(suite, sut, parameters, verdicts);
        self.write_report(&mut report)?;
        Ok(report)
    }

    /// The sealed report of this run so far, for a suite that adds its own measurements
    /// before [`RunDir::write_report`].
    pub fn report(
        &self,
        suite: &str,
        sut: BTreeMap<String, String>,
        parameters: BTreeMap<String, serde_json::Value>,
        verdicts: Vec<Verdict>,
    ) -> RunReport {
        let mut report = RunReport {
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(time::OffsetDateTime::now_utc()),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sut,
            parameters,
            verdicts,
            ..RunReport::new(&self.name, suite)
        };
        report.seal();
        report
    }

    /// Writes `verdict.json`, listing the run's files as they are now, and its renderings
    /// (`report.md`, `junit.xml`, `report.html`).
    pub fn write_report(&self, report: &mut RunReport) -> Result<(), reports::ReportError> {
        report.artifacts = self.artifacts();
        report.seal();
        report.write_json(&self.file("verdict.json"))?;
        reports::render::write_all(&self.path, report)?;
        Ok(())
    }
}

/// Whether a directory belongs to the run's artifacts: not a nested run (it lists its own),
/// not a private broker's database (its state, not evidence; its log stays).
fn holds_artifacts(dir: &Path) -> bool {
    !dir.join("verdict.json").exists() && dir.file_name().is_none_or(|n| n != "mnesia")
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<Artifact>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // `latest` links would list a nested run twice.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            if holds_artifacts(&path) {
                collect(root, &path, out);
            }
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.display().to_string();
            out.push(Artifact {
                name: rel.clone(),
                path: rel,
            });
        }
    }
}

/// Replaces `<base>/latest` with a link to `run` (relative, so the tree can move).
fn point_latest(base: &Path, run: &Path) -> std::io::Result<()> {
    let latest = base.join("latest");
    let tmp = base.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let target = run.file_name().expect("run dir has a name");
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, &latest)
}

/// The process exit status for a report: 0 valid, 1 invalid, 2 undecided.
/// Prints a report for a person: the run, each verdict, and each anomaly with an example.
pub fn print_report(report: &RunReport) {
    println!(
        "run {} ({} ms): {:?}",
        report.name, report.duration_ms, report.validity
    );
    for v in &report.verdicts {
        println!(
            "  {:<48} {:<8} {}",
            v.checker,
            format!("{:?}", v.validity).to_lowercase(),
            v.summary
        );
        for a in &v.anomalies {
            let example = a
                .examples
                .first()
                .map(|e| e.to_string())
                .unwrap_or_default();
            println!("      {} x{}: {example}", a.kind, a.count);
        }
    }
}

pub fn exit_code(report: &RunReport) -> ExitCode {
    match report.validity {
        Validity::Valid => ExitCode::SUCCESS,
        Validity::Invalid => ExitCode::from(1),
        Validity::Unknown => ExitCode::from(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_writes_its_verdict_and_moves_latest() {
        let base = tempfile::tempdir().unwrap();
        let first = RunDir::create(Some(base.path()), "kill worker!").unwrap();
        assert!(first
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-kill-worker-"));
        std::fs::write(first.file("history.jsonl"), "").unwrap();
        let mut bad = Verdict::new("task-ledger");
        bad.anomaly("lost", serde_json::json!({"task": 1}));
        let report = first
            .finish("harness", BTreeMap::new(), BTreeMap::new(), vec![bad])
            .unwrap();
        assert_eq!(report.validity, Validity::Invalid);
        assert!(report.artifacts.iter().any(|a| a.path == "history.jsonl"));
        assert_eq!(
            RunReport::read_json(&first.file("verdict.json")).unwrap(),
            report
        );

        let second = RunDir::create(Some(base.path()), "kill worker!").unwrap();
        assert_ne!(
            first.path(),
            second.path(),
            "same name and second: a distinct directory"
        );
        let latest = std::fs::canonicalize(base.path().join("latest")).unwrap();
        assert_eq!(latest, std::fs::canonicalize(second.path()).unwrap());
    }
}
