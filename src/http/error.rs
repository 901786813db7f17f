//! One error type for every handler, owning the mapping to HTTP status and to
//! an RFC 9457 `application/problem+json` body. A 500 never leaks internals:
//! the cause is logged (with the request id), the client gets a generic detail.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The RFC 9457 body. `type` is a stable identifier per kind of problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: &'static str,
    #[schema(example = "Request is invalid")]
    pub title: &'static str,
    #[schema(example = 422)]
    pub status: u16,
    pub detail: String,
    /// The request id (also in the `x-request-id` response header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For 422: every invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// For 409 `price_changed`: the current catalog prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<PriceChange>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceChange {
    pub pointer: String,
    pub sku: String,
    #[schema(value_type = String, example = "19.99")]
    pub sent: rust_decimal::Decimal,
    #[schema(value_type = String, example = "21.99")]
    pub current: rust_decimal::Decimal,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body arrived slower than `ORDERS_BODY_READ_TIMEOUT` allows.
    #[error("request body too slow")]
    BodyTimeout,
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("price changed")]
    PriceChanged(Vec<PriceChange>),
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// The order's state forbids the action (e.g. cancelling a delivered order).
    #[error("order state: {0}")]
    InvalidState(String),
    /// Another change to the order or account (or a payment or booking call)
    /// held it longer than the caller may wait; retrying shortly succeeds.
    #[error("busy")]
    Busy,
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// No workflow answered a query (no worker running, or none polling): the
    /// detail says so to the caller, unlike `Unavailable`'s internal cause.
    #[error("workflow unavailable: {0}")]
    WorkflowUnavailable(String),
    /// Over the caller's rate limit; retry after this long.
    #[error("rate limited")]
    RateLimited(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_transient(&e) {
            ApiError::Unavailable(format!("database: {e}"))
        } else {
            ApiError::Internal(format!("database: {e}"))
        }
    }
}

impl From<crate::db::decisions::DecisionError> for ApiError {
    fn from(e: crate::db::decisions::DecisionError) -> Self {
        use crate::db::decisions::DecisionError;
        match e {
            DecisionError::NotFound => ApiError::NotFound,
            DecisionError::Busy => ApiError::Busy,
            DecisionError::Db(e) => e.into(),
        }
    }
}

impl From<temporalio_client::errors::WorkflowStartError> for ApiError {
    /// Temporal's own limits (`ResourceExhausted`: too many requests for the
    /// namespace or the workflow) are the caller's 429; anything else is 503.
    fn from(e: temporalio_client::errors::WorkflowStartError) -> Self {
        use temporalio_client::errors::WorkflowStartError;
        match &e {
            WorkflowStartError::Rpc(status) if status.code() == temporalio_client::tonic::Code::ResourceExhausted => {
                ApiError::RateLimited(std::time::Duration::from_secs(1))
            }
            _ => ApiError::Unavailable(format!("temporal: {e}")),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            // draft-ietf-httpapi-idempotency-key-header: a key reused with another payload is 422.
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PriceChanged(_) | Self::InvalidState(_) | Self::Busy => StatusCode::CONFLICT,
            Self::Unavailable(_) | Self::WorkflowUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn problem(&self) -> Problem {
        let (kind, title, detail) = match self {
            Self::Validation(_) => {
                ("/problems/validation", "Request is invalid", "one or more fields are invalid; see errors".to_owned())
            }
            Self::MalformedJson(m) => ("/problems/malformed-json", "Malformed JSON", m.clone()),
            Self::BadRequest(m) => ("/problems/bad-request", "Bad request", m.clone()),
            Self::UnsupportedMediaType => (
                "/problems/unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json".to_owned(),
            ),
            Self::PayloadTooLarge => {
                ("/problems/payload-too-large", "Payload too large", "the request body is too large".to_owned())
            }
            Self::BodyTimeout => (
                "/problems/request-timeout",
                "Request timeout",
                "the request body did not arrive in time; send it again".to_owned(),
            ),
            Self::Unauthorized => {
                ("/problems/unauthorized", "Unauthorized", "a valid bearer token is required".to_owned())
            }
            Self::Forbidden => ("/problems/forbidden", "Forbidden", "your role may not do this".to_owned()),
            Self::NotFound => ("/problems/not-found", "Not found", "no such resource".to_owned()),
            Self::MethodNotAllowed => (
                "/problems/method-not-allowed",
                "Method not allowed",
                "this route does not accept that method".to_owned(),
            ),
            Self::PriceChanged(_) => (
                "/problems/price-changed",
                "Price changed",
                "the catalog price of some items differs from the unit_price sent; see changes".to_owned(),
            ),
            Self::IdempotencyKeyReused => (
                "/problems/idempotency-key-reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request body".to_owned(),
            ),
            Self::InvalidState(m) => ("/problems/order-state", "Not allowed in the order's state", m.clone()),
            Self::Busy => (
                "/problems/busy",
                "Busy",
                "another change to this order or account is in progress (a payment or booking call, or another \
                 request); retry"
                    .to_owned(),
            ),
            Self::RateLimited(wait) => (
                "/problems/rate-limited",
                "Too many requests",
                format!("slow down; retry in {} s", wait.as_secs().max(1)),
            ),
            Self::Unavailable(_) => {
                ("/problems/unavailable", "Service unavailable", "a dependency is unavailable; retry later".to_owned())
            }
            Self::WorkflowUnavailable(detail) => ("/problems/unavailable", "Service unavailable", detail.clone()),
            Self::Internal(_) => ("/problems/internal", "Internal error", "an unexpected error occurred".to_owned()),
        };
        Problem {
            kind,
            title,
            status: self.status().as_u16(),
            detail,
            instance: None,
            errors: match self {
                Self::Validation(e) => Some(e.clone()),
                _ => None,
            },
            changes: match self {
                Self::PriceChanged(c) => Some(c.clone()),
                _ => None,
            },
        }
    }

    /// The problem for a bare status produced by a layer (timeouts, limits).
    pub fn for_status(status: StatusCode) -> Problem {
        let from = match status {
            StatusCode::NOT_FOUND => Some(Self::NotFound),
            StatusCode::METHOD_NOT_ALLOWED => Some(Self::MethodNotAllowed),
            StatusCode::PAYLOAD_TOO_LARGE => Some(Self::PayloadTooLarge),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Some(Self::UnsupportedMediaType),
            StatusCode::UNAUTHORIZED => Some(Self::Unauthorized),
            StatusCode::FORBIDDEN => Some(Self::Forbidden),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                Some(Self::Unavailable(String::new()))
            }
            _ => None,
        };
        match from {
            Some(e) => {
                let mut p = e.problem();
                p.status = status.as_u16();
                p
            }
            None => Problem {
                kind: "about:blank",
                title: status.canonical_reason().unwrap_or("Error"),
                status: status.as_u16(),
                detail: status.canonical_reason().unwrap_or("error").to_owned(),
                instance: None,
                errors: None,
                changes: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "request failed"),
            Self::Unavailable(cause) | Self::WorkflowUnavailable(cause) => {
                tracing::warn!(%cause, "dependency unavailable")
            }
            _ => {}
        }
        let mut resp = problem_response(self.status(), self.problem());
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::Unavailable(_) | Self::WorkflowUnavailable(_) | Self::Busy) {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited(wait) = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        }
        resp
    }
}

/// Serialises a problem; the `problem_details` middleware later adds `instance`.
pub fn problem_response(status: StatusCode, problem: Problem) -> Response {
    let mut resp = (status, Json(problem.clone())).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp.extensions_mut().insert(problem);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_client::errors::WorkflowStartError;
    use temporalio_client::tonic::Status;

    #[test]
    fn temporal_limits_are_the_callers_429_and_the_rest_503() {
        let limited: ApiError = WorkflowStartError::Rpc(Status::resource_exhausted("namespace rps limit")).into();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        let down: ApiError = WorkflowStartError::Rpc(Status::unavailable("connection refused")).into();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[cfg(test)]
mod problem_types {
    use super::*;
    use crate::http::problems;

    /// Every error's `type` has its page, with the same title and status.
    #[test]
    fn every_error_has_a_documented_type() {
        let all = [
            ApiError::Validation(vec![]),
            ApiError::MalformedJson(String::new()),
            ApiError::BadRequest(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge,
            ApiError::BodyTimeout,
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::PriceChanged(vec![]),
            ApiError::IdempotencyKeyReused,
            ApiError::InvalidState(String::new()),
            ApiError::Busy,
            ApiError::RateLimited(std::time::Duration::from_secs(1)),
            ApiError::Unavailable(String::new()),
            ApiError::WorkflowUnavailable(String::new()),
            ApiError::Internal(String::new()),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in all {
            let p = e.problem();
            let name =
                p.kind.strip_prefix("/problems/").unwrap_or_else(|| panic!("{} is not under /problems/", p.kind));
            let t = problems::find(name).unwrap_or_else(|| panic!("{name} has no page"));
            assert_eq!((t.title, t.status), (p.title, p.status), "{name}");
            seen.insert(name);
        }
        assert_eq!(seen.len(), problems::TYPES.len(), "every listed type is one an error answers with");
    }
}
