//! Migrations and liveness.

use async_trait::async_trait;

use super::value::params;
use super::{Backend, Conn, Dialect, SqlStore};
use crate::domain::Timestamp;
use crate::store::migrations::{LATEST_SCHEMA_VERSION, MIGRATIONS, statements};
use crate::store::{SchemaStore, StoreError, StoreResult};

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version INTEGER NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL, applied_at BIGINT NOT NULL)";

#[async_trait]
impl<B: Backend> SchemaStore for SqlStore<B> {
    fn backend_name(&self) -> &'static str {
        B::NAME
    }

    async fn migrate(&self) -> StoreResult<u32> {
        let mut conn = self.backend.conn().await?;
        self.backend.lock_migrations(&mut conn).await?;
        let result = migrate_locked::<B>(&mut conn).await;
        self.backend
            .unlock_migrations(&mut conn, result.is_ok())
            .await?;
        let version = result?;
        tracing::info!(backend = B::NAME, version, "schema is up to date");
        Ok(version)
    }

    async fn schema_version(&self) -> StoreResult<u32> {
        let mut conn = self.backend.conn().await?;
        current_version::<B>(&mut conn).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.query("SELECT 1", params![]).await.map(drop)
    }
}

async fn current_version<B: Backend>(conn: &mut B::Conn) -> StoreResult<u32> {
    let exists_sql = match B::DIALECT {
        Dialect::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        }
        Dialect::Mysql => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'"
        }
    };
    let rows = conn.query(exists_sql, params![]).await?;
    if rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(0) == 0 {
        return Ok(0);
    }
    let rows = conn
        .query("SELECT MAX(version) FROM schema_migrations", params![])
        .await?;
    let version = rows
        .first()
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    u32::try_from(version).map_err(|_| StoreError::Corrupt("negative schema version".into()))
}

async fn migrate_locked<B: Backend>(conn: &mut B::Conn) -> StoreResult<u32> {
    conn.exec(CREATE_MIGRATIONS_TABLE, params![]).await?;
    let current = current_version::<B>(conn).await?;
    if current > LATEST_SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            found: current,
            expected: LATEST_SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match B::DIALECT {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Mysql => migration.mysql,
        };
        tracing::info!(
            backend = B::NAME,
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        for statement in statements(sql) {
            conn.exec(&statement, params![]).await?;
        }
        conn.exec(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            params![migration.version, migration.name, Timestamp::now()],
        )
        .await?;
    }
    Ok(LATEST_SCHEMA_VERSION)
}
