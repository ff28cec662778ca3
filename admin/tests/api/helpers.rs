//! A real admin service on port 0 against an isolated store, and a JSON client for it.

use std::sync::Arc;
use std::time::Duration;

use linkgate_admin::{AppState, Running};
use linkgate_common::store::Store;
use linkgate_common::testing::TestDb;
use linkgate_config::{Secret, SecretUrl, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Setup;

/// An admin service under test.
#[derive(Debug)]
pub struct App {
    pub base: String,
    pub metrics: String,
    pub db: TestDb,
    pub running: Option<Running>,
    pub http: reqwest::Client,
    /// The first administrator's access token.
    pub admin_token: String,
}

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Test settings: a fixed JWT key, generous limits unless a test lowers them.
pub fn settings(setup: Setup, db: &TestDb) -> Settings {
    let mut s = Settings::default();
    s.store.url = SecretUrl::new(db.url());
    s.auth.jwt_secret = Some(Secret::new(JWT_SECRET));
    s.limits.login_per_minute = 1000;
    s.limits.create_per_minute = 1000;
    "http://sho.rt".clone_into(&mut s.links.public_base_url);
    setup.configure(&mut s);
    s
}

impl App {
    pub async fn spawn(setup: Setup) -> Self {
        Self::spawn_with(setup, |_| {}).await
    }

    /// Starts the service after `edit` adjusts its settings.
    pub async fn spawn_with(setup: Setup, edit: impl FnOnce(&mut Settings)) -> Self {
        let db = setup.db().await;
        let mut s = settings(setup, &db);
        edit(&mut s);
        let state = Arc::new(AppState::new(s, db.store()).expect("admin state"));
        linkgate_admin::ensure_admin(&state, ADMIN_EMAIL, Some(ADMIN_PASSWORD))
            .await
            .expect("bootstrap admin");
        if let Some(redis) = &state.redis {
            let _ = redis.connect().await;
        }
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = linkgate_admin::serve(state, api, metrics).unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut app = Self {
            base: format!("http://{}", running.api_addr),
            metrics: format!("http://{}/metrics", running.metrics_addr),
            db,
            running: Some(running),
            http,
            admin_token: String::new(),
        };
        // Minted directly (not by logging in) so tests of login limits start from zero.
        let admin = app
            .store()
            .user_by_email(&linkgate_common::domain::Email::parse(ADMIN_EMAIL).unwrap())
            .await
            .unwrap()
            .unwrap();
        app.admin_token = app
            .state()
            .jwt
            .issue(linkgate_admin::auth::jwt::TokenSubject {
                user_id: admin.id,
                role: admin.role,
            })
            .unwrap();
        app
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.db.store()
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.running.as_ref().unwrap().state
    }

    /// Sends a request; `token` as a Bearer token, `body` as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.raw(method, path, token, body).await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// Like [`App::call`], with headers and raw body bytes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap().to_vec();
        (status, headers, bytes)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Signs up a user and returns their access token.
    pub async fn user(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": email, "password": "user-password-1"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a link and returns its JSON.
    pub async fn link(&self, token: &str, body: Value) -> Value {
        let (status, link) = self.post("/api/v1/links", Some(token), body).await;
        assert_eq!(status, StatusCode::CREATED, "{link}");
        link
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(5)).await;
        }
        self.db.cleanup().await;
    }
}

/// Asserts a problem+json response with `status`, returning its detail.
pub fn problem(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    body["detail"].as_str().unwrap_or_default().to_owned()
}
