//! The MySQL / MariaDB backend through `mysql_async` (production and scale-out).
//!
//! Statements use the binary protocol with server-side prepared statements, cached per
//! connection, so parameters never pass through SQL text.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts};

use super::StoreError;
use super::sql::value::{Row, Value};
use super::sql::{Backend, Conn, Dialect, Exec, SqlStore, conflict_subject};

/// A connection must be available within this time or the store reports `Unavailable`
/// (callers retry or fall back; they never hang on a dead database).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Named lock that serialises migrations across admin processes.
const MIGRATION_LOCK: &str = "linkgate_migrations";
/// Server error for a duplicate unique key.
const ER_DUP_ENTRY: u16 = 1062;

/// The store on a MySQL or MariaDB server.
pub type MysqlStore = SqlStore<MysqlBackend>;

impl MysqlStore {
    /// Creates the pool; connections are opened lazily, so this succeeds even while the
    /// server is down (the first query reports `Unavailable`).
    pub fn open(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let opts = Opts::from_url(url)
            .map_err(|_| StoreError::Backend("store.url is not a valid mysql:// URL".into()))?;
        let constraints = PoolConstraints::new(0, max_connections.max(1))
            .ok_or_else(|| StoreError::Backend("invalid pool size".into()))?;
        let opts = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(constraints))
            .stmt_cache_size(128)
            .tcp_nodelay(true);
        Ok(SqlStore::new(MysqlBackend {
            pool: Pool::new(opts),
        }))
    }

    /// Closes every pooled connection (tests call this before dropping their database).
    pub async fn close(self) -> Result<(), StoreError> {
        self.backend.pool.disconnect().await.map_err(map_error)
    }
}

/// Connection pool for one MySQL database.
pub struct MysqlBackend {
    pool: Pool,
}

impl fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pool's options hold the password: print nothing of them.
        f.debug_struct("MysqlBackend").finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for MysqlBackend {
    type Conn = MysqlConn;
    const DIALECT: Dialect = Dialect::Mysql;
    const NAME: &'static str = "mysql";

    async fn conn(&self) -> Result<MysqlConn, StoreError> {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.pool.get_conn())
            .await
            .map_err(|_| {
                StoreError::Unavailable("timed out waiting for a MySQL connection".into())
            })?
            .map_err(map_error)?;
        Ok(MysqlConn(conn))
    }

    async fn lock_migrations(&self, conn: &mut MysqlConn) -> Result<(), StoreError> {
        let rows = conn
            .query("SELECT GET_LOCK(?, 120)", vec![Value::from(MIGRATION_LOCK)])
            .await?;
        match rows.first().map(|r| r.opt_i64(0)).transpose()?.flatten() {
            Some(1) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "could not take the migration lock".into(),
            )),
        }
    }

    async fn unlock_migrations(
        &self,
        conn: &mut MysqlConn,
        _success: bool,
    ) -> Result<(), StoreError> {
        // MySQL DDL commits implicitly, so there is nothing to roll back: each migration is
        // written with IF NOT EXISTS so a half-applied one can be re-run.
        conn.query("SELECT RELEASE_LOCK(?)", vec![Value::from(MIGRATION_LOCK)])
            .await
            .map(drop)
    }
}

/// A pooled MySQL connection; returned to the pool (and reset) on drop.
#[derive(Debug)]
pub struct MysqlConn(mysql_async::Conn);

fn to_params(params: Vec<Value>) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .into_iter()
            .map(|v| match v {
                Value::Null => mysql_async::Value::NULL,
                Value::Int(i) => mysql_async::Value::Int(i),
                Value::Float(f) => mysql_async::Value::Double(f),
                Value::Text(s) => mysql_async::Value::Bytes(s.into_bytes()),
                Value::Shared(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
                Value::Static(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
                Value::Bytes(b) => mysql_async::Value::Bytes(b),
            })
            .collect(),
    )
}

fn from_mysql(value: mysql_async::Value) -> Result<Value, StoreError> {
    Ok(match value {
        mysql_async::Value::NULL => Value::Null,
        mysql_async::Value::Int(i) => Value::Int(i),
        mysql_async::Value::UInt(u) => Value::Int(
            i64::try_from(u).map_err(|_| StoreError::Corrupt("integer out of range".into()))?,
        ),
        mysql_async::Value::Double(d) => Value::Float(d),
        mysql_async::Value::Float(f) => Value::Float(f64::from(f)),
        mysql_async::Value::Bytes(b) => Value::Bytes(b),
        mysql_async::Value::Date(..) | mysql_async::Value::Time(..) => {
            return Err(StoreError::Corrupt("unexpected date/time column".into()));
        }
    })
}

#[async_trait]
impl Conn for MysqlConn {
    async fn exec(&mut self, sql: &str, params: Vec<Value>) -> Result<Exec, StoreError> {
        self.0
            .exec_drop(sql, to_params(params))
            .await
            .map_err(map_error)?;
        Ok(Exec {
            affected: self.0.affected_rows(),
            last_insert_id: self
                .0
                .last_insert_id()
                .and_then(|id| i64::try_from(id).ok())
                .unwrap_or(0),
        })
    }

    async fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, StoreError> {
        let rows: Vec<mysql_async::Row> = self
            .0
            .exec(sql, to_params(params))
            .await
            .map_err(map_error)?;
        rows.into_iter()
            .map(|row| {
                row.unwrap()
                    .into_iter()
                    .map(from_mysql)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }

    async fn begin(&mut self) -> Result<(), StoreError> {
        self.0
            .query_drop("START TRANSACTION")
            .await
            .map_err(map_error)
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.0.query_drop("COMMIT").await.map_err(map_error)
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.0.query_drop("ROLLBACK").await.map_err(map_error)
    }
}

fn map_error(error: mysql_async::Error) -> StoreError {
    match error {
        mysql_async::Error::Server(e) if e.code == ER_DUP_ENTRY => {
            StoreError::Conflict(conflict_subject(&e.message))
        }
        // Server messages may quote values (e.g. a duplicate entry); keep the code and state.
        mysql_async::Error::Server(e) => {
            StoreError::Backend(format!("MySQL error {} (SQLSTATE {})", e.code, e.state))
        }
        mysql_async::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        mysql_async::Error::Driver(e) => StoreError::Unavailable(e.to_string()),
        mysql_async::Error::Other(e) => StoreError::Backend(e.to_string()),
        mysql_async::Error::Url(_) => StoreError::Backend("invalid mysql:// URL".into()),
    }
}
