//! Rate limits at the edge: code enumeration per client address, and X-Forwarded-For
//! honoured only from trusted peers.

use std::time::Duration;

use linkgate_common::domain::Timestamp;

use crate::Setup;
use crate::helpers::{TestProxy, request};

/// 1,000 random codes from one address within a minute: 404s up to the limit, then 429
/// with a Retry-After for every link request of that address.
pub fn code_enumeration_is_limited_per_address_with_retry_after(setup: Setup) {
    let env = setup.env();
    env.link("realone", "https://example.com/real", |_| {});
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.limits.unknown_code_per_minute = 30;
    });
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..1000u32 {
        let resp = proxy.get(&format!("/guess{i:05}x"));
        if resp.status == 429 && retry_after.is_none() {
            retry_after = resp.header("retry-after").map(str::to_owned);
        }
        statuses.push(resp.status);
    }
    let not_found = statuses.iter().filter(|&&s| s == 404).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(not_found + limited, 1000, "{statuses:?}");
    // The burst allowance is the per-minute limit; a few more trickle in as it refills.
    assert!(
        (30..=40).contains(&not_found),
        "404s before the limit: {not_found}"
    );
    assert!(statuses[..30].iter().all(|&s| s == 404));
    let retry: u64 = retry_after.expect("Retry-After on 429").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Once limited, the address gets 429 for every link until it may ask again, so
    // existing codes can no longer be told from missing ones.
    let resp = proxy.get("/realone");
    assert_eq!(
        resp.status, 429,
        "a limited enumerator is refused known links too"
    );
    assert!(resp.header("retry-after").is_some());
    assert!(
        proxy
            .metrics_text()
            .contains(r#"linkgate_proxy_requests_total{outcome="limited"}"#)
    );
}

/// From an untrusted peer, X-Forwarded-For is ignored: rotating it neither escapes the
/// enumeration limit nor makes one client look like many visitors.
pub fn a_spoofed_forwarded_for_changes_neither_the_limit_key_nor_the_visitor(setup: Setup) {
    let env = setup.env();
    let link = env.link("spoofed", "https://example.com/s", |_| {});
    let proxy = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.limits.unknown_code_per_minute = 10;
        s.proxy.trusted_proxies = vec!["10.255.255.0/24".parse().unwrap()];
        s.fraud.repeat_max = 1000;
    });
    let get = |path: &str, xff: &str| {
        request(
            proxy.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {xff}\r\n\
                 User-Agent: Mozilla/5.0 Firefox/133.0\r\nAccept: text/html\r\n"
            ),
            b"",
        )
    };
    for i in 0..10u8 {
        assert_eq!(get("/spoofed", &format!("203.0.113.{i}")).status, 302);
    }
    let limited = (0..40u8)
        .filter(|i| get(&format!("/nothere{i:03}"), &format!("198.51.100.{i}")).status == 429)
        .count();
    assert!(
        limited >= 25,
        "rotating XFF must not reset the limit: {limited} limited"
    );
    let store = env.store();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::sync::Arc::clone(&store);
        // Raw clicks and their aggregates (written with the next aggregation window).
        let counts =
            env.block_on(async move { linkgate_common::testing::click_counts(&*s, link.id).await });
        if counts == (10, 10, 10) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "clicks not persisted and aggregated: {counts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let visitors = env.block_on(async move {
        let now = Timestamp::now();
        store
            .unique_visitors(
                link.id,
                now.plus_millis(-Timestamp::MILLIS_PER_DAY),
                now.plus_millis(Timestamp::MILLIS_PER_HOUR),
            )
            .await
            .unwrap()
    });
    assert_eq!(visitors, 1, "ten spoofed addresses are still one visitor");
}

/// Bad networks are scored as suspicious by default, and refused outright when configured.
pub fn bad_networks_can_be_refused_at_the_edge(setup: Setup) {
    let env = setup.env();
    env.link("netlink", "https://example.com/n", |_| {});
    let scored = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.fraud.bad_networks = vec!["127.0.0.0/8".parse().unwrap()];
    });
    assert_eq!(
        scored.get("/netlink").status,
        302,
        "scored, not refused, by default"
    );
    drop(scored);
    let refusing = TestProxy::start(&env, |s| {
        setup.configure(s);
        s.fraud.bad_networks = vec!["127.0.0.0/8".parse().unwrap()];
        s.fraud.refuse_bad_networks = true;
    });
    let resp = refusing.get("/netlink");
    assert_eq!(resp.status, 403);
    assert!(resp.header("location").is_none());
    assert_eq!(
        refusing.get("/healthz").status,
        200,
        "health checks are not links"
    );
}
