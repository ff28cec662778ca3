//! Isolated databases for store tests: a fresh SQLite file or a fresh MySQL database each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use linkgate_common::domain::{
    Email, LinkDomain, NewLink, NewUser, Role, ShortCode, TargetPolicy, TargetUrl, User,
};
use linkgate_common::store::Store;
use linkgate_common::store::mysql::MysqlStore;
use linkgate_common::store::sqlite::SqliteStore;
use mysql_async::prelude::Queryable as _;

/// Server URL (no database) used to create per-test databases. `scripts/services.sh`
/// creates this user; override with `LINKGATE_TEST_MYSQL_URL`.
pub const DEFAULT_TEST_MYSQL_URL: &str = "mysql://linkgate:linkgate@127.0.0.1:3306";
const SERVICES_SCRIPT: &str = "bash scripts/services.sh";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub enum Backend {
    /// Holds the directory; the database goes with it.
    Sqlite { _dir: tempfile::TempDir },
    Mysql {
        server_url: String,
        database: String,
    },
}

/// A migrated store on its own database, removed by [`TestDb::cleanup`].
pub struct TestDb {
    pub store: Arc<dyn Store>,
    backend: Backend,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let store = Self::sqlite_unmigrated();
        store.store.migrate().await.expect("migrate sqlite");
        store
    }

    pub fn sqlite_unmigrated() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("linkgate.db"), 8).expect("open sqlite");
        Self {
            store: Arc::new(store),
            backend: Backend::Sqlite { _dir: dir },
        }
    }

    pub async fn mysql() -> Self {
        let db = Self::mysql_unmigrated().await;
        db.store.migrate().await.expect("migrate mysql");
        db
    }

    pub async fn mysql_unmigrated() -> Self {
        let server_url = std::env::var("LINKGATE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_MYSQL_URL.to_owned());
        let server_url = server_url.trim_end_matches('/').to_owned();
        let database = format!(
            "linkgate_test_{}_{}_{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let mut conn = connect(&server_url).await;
        conn.query_drop(format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {database}: {e}. {SERVICES_SCRIPT} grants the linkgate user CREATE on linkgate%"));
        drop(conn);
        let store =
            MysqlStore::open(&format!("{server_url}/{database}"), 8).expect("open mysql store");
        Self {
            store: Arc::new(store),
            backend: Backend::Mysql {
                server_url,
                database,
            },
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// Drops the MySQL database (`SQLite`'s directory goes with the `TempDir`).
    pub async fn cleanup(self) {
        let TestDb { store, backend } = self;
        drop(store);
        if let Backend::Mysql {
            server_url,
            database,
        } = backend
        {
            let mut conn = connect(&server_url).await;
            let _ = conn
                .query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
                .await;
            let _ = conn.disconnect().await;
        }
    }
}

async fn connect(server_url: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(server_url)
        .unwrap_or_else(|_| panic!("LINKGATE_TEST_MYSQL_URL is not a valid mysql:// URL"));
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        mysql_async::Conn::new(opts),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "MariaDB/MySQL is not reachable as the linkgate test user ({e}). \
             Run `{SERVICES_SCRIPT}`: it installs and starts MariaDB and Redis and creates the user."
        ),
        Err(tokio::time::error::Elapsed { .. }) => {
            panic!("MariaDB/MySQL did not answer within 10 s. Run `{SERVICES_SCRIPT}` to start it.")
        }
    }
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

pub fn url(s: &str) -> TargetUrl {
    TargetUrl::parse(s, &TargetPolicy::default()).expect("valid test URL")
}

pub fn domain() -> LinkDomain {
    LinkDomain::parse("sho.rt").expect("valid domain")
}

pub fn code(s: &str) -> ShortCode {
    ShortCode::parse(s).expect("valid code")
}

pub async fn user(store: &dyn Store, email: &str, role: Role) -> User {
    store
        .create_user(&NewUser {
            email: Email::parse(email).expect("valid email"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            role,
        })
        .await
        .expect("create user")
}

pub fn new_link(owner: &User, c: &str, target: &str) -> NewLink {
    NewLink::new(owner.id, domain(), code(c), url(target))
}
