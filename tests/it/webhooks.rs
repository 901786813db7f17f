//! The outbox leaves as signed storefront webhooks: one per timeline event, in
//! order, retried with backoff while the storefront is down, never twice.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::support::*;

/// Standard Webhooks secrets (`whsec_` + base64 of the key), as a storefront's
/// receiver library is configured with them.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEXT_SECRET: &str = "whsec_dGhlIG5leHQga2V5IGFmdGVyIGEgcm90YXRpb24h";

/// Verifies every delivery with the Standard Webhooks reference library (PyPI
/// `standardwebhooks`, in the project's .venv) holding `secret`: what a
/// storefront built on it accepts. Returns the library's verdict.
fn reference_verifies(secret: &str, received: &[(HeaderMap, Bytes)]) -> Result<(), String> {
    let deliveries: Vec<Value> = received
        .iter()
        .map(|(headers, body)| {
            let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            json!({
                "headers": {"webhook-id": h("webhook-id"), "webhook-timestamp": h("webhook-timestamp"),
                            "webhook-signature": h("webhook-signature")},
                "body": String::from_utf8_lossy(body),
            })
        })
        .collect();
    let file = std::env::temp_dir().join(format!("deliveries-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, serde_json::to_vec(&deliveries).unwrap()).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/.venv/bin/python"))
        .args([&format!("{root}/tests/standard_webhooks_verify.py"), secret, &file.display().to_string()])
        .output()
        .expect("the .venv's python runs (scripts/test installs it)");
    let _ = std::fs::remove_file(&file);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim() == deliveries.len().to_string() { Ok(()) } else { Err(said) }
}

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

async fn deliver_an_order(fail_first: u32, secrets: &str) -> (TestApp, String, Vec<(HeaderMap, Bytes)>) {
    let (storefront, url) = Storefront::start(fail_first).await;
    let app = spawn_app_with_worker_and(&[
        ("ORDERS_WEBHOOK_URL", url.as_str()),
        ("ORDERS_WEBHOOK_SECRET", secrets),
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
    let (app, id, received) = deliver_an_order(0, SECRET).await;
    reference_verifies(SECRET, &received).expect("the reference library accepts every delivery");
    assert!(reference_verifies(NEXT_SECRET, &received).is_err(), "and refuses them under another key");

    let mut types = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (headers, body) in &received {
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
    // The OpenAPI document's `webhooks` section describes what was sent: each type
    // is listed, and the body has exactly the fields of its schema.
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
    let schemas = &doc["components"]["schemas"];
    for (_, body) in &received {
        let event: Value = serde_json::from_slice(body).unwrap();
        assert!(doc["webhooks"][event["type"].as_str().unwrap()]["post"].is_object(), "{} documented", event["type"]);
        assert_eq!(keys(&event), keys(&schemas["WebhookEvent"]["properties"]));
        assert_eq!(keys(&event["data"]), keys(&schemas["WebhookEventData"]["properties"]));
    }
    // Each event delivered once on the webhook; no mail server, so the email
    // channel is not configured and nothing of it is tracked.
    for (channel, rows) in [("webhook", 6), ("email", 0)] {
        let sql = format!(
            "SELECT count(*) FROM event_deliveries d JOIN order_events e ON e.id = d.event_id \
             WHERE e.order_id = $1 AND d.status = 'delivered' AND d.channel = '{channel}'"
        );
        assert_eq!(app.count(&sql, &id).await, rows, "{channel} deliveries");
    }
}

#[tokio::test]
async fn a_storefront_that_is_down_is_retried_until_it_answers() {
    let (app, id, received) = deliver_an_order(3, SECRET).await;

    assert_eq!(received.len(), 6);
    let attempts = app
        .count(
            "SELECT max(d.attempts)::bigint FROM event_deliveries d JOIN order_events e ON e.id = d.event_id \
             WHERE e.order_id = $1 AND d.channel = 'webhook'",
            &id,
        )
        .await;
    assert!(attempts >= 2, "failures were recorded and retried");
}

/// During a key rotation every delivery carries a signature per key, so a
/// receiver still on the old key and one already on the new accept it.
#[tokio::test]
async fn during_a_key_rotation_receivers_on_either_key_accept_every_delivery() {
    let (_, _, received) = deliver_an_order(0, &format!("{SECRET} {NEXT_SECRET}")).await;
    assert!(received.iter().all(|(h, _)| header(h, "webhook-signature").split(' ').count() == 2));
    reference_verifies(SECRET, &received).expect("the old key verifies");
    reference_verifies(NEXT_SECRET, &received).expect("the new key verifies");
}
