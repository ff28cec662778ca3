//! Link rules shared by single create, bulk create, CSV import and edits: request shapes,
//! validation into domain values (every refusal names its field), and the view returned.

use linkgate_common::domain::{
    Link, LinkDomain, LinkPatch, LinkState, NewLink, RedirectStatus, ShortCode, ShortCodeError,
    Tag, TargetUrl, Timestamp, parse_title,
};
use linkgate_common::store::{StoreError, create_link_with_retry};
use serde::{Deserialize, Deserializer, Serialize};

use crate::auth::Principal;
use crate::auth::password::check_password_rules;
use crate::problem::ApiError;
use crate::state::AppState;

/// Most links in one bulk request.
pub const MAX_BULK: usize = 1000;
/// Generated-code attempts before giving up (collisions are astronomically rare at 62^7).
const CODE_ATTEMPTS: u32 = 5;

/// `POST /links` and each item of `POST /links/bulk`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    pub target: String,
    pub code: Option<String>,
    pub domain: Option<String>,
    pub title: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub expires_at: Option<String>,
    pub max_clicks: Option<u64>,
    pub redirect_status: Option<u16>,
    #[serde(default)]
    pub forward_query: bool,
    pub password: Option<String>,
    pub fallback_url: Option<String>,
}

/// `PATCH /links/{code}`: absent fields stay, `null` clears a nullable field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditLink {
    pub target: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub title: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_clicks: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub redirect_status: Option<Option<u16>>,
    pub forward_query: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    pub password: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub fallback_url: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// A present field (even `null`) becomes `Some(..)`; an absent one stays `None` by default.
#[allow(
    clippy::option_option,
    reason = "absent (keep), null (clear) and a value are three different edits"
)]
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A link as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub id: i64,
    pub code: String,
    pub domain: String,
    pub short_url: String,
    pub target: String,
    pub title: Option<String>,
    pub tags: Vec<Tag>,
    /// The status this link redirects with (the service default when it sets none).
    pub redirect_status: u16,
    pub forward_query: bool,
    pub password_protected: bool,
    pub expires_at: Option<Timestamp>,
    pub max_clicks: Option<u64>,
    pub fallback_url: Option<String>,
    pub state: LinkState,
    pub clicks: u64,
    pub owner_id: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl LinkView {
    pub fn new(state: &AppState, link: &Link) -> Self {
        Self {
            id: link.id.0,
            code: link.code.as_str().to_owned(),
            domain: link.domain.as_str().to_owned(),
            short_url: state.short_url(&link.domain, link.code.as_str()),
            target: link.target.as_str().to_owned(),
            title: link.title.clone(),
            tags: link.tags.clone(),
            redirect_status: link.redirect_status.map_or(
                state.settings.links.default_redirect_status,
                RedirectStatus::code,
            ),
            forward_query: link.forward_query,
            password_protected: link.is_password_protected(),
            expires_at: link.expires_at,
            max_clicks: link.max_clicks,
            fallback_url: link.fallback_url.as_ref().map(|u| u.as_str().to_owned()),
            state: link.state,
            clicks: link.clicks,
            owner_id: link.owner_id.0,
            created_at: link.created_at,
            updated_at: link.updated_at,
        }
    }
}

/// Validates a target against the URL rules, the configured policy and the blocklist.
pub async fn parse_target(
    state: &AppState,
    field: &str,
    input: &str,
) -> Result<TargetUrl, ApiError> {
    let target = TargetUrl::parse(input, &state.policy).map_err(|e| ApiError::invalid(field, e))?;
    if state.store.is_domain_blocked(target.host()).await? {
        return Err(ApiError::invalid(
            field,
            "links to this domain are not allowed",
        ));
    }
    Ok(target)
}

/// Resolves the domain a request names (or the default) to one the service serves.
pub fn parse_domain(state: &AppState, input: Option<&str>) -> Result<LinkDomain, ApiError> {
    let Some(input) = input else {
        return Ok(state.default_domain.clone());
    };
    let domain = LinkDomain::parse(input).map_err(|e| ApiError::invalid("domain", e))?;
    if state.domains.contains(&domain) {
        Ok(domain)
    } else {
        Err(ApiError::invalid(
            "domain",
            "is not one of this service's domains",
        ))
    }
}

fn parse_time(field: &str, input: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(input).map_err(|_| {
        ApiError::invalid(
            field,
            "must be an RFC 3339 time such as 2026-12-31T23:59:59Z",
        )
    })
}

fn parse_status(input: u16) -> Result<RedirectStatus, ApiError> {
    RedirectStatus::from_code(input)
        .ok_or_else(|| ApiError::invalid("redirect_status", "must be 301, 302, 307 or 308"))
}

/// Largest click limit: far beyond any real link, and safely inside a signed 64-bit column.
const MAX_CLICK_LIMIT: u64 = 1_000_000_000_000;

fn parse_max_clicks(input: u64) -> Result<u64, ApiError> {
    if (1..=MAX_CLICK_LIMIT).contains(&input) {
        Ok(input)
    } else {
        Err(ApiError::invalid(
            "max_clicks",
            format!("must be 1 to {MAX_CLICK_LIMIT}"),
        ))
    }
}

fn parse_code(input: &str) -> Result<ShortCode, ApiError> {
    ShortCode::parse(input).map_err(|e| match e {
        ShortCodeError::Reserved(_) => {
            ApiError::invalid("code", "is reserved for the service's own paths")
        }
        other => ApiError::invalid("code", other),
    })
}

/// A future expiry (an expiry in the past would create a dead link by mistake).
fn parse_expiry(input: &str) -> Result<Timestamp, ApiError> {
    let at = parse_time("expires_at", input)?;
    if at <= Timestamp::now() {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    Ok(at)
}

/// Turns a create request into a `NewLink` for `owner`; `code` stays a placeholder when
/// generated (the store retries on collision).
pub async fn validate_create(
    state: &AppState,
    owner: Principal,
    req: &CreateLink,
) -> Result<(NewLink, bool), ApiError> {
    let target = parse_target(state, "target", &req.target).await?;
    let domain = parse_domain(state, req.domain.as_deref())?;
    let (code, custom) = match &req.code {
        Some(code) => (parse_code(code)?, true),
        None => (ShortCode::generate(state.settings.links.code_length), false),
    };
    let mut link = NewLink::new(owner.user_id, domain, code, target);
    link.title = match &req.title {
        Some(t) => Some(parse_title(t).map_err(|e| ApiError::invalid("title", e))?)
            .filter(|t| !t.is_empty()),
        None => None,
    };
    link.tags = Tag::parse_list(&req.tags).map_err(|e| ApiError::invalid("tags", e))?;
    link.expires_at = req.expires_at.as_deref().map(parse_expiry).transpose()?;
    link.max_clicks = req.max_clicks.map(parse_max_clicks).transpose()?;
    link.redirect_status = req.redirect_status.map(parse_status).transpose()?;
    link.forward_query = req.forward_query;
    link.fallback_url = match &req.fallback_url {
        Some(u) => Some(parse_target(state, "fallback_url", u).await?),
        None => None,
    };
    if let Some(password) = &req.password {
        check_password_rules(password)?;
        link.password_hash = Some(state.hasher.hash(password).await?);
    }
    Ok((link, custom))
}

/// Validates and inserts one link; 409 for a taken custom code.
pub async fn create(
    state: &AppState,
    owner: Principal,
    req: &CreateLink,
) -> Result<Link, ApiError> {
    let (link, custom) = validate_create(state, owner, req).await?;
    let created = insert(state, link, custom).await?;
    state.metrics.links_created(1);
    state
        .publish_change(&created.domain, created.code.as_str())
        .await;
    Ok(created)
}

/// Inserts a validated link: a custom code as given (409 when taken), a generated one
/// redrawn on collision.
pub async fn insert(state: &AppState, link: NewLink, custom: bool) -> Result<Link, ApiError> {
    let result = if custom {
        state.store.create_link(&link).await
    } else {
        let len = state.settings.links.code_length;
        create_link_with_retry(
            &*state.store,
            link,
            || ShortCode::generate(len),
            CODE_ATTEMPTS,
        )
        .await
    };
    result.map_err(|e| match e {
        StoreError::Conflict(_) => {
            ApiError::Conflict("this code is already taken on this domain".to_owned())
        }
        other => other.into(),
    })
}

/// Turns an edit into a `LinkPatch` for `link`, as `by` may make it.
pub async fn validate_edit(
    state: &AppState,
    by: Principal,
    link: &Link,
    req: &EditLink,
) -> Result<LinkPatch, ApiError> {
    let mut patch = LinkPatch::default();
    if let Some(target) = &req.target {
        patch.target = Some(parse_target(state, "target", target).await?);
    }
    if let Some(title) = &req.title {
        patch.title = Some(match title {
            Some(t) => Some(parse_title(t).map_err(|e| ApiError::invalid("title", e))?)
                .filter(|t| !t.is_empty()),
            None => None,
        });
    }
    if let Some(tags) = &req.tags {
        patch.tags = Some(Tag::parse_list(tags).map_err(|e| ApiError::invalid("tags", e))?);
    }
    if let Some(expiry) = &req.expires_at {
        patch.expires_at = Some(expiry.as_deref().map(parse_expiry).transpose()?);
    }
    if let Some(max) = req.max_clicks {
        patch.max_clicks = Some(max.map(parse_max_clicks).transpose()?);
    }
    if let Some(status) = req.redirect_status {
        patch.redirect_status = Some(status.map(parse_status).transpose()?);
    }
    patch.forward_query = req.forward_query;
    if let Some(fallback) = &req.fallback_url {
        patch.fallback_url = Some(match fallback {
            Some(u) => Some(parse_target(state, "fallback_url", u).await?),
            None => None,
        });
    }
    if let Some(password) = &req.password {
        patch.password_hash = Some(match password {
            Some(p) => {
                check_password_rules(p)?;
                Some(state.hasher.hash(p).await?)
            }
            None => None,
        });
    }
    if let Some(enabled) = req.enabled {
        if link.state == LinkState::Banned {
            // Administrators lift bans through the audited unban action, not an edit.
            return Err(ApiError::Forbidden(if by.is_admin() {
                "this link is banned: lift the ban with POST /api/v1/admin/links/{id}/unban"
            } else {
                "this link was banned by an administrator and cannot be switched on or off"
            }));
        }
        patch.state = Some(if enabled {
            LinkState::Active
        } else {
            LinkState::Disabled
        });
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_tells_absent_from_null() {
        let edit: EditLink = serde_json::from_str(r#"{"title": null, "max_clicks": 5}"#).unwrap();
        assert_eq!(edit.title, Some(None));
        assert_eq!(edit.max_clicks, Some(Some(5)));
        assert_eq!(edit.expires_at, None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            serde_json::from_str::<CreateLink>(r#"{"target": "https://a.example", "colour": 1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn reserved_and_malformed_codes_are_refused_with_a_reason() {
        assert!(matches!(parse_code("api"), Err(ApiError::Invalid { .. })));
        assert!(matches!(
            parse_code("export"),
            Err(ApiError::Invalid { .. })
        ));
        assert!(matches!(parse_code("a/b"), Err(ApiError::Invalid { .. })));
        assert!(parse_code("my-launch").is_ok());
        assert!(parse_status(303).is_err());
        assert!(parse_max_clicks(0).is_err());
        assert!(parse_max_clicks(u64::MAX).is_err());
    }
}
