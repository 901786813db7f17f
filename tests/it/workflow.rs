//! The order workflow through the real worker: each path ends in the right
//! status with stock and money where they belong.

use orders::workflows::{OrderOutcome, OrderWorkflow};
use serde_json::{Value, json};
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowHistory};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

use crate::support::*;

fn with_token(mut body: Value, token: &str) -> Value {
    body["payment_token"] = json!(token);
    body
}

/// Histories recorded from earlier versions of the workflow must replay on this one:
/// a change that breaks them would break orders in flight during a deploy.
/// `tests/histories/` has one of every path of this version (ORDERS_RECORD_HISTORIES=1
/// writes them); `tests/histories/v1/` those of the version before decisions were
/// recorded in Postgres, which replay their own paths (`workflows/order/legacy.rs`,
/// and the `verify` update of `UserOnboardingWorkflow`); `tests/histories/v2/` the
/// order paths of the version whose workers were asked to deliver on every channel
/// after every change (they answered with a count, never "not configured").
#[tokio::test]
async fn recorded_histories_still_replay() {
    let dir = format!("{}/tests/histories", env!("CARGO_MANIFEST_DIR"));
    let paths = [
        "order-delivered",
        "order-declined",
        "order-out-of-stock",
        "order-flaky-payment",
        "order-shipment-failed",
        "order-review-approved",
        "order-review-rejected",
        "order-review-timeout",
        "order-cancelled-in-review",
        "order-cancelled-before-charge",
        "order-cancelled-after-booking",
        "order-workflow-cancelled",
        "order-carrier-events",
        "order-delivery-overdue",
        "order-address-amended",
        "order-cancel-refused-in-transit",
        // Recorded before the follows-after-refused-cancel patch: the workflow ended cancelled.
        "order-cancelled-in-temporal-in-transit",
        "user-verified",
        "user-locked",
        "user-expired",
    ];
    let mut files: Vec<String> = paths.iter().map(|name| format!("{dir}/{name}.json")).collect();
    for (version, count) in [("v1", 17), ("v2", 16)] {
        let mut earlier: Vec<String> = std::fs::read_dir(format!("{dir}/{version}"))
            .unwrap_or_else(|e| panic!("tests/histories/{version}: {e}"))
            .map(|e| e.expect("a history file").path().display().to_string())
            .collect();
        earlier.sort();
        assert_eq!(earlier.len(), count, "every path of {version} keeps its history");
        files.extend(earlier);
    }
    for path in files {
        let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let history = WorkflowHistory::from_json(&json).unwrap();
        let options = if path.contains("/user-") {
            WorkflowReplayerOptions::new().register_workflow::<orders::workflows::UserOnboardingWorkflow>().unwrap()
        } else {
            WorkflowReplayerOptions::new().register_workflow::<OrderWorkflow>().unwrap()
        };
        let replayer = WorkflowReplayer::new(options.build()).unwrap();
        if let Err(e) = replayer.replay_workflow(history).await {
            panic!("{path} does not replay: {e:?}");
        }
    }
}

#[tokio::test]
async fn a_paid_order_is_delivered_and_its_history_replays() {
    let app = spawn_app_with_worker_and(&FAST_CARRIER).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &widgets(3)).await;

    let order = app.wait_for_status(&token, &id, "delivered").await;

    assert_eq!(timeline(&order), ["pending", "reserved", "paid", "shipped", "in_transit", "delivered"]);
    assert!(order["shipment"]["tracking_number"].as_str().unwrap().starts_with("SIM"));
    assert_eq!(order["payment"]["status"], "succeeded");
    assert_eq!(order["payment"]["amount"], order["total"]);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 3, 0), "delivered units leave stock and reservation");
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "succeeded".to_owned())]);
    assert_eq!(
        app.count("SELECT count(*) FROM inventory_reservations WHERE order_id = $1 AND state = 'consumed'", &id).await,
        1
    );

    // The workflow's own result agrees, and its history replays deterministically.
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let handle = client.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
    let outcome: OrderOutcome = handle.get_result(Default::default()).await.unwrap();
    assert_eq!(outcome.tracking_number.as_deref(), order["shipment"]["tracking_number"].as_str());
    let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
    record_history("order-delivered", &json);
    // This worker has neither webhook nor mail server: each channel is asked once
    // and says so, rather than after each of the six changes (12 of 29 events before).
    assert_eq!(local_activity_markers(&json, "DeliverNotifications"), 2, "one delivery round per unconfigured channel");
    let history = WorkflowHistory::from_json(&json).unwrap();
    let replayer =
        WorkflowReplayer::new(WorkflowReplayerOptions::new().register_workflow::<OrderWorkflow>().unwrap().build())
            .unwrap();
    replayer.replay_workflow(history).await.expect("history replays without non-determinism");
}

#[tokio::test]
async fn a_declined_card_fails_the_order_and_releases_the_stock() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &with_token(widgets(2), "tok_declined")).await;

    let order = app.wait_for_status(&token, &id, "failed").await;

    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(timeline(&order), ["pending", "reserved", "failed"]);
    assert_eq!(order["payment"]["status"], "declined");
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "declined".to_owned())], "nothing to refund");
    assert_eq!(app.notifications(&id).await.last().map(String::as_str), Some("order.failed"));
    assert_eq!(
        app.count("SELECT count(*) FROM inventory_reservations WHERE order_id = $1 AND state = 'held'", &id).await,
        0
    );
    capture(&app, &id, "order-declined").await;
}

#[tokio::test]
async fn an_order_beyond_stock_fails_out_of_stock_and_reserves_nothing() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    // Widgets are plentiful, gadgets are not: nothing may stay reserved.
    let body = order_body(json!([{"sku": WIDGET.0, "quantity": 2}, {"sku": GADGET.0, "quantity": GADGET.3 + 1}]));
    let id = app.place_order(&token, &body).await;

    let order = app.wait_for_status(&token, &id, "failed").await;

    assert_eq!(order["reason"], "out_of_stock");
    assert!(order["timeline"][1]["detail"].as_str().unwrap().contains(GADGET.0));
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    assert_eq!(app.stock(GADGET.0).await, (GADGET.3, 0));
    assert!(app.payments(&id).await.is_empty(), "no charge attempted");
    assert_eq!(app.count("SELECT count(*) FROM inventory_reservations WHERE order_id = $1", &id).await, 0);
    capture(&app, &id, "order-out-of-stock").await;
}

#[tokio::test]
async fn a_flaky_gateway_is_retried_and_charges_once() {
    let app = spawn_app_with_worker_and(&FAST_CARRIER).await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &with_token(widgets(1), "tok_flaky")).await;

    let order = app.wait_for_status(&token, &id, "delivered").await;

    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "succeeded".to_owned())]);
    assert_eq!(order["payment"]["status"], "succeeded");
    capture(&app, &id, "order-flaky-payment").await;
}

#[tokio::test]
async fn a_refused_payment_fails_without_a_refund() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &with_token(widgets(1), "tok_error")).await;

    let order = app.wait_for_status(&token, &id, "failed").await;

    assert_eq!(order["reason"], "payment_failed");
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "failed".to_owned())], "no refund recorded");
}

#[tokio::test]
async fn a_gateway_that_stays_unavailable_fails_the_payment_after_three_calls() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let id = app.place_order(&token, &with_token(widgets(1), "tok_unavailable")).await;

    let order = app.wait_for_status(&token, &id, "failed").await;

    assert_eq!(order["reason"], "payment_failed");
    assert_eq!(app.payments(&id).await, [("charge".to_owned(), "failed".to_owned())], "no refund recorded");
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    // The bound counts the gateway's calls (the workflow's own retries are unbounded).
    let calls: i32 = sqlx::query_scalar("SELECT calls FROM party_calls WHERE order_id = $1::uuid AND step = 'charge'")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn a_shipment_that_cannot_be_booked_refunds_and_releases() {
    let app = spawn_app_with_worker().await;
    let token = app.customer("alice");
    let mut body = widgets(2);
    body["shipping_address"]["zip_code"] = json!("00000"); // the simulated carrier does not serve it
    let id = app.place_order(&token, &body).await;

    let order = app.wait_for_status(&token, &id, "failed").await;

    assert_eq!(order["reason"], "shipment_failed");
    assert_eq!(timeline(&order), ["pending", "reserved", "paid", "failed"]);
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(
        app.payments(&id).await,
        [("charge".to_owned(), "succeeded".to_owned()), ("refund".to_owned(), "succeeded".to_owned())]
    );
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    assert_eq!(app.notifications(&id).await.last().map(String::as_str), Some("order.failed"));
    capture(&app, &id, "order-shipment-failed").await;
}

#[tokio::test]
async fn orders_accepted_while_temporal_was_down_are_started_later() {
    let database_url = fresh_database().await;
    // An API that cannot reach Temporal still records the order.
    let offline = spawn_app_on(&database_url, &[("TEMPORAL_ADDRESS", "127.0.0.1:1")]).await;
    let token = offline.customer("alice");
    let id = offline.place_order(&token, &widgets(1)).await;
    assert_eq!(
        offline.count("SELECT count(*) FROM orders WHERE id = $1 AND workflow_started_at IS NULL", &id).await,
        1
    );

    // An API that can reach it starts the order from its recovery loop.
    let mut online = spawn_app_on(&database_url, &[]).await;
    online.start_worker();
    online.wait_for_status(&token, &id, "shipped").await;
    assert_eq!(
        online.count("SELECT count(*) FROM orders WHERE id = $1 AND workflow_started_at IS NOT NULL", &id).await,
        1
    );
}

/// The answer to an order does not wait for its workflow's start: the order is
/// recorded, and the start runs after the answer (here it hangs on a Temporal
/// that accepts connections and never answers, and is left to the recovery loop).
#[tokio::test]
async fn an_order_is_answered_without_waiting_for_its_workflow_start() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let app = spawn_app_with(&[("TEMPORAL_ADDRESS", &address)]).await;
    let token = app.customer("alice");
    for _ in 0..2 {
        let asked = std::time::Instant::now();
        let id = app.place_order(&token, &widgets(1)).await;
        let took = asked.elapsed();
        assert!(took < orders::temporal::START_TIMEOUT, "the answer waited {took:?} for the workflow start");
        let unstarted =
            "SELECT count(*) FROM orders WHERE id = $1 AND status = 'pending' AND workflow_started_at IS NULL";
        assert_eq!(app.count(unstarted, &id).await, 1);
    }
    held.abort();
}

/// A hundred concurrent orders for a SKU with ten in stock: exactly ten ship, the
/// others fail out of stock holding nothing and charged nothing, and the stock adds up.
#[tokio::test]
async fn a_hundred_orders_for_ten_in_stock_ship_exactly_ten() {
    let app = spawn_app_with_worker().await;
    sqlx::query("UPDATE inventory SET available = 10, reserved = 0 WHERE sku = $1")
        .bind(GADGET.0)
        .execute(&app.pool)
        .await
        .unwrap();
    let token = app.customer("crowd");
    let body = order_body(json!([{"sku": GADGET.0, "quantity": 1}]));
    let posts = (0..100).map(|_| app.post_order(&token, &body));
    let mut ids = Vec::new();
    for resp in futures::future::join_all(posts).await {
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let mut shipped = 0;
    for id in &ids {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let order = loop {
            let o: Value = app.get_order(&token, id).await.json().await.unwrap();
            if ["shipped", "failed"].contains(&o["status"].as_str().unwrap_or_default()) {
                break o;
            }
            assert!(std::time::Instant::now() < deadline, "order stuck: {o:#}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        if order["status"] == "shipped" {
            shipped += 1;
        } else {
            assert_eq!(order["reason"], "out_of_stock", "{order:#}");
        }
    }
    assert_eq!(shipped, 10, "exactly the stock ships");
    assert_eq!(app.stock(GADGET.0).await, (0, 10), "all ten held for the shipped orders");
    let held_by_failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inventory_reservations r JOIN orders o ON o.id = r.order_id
          WHERE o.status = 'failed' AND r.state = 'held'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held_by_failed, 0);
    let charged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE kind = 'charge' AND status = 'succeeded'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(charged, 10, "one charge per shipped order, none for the others");
    report_fault("5. 100 concurrent orders for 10 in stock", 100, 1, None, &[]);
}

/// The SDK worker keeps an entry per activity task it ran, so the worker
/// replaces it by a fresh one every `ORDERS_WORKER_RECYCLE_AFTER_ACTIVITIES`
/// tasks. Orders in flight across the replacements (their cached runs evicted,
/// replayed by the next one) still end delivered, each step done once.
#[tokio::test]
async fn orders_in_flight_finish_across_worker_replacements() {
    let mut app =
        spawn_app_with_worker_and(&[("ORDERS_WORKER_RECYCLE_AFTER_ACTIVITIES", "3"), FAST_CARRIER[0], FAST_CARRIER[1]])
            .await;
    let token = app.customer("alice");
    let body = widgets(2);
    let posts = (0..4).map(|_| app.place_order(&token, &body));
    let ids = futures::future::join_all(posts).await;
    for id in &ids {
        let order = app.wait_for_status(&token, id, "delivered").await;
        assert_eq!(timeline(&order), ["pending", "reserved", "paid", "shipped", "in_transit", "delivered"]);
        assert_eq!(app.payments(id).await, [("charge".to_owned(), "succeeded".to_owned())], "charged once");
    }
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 8, 0), "each order's units taken once");
    // Each delivered order runs seven activity tasks or more: 28 in all, three per worker.
    let replaced = app.stop_worker();
    assert!(replaced >= 2, "the SDK worker was replaced {replaced} times");
}
