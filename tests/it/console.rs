//! The operator console's API side: the workflow's live state through a Query
//! (and a clear 503 without a worker), the review queue's order and deadlines,
//! the actions an order admits, who the caller is, and the console's own
//! assets under a strict Content-Security-Policy. The pages themselves are
//! driven in Chromium by `tests/console_e2e.py` (scripts/contract).

use orders::http::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const REVIEW_FROM_100: (&str, &str) = ("ORDERS_REVIEW_THRESHOLD", "100.00");
const UI: (&str, &str) = ("ORDERS_TEMPORAL_UI_URL", "http://temporal-ui.example:8233/");

fn gadgets(n: u32) -> Value {
    order_body(json!([{"sku": GADGET.0, "quantity": n}]))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string")).collect()
}

#[tokio::test]
async fn the_workflow_answers_its_step_and_review_deadline_and_a_missing_worker_is_a_clear_503() {
    let mut app = spawn_app_with_worker_and(&[REVIEW_FROM_100, UI]).await;
    let customer = app.customer("alice");
    let admin = app.token("ops", Role::Admin);
    let first = app.place_order(&customer, &gadgets(3)).await;
    let second = app.place_order(&customer, &gadgets(2)).await;
    let order = app.wait_for_status(&customer, &first, "awaiting_review").await;
    app.wait_for_status(&customer, &second, "awaiting_review").await;

    // The read model has the deadline the workflow set, and the actions the status admits.
    let due = order["review_due_at"].as_str().expect("review_due_at while awaiting review").to_owned();
    assert_eq!(strings(&order["actions"]), ["cancel", "amend_address", "review"]);

    let (status, view) = app.get_json(&admin, &format!("/orders/{first}/workflow")).await;
    assert_eq!(status, StatusCode::OK, "{view:#}");
    assert_eq!(view["status"], "awaiting_review");
    assert_eq!(view["live"]["status"], "awaiting_review");
    assert_eq!(view["live"]["step"], "awaiting_review");
    assert_eq!(view["consistency"], "agrees");
    assert_eq!(view["live"]["address_locked"], false);
    let live_due: chrono::DateTime<chrono::Utc> = view["live"]["review_due_at"].as_str().expect("due").parse().unwrap();
    // One deadline, two views (Postgres keeps microseconds).
    let db_due: chrono::DateTime<chrono::Utc> = due.parse().unwrap();
    assert!((live_due - db_due).abs() < chrono::TimeDelta::microseconds(1), "{live_due} vs {db_due}");
    assert_eq!(
        view["web_ui_url"],
        format!("http://temporal-ui.example:8233/namespaces/default/workflows/order-{first}"),
    );

    // The review queue: oldest first, with the deadline; newest first by default.
    let (_, queue) = app.get_json(&admin, "/orders?status=awaiting_review&order=oldest").await;
    let ids: Vec<&str> = queue["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert!(queue["items"][0]["review_due_at"].is_string());
    let (_, newest) = app.get_json(&admin, "/orders?status=awaiting_review").await;
    assert_eq!(newest["items"][0]["id"], second.as_str());
    let (_, page) = app.get_json(&admin, "/orders?status=awaiting_review&order=oldest&limit=1").await;
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = app.get_json(&admin, &format!("/orders?status=awaiting_review&order=oldest&cursor={cursor}")).await;
    assert_eq!(rest["items"][0]["id"], second.as_str(), "the cursor pages in the order asked");
    let (status, bad) = app.get_json(&admin, "/orders?order=sideways").await;
    assert_eq!((status, bad["errors"][0]["pointer"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/order")));

    // Admins only.
    let (status, _) = app.get_json(&customer, &format!("/orders/{first}/workflow")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Approved: the step moves on and the deadline is gone from both views.
    let resp = app
        .http
        .post(format!("{}/orders/{first}/review", app.address))
        .bearer_auth(&admin)
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let paid = app.wait_for_status(&customer, &first, "shipped").await;
    assert!(paid["review_due_at"].is_null());
    assert_eq!(strings(&paid["actions"]), ["cancel", "carrier_event"]);
    let view = wait_for_step(&app, &admin, &first, "following_carrier").await;
    assert!(view["live"]["review_due_at"].is_null());
    assert!(view["live"]["delivery_due_at"].is_string());
    assert_eq!(view["live"]["address_locked"], true);

    // No worker: the query cannot be answered, and says so; the read model still answers.
    app.stop_worker();
    let (status, problem) = app.get_json(&admin, &format!("/orders/{second}/workflow")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem:#}");
    assert_eq!(problem["type"], "/problems/unavailable");
    assert!(problem["detail"].as_str().unwrap().contains("orders-worker running"), "{problem:#}");
    let (status, _) = app.get_json(&customer, &format!("/orders/{second}")).await;
    assert_eq!(status, StatusCode::OK);
}

/// The step follows the workflow task after the status is recorded: wait for it.
async fn wait_for_step(app: &TestApp, admin: &str, id: &str, step: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, view) = app.get_json(admin, &format!("/orders/{id}/workflow")).await;
        if status == StatusCode::OK && view["live"]["step"] == step {
            return view;
        }
        assert!(std::time::Instant::now() < deadline, "workflow of {id} never reached {step}: {view:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn whoami_says_who_the_token_is_for() {
    let app = spawn_app().await;
    let (status, me) = app.get_json(&app.token("ops", Role::Admin), "/whoami").await;
    assert_eq!((status, me), (StatusCode::OK, json!({"subject": "ops", "role": "admin"})));
    let resp = app.http.get(format!("{}/whoami", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let app = spawn_app().await;
    for (path, kind) in
        [("/console", "text/html"), ("/console/app.js", "text/javascript"), ("/console/app.css", "text/css")]
    {
        let resp = app.http.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}: {}", header("content-type"));
        let csp = header("content-security-policy");
        for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY");
    }
    let html = app.http.get(format!("{}/console", app.address)).send().await.unwrap().text().await.unwrap();
    // Every script is a file (the policy refuses inline ones anyway; this keeps the page working).
    assert_eq!(html.matches("<script").count(), html.matches("<script type=\"module\" src=\"/console/").count());
    let script = app.http.get(format!("{}/console/app.js", app.address)).send().await.unwrap().text().await.unwrap();
    for sink in
        ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"]
    {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
}
