//! `loadtests`: goose load runs against the reference (started through the harness) or any
//! system that speaks the contract (`--host`).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use harness::run::{exit_code, print_report};
use loadtests::profiles::{ab, capacity, compare, e2e, run, seed_table, soak};
use reports::RunReport;

/// Load tests of API + RabbitMQ worker systems, with goose.
///
/// Each profile starts the reference through the harness (its fault-proxy links off), or
/// drives the system at --host (loopback only, unless --allow-remote; its token from
/// LOADTESTS_TOKEN), and writes goose's HTML/Markdown/JSON reports and verdict.json into a run
/// directory (target/harness/runs/<time>-load-<profile>/). Every goose flag applies to each
/// load step (users, run time, throttle, thresholds, reports); every run carries an
/// error-rate threshold, and is bounded by --max-requests and a run time.
///
/// Closed loop: users send their next request when the last answered (goose's default).
/// Fixed rate: --throttle-requests (capacity, e2e), with coordinated-omission mitigation, so a
/// stalled server cannot hide its stall.
///
/// Exit status: 0 when every verdict is valid, 1 when one is invalid (a threshold, the
/// regression gate, no capacity), 2 when undecided, 3 when the run could not be made.
#[derive(Parser)]
#[command(name = "loadtests")]
struct Cli {
    #[command(subcommand)]
    profile: Profile,
}

#[derive(Subcommand)]
enum Profile {
    /// One run of a transaction mix (default: the seed's traffic); --baseline gates it.
    Run(Box<run::RunArgs>),
    /// The seed's optimisation table (chapter 2.5), one row per step of its ladder.
    SeedTable(Box<seed_table::SeedTableArgs>),
    /// Step load up to the SLO: the knee, the curve, the backlog and its drain.
    Capacity(Box<capacity::CapacityArgs>),
    /// End-to-end task latency (submit → SUCCESS) at a fixed rate.
    E2e(Box<e2e::E2eArgs>),
    /// Ratios against comparators: a bare axum handler, a raw lapin publisher + consumer.
    Compare(Box<compare::CompareArgs>),
    /// Regression gate: a candidate configuration against a baseline, side by side.
    Gate(Box<ab::GateArgs>),
    /// A long run at a fixed rate: memory, store and logs must stop growing once retention applies.
    Soak(Box<soak::SoakArgs>),
    /// Serve the bare comparator handler (started by `compare`).
    #[command(hide = true)]
    ServeBare {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        body_file: PathBuf,
    },
}

async fn dispatch(profile: Profile) -> anyhow::Result<Option<RunReport>> {
    let report = match profile {
        Profile::Run(a) => run::run(*a).await?,
        Profile::SeedTable(a) => seed_table::run(*a).await?,
        Profile::Capacity(a) => capacity::run(*a).await?,
        Profile::E2e(a) => e2e::run(*a).await?,
        Profile::Compare(a) => compare::run(*a).await?,
        Profile::Gate(a) => ab::run(*a).await?,
        Profile::Soak(a) => soak::run(*a).await?,
        Profile::ServeBare { addr, body_file } => {
            loadtests::comparators::bare::serve(addr, &body_file).await?;
            return Ok(None);
        }
    };
    Ok(Some(report))
}

#[tokio::main]
async fn main() -> ExitCode {
    harness::init_cli_tracing("warn");
    match dispatch(Cli::parse().profile).await {
        Ok(Some(report)) => {
            print_report(&report);
            exit_code(&report)
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}
