//! Administrator actions against abuse: the fraud review queue (evidence, dismiss, confirm),
//! ban and unban a link (every proxy stops redirecting it within a second), block a target
//! domain (new links to it are refused and existing ones banned), and the audit log every
//! such action is written to (who, what, when, why).

use std::sync::Arc;

use http::StatusCode;
use std::collections::{BTreeMap, HashMap, VecDeque};

use linkgate_common::clicks::fraud::reason;
use linkgate_common::domain::{
    ClickId, FraudReview, HourlyCounts, LinkId, LinkPatch, LinkState, NewAuditEntry, ReviewState,
    TargetPolicy, TargetUrl, Timestamp,
};
use linkgate_common::store::LinkQuery;
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::{json_body, no_content, principal, query, to, with_state};
use crate::auth::{Principal, admin_only};
use crate::links::LinkView;
use crate::problem::{ApiError, json};
use crate::state::AppState;

/// Longest reason kept with an action.
const MAX_REASON_CHARS: usize = 500;
/// Links banned per page while blocking a domain.
const PAGE: u32 = 1000;

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = state.settings.admin.max_body_bytes;
    let ban = warp::path!("api" / "v1" / "admin" / "links" / i64 / "ban")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<Reason>(limit))
        .then(|id, s, p, body| async move {
            crate::problem::respond(set_ban(s, p, LinkId(id), true, body).await)
        });
    let unban = warp::path!("api" / "v1" / "admin" / "links" / i64 / "unban")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<Reason>(limit))
        .then(|id, s, p, body| async move {
            crate::problem::respond(set_ban(s, p, LinkId(id), false, body).await)
        });
    let list_blocked = warp::path!("api" / "v1" / "admin" / "blocked-domains")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .then(to!(list_blocked; s, p));
    let block = warp::path!("api" / "v1" / "admin" / "blocked-domains")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<BlockRequest>(limit))
        .then(to!(block; s, p, body));
    let unblock = warp::path!("api" / "v1" / "admin" / "blocked-domains" / String)
        .and(warp::delete())
        .and(with_state(state))
        .and(principal(state))
        .then(to!(unblock; domain, s, p));
    let audit = warp::path!("api" / "v1" / "admin" / "audit")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<AuditQuery>())
        .then(to!(audit; s, p, q));
    let reviews = warp::path!("api" / "v1" / "admin" / "fraud" / "reviews")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .and(query::<ReviewsQuery>())
        .then(to!(reviews; s, p, q));
    let review = warp::path!("api" / "v1" / "admin" / "fraud" / "reviews" / i64)
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .then(|id, s, p| async move { crate::problem::respond(review(s, p, LinkId(id)).await) });
    let dismiss = warp::path!("api" / "v1" / "admin" / "fraud" / "reviews" / i64 / "dismiss")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<Reason>(limit))
        .then(|id, s, p, body| async move {
            crate::problem::respond(decide(s, p, LinkId(id), false, body).await)
        });
    let confirm = warp::path!("api" / "v1" / "admin" / "fraud" / "reviews" / i64 / "confirm")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<Reason>(limit))
        .then(|id, s, p, body| async move {
            crate::problem::respond(decide(s, p, LinkId(id), true, body).await)
        });
    ban.or(unban)
        .unify()
        .or(reviews)
        .unify()
        .or(review)
        .unify()
        .or(dismiss)
        .unify()
        .or(confirm)
        .unify()
        .or(list_blocked)
        .unify()
        .or(block)
        .unify()
        .or(unblock)
        .unify()
        .or(audit)
        .unify()
        .boxed()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    domain: String,
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewsQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// A review with its link, as listed.
#[derive(Debug, Serialize)]
struct ReviewItem {
    review: FraudReview,
    link: Option<LinkView>,
}

/// What an administrator sees before deciding.
#[derive(Debug, Serialize)]
struct Evidence {
    /// The link's clicks from `since` on (by the hourly counters), and the flagged ones
    /// among them that were looked at.
    since: Timestamp,
    clicks_examined: u64,
    flagged_clicks: u64,
    by_reason: BTreeMap<&'static str, u64>,
    top_networks: Vec<Count>,
    top_agents: Vec<Count>,
    top_countries: Vec<Count>,
    /// Clicks and suspicious clicks per hour over the last 48 hours.
    hourly: Vec<HourlyCounts>,
    /// The most recent flagged clicks.
    recent: Vec<FlaggedClick>,
}

#[derive(Debug, Serialize)]
struct Count {
    value: String,
    clicks: u64,
}

#[derive(Debug, Serialize)]
struct FlaggedClick {
    at: Timestamp,
    reasons: Vec<&'static str>,
    network: Option<String>,
    agent: String,
    country: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// Every action needs a reason a later reader can understand.
fn parse_reason(input: &str) -> Result<String, ApiError> {
    let reason = input.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "reason",
            format!("must be 1-{MAX_REASON_CHARS} characters without control characters"),
        ));
    }
    Ok(reason.to_owned())
}

/// A bare host name (`evil.example`), lower-case, validated like a link target's host.
fn parse_blocked_domain(input: &str) -> Result<String, ApiError> {
    let wanted = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let invalid = || ApiError::invalid("domain", "must be a host name such as evil.example");
    if wanted.is_empty() || wanted.contains(['/', ':', '@', '?', '#', ' ']) {
        return Err(invalid());
    }
    let url = TargetUrl::parse(&format!("https://{wanted}/"), &TargetPolicy::default())
        .map_err(|_| invalid())?;
    if url.host() != wanted || !wanted.contains('.') {
        return Err(invalid());
    }
    Ok(wanted)
}

async fn audit_entry(
    state: &AppState,
    by: Principal,
    action: &str,
    subject: String,
    reason: &str,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&NewAuditEntry {
            actor_id: Some(by.user_id),
            action: action.to_owned(),
            subject,
            reason: Some(reason.to_owned()),
        })
        .await?;
    Ok(())
}

async fn set_ban(
    state: Arc<AppState>,
    principal: Principal,
    id: LinkId,
    banned: bool,
    body: Reason,
) -> Result<Response, ApiError> {
    let by = admin_only(principal)?;
    let reason = parse_reason(&body.reason)?;
    let link = state
        .store
        .link_by_id(id)
        .await?
        .filter(|l| l.deleted_at.is_none())
        .ok_or(ApiError::NotFound)?;
    let target_state = if banned {
        LinkState::Banned
    } else {
        LinkState::Active
    };
    if !banned && link.state != LinkState::Banned {
        return Err(ApiError::Conflict("this link is not banned".to_owned()));
    }
    let updated = state
        .store
        .update_link(
            link.id,
            &LinkPatch {
                state: Some(target_state),
                lift_ban: !banned,
                ..LinkPatch::default()
            },
        )
        .await?;
    state
        .publish_change(&updated.domain, updated.code.as_str())
        .await;
    let action = if banned { "link.ban" } else { "link.unban" };
    audit_entry(&state, by, action, format!("link:{}", link.id.0), &reason).await?;
    Ok(json(StatusCode::OK, &LinkView::new(&state, &updated)))
}

async fn list_blocked(state: Arc<AppState>, principal: Principal) -> Result<Response, ApiError> {
    admin_only(principal)?;
    let items = state.store.blocked_domains().await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
}

/// Blocks a domain and bans every live link whose target is on it or a subdomain.
async fn block(
    state: Arc<AppState>,
    principal: Principal,
    body: BlockRequest,
) -> Result<Response, ApiError> {
    let by = admin_only(principal)?;
    let domain = parse_blocked_domain(&body.domain)?;
    let reason = parse_reason(&body.reason)?;
    let added = state
        .store
        .block_domain(&domain, Some(&reason), Some(by.user_id))
        .await?;
    audit_entry(
        &state,
        by,
        "domain.block",
        format!("domain:{domain}"),
        &reason,
    )
    .await?;
    let suffix = format!(".{domain}");
    let mut banned = 0u64;
    let mut before = None;
    loop {
        let page = state
            .store
            .list_links(&LinkQuery {
                search: Some(domain.clone()),
                before,
                limit: PAGE,
                ..LinkQuery::default()
            })
            .await?;
        before = page.last().map(|l| l.id);
        for link in &page {
            let host = link.target.host();
            let on_domain = host == domain || host.ends_with(&suffix);
            if on_domain && link.state != LinkState::Banned {
                state
                    .store
                    .update_link(
                        link.id,
                        &LinkPatch {
                            state: Some(LinkState::Banned),
                            ..LinkPatch::default()
                        },
                    )
                    .await?;
                state.publish_change(&link.domain, link.code.as_str()).await;
                audit_entry(
                    &state,
                    by,
                    "link.ban",
                    format!("link:{}", link.id.0),
                    &format!("target domain {domain} blocked: {reason}"),
                )
                .await?;
                banned += 1;
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    Ok(json(
        if added {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &serde_json::json!({ "domain": domain, "links_banned": banned }),
    ))
}

async fn unblock(
    domain: String,
    state: Arc<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let by = admin_only(principal)?;
    let domain = parse_blocked_domain(&domain).map_err(|_| ApiError::NotFound)?;
    if !state.store.unblock_domain(&domain).await? {
        return Err(ApiError::NotFound);
    }
    audit_entry(
        &state,
        by,
        "domain.unblock",
        format!("domain:{domain}"),
        "unblocked (links banned with it stay banned)",
    )
    .await?;
    Ok(no_content())
}

async fn audit(
    state: Arc<AppState>,
    principal: Principal,
    q: AuditQuery,
) -> Result<Response, ApiError> {
    admin_only(principal)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let items = state.store.audit_log(limit, q.before).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "items": items, "next_cursor": next_cursor }),
    ))
}

/// How far back evidence looks, and at most how many raw clicks it reads.
const EVIDENCE_WINDOW_MS: i64 = 7 * Timestamp::MILLIS_PER_DAY;
const EVIDENCE_MAX_CLICKS: u64 = 50_000;
const TOP: usize = 10;

async fn reviews(
    state: Arc<AppState>,
    principal: Principal,
    q: ReviewsQuery,
) -> Result<Response, ApiError> {
    admin_only(principal)?;
    let wanted = match q.state.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(ReviewState::parse(s).ok_or_else(|| {
            ApiError::invalid("state", "must be open, dismissed, confirmed or all")
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let mut items = Vec::new();
    for review in state.store.reviews(wanted, limit).await? {
        let link = state.store.link_by_id(review.link_id).await?;
        items.push(ReviewItem {
            link: link.as_ref().map(|l| LinkView::new(&state, l)),
            review,
        });
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
}

async fn review(
    state: Arc<AppState>,
    principal: Principal,
    id: LinkId,
) -> Result<Response, ApiError> {
    admin_only(principal)?;
    let review = state.store.review(id).await?.ok_or(ApiError::NotFound)?;
    let link = state.store.link_by_id(id).await?;
    let evidence = evidence(&state, id).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "review": review,
            "link": link.as_ref().map(|l| LinkView::new(&state, l)),
            "evidence": evidence,
        }),
    ))
}

fn top(counts: HashMap<String, u64>) -> Vec<Count> {
    let mut all: Vec<Count> = counts
        .into_iter()
        .map(|(value, clicks)| Count { value, clicks })
        .collect();
    all.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.value.cmp(&b.value)));
    all.truncate(TOP);
    all
}

/// Reads the link's most recent flagged clicks (at most `EVIDENCE_MAX_CLICKS`, at most a
/// week back) and sums them up; the clicks examined are counted by the hourly counters.
async fn evidence(state: &AppState, link: LinkId) -> Result<Evidence, ApiError> {
    let now = Timestamp::now();
    // Start at the hour from which the hourly counters say the newest flagged clicks fit the
    // read budget, so a busy link's evidence is its latest traffic, not the start of the week.
    let week = state
        .store
        .hourly_counts(
            link,
            now.plus_millis(-EVIDENCE_WINDOW_MS),
            now.plus_millis(Timestamp::MILLIS_PER_HOUR),
        )
        .await?;
    let mut since = now.plus_millis(-EVIDENCE_WINDOW_MS);
    let mut newest = 0u64;
    for (i, hour) in week.iter().rev().enumerate() {
        newest += hour.suspicious;
        if newest > EVIDENCE_MAX_CLICKS {
            // The newest hour alone over budget: read its first clicks, up to the budget.
            let skip = if i == 0 {
                0
            } else {
                Timestamp::MILLIS_PER_HOUR
            };
            since = hour.hour.plus_millis(skip);
            break;
        }
    }
    let mut after = Some(ClickId::first_at(since));
    let examined: u64 = week
        .iter()
        .filter(|h| h.hour >= since.hour_start())
        .map(|h| h.total)
        .sum();
    let mut flagged = 0u64;
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut networks, mut agents, mut countries) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    let mut recent: VecDeque<FlaggedClick> = VecDeque::new();
    while flagged < EVIDENCE_MAX_CLICKS {
        let page = state.store.flagged_clicks(link, after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.click_id);
        for c in &page {
            flagged += 1;
            let reasons = reason::names(c.fraud_reasons);
            for r in &reasons {
                *by_reason.entry(r).or_default() += 1;
            }
            if c.is_bot {
                *by_reason.entry("bot_user_agent").or_default() += 1;
            }
            let agent = format!("{} / {} / {}", c.browser, c.os, c.device);
            *networks
                .entry(c.ip.clone().unwrap_or_else(|| "unknown".to_owned()))
                .or_default() += 1;
            *agents.entry(agent.clone()).or_default() += 1;
            *countries
                .entry(c.country.clone().unwrap_or_else(|| "unknown".to_owned()))
                .or_default() += 1;
            recent.push_back(FlaggedClick {
                at: c.at,
                reasons,
                network: c.ip.clone(),
                agent,
                country: c.country.clone(),
            });
            if recent.len() > 20 {
                recent.pop_front();
            }
        }
        if page.len() < 5_000 {
            break;
        }
    }
    let cutoff = now
        .plus_millis(-48 * Timestamp::MILLIS_PER_HOUR)
        .hour_start();
    let hourly: Vec<HourlyCounts> = week.into_iter().filter(|h| h.hour >= cutoff).collect();
    Ok(Evidence {
        since,
        clicks_examined: examined,
        flagged_clicks: flagged,
        by_reason,
        top_networks: top(networks),
        top_agents: top(agents),
        top_countries: top(countries),
        hourly,
        recent: recent.into_iter().rev().collect(),
    })
}

/// Dismisses the review, or confirms it: every flagged click up to now is taken out of the
/// link's aggregates (exactly once).
async fn decide(
    state: Arc<AppState>,
    principal: Principal,
    link: LinkId,
    confirm: bool,
    body: Reason,
) -> Result<Response, ApiError> {
    let by = admin_only(principal)?;
    let note = parse_reason(&body.reason)?;
    let now = Timestamp::now();
    let subject = format!("link:{}", link.0);
    if confirm {
        let removed = state
            .store
            .confirm_review(
                link,
                ClickId::at(now.plus_millis(1)),
                by.user_id,
                &note,
                now,
            )
            .await?;
        audit_entry(&state, by, "fraud.confirm", subject, &note).await?;
        let review = state.store.review(link).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "confirmed_clicks": removed, "review": review }),
        ))
    } else {
        let review = state
            .store
            .dismiss_review(link, by.user_id, &note, now)
            .await?;
        audit_entry(&state, by, "fraud.dismiss", subject, &note).await?;
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "review": review }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_domains_are_bare_host_names() {
        assert_eq!(
            parse_blocked_domain(" Evil.Example. ").unwrap(),
            "evil.example"
        );
        for bad in [
            "",
            "evil",
            "https://evil.example",
            "evil.example/x",
            "a b.example",
            "evil.example:80",
            "ev\nil.example",
        ] {
            assert!(parse_blocked_domain(bad).is_err(), "{bad:?}");
        }
        assert!(parse_reason("  ").is_err());
        assert!(parse_reason("phishing report #12").is_ok());
    }
}
