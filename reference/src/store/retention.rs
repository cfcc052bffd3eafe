//! Retention: deletes dedupe records, finished deliveries, finished tasks and expired
//! idempotency keys once they are old enough.
//!
//! Every finished task leaves a `processed_messages` row (the dedupe record) and one or two
//! `deliveries` rows, and the task itself; without this they would pile up forever. Rows go in
//! bounded batches so that one sweep never holds a long lock or a huge transaction beside the
//! workers.

use super::{
    db::{Db, P},
    group::Op,
    Dialect, Store, StoreError,
};

/// Delivery states after which nothing will touch the row again (see `deliveries.rs`).
const FINAL_DELIVERY_STATES: &str = "('delivered', 'given_up')";

/// Task statuses after which nothing will touch the task again.
const FINAL_TASK_STATUSES: &str = "('SUCCESS', 'FAILED')";

/// Rows deleted by one [`Store::sweep_retention`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// `processed_messages` rows (dedupe records).
    pub processed: u64,
    /// `deliveries` rows in a final state.
    pub deliveries: u64,
    /// True when a table still had full batches left at the batch cap; the next sweep goes on.
    pub more: bool,
}

impl Store {
    /// Deletes dedupe records processed before `before_ms` and deliveries that reached a final
    /// state (delivered, given up) before it, `batch` rows per statement and at most
    /// `max_batches` statements per table.
    pub async fn sweep_retention(
        &self,
        before_ms: i64,
        batch: u32,
        max_batches: u32,
    ) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        let (processed, more) = self
            .delete_batches(before_ms, batch, max_batches, Table::Processed)
            .await?;
        swept.processed = processed;
        swept.more |= more;
        let (deliveries, more) = self
            .delete_batches(before_ms, batch, max_batches, Table::FinalDeliveries)
            .await?;
        swept.deliveries = deliveries;
        swept.more |= more;
        Ok(swept)
    }

    /// Deletes tasks submitted before `before_ms` that have finished (SUCCESS or FAILED), in
    /// batches as [`Store::sweep_retention`]; a task still pending or running stays, however
    /// old. Returns the rows deleted and whether full batches were left.
    pub async fn sweep_finished_tasks(
        &self,
        before_ms: i64,
        batch: u32,
        max_batches: u32,
    ) -> Result<(u64, bool), StoreError> {
        self.delete_batches(before_ms, batch, max_batches, Table::FinishedTasks)
            .await
    }

    /// Forgets idempotency keys created before `before_ms`, in batches as
    /// [`Store::sweep_retention`]: one unbounded delete of a day's keys would hold the store's
    /// one writer for seconds. Returns the rows deleted and whether full batches were left.
    pub async fn sweep_expired_keys(
        &self,
        before_ms: i64,
        batch: u32,
        max_batches: u32,
    ) -> Result<(u64, bool), StoreError> {
        self.delete_batches(before_ms, batch, max_batches, Table::ExpiredKeys)
            .await
    }

    async fn delete_batches(
        &self,
        before_ms: i64,
        batch: u32,
        max_batches: u32,
        table: Table,
    ) -> Result<(u64, bool), StoreError> {
        let mut total = 0;
        for _ in 0..max_batches {
            let n = self
                .write(DeleteOld {
                    table,
                    before_ms,
                    limit: batch,
                })
                .await?;
            total += n;
            if n < u64::from(batch) {
                return Ok((total, false));
            }
        }
        Ok((total, true))
    }

    /// Deletes up to `limit` dedupe records processed before `before_ms`.
    pub async fn delete_processed_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.write(DeleteOld {
            table: Table::Processed,
            before_ms,
            limit,
        })
        .await
    }

    /// Forgets up to `limit` idempotency keys created before `before_ms`, abandoned
    /// reservations included; returns how many.
    pub async fn purge_keys(&self, before_ms: i64, limit: u32) -> Result<u64, StoreError> {
        self.write(DeleteOld {
            table: Table::ExpiredKeys,
            before_ms,
            limit,
        })
        .await
    }

    /// Deletes up to `limit` deliveries that reached a final state before `before_ms`.
    pub async fn delete_final_deliveries_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.write(DeleteOld {
            table: Table::FinalDeliveries,
            before_ms,
            limit,
        })
        .await
    }
}

/// Which rows retention deletes.
#[derive(Debug, Clone, Copy)]
enum Table {
    /// Dedupe records, by when they were processed.
    Processed,
    /// Deliveries in a final state, by when they got there (`next_attempt_at`); pending rows
    /// are never touched.
    FinalDeliveries,
    /// Tasks in a final status, by when they were submitted (`created_at`, which never changes
    /// and is indexed: an index on `updated_at` would be rewritten at every status change).
    FinishedTasks,
    /// Idempotency keys, by when they were reserved (`created_at`, indexed).
    ExpiredKeys,
}

impl Table {
    /// MySQL refuses LIMIT in an IN-subquery on the table being deleted from, but takes LIMIT
    /// on DELETE itself; SQLite (as built here) takes only the subquery.
    fn delete(self, dialect: Dialect) -> String {
        match (self, dialect) {
            (Table::Processed, Dialect::Sqlite) => {
                "DELETE FROM processed_messages WHERE message_id IN \
                 (SELECT message_id FROM processed_messages WHERE processed_at < ? LIMIT ?)"
                    .into()
            }
            (Table::Processed, Dialect::MySql) => {
                "DELETE FROM processed_messages WHERE processed_at < ? LIMIT ?".into()
            }
            (Table::FinalDeliveries, Dialect::Sqlite) => format!(
                "DELETE FROM deliveries WHERE id IN \
                 (SELECT id FROM deliveries WHERE state IN {FINAL_DELIVERY_STATES} \
                 AND next_attempt_at < ? LIMIT ?)"
            ),
            (Table::FinalDeliveries, Dialect::MySql) => format!(
                "DELETE FROM deliveries WHERE state IN {FINAL_DELIVERY_STATES} \
                 AND next_attempt_at < ? LIMIT ?"
            ),
            (Table::FinishedTasks, Dialect::Sqlite) => format!(
                "DELETE FROM tasks WHERE id IN \
                 (SELECT id FROM tasks WHERE created_at < ? AND status IN {FINAL_TASK_STATUSES} LIMIT ?)"
            ),
            (Table::FinishedTasks, Dialect::MySql) => format!(
                "DELETE FROM tasks WHERE created_at < ? AND status IN {FINAL_TASK_STATUSES} LIMIT ?"
            ),
            (Table::ExpiredKeys, Dialect::Sqlite) => "DELETE FROM idempotency_keys WHERE idem_key IN \
                 (SELECT idem_key FROM idempotency_keys WHERE created_at < ? LIMIT ?)"
                .into(),
            (Table::ExpiredKeys, Dialect::MySql) => {
                "DELETE FROM idempotency_keys WHERE created_at < ? LIMIT ?".into()
            }
        }
    }
}

/// Deletes up to `limit` old rows of one table.
struct DeleteOld {
    table: Table,
    before_ms: i64,
    limit: u32,
}

impl Op for DeleteOld {
    type Out = u64;

    async fn apply(&self, db: &mut dyn Db) -> Result<u64, StoreError> {
        let sql = self.table.delete(db.dialect());
        db.execute(&sql, &[P::I(self.before_ms), P::I(i64::from(self.limit))])
            .await
    }
}
