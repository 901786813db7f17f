//! The HTTP API: router, middleware, and the handlers by resource.

pub mod app;
pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod problems;
pub mod products;
pub mod rate_limit;
pub mod serve;
pub mod state;
pub mod users;

use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

pub use app::Application;
use error::{ApiError, PROBLEM_JSON, Problem};
use state::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let track = middleware::from_fn_with_state(state.clone(), metrics::track);
    let no_store = HeaderValue::from_static("no-store");
    Router::new()
        .route("/orders", post(orders::create).get(orders::list::list))
        .route("/orders/{id}", get(orders::get))
        .route("/orders/{id}/events", get(orders::events::stream))
        .route("/orders/{id}/workflow", get(orders::workflow::get))
        .route("/orders/{id}/cancel", post(orders::actions::cancel))
        .route("/orders/{id}/shipping-address", patch(orders::actions::amend_address))
        .route("/orders/{id}/review", post(orders::actions::review))
        .route("/orders/{id}/shipment-events", post(orders::actions::shipment_event))
        .route("/products", get(products::list))
        .route(
            "/users",
            post(users::create).route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::limit_signups)),
        )
        .route("/users/{id}", get(users::get))
        .route("/users/{id}/verify", post(users::verify))
        .route("/whoami", get(auth::whoami))
        .route("/problems/{name}", get(problems::page))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // Order and account data is private: never cached by browsers or proxies.
        .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, no_store))
        .merge(openapi::routes())
        .merge(console::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit::limit))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(drop_unsafe_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<Body>| {
                            let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
                            let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                            let span = tracing::info_span!(
                                "http",
                                otel.name = format!(
                                    "{} {}",
                                    metrics::method_label(req.method()),
                                    route.as_deref().unwrap_or("unmatched")
                                ),
                                otel.kind = "server",
                                // OpenTelemetry HTTP semantic conventions.
                                http.request.method = metrics::method_label(req.method()),
                                http.route = route.as_deref().unwrap_or("unmatched"),
                                http.response.status_code = tracing::field::Empty,
                                request_id
                            );
                            // Continue the storefront's trace when it sends a W3C `traceparent`.
                            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                                p.extract(&opentelemetry_http::HeaderExtractor(req.headers()))
                            });
                            let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
                            span
                        })
                        .on_response(|resp: &axum::http::Response<Body>, _latency: Duration, span: &tracing::Span| {
                            span.record("http.response.status_code", resp.status().as_u16());
                        }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Outside the limits, so shed, timed-out and refused requests are counted too.
                .layer(track)
                .layer(SetResponseHeaderLayer::if_not_present(
                    HeaderName::from_static("x-content-type-options"),
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    HeaderName::from_static("referrer-policy"),
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(cors(&settings.cors_origins))
                .layer(middleware::from_fn(problem_details))
                // Shed load instead of queueing without bound.
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    let mut resp = ApiError::Unavailable("overloaded".into()).into_response();
                    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    resp
                }))
                .layer(LoadShedLayer::new())
                // Global: `Router::layer` clones layers per route, so a per-clone limit would not be one.
                .layer(GlobalConcurrencyLimitLayer::new(settings.max_concurrent_requests))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, settings.request_timeout))
                // A body trickled in slower than this fails to read (408), well before the request's timeout.
                .layer(RequestBodyTimeoutLayer::new(settings.body_read_timeout))
                .layer(DefaultBodyLimit::max(settings.max_body_bytes)),
        )
}

/// The caller's `x-request-id` is echoed in answers, logs and problem documents:
/// only a short, plain one is kept (at most 128 of `A-Z a-z 0-9 . _ : -`);
/// any other is replaced by a fresh id.
async fn drop_unsafe_request_id(mut req: Request, next: Next) -> Response {
    let safe = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    };
    if req.headers().get(REQUEST_ID).is_some_and(|v| !safe(v)) {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

/// CORS for the configured origins only; with none, no CORS headers at all.
fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    if allowed.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST, Method::PATCH])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("idempotency-key")])
        .expose_headers([header::LOCATION, REQUEST_ID, HeaderName::from_static("idempotent-replayed")])
        .max_age(Duration::from_secs(600))
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
