//! Users CRUD through the cache (seed 2.2, 2.5): reads racing an update and a delete of the
//! same user.

use std::time::Duration;

use harness::{
    checker::{Checker, Users},
    history::{History, OpType, Process},
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

use crate::support::{assert_held, run_property, verdicts};

/// One step of a case, on the case's user.
#[derive(Debug, Clone)]
enum Step {
    /// A read alone (it fills the cache when it misses).
    Read,
    /// An update racing reads: see [`Race`].
    Update(Race),
    /// The delete racing reads; the case's later steps meet a deleted user.
    Delete(Race),
}

/// A write racing reads on a cold cache: an update first empties the cache, then the write
/// starts and, `delay_ms` later, `readers` reads 3 ms apart, so that some read misses the cache
/// and reads the store about when the write commits. One more read follows them all.
#[derive(Debug, Clone)]
struct Race {
    readers: u8,
    delay_ms: u8,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let race = || (1u8..8, 0u8..200).prop_map(|(readers, delay_ms)| Race { readers, delay_ms });
    let step = prop_oneof![
        1 => Just(Step::Read),
        5 => race().prop_map(Step::Update),
        1 => race().prop_map(Step::Delete),
    ];
    prop::collection::vec(step, config::length(3..10))
}

struct Case {
    recorder: Recorder,
    user: i64,
    tag: String,
    next_process: u64,
}

impl Case {
    fn process(&mut self) -> Process {
        self.next_process += 1;
        Process::Client(self.next_process)
    }

    /// A name and email of step `i`'s own (`part` tells two of one step apart).
    fn value(&self, i: usize, part: &str) -> (String, String) {
        let name = format!("n{i}{part}-{}", self.tag);
        (name, format!("{}-{i}{part}@example.com", self.tag))
    }

    /// Updates the user, which empties its cache entry.
    async fn update(&mut self, i: usize, part: &str) -> OpType {
        let (process, (name, email)) = (self.process(), self.value(i, part));
        self.recorder
            .update_user(process, self.user, &name, &email)
            .await
    }

    /// `write` beside the race's reads, then one read after all of them.
    async fn race(&mut self, write: impl std::future::Future<Output = OpType>, race: &Race) {
        let reads: Vec<_> = (0..race.readers)
            .map(|r| {
                let (recorder, process, user) = (self.recorder.clone(), self.process(), self.user);
                let start = u64::from(race.delay_ms) + 3 * u64::from(r);
                async move {
                    tokio::time::sleep(Duration::from_millis(start)).await;
                    recorder.read_user(process, user).await
                }
            })
            .collect();
        futures_util::future::join(write, futures_util::future::join_all(reads)).await;
        let process = self.process();
        self.recorder.read_user(process, self.user).await;
    }

    async fn run(&mut self, i: usize, step: &Step) {
        match step {
            Step::Read => {
                let process = self.process();
                self.recorder.read_user(process, self.user).await;
            }
            Step::Update(race) => {
                self.update(i, "a").await;
                let (recorder, process) = (self.recorder.clone(), self.process());
                let (name, email) = self.value(i, "b");
                let write = recorder.update_user(process, self.user, &name, &email);
                self.race(write, race).await;
            }
            Step::Delete(race) => {
                self.update(i, "a").await;
                let (recorder, process) = (self.recorder.clone(), self.process());
                let write = recorder.delete_user(process, self.user);
                self.race(write, race).await;
            }
        }
    }
}

async fn case(world: &World, steps: &[Step]) -> Result<Vec<Verdict>, TestCaseError> {
    let history = History::new();
    let recorder = world.recorder(&history);
    let tag = case_tag();
    let email = format!("{tag}@example.com");
    let (_, user) = recorder
        .create_user(Process::Client(0), &format!("u-{tag}"), &email)
        .await;
    let user = user.ok_or_else(|| TestCaseError::fail("the case's user was not created"))?;
    let mut c = Case {
        recorder,
        user,
        tag,
        next_process: 0,
    };
    for (i, step) in steps.iter().enumerate() {
        c.run(i, step).await;
    }
    let checkers: [Box<dyn Checker>; 1] = [Box::new(Users)];
    Ok(verdicts(world, &checkers, &history, &Default::default()))
}

/// Every read of a user returns what the latest finished write left, or what a write still
/// in flight is leaving: never a value a finished update replaced, never a user a finished
/// delete removed (the users checker). The API caches reads in Redis (the seed's deployment)
/// and its store is MariaDB behind a link adding 0–80 ms to each answer, so a read that
/// missed the cache can fetch the old row while an update or delete commits and invalidates,
/// then fill the cache after it: the stale-fill race of plain cache-aside, which the
/// reference's fill ticket closes.
#[test]
fn cached_reads_never_return_a_replaced_or_deleted_user() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let world = rt.block_on(async {
        let w = World::start_config(SutConfig {
            workers: 0,
            args: vec!["--cache".into(), "redis".into()],
            retry_delays: fast_retries(),
            store: Store::Mysql,
            redis: true,
            ..SutConfig::default()
        })
        .await;
        w.slowed("api-store", 40, 40, Stream::Downstream).await
    });
    let (outcome, run) = run_property(
        "users-cache-races",
        config::holds("users-cache-races", config::cases(6, 60)),
        &steps(),
        |steps| rt.block_on(case(&world, &steps)),
    );
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
}
