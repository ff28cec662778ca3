//! Clicks from the redirect to the database: persisted through the running proxy, flushed
//! on SIGTERM, journaled when the store is gone and replayed after a `kill -9`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use linkgate_common::domain::{Dimension, LinkId, Timestamp};

use linkgate_common::testing::{click_counts, files_under};

use crate::Setup;
use crate::helpers::{Env, Forwarder, TestProxy, free_port, request};

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn raw_clicks(env: &Env, link: LinkId) -> u64 {
    let store = env.store();
    env.block_on(async move { store.raw_click_count(link).await.unwrap() })
}

/// Every aggregate of a link agrees on its click count.
fn assert_counted_once(env: &Env, link: LinkId, expected: u64) {
    let store = env.store();
    let counts = env.block_on(async move { click_counts(&*store, link).await });
    assert_eq!(counts, (expected, expected, expected));
}

/// Redirects become raw clicks and aggregates within a flush, enriched from the request.
pub fn redirects_become_persisted_clicks(setup: Setup) {
    let env = setup.env();
    let link = env.link("clicky", "https://example.com/c", |_| {});
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.clicks.country_header = Some("CF-IPCountry".into());
    });
    for i in 0..40 {
        let resp = request(
            proxy.addr,
            &format!(
                "GET /clicky HTTP/1.1\r\nHost: localhost\r\n\
                 User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\
                 Accept: text/html\r\n\
                 Referer: https://news.example.org/post/{i}\r\nCF-IPCountry: nl\r\n"
            ),
            b"",
        );
        assert_eq!(resp.status, 302);
    }
    for _ in 0..10 {
        let resp = request(
            proxy.addr,
            "GET /clicky HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\n",
            b"",
        );
        assert_eq!(resp.status, 302);
    }
    assert_eq!(proxy.get("/nope").status, 404, "a 404 is not a click");
    // Raw clicks within a flush, their aggregates with the next aggregation window.
    wait_until(
        Duration::from_secs(10),
        "clicks persisted and aggregated",
        || {
            let store = env.store();
            env.block_on(async move { click_counts(&*store, link.id).await }) == (50, 50, 50)
        },
    );
    assert_counted_once(&env, link.id, 50);
    let store = env.store();
    let (hours, countries, referrers, devices, visitors) = env.block_on(async move {
        let from = Timestamp::now().plus_millis(-Timestamp::MILLIS_PER_DAY);
        let to = Timestamp::now().plus_millis(Timestamp::MILLIS_PER_HOUR);
        (
            store.hourly_counts(link.id, from, to).await.unwrap(),
            store
                .top_breakdown(link.id, Dimension::Country, from, to, 5)
                .await
                .unwrap(),
            store
                .top_breakdown(link.id, Dimension::Referrer, from, to, 5)
                .await
                .unwrap(),
            store
                .top_breakdown(link.id, Dimension::Device, from, to, 5)
                .await
                .unwrap(),
            store.unique_visitors(link.id, from, to).await.unwrap(),
        )
    });
    let human: u64 = hours.iter().map(|h| h.human).sum();
    let bots: u64 = hours.iter().map(|h| h.bot).sum();
    let suspicious: u64 = hours.iter().map(|h| h.suspicious).sum();
    // One browser clicking one link 40 times in a second: the first 5 are human (the
    // default `fraud.repeat_max`), the rest repeats; curl sends no Accept header.
    assert_eq!((human, bots, suspicious), (5, 10, 45));
    assert_eq!(countries[0], ("NL".to_owned(), 40), "{countries:?}");
    assert_eq!(
        referrers[0],
        ("news.example.org".to_owned(), 40),
        "{referrers:?}"
    );
    assert!(devices.contains(&("desktop".to_owned(), 40)), "{devices:?}");
    assert_eq!(visitors, 1, "one browser on one address is one visitor");
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("linkgate_clicks_persisted_total 50"),
        "{metrics}"
    );
    assert!(
        metrics.contains("linkgate_clicks_aggregated_total 50"),
        "{metrics}"
    );
    assert!(metrics.contains("linkgate_clicks_in_flight 0"), "{metrics}");
    // How far analytics may trail: the configured 1 s, stretched by slow writes up to the
    // default cap of 5 s.
    let window = metrics.lines().find_map(|l| {
        l.strip_prefix("linkgate_click_aggregate_window_milliseconds ")
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    assert!(
        window.is_some_and(|ms| (1000..=5000).contains(&ms)),
        "{metrics}"
    );
}

fn spawn_proxy(url: &str, port: u16, metrics: u16, journal: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_linkgate-proxy"))
        .env_remove("LINKGATE_CONFIG")
        .env("LINKGATE__STORE__URL", url)
        .env("LINKGATE__PROXY__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "LINKGATE__PROXY__METRICS_LISTEN",
            format!("127.0.0.1:{metrics}"),
        )
        .env("LINKGATE__PROXY__THREADS", "2")
        .env("LINKGATE__CLICKS__JOURNAL_DIR", journal)
        .env("LINKGATE__CLICKS__RETRY_INITIAL_MS", "50")
        .env("LINKGATE__CLICKS__RETRY_MAX_MS", "200")
        .env("LINKGATE__CLICKS__WRITE_TIMEOUT_MS", "1000")
        // Windows of 1 s at most, so the stale sweep's wait stays 5 s.
        .env("LINKGATE__CLICKS__AGGREGATE_MAX_INTERVAL_MS", "1000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_listening(addr: SocketAddr) {
    wait_until(Duration::from_secs(20), "proxy listening", || {
        TcpStream::connect(addr).is_ok()
    });
}

fn metric(metrics: SocketAddr, name: &str) -> Option<u64> {
    let resp = request(metrics, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n", b"");
    resp.text().lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The store vanishes (MariaDB behind a cut forwarder): redirects go on from L1, the clicks
/// are journaled; the proxy is killed with SIGKILL; a new proxy replays the journal and every
/// click is in the database exactly once.
#[test]
fn journaled_clicks_survive_kill_9_and_are_replayed_once() {
    let env = Env::mysql();
    let link = env.link("durable", "https://example.com/d", |_| {});
    let forwarder = Forwarder::start("127.0.0.1:3306".parse().unwrap());
    let via = env
        .url()
        .replace("127.0.0.1:3306", &forwarder.addr.to_string());
    let journal = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let mut child = spawn_proxy(&via, port, metrics_port, journal.path());
    wait_listening(addr);
    let get = || request(addr, "GET /durable HTTP/1.1\r\nHost: localhost\r\n", b"").status;
    for _ in 0..20 {
        assert_eq!(get(), 302);
    }
    wait_until(Duration::from_secs(10), "first clicks persisted", || {
        raw_clicks(&env, link.id) == 20
    });

    forwarder.cut();
    for _ in 0..30 {
        assert_eq!(get(), 302, "redirects go on from L1 without the store");
    }
    wait_until(Duration::from_secs(15), "clicks journaled", || {
        metric(metrics, "linkgate_clicks_journaled") == Some(30)
    });
    let files = std::fs::read_dir(journal.path()).unwrap().count();
    assert!(files > 0);
    child.kill().unwrap(); // SIGKILL: no flush, no goodbye
    child.wait().unwrap();
    assert_eq!(raw_clicks(&env, link.id), 20);

    // Restart against the store directly; the journal is replayed at start-up.
    let (port, metrics_port) = (free_port(), free_port());
    let mut child = spawn_proxy(&env.url(), port, metrics_port, journal.path());
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    wait_until(Duration::from_secs(15), "journal replayed", || {
        raw_clicks(&env, link.id) == 50
    });
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    assert_eq!(
        metric(metrics, "linkgate_clicks_journaled_at_start"),
        Some(30)
    );
    wait_until(Duration::from_secs(5), "journal emptied", || {
        std::fs::read_dir(journal.path()).unwrap().next().is_none()
    });
    // The first 20 clicks' aggregates may have been pending in the store when the proxy
    // was killed: the stale sweep applies them (after 3 maximum aggregation intervals + 2
    // write timeouts, 5 s here).
    wait_until(Duration::from_secs(30), "aggregates complete", || {
        let store = env.store();
        env.block_on(async move { click_counts(&*store, link.id).await }) == (50, 50, 50)
    });
    assert_counted_once(&env, link.id, 50);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(forwarder);
}

/// SIGTERM under load: every redirect the clients saw is a persisted click (at most one
/// in-flight answer per connection more: the proxy wrote it, the client did not read it).
#[test]
fn sigterm_flushes_every_served_click() {
    let env = Env::sqlite();
    let link = env.link("flush", "https://example.com/f", |_| {});
    let journal = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = spawn_proxy(&env.url(), port, metrics_port, journal.path());
    wait_listening(addr);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut served = 0u64;
                let Ok(mut s) = TcpStream::connect(addr) else {
                    return served;
                };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 4096];
                loop {
                    if s.write_all(b"GET /flush HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        .is_err()
                    {
                        return served;
                    }
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 302") => served += 1,
                        _ => return served,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let served: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(served > 100, "load was flowing: {served}");
    let persisted = raw_clicks(&env, link.id);
    assert!(
        (served..=served + 3).contains(&persisted),
        "served {served}, persisted {persisted}"
    );
    // (An empty `deferred` directory may be there: clicks were deferred while the cores
    // were busy, and every one was taken back and persisted before the exit.)
    assert_eq!(
        files_under(journal.path()),
        Vec::<std::path::PathBuf>::new(),
        "the store was up: no click was left in a journal or deferred file"
    );
}
