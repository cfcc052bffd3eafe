//! Retention: deletes dedupe records and finished deliveries once they are old enough.
//!
//! Every finished task leaves a `processed_messages` row (the dedupe record) and one or two
//! `deliveries` rows; without this they would pile up forever. Rows go in bounded batches so
//! that one sweep never holds a long lock or a huge transaction beside the workers.

use super::{Dialect, Store, StoreError};

/// Delivery states after which nothing will touch the row again (see `deliveries.rs`).
const FINAL_DELIVERY_STATES: &str = "('delivered', 'given_up')";

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
            .delete_batches(before_ms, batch, max_batches, Self::delete_processed_before)
            .await?;
        swept.processed = processed;
        swept.more |= more;
        let (deliveries, more) = self
            .delete_batches(
                before_ms,
                batch,
                max_batches,
                Self::delete_final_deliveries_before,
            )
            .await?;
        swept.deliveries = deliveries;
        swept.more |= more;
        Ok(swept)
    }

    async fn delete_batches<'a, F, Fut>(
        &'a self,
        before_ms: i64,
        batch: u32,
        max_batches: u32,
        delete: F,
    ) -> Result<(u64, bool), StoreError>
    where
        F: Fn(&'a Store, i64, u32) -> Fut,
        Fut: std::future::Future<Output = Result<u64, StoreError>>,
    {
        let mut total = 0;
        for _ in 0..max_batches {
            let n = delete(self, before_ms, batch).await?;
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
        // MySQL refuses LIMIT in an IN-subquery on the table being deleted from, but takes
        // LIMIT on DELETE itself; SQLite (as built by sqlx) takes only the subquery.
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "DELETE FROM processed_messages WHERE rowid IN \
                 (SELECT rowid FROM processed_messages WHERE processed_at < ? LIMIT ?)"
            }
            Dialect::MySql => "DELETE FROM processed_messages WHERE processed_at < ? LIMIT ?",
        };
        let done = sqlx::query(sql)
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes up to `limit` deliveries that reached a final state before `before_ms`.
    /// A final row's `next_attempt_at` is when it got there; pending rows are never touched.
    pub async fn delete_final_deliveries_before(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let sql = match self.dialect {
            Dialect::Sqlite => format!(
                "DELETE FROM deliveries WHERE id IN \
                 (SELECT id FROM deliveries WHERE state IN {FINAL_DELIVERY_STATES} \
                 AND next_attempt_at < ? LIMIT ?)"
            ),
            Dialect::MySql => format!(
                "DELETE FROM deliveries WHERE state IN {FINAL_DELIVERY_STATES} \
                 AND next_attempt_at < ? LIMIT ?"
            ),
        };
        let done = sqlx::query(&sql)
            .bind(before_ms)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
