//! `GET /orders/{id}/events`: live status changes over SSE, resumable, ending at a terminal status.

use std::time::Duration;

use orders::http::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// (id, event name) of each SSE event in a finished stream.
fn parse_sse(body: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()));
        if let (Some(id), Some(event)) = (field("id:"), field("event:")) {
            out.push((id.parse().expect("numeric id"), event));
        }
    }
    out
}

async fn read_events(app: &TestApp, token: &str, id: &str, last_event_id: Option<i64>) -> (StatusCode, String) {
    let mut req = app.http.get(format!("{}/orders/{id}/events", app.address)).bearer_auth(token);
    if let Some(last) = last_event_id {
        req = req.header("Last-Event-ID", last.to_string());
    }
    let resp = tokio::time::timeout(Duration::from_secs(30), req.send()).await.expect("headers in time").unwrap();
    let status = resp.status();
    let body = tokio::time::timeout(Duration::from_secs(30), resp.text()).await.expect("stream ends").unwrap();
    (status, body)
}

/// Without NOTIFY the streams would wait this long for each event: far beyond the
/// test's own timeout, so only live delivery passes.
const NO_FALLBACK: (&str, &str) = ("ORDERS_EVENTS_FALLBACK_POLL", "1h");

/// Opens the stream and reads it until `event` has arrived; returns the response
/// (to read on) and what was read so far. The caller then acts, so what follows
/// can only arrive live.
async fn subscribed_until(app: &TestApp, token: &str, id: &str, event: &str) -> (reqwest::Response, String) {
    let req = app.http.get(format!("{}/orders/{id}/events", app.address)).bearer_auth(token);
    let mut resp = tokio::time::timeout(Duration::from_secs(30), req.send()).await.expect("headers in time").unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = String::new();
    while !body.contains(&format!("event: {event}\n")) {
        let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await.expect("an event in time");
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream is open")));
    }
    (resp, body)
}

/// Reads the rest of a stream until it ends.
async fn rest_of(resp: reqwest::Response, mut body: String) -> String {
    body.push_str(&tokio::time::timeout(Duration::from_secs(30), resp.text()).await.expect("the stream ends").unwrap());
    body
}

async fn approve(app: &TestApp, id: &str) {
    let resp = app
        .http
        .post(format!("{}/orders/{id}/review", app.address))
        .bearer_auth(app.token("ops", Role::Admin))
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_subscriber_sees_every_status_live_and_the_stream_ends_at_delivery() {
    let app = spawn_app_with_worker_and(&[
        ("ORDERS_REVIEW_THRESHOLD", "100.00"),
        FAST_CARRIER[0],
        FAST_CARRIER[1],
        NO_FALLBACK,
    ])
    .await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &order_body(json!([{"sku": GADGET.0, "quantity": 3}]))).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    // Subscribe while the order waits, then let it continue: the events arrive live.
    let (stream, read) = subscribed_until(&app, &token, &id, "awaiting_review").await;
    approve(&app, &id).await;
    let body = rest_of(stream, read).await;

    let events = parse_sse(&body);
    let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(names, ["pending", "reserved", "awaiting_review", "paid", "shipped", "in_transit", "delivered"]);
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");

    // Resuming after `paid` replays only what came later.
    let paid = events.iter().find(|(_, e)| e == "paid").unwrap().0;
    let (_, body) = read_events(&app, &token, &id, Some(paid)).await;
    let later: Vec<String> = parse_sse(&body).into_iter().map(|(_, e)| e).collect();
    assert_eq!(later, ["shipped", "in_transit", "delivered"]);

    let data: Value =
        serde_json::from_str(body.lines().find_map(|l| l.strip_prefix("data:")).expect("a data line").trim()).unwrap();
    assert_eq!(data["status"], "shipped");
}

/// Two API replicas on one database: a subscriber on one sees, live, the events
/// of a decision taken through the other (and of the worker's steps after it).
#[tokio::test]
async fn a_subscriber_on_one_replica_sees_what_another_replica_caused() {
    let database_url = fresh_database().await;
    let settings = [("ORDERS_REVIEW_THRESHOLD", "100.00"), FAST_CARRIER[0], FAST_CARRIER[1], NO_FALLBACK];
    let mut b = spawn_app_on(&database_url, &settings).await;
    b.start_worker();
    let a = spawn_app_on(&database_url, &settings).await;
    let token = b.customer("alice");
    let id = b.place_order(&token, &order_body(json!([{"sku": GADGET.0, "quantity": 3}]))).await;
    b.wait_for_status(&token, &id, "awaiting_review").await;

    let (stream, read) = subscribed_until(&a, &token, &id, "awaiting_review").await;
    approve(&b, &id).await;
    let body = rest_of(stream, read).await;
    let names: Vec<String> = parse_sse(&body).into_iter().map(|(_, e)| e).collect();
    assert_eq!(names, ["pending", "reserved", "awaiting_review", "paid", "shipped", "in_transit", "delivered"]);
}

#[tokio::test]
async fn only_the_owner_and_admins_may_subscribe() {
    let app = spawn_app().await;
    let id = app.place_order(&app.customer("alice"), &widgets(1)).await;
    let (status, _) = read_events(&app, &app.customer("mallory"), &id, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
