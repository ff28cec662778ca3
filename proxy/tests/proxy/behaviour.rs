use std::time::Duration;

use argon2::PasswordHasher as _;
use linkgate_common::domain::{
    LinkPatch, LinkState, RedirectStatus, TargetPolicy, TargetUrl, Timestamp,
};

use crate::Setup;
use crate::helpers::{TestProxy, request};

pub fn a_link_redirects_and_the_second_request_is_an_l1_hit(setup: Setup) {
    let env = setup.env();
    env.link("hello", "https://example.com/landing", |_| {});
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let first = proxy.get("/hello");
    assert_eq!(first.status, 302, "{first:?}");
    assert_eq!(
        first.header("location"),
        Some("https://example.com/landing")
    );
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.header("content-length"), Some("0"));
    let second = proxy.get("/hello");
    assert_eq!(second.status, 302);
    // The hit answers with the cached link's own Location value, the same bytes.
    assert_eq!(
        second.header("location"),
        Some("https://example.com/landing")
    );
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("linkgate_proxy_requests_total{outcome=\"l1_hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("linkgate_proxy_requests_total{outcome=\"store_hit\"} 1")
            || metrics.contains("linkgate_proxy_requests_total{outcome=\"l2_hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("linkgate_clicks_offered_total 2"),
        "{metrics}"
    );
    // No label carries the code.
    assert!(!metrics.contains("hello"), "{metrics}");
}

pub fn an_unknown_code_is_a_404_page_and_is_cached_negatively(setup: Setup) {
    let env = setup.env();
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    for _ in 0..3 {
        let resp = proxy.get("/nope123");
        assert_eq!(resp.status, 404);
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.text().contains("Link not found"));
    }
    let metrics = proxy.metrics_text();
    assert!(
        metrics.contains("linkgate_proxy_cache_lookups_total{result=\"miss\",tier=\"store\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("linkgate_proxy_requests_total{outcome=\"not_found\"} 3"),
        "{metrics}"
    );
}

pub fn expired_links_are_gone_or_go_to_their_fallback(setup: Setup) {
    let env = setup.env();
    let past = Timestamp::now().plus_millis(-1_000);
    env.link("old", "https://example.com/a", |l| {
        l.expires_at = Some(past);
    });
    env.link("oldfb", "https://example.com/a", |l| {
        l.expires_at = Some(past);
        l.fallback_url =
            Some(TargetUrl::parse("https://example.com/sorry", &TargetPolicy::default()).unwrap());
    });
    let soon = Timestamp::now().plus_millis(1_500);
    env.link("soon", "https://example.com/b", |l| {
        l.expires_at = Some(soon);
    });
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let gone = proxy.get("/old");
    assert_eq!(gone.status, 410);
    assert!(gone.text().contains("expired"));
    let fb = proxy.get("/oldfb");
    assert_eq!(
        (fb.status, fb.header("location")),
        (302, Some("https://example.com/sorry"))
    );
    assert_eq!(proxy.get("/soon").status, 302, "still valid");
    // Expiry needs no invalidation: the cached copy is judged against the clock.
    proxy.wait_for("/soon", Duration::from_secs(3), |r| r.status == 410);
}

pub fn max_clicks_is_exact_under_concurrent_load(setup: Setup) {
    let env = setup.env();
    env.link("limited", "https://example.com/l", |l| {
        l.max_clicks = Some(25);
    });
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let addr = proxy.addr;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        request(addr, "GET /limited HTTP/1.1\r\nHost: localhost\r\n", b"").status
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 302).count(),
        25,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        55,
        "{statuses:?}"
    );
}

pub fn a_password_link_shows_a_form_and_redirects_after_the_right_password(setup: Setup) {
    let env = setup.env();
    let hash = argon2::Argon2::default()
        .hash_password_with_salt(b"open sesame", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
    env.link("secret", "https://example.com/vault", |l| {
        l.password_hash = Some(hash);
    });
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let form = proxy.get("/secret");
    assert_eq!(form.status, 200);
    assert!(form.text().contains("<form method=\"post\""));
    assert_eq!(form.header("location"), None);
    let post = |body: &str| {
        request(
            proxy.addr,
            "POST /secret HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            body.as_bytes(),
        )
    };
    let wrong = post("password=guess");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("location"), None);
    let right = post("password=open+sesame");
    assert_eq!(right.status, 303, "{right:?}");
    assert_eq!(right.header("location"), Some("https://example.com/vault"));
    // Guessing is rate limited per address (10 per minute by default).
    let statuses: Vec<u16> = (0..12).map(|_| post("password=guess").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let limited = post("password=guess");
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
}

pub fn the_query_string_is_forwarded_when_the_link_asks(setup: Setup) {
    let env = setup.env();
    env.link("fwd", "https://example.com/p?a=1#frag", |l| {
        l.forward_query = true;
    });
    env.link("nofwd", "https://example.com/q", |_| {});
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    assert_eq!(
        proxy.get("/fwd?utm_source=x&b=%20").header("location"),
        Some("https://example.com/p?a=1&utm_source=x&b=%20#frag")
    );
    assert_eq!(
        proxy.get("/nofwd?utm_source=x").header("location"),
        Some("https://example.com/q")
    );
}

pub fn head_gets_the_headers_without_a_body(setup: Setup) {
    let env = setup.env();
    env.link("headme", "https://example.com/h", |l| {
        l.redirect_status = Some(RedirectStatus::MovedPermanently);
    });
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let head = request(
        proxy.addr,
        "HEAD /headme HTTP/1.1\r\nHost: localhost\r\n",
        b"",
    );
    assert_eq!(
        (head.status, head.header("location")),
        (301, Some("https://example.com/h"))
    );
    // A permanent redirect may be cached by the browser; a temporary one never is.
    assert_eq!(head.header("cache-control"), Some("public, max-age=3600"));
    assert!(head.body.is_empty());
    let missing = request(
        proxy.addr,
        "HEAD /missing1 HTTP/1.1\r\nHost: localhost\r\n",
        b"",
    );
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty(), "{:?}", missing.text());
    assert!(missing.header("content-length").is_some());
    let put = request(
        proxy.addr,
        "PUT /headme HTTP/1.1\r\nHost: localhost\r\n",
        b"x",
    );
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        put.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

pub fn disabled_and_banned_links_show_a_notice(setup: Setup) {
    let env = setup.env();
    let off = env.link("off", "https://example.com/o", |_| {});
    let bad = env.link("bad", "https://example.com/b", |_| {});
    let store = env.store();
    env.block_on(async {
        store
            .update_link(
                off.id,
                &LinkPatch {
                    state: Some(LinkState::Disabled),
                    ..LinkPatch::default()
                },
            )
            .await
            .unwrap();
        store
            .update_link(
                bad.id,
                &LinkPatch {
                    state: Some(LinkState::Banned),
                    ..LinkPatch::default()
                },
            )
            .await
            .unwrap();
    });
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let disabled = proxy.get("/off");
    assert_eq!(disabled.status, 410);
    assert!(disabled.text().contains("disabled"));
    let banned = proxy.get("/bad");
    assert_eq!(banned.status, 410);
    assert!(banned.text().contains("blocked"));
}

pub fn hostile_paths_never_reach_a_header(setup: Setup) {
    let env = setup.env();
    env.link("real", "https://example.com/r", |l| l.forward_query = true);
    let proxy = TestProxy::start(&env, |s| setup.configure(s));
    let long = "a".repeat(5_000);
    for path in [
        "/real%0d%0aSet-Cookie:%20x=1".to_owned(),
        "/%0d%0aLocation:%20https://evil.example".to_owned(),
        format!("/{long}"),
        "/real/extra".to_owned(),
        "/../etc/passwd".to_owned(),
    ] {
        let resp = proxy.get(&path);
        assert_eq!(resp.status, 404, "{path}: {resp:?}");
        assert!(
            resp.header("set-cookie").is_none() && resp.header("location").is_none(),
            "{path}: {resp:?}"
        );
        assert!(
            resp.headers
                .iter()
                .all(|(_, v)| !v.contains("evil") && v.len() < 200),
            "{path}: {resp:?}"
        );
    }
    // A query with an encoded CR/LF is refused, not forwarded (as targets with one are).
    let resp = proxy.get("/real?x=%0d%0aSet-Cookie:y");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.header("set-cookie").is_none() && resp.header("location").is_none());
    // An overlong query with forwarding on: 414, nothing echoed.
    let resp = proxy.get(&format!("/real?{}", "q".repeat(9_000)));
    assert!(matches!(resp.status, 414 | 431 | 400), "{resp:?}");
    assert!(resp.header("location").is_none());
    // No Host at all.
    let resp = request(proxy.addr, "GET /real HTTP/1.0\r\n", b"");
    assert_eq!(resp.status, 400, "{resp:?}");
}
