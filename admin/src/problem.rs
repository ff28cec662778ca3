//! Errors as RFC 7807 `application/problem+json`, mapped in ONE place: handlers return
//! [`ApiError`], filters reject with it, and [`recover`] turns warp's own rejections (no
//! route, wrong method, body too large) into problems too. A cause is logged once, here;
//! user input never produces a 500.

use std::convert::Infallible;

use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};
use linkgate_common::store::StoreError;
use serde::Serialize;
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Everything a handler can fail with, each with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// No or invalid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but this action needs more.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Absent, deleted, or someone else's (never told apart: no probing of other users' links).
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but refused by a rule: the field and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    Unsupported(&'static str),
    /// A dependency (database, Redis for a fail-closed limit, the hashing pool) is down or busy.
    #[error("{0}")]
    Unavailable(&'static str),
    /// A bug or corrupt data; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The response body and headers; logs server-side causes once.
    pub fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "request failed"),
            Self::Unavailable(what) => tracing::warn!(cause = %what, "dependency unavailable"),
            _ => {}
        }
        let field = match &self {
            Self::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        problem(status, &self.to_string(), field, retry_after)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Conflict(what) => Self::Conflict(format!("{what} is already taken")),
            StoreError::Unavailable(_) => Self::Unavailable("the database is unavailable"),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The RFC 7807 body.
#[derive(Debug, Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// A problem+json response.
pub fn problem(
    status: StatusCode,
    detail: &str,
    field: Option<String>,
    retry_after_secs: Option<u64>,
) -> Response {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        field,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = warp::http::Response::builder()
        .status(status)
        .header("content-type", "application/problem+json")
        .body(json.into())
        .unwrap_or_default();
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::LENGTH_REQUIRED {
        // The unread body is still on the connection: close it so the client does not
        // send its next request into the leftover bytes.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Turns a handler's result into a response.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Maps every rejection that reaches the top to a problem.
pub async fn recover(rejection: Rejection, body_limit: u64) -> Result<Response, Infallible> {
    let error = if let Some(api) = rejection.find::<ApiError>() {
        api.clone()
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "this method is not allowed here",
            None,
            None,
        ));
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge { limit: body_limit }
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        return Ok(problem(
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required",
            None,
            None,
        ));
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest(format!("invalid query string: {e}"))
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::BadRequest(e.to_string())
    } else {
        ApiError::Internal(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

/// A JSON response with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}
