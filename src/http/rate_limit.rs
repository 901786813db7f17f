//! Per-caller rate limit: the token's subject for authenticated requests, the
//! peer IP for public ones. A caller over its quota gets 429 with `Retry-After`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

pub type Limiter = Arc<DefaultKeyedRateLimiter<String>>;

/// `per_second` sustained with bursts of `burst`.
pub fn limiter(per_second: NonZeroU32, burst: NonZeroU32) -> Limiter {
    Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)))
}

/// The bucket of a request: a verified subject, else the peer address. A caller
/// verified here is kept in the request, so the `Caller` extractor does not verify twice.
fn key(state: &AppState, req: &mut Request) -> String {
    if let Some(caller) = Caller::from_header(state, req.headers()) {
        let key = format!("sub:{}", caller.subject);
        req.extensions_mut().insert(caller);
        return key;
    }
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    format!("ip:{}", ip.unwrap_or_default())
}

pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Err(not_until) = state.rate_limiter.check_key(&key(&state, &mut req)) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.max(Duration::from_secs(1))).into_response();
    }
    next.run(req).await
}
