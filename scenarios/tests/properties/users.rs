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
    /// An update to a value of its own, with `readers` reads started 4 ms apart beside it.
    Update { readers: u8 },
    /// The delete, with `readers` reads beside it; the case's later steps meet a deleted user.
    Delete { readers: u8 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        2 => Just(Step::Read),
        5 => (0u8..6).prop_map(|readers| Step::Update { readers }),
        1 => (1u8..6).prop_map(|readers| Step::Delete { readers }),
    ];
    prop::collection::vec(step, config::length(3..10))
}

struct Case {
    recorder: Recorder,
    user: i64,
    next_process: u64,
}

impl Case {
    fn process(&mut self) -> Process {
        self.next_process += 1;
        Process::Client(self.next_process)
    }

    /// `write` beside `readers` reads started 4 ms apart, then one read after all of them.
    async fn race(&mut self, write: impl std::future::Future<Output = OpType>, readers: u8) {
        let reads: Vec<_> = (0..readers)
            .map(|r| {
                let (recorder, process, user) = (self.recorder.clone(), self.process(), self.user);
                async move {
                    tokio::time::sleep(Duration::from_millis(4 * u64::from(r))).await;
                    recorder.read_user(process, user).await
                }
            })
            .collect();
        futures_util::future::join(write, futures_util::future::join_all(reads)).await;
        let process = self.process();
        self.recorder.read_user(process, self.user).await;
    }

    async fn run(&mut self, i: usize, step: &Step, tag: &str) {
        let recorder = self.recorder.clone();
        let process = self.process();
        match step {
            Step::Read => {
                recorder.read_user(process, self.user).await;
            }
            Step::Update { readers } => {
                let name = format!("n{i}-{tag}");
                let email = format!("{tag}-{i}@example.com");
                let write = recorder.update_user(process, self.user, &name, &email);
                self.race(write, *readers).await;
            }
            Step::Delete { readers } => {
                let write = recorder.delete_user(process, self.user);
                self.race(write, *readers).await;
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
        next_process: 0,
    };
    for (i, step) in steps.iter().enumerate() {
        c.run(i, step, &tag).await;
    }
    let checkers: [Box<dyn Checker>; 1] = [Box::new(Users)];
    Ok(verdicts(world, &checkers, &history, &Default::default()))
}

/// Every read of a user returns what the latest finished write left, or what a write still
/// in flight is leaving: never a value a finished update replaced, never a user a finished
/// delete removed (the users checker). The API caches reads in Redis (the seed's deployment)
/// and its store is MariaDB behind a link adding 0–60 ms to each answer, so a read that
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
        w.links()
            .latency("api-store", 30, 30, Stream::Downstream)
            .await
            .expect("latency on the API's store link");
        w
    });
    let (outcome, run) = run_property(
        "users-cache-races",
        config::holds("users-cache-races", config::cases(6, 60)),
        &steps(),
        |steps| rt.block_on(case(&world, &steps)),
    );
    run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome);
}
