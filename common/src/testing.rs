//! Test support (feature `testing`): isolated, migrated stores (a fresh SQLite file or a
//! fresh MySQL database each) and small builders. Used by every crate's integration tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::domain::{
    ClickId, Email, LinkDomain, LinkId, NewLink, NewUser, Role, ShortCode, StoredClick,
    TargetPolicy, TargetUrl, Timestamp, User,
};
use crate::store::Store;
use crate::store::mysql::MysqlStore;
use crate::store::sqlite::SqliteStore;
use mysql_async::prelude::Queryable as _;

/// Server URL (no database) used to create per-test databases. `scripts/services.sh`
/// creates this user; override with `LINKGATE_TEST_MYSQL_URL`.
pub const DEFAULT_TEST_MYSQL_URL: &str = "mysql://linkgate:linkgate@127.0.0.1:3306";
const SERVICES_SCRIPT: &str = "bash scripts/services.sh";

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Debug)]
pub enum Backend {
    /// Holds the directory; the database goes with it.
    Sqlite { dir: tempfile::TempDir },
    Mysql {
        server_url: String,
        database: String,
    },
}

/// A migrated store on its own database, removed by [`TestDb::cleanup`].
#[derive(Debug)]
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
            backend: Backend::Sqlite { dir },
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

    /// The store URL, for services under test that open the store themselves.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("linkgate.db").display())
            }
            Backend::Mysql {
                server_url,
                database,
            } => format!("{server_url}/{database}"),
        }
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

/// An enriched human click on `link` at `at` (id carrying its millisecond, as the proxy
/// makes them; desktop Chrome on Windows, no referrer, country or address, visitor 0, not
/// flagged); tests change what they care about with `..stored_click(link, at)`.
pub fn stored_click(link: LinkId, at: Timestamp) -> StoredClick {
    StoredClick {
        click_id: ClickId::at(at),
        link_id: link,
        at,
        visitor: 0,
        ip: None,
        referrer_host: None,
        country: None,
        device: "desktop".into(),
        browser: "Chrome".into(),
        os: "Windows".into(),
        is_bot: false,
        fraud_reasons: 0,
    }
}

/// The Redis URL for tests (`LINKGATE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`),
/// after checking that something answers there. Fails, naming the script, when nothing does.
pub fn redis_url() -> String {
    let url = std::env::var("LINKGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let reachable = addr.parse::<std::net::SocketAddr>().ok().is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
    });
    assert!(
        reachable,
        "Redis is not reachable at {addr}. Run `{SERVICES_SCRIPT}`: it installs and starts MariaDB and Redis."
    );
    url
}

/// A key prefix unique to this test process and call, so parallel tests share one Redis.
pub fn redis_prefix() -> String {
    format!(
        "lgt{}x{}:",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A command for one of the workspace's binaries, isolated from the caller's linkgate
/// configuration (no `LINKGATE_CONFIG`, no `LINKGATE__*`) and with quiet logs.
pub fn binary(path: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(path);
    cmd.env_remove("LINKGATE_CONFIG").env("RUST_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LINKGATE__")) {
        cmd.env_remove(k);
    }
    cmd
}

/// A link's click count three ways: raw click rows, the sum of its hourly counters, and
/// `links.clicks`. Equal when every click was counted exactly once.
pub async fn click_counts(store: &dyn Store, link: crate::domain::LinkId) -> (u64, u64, u64) {
    let raw = store.raw_click_count(link).await.expect("raw click count");
    let hourly = store
        .hourly_counts(
            link,
            crate::domain::Timestamp::from_millis(0),
            crate::domain::Timestamp::now().plus_millis(crate::domain::Timestamp::MILLIS_PER_HOUR),
        )
        .await
        .expect("hourly counts")
        .iter()
        .map(|h| h.total)
        .sum();
    let counter = store
        .link_by_id(link)
        .await
        .expect("link")
        .map_or(0, |l| l.clicks);
    (raw, hourly, counter)
}

/// A TCP forwarder that can be cut, to make a dependency vanish mid-test.
#[derive(Debug)]
pub struct Forwarder {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (Arc::clone(&cut), Arc::clone(&conns));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // The flag is checked under the lock `cut` drains with, so a connection
                // accepted while the forwarder is being cut is either refused here or shut
                // down by `cut`, never left forwarding.
                let mut list = k.lock().unwrap();
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                drop(list);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Self { addr, cut, conns }
    }

    /// Accepts and forwards connections again after a cut.
    pub fn resume(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// The files under `dir`, recursively (a journal or deferred file left behind).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
