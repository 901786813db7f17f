//! Per-caller rate limit: the token's subject for authenticated requests, the
//! client address for public ones. Every limited answer carries the
//! `RateLimit-Policy` and `RateLimit` headers of draft-ietf-httpapi-ratelimit-headers;
//! a caller over its quota gets 429 with `Retry-After`. Sign-ups have a stricter
//! limit of their own, per address and overall: each creates an account and
//! sends an email, and needs no token.
//!
//! The client address is the peer's, unless the peer is a trusted proxy
//! (`ORDERS_TRUSTED_PROXIES`): then it is the last address in `Forwarded` (or
//! `X-Forwarded-For`) that is not itself a trusted proxy. Headers from anyone
//! else are ignored, so a caller cannot pick its own bucket.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use super::auth::Caller;
use super::error::ApiError;
use super::state::AppState;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The general limit and its policy, as the `RateLimit-Policy` header states it.
#[derive(Clone)]
pub struct Limiter {
    keyed: Arc<Keyed>,
    per_second: u32,
    burst: u32,
}

/// `per_second` sustained with bursts of `burst`.
pub fn limiter(per_second: NonZeroU32, burst: NonZeroU32) -> Limiter {
    let keyed = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
        .with_middleware::<StateInformationMiddleware>();
    Limiter { keyed: Arc::new(keyed), per_second: per_second.get(), burst: burst.get() }
}

impl Limiter {
    pub fn retain_recent(&self) {
        self.keyed.retain_recent();
    }

    /// `RateLimit-Policy`: `burst` requests per the time the bucket takes to fill.
    fn policy(&self) -> String {
        format!("\"default\";q={};w={}", self.burst, self.burst.div_ceil(self.per_second))
    }

    /// `RateLimit`: requests left now, and seconds until the bucket is full again.
    fn state(&self, remaining: u32) -> String {
        let refill = (self.burst - remaining.min(self.burst)).div_ceil(self.per_second);
        format!("\"default\";r={remaining};t={refill}")
    }
}

/// The sign-up quotas: per client address and for all of them together, per minute.
#[derive(Clone)]
pub struct SignupLimiter {
    per_ip: Arc<DefaultKeyedRateLimiter<String>>,
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

/// The client's address: the peer's, or, when the peer is a trusted proxy, the
/// nearest address its forwarding headers name that is not a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    chain.iter().rev().find(|ip| !is_trusted(ip)).or(chain.first()).copied().unwrap_or(peer)
}

/// The addresses the forwarding headers name, client first: RFC 7239 `Forwarded`
/// (`for=`) when present, else `X-Forwarded-For`. Obfuscated or unknown
/// identifiers (`for=unknown`, `for=_hidden`) end the chain there.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let forwarded = values("forwarded");
    let names: Vec<String> = if forwarded.is_empty() {
        values("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|s| s.trim().to_owned()).collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
                })
            })
            .collect()
    };
    names.iter().map_while(|name| parse_node(name)).collect()
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:8080`,
/// `[2001:db8::1]`, `[2001:db8::1]:8080` or a bare IPv6 address.
fn parse_node(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    if let Some(rest) = name.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    name.rsplit_once(':').and_then(|(host, _port)| host.parse().ok())
}

fn client_key(state: &AppState, req: &Request) -> String {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let ip = peer.map(|p| client_ip(p, req.headers(), &state.settings.trusted_proxies));
    format!("ip:{}", ip.map(|ip| ip.to_string()).unwrap_or_default())
}

/// The bucket of a request: a verified subject, else the client's address. A
/// caller verified here is kept in the request, so the `Caller` extractor does not verify twice.
async fn key(state: &AppState, req: &mut Request) -> String {
    if let Some(caller) = Caller::from_header(state, req.headers()).await {
        let key = format!("sub:{}", caller.subject);
        req.extensions_mut().insert(caller);
        return key;
    }
    client_key(state, req)
}

fn set_headers(response: &mut Response, limiter: &Limiter, remaining: u32) {
    let headers = response.headers_mut();
    for (name, value) in [("ratelimit-policy", limiter.policy()), ("ratelimit", limiter.state(remaining))] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let limiter = state.rate_limiter.clone();
    match limiter.keyed.check_key(&key(&state, &mut req).await) {
        Ok(snapshot) => {
            let mut response = next.run(req).await;
            set_headers(&mut response, &limiter, snapshot.remaining_burst_capacity());
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut response = ApiError::RateLimited(wait.max(Duration::from_secs(1))).into_response();
            set_headers(&mut response, &limiter, 0);
            response
        }
    }
}

/// The sign-up route's own limit, checked after the general one.
pub async fn limit_signups(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.signup_limiter;
    let refused = limits.per_ip.check_key(&client_key(&state, &req)).err().or_else(|| limits.overall.check().err());
    if let Some(not_until) = refused {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        return ApiError::RateLimited(wait.max(Duration::from_secs(1))).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()];
        let xff = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.2.3")]);
        // From a trusted balancer: the nearest untrusted address in the chain.
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &trusted), ip("198.51.100.7"));
        // From anyone else: the headers are the caller's own words, ignored.
        assert_eq!(client_ip(ip("203.0.113.9"), &xff, &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("10.0.0.1"), &xff, &[]), ip("10.0.0.1"), "no trusted proxies: the peer");
        // A spoofed leftmost entry does not win: the nearest untrusted one does.
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &spoofed, &trusted), ip("198.51.100.7"));
        // RFC 7239, several header lines, ports and IPv6 brackets.
        let fwd =
            headers(&[("forwarded", "for=198.51.100.8;proto=https"), ("forwarded", "for=\"[2001:db8::5]:4711\"")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &fwd, &trusted), ip("198.51.100.8"));
        let with_port = headers(&[("forwarded", "for=\"198.51.100.9:1234\", for=10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &with_port, &trusted), ip("198.51.100.9"));
        // An unknown hop ends what can be believed; only trusted proxies before it: the first one named.
        let unknown = headers(&[("forwarded", "for=unknown, for=10.0.0.3")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &unknown, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn the_headers_state_the_policy_and_what_is_left() {
        let l = limiter(NonZeroU32::new(50).unwrap(), NonZeroU32::new(100).unwrap());
        assert_eq!(l.policy(), "\"default\";q=100;w=2");
        assert_eq!(l.state(100), "\"default\";r=100;t=0");
        assert_eq!(l.state(0), "\"default\";r=0;t=2");
    }
}
