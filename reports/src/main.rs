//! `report`: renders a run directory's `verdict.json` again as `report.md`, `junit.xml` and
//! `report.html`, e.g. after the renderings changed, or for a report copied from CI.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use reports::{render, RunReport};

/// Exit status when the run directory or its report cannot be read or written: distinct from
/// 1 and 2, which the suites use for failing and undecided runs.
const BAD_INPUT: u8 = 3;

/// Human-readable renderings of a harness run report.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-read <RUN_DIR>/verdict.json and (re)write report.md (a GitHub job summary),
    /// junit.xml (for test-result readers) and report.html (one self-contained page with
    /// charts) beside it; prints the paths written. Exits 3 when the directory or its
    /// verdict.json cannot be read, or the files cannot be written.
    Render {
        /// A run directory, as a suite left it (it holds verdict.json).
        run_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Render { run_dir } => match rerender(&run_dir) {
            Ok(paths) => {
                for path in paths {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("report: {message}");
                ExitCode::from(BAD_INPUT)
            }
        },
    }
}

fn rerender(run_dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    if !run_dir.is_dir() {
        return Err(format!("{} is not a run directory", run_dir.display()));
    }
    let verdict = run_dir.join("verdict.json");
    if !verdict.is_file() {
        return Err(format!(
            "{} has no verdict.json: is it a run directory?",
            run_dir.display()
        ));
    }
    let report = RunReport::read_json(&verdict).map_err(|e| e.to_string())?;
    render::write_all(run_dir, &report).map_err(|e| e.to_string())
}
