//! Health, readiness, the `OpenAPI` document, metrics and the error contract.

use std::collections::BTreeSet;

use linkgate_admin::routes::ROUTES;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Setup;
use crate::helpers::{App, problem};

pub async fn health_readiness_metrics_and_errors(setup: Setup) {
    let app = App::spawn(setup).await;
    let (status, _) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app
        .call(Method::GET, "/api/v1/nothing-here", None, None)
        .await;
    problem(status, &body, StatusCode::NOT_FOUND);
    let (status, headers, _) = app
        .raw(Method::PUT, "/api/v1/links", Some(&app.admin_token), None)
        .await;
    assert!(
        status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    assert_eq!(headers["content-type"], "application/problem+json");

    let token = app.user("ops@example.com").await;
    app.link(
        &token,
        json!({"target": "https://ops.example/", "code": "ops-1"}),
    )
    .await;
    app.get("/api/v1/links/ops-1", &token).await;
    let metrics = app
        .http
        .get(&app.metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"linkgate_admin_requests_total{method="GET",route="/api/v1/links/{code}",status="2xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="other""#),
        "unknown paths share one label"
    );
    assert!(!metrics.contains("ops-1"), "no code in any label");
    assert!(metrics.contains("linkgate_admin_request_duration_seconds_bucket"));
    assert!(metrics.contains("linkgate_admin_links_created_total 1"));
    app.stop().await;
}

/// Every route is documented with its method, and the document names no route that
/// does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route() {
    let app = App::spawn(Setup::Sqlite).await;
    let (status, doc) = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed);
    // Each route really answers (anything but the router's own 404/405).
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{code}", "zzzzzzz")
            .replace("{id}", "1")
            .replace("{domain}", "x.example");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = app
            .call(
                method.clone(),
                &concrete,
                Some(&app.admin_token),
                Some(json!({})),
            )
            .await;
        let routed_404 =
            status == StatusCode::NOT_FOUND && body["detail"] == "not found" && !path.contains('{');
        assert!(
            !routed_404 && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status} {body}"
        );
    }
    // Every documented schema reference resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let _: Value = doc;
    app.stop().await;
}
