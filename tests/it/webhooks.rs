//! The outbox leaves as signed storefront webhooks: one per timeline event, in
//! order, retried with backoff while the storefront is down, never twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use orders::activities::notifier::signature;
use orders::config::Secret;
use serde_json::Value;

use crate::support::*;

const SECRET: &str = "whsec-test-0123456789abcdef0123456789abcdef";

/// A storefront endpoint that records what it receives, failing the first `fail_first` calls.
#[derive(Clone, Default)]
struct Storefront {
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: Arc<AtomicU32>,
}

impl Storefront {
    async fn start(fail_first: u32) -> (Storefront, String) {
        let sf = Storefront { fail_first: Arc::new(AtomicU32::new(fail_first)), ..Default::default() };
        let state = sf.clone();
        let app = axum::Router::new().route(
            "/hooks",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    if state.fail_first.load(Ordering::SeqCst) > 0 {
                        state.fail_first.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    state.received.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (sf, url)
    }

    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.received.lock().unwrap().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received.lock().unwrap().clone()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("missing {name}"))
}

async fn deliver_an_order(fail_first: u32) -> (TestApp, String, Vec<(HeaderMap, Bytes)>) {
    let (storefront, url) = Storefront::start(fail_first).await;
    let app = spawn_app_with_worker_and(&[
        ("ORDERS_WEBHOOK_URL", url.as_str()),
        ("ORDERS_WEBHOOK_SECRET", SECRET),
        FAST_CARRIER[0],
        FAST_CARRIER[1],
    ])
    .await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(1)).await;
    app.wait_for_status(&token, &id, "delivered").await;
    let received = storefront.wait_for(6).await;
    // Nothing more arrives later (no duplicates).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(storefront.received.lock().unwrap().len(), received.len());
    (app, id, received)
}

#[tokio::test]
async fn every_event_is_posted_once_in_order_and_signed() {
    let (app, id, received) = deliver_an_order(0).await;

    let mut types = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (headers, body) in &received {
        let ts: i64 = header(headers, "webhook-timestamp").parse().unwrap();
        let expected = signature(&Secret::new(SECRET), ts, body);
        assert_eq!(header(headers, "webhook-signature"), expected, "signed over timestamp and body");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["order_id"], id.as_str());
        assert_eq!(header(headers, "webhook-id"), event["id"].to_string());
        assert!(ids.insert(event["id"].as_i64().unwrap()), "no event twice");
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        types,
        ["order.pending", "order.reserved", "order.paid", "order.shipped", "order.in_transit", "order.delivered"]
    );
    let delivered = app
        .count(
            "SELECT count(*) FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id \
                    WHERE n.order_id = $1 AND d.status = 'delivered'",
            &id,
        )
        .await;
    assert_eq!(delivered, 12, "6 events × (webhook + email)");
}

#[tokio::test]
async fn a_storefront_that_is_down_is_retried_until_it_answers() {
    let (app, id, received) = deliver_an_order(3).await;

    assert_eq!(received.len(), 6);
    let attempts = app
        .count(
            "SELECT max(d.attempts)::bigint FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id \
             WHERE n.order_id = $1 AND d.channel = 'webhook'",
            &id,
        )
        .await;
    assert!(attempts >= 2, "failures were recorded and retried");
}
