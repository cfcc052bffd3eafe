//! `loadtests run`: one goose run of a transaction mix, held to its thresholds and, when a
//! baseline is named, to the regression gate.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{LoadReport, RunReport};

use crate::{
    attack::Step,
    gate::{self, ToleranceArgs},
    session::{summary_line, Common, Session},
    workload::Mix,
};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,

    /// Transaction weights: cached, after-write, list, create, submit, balance, e2e.
    #[arg(long, default_value_t = Mix::SEED, help_heading = "Workload")]
    pub mix: Mix,

    /// Gate this run against the baseline stored in FILE (e.g. loadtests/baselines/smoke.json).
    #[arg(long, value_name = "FILE", help_heading = "Regression gate")]
    pub baseline: Option<PathBuf>,

    /// Store this run as the baseline in --baseline's FILE instead of gating against it.
    #[arg(long, requires = "baseline", help_heading = "Regression gate")]
    pub update_baseline: bool,

    #[command(flatten)]
    pub tolerance: ToleranceArgs,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

/// Users and seconds when goose's flags do not say.
const USERS: usize = 32;
const RUN_TIME: Duration = Duration::from_secs(20);

pub async fn run(args: RunArgs) -> anyhow::Result<RunReport> {
    let mut session = Session::start("load-run", args.common.clone(), args.goose.clone()).await?;
    let spec = session.spec(&[]);
    let loaded = session.load(&spec).await?;
    let step = Step {
        label: format!("run ({})", args.mix),
        stem: "run".into(),
        users: USERS,
        run_time: RUN_TIME,
        rate: None,
        thresholds: vec!["p99<1000ms".into()],
        abort_on_threshold: true,
        print: true,
        max_requests: None,
    };
    eprintln!("load: {}", step.label);
    let result = session
        .runner()
        .run(&loaded.workload, args.mix, &step, &loaded.target.sut_args)
        .await;
    loaded.stop().await;
    let measured = result?;
    eprintln!("{}", summary_line(&measured));

    let mut verdicts = Vec::new();
    let mut load = LoadReport {
        profile: "mixed".into(),
        ..Default::default()
    };
    if let Some(path) = &args.baseline {
        if args.update_baseline {
            gate::write(
                path,
                &measured,
                &format!("loadtests run --mix {}", args.mix),
            )?;
            eprintln!("baseline written: {}", path.display());
        } else {
            let baseline = gate::read(path)?;
            let g = gate::compare(
                &path.display().to_string(),
                &baseline,
                "this run",
                &measured,
                args.tolerance.tolerance(),
            );
            gate::print(&g);
            verdicts.push(gate::verdict(&g));
            load.gate = Some(g);
        }
    }
    load.steps.push(measured);
    let parameters = BTreeMap::from([("mix".to_string(), serde_json::json!(args.mix.to_string()))]);
    session.finish(parameters, verdicts, load, true)
}
