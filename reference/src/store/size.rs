//! How big the store is: rows per table and bytes, for the metrics an operator watches to see
//! that retention keeps the store from growing.

use super::{
    db::{Db, P},
    group::Op,
    Dialect, Store, StoreError,
};

/// The tables whose size tells whether retention works.
pub const TABLES: [&str; 6] = [
    "tasks",
    "outbox",
    "idempotency_keys",
    "processed_messages",
    "deliveries",
    "users",
];

/// Rows per table (in [`TABLES`]' order) and the store's bytes on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Size {
    pub rows: Vec<(&'static str, i64)>,
    pub bytes: i64,
}

struct MeasureSize;

impl Op for MeasureSize {
    type Out = Size;

    async fn apply(&self, db: &mut dyn Db) -> Result<Size, StoreError> {
        let mut rows = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let n = db
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await?
                .i64(0)?;
            rows.push((table, n));
        }
        let bytes = match db.dialect() {
            // The main file; its write-ahead log comes and goes with checkpoints.
            Dialect::Sqlite => {
                let pages = db.query_one("PRAGMA page_count", &[]).await?.i64(0)?;
                let size = db.query_one("PRAGMA page_size", &[]).await?.i64(0)?;
                pages * size
            }
            Dialect::MySql => db
                .query_one(
                    "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS SIGNED) \
                     FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name <> ?",
                    &[P::T("_sqlx_migrations")],
                )
                .await?
                .i64(0)?,
        };
        Ok(Size { rows, bytes })
    }
}

impl Store {
    /// Rows per table and bytes on disk (counts scan their tables: call it now and then).
    pub async fn size(&self) -> Result<Size, StoreError> {
        self.read(MeasureSize).await
    }
}
