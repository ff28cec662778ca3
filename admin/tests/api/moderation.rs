//! Administrator actions: bans, the domain blocklist, and the audit log.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::Setup;
use crate::helpers::{App, problem};

pub async fn bans_and_blocklist_are_admin_only_and_audited(setup: Setup) {
    let app = App::spawn(setup).await;
    let admin = app.admin_token.clone();
    let user = app.user("owner@example.com").await;
    let link = app
        .link(
            &user,
            json!({"target": "https://shady.example/a", "code": "shady-1"}),
        )
        .await;
    let sub = app
        .link(&user, json!({"target": "https://cdn.shady.example/b"}))
        .await;
    let fine = app
        .link(&user, json!({"target": "https://unshady.example/c"}))
        .await;
    let id = link["id"].as_i64().unwrap();

    // Users cannot moderate, not even their own links.
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/links/{id}/ban"),
            Some(&user),
            json!({"reason": "x"}),
        )
        .await;
    problem(s, &b, StatusCode::FORBIDDEN);
    let (s, b) = app.get("/api/v1/admin/audit", &user).await;
    problem(s, &b, StatusCode::FORBIDDEN);

    let (s, b) = app
        .post(
            &format!("/api/v1/admin/links/{id}/ban"),
            Some(&admin),
            json!({"reason": ""}),
        )
        .await;
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, banned) = app
        .post(
            &format!("/api/v1/admin/links/{id}/ban"),
            Some(&admin),
            json!({"reason": "phishing report #12"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{banned}");
    assert_eq!(banned["state"], "banned");
    let (s, b) = app
        .call(
            Method::PATCH,
            "/api/v1/links/shady-1",
            Some(&user),
            Some(json!({"enabled": true})),
        )
        .await;
    problem(s, &b, StatusCode::FORBIDDEN);
    let (s, unbanned) = app
        .post(
            &format!("/api/v1/admin/links/{id}/unban"),
            Some(&admin),
            json!({"reason": "report was wrong"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(unbanned["state"], "active");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/links/{id}/unban"),
            Some(&admin),
            json!({"reason": "again"}),
        )
        .await;
    problem(s, &b, StatusCode::CONFLICT);
    let (s, b) = app
        .post(
            "/api/v1/admin/links/999999/ban",
            Some(&admin),
            json!({"reason": "x"}),
        )
        .await;
    problem(s, &b, StatusCode::NOT_FOUND);

    // Blocking a domain bans the links on it and its subdomains, and refuses new ones.
    let (s, blocked) = app
        .post(
            "/api/v1/admin/blocked-domains",
            Some(&admin),
            json!({"domain": "Shady.Example", "reason": "malware host"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{blocked}");
    assert_eq!(blocked["links_banned"], 2);
    for (l, state) in [(&link, "banned"), (&sub, "banned"), (&fine, "active")] {
        let (_, got) = app
            .get(
                &format!("/api/v1/links/{}", l["code"].as_str().unwrap()),
                &user,
            )
            .await;
        assert_eq!(got["state"], state, "{got}");
    }
    let (s, b) = app
        .post(
            "/api/v1/links",
            Some(&user),
            json!({"target": "https://www.shady.example/new"}),
        )
        .await;
    assert_eq!(b["field"], "target");
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app
        .post(
            "/api/v1/admin/blocked-domains",
            Some(&admin),
            json!({"domain": "https://x.example/", "reason": "r"}),
        )
        .await;
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = app.get("/api/v1/admin/blocked-domains", &admin).await;
    assert_eq!(list["items"][0]["domain"], "shady.example");
    let (s, _) = app
        .call(
            Method::DELETE,
            "/api/v1/admin/blocked-domains/shady.example",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = app
        .call(
            Method::DELETE,
            "/api/v1/admin/blocked-domains/shady.example",
            Some(&admin),
            None,
        )
        .await;
    problem(s, &b, StatusCode::NOT_FOUND);

    // Every action is in the audit log, newest first, with who and why.
    let (s, audit) = app.get("/api/v1/admin/audit?limit=10", &admin).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "domain.unblock",
            "link.ban",
            "link.ban",
            "domain.block",
            "link.unban",
            "link.ban"
        ]
    );
    let first_ban = &audit["items"][5];
    assert_eq!(first_ban["subject"], format!("link:{id}"));
    assert_eq!(first_ban["reason"], "phishing report #12");
    assert!(first_ban["actor_id"].is_i64());
    app.stop().await;
}
