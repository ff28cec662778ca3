//! Seeding through the admin API, against the real admin service on an isolated store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use linkgate_admin::AppState;
use linkgate_common::domain::Email;
use linkgate_common::store::LinkQuery;
use linkgate_common::testing::TestDb;
use linkgate_config::{Secret, SecretUrl, Settings};
use linkgate_loadtest::seed::seed_via_api;
use linkgate_loadtest::target::Target;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_seeded_through_the_admin_api_as_a_user_creates_them() {
    let db = TestDb::sqlite().await;
    let mut settings = Settings::default();
    settings.store.url = SecretUrl::new(db.url());
    settings.auth.jwt_secret = Some(Secret::new("seed-test-secret-seed-test-secret-0"));
    let state = Arc::new(AppState::new(settings, db.store()).unwrap());
    linkgate_admin::ensure_admin(&state, "seed@example.com", Some("seed-password-1"))
        .await
        .unwrap();
    let admin = db
        .store()
        .user_by_email(&Email::parse("seed@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    let token = state
        .jwt
        .issue(linkgate_admin::auth::jwt::TokenSubject {
            user_id: admin.id,
            role: admin.role,
        })
        .unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = linkgate_admin::serve(state, api, metrics).unwrap();
    let target = Target::parse(&format!("http://{}", running.api_addr), false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let codes_file = dir.path().join("codes.txt");

    let report = seed_via_api(&target, &token, 2_500, &codes_file)
        .await
        .unwrap();
    assert_eq!(report.links, 2_500);
    let codes = linkgate_loadtest::seed::read_codes(&codes_file).unwrap();
    let distinct: BTreeSet<&String> = codes.iter().collect();
    assert_eq!((codes.len(), distinct.len()), (2_500, 2_500));
    let mut stored = 0;
    let mut before = None;
    loop {
        let page = db
            .store()
            .list_links(&LinkQuery {
                owner: Some(admin.id),
                before,
                limit: 1000,
                ..LinkQuery::default()
            })
            .await
            .unwrap();
        stored += page.len();
        before = page.last().map(|l| l.id);
        if page.len() < 1000 {
            break;
        }
    }
    assert_eq!(stored, 2_500, "every seeded link is the token owner's");

    let refused = seed_via_api(&target, "not-a-token", 10, &codes_file).await;
    assert!(refused.unwrap_err().to_string().contains("401"));
    running.shutdown(Duration::from_secs(2)).await;
    db.cleanup().await;
}
