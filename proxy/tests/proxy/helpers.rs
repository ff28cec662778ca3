//! A real proxy on real sockets against an isolated store, a tiny HTTP client that shows
//! exactly what went over the wire, a fake admin upstream, and a cuttable TCP forwarder.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use linkgate_common::domain::{Link, NewLink, Role, User};
use linkgate_common::store::Store;
use linkgate_common::testing::{TestDb, new_link, user};
use linkgate_config::{SecretUrl, Settings};
use linkgate_proxy::Proxy;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::Notify;

/// A free loopback port (bound and released; Pingora binds by address).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A test world: a runtime for store calls and an isolated store.
#[derive(Debug)]
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub db: Option<TestDb>,
}

impl Env {
    pub fn sqlite() -> Self {
        let rt = runtime();
        let db = rt.block_on(TestDb::sqlite());
        Self { rt, db: Some(db) }
    }

    pub fn mysql() -> Self {
        let rt = runtime();
        let db = rt.block_on(TestDb::mysql());
        Self { rt, db: Some(db) }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.db.as_ref().unwrap().store()
    }

    pub fn url(&self) -> String {
        self.db.as_ref().unwrap().url()
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn owner(&self) -> User {
        let store = self.store();
        self.block_on(async move {
            let email = linkgate_common::domain::Email::parse("owner@example.com").unwrap();
            match store.user_by_email(&email).await.unwrap() {
                Some(u) => u,
                None => user(&*store, "owner@example.com", Role::User).await,
            }
        })
    }

    /// Creates a link on the test host `localhost` after `edit` customises it.
    pub fn link(&self, code: &str, target: &str, edit: impl FnOnce(&mut NewLink)) -> Link {
        let owner = self.owner();
        let mut new = new_link(&owner, code, target);
        new.domain = linkgate_common::domain::LinkDomain::parse("localhost").unwrap();
        edit(&mut new);
        let store = self.store();
        self.block_on(async move { store.create_link(&new).await.unwrap() })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            self.rt.block_on(db.cleanup());
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Shutdown signal the test triggers.
struct TestSignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::GracefulTerminate
    }
}

/// A running proxy; shut down when dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    signal: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
    /// The click journal directory (each proxy its own, as in production).
    _journal: Arc<tempfile::TempDir>,
}

impl TestProxy {
    /// Starts a proxy on fresh ports with the env's store; `edit` adjusts settings.
    pub fn start(env: &Env, edit: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::default();
        settings.store.url = SecretUrl::new(env.url());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        settings.proxy.listen = addr;
        settings.proxy.metrics_listen = metrics;
        settings.proxy.threads = 2;
        settings.proxy.grace_period_secs = 2;
        settings.cache.change_poll_ms = 100;
        // Tests send many requests from one address; the limit tests lower these again.
        settings.limits.unknown_code_per_minute = 1_000_000;
        let journal = Arc::new(tempfile::tempdir().unwrap());
        journal.path().clone_into(&mut settings.clicks.journal_dir);
        edit(&mut settings);
        let signal = Arc::new(Notify::new());
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::spawn(move || {
            let proxy = Proxy::new(settings).expect("proxy starts");
            proxy.run(Box::new(TestSignal(thread_signal)));
        });
        // Both listeners: the metrics service binds its own socket, possibly a moment after
        // the proxy's (a test that read metrics first thing once found nothing there).
        let deadline = Instant::now() + Duration::from_secs(10);
        for listener in [addr, metrics] {
            while TcpStream::connect(listener).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "proxy did not start listening on {listener}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Self {
            addr,
            metrics,
            signal,
            thread: Some(thread),
            _journal: journal,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n"),
            b"",
        )
    }

    pub fn metrics_text(&self) -> String {
        String::from_utf8(request(self.metrics, "GET /metrics HTTP/1.1\r\nHost: x\r\n", b"").body)
            .unwrap()
    }

    /// Polls `path` until `accept` holds, for at most `within`; returns the time it took.
    pub fn wait_for(
        &self,
        path: &str,
        within: Duration,
        accept: impl Fn(&Resp) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let resp = self.get(path);
            if accept(&resp) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "not seen within {within:?}; last: {resp:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.signal.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A response as it came off the wire.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (request line and headers, without the final blank line) plus `body` on a
/// fresh connection with `Connection: close`, and reads the whole response.
pub fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(b"Connection: close\r\n");
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "incomplete response {other:?}: {:?}",
            String::from_utf8_lossy(raw)
        ),
    };
    Resp {
        status: resp.code.unwrap(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[len..].to_vec(),
    }
}

/// A stand-in for the admin service: answers 200 "admin" and remembers request heads.
pub struct FakeAdmin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl FakeAdmin {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve_admin(stream, &log));
            }
        });
        Self { addr, seen }
    }
}

fn serve_admin(mut stream: TcpStream, log: &Mutex<Vec<String>>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buf[filled..]) else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            log.lock().unwrap().push(head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nadmin",
            );
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
    }
}

pub use linkgate_common::testing::Forwarder;
