//! The whole system on one public port: sign up and create a link through the proxy's
//! passthrough to the real admin service, follow the short link, and read the click back
//! from analytics once the batcher has flushed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use linkgate_admin::AppState;
use linkgate_config::{Secret, SecretUrl, Settings};
use serde_json::Value;

use crate::Setup;
use crate::helpers::{Resp, TestProxy, request};

fn json_request(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let resp: Resp = request(
        proxy.addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}"
        ),
        body.as_bytes(),
    );
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    )
}

pub fn created_in_admin_redirected_by_proxy_counted_in_analytics(setup: Setup) {
    let env = setup.env();
    // Proxy and admin share the store and, in the Redis set-up, one Redis key prefix.
    let mut shared = Settings::default();
    setup.configure(&mut shared);
    let mut admin_settings = shared.clone();
    admin_settings.store.url = SecretUrl::new(env.url());
    admin_settings.auth.jwt_secret = Some(Secret::new("end-to-end-secret-end-to-end-secret"));
    "http://localhost".clone_into(&mut admin_settings.links.public_base_url);
    let store = env.store();
    let admin = env.block_on(async move {
        let state = Arc::new(AppState::new(admin_settings, store).unwrap());
        linkgate_admin::ensure_admin(&state, "root@example.com", Some("root-password-1"))
            .await
            .unwrap();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        linkgate_admin::serve(state, api, metrics).unwrap()
    });
    let proxy = TestProxy::start(&env, |s| {
        s.redis = shared.redis.clone();
        s.proxy.admin_upstream = admin.api_addr;
    });

    let (status, signup) = json_request(
        &proxy,
        "POST",
        "/api/v1/auth/signup",
        None,
        r#"{"email": "e2e@example.com", "password": "end-to-end-1"}"#,
    );
    assert_eq!(status, 201, "{signup}");
    let token = signup["access_token"].as_str().unwrap().to_owned();
    let (status, link) = json_request(
        &proxy,
        "POST",
        "/api/v1/links",
        Some(&token),
        r#"{"target": "https://example.com/landing", "code": "e2e-link"}"#,
    );
    assert_eq!(status, 201, "{link}");

    for _ in 0..7 {
        let resp = request(
            proxy.addr,
            "GET /e2e-link HTTP/1.1\r\nHost: localhost\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\
             Accept: text/html\r\nReferer: https://news.example.org/story\r\n",
            b"",
        );
        assert_eq!(resp.status, 302);
        assert_eq!(resp.header("location"), Some("https://example.com/landing"));
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    let report = loop {
        let (status, report) = json_request(
            &proxy,
            "GET",
            "/api/v1/links/e2e-link/analytics?granularity=hour",
            Some(&token),
            "",
        );
        assert_eq!(status, 200, "{report}");
        if report["totals"]["clicks"] == 7 {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "clicks not in analytics: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The 6th and 7th click of one visitor within seconds are repeats (fraud.repeat_max 5).
    assert_eq!(report["totals"]["human"], 5);
    assert_eq!(report["totals"]["suspicious"], 2);
    assert_eq!(report["totals"]["unique_visitors"], 1);
    assert_eq!(report["referrers"][0]["value"], "news.example.org");
    assert_eq!(report["browsers"][0]["value"], "Firefox");
    let (_, got) = json_request(&proxy, "GET", "/api/v1/links/e2e-link", Some(&token), "");
    assert_eq!(got["clicks"], 7);

    // An administrator bans the link through the same port: every redirect stops within 1 s.
    let (status, login) = json_request(
        &proxy,
        "POST",
        "/api/v1/auth/login",
        None,
        r#"{"email": "root@example.com", "password": "root-password-1"}"#,
    );
    assert_eq!(status, 200, "{login}");
    let admin_token = login["access_token"].as_str().unwrap().to_owned();
    let (status, banned) = json_request(
        &proxy,
        "POST",
        &format!("/api/v1/admin/links/{}/ban", link["id"]),
        Some(&admin_token),
        r#"{"reason": "end-to-end test"}"#,
    );
    assert_eq!(status, 200, "{banned}");
    let took = proxy.wait_for("/e2e-link", Duration::from_secs(1), |r| r.status == 410);
    println!("ban served by the proxy after {took:?}");

    drop(proxy);
    env.block_on(admin.shutdown(Duration::from_secs(2)));
}
