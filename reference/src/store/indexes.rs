//! The secondary indexes of the relay's, the dispatcher's and housekeeping's queries, which the
//! migrations create and `--db-indexes none` drops (the seed's schema before its index
//! optimisation). Primary keys and unique constraints are never touched: they carry meaning.

use sqlx::Row;

use super::{Dialect, Store, StoreError};

/// `(index, table, columns)`, as the migrations create them.
const SECONDARY: [(&str, &str, &str); 4] = [
    ("outbox_lease", "outbox", "lease_until, id"),
    ("deliveries_due", "deliveries", "state, next_attempt_at"),
    ("idempotency_keys_created", "idempotency_keys", "created_at"),
    (
        "processed_messages_age",
        "processed_messages",
        "processed_at",
    ),
];

/// MySQL's "duplicate key name" and "can't drop; check that it exists": another process
/// made the same change first.
const RACED: [&str; 2] = ["1061", "1091"];

impl Store {
    /// Creates the secondary indexes that are missing (`present`), or drops those that exist.
    pub async fn set_secondary_indexes(&self, present: bool) -> Result<(), StoreError> {
        for (index, table, columns) in SECONDARY {
            if self.has_index(table, index).await? == present {
                continue;
            }
            let sql = match (present, self.dialect) {
                (true, _) => format!("CREATE INDEX {index} ON {table} ({columns})"),
                (false, Dialect::Sqlite) => format!("DROP INDEX {index}"),
                (false, Dialect::MySql) => format!("DROP INDEX {index} ON {table}"),
            };
            match sqlx::query(&sql).execute(&self.pool).await {
                Ok(_) => tracing::info!(index, present, "secondary index changed"),
                Err(sqlx::Error::Database(e))
                    if e.code().is_some_and(|c| RACED.contains(&c.as_ref())) => {}
                Err(sqlx::Error::Database(e)) if e.message().contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn has_index(&self, table: &str, index: &str) -> Result<bool, StoreError> {
        let query = match self.dialect {
            Dialect::Sqlite => sqlx::query(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?",
            ),
            Dialect::MySql => sqlx::query(
                "SELECT COUNT(*) AS n FROM information_schema.statistics \
                 WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
            ),
        };
        let n: i64 = query
            .bind(table)
            .bind(index)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn secondary_indexes_are_dropped_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("i.db").display());
        let store = Store::connect(&url, Duration::from_secs(5)).await.unwrap();
        let present = |store: Store| async move {
            let mut n = 0;
            for (index, table, _) in SECONDARY {
                n += usize::from(store.has_index(table, index).await.unwrap());
            }
            n
        };
        assert_eq!(
            present(store.clone()).await,
            SECONDARY.len(),
            "the migrations make them"
        );
        store.set_secondary_indexes(false).await.unwrap();
        assert_eq!(present(store.clone()).await, 0);
        store.set_secondary_indexes(false).await.unwrap();
        store.set_secondary_indexes(true).await.unwrap();
        assert_eq!(present(store.clone()).await, SECONDARY.len());
        assert!(
            store
                .has_index("users", "sqlite_autoindex_users_1")
                .await
                .unwrap(),
            "the unique email constraint is never touched"
        );
    }
}
