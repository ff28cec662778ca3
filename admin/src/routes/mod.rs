//! The HTTP surface: every route in [`ROUTES`] (which the `OpenAPI` test and the metrics'
//! route templates read), the filters handlers share, and the assembled service.

pub mod analytics;
pub mod auth;
pub mod links;
pub mod moderation;
pub mod ops;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::{Principal, authenticated};
use crate::problem::{ApiError, recover};
use crate::state::AppState;

/// Every route as (method, path template). Templates are metric labels and `OpenAPI` paths.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/auth/signup"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/me/api-keys"),
    ("POST", "/api/v1/me/api-keys"),
    ("DELETE", "/api/v1/me/api-keys/{id}"),
    ("POST", "/api/v1/links"),
    ("GET", "/api/v1/links"),
    ("POST", "/api/v1/links/bulk"),
    ("GET", "/api/v1/links/export"),
    ("POST", "/api/v1/links/import"),
    ("GET", "/api/v1/links/{code}"),
    ("PATCH", "/api/v1/links/{code}"),
    ("DELETE", "/api/v1/links/{code}"),
    ("GET", "/api/v1/links/{code}/qr"),
    ("GET", "/api/v1/links/{code}/analytics"),
    ("GET", "/api/v1/trending"),
    ("POST", "/api/v1/admin/links/{id}/ban"),
    ("POST", "/api/v1/admin/links/{id}/unban"),
    ("GET", "/api/v1/admin/blocked-domains"),
    ("POST", "/api/v1/admin/blocked-domains"),
    ("DELETE", "/api/v1/admin/blocked-domains/{domain}"),
    ("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/fraud/reviews"),
    ("GET", "/api/v1/admin/fraud/reviews/{id}"),
    ("POST", "/api/v1/admin/fraud/reviews/{id}/dismiss"),
    ("POST", "/api/v1/admin/fraud/reviews/{id}/confirm"),
];

/// The route template `path` matches (for metric labels), or `other`.
pub fn template_for(method: &str, path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    ROUTES
        .iter()
        .filter(|(m, _)| *m == method || (method == "HEAD" && *m == "GET"))
        .map(|(_, t)| *t)
        .find(|template| matches_template(template, path))
        .unwrap_or("other")
}

/// Segment by segment, `{name}` matching any non-empty segment (no allocation: this runs
/// for every request).
fn matches_template(template: &str, path: &str) -> bool {
    let (mut parts, mut segments) = (template.split('/'), path.split('/'));
    loop {
        match (parts.next(), segments.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p == s || (p.starts_with('{') && !s.is_empty()) => {}
            _ => return false,
        }
    }
}

/// An empty 204 answer.
pub fn no_content() -> Response {
    let mut response = Response::default();
    *response.status_mut() = http::StatusCode::NO_CONTENT;
    response
}

/// Runs a handler returning `Result<Response, ApiError>` as a warp `then` closure.
macro_rules! to {
    ($handler:path; $($arg:ident),*) => {
        move |$($arg),*| async move { $crate::problem::respond($handler($($arg),*).await) }
    };
}
pub(crate) use to;

/// The shared state, cloned into each request.
pub fn with_state(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + use<> {
    let state = Arc::clone(state);
    warp::any().map(move || Arc::clone(&state))
}

/// The caller's address: the TCP peer, or X-Forwarded-For when the peer is a trusted proxy
/// (the linkgate proxy in front of us appends it).
pub fn client_ip(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (IpAddr,), Error = Rejection> + Clone + use<> {
    let trusted = state.settings.proxy.trusted_proxies.clone();
    warp::addr::remote()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .map(move |peer: Option<SocketAddr>, xff: Option<String>| {
            let peer = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
            linkgate_common::client_ip::client_ip(peer, xff.as_deref(), &trusted)
        })
}

/// A JSON body of type `T`: size-limited, unknown fields refused by `T`, and every parse
/// error a 400 that says what and where.
pub fn json_body<T: DeserializeOwned + Send + 'static>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    body_bytes(limit).and_then(|body: Bytes| async move {
        serde_json::from_slice::<T>(&body).map_err(|e| {
            warp::reject::custom(ApiError::BadRequest(format!("invalid JSON body: {e}")))
        })
    })
}

/// The raw body, at most `limit` bytes. An oversized declared length is our own 413 (a
/// custom rejection, so it is not outranked by other routes' 405s); a body without a
/// length is refused by warp's limit (411) rather than read unbounded.
pub fn body_bytes(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |length: Option<u64>| async move {
            match length {
                Some(n) if n > limit => {
                    Err(warp::reject::custom(ApiError::PayloadTooLarge { limit }))
                }
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
}

/// The query string parsed as `T` (absent = empty), with the reason on failure.
pub fn query<T: DeserializeOwned + Send + 'static>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded::from_str::<T>(&raw).map_err(|e| {
                warp::reject::custom(ApiError::BadRequest(format!("invalid query string: {e}")))
            })
        })
}

/// The whole admin API with metrics and problem+json errors.
pub fn service(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = state.settings.admin.max_body_bytes;
    let metrics_state = Arc::clone(state);
    let api = ops::routes(state)
        .or(auth::routes(state))
        .unify()
        .or(links::routes(state))
        .unify()
        .or(analytics::routes(state))
        .unify()
        .or(moderation::routes(state))
        .unify();
    api.recover(move |r| recover(r, limit))
        .unify()
        .with(warp::log::custom(move |info| {
            metrics_state.metrics.observe(
                template_for(info.method().as_str(), info.path()),
                info.method(),
                info.status().as_u16(),
                info.elapsed(),
            );
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// The principal, for handlers that need one.
pub fn principal(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone + use<> {
    authenticated(Arc::clone(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_templates_and_nothing_else() {
        assert_eq!(
            template_for("GET", "/api/v1/links/abc123X"),
            "/api/v1/links/{code}"
        );
        assert_eq!(
            template_for("GET", "/api/v1/links/export"),
            "/api/v1/links/export"
        );
        assert_eq!(
            template_for("GET", "/api/v1/links/abc/analytics"),
            "/api/v1/links/{code}/analytics"
        );
        assert_eq!(template_for("GET", "/api/v1/links/abc/secret"), "other");
        assert_eq!(template_for("PUT", "/api/v1/links"), "other");
        assert_eq!(template_for("HEAD", "/healthz"), "/healthz");
    }
}
