//! Tasks, their idempotency keys, the outbox and the worker's state transitions.

use std::time::Duration;

use sqlx::{any::AnyRow, Row};

use super::{deliveries, opt_text, text, Dialect, Store, StoreError, Tx};
use crate::{
    idempotency::{KeyLease, Reservation, StoredResponse},
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

fn task_from_row(row: &AnyRow) -> Result<Task, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("task {what}: {e}"));
    let id: String = row.try_get("id")?;
    let payload = text(row, "payload")?;
    let status: String = row.try_get("status")?;
    let result = opt_text(row, "result")?;
    Ok(Task {
        id: id.parse().map_err(|e| corrupt("id", &e))?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("payload", &e))?,
        callback_url: opt_text(row, "callback_url")?,
        status: TaskStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        attempts: row.try_get("attempts")?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| corrupt("result", &e))?,
        error: opt_text(row, "error")?,
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

fn key_lease(key: &str, token: i64) -> KeyLease {
    KeyLease {
        key: key.to_string(),
        token,
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Reserves an idempotency key for this request, or says why not.
    pub async fn reserve_key(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
    ) -> Result<Reservation, StoreError> {
        // A key deleted between our insert and our read (a released reservation) is retried.
        for _ in 0..3 {
            let now = now_ms();
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (idem_key, fingerprint, state, locked_at, created_at) \
                 VALUES (?, ?, 'in_flight', ?, ?)",
            )
            .bind(key)
            .bind(fingerprint)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) => return Ok(Reservation::Reserved(key_lease(key, now))),
                Err(e) => match StoreError::from(e) {
                    StoreError::Duplicate => {}
                    other => return Err(other),
                },
            }
            if let Some(found) = self
                .existing_key(key, fingerprint, now - duration_ms(lease))
                .await?
            {
                return Ok(found);
            }
        }
        Ok(Reservation::InFlight)
    }

    /// Classifies an existing key; takes over an in-flight reservation older than `stale_before`.
    async fn existing_key(
        &self,
        key: &str,
        fingerprint: &str,
        stale_before: i64,
    ) -> Result<Option<Reservation>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, state, response_status, response_body, location, locked_at \
             FROM idempotency_keys WHERE idem_key = ?",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored_fp: String = row.try_get("fingerprint")?;
        if stored_fp != fingerprint {
            return Ok(Some(Reservation::Mismatch));
        }
        let state: String = row.try_get("state")?;
        if state == "completed" {
            let status: i64 = row.try_get("response_status")?;
            let body = text(&row, "response_body")?;
            return Ok(Some(Reservation::Replay(StoredResponse {
                status: u16::try_from(status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                body: body.into_bytes(),
                location: opt_text(&row, "location")?,
            })));
        }
        let locked_at: i64 = row.try_get("locked_at")?;
        if locked_at < stale_before {
            // `locked_at` is the fencing token: it must change even if the clock did not move,
            // or the holder we replace could still complete the key.
            let token = now_ms().max(locked_at + 1);
            let taken = sqlx::query(
                "UPDATE idempotency_keys SET locked_at = ? WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
            )
            .bind(token)
            .bind(key)
            .bind(locked_at)
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Some(Reservation::Reserved(key_lease(key, token))));
            }
        }
        Ok(Some(Reservation::InFlight))
    }

    /// Stores the response under a key this request still holds; [`StoreError::LeaseLost`] when
    /// another request took it over, so that the caller's transaction rolls back.
    async fn complete_key_in(
        tx: &mut Tx,
        lease: &KeyLease,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let completed = sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', response_status = ?, response_body = ?, location = ? \
             WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
        )
        .bind(i64::from(response.status))
        .bind(String::from_utf8_lossy(&response.body).into_owned())
        .bind(response.location.clone())
        .bind(&lease.key)
        .bind(lease.token)
        .execute(&mut **tx)
        .await?;
        match completed.rows_affected() {
            1 => Ok(()),
            _ => Err(StoreError::LeaseLost),
        }
    }

    /// Stores the response of a reserved key.
    pub async fn complete_key(
        &self,
        lease: &KeyLease,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        Self::complete_key_in(&mut tx, lease, response).await?;
        Ok(tx.commit().await?)
    }

    /// Forgets keys created before `before_ms`, abandoned reservations included; returns how many.
    pub async fn purge_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Writes a PENDING task; with `outbox`, also its outbox row; with `completion`, also the
    /// idempotency key's response. All in one transaction: a key lost to another request
    /// writes nothing, so nothing is published.
    pub async fn insert_task(
        &self,
        task: &NewTask,
        outbox: bool,
        completion: Option<(&KeyLease, &StoredResponse)>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, 'PENDING', 0, NULL, NULL, ?, ?)"
        ))
        .bind(task.id.to_string())
        .bind(task.spec.kind())
        .bind(task.spec.payload().to_string())
        .bind(task.callback_url.clone())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if outbox {
            let message = task.message();
            sqlx::query(
                "INSERT INTO outbox (task_id, routing_key, body, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(task.id.to_string())
            .bind(message.routing_key())
            .bind(String::from_utf8(message.encode()).expect("JSON is UTF-8"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((lease, response)) = completion {
            Self::complete_key_in(&mut tx, lease, response).await?;
        }
        Ok(tx.commit().await?)
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
        let mut tx = self.begin().await?;
        if self.key_completed_by(&mut tx, lease).await? {
            return Ok(Abandoned::Kept);
        }
        // Deleted only while no worker has touched it; otherwise it is under way.
        let deleted = !published
            && sqlx::query(
                "DELETE FROM tasks WHERE id = ? AND status = 'PENDING' AND attempts = 0",
            )
            .bind(task_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        let started = !deleted
            && sqlx::query("SELECT 1 AS one FROM tasks WHERE id = ?")
                .bind(task_id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        let outcome = if started {
            Self::complete_key_in(&mut tx, lease, response).await?;
            Abandoned::Kept
        } else {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
            )
            .bind(&lease.key)
            .bind(lease.token)
            .execute(&mut *tx)
            .await?;
            Abandoned::Undone
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whether this request's key completed. On MySQL a locking read (`FOR UPDATE`): a plain
    /// read sees the transaction's snapshot, which misses a submission committing right now,
    /// and the task would then be deleted under a completed key. SQLite's write transactions
    /// are serialised (`BEGIN IMMEDIATE`), so its plain read is already current.
    async fn key_completed_by(&self, tx: &mut Tx, lease: &KeyLease) -> Result<bool, StoreError> {
        let lock = match self.dialect {
            Dialect::MySql => " FOR UPDATE",
            Dialect::Sqlite => "",
        };
        Ok(sqlx::query(&format!(
            "SELECT 1 AS one FROM idempotency_keys WHERE idem_key = ? AND state = 'completed' AND locked_at = ?{lock}",
        ))
        .bind(&lease.key)
        .bind(lease.token)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
    }

    pub async fn get_task(&self, id: uuid::Uuid) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    pub async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT id, balance FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Account {
                id: r.try_get("id")?,
                balance: r.try_get("balance")?,
            })
        })
        .transpose()
    }

    /// Leases up to `limit` unleased outbox rows, oldest first, for `lease`.
    ///
    /// The lease is taken on an id range with one conditional UPDATE, so two relays never
    /// publish the same row at once; a relay that dies leaves rows that another takes over
    /// once the lease expires.
    pub async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<OutboxClaim, StoreError> {
        let now = now_ms();
        let ids: Vec<i64> =
            sqlx::query("SELECT id FROM outbox WHERE lease_until < ? ORDER BY id LIMIT ?")
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?;
        let owner = uuid::Uuid::new_v4().to_string();
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(OutboxClaim {
                owner,
                rows: Vec::new(),
            });
        };
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id >= ? AND id <= ? AND lease_until < ?")
            .bind(&owner)
            .bind(now + duration_ms(lease))
            .bind(first)
            .bind(last)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT id, task_id, routing_key, body FROM outbox WHERE lease_owner = ? ORDER BY id",
        )
        .bind(&owner)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let rows = rows
            .iter()
            .map(|r| {
                let body = text(r, "body")?;
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    task_id: r.try_get("task_id")?,
                    routing_key: r.try_get("routing_key")?,
                    body: body.into_bytes(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(OutboxClaim { owner, rows })
    }

    /// Deletes published rows and returns the others to the pool at once. Only rows `owner`
    /// still leases are touched: a relay whose lease expired must not settle rows that another
    /// relay has since claimed and may still be publishing.
    pub async fn settle_outbox(
        &self,
        owner: &str,
        published: &[i64],
        unpublished: &[i64],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for id in published {
            sqlx::query("DELETE FROM outbox WHERE id = ? AND lease_owner = ?")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        for id in unpublished {
            sqlx::query(
                "UPDATE outbox SET lease_until = 0, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
            )
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }

    /// Rows not yet published.
    pub async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn is_processed(&self, message_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM processed_messages WHERE message_id = ?")
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Moves a task to RUNNING and counts the attempt, unless it already ended.
    pub async fn start_attempt(&self, task_id: uuid::Uuid) -> Result<StartOutcome, StoreError> {
        let id = task_id.to_string();
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, updated_at = ? \
             WHERE id = ? AND status IN ('PENDING', 'RUNNING')",
        )
        .bind(now_ms())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT status, attempts FROM tasks WHERE id = ?")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        let Some(row) = row else {
            return Ok(StartOutcome::Missing);
        };
        let status: String = row.try_get("status")?;
        let attempts: i64 = row.try_get("attempts")?;
        match TaskStatus::parse(&status) {
            Some(TaskStatus::Running) => Ok(StartOutcome::Started { attempts }),
            Some(status) => Ok(StartOutcome::Terminal { status, attempts }),
            None => Err(StoreError::Corrupt(format!("task status {status}"))),
        }
    }

    /// Records a failed attempt that will be retried: back to PENDING with the error.
    pub async fn retry_later(&self, task_id: uuid::Uuid, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET status = 'PENDING', error = ?, updated_at = ? WHERE id = ? AND status = 'RUNNING'")
            .bind(error)
            .bind(now_ms())
            .bind(task_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a task: the processed mark (first, so a duplicate stops here), the credit, the
    /// status, and the callback and event owed, all in one transaction.
    pub async fn finish(&self, f: &Finish) -> Result<FinishOutcome, StoreError> {
        let id = f.task_id.to_string();
        let now = now_ms();
        let mut tx = self.begin().await?;
        if f.mark_processed {
            let marked = sqlx::query(
                "INSERT INTO processed_messages (message_id, processed_at) VALUES (?, ?)",
            )
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match marked.map_err(StoreError::from) {
                Ok(_) => {}
                Err(StoreError::Duplicate) => return Ok(FinishOutcome::AlreadyProcessed),
                Err(e) => return Err(e),
            }
        }
        if let Some(credit) = &f.credit {
            sqlx::query(self.dialect.credit_upsert())
                .bind(&credit.account)
                .bind(credit.amount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE tasks SET status = ?, result = ?, error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(f.status.as_str())
        .bind(f.result.as_ref().map(|r| r.to_string()))
        .bind(f.error.clone())
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        let task = task_from_row(&row)?;
        deliveries::insert_for(&mut tx, self.dialect, &task, now).await?;
        tx.commit().await?;
        Ok(FinishOutcome::Done)
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

    /// A store on a SQLite file of its own; the directory lives as long as the store is used.
    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (
            Store::connect(&url, Duration::from_secs(5)).await.unwrap(),
            dir,
        )
    }

    fn task() -> NewTask {
        NewTask {
            id: uuid::Uuid::now_v7(),
            spec: TaskSpec::Echo(serde_json::json!({"n": 1})),
            callback_url: None,
        }
    }

    fn response(task: &NewTask) -> StoredResponse {
        StoredResponse {
            status: 202,
            body: task.id.to_string().into_bytes(),
            location: None,
        }
    }

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
        let (store, _dir) = store().await;
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
        let (store, _dir) = store().await;
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
    async fn a_relay_whose_lease_expired_cannot_settle_rows_another_relay_holds() {
        let (store, _dir) = store().await;
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
