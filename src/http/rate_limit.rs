//! Per-caller rate limit: the token's subject for authenticated requests, the
//! peer IP for public ones. A caller over its quota gets 429 with `Retry-After`.
//! Sign-ups have a stricter one of their own, per address and overall: each
//! creates an account and sends an email, and needs no token.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

pub type Limiter = Arc<DefaultKeyedRateLimiter<String>>;

/// `per_second` sustained with bursts of `burst`.
pub fn limiter(per_second: NonZeroU32, burst: NonZeroU32) -> Limiter {
    Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)))
}

/// The sign-up quotas: per peer address and for all of them together, per minute.
#[derive(Clone)]
pub struct SignupLimiter {
    per_ip: Limiter,
    overall: Arc<DefaultDirectRateLimiter>,
}

impl SignupLimiter {
    pub fn new(per_ip_per_minute: NonZeroU32, per_minute: NonZeroU32) -> Self {
        Self {
            per_ip: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_ip_per_minute))),
            overall: Arc::new(DefaultDirectRateLimiter::direct(Quota::per_minute(per_minute))),
        }
    }

    pub fn retain_recent(&self) {
        self.per_ip.retain_recent();
    }
}

fn peer(req: &Request) -> String {
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    format!("ip:{}", ip.unwrap_or_default())
}

/// The bucket of a request: a verified subject, else the peer address. A caller
/// verified here is kept in the request, so the `Caller` extractor does not verify twice.
fn key(state: &AppState, req: &mut Request) -> String {
    if let Some(caller) = Caller::from_header(state, req.headers()) {
        let key = format!("sub:{}", caller.subject);
        req.extensions_mut().insert(caller);
        return key;
    }
    peer(req)
}

pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Err(not_until) = state.rate_limiter.check_key(&key(&state, &mut req)) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.max(Duration::from_secs(1))).into_response();
    }
    next.run(req).await
}

/// The sign-up route's own limit, checked after the general one.
pub async fn limit_signups(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.signup_limiter;
    let refused = limits.per_ip.check_key(&peer(&req)).err().or_else(|| limits.overall.check().err());
    if let Some(not_until) = refused {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.max(Duration::from_secs(1))).into_response();
    }
    next.run(req).await
}
