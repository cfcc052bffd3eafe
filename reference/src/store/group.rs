//! Group commit: the writes of many requests and deliveries share one transaction, so one
//! flush to disk (SQLite's fsync, InnoDB's log flush) makes all of them durable.
//!
//! Each write is an [`Op`]: plain data that knows its statements. Callers queue ops and wait;
//! a writer takes every op queued (up to [`MAX_BATCH`]), runs them in one transaction (an op
//! that fails is left out and the rest run again, so nobody sees its partial writes), commits
//! once and only then answers each caller, so no caller acts on a write that is not durable. A batch whose transaction
//! fails as a whole (a deadlock on MySQL, a busy SQLite file) is run again, up to
//! [`ATTEMPTS`] times; an op whose caller stopped waiting before its turn is skipped, so that it
//! writes nothing the caller will never hear of.
//!
//! The writers themselves belong to the backends: a thread for SQLite (one writer per file),
//! tasks on their own connections for MySQL.

use std::future::Future;

use futures_util::future::BoxFuture;

use super::{db::Db, StoreError};

/// Most ops in one transaction.
const MAX_BATCH: usize = 256;
/// Ops waiting for a writer before callers wait to enqueue.
const QUEUE: usize = 4096;
/// Runs of a batch whose transaction failed as a whole.
const ATTEMPTS: u32 = 3;

/// A read or a write of the store, written once for both backends.
pub trait Op: Send + Sync + 'static {
    type Out: Send + 'static;

    /// The op's statements. Inside a group commit an error discards this op's writes only,
    /// and the op runs again whenever the batch's transaction is run again.
    fn apply(&self, db: &mut dyn Db) -> impl Future<Output = Result<Self::Out, StoreError>> + Send;
}

/// What running one op inside a batch came to.
pub enum Ran {
    /// It wrote what it meant to.
    Kept,
    /// It failed alone: the batch runs again without it.
    RolledBack,
    /// It failed in a way that ends the whole transaction (a deadlock, a lost connection):
    /// the batch is run again.
    Abort(StoreError),
}

/// An op with its caller, its type erased for the queue.
pub trait Job: Send {
    /// Whether the caller still waits.
    fn wanted(&self) -> bool;
    /// Whether the op failed alone in an earlier attempt (it is not run again).
    fn failed(&self) -> bool;
    fn run<'a>(&'a mut self, db: &'a mut dyn Db) -> BoxFuture<'a, Ran>;
    /// Answers the caller once the batch's fate is known.
    fn answer(self: Box<Self>, committed: Result<(), String>);
}

struct Pending<O: Op> {
    op: O,
    out: Option<Result<O::Out, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<O::Out, StoreError>>,
}

impl<O: Op> Job for Pending<O> {
    fn wanted(&self) -> bool {
        !self.reply.is_closed()
    }

    fn failed(&self) -> bool {
        matches!(self.out, Some(Err(_)))
    }

    fn run<'a>(&'a mut self, db: &'a mut dyn Db) -> BoxFuture<'a, Ran> {
        Box::pin(async move {
            match self.op.apply(db).await {
                Ok(out) => {
                    self.out = Some(Ok(out));
                    Ran::Kept
                }
                Err(e) if e.is_transient() => Ran::Abort(e),
                Err(e) => {
                    self.out = Some(Err(e));
                    Ran::RolledBack
                }
            }
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), String>) {
        let result = match (committed, self.out) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(StoreError::Unavailable("the write was not run".into())),
            (Err(e), _) => Err(StoreError::Unavailable(format!("group commit failed: {e}"))),
        };
        let _ = self.reply.send(result);
    }
}

pub type Jobs = async_channel::Receiver<Box<dyn Job>>;

/// Handle to a backend's writers; cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: async_channel::Sender<Box<dyn Job>>,
}

impl GroupCommit {
    /// A queue; the backend starts writers on the returned receiver.
    pub fn new() -> (GroupCommit, Jobs) {
        let (queue, jobs) = async_channel::bounded(QUEUE);
        (GroupCommit { queue }, jobs)
    }

    /// Writes `op` with whatever else is queued; returns once it is durable (or failed).
    pub async fn write<O: Op>(&self, op: O) -> Result<O::Out, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            op,
            out: None,
            reply,
        });
        let stopped = || StoreError::Unavailable("the store is closed".into());
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stops taking writes; the writers finish what is queued and end.
    pub fn close(&self) {
        self.queue.close();
    }
}

/// `first` and whatever else is queued, up to [`MAX_BATCH`], without the ops nobody waits for.
pub fn batch(first: Box<dyn Job>, jobs: &Jobs) -> Vec<Box<dyn Job>> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch.retain(|j| j.wanted());
    batch
}

/// One attempt at the batch's transaction: the ops in order, one commit. An op that fails
/// alone (a constraint, a bug) rolls the attempt back and is left out of the next attempt with
/// its error kept, so the others never see its partial writes; that costs a re-run only when
/// it happens, where a savepoint per op would cost two statements every time. A failed
/// attempt is rolled back, so the connection is clean for the next.
pub async fn commit(db: &mut dyn Db, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    loop {
        db.execute(db.dialect().begin(), &[]).await?;
        match run_ops(db, batch).await {
            Ok(()) => return db.execute("COMMIT", &[]).await.map(drop),
            Err(Rerun) => {
                db.execute("ROLLBACK", &[]).await?;
            }
            Err(Abort(e)) => {
                let _ = db.execute("ROLLBACK", &[]).await;
                return Err(e);
            }
        }
    }
}

/// Why an attempt stopped before its commit.
enum Stopped {
    /// An op failed alone: run the batch again without it.
    Rerun,
    /// The transaction failed: retry the batch, or give up.
    Abort(StoreError),
}
use Stopped::{Abort, Rerun};

async fn run_ops(db: &mut dyn Db, batch: &mut [Box<dyn Job>]) -> Result<(), Stopped> {
    for job in batch.iter_mut().filter(|j| !j.failed()) {
        match job.run(db).await {
            Ran::Kept => {}
            Ran::RolledBack => return Err(Rerun),
            Ran::Abort(e) => return Err(Abort(e)),
        }
    }
    Ok(())
}

/// Counts a batch's failed attempts and says when to run it again: a transaction that failed
/// as a whole (a deadlock, a busy file, a lost connection) runs up to [`ATTEMPTS`] times, the
/// pause growing by 5 ms each time; any other outcome stands.
#[derive(Debug, Default)]
pub struct Attempts {
    failed: u32,
}

impl Attempts {
    /// The pause before the next attempt after `result`, or `None` when `result` is final.
    pub fn again(&mut self, result: &Result<(), StoreError>) -> Option<std::time::Duration> {
        match result {
            Err(e) if e.is_transient() && self.failed + 1 < ATTEMPTS => {
                self.failed += 1;
                tracing::debug!(error = %e, failed = self.failed, "group commit retried");
                Some(std::time::Duration::from_millis(5 * u64::from(self.failed)))
            }
            _ => None,
        }
    }
}

/// Answers every caller of the batch; `started` is when its first attempt began.
pub fn answer(
    batch: Vec<Box<dyn Job>>,
    committed: Result<(), StoreError>,
    started: std::time::Instant,
) {
    crate::metrics::store_commit(
        batch.len(),
        started.elapsed().as_secs_f64(),
        committed.is_ok(),
    );
    let committed = committed.map_err(|e| e.to_string());
    for job in batch {
        job.answer(committed.clone());
    }
}

/// A MySQL writer: batches on one pooled connection at a time, until the queue closes.
pub async fn mysql_writer(pool: sqlx::AnyPool, dialect: super::Dialect, jobs: Jobs) {
    while let Ok(first) = jobs.recv().await {
        let mut batch = batch(first, &jobs);
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let mut attempts = Attempts::default();
        let result = loop {
            let result = match pool.acquire().await {
                Ok(mut conn) => {
                    let mut db = super::db::SqlxDb {
                        conn: &mut conn,
                        dialect,
                    };
                    commit(&mut db, &mut batch).await
                }
                Err(e) => Err(e.into()),
            };
            match attempts.again(&result) {
                Some(pause) => tokio::time::sleep(pause).await,
                None => break result,
            }
        };
        answer(batch, result, started);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicU32, Ordering},
            Arc,
        },
        time::Duration,
    };

    use super::{Attempts, GroupCommit, Op, ATTEMPTS, MAX_BATCH};
    use crate::{
        store::{
            db::{Db, P},
            fixtures::sqlite_for_test,
            Store, StoreError,
        },
        validation::ValidUser,
    };

    /// Awaits a write that must be answered: a writer stuck in a loop fails the test rather
    /// than hanging it.
    async fn answered<F: std::future::Future>(write: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), write)
            .await
            .expect("the writer answers within 10 s")
    }

    fn user(n: usize) -> ValidUser {
        ValidUser {
            name: format!("user {n}"),
            email: format!("u{n}@group.test"),
        }
    }

    fn counter(text: &str, name: &str) -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Many callers at once: every write lands, in fewer commits than writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let (store, _dir) = sqlite_for_test().await;
        let metrics = crate::metrics::handle();
        let before = metrics.render();
        let writes = (0..200).map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create_user(&user(n)).await })
        });
        for w in futures_util::future::join_all(writes).await {
            w.unwrap().unwrap();
        }
        let after = metrics.render();
        let delta = |name| counter(&after, name) - counter(&before, name);
        let (commits, written) = (
            delta("reference_store_commits_total"),
            delta("reference_store_commit_writes_total"),
        );
        assert!(written >= 200.0, "{written}");
        assert!(commits < written, "{commits} commits for {written} writes");
        assert_eq!(store.list_users(1, 1).await.unwrap().1, 200);
    }

    /// A write that fails (a taken email) fails alone; the writes batched with it land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_fails_alone() {
        let (store, _dir) = sqlite_for_test().await;
        let writes = (0..50).map(|n| {
            let store = store.clone();
            // Two writes for every email: one of each pair must lose.
            tokio::spawn(async move { store.create_user(&user(n / 2)).await })
        });
        let results: Vec<_> = answered(futures_util::future::join_all(writes))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let duplicates = results
            .iter()
            .filter(|r| matches!(r, Err(crate::store::StoreError::Duplicate)))
            .count();
        assert_eq!(duplicates, 25);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 25);
        assert_eq!(store.list_users(1, 100).await.unwrap().1, 25);
    }

    /// A caller that stops waiting before its write's turn gets nothing written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_nobody_waits_for_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url, Duration::from_secs(5)).await.unwrap();
        // Another connection holds the write lock: the writer waits at its first batch.
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let first = {
            let store = store.clone();
            tokio::spawn(async move { store.create_user(&user(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), store.create_user(&user(2))).await;
        assert!(gave_up.is_err(), "the writer is still blocked");
        holder.execute_batch("COMMIT").unwrap();
        first.await.unwrap().unwrap();
        // One writer takes the queue in order: once a later write is durable, the writer has
        // passed the abandoned one.
        store.create_user(&user(3)).await.unwrap();
        let (users, _) = store.list_users(1, 10).await.unwrap();
        let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
        assert_eq!(emails, ["u1@group.test", "u3@group.test"]);
    }

    /// Inserts a user after failing its first `fails` runs as a deadlock or a busy file would.
    struct Flaky {
        fails: u32,
        runs: Arc<AtomicU32>,
        email: &'static str,
    }

    impl Op for Flaky {
        type Out = ();

        async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
            if self.runs.fetch_add(1, Ordering::SeqCst) < self.fails {
                return Err(StoreError::Unavailable("deadlock".into()));
            }
            db.execute(
                "INSERT INTO users (name, email, created_at, updated_at) VALUES ('f', ?, 0, 0)",
                &[P::T(self.email)],
            )
            .await
            .map(drop)
        }
    }

    async fn flaky(
        store: &Store,
        fails: u32,
        email: &'static str,
    ) -> (Result<(), StoreError>, u32) {
        let runs = Arc::new(AtomicU32::new(0));
        let op = Flaky {
            fails,
            runs: runs.clone(),
            email,
        };
        let result = answered(store.inner.writes.write(op)).await;
        (result, runs.load(Ordering::SeqCst))
    }

    /// A transaction that failed as a whole runs again with every op in it, up to three times
    /// in all; then the failure stands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_failing_as_a_whole_is_run_again_up_to_three_times() {
        let (store, _dir) = sqlite_for_test().await;
        let (ok, runs) = flaky(&store, ATTEMPTS - 1, "again@group.test").await;
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(runs, ATTEMPTS);
        let (failed, runs) = flaky(&store, u32::MAX, "never@group.test").await;
        assert!(
            matches!(failed, Err(StoreError::Unavailable(_))),
            "{failed:?}"
        );
        assert_eq!(runs, ATTEMPTS, "runs before the failure stands");
        let (users, total) = store.list_users(1, 10).await.unwrap();
        assert_eq!(total, 1, "{users:?}");
        assert_eq!(users[0].email, "again@group.test");
    }

    /// The pauses between attempts grow, and neither an op's own failure nor a success is
    /// run again.
    #[test]
    fn attempts_pause_longer_each_time_and_retry_only_transient_failures() {
        let busy = Err(StoreError::Unavailable("busy".into()));
        let mut attempts = Attempts::default();
        assert_eq!(attempts.again(&busy), Some(Duration::from_millis(5)));
        assert_eq!(attempts.again(&busy), Some(Duration::from_millis(10)));
        assert_eq!(attempts.again(&busy), None);
        let mut attempts = Attempts::default();
        assert_eq!(attempts.again(&Err(StoreError::Duplicate)), None);
        assert_eq!(attempts.again(&Ok(())), None);
    }

    /// A batch takes what is queued, up to its limit; the rest waits for the next.
    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_writes() {
        let (queue, jobs) = GroupCommit::new();
        for _ in 0..MAX_BATCH + 10 {
            let queue = queue.clone();
            let op = Flaky {
                fails: 0,
                runs: Arc::default(),
                email: "queued@group.test",
            };
            tokio::spawn(async move { queue.write(op).await });
        }
        while jobs.len() < MAX_BATCH + 10 {
            tokio::task::yield_now().await;
        }
        let first = jobs.recv().await.unwrap();
        assert_eq!(super::batch(first, &jobs).len(), MAX_BATCH);
        assert_eq!(jobs.len(), 10);
    }

    /// Once the store is closed a write is refused, not queued for a writer that has ended.
    #[tokio::test]
    async fn a_closed_store_takes_no_writes() {
        let (store, _dir) = sqlite_for_test().await;
        store.close().await;
        let refused = store.create_user(&user(1)).await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("closed")),
            "{refused:?}"
        );
    }
}
