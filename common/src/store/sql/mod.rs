//! Store logic written once over a minimal connection interface.
//!
//! A backend supplies connections that can execute parameterised SQL and run transactions;
//! [`SqlStore`] implements every store trait on top. The few statements that differ between
//! SQLite and MySQL (upserts, row locks, catalogue queries) are chosen by [`Dialect`].

mod admin;
mod clicks;
mod fraud;
mod links;
mod schema;
mod users;
pub(crate) mod value;

use std::fmt::Debug;

use async_trait::async_trait;

use self::value::{Row, Value};
use crate::store::StoreResult;

/// Which SQL flavour a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Mysql,
}

impl Dialect {
    /// Suffix that locks selected rows until commit. SQLite needs none: `BEGIN IMMEDIATE`
    /// already holds the database's single write lock.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Mysql => " FOR UPDATE",
        }
    }

    /// Clause that turns an INSERT into "skip rows whose key exists". MySQL's INSERT IGNORE
    /// would also swallow truncation and type errors, so a no-op update is used instead.
    pub(crate) fn on_conflict_ignore(self, key: &str, any_column: &str) -> String {
        match self {
            Self::Sqlite => format!(" ON CONFLICT ({key}) DO NOTHING"),
            Self::Mysql => format!(" ON DUPLICATE KEY UPDATE {any_column} = {any_column}"),
        }
    }

    /// Start of an upsert's update clause on a conflict over `key`.
    pub(crate) fn on_conflict_update(self, key: &str) -> String {
        match self {
            Self::Sqlite => format!(" ON CONFLICT ({key}) DO UPDATE SET "),
            Self::Mysql => " ON DUPLICATE KEY UPDATE ".to_owned(),
        }
    }

    /// The value an upsert tried to insert into `column`, inside its update clause.
    pub(crate) fn inserted(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("excluded.{column}"),
            Self::Mysql => format!("VALUES({column})"),
        }
    }

    /// The larger of two values (a scalar function in both dialects, named differently).
    pub(crate) fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Self::Sqlite => format!("max({a}, {b})"),
            Self::Mysql => format!("GREATEST({a}, {b})"),
        }
    }

    /// `UPDATE links` adding `n` per-link counts to `clicks`, one `(id, count)` parameter
    /// pair per link: a join with the listed values (a `CASE` over the ids would compare
    /// every row with every id).
    pub(crate) fn add_link_clicks(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!(
                "UPDATE links SET clicks = clicks + v.column2 FROM (VALUES {}) AS v \
                 WHERE links.id = v.column1",
                vec!["(?, ?)"; n.max(1)].join(",")
            ),
            Self::Mysql => format!(
                "UPDATE links JOIN (SELECT ? AS id, ? AS n{}) AS v ON links.id = v.id \
                 SET links.clicks = links.clicks + v.n",
                " UNION ALL SELECT ?, ?".repeat(n.saturating_sub(1))
            ),
        }
    }

    /// Clause that adds the inserted values to existing counters on a key conflict.
    /// (`VALUES(col)` is what MariaDB understands; MySQL 8 still accepts it.)
    pub(crate) fn on_conflict_add(self, key: &str, counters: &[&str]) -> String {
        match self {
            Self::Sqlite => {
                let sets: Vec<String> = counters
                    .iter()
                    .map(|c| format!("{c} = {c} + excluded.{c}"))
                    .collect();
                format!(" ON CONFLICT ({key}) DO UPDATE SET {}", sets.join(", "))
            }
            Self::Mysql => {
                let sets: Vec<String> = counters
                    .iter()
                    .map(|c| format!("{c} = {c} + VALUES({c})"))
                    .collect();
                format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
            }
        }
    }
}

/// What an executed statement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exec {
    pub(crate) affected: u64,
    pub(crate) last_insert_id: i64,
}

/// One pooled connection. Dropping it returns it to its pool (rolled back if a transaction
/// was left open).
#[async_trait]
pub(crate) trait Conn: Send {
    async fn exec(&mut self, sql: &str, params: Vec<Value>) -> StoreResult<Exec>;
    async fn query(&mut self, sql: &str, params: Vec<Value>) -> StoreResult<Vec<Row>>;
    async fn begin(&mut self) -> StoreResult<()>;
    async fn commit(&mut self) -> StoreResult<()>;
    async fn rollback(&mut self) -> StoreResult<()>;
}

/// A database the store logic can run on.
#[async_trait]
pub(crate) trait Backend: Send + Sync + Debug + 'static {
    type Conn: Conn;
    const DIALECT: Dialect;
    const NAME: &'static str;

    async fn conn(&self) -> StoreResult<Self::Conn>;
    /// Holds a cross-process lock while migrations run.
    async fn lock_migrations(&self, conn: &mut Self::Conn) -> StoreResult<()>;
    /// Releases it; `success` says whether the migrations applied.
    async fn unlock_migrations(&self, conn: &mut Self::Conn, success: bool) -> StoreResult<()>;
}

/// The store, generic over its backend. See [`crate::store::sqlite`] and [`crate::store::mysql`].
#[derive(Debug)]
#[allow(
    private_bounds,
    reason = "the backend interface is internal; users name SqliteStore or MysqlStore"
)]
pub struct SqlStore<B: Backend> {
    pub(crate) backend: B,
    /// Visitor sketch parts this process wrote per key since compacting it.
    sketch_parts: clicks::SketchParts,
}

#[allow(private_bounds, reason = "see SqlStore")]
impl<B: Backend> SqlStore<B> {
    pub(crate) fn new(backend: B) -> Self {
        Self {
            backend,
            sketch_parts: clicks::SketchParts::default(),
        }
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> StoreResult<Vec<Row>> {
        self.backend.conn().await?.query(sql, params).await
    }

    async fn query_one(&self, sql: &str, params: Vec<Value>) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn exec(&self, sql: &str, params: Vec<Value>) -> StoreResult<Exec> {
        self.backend.conn().await?.exec(sql, params).await
    }

    /// A connection inside a fresh transaction.
    async fn begin(&self) -> StoreResult<B::Conn> {
        let mut conn = self.backend.conn().await?;
        conn.begin().await?;
        Ok(conn)
    }
}

/// Commits when `result` is Ok, rolls back otherwise; returns `result` (or the commit error).
async fn finish<C: Conn, T>(conn: &mut C, result: StoreResult<T>) -> StoreResult<T> {
    match result {
        Ok(value) => {
            conn.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // The original error is what matters; a failed rollback ends with the connection.
            let _ = conn.rollback().await;
            Err(error)
        }
    }
}

/// Rows per multi-row INSERT. 500 rows x 15 columns = 7,500 placeholders: far below both
/// SQLite's 32,766 and MySQL's 65,535, and a few hundred KiB per packet, well inside
/// MariaDB's default 16 MiB `max_allowed_packet`. A 10,000-click batch is 20 statements.
const ROWS_PER_STATEMENT: usize = 500;

/// `INSERT INTO table (cols) VALUES (?,..),(?,..)...` for `rows` rows.
fn multi_row_insert(head: &str, columns: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(","));
    let mut sql = String::with_capacity(head.len() + rows * (one.len() + 1));
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql
}

/// `(?,?,?)` for an IN list of `n` items (n >= 1).
fn in_list(n: usize) -> String {
    format!("({})", vec!["?"; n.max(1)].join(","))
}

/// Names the unique key a duplicate-key error message refers to, without echoing the value.
pub(crate) fn conflict_subject(message: &str) -> &'static str {
    if message.contains("links") {
        "code"
    } else if message.contains("users") {
        "email"
    } else if message.contains("api_keys") {
        "api key"
    } else if message.contains("refresh_tokens") {
        "refresh token"
    } else {
        "key"
    }
}

/// Clamps a caller's page size.
fn page_size(limit: u32, max: u32) -> i64 {
    i64::from(limit.clamp(1, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn multi_row_inserts_have_one_group_per_row() {
        assert_eq!(
            multi_row_insert("INSERT INTO t (a,b)", 2, 3),
            "INSERT INTO t (a,b) VALUES (?,?),(?,?),(?,?)"
        );
        assert_eq!(in_list(3), "(?,?,?)");
    }

    #[test]
    fn upsert_clauses_match_each_dialect() {
        assert_eq!(
            Dialect::Sqlite.on_conflict_add("k", &["n"]),
            " ON CONFLICT (k) DO UPDATE SET n = n + excluded.n"
        );
        assert_eq!(
            Dialect::Mysql.on_conflict_add("k", &["n", "m"]),
            " ON DUPLICATE KEY UPDATE n = n + VALUES(n), m = m + VALUES(m)"
        );
    }

    #[test]
    fn conflicts_name_the_key_not_the_value() {
        assert_eq!(
            conflict_subject("Duplicate entry 'x' for key 'links_domain_code'"),
            "code"
        );
        assert_eq!(
            conflict_subject("UNIQUE constraint failed: users.email"),
            "email"
        );
    }

    #[test]
    fn row_errors_are_reported_not_panicked() {
        let row = Row(vec![Value::Text("x".into())]);
        assert!(matches!(row.i64(0), Err(StoreError::Corrupt(_))));
        assert!(matches!(row.i64(5), Err(StoreError::Corrupt(_))));
    }
}
