//! The real HTTP parties (`ORDERS_PAYMENT_GATEWAY=http`, `ORDERS_CARRIER=http`)
//! against a real listener on loopback: every mapping docs/api.md promises (2xx,
//! 402 decline, other 4xx permanent, 408/429/5xx and connection errors
//! transient, a 2xx without an id), the `Idempotency-Key` sent on every call
//! and the same on a retry; and, through the binaries, a refund and a booking
//! cancellation that the parties refuse for good: the order still ends.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use orders::activities::carrier::{Booking, ShipmentRequest};
use orders::activities::payment_gateway::{ChargeRequest, ChargeResult, RefundRequest, RefundResult};
use orders::activities::{Carrier, HttpCarrier, HttpPaymentGateway, PartyError, PaymentGateway};
use orders::domain::Address;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::e2e::{Stack, free_port, series};
use crate::support::*;

/// One request the stub received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) key: Option<String>,
    pub(crate) body: Value,
    pub(crate) traceparent: Option<String>,
}

#[derive(Default)]
struct Script {
    /// Answers given once each, in order, per route; then the route's default.
    next: HashMap<&'static str, VecDeque<(u16, String)>>,
    always: HashMap<&'static str, (u16, String)>,
    seen: HashMap<&'static str, Vec<Seen>>,
}

/// A scripted party: `/charges`, `/refunds`, `/shipments` and
/// `/shipments/{tracking}/cancel` answer what the test says (200 `{}` unless told).
#[derive(Clone)]
pub(crate) struct StubParty {
    script: Arc<Mutex<Script>>,
    pub(crate) url: String,
}

fn route_of(path: &str) -> &'static str {
    match path {
        "/charges" => "charges",
        "/refunds" => "refunds",
        "/shipments" => "shipments",
        p if p.starts_with("/shipments/") && p.ends_with("/cancel") => "cancel",
        _ => "unknown",
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, req: Request) -> (StatusCode, String) {
    let route = route_of(req.uri().path());
    let (key, traceparent) = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (header("idempotency-key"), header("traceparent"))
    };
    let body: Bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap_or_default();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = script.lock().unwrap();
    s.seen.entry(route).or_default().push(Seen { key, body, traceparent });
    let (status, text) = match s.next.get_mut(route).and_then(VecDeque::pop_front) {
        Some(answer) => answer,
        None => s.always.get(route).cloned().unwrap_or((200, "{}".into())),
    };
    (StatusCode::from_u16(status).unwrap(), text)
}

impl StubParty {
    pub(crate) async fn start() -> StubParty {
        let script = Arc::new(Mutex::new(Script::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(answer).with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        StubParty { script, url }
    }

    /// The next call to `route` gets this answer (after those queued before it).
    pub(crate) fn then(&self, route: &'static str, status: u16, body: &str) -> &Self {
        self.script.lock().unwrap().next.entry(route).or_default().push_back((status, body.to_owned()));
        self
    }

    /// Every call to `route` with no queued answer gets this one.
    pub(crate) fn always(&self, route: &'static str, status: u16, body: &str) -> &Self {
        self.script.lock().unwrap().always.insert(route, (status, body.to_owned()));
        self
    }

    pub(crate) fn seen(&self, route: &'static str) -> Vec<Seen> {
        self.script.lock().unwrap().seen.get(route).cloned().unwrap_or_default()
    }
}

/// An outcome in words, so that a table of cases reads as docs/api.md's promises.
fn outcome<T: std::fmt::Debug>(r: Result<T, PartyError>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(PartyError::Transient(_)) => "transient".into(),
        Err(PartyError::Permanent(_)) => "permanent".into(),
    }
}

fn charge(key: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        order_id: "o-1".into(),
        amount: Decimal::new(1234, 2),
        currency: "USD".into(),
        payment_method: "credit_card".into(),
        payment_token: "tok_visa".into(),
    }
}

#[tokio::test]
async fn the_http_gateway_maps_every_answer_and_sends_one_key_per_charge() {
    let stub = StubParty::start().await;
    let gateway = HttpPaymentGateway::new(orders::tls::client().build().unwrap(), stub.url.clone());
    let captured = |r: &str| format!("{:?}", ChargeResult::Captured { reference: r.into() });
    let declined = |r: &str| format!("{:?}", ChargeResult::Declined { reason: r.into() });
    let cases = [
        (200, r#"{"id": "ch_1"}"#, captured("ch_1")),
        (201, r#"{"id": "ch_2"}"#, captured("ch_2")),
        (200, "{}", "transient".into()),
        (200, "not json", "transient".into()),
        (402, r#"{"reason": "insufficient_funds"}"#, declined("insufficient_funds")),
        (402, "", declined("declined")),
        (400, r#"{"error": "bad token"}"#, "permanent".into()),
        (404, "", "permanent".into()),
        (422, "", "permanent".into()),
        (408, "", "transient".into()),
        (429, "", "transient".into()),
        (500, "", "transient".into()),
        (503, "", "transient".into()),
    ];
    for (status, body, _) in &cases {
        stub.then("charges", *status, body);
    }
    for (status, body, want) in &cases {
        // The same charge retried: the gateway sees the same key on every call.
        assert_eq!(&outcome(gateway.charge(&charge("charge-o-1")).await), want, "{status} {body}");
    }
    let seen = stub.seen("charges");
    assert_eq!(seen.len(), cases.len());
    assert!(seen.iter().all(|s| s.key.as_deref() == Some("charge-o-1")), "{seen:?}");
    assert_eq!(seen[0].body["amount"], "12.34", "money travels as a string");
    assert_eq!(seen[0].body["token"], "tok_visa");

    // Nobody listening: the call may not have arrived, so it is worth retrying.
    let gone =
        HttpPaymentGateway::new(orders::tls::client().build().unwrap(), format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(outcome(gone.charge(&charge("charge-o-2")).await), "transient");
    assert_eq!(outcome(gone.refund(&refund("refund-o-2")).await), "transient");
}

fn refund(key: &str) -> RefundRequest {
    RefundRequest {
        idempotency_key: key.into(),
        charge_idempotency_key: "charge-o-1".into(),
        charge_reference: Some("ch_1".into()),
        amount: Decimal::new(1234, 2),
    }
}

#[tokio::test]
async fn the_http_gateway_maps_every_refund_answer() {
    let stub = StubParty::start().await;
    let gateway = HttpPaymentGateway::new(orders::tls::client().build().unwrap(), stub.url.clone());
    let refunded = |r: &str, c: Option<&str>| {
        format!("{:?}", RefundResult::Refunded { reference: r.into(), charge_reference: c.map(str::to_owned) })
    };
    let cases = [
        (200, r#"{"id": "re_1", "charge": "ch_1"}"#, refunded("re_1", Some("ch_1"))),
        (201, r#"{"id": "re_2"}"#, refunded("re_2", None)),
        // A 2xx without an id may have moved the money: never a refusal.
        (200, "{}", "transient".into()),
        (404, "", format!("{:?}", RefundResult::NothingToRefund)),
        (400, "", "permanent".into()),
        (409, r#"{"error": "charge disputed"}"#, "permanent".into()),
        (422, "", "permanent".into()),
        (408, "", "transient".into()),
        (429, "", "transient".into()),
        (502, "", "transient".into()),
    ];
    for (status, body, _) in &cases {
        stub.then("refunds", *status, body);
    }
    for (status, body, want) in &cases {
        assert_eq!(&outcome(gateway.refund(&refund("refund-o-1")).await), want, "{status} {body}");
    }
    let seen = stub.seen("refunds");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some("refund-o-1")), "{seen:?}");
    assert_eq!(seen[0].body["charge_idempotency_key"], "charge-o-1", "finds a charge whose answer was lost");
    assert_eq!(seen[0].body["amount"], "12.34");
}

fn shipment(key: &str) -> ShipmentRequest {
    ShipmentRequest {
        idempotency_key: key.into(),
        order_id: "o-1".into(),
        address: Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            zip_code: "62701".into(),
            country: "US".into(),
        },
        parcels: vec![("WIDGET-1".into(), 2)],
    }
}

#[tokio::test]
async fn the_http_carrier_maps_every_answer_and_sends_its_keys() {
    let stub = StubParty::start().await;
    let carrier = HttpCarrier::new(orders::tls::client().build().unwrap(), stub.url.clone());
    let booked = format!("{:?}", Booking { carrier: "acme".into(), tracking_number: "T1".into() });
    let cases = [
        (201, r#"{"carrier": "acme", "tracking_number": "T1"}"#, booked),
        (200, "{}", "transient".into()),
        (400, "", "permanent".into()),
        (422, r#"{"error": "address not served"}"#, "permanent".into()),
        (408, "", "transient".into()),
        (429, "", "transient".into()),
        (503, "", "transient".into()),
    ];
    for (status, body, _) in &cases {
        stub.then("shipments", *status, body);
    }
    for (status, body, want) in &cases {
        assert_eq!(&outcome(carrier.book(&shipment("ship-o-1")).await), want, "{status} {body}");
    }
    let seen = stub.seen("shipments");
    assert!(seen.iter().all(|s| s.key.as_deref() == Some("ship-o-1")), "{seen:?}");
    assert_eq!(seen[0].body["address"]["zip_code"], "62701");
    assert_eq!(seen[0].body["parcels"], json!([["WIDGET-1", 2]]));

    // Cancelling: 2xx or 404 (nothing booked) is done; other 4xx refuse; the rest is retried.
    let cases = [(200, "()"), (204, "()"), (404, "()"), (409, "permanent"), (502, "transient"), (429, "transient")];
    for (status, _) in &cases {
        stub.then("cancel", *status, "");
    }
    for (status, want) in &cases {
        assert_eq!(outcome(carrier.cancel("ship-cancel-o-1", "T1").await), *want, "{status}");
    }
    assert!(stub.seen("cancel").iter().all(|s| s.key.as_deref() == Some("ship-cancel-o-1")));

    let gone = HttpCarrier::new(orders::tls::client().build().unwrap(), format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(outcome(gone.book(&shipment("ship-o-2")).await), "transient");
    assert_eq!(outcome(gone.cancel("ship-cancel-o-2", "T2").await), "transient");
}

async fn stock(stack: &Stack, sku: &str) -> (i32, i32) {
    sqlx::query_as("SELECT available, reserved FROM inventory WHERE sku = $1")
        .bind(sku)
        .fetch_one(&stack.db)
        .await
        .unwrap()
}

/// A cancel after booking, with a gateway that refuses the refund and a carrier
/// that refuses the cancellation for good: the order still ends `cancelled`, its
/// stock is released, the cancel is answered, the refusals are on the order and
/// its timeline, each party was asked once, and the alert's metric moved.
#[tokio::test]
async fn refused_compensations_are_recorded_and_the_order_still_ends() {
    let (gateway, carrier) = (StubParty::start().await, StubParty::start().await);
    gateway.always("charges", 201, r#"{"id": "ch_live_1"}"#);
    gateway.always("refunds", 422, r#"{"error": "charge already disputed"}"#);
    carrier.always("shipments", 201, r#"{"carrier": "acme", "tracking_number": "ACME123"}"#);
    carrier.always("cancel", 409, r#"{"error": "parcel already sorted"}"#);
    let stack = Stack::with(&[
        ("ORDERS_PAYMENT_GATEWAY", "http".to_owned()),
        ("ORDERS_PAYMENT_GATEWAY_URL", gateway.url.clone()),
        ("ORDERS_CARRIER", "http".to_owned()),
        ("ORDERS_CARRIER_URL", carrier.url.clone()),
        // Tracing on (to a collector that is not there: spans are dropped), so that
        // calls to the parties carry their client span's traceparent.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{}", free_port())),
    ])
    .await;
    let (_api, _worker) = (stack.start_api().await, stack.start_worker().await);
    let token = stack.token_as("refused", "customer");
    let before = stock(&stack, WIDGET.0).await;

    let placed: Value = stack
        .http
        .post(format!("{}/orders", stack.api))
        .bearer_auth(&token)
        .json(&widgets(2))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = placed["id"].as_str().unwrap();
    stack.wait_for(&token, id, &["shipped"]).await;
    let cancel = stack
        .http
        .post(format!("{}/orders/{id}/cancel", stack.api))
        .bearer_auth(&token)
        .json(&json!({"reason": "changed my mind"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert!([200, 202].contains(&cancel.status().as_u16()), "the cancel is answered: {}", cancel.status());

    let order = stack.wait_for(&token, id, &["cancelled"]).await;
    assert_eq!(order["reason"], "cancel_requested", "the decision stands: {order:#}");
    assert_eq!(order["payment"]["status"], "refund_refused");
    assert_eq!(order["payment"]["provider_reference"], "ch_live_1");
    assert!(order["shipment"]["cancel_refused"].as_str().is_some_and(|r| r.contains("already sorted")), "{order:#}");
    assert!(order["shipment"]["cancelled_at"].is_null());
    let timeline = timeline(&order);
    assert!(timeline.contains(&"refund_refused") && timeline.contains(&"cancellation_refused"), "{timeline:?}");
    assert_eq!(stock(&stack, WIDGET.0).await, before, "the reserved stock is back");
    // Refused for good: asked once, never again (transient answers are what is retried).
    assert_eq!(gateway.seen("refunds").len(), 1);
    assert_eq!(carrier.seen("cancel").len(), 1);
    assert_eq!(gateway.seen("charges").len(), 1);
    // Each call carries the W3C traceparent of its client span, so a tracing party joins the trace.
    for seen in [&gateway.seen("charges")[0], &gateway.seen("refunds")[0], &carrier.seen("shipments")[0]] {
        let tp = seen.traceparent.as_deref().unwrap_or_default();
        let parts: Vec<&str> = tp.split('-').collect();
        assert!(parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16, "traceparent {tp:?}");
    }

    let metrics = stack.http.get(&stack.worker_metrics).send().await.unwrap().text().await.unwrap();
    assert_eq!(series(&metrics, r#"orders_compensations_refused_total{step="refund"}"#), 1.0, "{metrics}");
    assert_eq!(series(&metrics, r#"orders_compensations_refused_total{step="cancel_shipment"}"#), 1.0);
    assert_eq!(series(&metrics, r#"orders_finished_total{status="cancelled"}"#), 1.0);
}
