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

fn flagged_click(
    link: i64,
    at: linkgate_common::domain::Timestamp,
    n: u64,
    reasons: u32,
) -> linkgate_common::domain::StoredClick {
    linkgate_common::domain::StoredClick {
        visitor: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ip: (reasons != 0).then(|| "198.51.100.0/24".to_owned()),
        country: Some(if reasons == 0 { "DE" } else { "NL" }.to_owned()),
        fraud_reasons: reasons,
        ..linkgate_common::testing::stored_click(linkgate_common::domain::LinkId(link), at)
    }
}

pub async fn the_review_queue_shows_evidence_and_confirm_adjusts_aggregates(setup: Setup) {
    use linkgate_common::clicks::batch::build_batch;
    use linkgate_common::domain::{LinkId, ReviewCandidate, ReviewThresholds, Timestamp};

    let app = App::spawn(setup).await;
    let admin = app.admin_token.clone();
    let user = app.user("farm@example.com").await;
    let farmed = app
        .link(
            &user,
            json!({"target": "https://farm.example/", "code": "farmed"}),
        )
        .await;
    let other = app
        .link(
            &user,
            json!({"target": "https://other.example/", "code": "other-1"}),
        )
        .await;
    let hour = Timestamp::now()
        .plus_millis(-2 * Timestamp::MILLIS_PER_HOUR)
        .hour_start();
    let mut clicks = Vec::new();
    for (link, flagged) in [(&farmed, 20u64), (&other, 25)] {
        let id = link["id"].as_i64().unwrap();
        for i in 0..30 {
            clicks.push(flagged_click(
                id,
                hour.plus_millis(i * 1000),
                i.unsigned_abs(),
                0,
            ));
        }
        for i in 0..flagged {
            let at = hour.plus_millis(60_000 + i64::try_from(i).unwrap() * 100);
            clicks.push(flagged_click(id, at, 1000 + i, 1 << 4));
        }
    }
    let batch = build_batch(clicks, &app.state().trending);
    app.store().write_click_batch(&batch).await.unwrap();
    // What the batcher does after writing a batch with flagged clicks.
    let candidates: Vec<ReviewCandidate> = [&farmed, &other]
        .iter()
        .map(|l| ReviewCandidate {
            link_id: LinkId(l["id"].as_i64().unwrap()),
            hour,
            burst_clicks: 0,
        })
        .collect();
    let thresholds = ReviewThresholds {
        min_clicks: 50,
        suspicious_percent: 30,
    };
    assert_eq!(
        app.store()
            .open_reviews(&candidates, thresholds, Timestamp::now())
            .await
            .unwrap(),
        2
    );

    let (s, b) = app.get("/api/v1/admin/fraud/reviews", &user).await;
    problem(s, &b, StatusCode::FORBIDDEN);
    let (s, queue) = app
        .get("/api/v1/admin/fraud/reviews?state=open", &admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{queue}");
    assert_eq!(queue["items"].as_array().unwrap().len(), 2);
    let id = farmed["id"].as_i64().unwrap();
    let (s, detail) = app
        .get(&format!("/api/v1/admin/fraud/reviews/{id}"), &admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let evidence = &detail["evidence"];
    assert_eq!(evidence["flagged_clicks"], 20);
    assert_eq!(evidence["clicks_examined"], 50);
    assert_eq!(evidence["by_reason"]["ip_velocity_10s"], 20);
    assert_eq!(
        evidence["top_networks"][0],
        json!({"value": "198.51.100.0/24", "clicks": 20})
    );
    assert_eq!(evidence["top_countries"][0]["value"], "NL");
    assert_eq!(evidence["recent"][0]["reasons"], json!(["ip_velocity_10s"]));
    assert_eq!(detail["review"]["hour_suspicious"], 20);

    let path = format!(
        "/api/v1/links/farmed/analytics?granularity=hour&from={}",
        hour.to_rfc3339()
    );
    let before = app.get(&path, &user).await.1["totals"].clone();
    assert_eq!(
        (
            before["clicks"].as_u64(),
            before["human"].as_u64(),
            before["suspicious"].as_u64()
        ),
        (Some(50), Some(30), Some(20))
    );
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/fraud/reviews/{id}/confirm"),
            Some(&admin),
            json!({}),
        )
        .await;
    problem(s, &b, StatusCode::BAD_REQUEST);
    let (s, confirmed) = app
        .post(
            &format!("/api/v1/admin/fraud/reviews/{id}/confirm"),
            Some(&admin),
            json!({"reason": "click farm"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["confirmed_clicks"], 20);
    assert_eq!(confirmed["review"]["state"], "confirmed");
    let after = app.get(&path, &user).await.1["totals"].clone();
    assert_eq!(
        after["clicks"], 30,
        "aggregates drop by exactly the confirmed clicks"
    );
    assert_eq!(after["human"], 30);
    assert_eq!(after["suspicious"], 0);
    assert_eq!(after["unique_visitors"], before["unique_visitors"]);
    let (_, link) = app.get("/api/v1/links/farmed", &user).await;
    assert_eq!(link["clicks"], 30);

    let other_id = other["id"].as_i64().unwrap();
    let (s, dismissed) = app
        .post(
            &format!("/api/v1/admin/fraud/reviews/{other_id}/dismiss"),
            Some(&admin),
            json!({"reason": "launch spike"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dismissed}");
    assert_eq!(dismissed["review"]["state"], "dismissed");
    let (_, open) = app
        .get("/api/v1/admin/fraud/reviews?state=open", &admin)
        .await;
    assert_eq!(open["items"], json!([]));
    let (s, b) = app
        .get("/api/v1/admin/fraud/reviews?state=maybe", &admin)
        .await;
    problem(s, &b, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app.get("/api/v1/admin/fraud/reviews/999999", &admin).await;
    problem(s, &b, StatusCode::NOT_FOUND);
    let (_, audit) = app.get("/api/v1/admin/audit", &admin).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["fraud.dismiss", "fraud.confirm"]);
    app.stop().await;
}
