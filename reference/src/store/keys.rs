//! Idempotency keys: reservations for the submission strategies that publish in the request,
//! and the outbox's whole submission (key, task and outbox row) in one write.

use std::time::Duration;

use super::{
    db::{Db, P},
    group::Op,
    tasks::{insert_task_rows, ms, NewTask},
    Store, StoreError,
};
use crate::{
    idempotency::{KeyLease, Reservation, StoredResponse},
    model::now_ms,
};

/// A key as stored.
struct KeyRow {
    fingerprint: String,
    completed: Option<StoredResponse>,
    locked_at: i64,
}

/// What an existing key means for a request with `fingerprint`.
enum Found {
    Mismatch,
    Replay(StoredResponse),
    /// Held by a request still within its lease.
    InFlight,
    /// Held by a request whose lease ran out: it may be taken over (fenced by `locked_at`).
    Stale {
        locked_at: i64,
    },
}

async fn key_row(db: &mut dyn Db, key: &str) -> Result<Option<KeyRow>, StoreError> {
    let sql = format!(
        "SELECT fingerprint, state, response_status, response_body, location, locked_at \
         FROM idempotency_keys WHERE idem_key = ?{}",
        db.dialect().for_update()
    );
    let Some(row) = db.query_opt(&sql, &[P::T(key)]).await? else {
        return Ok(None);
    };
    let completed = if row.text(1)? == "completed" {
        let status = row.i64(2)?;
        Some(StoredResponse {
            status: u16::try_from(status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            body: row.text(3)?.into_bytes(),
            location: row.opt_text(4)?,
        })
    } else {
        None
    };
    Ok(Some(KeyRow {
        fingerprint: row.text(0)?,
        completed,
        locked_at: row.i64(5)?,
    }))
}

fn classify(row: KeyRow, fingerprint: &str, stale_before: i64) -> Found {
    match row {
        r if r.fingerprint != fingerprint => Found::Mismatch,
        KeyRow {
            completed: Some(response),
            ..
        } => Found::Replay(response),
        r if r.locked_at < stale_before => Found::Stale {
            locked_at: r.locked_at,
        },
        _ => Found::InFlight,
    }
}

/// `locked_at` is the fencing token: it must change even if the clock did not move, or the
/// holder being replaced could still complete the key.
fn next_token(locked_at: i64) -> i64 {
    now_ms().max(locked_at + 1)
}

/// Stores the response under a key the request still holds; [`StoreError::LeaseLost`] when
/// another request took it over.
pub(super) async fn complete_key(
    db: &mut dyn Db,
    lease: &KeyLease,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    let body = String::from_utf8_lossy(&response.body);
    let completed = db
        .execute(
            "UPDATE idempotency_keys SET state = 'completed', response_status = ?, response_body = ?, location = ? \
             WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
            &[
                P::I(i64::from(response.status)),
                P::T(&body),
                P::opt(response.location.as_deref()),
                P::T(&lease.key),
                P::I(lease.token),
            ],
        )
        .await?;
    match completed {
        1 => Ok(()),
        _ => Err(StoreError::LeaseLost),
    }
}

/// Whether this request's key completed (a locking read on MySQL: see `Dialect::for_update`).
pub(super) async fn completed_by(db: &mut dyn Db, lease: &KeyLease) -> Result<bool, StoreError> {
    let sql = format!(
        "SELECT 1 FROM idempotency_keys WHERE idem_key = ? AND state = 'completed' AND locked_at = ?{}",
        db.dialect().for_update()
    );
    Ok(db
        .query_opt(&sql, &[P::T(&lease.key), P::I(lease.token)])
        .await?
        .is_some())
}

/// Reserves a key for a request that publishes in the request (the confirm strategies).
struct ReserveKey {
    key: String,
    fingerprint: String,
    lease: Duration,
}

impl Op for ReserveKey {
    type Out = Reservation;

    async fn apply(&self, db: &mut dyn Db) -> Result<Reservation, StoreError> {
        // A key deleted between our insert and our read (a released reservation) is retried.
        for _ in 0..3 {
            let now = now_ms();
            let inserted = db
                .execute(
                    "INSERT INTO idempotency_keys (idem_key, fingerprint, state, locked_at, created_at) \
                     VALUES (?, ?, 'in_flight', ?, ?)",
                    &[P::T(&self.key), P::T(&self.fingerprint), P::I(now), P::I(now)],
                )
                .await;
            match inserted {
                Ok(_) => return Ok(Reservation::Reserved(lease(&self.key, now))),
                Err(StoreError::Duplicate) => {}
                Err(other) => return Err(other),
            }
            let Some(row) = key_row(db, &self.key).await? else {
                continue;
            };
            return match classify(row, &self.fingerprint, now - ms(self.lease)) {
                Found::Mismatch => Ok(Reservation::Mismatch),
                Found::Replay(r) => Ok(Reservation::Replay(r)),
                Found::InFlight => Ok(Reservation::InFlight),
                Found::Stale { locked_at } => {
                    let token = next_token(locked_at);
                    let taken = db
                        .execute(
                            "UPDATE idempotency_keys SET locked_at = ? WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
                            &[P::I(token), P::T(&self.key), P::I(locked_at)],
                        )
                        .await?;
                    Ok(if taken == 1 {
                        Reservation::Reserved(lease(&self.key, token))
                    } else {
                        Reservation::InFlight
                    })
                }
            };
        }
        Ok(Reservation::InFlight)
    }
}

fn lease(key: &str, token: i64) -> KeyLease {
    KeyLease {
        key: key.to_string(),
        token,
    }
}

/// What an outbox submission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The key, the task and its outbox row are written.
    Accepted,
    /// The key answered before: its response, byte for byte.
    Replay(StoredResponse),
    /// The key was used with another body.
    Mismatch,
    /// Another request holds the key (one that publishes in the request).
    InFlight,
}

/// The outbox strategy's whole submission in one write: the key, completed with `response`,
/// the task and its outbox row. Nothing is ever left half-done, so no lease is held.
struct Submit {
    key: String,
    fingerprint: String,
    task: NewTask,
    response: StoredResponse,
    /// How long another request's in-flight reservation is respected.
    lease: Duration,
}

impl Submit {
    /// Writes the key as completed; false when another process wrote it first.
    async fn insert_key(&self, db: &mut dyn Db, now: i64) -> Result<bool, StoreError> {
        let body = String::from_utf8_lossy(&self.response.body);
        let inserted = db
            .execute(
                "INSERT INTO idempotency_keys (idem_key, fingerprint, state, response_status, response_body, location, locked_at, created_at) \
                 VALUES (?, ?, 'completed', ?, ?, ?, ?, ?)",
                &[
                    P::T(&self.key),
                    P::T(&self.fingerprint),
                    P::I(i64::from(self.response.status)),
                    P::T(&body),
                    P::opt(self.response.location.as_deref()),
                    P::I(now),
                    P::I(now),
                ],
            )
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes over a reservation whose lease ran out and completes it; false when it changed.
    async fn take_over(&self, db: &mut dyn Db, locked_at: i64) -> Result<bool, StoreError> {
        let held = lease(&self.key, next_token(locked_at));
        let taken = db
            .execute(
                "UPDATE idempotency_keys SET locked_at = ? WHERE idem_key = ? AND state = 'in_flight' AND locked_at = ?",
                &[P::I(held.token), P::T(&self.key), P::I(locked_at)],
            )
            .await?;
        if taken != 1 {
            return Ok(false);
        }
        complete_key(db, &held, &self.response).await?;
        Ok(true)
    }
}

impl Op for Submit {
    type Out = Submission;

    async fn apply(&self, db: &mut dyn Db) -> Result<Submission, StoreError> {
        let now = now_ms();
        // Twice at most: a key another process wrote meanwhile is classified again.
        for _ in 0..2 {
            let written = match key_row(db, &self.key).await? {
                None => self.insert_key(db, now).await?,
                Some(row) => match classify(row, &self.fingerprint, now - ms(self.lease)) {
                    Found::Mismatch => return Ok(Submission::Mismatch),
                    Found::Replay(r) => return Ok(Submission::Replay(r)),
                    Found::InFlight => return Ok(Submission::InFlight),
                    Found::Stale { locked_at } => self.take_over(db, locked_at).await?,
                },
            };
            if written {
                insert_task_rows(db, &self.task, true, now).await?;
                return Ok(Submission::Accepted);
            }
        }
        Ok(Submission::InFlight)
    }
}

struct CompleteKey {
    lease: KeyLease,
    response: StoredResponse,
}

impl Op for CompleteKey {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        complete_key(db, &self.lease, &self.response).await
    }
}

impl Store {
    /// Reserves an idempotency key for this request, or says why not.
    pub async fn reserve_key(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
    ) -> Result<Reservation, StoreError> {
        self.write(ReserveKey {
            key: key.into(),
            fingerprint: fingerprint.into(),
            lease,
        })
        .await
    }

    /// Accepts a task under `key` (the outbox strategy): the key completed with `response`,
    /// the task and its outbox row, in one write; or why not.
    pub async fn submit(
        &self,
        key: &str,
        fingerprint: &str,
        task: NewTask,
        response: StoredResponse,
        lease: Duration,
    ) -> Result<Submission, StoreError> {
        self.write(Submit {
            key: key.into(),
            fingerprint: fingerprint.into(),
            task,
            response,
            lease,
        })
        .await
    }

    /// Stores the response of a reserved key.
    pub async fn complete_key(
        &self,
        lease: &KeyLease,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.write(CompleteKey {
            lease: lease.clone(),
            response: response.clone(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{response, sqlite_for_test, task};

    const MINUTE: Duration = Duration::from_secs(60);

    fn row(fingerprint: &str, completed: Option<&StoredResponse>, locked_at: i64) -> KeyRow {
        KeyRow {
            fingerprint: fingerprint.into(),
            completed: completed.cloned(),
            locked_at,
        }
    }

    #[test]
    fn a_key_is_judged_by_its_body_then_its_answer_then_its_lease() {
        let done = response(&task());
        let judge = |r| classify(r, "fp", 100);
        assert!(matches!(
            judge(row("other", Some(&done), 0)),
            Found::Mismatch
        ));
        assert!(matches!(judge(row("fp", Some(&done), 0)), Found::Replay(r) if r == done));
        assert!(matches!(
            judge(row("fp", None, 99)),
            Found::Stale { locked_at: 99 }
        ));
        // A lease that ends this very millisecond still holds.
        assert!(matches!(judge(row("fp", None, 100)), Found::InFlight));
        assert!(matches!(judge(row("fp", None, 101)), Found::InFlight));
    }

    #[test]
    fn a_fencing_token_moves_forward_even_when_the_clock_does_not() {
        let ahead = now_ms() + 3_600_000;
        assert_eq!(next_token(ahead), ahead + 1);
        let before = now_ms();
        assert!(
            next_token(1_000) >= before,
            "an old token gives way to the clock"
        );
    }

    #[tokio::test]
    async fn an_outbox_submission_takes_over_a_reservation_only_once_its_lease_ran_out() {
        let (store, _dir) = sqlite_for_test().await;
        let Reservation::Reserved(held) = store.reserve_key("k", "fp", MINUTE).await.unwrap()
        else {
            panic!("a fresh key is reserved")
        };
        let t = task();
        let submit = |lease| store.submit("k", "fp", t.clone(), response(&t), lease);
        assert_eq!(submit(MINUTE).await.unwrap(), Submission::InFlight);
        assert!(store.get_task(t.id).await.unwrap().is_none());

        // A zero lease is stale once the clock has moved on by a millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(submit(Duration::ZERO).await.unwrap(), Submission::Accepted);
        assert!(store.get_task(t.id).await.unwrap().is_some());
        assert_eq!(store.outbox_backlog().await.unwrap(), 1);
        assert_eq!(
            store.reserve_key("k", "fp", MINUTE).await.unwrap(),
            Reservation::Replay(response(&t)),
            "the key answers with the submission's response"
        );
        let late = store.complete_key(&held, &response(&task())).await;
        assert!(matches!(late, Err(StoreError::LeaseLost)), "{late:?}");
    }

    #[tokio::test]
    async fn purging_forgets_only_the_keys_created_before_the_cutoff_a_batch_at_a_time() {
        let (store, _dir) = sqlite_for_test().await;
        let reserve = |key| store.reserve_key(key, "fp", MINUTE);
        for key in ["old", "older"] {
            assert!(matches!(
                reserve(key).await.unwrap(),
                Reservation::Reserved(_)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cutoff = now_ms();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(
            reserve("new").await.unwrap(),
            Reservation::Reserved(_)
        ));

        assert_eq!(store.purge_keys(cutoff, 1).await.unwrap(), 1, "one at most");
        assert_eq!(store.purge_keys(cutoff, 10).await.unwrap(), 1);
        for key in ["old", "older"] {
            assert!(
                matches!(reserve(key).await.unwrap(), Reservation::Reserved(_)),
                "a purged key is free again"
            );
        }
        assert_eq!(reserve("new").await.unwrap(), Reservation::InFlight);
        assert_eq!(store.purge_keys(cutoff, 10).await.unwrap(), 0);
    }
}
