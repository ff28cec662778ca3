//! Analytics and trending, read from what the click pipeline writes.

use linkgate_common::clicks::batch::build_batch;
use linkgate_common::domain::{LinkId, StoredClick, Timestamp};
use linkgate_common::testing::stored_click;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::Setup;
use crate::helpers::{App, problem};

const HOUR: i64 = Timestamp::MILLIS_PER_HOUR;

fn click(
    link: i64,
    at: Timestamp,
    visitor: u64,
    referrer: &str,
    country: &str,
    bot: bool,
) -> StoredClick {
    StoredClick {
        visitor,
        referrer_host: Some(referrer.to_owned()),
        country: Some(country.to_owned()),
        device: if bot { "bot" } else { "desktop" }.into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        is_bot: bot,
        ..stored_click(LinkId(link), at)
    }
}

/// Writes clicks as the pipeline would (one batch with every aggregate).
async fn ingest(app: &App, clicks: Vec<StoredClick>) {
    let batch = build_batch(clicks, &app.state().trending);
    app.store().write_click_batch(&batch).await.unwrap();
}

pub async fn analytics_are_served_from_aggregates(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("stats@example.com").await;
    let link = app
        .link(
            &token,
            json!({"target": "https://stats.example/", "code": "stats-1"}),
        )
        .await;
    let id = link["id"].as_i64().unwrap();
    // Two UTC days: 2026-11-01 10:xx and 2026-11-02 23:xx.
    let day1 = Timestamp::parse_rfc3339("2026-11-01T10:15:00Z").unwrap();
    let day2 = Timestamp::parse_rfc3339("2026-11-02T23:30:00Z").unwrap();
    let mut clicks = Vec::new();
    for i in 0..30u64 {
        clicks.push(click(
            id,
            day1.plus_millis(i64::try_from(i).unwrap() * 1000),
            i % 10,
            "news.example",
            "DE",
            false,
        ));
    }
    for i in 0..5u64 {
        clicks.push(click(
            id,
            day1.plus_millis(HOUR + i64::try_from(i).unwrap()),
            100 + i,
            "search.example",
            "FR",
            true,
        ));
    }
    for i in 0..12u64 {
        clicks.push(click(
            id,
            day2.plus_millis(i64::try_from(i).unwrap()),
            i % 4,
            "search.example",
            "US",
            false,
        ));
    }
    ingest(&app, clicks).await;

    let path = "/api/v1/links/stats-1/analytics?from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z&granularity=day";
    let (status, report) = app.get(path, &token).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["totals"]["clicks"], 47);
    assert_eq!(report["totals"]["human"], 42);
    assert_eq!(report["totals"]["bot"], 5);
    assert_eq!(report["totals"]["suspicious"], 0);
    assert_eq!(
        report["totals"]["unique_visitors"], 10,
        "visitors 0-9 on both days"
    );
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["start"], "2026-11-01T00:00:00+00:00");
    assert_eq!(series[0]["clicks"], 35);
    assert_eq!(series[0]["unique_visitors"], 10);
    assert_eq!(series[1]["clicks"], 12);
    assert_eq!(series[1]["unique_visitors"], 4);
    assert_eq!(
        report["referrers"][0],
        json!({"value": "news.example", "clicks": 30})
    );
    assert_eq!(
        report["referrers"][1],
        json!({"value": "search.example", "clicks": 17})
    );
    assert_eq!(report["countries"][0]["value"], "DE");
    assert_eq!(
        report["devices"][0],
        json!({"value": "desktop", "clicks": 42})
    );
    assert_eq!(report["browsers"][0]["value"], "Firefox");
    assert_eq!(report["os"][0]["value"], "Linux");

    // Hourly, and days in another zone: 2026-11-02 23:30 UTC is 2026-11-03 in Berlin.
    let (_, hourly) = app
        .get("/api/v1/links/stats-1/analytics?from=2026-11-01T10:00:00Z&to=2026-11-01T12:00:00Z&granularity=hour", &token)
        .await;
    let hours: Vec<u64> = hourly["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["clicks"].as_u64().unwrap())
        .collect();
    assert_eq!(hours, [30, 5]);
    assert_eq!(hourly["series"][1]["bot"], 5);
    let (_, berlin) = app
        .get("/api/v1/links/stats-1/analytics?from=2026-11-01T12:00:00Z&to=2026-11-03T12:00:00Z&granularity=day&tz=Europe/Berlin", &token)
        .await;
    let local_days: Vec<(String, u64)> = berlin["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_owned(),
                b["clicks"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        local_days,
        [
            ("2026-11-01T00:00:00+01:00".to_owned(), 35),
            ("2026-11-02T00:00:00+01:00".to_owned(), 0),
            ("2026-11-03T00:00:00+01:00".to_owned(), 12),
        ],
        "{berlin}"
    );
    assert_eq!(berlin["series"][2]["unique_visitors"], 4);

    let (status, headers, csv) = app
        .raw(
            Method::GET,
            &format!("{path}&format=csv"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("start,clicks,human,bot,suspicious,unique_visitors")
    );
    assert_eq!(
        csv.lines().nth(1),
        Some("2026-11-01T00:00:00+00:00,35,30,5,0,10")
    );

    for (bad, expected) in [
        ("granularity=week", StatusCode::BAD_REQUEST),
        ("from=yesterday", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "from=2026-11-03T00:00:00Z&to=2026-11-01T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&granularity=hour",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("tz=Mars/Olympus", StatusCode::UNPROCESSABLE_ENTITY),
        ("format=xml", StatusCode::UNPROCESSABLE_ENTITY),
        ("sort=desc", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = app
            .get(&format!("/api/v1/links/stats-1/analytics?{bad}"), &token)
            .await;
        problem(status, &body, expected);
    }
    app.stop().await;
}

pub async fn trending_ranks_by_decayed_clicks(setup: Setup) {
    let app = App::spawn(setup).await;
    let token = app.user("trend@example.com").await;
    let hot = app
        .link(&token, json!({"target": "https://hot.example/"}))
        .await;
    let warm = app
        .link(&token, json!({"target": "https://warm.example/"}))
        .await;
    let other = app.user("other@example.com").await;
    let theirs = app
        .link(&other, json!({"target": "https://theirs.example/"}))
        .await;
    let now = Timestamp::now();
    let id = |l: &serde_json::Value| l["id"].as_i64().unwrap();
    let mut clicks = Vec::new();
    // 20 recent clicks beat 30 clicks from three half-lives ago (30/8 < 20).
    for i in 0..20 {
        clicks.push(click(
            id(&hot),
            now.plus_millis(-1000 - i),
            1,
            "r.example",
            "DE",
            false,
        ));
    }
    for i in 0..30 {
        clicks.push(click(
            id(&warm),
            now.plus_millis(-3 * HOUR - i),
            2,
            "r.example",
            "DE",
            false,
        ));
    }
    for i in 0..50 {
        clicks.push(click(
            id(&theirs),
            now.plus_millis(-2000 - i),
            3,
            "r.example",
            "DE",
            false,
        ));
    }
    ingest(&app, clicks).await;
    let (status, mine) = app.get("/api/v1/trending?limit=5", &token).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "only the caller's own links: {mine}");
    assert_eq!(items[0]["link"]["id"], hot["id"]);
    assert_eq!(items[1]["link"]["id"], warm["id"]);
    let hot_score = items[0]["score"].as_f64().unwrap();
    assert!((hot_score - 20.0).abs() < 0.1, "{hot_score}");
    let warm_score = items[1]["score"].as_f64().unwrap();
    assert!((warm_score - 30.0 / 8.0).abs() < 0.1, "{warm_score}");
    let (_, all) = app.get("/api/v1/trending?limit=2", &app.admin_token).await;
    assert_eq!(
        all["items"][0]["link"]["id"], theirs["id"],
        "administrators see everyone's"
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (status, body) = app.get("/api/v1/trending?limit=0", &token).await;
    problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
