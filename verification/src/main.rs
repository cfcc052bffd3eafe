//! `verify`: the main command. Provisions what it uses, runs a property smoke, a short goose
//! run and a short chaos experiment against the reference (or, with `--target`, a system of
//! yours), and writes one run directory with every suite's run inside and one merged report
//! that opens with the seed's claims ledger.

mod merge;
mod stage;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use clap::Parser;
use harness::run::{exit_code, print_report, RunDir};
use reports::{ClaimVerdict, RunReport};
use serde_json::json;
use stage::{Outcome, Stage};

/// Verifies an "HTTP API publishes to RabbitMQ, workers consume" system end to end: property
/// smoke (idempotency, exactly-once credits under worker kills, the task lifecycle), a short
/// goose run of the seed's traffic held to its thresholds, and a chaos experiment (workers
/// killed under load). One run directory holds each suite's run and the merged report
/// (verdict.json, report.md, junit.xml, report.html), which opens with the seed's claims.
///
/// Run it through `./verify`, which builds it and the suites first.
///
/// Exit status: 0 when every stage passed, 1 when one failed, 2 when one could not decide,
/// 3 when the verification itself could not be made.
#[derive(Parser)]
#[command(name = "verify", version)]
struct Cli {
    /// A running system that speaks the contract (loopback, unless --allow-remote), instead of
    /// the reference the harness starts. Chaos faults need processes and links the harness
    /// owns, so that stage is skipped; the properties run as a fault-free harness experiment.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the system's AMQP prefix (its queues and dead letters are read through
    /// AMQP_URL).
    #[arg(long, default_value = "reference", requires = "target")]
    prefix: String,
    /// With --target: allow a system off this machine (one you are allowed to load).
    #[arg(long, requires = "target")]
    allow_remote: bool,
    /// Directory the run directory is created in [default: HARNESS_RUNS_DIR, else target/harness/runs].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Cases per property in the smoke [default: each property's own `cargo test` count, 5 to
    /// 8: fewer may not reach the interleavings a property asserts it covered].
    #[arg(long)]
    cases: Option<u32>,
    /// How long the goose run lasts.
    #[arg(long, default_value = "15s")]
    load_time: String,
    /// The chaos experiment (`chaos list`).
    #[arg(long, default_value = "worker-kill")]
    experiment: String,
    /// The strategy of chaos/matrix.json the chaos experiment runs against: a naive one (e.g.
    /// `ack-auto`) shows what a failing verification looks like.
    #[arg(long, default_value = "robust")]
    strategy: String,
    /// Do not install or start services (they run already, or AMQP_URL points elsewhere).
    #[arg(long)]
    no_provision: bool,
    /// An earlier run directory whose figures also judge the seed's claims (repeatable), e.g.
    /// a `loadtests seed-table` run or a `chaos matrix` run: the ledger uses them, the verdict
    /// does not.
    #[arg(long, value_name = "RUN_DIR")]
    evidence: Vec<PathBuf>,
}

/// The properties of the smoke: each a fast, strong one of the scenarios.
const PROPERTIES: [&str; 3] = [
    "each_key_makes_one_task_and_replays_its_first_answer",
    "credits_apply_exactly_once_under_redelivery_and_worker_kills",
    "tasks_follow_the_lifecycle_model",
];

/// The seed's traffic: reads mostly cached, writes, submissions, balances, end-to-end tasks.
const MIX: &str = "cached=50,after-write=5,list=5,create=5,submit=15,balance=10,e2e=5";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate in a workspace")
        .to_path_buf()
}

/// A suite binary of the same build as this one.
fn sibling(name: &str) -> Command {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let path = dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
    let mut cmd = Command::new(path);
    cmd.current_dir(workspace());
    // The suites start the reference binary of this build.
    if let Some(d) = dir {
        cmd.env("REFERENCE_BIN", d.join("reference"));
    }
    cmd
}

fn provision() -> Stage {
    let mut command = Command::new(workspace().join("scripts/services.sh"));
    // The stages use RabbitMQ only: the reference's defaults keep their store in SQLite and
    // their cache in process.
    command.arg("rabbitmq");
    Stage {
        name: "provision",
        what: "RabbitMQ installed and running".into(),
        command,
    }
}

fn properties(cli: &Cli, run: &Path) -> Stage {
    let base = run.join("properties");
    let mut command = if let Some(target) = &cli.target {
        let mut cmd = sibling("harness");
        cmd.args(["run", "--out"]).arg(&base);
        cmd.arg(target_experiment(cli, target, run));
        cmd
    } else {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace())
            .args([
                "test",
                "-q",
                "-p",
                "scenarios",
                "--test",
                "properties",
                "--",
            ])
            .args(PROPERTIES);
        if let Some(cases) = cli.cases {
            cmd.env("PROPTEST_CASES", cases.to_string());
        }
        cmd
    };
    command.env("HARNESS_RUNS_DIR", &base);
    Stage {
        name: "properties",
        what: match &cli.target {
            Some(t) => format!("workload and checkers against {t}"),
            None => match cli.cases {
                Some(n) => format!("{} properties, {n} cases each", PROPERTIES.len()),
                None => format!("{} properties", PROPERTIES.len()),
            },
        },
        command,
    }
}

/// A fault-free harness experiment against `target`: the workload, then every checker.
fn target_experiment(cli: &Cli, target: &str, run: &Path) -> PathBuf {
    let path = run.join("target-experiment.json");
    let experiment = json!({
        "name": "target-smoke",
        "title": "The workload against a system of yours, judged by every checker",
        "external": {"base_url": target, "prefix": cli.prefix},
    });
    std::fs::write(&path, experiment.to_string()).expect("run directory is writable");
    path
}

fn load(cli: &Cli, run: &Path) -> Stage {
    let mut command = sibling("loadtests");
    command
        .args(["run", "--no-print-metrics", "--run-time", &cli.load_time])
        .args(["--mix", MIX, "--out"])
        .arg(run.join("load"));
    if let Some(target) = &cli.target {
        command.args(["--host", target, "--wait", "poll"]);
        if cli.allow_remote {
            command.arg("--allow-remote");
        }
    }
    Stage {
        name: "load",
        what: format!("goose, the seed's traffic for {}", cli.load_time),
        command,
    }
}

fn chaos(cli: &Cli, run: &Path) -> Stage {
    let mut command = sibling("chaos");
    command
        .args(["run", &cli.experiment, "--strategy", &cli.strategy, "--out"])
        .arg(run.join("chaos"));
    Stage {
        name: "chaos",
        what: format!(
            "experiment {} against strategy {}",
            cli.experiment, cli.strategy
        ),
        command,
    }
}

/// Runs the stages in order; a failed provisioning stops the rest (nothing could run).
fn run_stages(cli: &Cli, run: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let total = 4;
    if cli.no_provision {
        outcomes.push(Outcome::skipped("provision", "--no-provision"));
    } else {
        let outcome = stage::run(provision(), 1, total, run);
        let failed = outcome.exit != stage::Exit::Status(0);
        outcomes.push(outcome);
        if failed {
            return outcomes;
        }
    }
    outcomes.push(stage::run(properties(cli, run), 2, total, run));
    outcomes.push(stage::run(load(cli, run), 3, total, run));
    outcomes.push(match cli.target {
        Some(_) => Outcome::skipped(
            "chaos",
            "faults need the processes and links the harness starts",
        ),
        None => stage::run(chaos(cli, run), 4, total, run),
    });
    outcomes
}

/// The reports of `--evidence`, read before anything runs so that a wrong path fails fast.
fn evidence(cli: &Cli) -> anyhow::Result<Vec<RunReport>> {
    cli.evidence
        .iter()
        .map(|d| Ok(RunReport::read_json(&d.join("verdict.json"))?))
        .collect()
}

fn report(cli: &Cli, dir: &RunDir, outcomes: &[Outcome], evidence: &[RunReport]) -> RunReport {
    let mut runs = Vec::new();
    let mut verdicts = Vec::new();
    for outcome in outcomes {
        let (base, expects) = match outcome.name {
            "provision" => ("", false),
            name => (name, true),
        };
        let mine = if base.is_empty() {
            Vec::new()
        } else {
            merge::collect(dir.path(), base)
        };
        verdicts.extend(merge::stage_verdict(outcome, &mine, expects, dir.path()));
        runs.extend(mine);
    }
    let skipped: BTreeMap<&str, String> = outcomes
        .iter()
        .filter_map(|o| match &o.exit {
            stage::Exit::Skipped(why) => Some((o.name, why.clone())),
            _ => None,
        })
        .collect();
    let sut = BTreeMap::from([(
        "target".to_string(),
        cli.target
            .clone()
            .unwrap_or_else(|| "the reference, started by the harness".into()),
    )]);
    let parameters = BTreeMap::from([
        ("cases".to_string(), json!(cli.cases)),
        ("load_time".to_string(), json!(cli.load_time)),
        ("experiment".to_string(), json!(cli.experiment)),
        ("strategy".to_string(), json!(cli.strategy)),
        ("skipped".to_string(), json!(skipped)),
        ("evidence".to_string(), json!(cli.evidence)),
    ]);
    merge::merge(
        dir.report("verify", sut, parameters, verdicts),
        runs,
        evidence,
    )
}

fn print_claims(report: &RunReport) {
    println!("the seed's claims:");
    for c in &report.claims {
        let verdict = match c.verdict {
            ClaimVerdict::Confirmed => "confirmed",
            ClaimVerdict::Refuted => "REFUTED",
            ClaimVerdict::NotYetTested => "not yet tested",
        };
        println!("  {:<32} {verdict:<15} {}", c.id, c.evidence);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    harness::init_cli_tracing("warn");
    let evidence = match evidence(&cli) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --evidence: {e:#}");
            return ExitCode::from(3);
        }
    };
    let dir = match RunDir::create(cli.out.as_deref(), "verify") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create the run directory: {e}");
            return ExitCode::from(3);
        }
    };
    println!("verify: run directory {}", dir.path().display());
    let outcomes = run_stages(&cli, dir.path());
    let mut report = report(&cli, &dir, &outcomes, &evidence);
    if let Err(e) = dir.write_report(&mut report) {
        eprintln!("error: {e}");
        return ExitCode::from(3);
    }
    print_report(&report);
    print_claims(&report);
    println!("report: {}", dir.file("report.html").display());
    exit_code(&report)
}
