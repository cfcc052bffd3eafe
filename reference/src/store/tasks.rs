//! Tasks, their idempotency keys, the outbox and the worker's state transitions.

use std::time::Duration;

use super::{
    db::{Db, Row, P},
    deliveries,
    group::Op,
    keys, Store, StoreError,
};
use crate::{
    idempotency::{KeyLease, StoredResponse},
    message::TaskMessage,
    model::{now_ms, rfc3339, Account, CreditPayload, Task, TaskSpec, TaskStatus},
};

/// A task about to be written by the API.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: uuid::Uuid,
    pub spec: TaskSpec,
    pub callback_url: Option<String>,
}

impl NewTask {
    pub fn message(&self) -> TaskMessage {
        TaskMessage {
            task_id: self.id,
            spec: self.spec.clone(),
        }
    }
}

/// An outbox row leased to one relay.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub task_id: String,
    pub routing_key: String,
    pub body: Vec<u8>,
}

/// Outbox rows leased to one relay, and the lease's owner id that fences their settlement.
#[derive(Debug, Clone)]
pub struct OutboxClaim {
    pub owner: String,
    pub rows: Vec<OutboxRow>,
}

/// What starting an attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// No such task (e.g. its publish was abandoned after the message left).
    Missing,
    /// The task already ended; only a naive worker processes it again.
    Terminal { status: TaskStatus, attempts: i64 },
    /// The task is RUNNING with this attempt number (1 for the first).
    Started { attempts: i64 },
}

/// The end of a task, written with its effect in one transaction.
#[derive(Debug, Clone)]
pub struct Finish {
    pub task_id: uuid::Uuid,
    pub status: TaskStatus,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The credit to apply, for `credit` tasks that succeed.
    pub credit: Option<CreditPayload>,
    /// Record the message as processed (the `store` dedupe strategy).
    pub mark_processed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishOutcome {
    Done,
    /// The processed mark was already there: nothing was applied again.
    AlreadyProcessed,
}

const TASK_COLUMNS: &str =
    "id, kind, payload, callback_url, status, attempts, result, error, created_at, updated_at";

fn task_from_row(row: &Row) -> Result<Task, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("task {what}: {e}"));
    let id = row.text(0)?;
    let payload = row.text(2)?;
    let status = row.text(4)?;
    let result = row.opt_text(6)?;
    Ok(Task {
        id: id.parse().map_err(|e| corrupt("id", &e))?,
        kind: row.text(1)?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("payload", &e))?,
        callback_url: row.opt_text(3)?,
        status: TaskStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        attempts: row.i64(5)?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("result", &e))?,
        error: row.opt_text(7)?,
        created_at: rfc3339(row.i64(8)?),
        updated_at: rfc3339(row.i64(9)?),
    })
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn task_by_id(db: &mut dyn Db, id: &str) -> Result<Option<Task>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?");
    db.query_opt(&sql, &[P::T(id)])
        .await?
        .as_ref()
        .map(task_from_row)
        .transpose()
}

/// Writes a PENDING task and, with `outbox`, its outbox row.
pub(super) async fn insert_task_rows(
    db: &mut dyn Db,
    task: &NewTask,
    outbox: bool,
    now: i64,
) -> Result<(), StoreError> {
    let id = task.id.to_string();
    let payload = task.spec.payload().to_string();
    db.execute(
        &format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, 'PENDING', 0, NULL, NULL, ?, ?)"),
        &[
            P::T(&id),
            P::T(task.spec.kind()),
            P::T(&payload),
            P::opt(task.callback_url.as_deref()),
            P::I(now),
            P::I(now),
        ],
    )
    .await?;
    if outbox {
        let message = task.message();
        let body = String::from_utf8(message.encode()).expect("JSON is UTF-8");
        db.execute(
            "INSERT INTO outbox (task_id, routing_key, body, created_at) VALUES (?, ?, ?, ?)",
            &[
                P::T(&id),
                P::T(&message.routing_key()),
                P::T(&body),
                P::I(now),
            ],
        )
        .await?;
    }
    Ok(())
}

/// A task, its outbox row with `outbox`, and with `completion` its key's response: all or
/// nothing, so that a key lost to another request writes nothing and publishes nothing.
struct InsertTask {
    task: NewTask,
    outbox: bool,
    completion: Option<(KeyLease, StoredResponse)>,
}

impl Op for InsertTask {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        insert_task_rows(db, &self.task, self.outbox, now_ms()).await?;
        if let Some((lease, response)) = &self.completion {
            keys::complete_key(db, lease, response).await?;
        }
        Ok(())
    }
}

/// Undoes a submission that did not finish; see [`Store::abandon_submission`].
struct AbandonSubmission {
    lease: KeyLease,
    task_id: String,
    response: StoredResponse,
    published: bool,
}

impl Op for AbandonSubmission {
    type Out = Abandoned;

    async fn apply(&self, db: &mut dyn Db) -> Result<Abandoned, StoreError> {
        if keys::completed_by(db, &self.lease).await? {
            return Ok(Abandoned::Kept);
        }
        // Deleted only while no worker has touched it; otherwise it is under way.
        let deleted = !self.published
            && db
                .execute(
                    "DELETE FROM tasks WHERE id = ? AND status = 'PENDING' AND attempts = 0",
                    &[P::T(&self.task_id)],
                )
                .await?
                == 1;
        let started = !deleted
            && db
                .query_opt("SELECT 1 FROM tasks WHERE id = ?", &[P::T(&self.task_id)])
                .await?
                .is_some();
        if started {
            keys::complete_key(db, &self.lease, &self.response).await?;
            return Ok(Abandoned::Kept);
        }
        db.execute(
            "DELETE FROM idempotency_keys WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
            &[P::T(&self.lease.key), P::I(self.lease.token)],
        )
        .await?;
        Ok(Abandoned::Undone)
    }
}

struct GetTask(String);

impl Op for GetTask {
    type Out = Option<Task>;

    async fn apply(&self, db: &mut dyn Db) -> Result<Option<Task>, StoreError> {
        task_by_id(db, &self.0).await
    }
}

struct GetAccount(String);

impl Op for GetAccount {
    type Out = Option<Account>;

    async fn apply(&self, db: &mut dyn Db) -> Result<Option<Account>, StoreError> {
        let row = db
            .query_opt(
                "SELECT id, balance FROM accounts WHERE id = ?",
                &[P::T(&self.0)],
            )
            .await?;
        row.map(|r| {
            Ok(Account {
                id: r.text(0)?,
                balance: r.i64(1)?,
            })
        })
        .transpose()
    }
}

/// Leases up to `limit` unleased outbox rows, oldest first. The rows are read and leased in
/// the same write transaction (on MySQL with a locking read), so two relays never publish the
/// same row at once; a relay that dies leaves rows that another takes over once the lease
/// expires. The lease is one conditional UPDATE on the rows' id range: rows in that range that
/// another relay holds keep their lease.
struct ClaimOutbox {
    limit: u32,
    lease: Duration,
}

impl Op for ClaimOutbox {
    type Out = OutboxClaim;

    async fn apply(&self, db: &mut dyn Db) -> Result<OutboxClaim, StoreError> {
        let now = now_ms();
        let sql = format!(
            "SELECT id, task_id, routing_key, body FROM outbox WHERE lease_until < ? ORDER BY id LIMIT ?{}",
            db.dialect().for_update()
        );
        let rows = db
            .query(&sql, &[P::I(now), P::I(i64::from(self.limit))])
            .await?;
        let owner = uuid::Uuid::new_v4().to_string();
        let rows = rows
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    id: r.i64(0)?,
                    task_id: r.text(1)?,
                    routing_key: r.text(2)?,
                    body: r.text(3)?.into_bytes(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            db.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id >= ? AND id <= ? AND lease_until < ?",
                &[P::T(&owner), P::I(now + ms(self.lease)), P::I(first.id), P::I(last.id), P::I(now)],
            )
            .await?;
        }
        Ok(OutboxClaim { owner, rows })
    }
}

/// Deletes published rows and gives the others back, touching only rows `owner` still holds:
/// a relay whose lease expired must not settle rows another relay has since claimed.
struct SettleOutbox {
    owner: String,
    published: Vec<i64>,
    unpublished: Vec<i64>,
}

impl Op for SettleOutbox {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        for id in &self.published {
            db.execute(
                "DELETE FROM outbox WHERE id = ? AND lease_owner = ?",
                &[P::I(*id), P::T(&self.owner)],
            )
            .await?;
        }
        for id in &self.unpublished {
            db.execute(
                "UPDATE outbox SET lease_until = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
                &[P::I(*id), P::T(&self.owner)],
            )
            .await?;
        }
        Ok(())
    }
}

struct OutboxBacklog;

impl Op for OutboxBacklog {
    type Out = i64;

    async fn apply(&self, db: &mut dyn Db) -> Result<i64, StoreError> {
        db.query_one("SELECT COUNT(*) FROM outbox", &[])
            .await?
            .i64(0)
    }
}

struct IsProcessed(String);

impl Op for IsProcessed {
    type Out = bool;

    async fn apply(&self, db: &mut dyn Db) -> Result<bool, StoreError> {
        Ok(db
            .query_opt(
                "SELECT 1 FROM processed_messages WHERE message_id = ?",
                &[P::T(&self.0)],
            )
            .await?
            .is_some())
    }
}

/// Moves a task to RUNNING and counts the attempt, unless it already ended.
struct StartAttempt(String);

impl Op for StartAttempt {
    type Out = StartOutcome;

    async fn apply(&self, db: &mut dyn Db) -> Result<StartOutcome, StoreError> {
        db.execute(
            "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, updated_at = ? \
             WHERE id = ? AND status IN ('PENDING', 'RUNNING')",
            &[P::I(now_ms()), P::T(&self.0)],
        )
        .await?;
        let Some(row) = db
            .query_opt(
                "SELECT status, attempts FROM tasks WHERE id = ?",
                &[P::T(&self.0)],
            )
            .await?
        else {
            return Ok(StartOutcome::Missing);
        };
        let status = row.text(0)?;
        let attempts = row.i64(1)?;
        match TaskStatus::parse(&status) {
            Some(TaskStatus::Running) => Ok(StartOutcome::Started { attempts }),
            Some(status) => Ok(StartOutcome::Terminal { status, attempts }),
            None => Err(StoreError::Corrupt(format!("task status {status}"))),
        }
    }
}

/// Records a failed attempt that will be retried: back to PENDING with the error.
struct RetryLater {
    task_id: String,
    error: String,
}

impl Op for RetryLater {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        db.execute(
            "UPDATE tasks SET status = 'PENDING', error = ?, updated_at = ? WHERE id = ? AND status = 'RUNNING'",
            &[P::T(&self.error), P::I(now_ms()), P::T(&self.task_id)],
        )
        .await
        .map(drop)
    }
}

/// Ends a task: the processed mark (first, so that a duplicate stops there), the credit, the
/// status, and the callback and event owed, all in one transaction.
struct FinishTask(Finish);

impl Op for FinishTask {
    type Out = FinishOutcome;

    async fn apply(&self, db: &mut dyn Db) -> Result<FinishOutcome, StoreError> {
        let f = &self.0;
        let id = f.task_id.to_string();
        let now = now_ms();
        if f.mark_processed {
            let marked = db
                .execute(
                    "INSERT INTO processed_messages (message_id, processed_at) VALUES (?, ?)",
                    &[P::T(&id), P::I(now)],
                )
                .await;
            match marked {
                Ok(_) => {}
                Err(StoreError::Duplicate) => return Ok(FinishOutcome::AlreadyProcessed),
                Err(e) => return Err(e),
            }
        }
        if let Some(credit) = &f.credit {
            db.execute(
                db.dialect().credit_upsert(),
                &[P::T(&credit.account), P::I(credit.amount), P::I(now)],
            )
            .await?;
        }
        let result = f.result.as_ref().map(|r| r.to_string());
        db.execute(
            "UPDATE tasks SET status = ?, result = ?, error = ?, updated_at = ? WHERE id = ?",
            &[
                P::T(f.status.as_str()),
                P::opt(result.as_deref()),
                P::opt(f.error.as_deref()),
                P::I(now),
                P::T(&id),
            ],
        )
        .await?;
        let task = task_by_id(db, &id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("task {id} vanished while it finished")))?;
        deliveries::insert_for(db, &task, now).await?;
        Ok(FinishOutcome::Done)
    }
}

impl Store {
    /// Writes a PENDING task; with `outbox`, also its outbox row; with `completion`, also the
    /// idempotency key's response. All in one transaction: a key lost to another request
    /// writes nothing, so nothing is published.
    pub async fn insert_task(
        &self,
        task: &NewTask,
        outbox: bool,
        completion: Option<(&KeyLease, &StoredResponse)>,
    ) -> Result<(), StoreError> {
        self.write(InsertTask {
            task: task.clone(),
            outbox,
            completion: completion.map(|(l, r)| (l.clone(), r.clone())),
        })
        .await
    }

    /// Undoes a submission that did not finish (an error, or the caller gave up waiting).
    ///
    /// What happens depends on how far it got: a key this request already completed keeps its
    /// task (the commit landed as the caller gave up); a task whose message was `published`,
    /// or that a worker has already started (its message got through although the publish
    /// reported a failure), is kept and the key completed with `response`, so that a retry
    /// replays it instead of making a second task; any other task is deleted and the key freed,
    /// so a retry starts afresh. A key another request holds now is left alone.
    pub async fn abandon_submission(
        &self,
        lease: &KeyLease,
        task_id: uuid::Uuid,
        response: &StoredResponse,
        published: bool,
    ) -> Result<Abandoned, StoreError> {
        self.write(AbandonSubmission {
            lease: lease.clone(),
            task_id: task_id.to_string(),
            response: response.clone(),
            published,
        })
        .await
    }

    pub async fn get_task(&self, id: uuid::Uuid) -> Result<Option<Task>, StoreError> {
        self.read(GetTask(id.to_string())).await
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.read(GetAccount(id.to_string())).await
    }

    /// Leases up to `limit` unleased outbox rows, oldest first, for `lease`.
    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<OutboxClaim, StoreError> {
        self.write(ClaimOutbox { limit, lease }).await
    }

    /// Deletes published rows and returns the others to the pool at once; only rows `owner`
    /// still leases are touched.
    pub async fn settle_outbox(
        &self,
        owner: &str,
        published: &[i64],
        unpublished: &[i64],
    ) -> Result<(), StoreError> {
        self.write(SettleOutbox {
            owner: owner.to_string(),
            published: published.to_vec(),
            unpublished: unpublished.to_vec(),
        })
        .await
    }

    /// Rows not yet published.
    pub async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        self.read(OutboxBacklog).await
    }

    pub async fn is_processed(&self, message_id: &str) -> Result<bool, StoreError> {
        self.read(IsProcessed(message_id.to_string())).await
    }

    /// Moves a task to RUNNING and counts the attempt, unless it already ended.
    pub async fn start_attempt(&self, task_id: uuid::Uuid) -> Result<StartOutcome, StoreError> {
        self.write(StartAttempt(task_id.to_string())).await
    }

    /// Records a failed attempt that will be retried: back to PENDING with the error.
    pub async fn retry_later(&self, task_id: uuid::Uuid, error: &str) -> Result<(), StoreError> {
        self.write(RetryLater {
            task_id: task_id.to_string(),
            error: error.to_string(),
        })
        .await
    }

    /// Ends a task with its effect, its processed mark and the deliveries it owes.
    pub async fn finish(&self, f: &Finish) -> Result<FinishOutcome, StoreError> {
        self.write(FinishTask(f.clone())).await
    }
}

/// What undoing a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// Nothing of it remains; its key is free for a retry.
    Undone,
    /// Its task is under way and its key answers with the submission's response.
    Kept,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        idempotency::Reservation,
        store::fixtures::{response, sqlite_for_test, task},
    };

    async fn reserve(store: &Store, lease: Duration) -> Reservation {
        store.reserve_key("k", "fp", lease).await.unwrap()
    }

    /// Request A holds the key; its lease expires and request B takes the key over.
    async fn taken_over(store: &Store) -> (KeyLease, KeyLease) {
        let Reservation::Reserved(a) = reserve(store, Duration::ZERO).await else {
            panic!("a fresh key is reserved")
        };
        // A zero lease is stale once the clock has moved on by a millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Reservation::Reserved(b) = reserve(store, Duration::ZERO).await else {
            panic!("a stale reservation is taken over")
        };
        assert_ne!(a.token, b.token);
        (a, b)
    }

    #[tokio::test]
    async fn a_request_whose_key_was_taken_over_writes_nothing() {
        let (store, _dir) = sqlite_for_test().await;
        let (a, b) = taken_over(&store).await;
        let (t1, t2) = (task(), task());
        store
            .insert_task(&t2, true, Some((&b, &response(&t2))))
            .await
            .unwrap();
        let late = store
            .insert_task(&t1, true, Some((&a, &response(&t1))))
            .await;
        assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
        assert!(store.get_task(t1.id).await.unwrap().is_none());
        assert_eq!(
            store.outbox_backlog().await.unwrap(),
            1,
            "only B's task is published"
        );
        assert_eq!(
            reserve(&store, Duration::from_secs(60)).await,
            Reservation::Replay(response(&t2)),
            "the key keeps B's response"
        );
    }

    #[tokio::test]
    async fn a_superseded_request_cannot_release_the_new_holder_s_key() {
        let (store, _dir) = sqlite_for_test().await;
        let (a, b) = taken_over(&store).await;
        let (t1, t2) = (task(), task());
        store.insert_task(&t1, false, None).await.unwrap();
        store.insert_task(&t2, false, None).await.unwrap();
        store
            .abandon_submission(&a, t1.id, &response(&t1), false)
            .await
            .unwrap();
        assert!(
            store.get_task(t1.id).await.unwrap().is_none(),
            "A's task is undone"
        );
        assert_eq!(
            reserve(&store, Duration::from_secs(60)).await,
            Reservation::InFlight,
            "B still holds the key"
        );
        store.complete_key(&b, &response(&t2)).await.unwrap();
        store
            .abandon_submission(&b, t2.id, &response(&t2), false)
            .await
            .unwrap();
        assert!(
            store.get_task(t2.id).await.unwrap().is_some(),
            "a submission whose key completed is kept"
        );
    }

    #[tokio::test]
    async fn a_relay_s_lease_holds_for_its_duration_and_then_lapses() {
        let (store, _dir) = sqlite_for_test().await;
        store.insert_task(&task(), true, None).await.unwrap();
        let lease = Duration::from_secs(2);
        let claim = || store.claim_outbox(10, lease);
        assert_eq!(claim().await.unwrap().rows.len(), 1);
        assert!(
            claim().await.unwrap().rows.is_empty(),
            "another relay waits while the lease runs"
        );
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert_eq!(
            claim().await.unwrap().rows.len(),
            1,
            "a lapsed lease is taken over"
        );
    }

    #[tokio::test]
    async fn a_relay_whose_lease_expired_cannot_settle_rows_another_relay_holds() {
        let (store, _dir) = sqlite_for_test().await;
        store.insert_task(&task(), true, None).await.unwrap();
        let late = store.claim_outbox(10, Duration::ZERO).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let current = store
            .claim_outbox(10, Duration::from_secs(60))
            .await
            .unwrap();
        let ids: Vec<i64> = current.rows.iter().map(|r| r.id).collect();
        assert_eq!(late.rows.iter().map(|r| r.id).collect::<Vec<_>>(), ids);

        store.settle_outbox(&late.owner, &ids, &[]).await.unwrap();
        store.settle_outbox(&late.owner, &[], &ids).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 1, "not deleted");
        let again = store
            .claim_outbox(10, Duration::from_secs(60))
            .await
            .unwrap();
        assert!(again.rows.is_empty(), "not released from the current lease");

        store
            .settle_outbox(&current.owner, &ids, &[])
            .await
            .unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    }
}
