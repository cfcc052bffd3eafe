//! `chaos`: the catalogue of fault experiments, the chaos week and the strategy × fault matrix.

use std::{path::PathBuf, process::ExitCode};

use chaos::{
    catalogue::{self, Catalogue, Entry},
    matrix::{Cell, Matrix, ROBUST},
    recovery, suite, week,
};
use clap::{Args, Parser, Subcommand};
use harness::{
    experiment::Experiment,
    infra::BrokerChoice,
    run::{exit_code, print_report},
};
use tokio_util::sync::CancellationToken;

/// Chaos experiments against the reference (or any system that speaks the contract, through an
/// experiment's `external`): each under load, judged by the harness's checkers and its
/// steady-state probes, each in its own run directory inside the suite's.
///
/// A cell is an experiment against a strategy of the reference (`chaos/matrix.json`): the
/// robust defaults must come out valid; a naive strategy must show the deviation predicted for
/// it. Faults only touch the run's own private broker nodes, proxies and processes; Ctrl-C
/// rolls the running experiment back and stops everything it started.
///
/// Exit status: 0 when every cell came out as predicted, 1 when one did not, 2 when one could
/// not decide or the run was interrupted, 3 when the run could not be made.
#[derive(Parser)]
#[command(name = "chaos", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The catalogue's directory.
    #[arg(long, global = true, default_value_os_t = catalogue::default_dir())]
    catalogue: PathBuf,
    /// The strategies and predictions.
    #[arg(long, global = true, default_value_os_t = default_matrix())]
    matrix: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// List the catalogue: name, broker, faults, title.
    List,
    /// Run experiments by name against one strategy (default: robust).
    Run {
        /// Experiment names (`chaos list`); `--all` for the whole catalogue.
        names: Vec<String>,
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// The strategy of `chaos/matrix.json` to run them against.
        #[arg(long, default_value = ROBUST)]
        strategy: String,
        #[command(flatten)]
        common: Common,
    },
    /// One day of the chaos week: that day's slice of the catalogue against the robust
    /// defaults, plus every prediction about those experiments; seeded by the date.
    Day {
        /// 1 (Monday) to 7 [default: today, UTC].
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=7))]
        day: Option<u8>,
        #[command(flatten)]
        common: Common,
    },
    /// The strategy × fault matrix: the robust column and every prediction (or, with `--all`,
    /// every strategy against every experiment named, or the whole catalogue).
    Matrix {
        /// Experiments to include [default: those the predictions name].
        names: Vec<String>,
        /// Every strategy against every experiment, not only the predicted cells.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Print the recovery table of a finished chaos run.
    Recovery {
        /// The suite's run directory (e.g. target/harness/runs/latest).
        run_dir: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Directory the run directory is created in [default: HARNESS_RUNS_DIR, else target/harness/runs].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed for every experiment [default: each experiment's own; for `day`, the date's].
    #[arg(long)]
    seed: Option<u64>,
    /// Broker for every experiment [default: each experiment's `broker`].
    #[arg(long, value_enum)]
    broker: Option<BrokerChoice>,
}

impl Common {
    fn options(&self) -> suite::Options {
        suite::Options {
            out: self.out.clone(),
            seed: self.seed,
            broker: self.broker,
        }
    }
}

fn default_matrix() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("matrix.json")
}

fn names(catalogue: &Catalogue) -> Vec<String> {
    catalogue.entries.iter().map(|e| e.name.clone()).collect()
}

fn experiments<'a>(entries: &[&'a Entry]) -> Vec<&'a Experiment> {
    entries.iter().map(|e| &e.experiment).collect()
}

fn list(catalogue: &Catalogue) {
    for e in &catalogue.entries {
        let x = &e.experiment;
        let faults: Vec<String> = x
            .faults
            .iter()
            .map(|s| format!("{}({})", s.fault.kind(), s.fault.target()))
            .collect();
        println!(
            "{:<30} {:<8} {:<48} {}",
            e.name,
            format!("{:?}", x.broker).to_lowercase(),
            if faults.is_empty() {
                "-".into()
            } else {
                faults.join(" ")
            },
            x.title()
        );
    }
    println!("{} experiments", catalogue.entries.len());
}

/// The cells a command runs.
fn plan(
    command: &Command,
    catalogue: &Catalogue,
    matrix: &Matrix,
) -> anyhow::Result<(String, Vec<Cell>, Option<u64>)> {
    Ok(match command {
        Command::Run {
            names,
            all,
            strategy,
            ..
        } => {
            let entries = if *all {
                catalogue.entries.iter().collect()
            } else {
                catalogue.select(names)?
            };
            if entries.is_empty() {
                anyhow::bail!("name experiments to run (`chaos list`), or --all");
            }
            let s = matrix
                .strategy(strategy)
                .ok_or_else(|| anyhow::anyhow!("no strategy `{strategy}` in the matrix file"))?;
            let cells = matrix
                .all_cells(&experiments(&entries))
                .into_iter()
                .filter(|c| c.strategy.name == s.name)
                .collect();
            (format!("chaos-run-{strategy}"), cells, None)
        }
        Command::Day { day, .. } => {
            let day = day.unwrap_or_else(week::today);
            let entries = week::slice(catalogue, day);
            let seed = week::seed_of(time::OffsetDateTime::now_utc().date());
            (
                format!("chaos-day-{day}"),
                matrix.predicted_cells(&experiments(&entries)),
                Some(seed),
            )
        }
        Command::Matrix { names, all, .. } => {
            let entries = if names.is_empty() && *all {
                catalogue.entries.iter().collect()
            } else if names.is_empty() {
                let predicted: Vec<String> = matrix
                    .predictions
                    .iter()
                    .map(|p| p.experiment.clone())
                    .collect();
                catalogue
                    .entries
                    .iter()
                    .filter(|e| predicted.contains(&e.name))
                    .collect()
            } else {
                catalogue.select(names)?
            };
            let cells = if *all {
                matrix.all_cells(&experiments(&entries))
            } else {
                matrix.predicted_cells(&experiments(&entries))
            };
            ("chaos-matrix".into(), cells, None)
        }
        Command::List | Command::Recovery { .. } => unreachable!("no cells"),
    })
}

fn common(command: &Command) -> Common {
    match command {
        Command::Run { common, .. }
        | Command::Day { common, .. }
        | Command::Matrix { common, .. } => common.clone(),
        Command::List | Command::Recovery { .. } => unreachable!("no run"),
    }
}

async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let catalogue = Catalogue::load(&cli.catalogue)?;
    match &cli.command {
        Command::List => {
            list(&catalogue);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Recovery { run_dir } => {
            let report = reports::RunReport::read_json(&run_dir.join("verdict.json"))?;
            let cells = report.matrix.map(|m| m.cells).unwrap_or_default();
            print!("{}", recovery::table(&cells));
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let matrix = Matrix::load(&cli.matrix, &names(&catalogue))?;
    let (name, cells, day_seed) = plan(&cli.command, &catalogue, &matrix)?;
    let mut options = common(&cli.command).options();
    options.seed = options.seed.or(day_seed);
    if let Some(seed) = options.seed {
        eprintln!("chaos: seed {seed} (replay with --seed {seed})");
    }
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: rolling back the running experiment and stopping everything");
            on_signal.cancel();
        }
    });
    let (report, dir) = suite::run(&name, cells, &options, cancel).await?;
    println!(
        "{}",
        recovery::table(
            &report
                .matrix
                .as_ref()
                .map(|m| m.cells.clone())
                .unwrap_or_default()
        )
    );
    print_report(&report);
    println!(
        "verdict: {:?}; report: {}",
        report.validity,
        dir.file("verdict.json").display()
    );
    Ok(exit_code(&report))
}

#[tokio::main]
async fn main() -> ExitCode {
    harness::init_cli_tracing("warn,faultproxy=error,lapin=off");
    execute(Cli::parse()).await.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(3)
    })
}
