//! `loadtests gate`: two configurations of the reference side by side in one run, the way a
//! team checks a change before a release: baseline and candidate alternate for `--rounds`,
//! each side's median round is compared, and the gate fails beyond the tolerance.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{load::LoadStep, LoadReport, RunReport};

use crate::{
    attack::Step,
    gate::{self, ToleranceArgs},
    session::{summary_line, Common, Session},
    workload::Mix,
};

#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub common: Common,

    /// Reference flags of the baseline side (added to --sut-args).
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "",
        help_heading = "Regression gate"
    )]
    pub baseline_args: String,

    /// Reference flags of the candidate side (added to --sut-args), e.g. "--cache off".
    #[arg(long, allow_hyphen_values = true, help_heading = "Regression gate")]
    pub candidate_args: String,

    /// Rounds of baseline then candidate; each side is judged by its median round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9), help_heading = "Regression gate")]
    pub rounds: u32,

    /// Transaction weights: cached, after-write, list, create, submit, balance, e2e.
    #[arg(long, default_value_t = Mix::SEED, help_heading = "Workload")]
    pub mix: Mix,

    #[command(flatten)]
    pub tolerance: ToleranceArgs,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

const USERS: usize = 32;
const RUN_TIME: Duration = Duration::from_secs(15);

fn split(flags: &str) -> Vec<String> {
    flags.split_whitespace().map(str::to_string).collect()
}

/// The round with the median throughput.
fn median(mut rounds: Vec<LoadStep>) -> LoadStep {
    rounds.sort_by(|a, b| a.aggregate.rps.total_cmp(&b.aggregate.rps));
    rounds.swap_remove(rounds.len() / 2)
}

pub async fn run(args: GateArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(
        args.goose.host.is_none(),
        "gate starts both configurations of the reference; to gate another system, use \
         `loadtests run --host URL --baseline FILE`"
    );
    let mut session = Session::start("load-gate", args.common.clone(), args.goose.clone()).await?;
    let sides = [
        ("baseline", split(&args.baseline_args)),
        ("candidate", split(&args.candidate_args)),
    ];
    let mut measured: [Vec<LoadStep>; 2] = [Vec::new(), Vec::new()];
    let mut steps = Vec::new();
    for round in 1..=args.rounds {
        for (i, (side, flags)) in sides.iter().enumerate() {
            let spec = session.spec(flags);
            let loaded = session.load(&spec).await?;
            let step = Step {
                label: format!("{side} round {round} ({})", spec.args.join(" ")),
                stem: format!("{side}-{round}"),
                users: USERS,
                run_time: RUN_TIME,
                rate: None,
                thresholds: vec!["p99<1000ms".into()],
                abort_on_threshold: false,
                print: false,
                max_requests: None,
            };
            eprintln!("load: {}", step.label);
            let result = session
                .runner()
                .run(&loaded.workload, args.mix, &step, &loaded.target.sut_args)
                .await;
            loaded.stop().await;
            let result = result?;
            eprintln!("  {}", summary_line(&result));
            measured[i].push(result.clone());
            steps.push(result);
        }
    }
    let [base, cand] = measured;
    let name = |side: usize| {
        format!(
            "{} ({})",
            sides[side].0,
            session.spec(&sides[side].1).args.join(" ")
        )
    };
    let g = gate::compare(
        &name(0),
        &median(base),
        &name(1),
        &median(cand),
        args.tolerance.tolerance(),
    );
    gate::print(&g);
    let verdicts = vec![gate::verdict(&g)];
    let load = LoadReport {
        profile: "gate".into(),
        steps,
        gate: Some(g),
        ..Default::default()
    };
    let parameters = BTreeMap::from([
        ("mix".to_string(), serde_json::json!(args.mix.to_string())),
        ("rounds".to_string(), serde_json::json!(args.rounds)),
    ]);
    session.finish(parameters, verdicts, load, true)
}
