//! Accounts, tokens and API keys.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::Setup;
use crate::helpers::{App, problem};

pub async fn signup_login_me_and_logout(setup: Setup) {
    let app = App::spawn(setup).await;
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": " Ann@Example.com ", "password": "password-123"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["role"], "user");
    assert!(body["user"].get("password_hash").is_none());
    let token = body["access_token"].as_str().unwrap();
    let (status, me) = app.get("/api/v1/me", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ann@example.com");

    let pair = app.login("ann@example.com", "password-123").await;
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    problem(status, &body, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

pub async fn refresh_tokens_rotate_and_reuse_revokes_the_family(setup: Setup) {
    let app = App::spawn(setup).await;
    app.user("bob@example.com").await;
    let first = app.login("bob@example.com", "user-password-1").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = app
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated on use");
    let (status, me) = app
        .get("/api/v1/me", second["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");

    // A thief replays the spent r1: refused, and the whole family (r2 too) is revoked.
    let (status, body) = app
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    problem(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post("/api/v1/auth/refresh", None, json!({"refresh_token": r2}))
        .await;
    problem(status, &body, StatusCode::UNAUTHORIZED);

    // Another login starts a new family that works.
    let third = app.login("bob@example.com", "user-password-1").await;
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": third["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for junk in ["", "lgr_", "not-a-token", &"lgr_x".repeat(100)] {
        let (status, body) = app
            .post("/api/v1/auth/refresh", None, json!({"refresh_token": junk}))
            .await;
        problem(status, &body, StatusCode::UNAUTHORIZED);
    }
    app.stop().await;
}

pub async fn bad_credentials_and_bad_input_are_4xx_problems(setup: Setup) {
    let app = App::spawn(setup).await;
    app.user("cat@example.com").await;
    let login = |email: &'static str, password: &'static str| {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
    };
    let (s, b) = login("cat@example.com", "wrong-password").await;
    problem(s, &b, StatusCode::UNAUTHORIZED);
    let (s, b) = login("nobody@example.com", "user-password-1").await;
    let detail = problem(s, &b, StatusCode::UNAUTHORIZED);
    assert_eq!(
        detail, "wrong e-mail address or password",
        "no account probing"
    );
    let long = "x".repeat(1000);
    let (s, b) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "cat@example.com", "password": long}),
        )
        .await;
    problem(s, &b, StatusCode::UNAUTHORIZED);

    let signup = |body| app.post("/api/v1/auth/signup", None, body);
    let (s, b) = signup(json!({"email": "cat@example.com", "password": "another-pass"})).await;
    problem(s, &b, StatusCode::CONFLICT);
    let (s, b) = signup(json!({"email": "not-an-email", "password": "another-pass"})).await;
    assert_eq!(b["field"], "email");
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = signup(json!({"email": "dan@example.com", "password": "short"})).await;
    assert_eq!(b["field"], "password");
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = signup(json!({"email": "dan@example.com", "password": "p".repeat(129)})).await;
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = signup(json!({"email": "dan@example.com"})).await;
    let detail = problem(s, &b, StatusCode::BAD_REQUEST);
    assert!(detail.contains("missing field `password`"), "{detail}");
    let (s, b) =
        signup(json!({"email": "dan@example.com", "password": "password-1", "role": "admin"}))
            .await;
    let detail = problem(s, &b, StatusCode::BAD_REQUEST);
    assert!(detail.contains("unknown field `role`"), "{detail}");

    let (s, headers, bytes) = app
        .raw(Method::POST, "/api/v1/auth/signup", None, None)
        .await;
    assert!(s.is_client_error(), "{s}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(!bytes.is_empty());
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );

    let (s, b) = app.call(Method::GET, "/api/v1/me", None, None).await;
    problem(s, &b, StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .get(format!("{}/api/v1/me", app.base))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

pub async fn api_keys_are_shown_once_and_work_until_revoked(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("eve@example.com").await;
    let (status, created) = app
        .post("/api/v1/me/api-keys", Some(&token), json!({"name": "ci"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("lgk_"));
    let id = created["api_key"]["id"].as_i64().unwrap();

    let (status, me) = app.get("/api/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK, "Bearer API key: {me}");
    assert_eq!(me["email"], "eve@example.com");
    let resp = app
        .http
        .get(format!("{}/api/v1/me", app.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "X-Api-Key header");

    let (_, list) = app.get("/api/v1/me/api-keys", &token).await;
    let listed = list["items"][0].to_string();
    assert!(
        !listed.contains(&key),
        "the key itself is never shown again"
    );
    assert!(key.starts_with(list["items"][0]["prefix"].as_str().unwrap()));

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/me/api-keys/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/me", &key).await;
    problem(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/me/api-keys/{id}"),
            Some(&token),
            None,
        )
        .await;
    problem(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post("/api/v1/me/api-keys", Some(&token), json!({"name": ""}))
        .await;
    problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

pub async fn login_is_rate_limited_per_address(setup: Setup) {
    let app = App::spawn_with(setup, |s| s.limits.login_per_minute = 3).await;
    for _ in 0..3 {
        let (s, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "x@example.com", "password": "whatever-1"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, bytes) = app
        .raw(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "x@example.com", "password": "whatever-1"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    app.stop().await;
}

/// With Redis configured but unreachable, login and signup fail closed (503) while link
/// creation falls back to this node's own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_fails_closed_and_creation_open_when_redis_is_down() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let app = App::spawn_with(Setup::Sqlite, move |s| {
        s.redis.url = Some(linkgate_config::SecretUrl::new(format!(
            "redis://127.0.0.1:{port}"
        )));
        s.redis.timeout_ms = 50;
    })
    .await;
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}),
        )
        .await;
    problem(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = app
        .post(
            "/api/v1/auth/signup",
            None,
            json!({"email": "late@example.com", "password": "password-123"}),
        )
        .await;
    problem(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = app
        .post(
            "/api/v1/links",
            Some(&app.admin_token),
            json!({"target": "https://up.example/"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.stop().await;
}

/// A relay to the test Redis that holds every reply back by `delay`; returns its URL.
async fn slow_redis(delay: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut url = url::Url::parse(&linkgate_common::testing::redis_url()).unwrap();
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    url.set_port(Some(listener.local_addr().unwrap().port()))
        .unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::io::copy(&mut client_read, &mut server_write);
                let replies = async {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        let n = server_read.read(&mut buf).await?;
                        if n == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        tokio::time::sleep(delay).await;
                        client_write.write_all(&buf[..n]).await?;
                    }
                };
                let _ = tokio::join!(requests, replies);
            });
        }
    });
    url.to_string()
}

/// The admin service waits `redis.admin_timeout_ms` for Redis, not the redirect path's
/// few milliseconds: a Redis 20 ms slow still answers login limits (a login is served, and
/// the shared limit still limits), and only an admin timeout shorter than the delay makes
/// logins fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_wait_for_a_slow_redis_longer_than_redirects_do() {
    let slow = slow_redis(std::time::Duration::from_millis(20)).await;
    let spawn = |admin_timeout_ms| {
        let slow = slow.clone();
        App::spawn_with(Setup::Sqlite, move |s| {
            s.redis.url = Some(linkgate_config::SecretUrl::new(slow));
            s.redis.key_prefix = linkgate_common::testing::redis_prefix();
            s.redis.timeout_ms = 5;
            s.redis.admin_timeout_ms = admin_timeout_ms;
            s.limits.login_per_minute = 2;
        })
    };
    let login = async |app: &App| {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}),
        )
        .await
    };

    let app = spawn(linkgate_config::RedisSettings::default().admin_timeout_ms).await;
    for _ in 0..2 {
        let (status, body) = login(&app).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = login(&app).await;
    problem(status, &body, StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;

    let app = spawn(5).await;
    let (status, body) = login(&app).await;
    problem(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    app.stop().await;
}
