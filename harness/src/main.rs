//! `harness`: run an experiment against the reference system, or re-check a finished run.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use harness::{
    checker,
    experiment::{self, Experiment},
    final_state::FinalState,
    history::History,
    infra::{Broker, BrokerChoice},
    run::{self, exit_code, RunDir},
};
use reports::RunReport;

/// Test bed for API + RabbitMQ worker systems: starts the reference system against a broker,
/// drives a seeded workload beside a fault schedule, reads the final state, checks it, and
/// writes a run directory with history, logs and verdict.json.
///
/// Exit status: 0 when every verdict is valid, 1 when one is invalid, 2 when undecided, 3 when
/// the run could not be made (bad experiment file, no broker, a process that would not start).
#[derive(Parser)]
#[command(name = "harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment: a JSON file (see `Experiment` in the docs), `-` for stdin, or defaults.
    Run {
        /// Experiment file; every field is optional.
        file: Option<PathBuf>,
        /// Directory the run directory is created in [default: HARNESS_RUNS_DIR, else target/harness/runs].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Broker: auto (AMQP_URL, else a private node, else a container) | node | cluster |
        /// container [default: the experiment's `broker`].
        #[arg(long, value_enum)]
        broker: Option<BrokerChoice>,
        /// Overrides the experiment's name.
        #[arg(long)]
        name: Option<String>,
        /// Overrides the workload seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Overrides the number of operations.
        #[arg(long)]
        ops: Option<u64>,
    },
    /// Re-run the checkers over a run directory's history and final state, updating its verdict.
    Check {
        /// The run directory (e.g. target/harness/runs/latest).
        run_dir: PathBuf,
    },
}

fn load_experiment(file: Option<&PathBuf>) -> anyhow::Result<Experiment> {
    Ok(match file {
        None => Experiment::default(),
        Some(p) if p.as_os_str() == "-" => {
            Experiment::parse(&std::io::read_to_string(std::io::stdin())?, "stdin")?
        }
        Some(p) => Experiment::load(p)?,
    })
}

fn print_report(report: &RunReport, dir: &std::path::Path) {
    run::print_report(report);
    println!("verdict: {}", dir.join("verdict.json").display());
}

async fn run(
    file: Option<PathBuf>,
    out: Option<PathBuf>,
    choice: Option<BrokerChoice>,
    name: Option<String>,
    seed: Option<u64>,
    ops: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let mut exp = load_experiment(file.as_ref())?;
    exp.name = name.unwrap_or(exp.name);
    exp.seed = seed.unwrap_or(exp.seed);
    exp.ops = ops.unwrap_or(exp.ops);
    let dir = RunDir::create(out.as_deref(), &exp.name)?;
    eprintln!("run directory: {}", dir.path().display());
    let broker = Broker::provision(
        choice.unwrap_or(exp.broker),
        &dir.file("broker"),
        &exp.broker_config,
    )
    .await?;
    // Ctrl-C stops the method; the rollbacks and the teardown still run.
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("interrupted: rolling back and stopping everything (Ctrl-C again to abandon)");
    };
    let report = experiment::execute_until(&exp, &broker, &dir, interrupt).await?;
    print_report(&report, dir.path());
    Ok(exit_code(&report))
}

fn check(run_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let exp = Experiment::load(&run_dir.join("experiment.json"))?;
    let ops = History::load(&run_dir.join("history.jsonl"))?;
    let state: FinalState =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("final.json"))?)?;
    let mut report = RunReport::read_json(&run_dir.join("verdict.json"))?;
    // The contract's verdict was made from the answers as they came: it is kept.
    let contract = report
        .verdicts
        .iter()
        .find(|v| v.checker == "contract")
        .cloned();
    report.verdicts = checker::check_all(&exp.checkers(), &ops, &state);
    report.verdicts.extend(contract);
    report.seal();
    report.write_json(&run_dir.join("verdict.json"))?;
    print_report(&report, &run_dir);
    Ok(exit_code(&report))
}

#[tokio::main]
async fn main() -> ExitCode {
    harness::init_cli_tracing("info");
    let result = match Cli::parse().command {
        Command::Run {
            file,
            out,
            broker,
            name,
            seed,
            ops,
        } => run(file, out, broker, name, seed, ops).await,
        Command::Check { run_dir } => check(run_dir),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(3)
    })
}
