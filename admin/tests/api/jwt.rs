//! Forged and broken access tokens: every one is a 401 (the store backend plays no part,
//! so these run on SQLite only).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Setup;
use crate::helpers::{App, JWT_SECRET, problem};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims that would be valid for user `sub` with role admin.
fn claims(sub: i64) -> Value {
    let now = now();
    json!({
        "iss": "linkgate", "aud": "linkgate-api", "sub": sub.to_string(),
        "exp": now + 600, "nbf": now - 1, "iat": now - 1,
        "jti": "7f1e0b7c-6d1a-4c38-9a41-0f1f2d3c4b5a", "role": "admin",
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

/// A token assembled by hand (for headers the library refuses to produce).
fn assemble(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_tokens_are_all_401() {
    let app = App::spawn(Setup::Sqlite).await;
    let key = JWT_SECRET.as_bytes();
    let good = claims(1);
    // The control: a correctly made token is accepted, so the refusals below mean something.
    let control = sign(Algorithm::HS256, Some("k1"), &good, key);
    let (status, body) = app.get("/api/v1/me", &control).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let valid = sign(Algorithm::HS256, Some("k1"), &good, key);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut tampered_claims = good.clone();
    tampered_claims["sub"] = json!("2");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    let expired = with(good.clone(), "exp", json!(now() - 60));
    let future_nbf = with(good.clone(), "nbf", json!(now() + 600));
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            assemble(
                &json!({"alg": "none", "typ": "JWT", "kid": "k1"}),
                &good,
                b"",
            ),
        ),
        (
            "alg HS512 (algorithm pinned to HS256)",
            sign(Algorithm::HS512, Some("k1"), &good, key),
        ),
        (
            "RS256 header with an HMAC signature (HS/RS confusion)",
            assemble(
                &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
                &good,
                &[0u8; 256],
            ),
        ),
        (
            "wrong key",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &good,
                b"another-secret-another-secret-xx",
            ),
        ),
        ("expired", sign(Algorithm::HS256, Some("k1"), &expired, key)),
        (
            "not yet valid",
            sign(Algorithm::HS256, Some("k1"), &future_nbf, key),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &with(good.clone(), "aud", json!("other")),
                key,
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &with(good.clone(), "iss", json!("evil")),
                key,
            ),
        ),
        (
            "missing exp",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &without(good.clone(), "exp"),
                key,
            ),
        ),
        (
            "missing nbf",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &without(good.clone(), "nbf"),
                key,
            ),
        ),
        (
            "missing sub",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &without(good.clone(), "sub"),
                key,
            ),
        ),
        (
            "missing jti",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &without(good.clone(), "jti"),
                key,
            ),
        ),
        ("tampered payload", tampered),
        (
            "unknown kid",
            sign(Algorithm::HS256, Some("k9"), &good, key),
        ),
        ("no kid", sign(Algorithm::HS256, None, &good, key)),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (name, token) in cases {
        let resp = app
            .http
            .get(format!("{}/api/v1/me", app.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        problem(status, &body, StatusCode::UNAUTHORIZED);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
    app.stop().await;
}
