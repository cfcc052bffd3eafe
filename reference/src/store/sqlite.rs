//! The SQLite backend: rusqlite connections driven directly, so that a statement costs
//! microseconds rather than a round trip to a connection thread. Reads run on a small set of
//! connections in the caller's task (WAL: readers never wait for the writer); writes go
//! through one writer thread, SQLite's one writer per file, which commits them in groups.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::{
    db::SqliteDb,
    group::{self, GroupCommit, Jobs, Op},
    Durability, StoreError,
};

/// Connections serving reads at once.
const READERS: usize = 4;
/// How long a statement waits for another process's write lock before it fails: 30 s, in
/// short sleeps. SQLite's own busy handler sleeps 1, 2, 5, 10 ms and more, while another
/// process's group commit holds the lock for a fraction of a millisecond: most of a wait would
/// be oversleeping.
fn busy(tries: i32) -> bool {
    const SHORT: i32 = 200; // 200 × 100 µs: the first 20 ms
    let sleep = if tries < SHORT {
        Duration::from_micros(100)
    } else {
        Duration::from_millis(1)
    };
    let waited_ms = i64::from(tries.min(SHORT)) / 10 + i64::from((tries - SHORT).max(0));
    if waited_ms >= 30_000 {
        return false;
    }
    std::thread::sleep(sleep);
    true
}

/// Bytes the WAL file is cut back to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Opens a connection with the store's settings.
fn open(path: &Path, sync: Durability) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_handler(Some(busy))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    // A checkpoint leaves the WAL file at its largest size so far (a burst, a long sweep);
    // past this it is truncated back, so the file does not keep its high-water mark.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub struct Sqlite {
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
    path: PathBuf,
    sync: Durability,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

impl Sqlite {
    /// Opens the file (its schema already migrated) and starts the writer thread.
    pub fn open(path: &Path, sync: Durability) -> Result<(Sqlite, GroupCommit), StoreError> {
        let readers = (0..READERS)
            .map(|_| open(path, sync))
            .collect::<Result<Vec<_>, _>>()?;
        let writer = open(path, sync)?;
        let (writes, jobs) = GroupCommit::new();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(writer, &jobs))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's writer: {e}"))
            })?;
        let sqlite = Sqlite {
            readers: Mutex::new(readers),
            permits: Semaphore::new(READERS),
            path: path.to_path_buf(),
            sync,
        };
        Ok((sqlite, writes))
    }

    /// Runs a read on one of the reading connections.
    pub async fn read<O: Op>(&self, op: &O) -> Result<O::Out, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        let mut conn = match self.readers.lock().expect("readers lock").pop() {
            Some(c) => c,
            None => open(&self.path, self.sync)?,
        };
        let result = {
            let mut db = SqliteDb { conn: &mut conn };
            run_ready(op.apply(&mut db))
        };
        self.readers.lock().expect("readers lock").push(conn);
        result
    }

    pub fn close(&self) {
        self.permits.close();
    }
}

/// Runs an op's future to its end in this thread. SQLite ops await only statements, which
/// complete before their futures are returned, so one poll finishes them; anything else is a
/// bug in the op.
fn run_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a SQLite op awaited something other than a statement"),
    }
}

/// The writer thread: a batch at a time until the queue closes.
fn write_loop(mut conn: Connection, jobs: &Jobs) {
    while let Ok(first) = jobs.recv_blocking() {
        let mut batch = group::batch(first, jobs);
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let mut attempts = group::Attempts::default();
        let result = loop {
            let result = {
                let mut db = SqliteDb { conn: &mut conn };
                run_ready(group::commit(&mut db, &mut batch))
            };
            match attempts.again(&result) {
                Some(pause) => std::thread::sleep(pause),
                None => break result,
            }
        };
        group::answer(batch, result, started);
    }
}
