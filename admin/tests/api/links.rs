//! Link management through the API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Setup;
use crate::helpers::{App, problem};

pub async fn a_link_is_created_read_listed_edited_and_deleted(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("ann@example.com").await;
    let (status, headers, bytes) = app
        .raw(
            Method::POST,
            "/api/v1/links",
            Some(&token),
            Some(json!({"target": "https://example.com/launch", "title": "Launch", "tags": ["Promo", "q4"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let link: Value = serde_json::from_slice(&bytes).unwrap();
    let code = link["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 7, "generated codes are 7 base62 characters");
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(headers["location"], format!("/api/v1/links/{code}"));
    assert_eq!(link["short_url"], format!("http://sho.rt/{code}"));
    assert_eq!(link["target"], "https://example.com/launch");
    assert_eq!(link["tags"], json!(["promo", "q4"]));
    assert_eq!(link["redirect_status"], 302);
    assert_eq!(link["state"], "active");

    let custom = app
        .link(
            &token,
            json!({"target": "https://example.org/", "code": "my-sale", "max_clicks": 5,
                   "redirect_status": 301, "forward_query": true, "password": "open-sesame",
                   "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(custom["code"], "my-sale");
    assert_eq!(custom["password_protected"], true);
    assert!(custom.get("password_hash").is_none());
    assert_eq!(custom["expires_at"], "2099-01-01T00:00:00Z");

    let (status, got) = app.get(&format!("/api/v1/links/{code}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["id"], link["id"]);

    // Listing: newest first, search, tag, cursor pages.
    for i in 0..3 {
        app.link(
            &token,
            json!({"target": format!("https://page.example/{i}")}),
        )
        .await;
    }
    let (_, all) = app.get("/api/v1/links?limit=100", &token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][0]["target"], "https://page.example/2");
    let (_, found) = app.get("/api/v1/links?search=LAUNCH", &token).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let (_, tagged) = app.get("/api/v1/links?tag=promo", &token).await;
    assert_eq!(tagged["items"][0]["code"], code.as_str());
    let (_, page1) = app.get("/api/v1/links?limit=2", &token).await;
    let cursor = page1["next_cursor"].as_i64().unwrap();
    let (_, page2) = app
        .get(&format!("/api/v1/links?limit=2&cursor={cursor}"), &token)
        .await;
    let (_, page3) = app
        .get(
            &format!(
                "/api/v1/links?limit=2&cursor={}",
                page2["next_cursor"].as_i64().unwrap()
            ),
            &token,
        )
        .await;
    let mut seen: Vec<i64> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap().iter())
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 5, "pages cover every link once");
    assert!(page3["next_cursor"].is_null());

    // Edit: change, clear with null, switch off and on.
    let (status, edited) = app
        .call(
            Method::PATCH,
            "/api/v1/links/my-sale",
            Some(&token),
            Some(
                json!({"target": "https://example.org/new", "max_clicks": null, "password": null,
                        "title": "Sale", "enabled": false}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["target"], "https://example.org/new");
    assert!(edited["max_clicks"].is_null());
    assert_eq!(edited["password_protected"], false);
    assert_eq!(edited["title"], "Sale");
    assert_eq!(edited["state"], "disabled");
    assert_eq!(edited["redirect_status"], 301, "untouched fields stay");
    let (_, edited) = app
        .call(
            Method::PATCH,
            "/api/v1/links/my-sale",
            Some(&token),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(edited["state"], "active");

    let (status, _) = app
        .call(Method::DELETE, "/api/v1/links/my-sale", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/links/my-sale", &token).await;
    problem(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(
            "/api/v1/links",
            Some(&token),
            json!({"target": "https://example.net/", "code": "my-sale"}),
        )
        .await;
    problem(status, &body, StatusCode::CONFLICT);
    app.stop().await;
}

pub async fn invalid_and_refused_links_say_why(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("bad@example.com").await;
    let admin = app.admin_token.clone();
    app.store()
        .block_domain("malware.example", Some("test"), None)
        .await
        .unwrap();
    app.link(
        &token,
        json!({"target": "https://ok.example/", "code": "taken1"}),
    )
    .await;
    let cases = [
        (
            json!({"target": "javascript:alert(1)"}),
            422,
            Some("target"),
        ),
        (
            json!({"target": "ftp://files.example/x"}),
            422,
            Some("target"),
        ),
        (
            json!({"target": "http://user:pw@example.com/"}),
            422,
            Some("target"),
        ),
        (
            json!({"target": "http://10.0.0.1/admin"}),
            422,
            Some("target"),
        ),
        (json!({"target": "https://bit.ly/abc"}), 422, Some("target")),
        (
            json!({"target": "https://sho.rt/loop"}),
            422,
            Some("target"),
        ),
        (
            json!({"target": "https://cdn.malware.example/x"}),
            422,
            Some("target"),
        ),
        (
            json!({"target": format!("https://e.example/{}", "a".repeat(5000))}),
            422,
            Some("target"),
        ),
        (
            json!({"target": "https://ok.example/", "code": "api"}),
            422,
            Some("code"),
        ),
        (
            json!({"target": "https://ok.example/", "code": "healthz"}),
            422,
            Some("code"),
        ),
        (
            json!({"target": "https://ok.example/", "code": "a/b"}),
            422,
            Some("code"),
        ),
        (
            json!({"target": "https://ok.example/", "code": "ab"}),
            422,
            Some("code"),
        ),
        (
            json!({"target": "https://ok.example/", "code": "taken1"}),
            409,
            None,
        ),
        (
            json!({"target": "https://ok.example/", "max_clicks": 0}),
            422,
            Some("max_clicks"),
        ),
        (
            json!({"target": "https://ok.example/", "redirect_status": 303}),
            422,
            Some("redirect_status"),
        ),
        (
            json!({"target": "https://ok.example/", "expires_at": "tomorrow"}),
            422,
            Some("expires_at"),
        ),
        (
            json!({"target": "https://ok.example/", "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            Some("expires_at"),
        ),
        (
            json!({"target": "https://ok.example/", "tags": ["has space"]}),
            422,
            Some("tags"),
        ),
        (
            json!({"target": "https://ok.example/", "title": "a\u{7}b"}),
            422,
            Some("title"),
        ),
        (
            json!({"target": "https://ok.example/", "password": "short"}),
            422,
            Some("password"),
        ),
        (
            json!({"target": "https://ok.example/", "domain": "evil.example"}),
            422,
            Some("domain"),
        ),
        (
            json!({"target": "https://ok.example/", "colour": "red"}),
            400,
            None,
        ),
        (json!({"target": 5}), 400, None),
        (json!({}), 400, None),
    ];
    for (body, expected, field) in cases {
        let (status, problem_body) = app.post("/api/v1/links", Some(&token), body.clone()).await;
        assert_eq!(status.as_u16(), expected, "{body} -> {problem_body}");
        assert_eq!(
            problem_body["field"].as_str(),
            field,
            "{body} -> {problem_body}"
        );
        assert!(
            !problem_body["detail"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{problem_body}"
        );
    }
    // An oversized body is refused before parsing.
    let huge = json!({"target": "https://ok.example/", "title": "x".repeat(2 * 1024 * 1024)});
    let (status, body) = app.post("/api/v1/links", Some(&token), huge).await;
    problem(status, &body, StatusCode::PAYLOAD_TOO_LARGE);

    // Edits are validated the same way; a banned link cannot be switched back on by its owner.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/links/taken1",
            Some(&token),
            Some(json!({"target": "javascript:x"})),
        )
        .await;
    problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let link = app
        .store()
        .link_by_code(
            &linkgate_common::domain::LinkDomain::parse("sho.rt").unwrap(),
            &linkgate_common::domain::ShortCode::parse("taken1").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    app.store()
        .update_link(
            link.id,
            &linkgate_common::domain::LinkPatch {
                state: Some(linkgate_common::domain::LinkState::Banned),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/links/taken1",
            Some(&token),
            Some(json!({"enabled": true})),
        )
        .await;
    problem(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/links/taken1",
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    let detail = problem(status, &body, StatusCode::FORBIDDEN);
    assert!(
        detail.contains("unban"),
        "admins are pointed at the audited unban: {detail}"
    );
    // Other edits of a banned link still work for its owner.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/links/taken1",
            Some(&token),
            Some(json!({"title": "still mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "banned");
    app.stop().await;
}

pub async fn bulk_create_reports_each_item(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("bulk@example.com").await;
    let (status, result) = app
        .post(
            "/api/v1/links/bulk",
            Some(&token),
            json!({"links": [
                {"target": "https://a.example/1"},
                {"target": "javascript:1"},
                {"target": "https://a.example/3", "code": "bulk-3"},
                {"target": "https://a.example/4", "code": "bulk-3"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["created"], 2, "{result}");
    assert_eq!(result["failed"], 2);
    let statuses: Vec<u64> = result["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 201, 409]);
    assert_eq!(result["results"][1]["error"]["field"], "target");

    // A clean batch goes in as one transaction.
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({"target": format!("https://many.example/{i}")}))
        .collect();
    let (status, result) = app
        .post("/api/v1/links/bulk", Some(&token), json!({ "links": many }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result["created"], 1000);
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({"target": "https://x.example/"}))
        .collect();
    let (status, body) = app
        .post(
            "/api/v1/links/bulk",
            Some(&token),
            json!({ "links": too_many }),
        )
        .await;
    problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

pub async fn qr_codes_come_as_svg_and_png(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("qr@example.com").await;
    app.link(
        &token,
        json!({"target": "https://qr.example/", "code": "qr-code"}),
    )
    .await;
    let (status, headers, svg) = app
        .raw(Method::GET, "/api/v1/links/qr-code/qr", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    let (status, headers, png) = app
        .raw(
            Method::GET,
            "/api/v1/links/qr-code/qr?format=png&size=300",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(&png[..4], b"\x89PNG");
    for bad in [
        "format=gif",
        "size=5",
        "size=99999",
        "size=abc",
        "colour=red",
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/links/qr-code/qr?{bad}"), &token)
            .await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }
    app.stop().await;
}

pub async fn csv_export_imports_elsewhere(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("csv@example.com").await;
    app.link(
        &token,
        json!({"target": "https://csv.example/a?x=1,2", "code": "csv-a", "title": "Comma, \"quoted\"", "tags": ["t1", "t2"], "max_clicks": 3}),
    )
    .await;
    app.link(&token, json!({"target": "https://csv.example/b"}))
        .await;
    let (status, headers, csv) = app
        .raw(Method::GET, "/api/v1/links/export", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = String::from_utf8(csv.clone()).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("\"Comma, \"\"quoted\"\"\""), "{text}");

    // Another user imports the export: codes are taken (409 each) except once renamed.
    let other = app.user("csv2@example.com").await;
    let import = |body: Vec<u8>| {
        app.http
            .post(format!("{}/api/v1/links/import", app.base))
            .bearer_auth(&other)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let resp = import(csv).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["failed"], 2, "codes are taken: {result}");
    let renamed = text.replace("csv-a,", "csv-b,");
    let resp = import(renamed.into_bytes()).await.unwrap();
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["created"], 1, "{result}");
    let (_, copy) = app.get("/api/v1/links/csv-b", &other).await;
    assert_eq!(copy["title"], "Comma, \"quoted\"");
    assert_eq!(copy["tags"], json!(["t1", "t2"]));
    assert_eq!(copy["max_clicks"], 3);
    assert_eq!(copy["target"], "https://csv.example/a?x=1,2");

    let resp = import(b"target,colour\nhttps://a.example,red\n".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = import(b"\xff\xfe\x00garbage".to_vec()).await.unwrap();
    assert!(resp.status().is_client_error());
    app.stop().await;
}

pub async fn other_users_links_are_404_on_every_route(setup: Setup) {
    let app = App::spawn(setup).await;
    let alice = app.user("alice@example.com").await;
    let mallory = app.user("mallory@example.com").await;
    app.link(
        &alice,
        json!({"target": "https://alice.example/", "code": "alice-1"}),
    )
    .await;
    let routes = [
        (Method::GET, "/api/v1/links/alice-1", None),
        (
            Method::PATCH,
            "/api/v1/links/alice-1",
            Some(json!({"target": "https://evil.example/"})),
        ),
        (Method::DELETE, "/api/v1/links/alice-1", None),
        (Method::GET, "/api/v1/links/alice-1/qr", None),
        (Method::GET, "/api/v1/links/alice-1/analytics", None),
        (
            Method::GET,
            "/api/v1/links/alice-1/analytics?format=csv",
            None,
        ),
    ];
    for (method, path, body) in &routes {
        let (status, b) = app
            .call(method.clone(), path, Some(&mallory), body.clone())
            .await;
        problem(status, &b, StatusCode::NOT_FOUND);
        // Same answer as for a code that does not exist: nothing to probe.
        let missing = path.replace("alice-1", "nobody-1");
        let (status, _) = app
            .call(method.clone(), &missing, Some(&mallory), body.clone())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    }
    let (_, list) = app.get("/api/v1/links", &mallory).await;
    assert_eq!(list["items"], json!([]));
    let (_, _, export) = app
        .raw(Method::GET, "/api/v1/links/export", Some(&mallory), None)
        .await;
    let export = String::from_utf8_lossy(&export);
    assert!(!export.contains("alice-1"));
    let (_, trending) = app.get("/api/v1/trending", &mallory).await;
    assert_eq!(trending["items"], json!([]));
    // Untouched, and visible to its owner and to administrators.
    let (status, link) = app.get("/api/v1/links/alice-1", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(link["target"], "https://alice.example/");
    let (status, _) = app.get("/api/v1/links/alice-1", &app.admin_token).await;
    assert_eq!(status, StatusCode::OK);
    let (_, all) = app.get("/api/v1/links", &app.admin_token).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

pub async fn creation_is_rate_limited_per_user(setup: Setup) {
    let app = App::spawn_with(setup, |s| s.limits.create_per_minute = 3).await;
    let token = app.user("fast@example.com").await;
    for i in 0..3 {
        app.link(&token, json!({"target": format!("https://rl.example/{i}")}))
            .await;
    }
    let (status, headers, _) = app
        .raw(
            Method::POST,
            "/api/v1/links",
            Some(&token),
            Some(json!({"target": "https://rl.example/4"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let other = app.user("slow@example.com").await;
    app.link(&other, json!({"target": "https://rl.example/other"}))
        .await;
    app.stop().await;
}

pub async fn every_mutation_is_in_the_change_log(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("log@example.com").await;
    let start = app.store().last_change_seq().await.unwrap();
    app.link(
        &token,
        json!({"target": "https://log.example/", "code": "log-1"}),
    )
    .await;
    app.call(
        Method::PATCH,
        "/api/v1/links/log-1",
        Some(&token),
        Some(json!({"title": "x"})),
    )
    .await;
    app.call(Method::DELETE, "/api/v1/links/log-1", Some(&token), None)
        .await;
    let changes = app.store().changes_since(start, 100).await.unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "updated", "deleted"]);
    assert!(changes.iter().all(|c| c.code.as_str() == "log-1"));
    app.stop().await;
}
