use linkgate_common::domain::{NewAuditEntry, Role};
use linkgate_common::store::Store;

use linkgate_common::testing::user;

pub async fn blocking_a_domain_blocks_its_subdomains(store: &dyn Store) {
    let admin = user(store, "admin@example.com", Role::Admin).await;
    assert_eq!(
        store
            .block_domain("Evil.Example.", Some("phishing"), Some(admin.id))
            .await,
        Ok(true)
    );
    assert_eq!(
        store.block_domain("evil.example", None, None).await,
        Ok(false),
        "already blocked"
    );
    assert_eq!(store.is_domain_blocked("evil.example").await, Ok(true));
    assert_eq!(
        store.is_domain_blocked("login.EVIL.example").await,
        Ok(true)
    );
    assert_eq!(store.is_domain_blocked("notevil.example").await, Ok(false));
    assert_eq!(store.is_domain_blocked("example").await, Ok(false));
    let listed = store.blocked_domains().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].domain, "evil.example");
    assert_eq!(listed[0].reason.as_deref(), Some("phishing"));
    assert_eq!(listed[0].created_by, Some(admin.id));
    assert_eq!(store.unblock_domain("evil.example").await, Ok(true));
    assert_eq!(store.unblock_domain("evil.example").await, Ok(false));
    assert_eq!(
        store.is_domain_blocked("login.evil.example").await,
        Ok(false)
    );
}

pub async fn the_audit_log_pages_newest_first(store: &dyn Store) {
    let admin = user(store, "admin@example.com", Role::Admin).await;
    for i in 0..5 {
        store
            .append_audit(&NewAuditEntry {
                actor_id: Some(admin.id),
                action: "link.ban".into(),
                subject: format!("link:{i}"),
                reason: Some("spam wave — reported".into()),
            })
            .await
            .unwrap();
    }
    let first = store.audit_log(3, None).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["link:4", "link:3", "link:2"]
    );
    let rest = store
        .audit_log(3, first.last().map(|e| e.id))
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["link:1", "link:0"]
    );
    assert_eq!(rest[0].actor_id, Some(admin.id));
    assert_eq!(rest[0].reason.as_deref(), Some("spam wave — reported"));
}
