//! Exactly-once effects under redelivery (seed 3.3, 4.4).

use std::time::Duration;

use harness::{
    checker::{Bank, Checker, TaskLedger},
    history::{History, OpType, Process},
    redelivery::redeliver,
};
use proptest::{prelude::*, test_runner::TestCaseError};
use reports::Verdict;
use scenarios::{
    config,
    world::{case_tag, World},
};
use serde_json::json;

use crate::support::{assert_held, run_property, verdicts};

/// One step of a case.
#[derive(Debug, Clone)]
pub enum Step {
    /// Submit a credit of `amount` to account `account` (of a few).
    Credit { account: u8, amount: u16 },
    /// After `after_ms`, publish the message of the `nth` credit (modulo those accepted) again,
    /// straight to the task exchange, as a broker redelivery would.
    Redeliver { nth: usize, after_ms: u16 },
    /// kill -9 worker `worker`, and start it again after `down_ms`.
    Kill { worker: u8, down_ms: u16 },
}

fn credit() -> impl Strategy<Value = Step> {
    (0u8..3, 1u16..100).prop_map(|(account, amount)| Step::Credit { account, amount })
}

fn redelivery() -> impl Strategy<Value = Step> {
    (0usize..8, prop_oneof![Just(0u16), 0u16..400])
        .prop_map(|(nth, after_ms)| Step::Redeliver { nth, after_ms })
}

/// Credits with redeliveries and, when `kills`, workers killed at random points.
pub fn steps(kills: bool, len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let kill = (0u8..2, 0u16..500).prop_map(|(worker, down_ms)| Step::Kill { worker, down_ms });
    let step = if kills {
        prop_oneof![6 => credit(), 3 => redelivery(), 1 => kill].boxed()
    } else {
        prop_oneof![2 => credit(), 1 => redelivery()].boxed()
    };
    prop::collection::vec(step, len)
}

/// Runs one case and returns the bank's and the ledger's verdicts.
pub async fn case(
    world: &World,
    steps: &[Step],
    settle: Duration,
) -> Result<Vec<Verdict>, TestCaseError> {
    let tag = case_tag();
    let history = History::new();
    let recorder = world.recorder(&history);
    let mut accepted: Vec<(String, serde_json::Value)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Credit { account, amount } => {
                let body = json!({"type": "credit", "payload": {"account": format!("{tag}-a{account}"), "amount": amount}});
                if let (OpType::Ok, Some(id)) = recorder
                    .submit(Process::Client(0), &format!("{tag}-{i}"), &body)
                    .await
                {
                    accepted.push((id, body));
                }
            }
            Step::Redeliver { nth, after_ms } if !accepted.is_empty() => {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                let (id, body) = &accepted[nth % accepted.len()];
                redeliver(
                    &world.amqp_url,
                    &world.sut().names,
                    &history,
                    Process::Client(1),
                    id,
                    body,
                )
                .await;
            }
            Step::Redeliver { .. } => {}
            Step::Kill { worker, down_ms } => {
                let down = Duration::from_millis(u64::from(*down_ms));
                world
                    .crash_worker(&history, usize::from(*worker), down)
                    .await
                    .map_err(TestCaseError::fail)?;
            }
        }
    }
    let state = world.final_state(&history, settle).await;
    let checkers: [Box<dyn Checker>; 2] = [Box::new(Bank), Box::new(TaskLedger)];
    Ok(verdicts(world, &checkers, &history, &state))
}

/// Every credit task reaches SUCCESS exactly once and every account's balance is the sum of
/// its distinct credits, while messages are delivered twice (the same message published
/// again, at once or later) and workers are killed at random points. This is what the store
/// dedupe (effect and processed mark in one transaction) and manual acks promise; the bank
/// and ledger checkers judge it.
#[test]
fn credits_apply_exactly_once_under_redelivery_and_worker_kills() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(World::start(&[], 2, false));
    let (outcome, run) = run_property(
        "exactly-once-credits",
        config::holds("exactly-once-credits", config::cases(5, 40)),
        &steps(true, config::length(3..12)),
        |steps| rt.block_on(case(&world, &steps, Duration::from_secs(30))),
    );
    run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome);
}
