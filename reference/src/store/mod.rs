//! The store: SQLite (one file, the default) or MySQL/MariaDB (shared by several processes).
//!
//! One implementation over sqlx's `Any` driver; the few statements whose syntax differs live in
//! [`Dialect`]. Write transactions on SQLite begin `IMMEDIATE` so that concurrent writers wait
//! for the lock instead of failing on upgrade.

mod deliveries;
mod indexes;
mod retention;
mod tasks;
mod users;

use std::time::Duration;

use sqlx::{any::AnyPoolOptions, AnyPool, Executor};

pub use deliveries::{DeliveryRow, NewDelivery};
pub use retention::Swept;
pub use tasks::{Abandoned, Finish, FinishOutcome, NewTask, OutboxClaim, OutboxRow, StartOutcome};

/// A store failure, classified so callers know whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is locked; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A unique constraint refused the write.
    #[error("duplicate key")]
    Duplicate,
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// The idempotency key's reservation was taken over by another request after its lease
    /// expired; this request's work under the key must not count.
    #[error("the Idempotency-Key reservation was taken over by another request")]
    LeaseLost,
    /// A row holds something this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
            // SQLITE_BUSY / SQLITE_LOCKED, MySQL lock wait timeout and deadlock: transient.
            E::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "517" | "1205" | "1213" | "40001")
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Db(e),
        }
    }
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// SQL that differs between SQLite and MySQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    MySql,
}

impl Dialect {
    fn of(url: &str) -> Dialect {
        if url.starts_with("mysql:") {
            Dialect::MySql
        } else {
            Dialect::Sqlite
        }
    }

    fn insert_ignore(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::MySql => "INSERT IGNORE",
        }
    }

    fn credit_upsert(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "INSERT INTO accounts (id, balance, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT(id) DO UPDATE SET balance = balance + excluded.balance, updated_at = excluded.updated_at"
            }
            Dialect::MySql => {
                "INSERT INTO accounts (id, balance, updated_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE balance = balance + VALUES(balance), updated_at = VALUES(updated_at)"
            }
        }
    }

    fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::MySql => "BEGIN",
        }
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A text column. MySQL sends TEXT columns with the BLOB type code, which sqlx's `Any`
/// driver then only decodes as bytes; SQLite sends text.
fn text(row: &sqlx::any::AnyRow, column: &str) -> Result<String, StoreError> {
    opt_text(row, column)?.ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
}

fn opt_text(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    use sqlx::Row;
    match row.try_get::<Option<String>, _>(column) {
        Ok(s) => Ok(s),
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>(column)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
            })
            .transpose(),
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

impl Store {
    /// Connects, retrying with backoff for up to `timeout`, creates a SQLite file if missing,
    /// and applies the migrations.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of(url);
        let url = sqlite_create_mode(url);
        let attempt = || async {
            AnyPoolOptions::new()
                .max_connections(if dialect == Dialect::Sqlite { 8 } else { 16 })
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            conn.execute("PRAGMA busy_timeout = 30000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Ok(())
                    })
                })
                .connect(&url)
                .await
        };
        let pool = crate::backoff::retry_for(timeout, "store", attempt).await?;
        let store = Store { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        if self.dialect == Dialect::Sqlite {
            // WAL lets readers run beside the writer; the mode persists in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_all(&self.pool)
                .await?;
        }
        let result = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Dialect::MySql => sqlx::migrate!("./migrations/mysql").run(&self.pool).await,
        };
        result.map_err(|e| StoreError::Db(e.into()))
    }

    /// True when a trivial query succeeds; `/readyz` uses it.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin_with(self.dialect.begin()).await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// sqlx opens SQLite files read-write but does not create them unless asked.
fn sqlite_create_mode(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            sqlite_create_mode("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_create_mode("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(sqlite_create_mode("mysql://h/db"), "mysql://h/db");
    }
}
