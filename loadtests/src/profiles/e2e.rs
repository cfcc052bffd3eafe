//! `loadtests e2e`: end-to-end task latency, submit → SUCCESS, at a fixed rate of tasks, read
//! from the system's events (or polled), recorded as goose's `TASK submit-to-success` row.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{LoadReport, RunReport};

use crate::{
    attack::Step,
    session::{summary_line, Common, Session},
    workload::{row, Mix},
};

#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub common: Common,

    /// Tasks submitted per second (a fixed arrival rate).
    #[arg(long, default_value_t = 100, help_heading = "Workload")]
    pub rate: usize,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

const RUN_TIME: Duration = Duration::from_secs(20);

pub async fn run(args: E2eArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(args.rate > 0, "--rate must be above 0");
    let mut session = Session::start("load-e2e", args.common.clone(), args.goose.clone()).await?;
    let spec = session.spec(&[]);
    let loaded = session.load(&spec).await?;
    let step = Step {
        label: format!("end-to-end tasks @ {} tasks/s", args.rate),
        stem: "e2e".into(),
        users: (args.rate / 2).clamp(16, 2048),
        run_time: RUN_TIME,
        rate: Some(args.rate),
        thresholds: vec![format!("p99<2000ms for {}", row::task())],
        abort_on_threshold: true,
        print: true,
        max_requests: None,
    };
    eprintln!("load: {}", step.label);
    let result = session
        .runner()
        .run(
            &loaded.workload,
            Mix::TASKS_ONLY,
            &step,
            &loaded.target.sut_args,
        )
        .await;
    loaded.stop().await;
    let measured = result?;
    eprintln!("{}", summary_line(&measured));
    let load = LoadReport {
        profile: "e2e".into(),
        steps: vec![measured],
        ..Default::default()
    };
    let parameters = BTreeMap::from([("rate".to_string(), serde_json::json!(args.rate))]);
    session.finish(parameters, Vec::new(), load, true)
}
