//! One stage of the verification: a suite's command run as a child process, its output kept in
//! the run's `logs/`, with a spinner showing what runs and for how long.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The command's exit status (0 passed; the suites use 1 invalid, 2 undecided, 3 not run).
    Status(i32),
    /// Killed by a signal, or could not be started.
    Abnormal(String),
    /// Not run, and why.
    Skipped(String),
}

/// A stage's command and where its output goes.
pub struct Stage {
    /// Short name: `provision`, `properties`, `load`, `chaos`.
    pub name: &'static str,
    /// What it does, for the progress line.
    pub what: String,
    pub command: Command,
}

/// What one stage did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: &'static str,
    pub exit: Exit,
    pub elapsed: Duration,
    /// The stage's output, relative to the run directory.
    pub log: PathBuf,
}

impl Outcome {
    pub fn skipped(name: &'static str, why: &str) -> Outcome {
        Outcome {
            name,
            exit: Exit::Skipped(why.to_string()),
            elapsed: Duration::ZERO,
            log: PathBuf::new(),
        }
    }
}

fn spinner(position: usize, total: usize, stage: &Stage) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{prefix}] {msg} ({elapsed})")
            .expect("static template"),
    );
    bar.set_prefix(format!("{position}/{total} {}", stage.name));
    bar.set_message(stage.what.clone());
    bar.enable_steady_tick(Duration::from_millis(200));
    // Off a terminal (CI logs) the spinner is hidden: say what starts instead.
    if bar.is_hidden() {
        eprintln!("[{}] {} ...", bar.prefix(), stage.what);
    }
    bar
}

/// Runs `stage`, its output into `run/logs/<name>.log`, and reports how it ended.
pub fn run(mut stage: Stage, position: usize, total: usize, run: &Path) -> Outcome {
    let log = PathBuf::from("logs").join(format!("{}.log", stage.name));
    let bar = spinner(position, total, &stage);
    let began = Instant::now();
    let exit = match spawn(&mut stage.command, &run.join(&log)) {
        Ok(status) => match status.code() {
            Some(code) => Exit::Status(code),
            None => Exit::Abnormal(format!("{status}")),
        },
        Err(e) => Exit::Abnormal(format!("could not start: {e}")),
    };
    let mark = if exit == Exit::Status(0) {
        "✓"
    } else {
        "✗"
    };
    let done = format!("{} {mark} {}", stage.what, describe(&exit));
    if bar.is_hidden() {
        eprintln!(
            "[{}] {done} ({:.0} s)",
            bar.prefix(),
            began.elapsed().as_secs_f64()
        );
    }
    bar.finish_with_message(done);
    Outcome {
        name: stage.name,
        exit,
        elapsed: began.elapsed(),
        log,
    }
}

fn spawn(command: &mut Command, log: &Path) -> std::io::Result<std::process::ExitStatus> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status()
}

pub fn describe(exit: &Exit) -> String {
    match exit {
        Exit::Status(0) => "passed".into(),
        Exit::Status(1) => "failed (exit status 1)".into(),
        Exit::Status(2) => "undecided (exit status 2)".into(),
        Exit::Status(n) => format!("did not run through (exit status {n})"),
        Exit::Abnormal(why) => why.clone(),
        Exit::Skipped(why) => format!("skipped: {why}"),
    }
}

/// The last lines of a stage's log, for a failure's message.
pub fn tail(run: &Path, outcome: &Outcome, lines: usize) -> String {
    let text = std::fs::read_to_string(run.join(&outcome.log)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
