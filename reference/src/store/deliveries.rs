//! Callbacks and events owed for finished tasks (a second outbox, drained by the worker).

use std::time::Duration;

use super::{
    db::{Db, P},
    group::Op,
    Store, StoreError,
};
use crate::{
    callbacks::TaskEvent,
    model::{now_ms, Task},
};

/// What a delivery row targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewDelivery {
    /// POST to the task's `callback_url`.
    Callback { url: String },
    /// Publish on the events exchange with this routing key.
    Event { routing_key: String },
}

impl NewDelivery {
    fn kind(&self) -> &'static str {
        match self {
            NewDelivery::Callback { .. } => "callback",
            NewDelivery::Event { .. } => "event",
        }
    }

    fn target(&self) -> &str {
        match self {
            NewDelivery::Callback { url } => url,
            NewDelivery::Event { routing_key } => routing_key,
        }
    }
}

/// A due delivery leased to one dispatcher.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    pub target: String,
    pub body: Vec<u8>,
    /// Attempts already made before this one.
    pub attempts: i64,
}

/// Writes the event and, when the task has one, the callback, inside the finishing transaction.
/// Ignored when already there: a duplicate finish owes nothing new.
pub(super) async fn insert_for(db: &mut dyn Db, task: &Task, now: i64) -> Result<(), StoreError> {
    let event = TaskEvent::for_task(task);
    let body = serde_json::to_string(&event).expect("event serialises");
    let mut owed = vec![NewDelivery::Event {
        routing_key: event.kind.clone(),
    }];
    if let Some(url) = &task.callback_url {
        owed.push(NewDelivery::Callback { url: url.clone() });
    }
    let sql = format!(
        "{} INTO deliveries (task_id, event_id, kind, target, body, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
        db.dialect().insert_ignore()
    );
    let (task_id, event_id) = (task.id.to_string(), event.event_id.to_string());
    for d in owed {
        db.execute(
            &sql,
            &[
                P::T(&task_id),
                P::T(&event_id),
                P::T(d.kind()),
                P::T(d.target()),
                P::T(&body),
                P::I(now),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Leases up to `limit` due deliveries. On MySQL the rows are read with a locking read, so
/// that another process's claim waits instead of taking them too.
struct ClaimDeliveries {
    limit: u32,
    lease: Duration,
}

impl Op for ClaimDeliveries {
    type Out = Vec<DeliveryRow>;

    async fn apply(&self, db: &mut dyn Db) -> Result<Vec<DeliveryRow>, StoreError> {
        let now = now_ms();
        let lease_until = now + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, event_id, kind, target, body, attempts FROM deliveries \
             WHERE state = 'pending' AND next_attempt_at <= ? AND lease_until < ? ORDER BY next_attempt_at LIMIT ?{}",
            db.dialect().for_update()
        );
        let rows = db
            .query(&sql, &[P::I(now), P::I(now), P::I(i64::from(self.limit))])
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id = r.i64(0)?;
            let taken = db
                .execute(
                    "UPDATE deliveries SET lease_until = ? WHERE id = ? AND lease_until < ?",
                    &[P::I(lease_until), P::I(id), P::I(now)],
                )
                .await?;
            if taken == 1 {
                claimed.push(DeliveryRow {
                    id,
                    event_id: r.text(1)?,
                    kind: r.text(2)?,
                    target: r.text(3)?,
                    body: r.text(4)?.into_bytes(),
                    attempts: r.i64(5)?,
                });
            }
        }
        Ok(claimed)
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; retried after the delay, or given up when `None`.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
}

/// Records the outcomes of a dispatcher's batch in one write. A delivered row's
/// `next_attempt_at` records when (as for a given-up one), so that retention counts a
/// finished row's age from when it finished.
struct RecordDeliveries(Vec<(i64, DeliveryOutcome)>);

impl Op for RecordDeliveries {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        let now = now_ms();
        for (id, outcome) in &self.0 {
            match outcome {
                DeliveryOutcome::Delivered => {
                    db.execute(
                        "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, next_attempt_at = ?, last_error = NULL WHERE id = ?",
                        &[P::I(now), P::I(*id)],
                    )
                    .await?;
                }
                DeliveryOutcome::Failed { error, retry_in } => {
                    let (state, next) = match retry_in {
                        Some(d) => (
                            "pending",
                            now + i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                        ),
                        None => ("given_up", now),
                    };
                    db.execute(
                        "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, lease_until = 0, last_error = ? \
                         WHERE id = ?",
                        &[P::T(state), P::I(next), P::T(error), P::I(*id)],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Leases up to `limit` due deliveries for `lease`.
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.write(ClaimDeliveries { limit, lease }).await
    }

    /// Records how deliveries went, all in one write.
    pub async fn record_deliveries(
        &self,
        outcomes: Vec<(i64, DeliveryOutcome)>,
    ) -> Result<(), StoreError> {
        self.write(RecordDeliveries(outcomes)).await
    }
}
