//! Per-link analytics (JSON or CSV) and trending links.

use std::sync::Arc;

use http::StatusCode;
use http::header::CONTENT_TYPE;
use linkgate_common::domain::{Granularity, LinkState, Timestamp};
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::links::visible_link;
use super::{principal, query, to, with_state};
use crate::analytics::{self, ReportRequest};
use crate::auth::Principal;
use crate::links::LinkView;
use crate::problem::{ApiError, json};
use crate::state::AppState;

/// Most trending links one request returns.
const MAX_TRENDING: u32 = 100;
/// How deep into the global ranking a user's own trending links are looked for.
const TRENDING_DEPTH_FOR_USERS: u32 = 1000;

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let report = warp::path!("api" / "v1" / "links" / String / "analytics")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<AnalyticsQuery>())
        .then(to!(analytics; code, s, p, q));
    let trending = warp::path!("api" / "v1" / "trending")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<TrendingQuery>())
        .then(to!(trending; s, p, q));
    report.or(trending).unify().boxed()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<Granularity>,
    tz: Option<String>,
    format: Option<String>,
    domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrendingQuery {
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct TrendingItem {
    /// Decayed click-equivalents: each human click counts 1, halving every half-life.
    score: f64,
    link: LinkView,
}

async fn analytics(
    code: String,
    state: Arc<AppState>,
    principal: Principal,
    q: AnalyticsQuery,
) -> Result<Response, ApiError> {
    let link = visible_link(&state, principal, &code, q.domain.as_deref()).await?;
    let request = ReportRequest {
        from: q.from,
        to: q.to,
        granularity: q.granularity.unwrap_or(Granularity::Day),
        tz: q.tz,
    };
    let report = analytics::report(&state, &link, &request).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(json(StatusCode::OK, &report)),
        "csv" => {
            let mut response = Response::new(analytics::to_csv(&report)?.into());
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(response)
        }
        _ => Err(ApiError::invalid("format", "must be json or csv")),
    }
}

/// Top links by decayed score: everyone's for administrators, the caller's own otherwise.
async fn trending(
    state: Arc<AppState>,
    principal: Principal,
    q: TrendingQuery,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=MAX_TRENDING).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_TRENDING}"),
        ));
    }
    // Deleted and banned links are skipped, so look deeper than `limit` even for admins.
    let depth = if principal.is_admin() {
        limit.saturating_mul(4).max(limit + 50)
    } else {
        TRENDING_DEPTH_FOR_USERS
    };
    let ranked = state
        .store
        .trending(&state.trending, Timestamp::now(), depth)
        .await?;
    let mut items = Vec::new();
    for (id, score) in ranked {
        if items.len() == limit as usize {
            break;
        }
        let Some(link) = state.store.link_by_id(id).await? else {
            continue;
        };
        if link.deleted_at.is_some()
            || link.state == LinkState::Banned
            || !principal.may_access(link.owner_id)
        {
            continue;
        }
        items.push(TrendingItem {
            score,
            link: LinkView::new(&state, &link),
        });
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "half_life_secs": state.settings.clicks.trending_half_life_secs,
            "items": items,
        }),
    ))
}
