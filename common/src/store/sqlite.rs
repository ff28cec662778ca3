//! The embedded SQLite backend (the default: a file, nothing to install).
//!
//! rusqlite is synchronous, so every statement runs on tokio's blocking pool and async
//! threads never wait on disk. A small pool of connections shares one WAL-mode file: readers
//! run in parallel, writers take SQLite's single write lock with `BEGIN IMMEDIATE` (so a
//! read-then-write transaction cannot fail to upgrade) and wait for it up to the busy timeout.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ToSql};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;
use super::sql::value::{Row, Value};
use super::sql::{Backend, Conn, Dialect, Exec, SqlStore, conflict_subject};

/// How long a writer waits for the write lock before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite virtual-machine instructions between two calls of the progress handler (a few
/// microseconds of work).
const PROGRESS_OPS: i32 = 1_000;

/// The store on an SQLite file.
pub type SqliteStore = SqlStore<SqliteBackend>;

impl SqliteStore {
    /// Opens (creating if needed) the database file and its directory. `max_connections`
    /// bounds concurrent statements, i.e. blocking threads in use.
    pub fn open(path: &Path, max_connections: usize) -> Result<Self, StoreError> {
        Self::open_with(path, max_connections, SqliteTuning::GENERAL)
    }

    /// Like [`SqliteStore::open`], with the page cache, memory map and connection cap of
    /// `tuning`.
    pub fn open_with(
        path: &Path,
        max_connections: usize,
        tuning: SqliteTuning,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            tuning,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(tuning.connections(max_connections))),
        });
        // Open one connection now so a bad path fails at start-up, not on the first request.
        let first = inner.connect()?;
        inner.put_back(first);
        Ok(SqlStore::new(SqliteBackend { inner }))
    }
}

/// Memory settings of each connection of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteTuning {
    /// Page cache per connection, in MiB.
    pub cache_mib: u32,
    /// Reads through a 256 MiB memory map of the file instead of copying pages (the mapped
    /// pages then count in the process's resident memory).
    pub memory_map: bool,
    /// At most this many connections whatever `store.max_connections` says (0: no cap).
    pub max_connections: usize,
}

impl SqliteTuning {
    /// The admin and tools: a 32 MiB cache (a click batch or an import touches thousands of
    /// rows across several tables, and with SQLite's 2 MiB default a transaction spills
    /// pages to the WAL mid-way, measured 3x slower) and a memory map for analytics reads.
    pub const GENERAL: Self = Self {
        cache_mib: 32,
        memory_map: true,
        max_connections: 0,
    };
    /// The proxy's link lookups: single rows by index, from up to `max_connections`
    /// connections at once, so a small cache each (the index interior pages of a million
    /// links fit in 1 MiB) and no map.
    pub const LOOKUPS: Self = Self {
        cache_mib: 1,
        memory_map: false,
        max_connections: 0,
    };
    /// The proxy's click batcher: one batch at a time (raw clicks are a few appended
    /// segments; the aggregate rows of a batch's links need a cache well above SQLite's
    /// 2 MiB default) and no map. Two connections (the batch, and housekeeping or a salt
    /// read beside it): each connection fills its own cache, and SQLite has one writer at a
    /// time anyway.
    pub const CLICK_WRITER: Self = Self {
        cache_mib: 8,
        memory_map: false,
        max_connections: 2,
    };

    /// The pool size for a configured `max_connections`.
    pub fn connections(self, max_connections: usize) -> usize {
        match self.max_connections {
            0 => max_connections,
            cap => max_connections.min(cap),
        }
        .max(1)
    }
}

/// Connection pool for one SQLite file.
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    tuning: SqliteTuning,
    /// Idle connections. A std mutex: it is held only to push or pop, never across an await.
    idle: Mutex<Vec<Connection>>,
    /// Bounds connections in use (and so blocking threads busy with SQLite).
    permits: Arc<Semaphore>,
}

impl Inner {
    fn connect(&self) -> Result<Connection, StoreError> {
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_error)?;
        // WAL: readers never block the writer; NORMAL sync is durable across process crashes
        // (only an OS crash can lose the last commits), the usual choice with WAL. Statement
        // journals in memory; cache and memory map from the pool's `SqliteTuning`.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF; \
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(map_error)?;
        conn.pragma_update(None, "cache_size", -1024 * i64::from(self.tuning.cache_mib))
            .map_err(map_error)?;
        let map_bytes: i64 = if self.tuning.memory_map { 256 << 20 } else { 0 };
        conn.pragma_update(None, "mmap_size", map_bytes)
            .map_err(map_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        // A long statement on a background thread (the proxy's click batcher) gives way to
        // request threads every `background::SLICE` (a no-op on other threads).
        conn.progress_handler(
            PROGRESS_OPS,
            Some(|| {
                crate::background::give_way_now();
                false
            }),
        )
        .map_err(map_error)?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Conn = SqliteConn;
    const DIALECT: Dialect = Dialect::Sqlite;
    const NAME: &'static str = "sqlite";

    async fn conn(&self) -> Result<SqliteConn, StoreError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        let idle = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let inner = Arc::clone(&self.inner);
                tokio::task::spawn_blocking(move || inner.connect())
                    .await
                    .map_err(|_| StoreError::Backend("sqlite connect task failed".into()))??
            }
        };
        Ok(SqliteConn {
            conn: Some(conn),
            inner: Arc::clone(&self.inner),
            _permit: permit,
        })
    }

    async fn lock_migrations(&self, conn: &mut SqliteConn) -> Result<(), StoreError> {
        // SQLite DDL is transactional: the whole migration run is one write transaction,
        // which also keeps a second process out until it commits.
        conn.begin().await
    }

    async fn unlock_migrations(
        &self,
        conn: &mut SqliteConn,
        success: bool,
    ) -> Result<(), StoreError> {
        if success {
            conn.commit().await
        } else {
            conn.rollback().await
        }
    }
}

/// A pooled SQLite connection.
pub struct SqliteConn {
    /// `None` only while a statement runs on the blocking pool (or if that task panicked, in
    /// which case the connection is dropped and the pool opens a fresh one later).
    conn: Option<Connection>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConn")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteConn {
    async fn run<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| StoreError::Backend("sqlite connection lost".into()))?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut conn);
            (conn, result)
        })
        .await
        .map_err(|_| StoreError::Backend("sqlite statement task failed".into()))?;
        self.conn = Some(conn);
        result.map_err(map_error)
    }
}

impl Drop for SqliteConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A transaction left open by an error path must not leak to the next user.
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return; // drop the connection rather than reuse it in an unknown state
            }
            self.inner.put_back(conn);
        }
    }
}

#[async_trait]
impl Conn for SqliteConn {
    async fn exec(&mut self, sql: &str, params: Vec<Value>) -> Result<Exec, StoreError> {
        let sql = sql.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let affected = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
            drop(stmt);
            Ok(Exec {
                affected: affected as u64,
                last_insert_id: conn.last_insert_rowid(),
            })
        })
        .await
    }

    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        let sql = sql.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let columns = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => Value::Int(v),
                        ValueRef::Real(v) => Value::Float(v),
                        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                    });
                }
                out.push(Row(values));
            }
            Ok(out)
        })
        .await
    }

    async fn begin(&mut self) -> Result<(), StoreError> {
        self.run(|conn| conn.execute_batch("BEGIN IMMEDIATE")).await
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.run(|conn| conn.execute_batch("COMMIT")).await
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.run(|conn| conn.execute_batch("ROLLBACK")).await
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Float(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Shared(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Static(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "shaped for `.map_err(map_error)`"
)]
fn map_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(e, message) => match e.code {
            ErrorCode::ConstraintViolation => {
                StoreError::Conflict(conflict_subject(message.as_deref().unwrap_or_default()))
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable("database is locked".into())
            }
            ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::PermissionDenied => StoreError::Unavailable(error.to_string()),
            _ => StoreError::Backend(error.to_string()),
        },
        _ => StoreError::Backend(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn each_pool_gets_the_cache_and_map_of_its_tuning() {
        let dir = std::env::temp_dir().join(format!("linkgate-tuning-{}", std::process::id()));
        let path = dir.join("t.db");
        for (tuning, cache_kib, map, pool) in [
            (SqliteTuning::GENERAL, 32 * 1024, 256 << 20, 16),
            (SqliteTuning::LOOKUPS, 1024, 0, 16),
            (SqliteTuning::CLICK_WRITER, 8 * 1024, 0, 2),
        ] {
            let store = SqliteStore::open_with(&path, 16, tuning).unwrap();
            let conn = store.backend.inner.connect().unwrap();
            assert_eq!(pragma(&conn, "cache_size"), -cache_kib, "{tuning:?}");
            assert_eq!(pragma(&conn, "mmap_size"), map, "{tuning:?}");
            assert_eq!(
                store.backend.inner.permits.available_permits(),
                pool,
                "{tuning:?}"
            );
        }
        assert_eq!(SqliteTuning::CLICK_WRITER.connections(1), 1);
        assert_eq!(SqliteTuning::GENERAL.connections(0), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
