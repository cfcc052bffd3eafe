//! The secondary indexes of the relay's, the dispatcher's and housekeeping's queries, which the
//! migrations create and `--db-indexes none` drops (the seed's schema before its index
//! optimisation). Primary keys and unique constraints are never touched: they carry meaning.

use super::{
    db::{Db, P},
    group::Op,
    Dialect, Store, StoreError,
};

/// `(index, table, columns)`, as the migrations create them.
const SECONDARY: [(&str, &str, &str); 5] = [
    ("outbox_lease", "outbox", "lease_until, id"),
    ("tasks_created", "tasks", "created_at"),
    ("deliveries_due", "deliveries", "state, next_attempt_at"),
    ("idempotency_keys_created", "idempotency_keys", "created_at"),
    (
        "processed_messages_age",
        "processed_messages",
        "processed_at",
    ),
];

/// MySQL's "duplicate key name" and "can't drop; check that it exists", SQLite's "already
/// exists" and "no such index": another process made the same change first.
const RACED: [&str; 4] = ["1061", "1091", "already exists", "no such index"];

/// Creates the secondary indexes that are missing (`present`), or drops those that exist.
struct SetSecondaryIndexes(bool);

impl Op for SetSecondaryIndexes {
    type Out = ();

    async fn apply(&self, db: &mut dyn Db) -> Result<(), StoreError> {
        let present = self.0;
        for (index, table, columns) in SECONDARY {
            if has_index(db, table, index).await? == present {
                continue;
            }
            let sql = match (present, db.dialect()) {
                (true, _) => format!("CREATE INDEX {index} ON {table} ({columns})"),
                (false, Dialect::Sqlite) => format!("DROP INDEX {index}"),
                (false, Dialect::MySql) => format!("DROP INDEX {index} ON {table}"),
            };
            match db.execute(&sql, &[]).await {
                Ok(_) => tracing::info!(index, present, "secondary index changed"),
                // Another process made the same change first.
                Err(StoreError::Db(e)) if RACED.iter().any(|c| e.contains(c)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

async fn has_index(db: &mut dyn Db, table: &str, index: &str) -> Result<bool, StoreError> {
    let sql = match db.dialect() {
        Dialect::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?"
        }
        Dialect::MySql => {
            "SELECT COUNT(*) FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?"
        }
    };
    Ok(db
        .query_one(sql, &[P::T(table), P::T(index)])
        .await?
        .i64(0)?
        > 0)
}

#[cfg(test)]
struct HasIndex {
    table: &'static str,
    index: &'static str,
}

#[cfg(test)]
impl Op for HasIndex {
    type Out = bool;

    async fn apply(&self, db: &mut dyn Db) -> Result<bool, StoreError> {
        has_index(db, self.table, self.index).await
    }
}

impl Store {
    /// Creates the secondary indexes that are missing (`present`), or drops those that exist.
    pub async fn set_secondary_indexes(&self, present: bool) -> Result<(), StoreError> {
        self.alone(SetSecondaryIndexes(present)).await
    }

    #[cfg(test)]
    async fn has_index(
        &self,
        table: &'static str,
        index: &'static str,
    ) -> Result<bool, StoreError> {
        self.read(HasIndex { table, index }).await
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
