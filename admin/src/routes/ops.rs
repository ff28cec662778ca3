//! Health, readiness and the `OpenAPI` document.

use std::sync::Arc;

use http::StatusCode;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply as _};

use crate::problem::{ApiError, json};
use crate::state::AppState;

/// The `OpenAPI` 3 document, kept beside the code (a test checks it against `ROUTES`).
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(super::with_state(state))
        .then(super::to!(ready; s));
    let openapi = warp::path!("api" / "v1" / "openapi.json")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(OPENAPI, "content-type", "application/json").into_response()
        });
    healthz.or(readyz).unify().or(openapi).unify().boxed()
}

/// Ready when the store answers and its schema is the one this binary expects.
async fn ready(state: Arc<AppState>) -> Result<Response, ApiError> {
    state
        .store
        .check_schema()
        .await
        .map_err(|_| ApiError::Unavailable("the database is not ready"))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready"}),
    ))
}
