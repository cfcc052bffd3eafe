//! Exactly-once effects under redelivery (seed 3.3, 4.4): copies published one after another
//! or all at once, acks lost after the commit, workers killed.

use std::time::{Duration, Instant};

use harness::{
    checker::{Bank, Checker, TaskLedger},
    final_read,
    history::{History, OpType, Process},
    links::Stream,
    nemesis::Fault,
    ops::Recorder,
    redelivery::redeliver,
    sut::{Store, SutConfig},
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
    /// Publish `copies` copies of the `nth` credit's message (modulo those accepted) all at
    /// once; of the latest credit, the copies meet the original still in flight.
    Burst { nth: usize, copies: u8 },
    /// A task that holds a worker's slot for `ms` (a slow task type beside the fast credits).
    Slow { ms: u16 },
    /// A credit whose effect commits and whose ack is then lost: the workers' acks are held
    /// on their broker links and the links cut once the task reads SUCCESS, so the broker
    /// delivers the message again.
    AckLost { amount: u16 },
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
    opening_with_a_credit(step, len)
}

/// Copies all at once, slow tasks beside the credits, and acks lost after the commit.
pub fn concurrent_steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    let burst = (0usize..8, 2u8..=6).prop_map(|(nth, copies)| Step::Burst { nth, copies });
    let slow = (50u16..400).prop_map(|ms| Step::Slow { ms });
    let ack_lost = (1u16..100).prop_map(|amount| Step::AckLost { amount });
    let step = prop_oneof![4 => credit(), 4 => burst, 1 => slow, 1 => ack_lost];
    opening_with_a_credit(step, len)
}

/// `len` steps, the first a credit. A case of kills and redeliveries only credits nothing, so
/// the bank and the ledger have nothing to judge and their verdicts are undecided, which
/// leaves the whole property undecided (a verification then exits 2).
fn opening_with_a_credit(
    step: impl Strategy<Value = Step>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Step>> {
    let rest = len.start.saturating_sub(1)..len.end - 1;
    (credit(), prop::collection::vec(step, rest)).prop_map(|(first, mut steps)| {
        steps.insert(0, first);
        steps
    })
}

/// One case's submissions and what they were accepted as.
struct Case<'a> {
    world: &'a World,
    history: History,
    recorder: Recorder,
    tag: String,
    accepted: Vec<(String, serde_json::Value)>,
}

impl Case<'_> {
    /// Submits `body` under the step's key; keeps it when accepted.
    async fn submit(&mut self, i: usize, body: serde_json::Value) -> Option<String> {
        let key = format!("{}-{i}", self.tag);
        match self.recorder.submit(Process::Client(0), &key, &body).await {
            (OpType::Ok, Some(id)) => {
                self.accepted.push((id.clone(), body));
                Some(id)
            }
            _ => None,
        }
    }

    fn credit(&self, account: u8, amount: u16) -> serde_json::Value {
        json!({"type": "credit", "payload": {"account": format!("{}-a{account}", self.tag), "amount": amount}})
    }

    /// Publishes `copies` copies of the `nth` accepted message at once.
    async fn burst(&self, nth: usize, copies: u8) {
        if self.accepted.is_empty() {
            return;
        }
        let (id, body) = &self.accepted[nth % self.accepted.len()];
        let names = &self.world.sut().names;
        let all = (0..copies).map(|c| {
            let process = Process::Client(1 + u64::from(c));
            redeliver(
                &self.world.amqp_url,
                names,
                &self.history,
                process,
                id,
                body,
            )
        });
        futures_util::future::join_all(all).await;
    }

    /// A credit whose ack is lost after its commit: every worker's acks are held on its broker
    /// link before the credit is submitted; once it reads SUCCESS (its effect committed) the
    /// links are cut, which drops what they hold, so the broker delivers the message again.
    async fn lose_ack(&mut self, i: usize, amount: u16) -> Result<(), TestCaseError> {
        let (world, history) = (self.world, self.history.clone());
        let nemesis = world.nemesis(&history);
        let links = (0..world.sut().workers.len()).map(|w| format!("worker-{w}-broker"));
        let holds: Vec<Fault> = links
            .clone()
            .map(|link| Fault::Blackhole {
                link,
                stream: Some(Stream::Upstream),
            })
            .collect();
        let cuts: Vec<Fault> = links.map(|link| Fault::LinkDown { link }).collect();
        let fail = |e: harness::nemesis::NemesisError| TestCaseError::fail(e.to_string());
        self.drained().await;
        for hold in &holds {
            nemesis.start(hold).await.map_err(fail)?;
        }
        let committed = match self.submit(i, self.credit(0, amount)).await {
            Some(id) => self.succeeded(&id, Duration::from_secs(10)).await,
            None => true,
        };
        for cut in &cuts {
            nemesis.start(cut).await.map_err(fail)?;
        }
        // Holds off before the links come back: a new connection must not be held.
        for fault in holds.iter().chain(&cuts) {
            nemesis.heal(fault).await.map_err(fail)?;
        }
        if !committed {
            return Err(TestCaseError::fail(
                "a lost-ack step's credit did not succeed within 10 s while its ack was held",
            ));
        }
        self.drained().await;
        Ok(())
    }

    /// Whether task `id` reads SUCCESS within `limit`.
    async fn succeeded(&self, id: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let task = self.world.client.task(id).await.ok().flatten();
            if task.is_some_and(|t| t.status == "SUCCESS") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Waits until every worker consumes the task queue and it is empty, then a moment for the
    /// deliveries in hand (a slow task holds a slot under 400 ms) to finish and be acked: the
    /// final read, which cannot see unacknowledged messages, must not read the balance before
    /// a redelivered copy was processed, and a lost-ack step must not hold acks of earlier
    /// copies, which would fill the workers' prefetch and keep its own credit from them.
    async fn drained(&self) {
        let workers = self.world.sut().workers.len() as u32;
        let queue = self.world.sut().names.task_queue();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match final_read::counts_at(&self.world.amqp_url, &queue).await {
                Ok((0, consumers)) if consumers >= workers => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    async fn run(&mut self, i: usize, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Credit { account, amount } => {
                self.submit(i, self.credit(*account, *amount)).await;
            }
            Step::Redeliver { nth, after_ms } => {
                tokio::time::sleep(Duration::from_millis(u64::from(*after_ms))).await;
                self.burst(*nth, 1).await;
            }
            Step::Kill { worker, down_ms } => {
                let down = Duration::from_millis(u64::from(*down_ms));
                self.world
                    .crash_worker(&self.history, usize::from(*worker), down)
                    .await
                    .map_err(TestCaseError::fail)?;
            }
            Step::Burst { nth, copies } => self.burst(*nth, *copies).await,
            Step::Slow { ms } => {
                self.submit(i, json!({"type": "sleep", "payload": {"ms": ms}}))
                    .await;
            }
            Step::AckLost { amount } => self.lose_ack(i, *amount).await?,
        }
        Ok(())
    }
}

/// Runs one case and returns the bank's and the ledger's verdicts.
pub async fn case(
    world: &World,
    steps: &[Step],
    settle: Duration,
) -> Result<Vec<Verdict>, TestCaseError> {
    let history = History::new();
    let mut c = Case {
        world,
        recorder: world.recorder(&history),
        history,
        tag: case_tag(),
        accepted: Vec::new(),
    };
    for (i, step) in steps.iter().enumerate() {
        c.run(i, step).await?;
    }
    let history = c.history;
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
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
}

/// The same promise when copies of one message are in flight at the same moment: bursts of
/// 2–6 copies published at once, to one worker and across both, the latest credit's copies
/// meeting the original still in flight; slow tasks holding worker slots beside fast credits;
/// and redeliveries of messages whose effect committed but whose ack was lost with the
/// connection. The store is MariaDB behind links that add 0–40 ms to each of its answers, so
/// each copy spends tens of milliseconds between its dedupe check and its commit; a lost-ack
/// step holds the workers' acks on their broker links and cuts them after the commit.
#[test]
fn credits_apply_exactly_once_when_copies_meet_and_acks_are_lost() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(slow_world(&[]));
    let (outcome, run) = run_property(
        "exactly-once-concurrent-copies",
        config::holds("exactly-once-concurrent-copies", config::cases(4, 40)),
        &concurrent_steps(config::length(4..12)),
        |steps| rt.block_on(case(&world, &steps, Duration::from_secs(30))),
    );
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
}

/// Credits whose acks are lost after their commit, and nothing else.
pub fn ack_lost_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (1u16..100).prop_map(|amount| Step::AckLost { amount }),
        1..4,
    )
}

/// Two workers on MariaDB started with `args`, each store answer slowed by 0–40 ms.
pub async fn slow_world(args: &[&str]) -> World {
    const WORKERS: usize = 2;
    let mut world = World::start_config(SutConfig {
        workers: WORKERS,
        args: args.iter().map(|a| a.to_string()).collect(),
        retry_delays: scenarios::world::fast_retries(),
        store: Store::Mysql,
        ..SutConfig::default()
    })
    .await;
    for w in 0..WORKERS {
        world = world
            .slowed(&format!("worker-{w}-store"), 20, 20, Stream::Downstream)
            .await;
    }
    world
}
