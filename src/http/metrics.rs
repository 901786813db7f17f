//! Prometheus metrics of the API, served at `GET /metrics` (text format) on a
//! listener of their own (`ORDERS_METRICS_ADDR`), never on the API port.
//! Labels are bounded: the route template (never an id), the method, the status.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use super::state::AppState;

#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    pub orders_created: IntCounter,
    /// Orders the API itself ended: delivered, on the carrier's report (the
    /// worker counts the ends it records under the same name).
    pub orders_finished: IntCounterVec,
}

impl HttpMetrics {
    pub fn new() -> Self {
        // Every name and label set below is fixed and distinct, so registration cannot fail.
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("orders_http_requests_total", "HTTP requests answered, by route template, method and status"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("orders_http_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let in_flight =
            IntGauge::new("orders_http_requests_in_flight", "HTTP requests being handled now").expect("valid metric");
        let orders_created =
            IntCounter::new("orders_created_total", "Orders accepted (201), replays excluded").expect("valid metric");
        let orders_finished = IntCounterVec::new(
            Opts::new("orders_finished_total", "Orders that reached an end status here, by status"),
            &["status"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(orders_finished.clone())).expect("registered once");
        registry.register(Box::new(duration.clone())).expect("registered once");
        registry.register(Box::new(in_flight.clone())).expect("registered once");
        registry.register(Box::new(orders_created.clone())).expect("registered once");
        Self { registry, requests, duration, in_flight, orders_created, orders_finished }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding plain counters, gauges and histograms into a Vec does not fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let m = &state.metrics;
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let started = Instant::now();
    // A guard, so that a request dropped mid-way (client gone) still leaves the gauge.
    let in_flight = InFlight::enter(&m.in_flight);
    let resp = next.run(req).await;
    drop(in_flight);
    let status = resp.status().as_u16().to_string();
    let labels = [route.as_str(), method, status.as_str()];
    m.requests.with_label_values(&labels).inc();
    m.duration.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
    resp
}

/// The method as a label: one of the standard methods, or `_OTHER` (the
/// OpenTelemetry convention), so that no caller can add label values at will.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::CONNECT, "CONNECT"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::PATCH, "PATCH"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("_OTHER", |(_, label)| label)
}

struct InFlight(IntGauge);

impl InFlight {
    fn enter(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics)).with_state(state)
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_bounded_label() {
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        let made_up = axum::http::Method::from_bytes(b"PROBEMETHODA").unwrap();
        assert_eq!(method_label(&made_up), "_OTHER");
    }
}
