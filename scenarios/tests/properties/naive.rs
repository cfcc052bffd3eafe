//! The checks can fail: the same properties, run against the seed's naive variants, must find
//! their known weaknesses and print a shrunk counterexample. A property that could not fail
//! here would prove nothing elsewhere.

use std::time::Duration;

use harness::{
    checker::{Checker, TaskLedger},
    history::{History, OpType, Process},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use proptest_state_machine::ReferenceStateMachine;
use reports::Verdict;
use scenarios::{
    config,
    world::{case_tag, World},
};
use serde_json::json;

use crate::{
    exactly_once, lifecycle,
    support::{assert_found, run_property, verdicts},
};

/// How long a naive case waits for tasks that may never end.
const SHORT_SETTLE: Duration = Duration::from_secs(5);

/// Starts `world`, runs `case` over `strategy`, writes the run directory, and asserts that the
/// property failed: `weakness` was found.
fn expect_weakness<S>(
    name: &str,
    world: impl std::future::Future<Output = World>,
    strategy: S,
    weakness: &str,
    case: impl AsyncFn(&World, S::Value) -> Result<Vec<Verdict>, TestCaseError>,
) where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(world);
    let (outcome, run) = run_property(name, config::finds_weakness(name, 20), &strategy, |value| {
        rt.block_on(case(&world, value))
    });
    run.finds_weakness(&outcome);
    rt.block_on(world.stop());
    assert_found(weakness, outcome);
}

/// `--dedupe none`: a redelivered credit is applied twice. The exactly-once property over
/// credits and redeliveries must fail (the bank checker sees the double).
#[test]
fn dedupe_none_applies_a_redelivered_credit_twice() {
    expect_weakness(
        "naive-dedupe-none",
        World::start(&["--dedupe", "none"], 1, false),
        exactly_once::steps(false, 2..6),
        "--dedupe none applies a redelivered credit twice",
        async |world, steps| exactly_once::case(world, &steps, SHORT_SETTLE).await,
    );
}

/// `--dedupe none`, when a credit's ack is lost after its commit: the broker delivers the
/// message again and the credit is applied twice. Shows that the exactly-once property's
/// lost-ack step does redeliver a message whose effect committed.
#[test]
fn dedupe_none_applies_a_credit_again_when_its_ack_is_lost() {
    expect_weakness(
        "naive-dedupe-none-ack-lost",
        exactly_once::slow_world(&["--dedupe", "none"]),
        exactly_once::ack_lost_steps(),
        "--dedupe none applies a credit again after its ack was lost",
        // The workers reconnect after the cut before the redelivery is processed.
        async |world, steps| exactly_once::case(world, &steps, Duration::from_secs(30)).await,
    );
}

/// One step of a "work in flight, then a crash" case.
#[derive(Debug, Clone)]
enum Work {
    /// Submit a task that holds its worker for `ms`.
    Sleep { ms: u16 },
    /// After `after_ms`, kill -9 the worker; start it again after `down_ms`.
    Kill { after_ms: u16, down_ms: u16 },
}

fn work() -> impl Strategy<Value = Vec<Work>> {
    let sleep = (300u16..800).prop_map(|ms| Work::Sleep { ms });
    let kill =
        (0u16..200, 0u16..300).prop_map(|(after_ms, down_ms)| Work::Kill { after_ms, down_ms });
    prop::collection::vec(prop_oneof![3 => sleep, 1 => kill], 2..7)
}

/// Submits the sleeps, kills the (only) worker as told, and judges the ledger: a task
/// accepted and never ended is lost.
async fn crash_case(world: &World, steps: &[Work]) -> Result<Vec<Verdict>, TestCaseError> {
    let tag = case_tag();
    let history = History::new();
    let recorder = world.recorder(&history);
    for (i, step) in steps.iter().enumerate() {
        match step {
            Work::Sleep { ms } => {
                let body = json!({"type": "sleep", "payload": {"ms": ms}});
                let (kind, _) = recorder
                    .submit(Process::Client(0), &format!("{tag}-{i}"), &body)
                    .await;
                prop_assert_eq!(kind, OpType::Ok, "the API accepts work");
            }
            Work::Kill { after_ms, down_ms } => {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                let down = Duration::from_millis(u64::from(*down_ms));
                world
                    .crash_worker(&history, 0, down)
                    .await
                    .map_err(TestCaseError::fail)?;
            }
        }
    }
    let state = world.final_state(&history, SHORT_SETTLE).await;
    let checkers: [Box<dyn Checker>; 1] = [Box::new(TaskLedger)];
    Ok(verdicts(world, &checkers, &history, &state))
}

/// `--ack auto`: the broker forgets a message as it delivers it, so a worker killed while it
/// holds tasks loses them. "No accepted task is lost" must fail.
#[test]
fn ack_auto_loses_tasks_when_a_worker_dies_mid_task() {
    expect_weakness(
        "naive-ack-auto",
        World::start(&["--ack", "auto"], 1, false),
        work(),
        "--ack auto loses tasks of a killed worker",
        async |world, steps| crash_case(world, &steps).await,
    );
}

/// `--dedupe redis-setnx` (seed 4.4): the key is set before processing, so a worker that dies
/// between the key and the commit leaves a redelivery that is skipped as a duplicate. "No
/// accepted task is lost" must fail.
#[test]
fn redis_setnx_loses_a_task_when_the_worker_dies_between_key_and_commit() {
    expect_weakness(
        "naive-redis-setnx",
        World::start(&["--dedupe", "redis-setnx"], 1, true),
        work(),
        "--dedupe redis-setnx loses a task killed between SETNX and commit",
        async |world, steps| crash_case(world, &steps).await,
    );
}

/// `--retry requeue` (the seed's first snippet): a failed attempt goes straight back to the
/// queue, without delay or limit, so a poison task is never dead-lettered and its attempts
/// climb past any budget. The lifecycle model must refuse it.
#[test]
fn retry_requeue_never_dead_letters_a_poison_task() {
    expect_weakness(
        "naive-retry-requeue",
        World::start(&["--retry", "requeue"], 1, false),
        lifecycle::Model::sequential_strategy(1..8),
        "--retry requeue loops a poison task forever",
        async |world, generated| lifecycle::case(world, generated).await,
    );
}
