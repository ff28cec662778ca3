//! Link management: create (single and bulk), list, get, edit, delete, QR codes, CSV export
//! and import. A link that is absent, deleted or someone else's is the same 404.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION};
use linkgate_common::domain::{Link, LinkId, ShortCode};
use linkgate_common::ratelimit::{Verdict, retry_after_secs};
use linkgate_common::store::{LinkQuery, StoreError};
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::{json_body, no_content, principal, query, to, with_state};
use crate::auth::Principal;
use crate::csv_io;
use crate::links::{self as rules, CreateLink, EditLink, LinkView, MAX_BULK};
use crate::problem::{ApiError, json};
use crate::qr;
use crate::state::AppState;

/// Password-protected links in one bulk request.
const MAX_BULK_PASSWORDS: usize = 10;
/// Links in one CSV export response; more follow through the `Link: rel="next"` header.
const EXPORT_PAGE: usize = 100_000;

/// Largest page of a listing.
const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 50;

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = state.settings.admin.max_body_bytes;
    let create = warp::path!("api" / "v1" / "links")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<CreateLink>(limit))
        .then(to!(create; s, p, body));
    let list = warp::path!("api" / "v1" / "links")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<ListQuery>())
        .then(to!(list; s, p, q));
    let bulk = warp::path!("api" / "v1" / "links" / "bulk")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<BulkRequest>(limit))
        .then(to!(bulk; s, p, body));
    let export = warp::path!("api" / "v1" / "links" / "export")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<ExportQuery>())
        .then(to!(export; s, p, q));
    let import = warp::path!("api" / "v1" / "links" / "import")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(super::body_bytes(limit))
        .then(to!(import; s, p, body));
    let get = warp::path!("api" / "v1" / "links" / String)
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<DomainQuery>())
        .then(to!(get; code, s, p, q));
    let patch = warp::path!("api" / "v1" / "links" / String)
        .and(warp::patch())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<DomainQuery>())
        .and(json_body::<EditLink>(limit))
        .then(to!(patch; code, s, p, q, body));
    let delete = warp::path!("api" / "v1" / "links" / String)
        .and(warp::delete())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<DomainQuery>())
        .then(to!(delete; code, s, p, q));
    let qr = warp::path!("api" / "v1" / "links" / String / "qr")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<QrQuery>())
        .then(to!(qr_code; code, s, p, q));
    create
        .or(list)
        .unify()
        .or(bulk)
        .unify()
        .or(export)
        .unify()
        .or(import)
        .unify()
        .or(get)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(qr)
        .unify()
        .boxed()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    search: Option<String>,
    tag: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
    /// Administrators see every link; `mine=true` narrows to their own.
    #[serde(default)]
    mine: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Continue after this link id (from the previous response's `Link` header).
    cursor: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainQuery {
    domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    domain: Option<String>,
    format: Option<String>,
    size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    links: Vec<CreateLink>,
}

/// One item's outcome in a bulk create or import.
#[derive(Debug, Serialize)]
pub struct ItemResult {
    index: usize,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<LinkView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ItemError>,
}

#[derive(Debug, Serialize)]
struct ItemError {
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BulkResponse {
    created: usize,
    failed: usize,
    results: Vec<ItemResult>,
}

/// The per-user creation limit; without Redis (or with Redis down) each node counts alone.
async fn check_create_limit(state: &AppState, principal: Principal) -> Result<(), ApiError> {
    match state
        .create_limiter
        .check_or_local(&principal.user_id.0)
        .await
    {
        Verdict::Limited { retry_after } => {
            state.metrics.limited("create", false);
            Err(ApiError::TooManyRequests {
                retry_after_secs: retry_after_secs(retry_after),
            })
        }
        _ => Ok(()),
    }
}

/// A link the principal may see, by code and optional domain.
pub async fn visible_link(
    state: &AppState,
    principal: Principal,
    code: &str,
    domain: Option<&str>,
) -> Result<Link, ApiError> {
    let domain = rules::parse_domain(state, domain)?;
    let code = ShortCode::parse_any_length(code).map_err(|_| ApiError::NotFound)?;
    let link = state
        .store
        .link_by_code(&domain, &code)
        .await?
        .filter(|l| l.deleted_at.is_none() && principal.may_access(l.owner_id))
        .ok_or(ApiError::NotFound)?;
    Ok(link)
}

fn created(state: &AppState, link: &Link) -> Response {
    let mut response = json(StatusCode::CREATED, &LinkView::new(state, link));
    // The code is validated ([A-Za-z0-9_-]), so it is safe in a header.
    if let Ok(value) = format!("/api/v1/links/{}", link.code.as_str()).parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

async fn create(
    state: Arc<AppState>,
    principal: Principal,
    body: CreateLink,
) -> Result<Response, ApiError> {
    check_create_limit(&state, principal).await?;
    let link = rules::create(&state, principal, &body).await?;
    Ok(created(&state, &link))
}

async fn bulk(
    state: Arc<AppState>,
    principal: Principal,
    body: BulkRequest,
) -> Result<Response, ApiError> {
    if body.links.is_empty() || body.links.len() > MAX_BULK {
        return Err(ApiError::invalid(
            "links",
            format!("must hold 1 to {MAX_BULK} links"),
        ));
    }
    // Each password costs an argon2 hash on the pool logins share: a bulk request may set
    // only a few (create password links one by one beyond that).
    if body.links.iter().filter(|l| l.password.is_some()).count() > MAX_BULK_PASSWORDS {
        return Err(ApiError::invalid(
            "links",
            format!("at most {MAX_BULK_PASSWORDS} links of one bulk request may have a password"),
        ));
    }
    check_create_limit(&state, principal).await?;
    let results = create_many(&state, principal, &body.links).await?;
    Ok(json(StatusCode::OK, &results))
}

/// Creates each item independently (one bad item does not stop the others): every item is
/// validated, the valid ones are inserted in one multi-row transaction, and only when that
/// hits a taken code are they inserted one by one to find which.
pub async fn create_many(
    state: &AppState,
    principal: Principal,
    items: &[CreateLink],
) -> Result<BulkResponse, ApiError> {
    let mut results: Vec<Option<ItemResult>> = (0..items.len()).map(|_| None).collect();
    let mut valid = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match rules::validate_create(state, principal, item).await {
            Ok((link, _custom)) => valid.push((index, link)),
            Err(error @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(error),
            Err(error) => results[index] = Some(failure(index, &error)),
        }
    }
    let links: Vec<_> = valid.iter().map(|(_, l)| l.clone()).collect();
    let inserted = if links.is_empty() {
        Ok(Vec::new())
    } else {
        state.store.create_links_bulk(&links).await
    };
    match inserted {
        Ok(done) => {
            for ((index, _), link) in valid.iter().zip(&done) {
                results[*index] = Some(success(state, *index, link));
            }
        }
        Err(StoreError::Conflict(_)) => {
            for (index, new) in &valid {
                results[*index] = Some(
                    match rules::insert(state, new.clone(), items[*index].code.is_some()).await {
                        Ok(link) => success(state, *index, &link),
                        Err(error @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => {
                            return Err(error);
                        }
                        Err(error) => failure(*index, &error),
                    },
                );
            }
        }
        Err(other) => return Err(other.into()),
    }
    let results: Vec<ItemResult> = results.into_iter().flatten().collect();
    let created: Vec<&ItemResult> = results.iter().filter(|r| r.link.is_some()).collect();
    state.metrics.links_created(created.len() as u64);
    for r in &created {
        if let Some(view) = &r.link
            && let Ok(domain) = linkgate_common::domain::LinkDomain::parse(&view.domain)
        {
            state.publish_change(&domain, &view.code).await;
        }
    }
    Ok(BulkResponse {
        created: created.len(),
        failed: results.len() - created.len(),
        results,
    })
}

fn success(state: &AppState, index: usize, link: &Link) -> ItemResult {
    ItemResult {
        index,
        status: 201,
        link: Some(LinkView::new(state, link)),
        error: None,
    }
}

fn failure(index: usize, error: &ApiError) -> ItemResult {
    ItemResult {
        index,
        status: error.status().as_u16(),
        link: None,
        error: Some(ItemError {
            detail: error.to_string(),
            field: match error {
                ApiError::Invalid { field, .. } => Some(field.clone()),
                _ => None,
            },
        }),
    }
}

async fn list(
    state: Arc<AppState>,
    principal: Principal,
    q: ListQuery,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let search = q
        .search
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if search
        .as_ref()
        .is_some_and(|s| s.chars().count() > 200 || s.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "search",
            "must be at most 200 characters without control characters",
        ));
    }
    let tag = q
        .tag
        .as_deref()
        .map(linkgate_common::domain::Tag::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("tag", e))?;
    let links = state
        .store
        .list_links(&LinkQuery {
            owner: (!principal.is_admin() || q.mine).then_some(principal.user_id),
            search,
            tag,
            before: q.cursor.map(LinkId),
            limit,
            include_deleted: false,
        })
        .await?;
    let next_cursor = (links.len() == limit as usize)
        .then(|| links.last().map(|l| l.id.0))
        .flatten();
    let items: Vec<LinkView> = links.iter().map(|l| LinkView::new(&state, l)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "next_cursor": next_cursor }),
    ))
}

async fn get(
    code: String,
    state: Arc<AppState>,
    principal: Principal,
    q: DomainQuery,
) -> Result<Response, ApiError> {
    let link = visible_link(&state, principal, &code, q.domain.as_deref()).await?;
    Ok(json(StatusCode::OK, &LinkView::new(&state, &link)))
}

async fn patch(
    code: String,
    state: Arc<AppState>,
    principal: Principal,
    q: DomainQuery,
    body: EditLink,
) -> Result<Response, ApiError> {
    let link = visible_link(&state, principal, &code, q.domain.as_deref()).await?;
    let changes = rules::validate_edit(&state, principal, &link, &body).await?;
    if changes.is_empty() {
        return Ok(json(StatusCode::OK, &LinkView::new(&state, &link)));
    }
    let updated = state.store.update_link(link.id, &changes).await?;
    state
        .publish_change(&updated.domain, updated.code.as_str())
        .await;
    Ok(json(StatusCode::OK, &LinkView::new(&state, &updated)))
}

async fn delete(
    code: String,
    state: Arc<AppState>,
    principal: Principal,
    q: DomainQuery,
) -> Result<Response, ApiError> {
    let link = visible_link(&state, principal, &code, q.domain.as_deref()).await?;
    state.store.delete_link(link.id).await?;
    state.publish_change(&link.domain, link.code.as_str()).await;
    Ok(no_content())
}

async fn qr_code(
    code: String,
    state: Arc<AppState>,
    principal: Principal,
    q: QrQuery,
) -> Result<Response, ApiError> {
    let link = visible_link(&state, principal, &code, q.domain.as_deref()).await?;
    let url = state.short_url(&link.domain, link.code.as_str());
    let size = q.size.unwrap_or(qr::DEFAULT_SIZE);
    if !(qr::MIN_SIZE..=qr::MAX_SIZE).contains(&size) {
        return Err(ApiError::invalid(
            "size",
            format!("must be {} to {} pixels", qr::MIN_SIZE, qr::MAX_SIZE),
        ));
    }
    let (body, content_type) = match q.format.as_deref().unwrap_or("svg") {
        "svg" => (qr::svg(&url, size)?.into_bytes(), "image/svg+xml"),
        "png" => (qr::png(&url, size)?, "image/png"),
        _ => return Err(ApiError::invalid("format", "must be svg or png")),
    };
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    Ok(response)
}

/// Up to `EXPORT_PAGE` links as CSV, newest first; a `Link: <...>; rel="next"` header
/// names the rest (memory per request stays bounded however many links there are).
async fn export(
    state: Arc<AppState>,
    principal: Principal,
    q: ExportQuery,
) -> Result<Response, ApiError> {
    let mut links = Vec::new();
    let mut before = q.cursor.map(LinkId);
    let mut next = None;
    loop {
        let page = state
            .store
            .list_links(&LinkQuery {
                owner: (!principal.is_admin()).then_some(principal.user_id),
                before,
                limit: MAX_PAGE,
                ..LinkQuery::default()
            })
            .await?;
        before = page.last().map(|l| l.id);
        let done = page.len() < MAX_PAGE as usize;
        links.extend(page.iter().map(|l| LinkView::new(&state, l)));
        if done {
            break;
        }
        if links.len() >= EXPORT_PAGE {
            next = before;
            break;
        }
    }
    let body = csv_io::export(&links)?;
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        CONTENT_DISPOSITION,
        http::HeaderValue::from_static("attachment; filename=\"links.csv\""),
    );
    if let Some(cursor) = next
        && let Ok(value) =
            format!("</api/v1/links/export?cursor={}>; rel=\"next\"", cursor.0).parse()
    {
        headers.insert(http::header::LINK, value);
    }
    Ok(response)
}

async fn import(
    state: Arc<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    let items = csv_io::parse_import(&body)?;
    check_create_limit(&state, principal).await?;
    let results = create_many(&state, principal, &items).await?;
    Ok(json(StatusCode::OK, &results))
}
