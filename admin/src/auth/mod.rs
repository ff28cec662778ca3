//! Who is calling: a JWT access token (`Authorization: Bearer <jwt>`) or an API key
//! (`Authorization: Bearer lgk_...` or `X-Api-Key: lgk_...`), resolved to a [`Principal`].

pub mod jwt;
pub mod password;
pub mod tokens;

use std::sync::Arc;

use linkgate_common::domain::{Role, Timestamp, UserId};
use warp::Filter;

use crate::problem::ApiError;
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(self) -> bool {
        self.role == Role::Admin
    }

    /// Admins may act on anything; users on what they own.
    pub fn may_access(self, owner: UserId) -> bool {
        self.is_admin() || self.user_id == owner
    }
}

/// An API key's `last_used_at` is written at most this often (not on every request).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Extracts the principal or rejects with 401.
pub fn authenticated(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Principal,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and_then(
            move |authorization: Option<String>, api_key: Option<String>| {
                let state = Arc::clone(&state);
                async move {
                    resolve(&state, authorization.as_deref(), api_key.as_deref())
                        .await
                        .map_err(warp::reject::custom)
                }
            },
        )
}

/// Only administrators pass.
pub fn admin_only(principal: Principal) -> Result<Principal, ApiError> {
    if principal.is_admin() {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden("this needs the admin role"))
    }
}

async fn resolve(
    state: &AppState,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> Result<Principal, ApiError> {
    let bearer = match authorization {
        Some(value) => Some(
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or(ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))?,
        ),
        None => None,
    };
    let token = bearer
        .or(api_key.map(str::trim))
        .ok_or(ApiError::Unauthorized("authentication required"))?;
    if token.starts_with(tokens::API_KEY_PREFIX) {
        return api_key_principal(state, token).await;
    }
    let subject = state
        .jwt
        .verify(token)
        .ok_or(ApiError::Unauthorized("invalid or expired access token"))?;
    Ok(Principal {
        user_id: subject.user_id,
        role: subject.role,
    })
}

async fn api_key_principal(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    const INVALID: ApiError = ApiError::Unauthorized("invalid API key");
    if !tokens::looks_like(key, tokens::API_KEY_PREFIX) {
        return Err(INVALID);
    }
    let found = state
        .store
        .api_key_by_hash(&tokens::digest(key))
        .await?
        .ok_or(INVALID)?;
    let user = state
        .store
        .user_by_id(found.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or(INVALID)?;
    let now = Timestamp::now();
    if found
        .last_used_at
        .is_none_or(|at| now.as_millis() - at.as_millis() >= TOUCH_EVERY_MS)
        && let Err(error) = state.store.touch_api_key(found.id, now).await
    {
        tracing::debug!(%error, "could not record API key use");
    }
    Ok(Principal {
        user_id: user.id,
        role: user.role,
    })
}
