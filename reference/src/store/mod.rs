//! The store: SQLite (one file, the default) or MySQL/MariaDB (shared by several processes).
//!
//! Every query is written once, as an [`Op`](group::Op) against [`db::Db`], and runs on either
//! backend: SQLite through rusqlite (statements in microseconds, reads on a few connections,
//! writes on one writer thread), MySQL through sqlx. Writes go through a group commit
//! ([`group`]): many callers' writes share one transaction and one flush to disk. Migrations are
//! sqlx's (`migrations/`), run at connect.

mod db;
mod deliveries;
#[cfg(test)]
mod fixtures;
mod group;
mod indexes;
mod keys;
mod retention;
mod size;
mod sqlite;
mod tasks;
mod users;

use std::{path::PathBuf, sync::Arc, time::Duration};

use sqlx::{any::AnyPoolOptions, AnyPool};

pub use deliveries::{DeliveryOutcome, DeliveryRow, NewDelivery};
pub use keys::Submission;
pub use retention::Swept;
pub use size::Size;
pub use tasks::{Abandoned, Finish, FinishOutcome, NewTask, OutboxClaim, OutboxRow, StartOutcome};

use group::{GroupCommit, Op};

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
    Db(String),
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
            _ => StoreError::Db(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::{ffi, ErrorCode as C};
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::ConstraintViolation
                    if matches!(
                        f.extended_code,
                        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    ) =>
                {
                    StoreError::Duplicate
                }
                C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::SystemIoFailure => {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Db(e.to_string()),
            },
            _ => StoreError::Db(e.to_string()),
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

    /// Starts a write transaction. SQLite's begins IMMEDIATE: it takes the write lock at once
    /// rather than failing on upgrade.
    fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::MySql => "BEGIN",
        }
    }

    /// A locking read's suffix: on MySQL a plain read sees the transaction's snapshot, which
    /// misses what another process committed since; SQLite's write transactions are
    /// serialised, so its plain read is already current.
    fn for_update(self) -> &'static str {
        match self {
            Dialect::MySql => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

/// What a SQLite commit waits for (`PRAGMA synchronous`, WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is flushed to disk before it returns: survives a power loss.
    #[default]
    Full,
    /// Commits are flushed at checkpoints: a killed process loses nothing, a power loss may
    /// lose the last commits.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    MySql(AnyPool),
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    writes: GroupCommit,
    dialect: Dialect,
}

/// Handle to the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

/// MySQL writers: each commits its own batches on its own connection.
const MYSQL_WRITERS: usize = 4;

impl Store {
    /// Connects, retrying with backoff for up to `timeout`, creates a SQLite file if missing,
    /// applies the migrations, and starts the writers.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        Self::connect_with(url, timeout, Durability::default()).await
    }

    /// [`Store::connect`] with a SQLite durability (ignored for MySQL).
    pub async fn connect_with(
        url: &str,
        timeout: Duration,
        durability: Durability,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of(url);
        let pool = migrated_pool(url, dialect, timeout).await?;
        let (backend, writes) = match dialect {
            Dialect::Sqlite => {
                pool.close().await;
                let (sqlite, writes) = sqlite::Sqlite::open(&sqlite_path(url)?, durability)?;
                (Backend::Sqlite(sqlite), writes)
            }
            Dialect::MySql => {
                let (writes, jobs) = GroupCommit::new();
                for _ in 0..MYSQL_WRITERS {
                    tokio::spawn(group::mysql_writer(pool.clone(), dialect, jobs.clone()));
                }
                (Backend::MySql(pool), writes)
            }
        };
        let inner = Inner {
            backend,
            writes,
            dialect,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Runs an op on a connection of its own, outside the group commit: for statements that
    /// cannot share a transaction, such as DDL (MySQL commits it implicitly).
    async fn alone<O: Op>(&self, op: O) -> Result<O::Out, StoreError> {
        self.read(op).await
    }

    /// Runs a read.
    async fn read<O: Op>(&self, op: O) -> Result<O::Out, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(sqlite) => sqlite.read(&op).await,
            Backend::MySql(pool) => {
                let mut conn = pool.acquire().await?;
                let mut db = db::SqlxDb {
                    conn: &mut conn,
                    dialect: Dialect::MySql,
                };
                op.apply(&mut db).await
            }
        }
    }

    /// Runs a write in the next group commit; returns once it is durable.
    async fn write<O: Op>(&self, op: O) -> Result<O::Out, StoreError> {
        self.inner.writes.write(op).await
    }

    /// True when a trivial query succeeds; `/readyz` uses it.
    pub async fn ping(&self) -> bool {
        self.read(Ping).await.is_ok()
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// Stops taking writes (the queued ones are written) and closes the connections.
    pub async fn close(&self) {
        self.inner.writes.close();
        match &self.inner.backend {
            Backend::Sqlite(sqlite) => sqlite.close(),
            Backend::MySql(pool) => pool.close().await,
        }
    }
}

struct Ping;

impl Op for Ping {
    type Out = ();

    async fn apply(&self, db: &mut dyn db::Db) -> Result<(), StoreError> {
        db.query("SELECT 1", &[]).await.map(drop)
    }
}

/// A sqlx pool on `url` with the migrations applied, retried with backoff up to `timeout`.
async fn migrated_pool(
    url: &str,
    dialect: Dialect,
    timeout: Duration,
) -> Result<AnyPool, StoreError> {
    let url = sqlite_create_mode(url);
    let attempt = || async {
        AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 1 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
    };
    let pool = crate::backoff::retry_for(timeout, "store", attempt).await?;
    if dialect == Dialect::Sqlite {
        // WAL lets readers run beside the writer; the mode persists in the file.
        sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_all(&pool)
            .await?;
    }
    let result = match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
        Dialect::MySql => sqlx::migrate!("./migrations/mysql").run(&pool).await,
    };
    result.map_err(|e| StoreError::Db(e.to_string()))?;
    Ok(pool)
}

/// The file of a `sqlite://FILE` or `sqlite:FILE` URL (its query string dropped).
fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Db(format!("not a SQLite URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Db(
            "a SQLite store needs a file (sqlite://FILE): processes share it".into(),
        ));
    }
    Ok(PathBuf::from(path))
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
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://a/b.db?mode=rwc").unwrap(),
            PathBuf::from("a/b.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert_eq!(sqlite_path("sqlite:c.db").unwrap(), PathBuf::from("c.db"));
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("mysql://h/db").is_err());
    }

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
