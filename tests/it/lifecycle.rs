//! Acting on running orders: manual review, cancellation at each stage, carrier
//! events and deadlines, address amendments, and cancellation from Temporal.
//! Each test asserts the end state: status and timeline, stock, money, notifications.

use orders::db::payments::{self, Kind};
use orders::domain::OrderId;
use orders::domain::{OrderStatus, ReviewDecision, ShipmentEvent, ShipmentEventKind};
use orders::http::auth::Role;
use orders::workflows::{OrderOutcome, OrderWorkflow};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use temporalio_client::{WorkflowCancelOptions, WorkflowSignalOptions};

use crate::support::*;

/// Orders of 5 gadgets (247.50) or more are reviewed; 1 widget (19.99) is not.
const REVIEW_FROM_100: (&str, &str) = ("ORDERS_REVIEW_THRESHOLD", "100.00");

fn gadgets(n: u32) -> Value {
    order_body(json!([{"sku": GADGET.0, "quantity": n}]))
}

impl TestApp {
    async fn act(&self, token: &str, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    async fn cancel(&self, token: &str, id: &str) -> (StatusCode, Value) {
        self.act(token, reqwest::Method::POST, &format!("/orders/{id}/cancel"), json!({"reason": "changed my mind"}))
            .await
    }

    async fn review(&self, id: &str, decision: &str) -> (StatusCode, Value) {
        let admin = self.token("ops", Role::Admin);
        let body = json!({"decision": decision, "note": "checked by ops"});
        self.act(&admin, reqwest::Method::POST, &format!("/orders/{id}/review"), body).await
    }

    async fn carrier_event(&self, id: &str, event: &str, at: &str) -> (StatusCode, Value) {
        let carrier = self.token("ups", Role::Carrier);
        let body = json!({"event": event, "at": at, "detail": format!("{event} reported")});
        self.act(&carrier, reqwest::Method::POST, &format!("/orders/{id}/shipment-events"), body).await
    }
}

#[tokio::test]
async fn a_large_order_waits_for_review_and_continues_when_approved() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100, FAST_CARRIER[0], FAST_CARRIER[1]]).await;
    let token = app.customer("alice");
    let small = app.place_order(&token, &widgets(1)).await;
    let large = app.place_order(&token, &gadgets(3)).await;

    app.wait_for_status(&token, &large, "awaiting_review").await;
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3 - 3, 3), "held during review");
    assert!(app.payments(&large).await.is_empty(), "not charged before the decision");
    app.wait_for_status(&token, &small, "delivered").await;

    let (status, _) = app.review(&large, "approve").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let order = app.wait_for_status(&token, &large, "delivered").await;
    assert_eq!(
        timeline(&order),
        ["pending", "reserved", "awaiting_review", "paid", "shipped", "in_transit", "delivered"]
    );
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3 - 3, 0));
    capture(&app, &large, "order-review-approved").await;

    // The same decision again (a retry after a lost answer) is a replay; the
    // other one is refused, as is a decision on an order never held for review.
    let (status, order) = app.review(&large, "approve").await;
    assert_eq!((status, &order["status"]), (StatusCode::ACCEPTED, &json!("delivered")));
    let (status, p) = app.review(&large, "reject").await;
    assert_eq!((status, &p["detail"]), (StatusCode::CONFLICT, &json!("the order was already approved")));
    let (status, _) = app.review(&small, "approve").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let order: Value = app.get_order(&token, &large).await.json().await.unwrap();
    assert_eq!(timeline(&order).len(), 7, "the replay changed nothing");
}

#[tokio::test]
async fn a_rejected_review_cancels_and_releases_without_charging() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(3)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    // Only admins decide.
    let (status, _) =
        app.act(&token, reqwest::Method::POST, &format!("/orders/{id}/review"), json!({"decision": "approve"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.review(&id, "maybe").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.review(&id, "reject").await;

    let order = app.wait_for_status(&token, &id, "cancelled").await;
    assert_eq!(order["reason"], "review_rejected");
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    assert!(app.payments(&id).await.is_empty());
    assert_eq!(app.notifications(&id).await.last().map(String::as_str), Some("order.cancelled"));
    capture(&app, &id, "order-review-rejected").await;
}

#[tokio::test]
async fn no_decision_before_the_deadline_cancels_with_review_timeout() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100, ("ORDERS_REVIEW_DEADLINE", "1s")]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(3)).await;

    let order = app.wait_for_status(&token, &id, "cancelled").await;

    assert_eq!(order["reason"], "review_timeout");
    assert_eq!(timeline(&order), ["pending", "reserved", "awaiting_review", "cancelled"]);
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    capture(&app, &id, "order-review-timeout").await;
}

/// A worker killed after the gateway's answer was recorded but before the charge
/// step's result reached the workflow's history leaves a charge the workflow never
/// heard of (the faults harness found this). Compensation reads the records: the
/// order is refunded all the same.
#[tokio::test]
async fn a_charge_the_workflow_never_heard_of_is_refunded_on_cancel() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;
    // What the lost step left behind: the charge, captured and recorded.
    let order_id = OrderId(id.parse().unwrap());
    let total: Decimal = sqlx::query_scalar("SELECT total FROM orders WHERE id = $1")
        .bind(order_id.0)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    payments::begin(&app.pool, order_id, Kind::Charge, total).await.unwrap();
    payments::succeed(&app.pool, order_id, Kind::Charge, "sim_ch_lost").await.unwrap();

    let (status, order) = app.cancel(&token, &id).await;

    assert_eq!((status, &order["status"]), (StatusCode::OK, &json!("cancelled")), "{order}");
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(
        app.payments(&id).await,
        [("charge".to_owned(), "succeeded".to_owned()), ("refund".to_owned(), "succeeded".to_owned())]
    );
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
}

#[tokio::test]
async fn cancelling_during_review_answers_with_the_cancelled_order() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    // Another customer cannot even see it.
    let (status, _) = app.cancel(&app.customer("mallory"), &id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        app.act(&token, reqwest::Method::POST, &format!("/orders/{id}/cancel"), json!({"reason": ""})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, order) = app.cancel(&token, &id).await;

    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "cancelled", "the answer comes after compensation");
    assert_eq!(order["reason"], "cancel_requested");
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    assert!(app.payments(&id).await.is_empty());
    // Cancelling again is not an error.
    let (status, again) = app.cancel(&token, &id).await;
    assert_eq!((status, &again["status"]), (StatusCode::OK, &json!("cancelled")));
    capture(&app, &id, "order-cancelled-in-review").await;
}

/// A cancel recorded before the charge stops the order there: the gateway is
/// never called, so the customer is never charged and refunded. With no worker
/// running the cancel cannot complete within the wait: it is accepted (202) and
/// stands, and the order ends cancelled once a worker runs.
#[tokio::test]
async fn a_cancel_before_the_charge_stops_the_order_without_charging() {
    let mut app = spawn_app_with(&[("ORDERS_CANCEL_WAIT", "1s")]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(2)).await;

    let (status, order) = app.cancel(&token, &id).await;
    assert_eq!((status, &order["status"]), (StatusCode::ACCEPTED, &json!("pending")), "{order}");
    app.start_worker();

    let order = app.wait_for_status(&token, &id, "cancelled").await;
    assert_eq!(order["reason"], "cancel_requested");
    assert_eq!(timeline(&order), ["pending", "cancelled"]);
    assert!(app.payments(&id).await.is_empty(), "no charge was even attempted");
    assert_eq!(app.count("SELECT count(*) FROM party_calls WHERE order_id = $1", &id).await, 0);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    let (status, again) = app.cancel(&token, &id).await;
    assert_eq!((status, &again["status"]), (StatusCode::OK, &json!("cancelled")), "the same cancel again");
    capture(&app, &id, "order-cancelled-before-charge").await;
}

/// An API that cannot reach Temporal still decides: the cancel is recorded and
/// accepted (202, never 503), and carried out once the workflow is told (by the
/// recovery loop of an API that can reach it).
#[tokio::test]
async fn a_cancel_recorded_while_temporal_is_down_is_carried_out_later() {
    let database_url = fresh_database().await;
    let mut online = spawn_app_on(&database_url, &[REVIEW_FROM_100]).await;
    online.start_worker();
    let token = online.customer("alice");
    let id = online.place_order(&token, &gadgets(2)).await;
    online.wait_for_status(&token, &id, "awaiting_review").await;

    let offline =
        spawn_app_on(&database_url, &[("TEMPORAL_ADDRESS", "127.0.0.1:1"), ("ORDERS_CANCEL_WAIT", "1s")]).await;
    let (status, order) = offline.cancel(&token, &id).await;
    assert_eq!((status, &order["status"]), (StatusCode::ACCEPTED, &json!("awaiting_review")), "{order}");

    let order = online.wait_for_status(&token, &id, "cancelled").await;
    assert_eq!(order["reason"], "cancel_requested");
    assert!(online.payments(&id).await.is_empty());
    // (The second API seeded the catalog again, so stock is checked by the reservation.)
    let held = "SELECT count(*) FROM inventory_reservations WHERE order_id = $1 AND state = 'held'";
    assert_eq!(online.count(held, &id).await, 0);
    let signalled = "SELECT count(*) FROM orders WHERE id = $1 AND decisions_signalled = decisions";
    assert_eq!(online.count(signalled, &id).await, 1);
}

/// Two admins deciding at once are answered one after the other: the first
/// decision counts, the same one again is 202 and the other one 409, never a 500.
#[tokio::test]
async fn admins_deciding_at_once_get_202_or_409() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    let decisions = (0..12).map(|i| app.review(&id, if i % 2 == 0 { "approve" } else { "reject" }));
    let answers: Vec<(StatusCode, Value)> = futures::future::join_all(decisions).await;

    let approved = app.count("SELECT count(*) FROM order_reviews WHERE order_id = $1 AND approve", &id).await == 1;
    let ended = if approved { "approve" } else { "reject" };
    app.wait_for_status(&token, &id, if approved { "shipped" } else { "cancelled" }).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        let sent = if i % 2 == 0 { "approve" } else { "reject" };
        let expected = if sent == ended { StatusCode::ACCEPTED } else { StatusCode::CONFLICT };
        assert_eq!(*status, expected, "{sent}: {body}");
    }
}

/// Whichever of a cancel and the carrier's pickup is recorded first wins: a
/// cancel after pickup is refused; a pickup after a cancel is refused too, so
/// the carrier knows the order was cancelled (and refunded, and its booking
/// cancelled). The workflow ends as the records say.
#[tokio::test]
async fn the_first_of_a_cancel_and_the_pickup_wins() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let picked = app.place_order(&token, &widgets(1)).await;
    let cancelled = app.place_order(&token, &widgets(1)).await;
    app.wait_for_status(&token, &picked, "shipped").await;
    app.wait_for_status(&token, &cancelled, "shipped").await;

    assert_eq!(app.carrier_event(&picked, "in_transit", "2026-11-25T10:00:00Z").await.0, StatusCode::ACCEPTED);
    let (status, problem) = app.cancel(&token, &picked).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    let (status, order) = app.cancel(&token, &cancelled).await;
    assert_eq!((status, &order["status"]), (StatusCode::OK, &json!("cancelled")), "{order}");
    let (status, problem) = app.carrier_event(&cancelled, "in_transit", "2026-11-25T10:00:00Z").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("cancel_requested"), "{problem}");
    assert_eq!(order["payment"]["status"], "refunded");

    app.carrier_event(&picked, "delivered", "2026-11-25T12:00:00Z").await;
    app.wait_for_status(&token, &picked, "delivered").await;
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    for (id, status) in [(&picked, OrderStatus::Delivered), (&cancelled, OrderStatus::Cancelled)] {
        let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
        let outcome: OrderOutcome = handle.get_result(Default::default()).await.unwrap();
        assert_eq!(outcome.status, status, "the workflow agrees with the read model");
    }
}

/// During a rolling upgrade an API of the version before still sends its own
/// signals (`review` after recording the decision, `shipment_event` without
/// recording anything) to workflows this worker started: they follow them all
/// the same, the carrier's events recorded as this API records them.
#[tokio::test]
async fn signals_of_an_api_of_the_version_before_are_followed() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let (approved, rejected) = (app.place_order(&token, &gadgets(2)).await, app.place_order(&token, &gadgets(2)).await);
    app.wait_for_status(&token, &approved, "awaiting_review").await;
    app.wait_for_status(&token, &rejected, "awaiting_review").await;
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let signal = WorkflowSignalOptions::default;
    for (id, approve) in [(&approved, true), (&rejected, false)] {
        sqlx::query("INSERT INTO order_reviews (order_id, approve, decided_by) VALUES ($1::uuid, $2, 'ops')")
            .bind(id)
            .bind(approve)
            .execute(&app.pool)
            .await
            .unwrap();
        let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
        handle.signal(OrderWorkflow::review, ReviewDecision { approve, note: None }, signal()).await.unwrap();
    }
    let order = app.wait_for_status(&token, &rejected, "cancelled").await;
    assert_eq!(order["reason"], "review_rejected");
    app.wait_for_status(&token, &approved, "shipped").await;

    let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{approved}"));
    for event in [ShipmentEventKind::InTransit, ShipmentEventKind::Delivered] {
        let report = ShipmentEvent { event, at: "2026-11-25T10:00:00Z".into(), detail: None };
        handle.signal(OrderWorkflow::shipment_event, report, signal()).await.unwrap();
    }
    let order = app.wait_for_status(&token, &approved, "delivered").await;
    assert_eq!(
        timeline(&order),
        ["pending", "reserved", "awaiting_review", "paid", "shipped", "in_transit", "delivered"]
    );
    let outcome: OrderOutcome = handle.get_result(Default::default()).await.unwrap();
    assert_eq!(outcome.status, OrderStatus::Delivered);
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3 - 2, 0), "the delivered gadgets left; the rejected ones are back");
}

#[tokio::test]
async fn cancelling_a_booked_shipment_refunds_releases_and_cancels_the_booking() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(2)).await;
    app.wait_for_status(&token, &id, "shipped").await;

    let (status, order) = app.cancel(&app.token("ops", Role::Admin), &id).await;

    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["payment"]["status"], "refunded");
    assert!(order["shipment"]["cancelled_at"].is_string(), "{order:#}");
    assert_eq!(
        app.payments(&id).await,
        [("charge".to_owned(), "succeeded".to_owned()), ("refund".to_owned(), "succeeded".to_owned())]
    );
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    capture(&app, &id, "order-cancelled-after-booking").await;
}

#[tokio::test]
async fn carrier_events_drive_the_order_to_delivered_and_late_ones_change_nothing() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(2)).await;
    app.wait_for_status(&token, &id, "shipped").await;

    assert_eq!(app.carrier_event(&id, "in_transit", "2026-11-25T10:00:00Z").await.0, StatusCode::ACCEPTED);
    let order = app.wait_for_status(&token, &id, "in_transit").await;
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 2, 0), "the carrier has it: stock consumed");
    // The workflow is not told of the pickup, and that is no disagreement.
    let (_, view) = app.get_json(&app.token("ops", Role::Admin), &format!("/orders/{id}/workflow")).await;
    assert_eq!((&view["live"]["status"], &view["live"]["step"]), (&json!("shipped"), &json!("following_carrier")));
    assert_eq!(view["consistency"], "agrees", "{view:#}");
    // Once the carrier has it, it cannot be cancelled.
    let (status, problem) = app.cancel(&token, &id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(order["status"], "in_transit");

    app.carrier_event(&id, "exception", "2026-11-25T11:00:00Z").await;
    app.carrier_event(&id, "exception", "2026-11-25T11:00:00Z").await; // a duplicate
    app.carrier_event(&id, "delivered", "2026-11-25T12:00:00Z").await;
    let order = app.wait_for_status(&token, &id, "delivered").await;
    let (status, _) = app.carrier_event(&id, "in_transit", "2026-11-25T13:00:00Z").await;
    assert_eq!(status, StatusCode::ACCEPTED, "late events are accepted");

    // Only the delivery woke the workflow: the pickup and the exception change
    // nothing it does, so they are the read model's alone.
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
    assert_eq!(handle.get_result(Default::default()).await.unwrap().status, OrderStatus::Delivered);
    let json = handle.fetch_history(Default::default()).to_json().await.unwrap();
    let history: Value = serde_json::from_slice(&json).unwrap();
    const SIGNALED: i64 = 26; // temporal.api.enums.v1.EventType
    let signals = history["events"].as_array().unwrap().iter().filter(|e| e["event_type"] == SIGNALED).count();
    assert_eq!(signals, 1, "one `decided` signal, for the delivery");

    let order_now: Value = app.get_order(&token, &id).await.json().await.unwrap();
    assert_eq!(order_now["status"], "delivered");
    assert_eq!(timeline(&order), ["pending", "reserved", "paid", "shipped", "in_transit", "exception", "delivered"]);
    assert_eq!(app.notifications(&id).await.iter().filter(|k| *k == "order.exception").count(), 1);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 2, 0));
    let (status, _) = app.cancel(&token, &id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    capture(&app, &id, "order-carrier-events").await;
}

#[tokio::test]
async fn carrier_events_are_checked() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    assert_eq!(app.carrier_event(&id, "in_transit", "2026-11-25T10:00:00Z").await.0, StatusCode::CONFLICT);
    let (status, p) = app.carrier_event(&id, "teleported", "yesterday").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let body = json!({"event": "delivered", "at": "2026-11-25T10:00:00Z"});
    let (status, _) = app.act(&token, reqwest::Method::POST, &format!("/orders/{id}/shipment-events"), body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "customers are not carriers");
}

#[tokio::test]
async fn no_delivery_before_the_deadline_ends_delivery_overdue() {
    let app = spawn_app_with_worker_and(&[("ORDERS_DELIVERY_DEADLINE", "1s")]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(1)).await;

    let order = app.wait_for_status(&token, &id, "delivery_overdue").await;

    assert_eq!(timeline(&order), ["pending", "reserved", "paid", "shipped", "delivery_overdue"]);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 1, 0));
    assert_eq!(app.notifications(&id).await.last().map(String::as_str), Some("order.delivery_overdue"));
    capture(&app, &id, "order-delivery-overdue").await;
}

#[tokio::test]
async fn the_carrier_gets_the_amended_address() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;
    let path = format!("/orders/{id}/shipping-address");

    let bad = json!({"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "x", "country": "US"});
    let (status, p) = app.act(&token, reqwest::Method::PATCH, &path, bad).await;
    assert_eq!((status, &p["errors"][0]["pointer"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("/zip_code")));
    // ZIP 00000 is one the simulated carrier does not serve: if it gets the new
    // address, the booking fails (and is compensated).
    let unserved =
        json!({"street": "9 Far Rd", "city": "Nowhere", "state": "NV", "zip_code": "00000", "country": "US"});
    let (status, order) = app.act(&token, reqwest::Method::PATCH, &path, unserved.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(order["shipping_address"]["zip_code"], "00000");
    app.review(&id, "approve").await;

    let order = app.wait_for_status(&token, &id, "failed").await;
    assert_eq!(order["reason"], "shipment_failed");
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    let (status, _) = app.act(&token, reqwest::Method::PATCH, &path, unserved).await;
    assert_eq!(status, StatusCode::CONFLICT);
    capture(&app, &id, "order-address-amended").await;
}

#[tokio::test]
async fn cancelling_the_workflow_in_temporal_still_restores_stock() {
    let app = spawn_app_with_worker_and(&[REVIEW_FROM_100]).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &gadgets(2)).await;
    app.wait_for_status(&token, &id, "awaiting_review").await;

    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
    handle.cancel(WorkflowCancelOptions::builder().reason("operator").build()).await.unwrap();

    let order = app.wait_for_status(&token, &id, "cancelled").await;
    assert_eq!(order["reason"], "workflow_cancelled");
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    assert!(handle.get_result(Default::default()).await.is_err(), "the workflow itself ends cancelled");
    capture(&app, &id, "order-workflow-cancelled").await;
}

/// Once the carrier has the parcel a cancellation in Temporal is refused (the
/// table admits none there): nothing is undone, and the workflow goes on
/// following the carrier, so the order still reaches its end. Reviews of it are
/// 409 and a repeated report is 202, never a 503.
#[tokio::test]
async fn cancelling_the_workflow_after_pickup_refunds_nothing_and_the_order_still_ends() {
    let app = spawn_app_with_worker().await;
    let (token, id, handle) = cancelled_in_temporal_in_transit(&app).await;
    // The workflow refuses it and waits again (a new deadline timer, detached from
    // the cancellation); a report after that reaches a live workflow.
    wait_for_timer_after_cancel(&handle).await;
    let (status, _) = app.carrier_event(&id, "in_transit", "2026-11-25T10:00:00Z").await;
    assert_eq!(status, StatusCode::ACCEPTED, "a repeated report");
    let admin = app.token("ops", Role::Admin);
    let (status, problem) =
        app.act(&admin, reqwest::Method::POST, &format!("/orders/{id}/review"), json!({"decision": "approve"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    let order: Value = app.get_order(&token, &id).await.json().await.unwrap();
    assert_eq!(order["status"], "in_transit", "the goods left: nothing to undo");
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "succeeded".to_owned())]);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 1, 0));

    assert_eq!(app.carrier_event(&id, "delivered", "2026-11-26T10:00:00Z").await.0, StatusCode::ACCEPTED);
    let outcome = handle.get_result(Default::default()).await.expect("the workflow follows the carrier to the end");
    assert_eq!(outcome.status, OrderStatus::Delivered);
    app.wait_for_status(&token, &id, "delivered").await;
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "succeeded".to_owned())]);
    capture(&app, &id, "order-cancel-refused-in-transit").await;
}

/// An order the carrier has picked up, whose workflow an operator then cancels
/// in Temporal: (the customer's token, the order id, the workflow's handle).
async fn cancelled_in_temporal_in_transit(
    app: &TestApp,
) -> (String, String, temporalio_client::WorkflowHandle<temporalio_client::Client, OrderWorkflow>) {
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(1)).await;
    app.wait_for_status(&token, &id, "shipped").await;
    app.carrier_event(&id, "in_transit", "2026-11-25T10:00:00Z").await;
    app.wait_for_status(&token, &id, "in_transit").await;
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
    handle.cancel(WorkflowCancelOptions::builder().reason("operator").build()).await.unwrap();
    (token, id, handle)
}

/// Waits until the history shows a timer started after the cancellation request.
async fn wait_for_timer_after_cancel(
    handle: &temporalio_client::WorkflowHandle<temporalio_client::Client, OrderWorkflow>,
) {
    // Event types of temporal.api.enums.v1.EventType.
    const TIMER_STARTED: i64 = 17;
    const CANCEL_REQUESTED: i64 = 20;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let json = handle.fetch_history(Default::default()).to_json().await.unwrap();
        let history: Value = serde_json::from_slice(&json).unwrap();
        let types: Vec<i64> =
            history["events"].as_array().unwrap().iter().filter_map(|e| e["event_type"].as_i64()).collect();
        let requested = types.iter().position(|t| *t == CANCEL_REQUESTED);
        if requested.is_some_and(|at| types[at..].contains(&TIMER_STARTED)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no timer after the cancellation: {types:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The same with no report from the carrier: the delivery deadline set at
/// shipping still ends the order (`delivery_overdue`).
#[tokio::test]
async fn a_refused_cancellation_in_temporal_keeps_the_delivery_deadline() {
    let app = spawn_app_with_worker_and(&[("ORDERS_DELIVERY_DEADLINE", "3s")]).await;
    let (token, id, handle) = cancelled_in_temporal_in_transit(&app).await;

    let outcome = handle.get_result(Default::default()).await.expect("the deadline ends it");
    assert_eq!(outcome.status, OrderStatus::DeliveryOverdue);
    app.wait_for_status(&token, &id, "delivery_overdue").await;
}
