//! Probes, passthrough to admin, and shutdown.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{Env, FakeAdmin, TestProxy, free_port, request};

#[test]
fn health_and_readiness_are_answered_by_the_proxy_itself() {
    let env = Env::sqlite();
    let proxy = TestProxy::start(&env, |_| {});
    let health = proxy.get("/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    proxy.wait_for("/readyz", Duration::from_secs(5), |r| r.status == 200);
}

#[test]
fn admin_paths_pass_through_with_the_client_address_appended() {
    let env = Env::sqlite();
    let admin = FakeAdmin::start();
    let proxy = TestProxy::start(&env, |s| s.proxy.admin_upstream = admin.addr);
    for path in ["/", "/api/v1/links", "/static/app.js"] {
        let resp = proxy.get(path);
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "admin"),
            "{path}"
        );
    }
    // Loopback is a trusted proxy by default: its X-Forwarded-For is kept and extended.
    let resp = request(
        proxy.addr,
        "GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.7\r\n",
        b"",
    );
    assert_eq!(resp.status, 200);
    let seen = admin.seen.lock().unwrap().clone();
    let last = seen.last().unwrap().to_ascii_lowercase();
    assert!(
        last.contains("x-forwarded-for: 198.51.100.7, 127.0.0.1"),
        "{last}"
    );
    assert!(last.contains("x-real-ip: 198.51.100.7"), "{last}");
    assert!(seen[0].starts_with("GET / HTTP/1.1"), "{seen:?}");
}

#[test]
fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_replaced() {
    let env = Env::sqlite();
    let admin = FakeAdmin::start();
    let proxy = TestProxy::start(&env, |s| {
        s.proxy.admin_upstream = admin.addr;
        s.proxy.trusted_proxies = Vec::new();
    });
    let resp = request(
        proxy.addr,
        "GET /api/v1/me HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\n",
        b"",
    );
    assert_eq!(resp.status, 200);
    let last = admin
        .seen
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .to_ascii_lowercase();
    assert!(!last.contains("6.6.6.6"), "{last}");
    assert!(
        last.contains("x-forwarded-for: 127.0.0.1") && last.contains("x-real-ip: 127.0.0.1"),
        "{last}"
    );
}

#[test]
fn an_unreachable_admin_is_a_502_not_a_hang() {
    let env = Env::sqlite();
    let dead = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = TestProxy::start(&env, |s| s.proxy.admin_upstream = dead);
    let resp = proxy.get("/api/v1/links");
    assert!(resp.status >= 500, "{resp:?}");
}

/// The binary under load receives SIGTERM: it stops accepting, finishes what is in flight
/// and exits within its grace period.
#[test]
fn sigterm_under_load_exits_within_the_grace_period() {
    let env = Env::sqlite();
    env.link("busy", "https://example.com/busy", |_| {});
    let port = free_port();
    let grace = 4;
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkgate-proxy"))
        .env_remove("LINKGATE_CONFIG")
        .env("LINKGATE__STORE__URL", env.url())
        .env("LINKGATE__PROXY__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "LINKGATE__PROXY__METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("LINKGATE__PROXY__THREADS", "2")
        .env("LINKGATE__PROXY__GRACE_PERIOD_SECS", grace.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Keep-alive clients hammering it.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok) = (Arc::clone(&stop), Arc::clone(&ok));
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return;
                };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(b"GET /busy HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 302") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 50, "load is flowing: {before}");
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(grace + 5),
            "still running after {:?}",
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    assert!(status.success(), "{status:?}");
    assert!(
        took <= Duration::from_secs(grace),
        "exit took {took:?}, grace is {grace} s"
    );
    // New connections are refused once it has stopped.
    assert!(TcpStream::connect(addr).is_err());
    eprintln!(
        "exited {took:?} after SIGTERM; {} redirects served",
        ok.load(Ordering::Relaxed)
    );
}

#[test]
fn odd_request_targets_get_a_4xx_and_the_proxy_keeps_serving() {
    let env = Env::sqlite();
    env.link("still", "https://example.com/s", |_| {});
    let proxy = TestProxy::start(&env, |_| {});
    for head in [
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n",
        "GET http://localhost/still HTTP/1.1\r\nHost: localhost\r\n",
        "DELETE /still HTTP/1.1\r\nHost: localhost\r\n",
    ] {
        let resp = request(proxy.addr, head, b"");
        assert!(resp.status < 500, "{head:?}: {resp:?}");
    }
    assert_eq!(proxy.get("/still").status, 302);
}
