//! Sign-up, login, token refresh (rotating, with reuse detection), logout, the caller's own
//! account and API keys.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use linkgate_common::domain::{
    ApiKeyId, Email, NewApiKey, NewUser, RefreshToken, Role, RotateOutcome, Timestamp, User,
};
use linkgate_common::ratelimit::{Verdict, retry_after_secs};
use linkgate_common::store::StoreError;
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::{client_ip, json_body, no_content, principal, to, with_state};
use crate::auth::jwt::TokenSubject;
use crate::auth::password::check_password_rules;
use crate::auth::{Principal, tokens};
use crate::problem::{ApiError, json};
use crate::state::AppState;

/// Longest API key name.
const MAX_KEY_NAME_CHARS: usize = 100;

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = state.settings.admin.max_body_bytes;
    let signup = warp::path!("api" / "v1" / "auth" / "signup")
        .and(warp::post())
        .and(with_state(state))
        .and(client_ip(state))
        .and(json_body::<Credentials>(limit))
        .then(to!(signup; s, ip, body));
    let login = warp::path!("api" / "v1" / "auth" / "login")
        .and(warp::post())
        .and(with_state(state))
        .and(client_ip(state))
        .and(json_body::<Credentials>(limit))
        .then(to!(login; s, ip, body));
    let refresh = warp::path!("api" / "v1" / "auth" / "refresh")
        .and(warp::post())
        .and(with_state(state))
        .and(json_body::<RefreshRequest>(limit))
        .then(to!(refresh; s, body));
    let logout = warp::path!("api" / "v1" / "auth" / "logout")
        .and(warp::post())
        .and(with_state(state))
        .and(json_body::<RefreshRequest>(limit))
        .then(to!(logout; s, body));
    let me = warp::path!("api" / "v1" / "me")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .then(to!(me; s, p));
    let list_keys = warp::path!("api" / "v1" / "me" / "api-keys")
        .and(warp::get())
        .and(with_state(state))
        .and(principal(state))
        .then(to!(list_keys; s, p));
    let create_key = warp::path!("api" / "v1" / "me" / "api-keys")
        .and(warp::post())
        .and(with_state(state))
        .and(principal(state))
        .and(json_body::<NewKeyRequest>(limit))
        .then(to!(create_key; s, p, body));
    let revoke_key = warp::path!("api" / "v1" / "me" / "api-keys" / String)
        .and(warp::delete())
        .and(with_state(state))
        .and(principal(state))
        .then(
            |id: String, s, p| async move { crate::problem::respond(revoke_key(s, p, id).await) },
        );
    signup
        .or(login)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .or(me)
        .unify()
        .or(list_keys)
        .unify()
        .or(create_key)
        .unify()
        .or(revoke_key)
        .unify()
        .boxed()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    name: String,
}

/// What login, signup and refresh return.
#[derive(Debug, Serialize)]
struct TokenPair {
    access_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
    user: User,
}

/// Login and signup are limited per client address; when the shared limiter (Redis) is
/// down they fail closed: a guessing flood must not pass because Redis is away.
async fn check_login_limit(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    match state.login_limiter.check(&ip).await {
        Verdict::Allowed => Ok(()),
        Verdict::Limited { retry_after } => {
            state.metrics.limited("login", false);
            Err(ApiError::TooManyRequests {
                retry_after_secs: retry_after_secs(retry_after),
            })
        }
        Verdict::Unavailable => {
            state.metrics.limited("login", true);
            Err(ApiError::Unavailable(
                "the shared rate limiter is unavailable; try again shortly",
            ))
        }
    }
}

async fn signup(state: Arc<AppState>, ip: IpAddr, body: Credentials) -> Result<Response, ApiError> {
    if !state.settings.auth.allow_signup {
        return Err(ApiError::Forbidden("sign-up is disabled on this service"));
    }
    check_login_limit(&state, ip).await?;
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid("email", e))?;
    check_password_rules(&body.password)?;
    let password_hash = state.hasher.hash(&body.password).await?;
    let user = state
        .store
        .create_user(&NewUser {
            email,
            password_hash,
            role: Role::User,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("an account with this e-mail address exists".to_owned())
            }
            other => other.into(),
        })?;
    let pair = issue_pair(&state, user, None).await?;
    Ok(json(StatusCode::CREATED, &pair))
}

async fn login(state: Arc<AppState>, ip: IpAddr, body: Credentials) -> Result<Response, ApiError> {
    const WRONG: ApiError = ApiError::Unauthorized("wrong e-mail address or password");
    check_login_limit(&state, ip).await?;
    // Length is checked after the limit and before hashing (no 1 MB password hashing), and
    // costs the same for known and unknown users.
    if body.password.is_empty() || body.password.len() > crate::auth::password::MAX_PASSWORD_BYTES {
        state.metrics.login(false);
        return Err(WRONG);
    }
    let user = match Email::parse(&body.email) {
        Ok(email) => state.store.user_by_email(&email).await?,
        Err(_) => None,
    };
    let matches = state
        .hasher
        .verify(
            &body.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await?;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        _ => {
            state.metrics.login(false);
            return Err(WRONG);
        }
    };
    state.metrics.login(true);
    let pair = issue_pair(&state, user, None).await?;
    Ok(json(StatusCode::OK, &pair))
}

/// A new access token with `rotated`, the refresh token that continues a rotation chain, or
/// when `None` the first token of a new family (a login).
async fn issue_pair(
    state: &AppState,
    user: User,
    rotated: Option<String>,
) -> Result<TokenPair, ApiError> {
    let access_token = state
        .jwt
        .issue(TokenSubject {
            user_id: user.id,
            role: user.role,
        })
        .map_err(|e| ApiError::Internal(format!("jwt: {e}")))?;
    let refresh_token = if let Some(token) = rotated {
        token
    } else {
        let (token, hash) = tokens::new_refresh_token();
        let now = Timestamp::now();
        state
            .store
            .insert_refresh_token(&RefreshToken {
                token_hash: hash,
                user_id: user.id,
                family: *uuid::Uuid::new_v4().as_bytes(),
                expires_at: refresh_expiry(state, now),
                created_at: now,
                rotated_at: None,
                revoked_at: None,
            })
            .await?;
        token
    };
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: state.jwt.ttl_secs(),
        refresh_token,
        user,
    })
}

fn refresh_expiry(state: &AppState, now: Timestamp) -> Timestamp {
    let ttl_ms = i64::try_from(state.settings.auth.refresh_ttl_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    now.plus_millis(ttl_ms)
}

async fn refresh(state: Arc<AppState>, body: RefreshRequest) -> Result<Response, ApiError> {
    const INVALID: ApiError = ApiError::Unauthorized("invalid, expired or revoked refresh token");
    if !tokens::looks_like(&body.refresh_token, tokens::REFRESH_PREFIX) {
        return Err(INVALID);
    }
    let presented = tokens::digest(&body.refresh_token);
    let (next_token, next_hash) = tokens::new_refresh_token();
    let now = Timestamp::now();
    let outcome = state
        .store
        .rotate_refresh_token(&presented, &next_hash, refresh_expiry(&state, now), now)
        .await?;
    let user_id = match outcome {
        RotateOutcome::Rotated { user_id } => user_id,
        RotateOutcome::Reused { user_id } => {
            tracing::warn!(
                user = user_id.0,
                "a spent refresh token was presented again; its family is revoked"
            );
            return Err(INVALID);
        }
        RotateOutcome::Invalid => return Err(INVALID),
    };
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(INVALID)?;
    let pair = issue_pair(&state, user, Some(next_token)).await?;
    Ok(json(StatusCode::OK, &pair))
}

async fn logout(state: Arc<AppState>, body: RefreshRequest) -> Result<Response, ApiError> {
    if tokens::looks_like(&body.refresh_token, tokens::REFRESH_PREFIX) {
        let presented = tokens::digest(&body.refresh_token);
        state
            .store
            .revoke_refresh_family(&presented, Timestamp::now())
            .await?;
    }
    // Unknown tokens get the same answer: logout reveals nothing about a token.
    Ok(no_content())
}

async fn me(state: Arc<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let user = state
        .store
        .user_by_id(principal.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("this account no longer exists"))?;
    Ok(json(StatusCode::OK, &user))
}

async fn list_keys(state: Arc<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let keys = state.store.list_api_keys(principal.user_id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": keys })))
}

async fn create_key(
    state: Arc<AppState>,
    principal: Principal,
    body: NewKeyRequest,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_KEY_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "name",
            format!("must be 1-{MAX_KEY_NAME_CHARS} characters without control characters"),
        ));
    }
    let (key, hash, prefix) = tokens::new_api_key();
    let stored = state
        .store
        .create_api_key(&NewApiKey {
            user_id: principal.user_id,
            name: name.to_owned(),
            prefix,
            key_hash: hash,
        })
        .await?;
    // The key itself is shown this once; only its digest is kept.
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "key": key, "api_key": stored }),
    ))
}

async fn revoke_key(
    state: Arc<AppState>,
    principal: Principal,
    id: String,
) -> Result<Response, ApiError> {
    let id = id.parse::<i64>().map_err(|_| ApiError::NotFound)?;
    if state
        .store
        .revoke_api_key(principal.user_id, ApiKeyId(id), Timestamp::now())
        .await?
    {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound)
    }
}
