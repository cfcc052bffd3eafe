//! Whole experiments: workload, faults, final read, checkers, run directory; against the
//! reference with each kind of backend and broker fault, against an external system, and
//! through the `harness` binary.

use std::{sync::Arc, time::Duration};

use harness::{
    experiment::{self, Experiment},
    infra::{rabbit, Broker},
    nemesis::{Fault, Step},
    run::RunDir,
    sut::{External, ReferenceSut, Store, SutConfig},
    workload::Mix,
};
use reports::{RunReport, Validity};

use crate::support::{amqp_url, backends, init_tracing, runs_dir};

fn print(report: &RunReport) {
    for v in &report.verdicts {
        println!("{:<14} {:?} {}", v.checker, v.validity, v.summary);
    }
}

/// Asserts the named checkers are valid.
fn assert_valid(report: &RunReport, checkers: &[&str]) {
    print(report);
    for name in checkers {
        let v = report
            .verdicts
            .iter()
            .find(|v| v.checker == *name)
            .unwrap_or_else(|| panic!("no verdict {name}"));
        assert_eq!(v.validity, Validity::Valid, "{v:?}");
    }
}

async fn run(exp: &Experiment, broker: &Broker) -> (RunReport, RunDir) {
    init_tracing();
    let dir = RunDir::create(Some(&runs_dir()), &exp.name).unwrap();
    let report = experiment::execute(exp, broker, &dir).await.unwrap();
    (report, dir)
}

const CORRECTNESS: [&str; 5] = [
    "task-ledger",
    "idempotency",
    "bank",
    "dead-letters",
    "queue-residue",
];

/// A whole experiment: workload, a worker killed and a link slowed mid-run, final read,
/// checkers, run directory. The robust defaults come out valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_runs_end_to_end_and_writes_its_run_directory() {
    init_tracing();
    let exp = Experiment {
        name: "it-kill-worker".into(),
        // Paced so the workload outlasts the faults and shows the recovery.
        ops: 200,
        rate: Some(60.0),
        concurrency: 4,
        mix: harness::workload::Mix {
            poison: 1,
            reuse_rate: 0.05,
            ..Default::default()
        },
        faults: vec![
            Step {
                at: Duration::from_millis(500),
                hold: Duration::from_millis(800),
                fault: Fault::Kill {
                    process: "worker-0".into(),
                },
            },
            Step {
                at: Duration::from_millis(300),
                hold: Duration::from_secs(1),
                fault: Fault::Latency {
                    link: "worker-1-broker".into(),
                    ms: 100,
                    jitter_ms: 0,
                    stream: Default::default(),
                },
            },
        ],
        ..Experiment::default()
    };
    let run = RunDir::create(Some(&runs_dir()), &exp.name).unwrap();
    let broker = Broker::External(amqp_url());
    let report = experiment::execute(&exp, &broker, &run).await.unwrap();
    for v in &report.verdicts {
        println!("{:<14} {:?} {}", v.checker, v.validity, v.summary);
    }
    let by_name = |n: &str| {
        report
            .verdicts
            .iter()
            .find(|v| v.checker == n)
            .unwrap_or_else(|| panic!("verdict {n}"))
    };
    for checker in [
        "task-ledger",
        "idempotency",
        "bank",
        "dead-letters",
        "queue-residue",
        "callbacks",
        "recovery",
    ] {
        assert_eq!(
            by_name(checker).validity,
            Validity::Valid,
            "{:?}",
            by_name(checker)
        );
    }
    assert!(by_name("task-ledger").counts["ok"] > 50);
    assert!(
        by_name("idempotency").counts["rejections_422"] > 0,
        "key reuse was exercised"
    );
    assert!(
        by_name("dead-letters").counts["failed_tasks"] > 0,
        "poison tasks were dead-lettered"
    );
    for file in [
        "experiment.json",
        "history.jsonl",
        "final.json",
        "verdict.json",
        "logs/api.log",
        "logs/worker-0.log",
    ] {
        assert!(run.file(file).is_file(), "{file} in the run directory");
    }
    let history = std::fs::read_to_string(run.file("history.jsonl")).unwrap();
    assert!(
        history.contains("\"start-fault\"") && history.contains("\"stop-fault\""),
        "faults are in the history"
    );
}

/// A run that asks for MySQL and Redis gets them: from the environment, or private servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_and_redis_are_provisioned_for_a_run_that_asks() {
    let exp = Experiment {
        name: "it-mysql-redis".into(),
        ops: 120,
        concurrency: 4,
        sut: SutConfig {
            store: Store::Mysql,
            redis: true,
            args: vec!["--cache".into(), "redis".into()],
            ..Default::default()
        },
        mix: Mix {
            users: 2,
            ..Default::default()
        },
        ..Experiment::default()
    };
    let (report, dir) = run(&exp, &Broker::External(amqp_url())).await;
    assert_valid(&report, &CORRECTNESS);
    let api_log = std::fs::read_to_string(dir.file("logs/api.log")).unwrap();
    assert!(
        api_log.contains("mysql://") && api_log.contains("redis://"),
        "the API ran on MySQL and Redis"
    );
}

/// Any system that speaks the contract can be checked by URL: here a reference the test
/// started itself, which the experiment only observes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_system_is_checked_through_the_contract_alone() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = SutConfig {
        workers: 1,
        via_links: false,
        ..Default::default()
    };
    let system = ReferenceSut::start(&config, &backends(), None, dir.path())
        .await
        .unwrap();
    let exp = Experiment {
        name: "it-external".into(),
        ops: 80,
        concurrency: 4,
        external: Some(External {
            base_url: system.base_url(),
            prefix: system.names.prefix.clone(),
            retry_delays: system.names.retry_delays.clone(),
        }),
        ..Experiment::default()
    };
    let (report, _) = run(&exp, &Broker::External(amqp_url())).await;
    assert_eq!(report.sut["kind"], "external");
    assert_valid(&report, &CORRECTNESS);
    system.stop(Duration::from_secs(10)).await;
    system.teardown().await.unwrap();
}

/// The robust defaults survive their broker being killed and its memory alarm blocking
/// publishers: nothing lost, nothing applied twice, service back after each heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kill_and_memory_alarm_on_a_private_node_are_survived() {
    init_tracing();
    let base = tempfile::tempdir().unwrap();
    let node = rabbit::Node::start(base.path(), 7)
        .await
        .expect("private node starts");
    let broker = Broker::Node(Arc::new(node));
    let exp = Experiment {
        name: "it-broker-faults".into(),
        ops: 600,
        rate: Some(40.0),
        concurrency: 4,
        duration: Duration::from_secs(40),
        settle_timeout: Duration::from_secs(60),
        faults: vec![
            Step {
                at: Duration::from_secs(2),
                hold: Duration::from_secs(2),
                fault: Fault::BrokerKill,
            },
            Step {
                at: Duration::from_secs(9),
                hold: Duration::from_secs(2),
                fault: Fault::MemoryAlarm,
            },
        ],
        ..Experiment::default()
    };
    let (report, dir) = run(&exp, &broker).await;
    assert_valid(
        &report,
        &[
            "task-ledger",
            "bank",
            "dead-letters",
            "queue-residue",
            "recovery",
            "callbacks",
        ],
    );
    let history = std::fs::read_to_string(dir.file("history.jsonl")).unwrap();
    for fault in ["broker-kill", "memory-alarm"] {
        assert!(history.contains(fault), "{fault} recorded");
    }
}

/// The binary writes the run directory and its exit status follows the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_non_zero_when_a_verdict_fails() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.json");
    // No system answers within a microsecond: the SLO checker fails the run.
    std::fs::write(
        &strict,
        r#"{"name": "strict", "ops": 20, "objectives": {"p99_ms": 0.001}}"#,
    )
    .unwrap();
    let harness = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(args)
            .env("AMQP_URL", amqp_url())
            .env("RUST_LOG", "warn")
            .output()
            .expect("harness runs")
    };
    let out_dir = dir.path().to_str().unwrap();
    let failing = harness(&["run", strict.to_str().unwrap(), "--out", out_dir]);
    let text = String::from_utf8_lossy(&failing.stdout);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&failing.stderr)
    );
    assert!(text.contains("slo") && text.contains("latency"), "{text}");
    let latest = dir.path().join("latest/verdict.json");
    assert_eq!(
        RunReport::read_json(&latest).unwrap().validity,
        Validity::Invalid
    );

    let passing = harness(&["run", "--out", out_dir, "--name", "defaults", "--ops", "20"]);
    assert_eq!(
        passing.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passing.stdout)
    );
    let recheck = harness(&["check", dir.path().join("latest").to_str().unwrap()]);
    assert_eq!(
        recheck.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&recheck.stdout)
    );
    let bad = harness(&["run", "/no/such/experiment.json", "--out", out_dir]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read /no/such/experiment.json"));

    // A misspelt field would make a run that injects nothing and passes: it is refused.
    let misspelt = dir.path().join("misspelt.json");
    std::fs::write(
        &misspelt,
        "{\n  \"name\": \"m\",\n  \"fualts\": [{\"at\": \"1s\", \"hold\": \"1s\", \"fault\": \"kill\", \"process\": \"api\"}]\n}\n",
    )
    .unwrap();
    let refused = harness(&["run", misspelt.to_str().unwrap(), "--out", out_dir]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("unknown field `fualts`") && stderr.contains("line 3"),
        "{stderr}"
    );
}

/// Ctrl-C in the middle of the method: the faults in force are healed (rollbacks), every
/// process the run started is stopped, its queues are deleted and its fault proxy is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_rolls_back_and_leaves_nothing_behind() {
    init_tracing();
    let prefix = format!("it-int-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let exp = Experiment {
        name: "it-interrupted".into(),
        ops: 10_000,
        rate: Some(40.0),
        concurrency: 4,
        duration: Duration::from_secs(60),
        sut: SutConfig {
            prefix: Some(prefix.clone()),
            ..Default::default()
        },
        faults: vec![
            Step {
                at: Duration::from_secs(1),
                hold: Duration::from_secs(30),
                fault: Fault::Pause {
                    process: "worker-0".into(),
                },
            },
            Step {
                at: Duration::from_secs(1),
                hold: Duration::from_secs(30),
                fault: Fault::LinkDown {
                    link: "api-broker".into(),
                },
            },
        ],
        ..Experiment::default()
    };
    let dir = RunDir::create(Some(&runs_dir()), &exp.name).unwrap();
    // Lazy: the clock starts when the method does (the first poll), not while the system starts.
    let interrupt = async { tokio::time::sleep(Duration::from_secs(3)).await };
    let report = experiment::execute_until(&exp, &Broker::External(amqp_url()), &dir, interrupt)
        .await
        .unwrap();
    assert_eq!(report.validity, Validity::Unknown);
    assert!(report.verdicts.iter().any(|v| v.checker == "interrupted"));
    let history = std::fs::read_to_string(dir.file("history.jsonl")).unwrap();
    assert_eq!(
        history.matches("\"stop-fault\"").count(),
        4,
        "both faults healed by the rollback (invoke and completion each)"
    );
    // No process of this run is left: each had the run directory in its arguments.
    let run_path = dir.path().display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&run_path))
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    // The fault proxy's API no longer listens.
    let links = url::Url::parse(&report.sut["links"]).unwrap();
    let addr = format!("{}:{}", links.host_str().unwrap(), links.port().unwrap());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "fault proxy still up"
    );
    // The run's queues are deleted.
    let conn = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = format!("{prefix}.tasks.q");
    let declared = ch
        .queue_declare(queue.as_str().into(), passive, Default::default())
        .await;
    assert!(declared.is_err(), "queue {queue} still exists");
}
