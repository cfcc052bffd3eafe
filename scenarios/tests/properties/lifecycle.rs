//! The task lifecycle as a state machine against its reference model (seed 3.3, 4.3).

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    sync::Arc,
    time::Duration,
};

use harness::{
    checker::{Checker, DeadLetters, TaskLedger},
    history::{History, OpType, Process},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use proptest_state_machine::ReferenceStateMachine;
use reports::Verdict;
use scenarios::{
    config,
    lifecycle::{Kind, Track},
    world::{case_tag, fast_retries, World},
};

use crate::support::{assert_held, run_property, verdicts};

/// What a case does next.
#[derive(Debug, Clone)]
pub enum Transition {
    Submit(Kind),
    /// Read the `n`th submitted task and check the observation against the model.
    Observe(usize),
    /// Let time pass (milliseconds).
    Wait(u64),
}

/// The reference model: the tasks submitted so far.
pub struct Model;

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Echo),
        (0u64..100).prop_map(|ms| Kind::Sleep { ms }),
        (0u32..=5).prop_map(|fail_times| Kind::Flaky { fail_times }),
        Just(Kind::Poison),
    ]
}

impl ReferenceStateMachine for Model {
    type State = Vec<Kind>;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<Vec<Kind>> {
        Just(Vec::new()).boxed()
    }

    fn transitions(state: &Vec<Kind>) -> BoxedStrategy<Transition> {
        if state.is_empty() {
            return kind().prop_map(Transition::Submit).boxed();
        }
        prop_oneof![
            2 => kind().prop_map(Transition::Submit),
            3 => (0..state.len()).prop_map(Transition::Observe),
            1 => (0u64..150).prop_map(Transition::Wait),
        ]
        .boxed()
    }

    fn apply(mut state: Vec<Kind>, t: &Transition) -> Vec<Kind> {
        if let Transition::Submit(k) = t {
            state.push(k.clone());
        }
        state
    }

    fn preconditions(state: &Vec<Kind>, t: &Transition) -> bool {
        match t {
            Transition::Observe(i) => *i < state.len(),
            _ => true,
        }
    }
}

pub type Generated = (Vec<Kind>, Vec<Transition>, Option<Arc<AtomicUsize>>);

/// Applies the transitions to the live system, checking each observation against the model;
/// then waits for every task to end as the model says and judges the ledger and dead letters.
pub async fn case(
    world: &World,
    (_, transitions, seen): Generated,
) -> Result<Vec<Verdict>, TestCaseError> {
    let retries = fast_retries().len() as u32;
    let (tag, history) = (case_tag(), History::new());
    let recorder = world.recorder(&history);
    let mut tasks: Vec<(String, Track)> = Vec::new();
    for (i, t) in transitions.iter().enumerate() {
        if let Some(seen) = &seen {
            // Tells the shrinker which transitions ran.
            seen.fetch_add(1, Ordering::SeqCst);
        }
        match t {
            Transition::Submit(k) => {
                let (outcome, id) = recorder
                    .submit(Process::Client(0), &format!("{tag}-{i}"), &k.body())
                    .await;
                prop_assert_eq!(outcome, OpType::Ok, "the API accepts {:?}", k);
                tasks.push((
                    id.expect("accepted tasks have ids"),
                    Track::new(k.clone(), retries),
                ));
            }
            Transition::Observe(n) => observe(world, &mut tasks[*n]).await?,
            Transition::Wait(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        }
    }
    for task in &mut tasks {
        wait_end(world, task).await?;
    }
    let state = world.final_state(&history, Duration::from_secs(20)).await;
    let checkers: [Box<dyn Checker>; 2] = [Box::new(TaskLedger), Box::new(DeadLetters)];
    Ok(verdicts(world, &checkers, &history, &state))
}

async fn observe(world: &World, (id, track): &mut (String, Track)) -> Result<(), TestCaseError> {
    let task = world
        .client
        .task(id)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let task = task.ok_or_else(|| TestCaseError::fail(format!("task {id} is unknown")))?;
    let attempts = u32::try_from(task.attempts).unwrap_or(u32::MAX);
    track
        .observe(&task.status, attempts)
        .map_err(TestCaseError::fail)
}

/// Observes a task until it ends (each observation checked), up to 20 s.
async fn wait_end(world: &World, task: &mut (String, Track)) -> Result<(), TestCaseError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        observe(world, task).await?;
        if task.1.last().is_some_and(|(s, _)| s.is_terminal()) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            let (kind, outcome) = (
                task.1.kind(),
                task.1.kind().outcome(fast_retries().len() as u32),
            );
            return Err(TestCaseError::fail(format!(
                "{kind:?} did not reach {outcome:?}; last seen {:?}",
                task.1.last()
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every task follows the lifecycle the model allows: PENDING → RUNNING → (PENDING after a
/// failed attempt → RUNNING)* → SUCCESS | FAILED, attempts never going back nor above the
/// model's; `echo` and `sleep` succeed on their first attempt, `flaky n` on attempt n + 1
/// when that is within the retry budget and otherwise fails after the last retry, `poison`
/// always fails after the last retry; every FAILED task is in the dead-letter queue and
/// nothing else is. Observations interleave with submissions and waits at random.
#[test]
fn tasks_follow_the_lifecycle_model() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(World::start(&[], 2, false));
    let (outcome, run) = run_property(
        "task-lifecycle",
        config::holds("task-lifecycle", config::cases(8, 60)),
        &Model::sequential_strategy(config::length(1..24)),
        |generated| rt.block_on(case(&world, generated)),
    );
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
}
