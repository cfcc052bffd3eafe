//! Idempotency-Key semantics (IETF httpapi draft; seed 4.4) through the API.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use harness::{
    checker::{Checker, Idempotency, TaskLedger},
    client::Client,
    history::{History, Process},
    links::Stream,
    ops::Recorder,
    sut::{Store, SutConfig},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use reports::Verdict;
use scenarios::{
    config,
    world::{case_tag, fast_retries, World},
};
use serde_json::json;

use crate::support::{assert_held, run_property, verdicts};

/// One submission of a case, from a small key space.
#[derive(Debug, Clone)]
struct Submission {
    /// One of three keys.
    key: u8,
    /// One of two bodies: the same key with another body must be refused.
    body: u8,
    /// Sent this many times at once: concurrent duplicates.
    copies: u8,
    /// The first copy gives up after 30 ms (a client timeout), then is retried.
    timeout_first: bool,
}

fn submissions() -> impl Strategy<Value = Vec<Submission>> {
    let one = (0u8..3, 0u8..2, 1u8..=3, prop::bool::weighted(0.25)).prop_map(
        |(key, body, copies, timeout_first)| Submission {
            key,
            body,
            copies,
            timeout_first,
        },
    );
    prop::collection::vec(one, config::length(2..8))
}

struct Case<'a> {
    recorder: Recorder,
    impatient: Recorder,
    tag: String,
    next_process: &'a AtomicU64,
}

impl Case<'_> {
    fn process(&self) -> Process {
        Process::Client(self.next_process.fetch_add(1, Ordering::SeqCst))
    }

    async fn send(&self, s: &Submission) {
        let key = format!("{}-k{}", self.tag, s.key);
        let body = json!({"type": "echo", "payload": {"variant": s.body, "case": self.tag}});
        if s.timeout_first {
            self.impatient.submit(self.process(), &key, &body).await;
        }
        let copies = (0..s.copies).map(|_| self.recorder.submit(self.process(), &key, &body));
        futures_util::future::join_all(copies).await;
    }
}

/// The idempotency checker's counts summed over the cases: the property must have exercised
/// what it is about.
#[derive(Default)]
struct Seen {
    processes: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
}

async fn case(
    world: &World,
    subs: &[Submission],
    seen: &Seen,
) -> Result<Vec<Verdict>, TestCaseError> {
    let history = History::new();
    let impatient = Client::new(world.client.base(), None, Duration::from_millis(30))
        .with_conformance(world.conformance.clone());
    let c = Case {
        recorder: world.recorder(&history),
        impatient: Recorder::new(impatient, history.clone()),
        tag: case_tag(),
        next_process: &seen.processes,
    };
    for s in subs {
        c.send(s).await;
    }
    let state = world.final_state(&history, Duration::from_secs(20)).await;
    let checkers: [Box<dyn Checker>; 2] = [Box::new(Idempotency), Box::new(TaskLedger)];
    let found = verdicts(world, &checkers, &history, &state);
    let mut counts = seen.counts.lock().expect("counts");
    for (name, n) in &found[0].counts {
        *counts.entry(name.clone()).or_default() += n;
    }
    drop(counts);
    Ok(found)
}

/// For every key: one task however many times and however concurrently it is submitted;
/// every 202 byte-identical to the first; 422 for another body under the key; 409 only while
/// the first request is still in flight, never after it completed; a retry after a client
/// timeout replays or conflicts, never creates a second task. Checked by the harness's
/// idempotency and ledger checkers over the recorded history.
///
/// The system publishes in the request (`--publish confirm`) over a link slowed by 150 ms, so
/// that requests stay in flight long enough for duplicates to meet them; the key handling is
/// the same code for every publish strategy.
#[test]
fn each_key_makes_one_task_and_replays_its_first_answer() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(async {
        let w = World::start(&["--publish", "confirm"], 1, false).await;
        w.slowed("api-broker", 150, 0, Stream::Downstream).await
    });
    let met = ["conflicts_409", "rejections_422"];
    holds_on(&rt, world, "idempotency-keys", config::cases(6, 60), &met);
}

/// The same promise on the default outbox path while the store is slow: MariaDB behind a link
/// that adds 30–90 ms to each of its answers, so that concurrent requests for one key read,
/// decide and write inside each other's transactions. The whole submission is one
/// transaction here, so a concurrent copy waits for the first and replays it (no 409).
#[test]
fn each_key_makes_one_task_while_the_store_is_slow() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(async {
        let w = World::start_config(SutConfig {
            workers: 1,
            retry_delays: fast_retries(),
            store: Store::Mysql,
            ..SutConfig::default()
        })
        .await;
        w.slowed("api-store", 60, 30, Stream::Downstream).await
    });
    let met = ["replays", "rejections_422"];
    holds_on(
        &rt,
        world,
        "idempotency-keys-slow-store",
        config::cases(5, 50),
        &met,
    );
}

/// Runs the property against `world`, then stops it; each of the checker's counts `met` must
/// be above zero over the cases.
fn holds_on(rt: &tokio::runtime::Runtime, world: World, name: &str, cases: u32, met: &[&str]) {
    let seen = Seen::default();
    let (outcome, run) = run_property(name, config::holds(name, cases), &submissions(), |subs| {
        rt.block_on(case(&world, &subs, &seen))
    });
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
    let counts = seen.counts.into_inner().expect("counts");
    eprintln!("{name}: over the cases {counts:?}");
    for count in met {
        assert!(
            counts.get(*count).is_some_and(|n| *n > 0),
            "the cases never exercised {count}"
        );
    }
}
