//! The HTTP API: router, middleware, and the handlers by resource.

pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod orders;
pub mod products;
pub mod state;
pub mod users;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use app::Application;
use error::{ApiError, PROBLEM_JSON, Problem};
use state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Bodies above this are refused with 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(orders::create).get(orders::list::list))
        .route("/orders/{id}", get(orders::get))
        .route("/orders/{id}/events", get(orders::events::stream))
        .route("/orders/{id}/cancel", post(orders::actions::cancel))
        .route("/orders/{id}/shipping-address", patch(orders::actions::amend_address))
        .route("/orders/{id}/review", post(orders::actions::review))
        .route("/orders/{id}/shipment-events", post(orders::actions::shipment_event))
        .route("/products", get(products::list))
        .route("/users", post(users::create))
        .route("/users/{id}", get(users::get))
        .route("/users/{id}/verify", post(users::verify))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(openapi::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
                    let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), route = route.as_deref().unwrap_or("unmatched"), request_id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(middleware::from_fn(problem_details))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

/// Makes every error response a problem document carrying the request id as
/// `instance`, including bare statuses from layers (timeouts) and anything
/// axum answers itself.
async fn problem_details(req: Request, next: Next) -> Response {
    let request_id =
        req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).map(str::to_owned);
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // A JSON body without a `Problem` was written on purpose (e.g. `/readyz`'s 503): keep it.
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with(PROBLEM_JSON));
    let problem = match resp.extensions().get::<Problem>() {
        Some(p) => p.clone(),
        None if is_json => return resp,
        None => ApiError::for_status(status),
    };
    let (mut parts, _) = resp.into_parts();
    let body = Problem { instance: request_id, ..problem };
    parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut out = Json(body).into_response();
    *out.status_mut() = parts.status;
    for (k, v) in parts.headers.iter() {
        out.headers_mut().insert(k, v.clone());
    }
    out
}
