//! The HTTP contract of placing and reading orders (no worker needed: reads
//! come from Postgres, and a started workflow simply waits for one).

use orders::http::auth::Role;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::support::*;

async fn problem(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/problem+json");
    let body: Value = resp.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    assert!(body["instance"].is_string(), "the request id is the instance: {body}");
    body
}

#[tokio::test]
async fn a_valid_order_is_accepted_priced_from_the_catalog() {
    let app = spawn_app().await;
    let token = app.customer("alice");
    let body = order_body(json!([
        {"sku": WIDGET.0, "quantity": 2, "unit_price": "19.99"},
        {"sku": GADGET.0, "quantity": 1}
    ]));

    let resp = app.post_order(&token, &body).await;

    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = resp.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(order["status"], "pending");
    assert_eq!(order["customer_id"], "alice");
    // 2 × 19.99 + 49.50 = 89.48; tax 8.5 % = 7.6058 → 7.61; shipping 9.99 below 100.00
    assert_eq!(order["items"][0]["line_total"], "39.98");
    assert_eq!(order["subtotal"], "89.48");
    assert_eq!(order["tax"], "7.61");
    assert_eq!(order["shipping"], "9.99");
    assert_eq!(order["total"], "107.08");
    assert_eq!(order["billing_address"], order["shipping_address"]);
    assert!(order.get("payment_token").is_none() && !order.to_string().contains("tok_ok"), "no secrets: {order}");

    // The same order reads back from Postgres, with its first timeline event.
    let read: Value = app.get_order(&token, id).await.json().await.unwrap();
    assert_eq!(read["total"], "107.08");
    assert_eq!(read["timeline"][0]["status"], "pending");
    assert_eq!(read["payment"]["status"], "not_attempted");
    assert_eq!(app.count("SELECT count(*) FROM order_items WHERE order_id = $1", id).await, 2);
}

#[tokio::test]
async fn free_shipping_from_the_threshold() {
    let app = spawn_app().await;
    let order: Value = app.post_order(&app.customer("a"), &widgets(6)).await.json().await.unwrap();
    // 6 × 19.99 = 119.94 ≥ 100.00
    assert_eq!(order["shipping"], "0.00");
    assert_eq!(order["total"], "130.13"); // 119.94 + 10.19 (10.1949 rounded)
}

#[tokio::test]
async fn same_idempotency_key_and_body_replays_the_same_order() {
    let app = spawn_app().await;
    let token = app.customer("alice");
    let first = app.post_order_with_key(&token, &widgets(1), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    // Same body with keys in another order: still the same request.
    let reordered: Value = serde_json::from_str(&widgets(1).to_string()).unwrap();
    let again = app.post_order_with_key(&token, &reordered, Some("key-1")).await;

    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);

    // Keys are per customer: another customer's identical key is a new order.
    let other = app.post_order_with_key(&app.customer("bob"), &widgets(1), Some("key-1")).await;
    assert_eq!(other.status(), StatusCode::CREATED);
}

/// Twenty clients race with one key and two different bodies: one order; the
/// clients that sent its body get it (200), the others 422 (the key was used with another body).
#[tokio::test]
async fn a_key_raced_with_two_bodies_makes_one_order() {
    let app = spawn_app().await;
    let token = app.customer("racer");
    let (one, two) = (widgets(1), widgets(2));
    let posts = (0..20).map(|i| app.post_order_with_key(&token, if i % 2 == 0 { &one } else { &two }, Some("race")));
    let mut bodies_of = std::collections::BTreeMap::<u16, Vec<u64>>::new();
    for resp in futures::future::join_all(posts).await {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        let quantity = body["items"][0]["quantity"].as_u64().unwrap_or(0);
        bodies_of.entry(status).or_default().push(quantity);
    }
    assert_eq!(bodies_of.get(&201).map(Vec::len), Some(1), "{bodies_of:?}");
    let winner = bodies_of[&201][0];
    assert!(bodies_of.get(&200).into_iter().flatten().all(|q| *q == winner), "replays return the winner");
    let replays = bodies_of.get(&200).map_or(0, Vec::len);
    let conflicts = bodies_of.get(&422).map_or(0, Vec::len);
    assert_eq!((replays, conflicts), (9, 10), "{bodies_of:?}");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
    report_fault("6. one key from 20 clients, two bodies", 20, 1, None, &[]);
}

/// A retry is answered as the first request was, even when the catalog changed in
/// between: the key is looked up before the order is priced.
#[tokio::test]
async fn a_replay_after_a_price_change_or_a_deactivated_sku_returns_the_first_order() {
    let app = spawn_app().await;
    let token = app.customer("alice");
    let body = order_body(json!([{"sku": WIDGET.0, "quantity": 1, "unit_price": "19.99"}]));
    let first = app.post_order_with_key(&token, &body, Some("before-change")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();

    sqlx::query("UPDATE products SET unit_price = 24.99 WHERE sku = $1")
        .bind(WIDGET.0)
        .execute(&app.pool)
        .await
        .unwrap();
    let again = app.post_order_with_key(&token, &body, Some("before-change")).await;
    assert_eq!(again.status(), StatusCode::OK, "a price change does not turn a replay into a conflict");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!((&again["id"], &again["total"]), (&first["id"], &first["total"]));

    sqlx::query("UPDATE products SET active = false WHERE sku = $1").bind(WIDGET.0).execute(&app.pool).await.unwrap();
    let again = app.post_order_with_key(&token, &body, Some("before-change")).await;
    assert_eq!(again.status(), StatusCode::OK, "a deactivated SKU does not turn a replay into a 422");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    // A new key is a new order, priced and checked against today's catalog.
    let new =
        problem(app.post_order_with_key(&token, &body, Some("after-change")).await, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    assert_eq!(new["errors"][0]["pointer"], "/items/0/sku");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn same_idempotency_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let token = app.customer("alice");
    assert_eq!(app.post_order_with_key(&token, &widgets(1), Some("k")).await.status(), StatusCode::CREATED);
    let body =
        problem(app.post_order_with_key(&token, &widgets(2), Some("k")).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
}

#[tokio::test]
async fn concurrent_duplicates_create_one_order_and_one_workflow() {
    let app = spawn_app().await;
    let token = app.customer("alice");
    let body = widgets(1);
    let posts = (0..20).map(|_| app.post_order_with_key(&token, &body, Some("storm")));
    let responses = futures::future::join_all(posts).await;

    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        ids.insert(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
    // Exactly one workflow, under the order's workflow id.
    let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
    let query = format!("WorkflowId = 'order-{id}'");
    // Visibility lags the start: wait until it shows the run, then there must be exactly one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let count = loop {
        let count = client.count_workflows(&query, Default::default()).await.unwrap().count();
        if count > 0 || std::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(count, 1, "{count} workflows");
    let handle = client.get_workflow_handle::<orders::workflows::OrderWorkflow>(format!("order-{id}"));
    handle.describe(Default::default()).await.expect("the workflow exists");
    report_fault("6. one key from 20 clients, same body", 20, 1, None, &[]);
}

#[tokio::test]
async fn a_changed_price_is_a_conflict_naming_the_line() {
    let app = spawn_app().await;
    let body = order_body(json!([{"sku": WIDGET.0, "quantity": 1, "unit_price": "17.99"}]));
    let p = problem(app.post_order(&app.customer("a"), &body).await, StatusCode::CONFLICT).await;
    assert_eq!(p["type"], "/problems/price-changed");
    assert_eq!(p["changes"][0]["pointer"], "/items/0/unit_price");
    assert_eq!(p["changes"][0]["current"], "19.99");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 0, "nothing is written");
}

#[tokio::test]
async fn invalid_fields_are_all_named_by_json_pointer() {
    let app = spawn_app().await;
    let body = json!({
        "items": [{"sku": WIDGET.0, "quantity": 0}, {"sku": WIDGET.0, "quantity": 1}],
        "shipping_address": {"street": "1 Main St", "city": "", "state": "IL", "zip_code": "ABCDE", "country": "USA"},
        "payment_method": "cheque",
        "payment_token": "tok_ok"
    });
    let p = problem(app.post_order(&app.customer("a"), &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(
        pointers,
        [
            "/items/0/quantity",
            "/items/1/sku",
            "/shipping_address/city",
            "/shipping_address/zip_code",
            "/shipping_address/country",
            "/payment_method"
        ]
    );
    assert!(p["errors"].as_array().unwrap().iter().all(|e| !e["message"].as_str().unwrap().is_empty()));
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422_with_a_pointer() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let mut body = widgets(1);
    body["items"][0]["quantity"] = json!("two");
    let p = problem(app.post_order(&token, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["pointer"], "/items/0/quantity");

    let mut body = widgets(1);
    body["shipping_address"]["zipcode"] = json!("62701");
    let p = problem(app.post_order(&token, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("zipcode"), "{p}");
}

/// serde would take a struct from an array of its fields in order: every body
/// that is not an object is refused, with the root's pointer (RFC 6901: "").
#[tokio::test]
async fn bodies_that_are_not_objects_are_422() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let body = widgets(1);
    let as_array = json!([body["items"], body["shipping_address"], null, "credit_card", "tok_ok", null]);
    let p = problem(app.post_order(&token, &as_array).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!((&p["errors"][0]["pointer"], &p["errors"][0]["message"]), (&json!(""), &json!("must be a JSON object")));
    for (path, body) in [("/users", json!(["ada@example.com", "Ada"])), ("/orders/x/cancel", json!(["oops"]))] {
        let resp =
            app.http.post(format!("{}{path}", app.address)).bearer_auth(&token).json(&body).send().await.unwrap();
        let status = resp.status();
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::NOT_FOUND, "{path}: {status}");
    }
    let resp = app.http.post(format!("{}/users", app.address)).json(&json!(["ada@example.com", "Ada"])).send();
    problem(resp.await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    let resp = app.http.post(format!("{}/orders", app.address)).bearer_auth(&token).json(&json!("text")).send();
    problem(resp.await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
}

/// Text that shows nothing, or that reorders what is shown around it, is refused
/// where it would be stored: an invisible street, a right-to-left override in a
/// name or a note.
#[tokio::test]
async fn invisible_and_reordering_text_is_422() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let mut body = widgets(1);
    body["shipping_address"]["street"] = json!("\u{200b}");
    body["notes"] = json!("leave at door \u{202e}rood");
    let p = problem(app.post_order(&token, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/shipping_address/street", "/notes"], "{p}");
    let resp =
        app.http.post(format!("{}/users", app.address)).json(&json!({"email": "a@example.com", "name": "Ada\u{202e}"}));
    let p = problem(resp.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["pointer"], "/name");
    // Joiners inside a word are text.
    let mut body = widgets(1);
    body["shipping_address"]["city"] = json!("می\u{200c}خواهم");
    assert_eq!(app.post_order(&token, &body).await.status(), StatusCode::CREATED);
}

/// Found by contract fuzzing: values are checked exactly as the document's
/// patterns say, with no silent trimming of codes and no limit on text counted
/// after trimming.
#[tokio::test]
async fn codes_and_text_are_checked_exactly_as_documented() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let mut body = order_body(json!([{"sku": format!(" {}", WIDGET.0), "quantity": 1, "unit_price": "19.990"}]));
    body["shipping_address"]["zip_code"] = json!("\u{0666}2701");
    body["shipping_address"]["country"] = json!(" US");
    body["shipping_address"]["street"] = json!(format!("{}\t", "x".repeat(10)));
    body["shipping_address"]["state"] = json!(" I ");
    body["notes"] = json!(format!(" {} ", "n".repeat(999)));
    let p = problem(app.post_order(&token, &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(
        pointers,
        [
            "/items/0/sku",
            "/items/0/unit_price",
            "/shipping_address/street",
            "/shipping_address/state",
            "/shipping_address/zip_code",
            "/shipping_address/country",
            "/notes"
        ]
    );
    // Surrounding spaces in free text are still trimmed, not refused.
    let mut body = widgets(1);
    body["shipping_address"]["city"] = json!("  Springfield ");
    let id = app.place_order(&token, &body).await;
    let order: Value = app.get_order(&token, &id).await.json().await.unwrap();
    assert_eq!(order["shipping_address"]["city"], "Springfield");
}

/// Found by contract fuzzing: a query string that cannot be read at all is a
/// documented 400 problem, and another customer's listing is 403.
#[tokio::test]
async fn an_unreadable_query_string_is_400_and_another_customers_list_is_403() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let get = |query: &'static str| app.http.get(format!("{}/orders?{query}", app.address)).bearer_auth(&token).send();
    problem(get("status=paid&status=paid").await.unwrap(), StatusCode::BAD_REQUEST).await;
    problem(get("customer_id=b").await.unwrap(), StatusCode::FORBIDDEN).await;
    assert_eq!(get("customer_id=a").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_or_inactive_skus_are_422() {
    let app = spawn_app().await;
    sqlx::query("UPDATE products SET active = FALSE WHERE sku = $1").bind(GADGET.0).execute(&app.pool).await.unwrap();
    let body = order_body(json!([{"sku": "NOPE-9", "quantity": 1}, {"sku": GADGET.0, "quantity": 1}]));
    let p = problem(app.post_order(&app.customer("a"), &body).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["pointer"], "/items/0/sku");
    assert_eq!(p["errors"][1]["pointer"], "/items/1/sku");
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let token = app.customer("a");
    let url = format!("{}/orders", app.address);
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"items\": [")
        .send()
        .await
        .unwrap();
    problem(resp, StatusCode::BAD_REQUEST).await;
    let resp =
        app.http.post(&url).bearer_auth(&token).header(CONTENT_TYPE, "text/plain").body("{}").send().await.unwrap();
    problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let resp = app.http.post(&url).bearer_auth(&token).body("{}").send().await.unwrap();
    problem(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let mut body = widgets(1);
    body["notes"] = json!("x".repeat(70 * 1024));
    problem(app.post_order(&app.customer("a"), &body).await, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn missing_or_invalid_tokens_are_401() {
    let app = spawn_app().await;
    let url = format!("{}/orders", app.address);
    let resp = app.http.post(&url).json(&widgets(1)).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    problem(resp, StatusCode::UNAUTHORIZED).await;

    let forged = orders::http::auth::JwtKeys::new(&orders::config::Secret::new("another-secret-another-secret-0000"))
        .issue("alice", Role::Customer, std::time::Duration::from_secs(60))
        .unwrap();
    for token in [forged.as_str(), "not-a-jwt", ""] {
        let resp = app.post_order(token, &widgets(1)).await;
        problem(resp, StatusCode::UNAUTHORIZED).await;
    }
    let resp = app.get_order("garbage", "0190b0a0-0000-7000-8000-000000000000").await;
    problem(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn only_customers_place_orders() {
    let app = spawn_app().await;
    let resp = app.post_order(&app.token("ops", Role::Admin), &widgets(1)).await;
    problem(resp, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn customers_see_only_their_own_orders_and_admins_see_all() {
    let app = spawn_app().await;
    let id = app.place_order(&app.customer("alice"), &widgets(1)).await;

    assert_eq!(app.get_order(&app.customer("alice"), &id).await.status(), StatusCode::OK);
    problem(app.get_order(&app.customer("mallory"), &id).await, StatusCode::NOT_FOUND).await;
    let admin: Value = app.get_order(&app.token("ops", Role::Admin), &id).await.json().await.unwrap();
    assert_eq!(admin["customer_id"], "alice");
    problem(app.get_order(&app.token("ups", Role::Carrier), &id).await, StatusCode::FORBIDDEN).await;
    problem(app.get_order(&app.customer("alice"), "0190b0a0-0000-7000-8000-000000000000").await, StatusCode::NOT_FOUND)
        .await;
    problem(app.get_order(&app.customer("alice"), "not-a-uuid").await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn products_health_and_unknown_routes() {
    let app = spawn_app().await;
    let products: Value = app.http.get(format!("{}/products", app.address)).send().await.unwrap().json().await.unwrap();
    let widget = products.as_array().unwrap().iter().find(|p| p["sku"] == WIDGET.0).unwrap();
    assert_eq!(widget["unit_price"], "19.99");
    assert_eq!(widget["available"], WIDGET.3);

    let health = app.http.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.http.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"status": "ready", "postgres": true, "temporal": true}));

    problem(app.http.get(format!("{}/nope", app.address)).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    problem(app.http.delete(format!("{}/orders", app.address)).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED)
        .await;
}

#[tokio::test]
async fn readiness_fails_when_temporal_is_unreachable() {
    let app = spawn_app_with(&[("TEMPORAL_ADDRESS", "127.0.0.1:1")]).await;
    let ready = app.http.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json::<Value>().await.unwrap()["temporal"], false);
}

#[tokio::test]
async fn an_order_too_large_to_record_is_422_not_500() {
    let app = spawn_app().await;
    catalog_price(&app, WIDGET.0, "999999999.00").await;
    let p = problem(app.post_order(&app.customer("a"), &widgets(1000)).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(p["errors"][0]["pointer"], "/items");
}

async fn catalog_price(app: &TestApp, sku: &str, price: &str) {
    sqlx::query("UPDATE products SET unit_price = $2::numeric WHERE sku = $1")
        .bind(sku)
        .bind(price)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let app = spawn_app().await;
    let body = r#"{"items":[{"sku":"WIDGET-1","quantity":1,"quantity":900}],
        "shipping_address":{"street":"1 Main St","city":"Springfield","state":"IL","zip_code":"62701","country":"US"},
        "payment_method":"credit_card","payment_token":"tok_ok"}"#;
    let resp = app
        .http
        .post(format!("{}/orders", app.address))
        .bearer_auth(app.customer("a"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(p["errors"][0]["message"].as_str().unwrap().contains("duplicate"), "{p}");
}

#[tokio::test]
async fn responses_carry_security_headers_and_the_callers_request_id() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(format!("{}/orders/not-an-id", app.address))
        .bearer_auth(app.customer("a"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-abc-123");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let p = problem(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(p["instance"], "req-abc-123");

    // A request id that is long or carries markup is not echoed: a fresh one is made.
    for unsafe_id in ["<script>alert(1)</script>".to_owned(), "x".repeat(5000), "a b".to_owned()] {
        let resp = app.http.get(format!("{}/healthz", app.address)).header("x-request-id", &unsafe_id).send();
        let echoed = resp.await.unwrap().headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, unsafe_id);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
    }
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_with_retry_after() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(&[("ORDERS_MAX_CONCURRENT_REQUESTS", "1")]).await;
    // A client that sends half a body keeps the only slot busy.
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        app.customer("a")
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let resp = app.http.get(format!("{}/products", app.address)).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    drop(slow);
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let app = spawn_app_with(&[("ORDERS_CORS_ORIGINS", "https://shop.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/orders", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn each_caller_has_its_own_rate_limit() {
    let app = spawn_app_with(&[("ORDERS_RATE_LIMIT_PER_SECOND", "1"), ("ORDERS_RATE_LIMIT_BURST", "2")]).await;
    let list = |token: String| app.http.get(format!("{}/orders", app.address)).bearer_auth(token).send();
    let alice = app.customer("alice");
    assert_eq!(list(alice.clone()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(list(alice.clone()).await.unwrap().status(), StatusCode::OK);
    let limited = list(alice).await.unwrap();
    assert!(limited.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // draft-ietf-httpapi-ratelimit-headers: the policy and what is left.
    assert_eq!(limited.headers()["ratelimit-policy"], "\"default\";q=2;w=2");
    assert_eq!(limited.headers()["ratelimit"], "\"default\";r=0;t=2");
    problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    // Another subject is not affected.
    assert_eq!(list(app.customer("bob")).await.unwrap().status(), StatusCode::OK);
    // Public routes are limited per IP.
    for _ in 0..2 {
        app.http.get(format!("{}/products", app.address)).send().await.unwrap();
    }
    let resp = app.http.get(format!("{}/products", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A client cannot hold a connection by sending slowly: headers that do not
/// arrive within ORDERS_HEADER_READ_TIMEOUT close the connection; a body that
/// does not arrive within ORDERS_BODY_READ_TIMEOUT is refused with 408. Many such
/// connections at once do not keep others from their answers.
#[tokio::test]
async fn slow_clients_are_cut_off_and_do_not_hold_up_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(&[("ORDERS_HEADER_READ_TIMEOUT", "1s"), ("ORDERS_BODY_READ_TIMEOUT", "1s")]).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let started = std::time::Instant::now();

    // Half a request line, then nothing: the server hangs up.
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTT").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), half.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is closed, not held");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());

    // Headers in full, then a body that trickles: 408 problem+json.
    let token = app.customer("slow");
    let mut trickle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"items\""
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        loop {
            match trickle.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "answered, not held");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    // Two hundred connections trickling their headers; an ordinary request still gets its answer at once.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    let before = std::time::Instant::now();
    let resp = app.http.get(format!("{}/healthz", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(before.elapsed() < std::time::Duration::from_millis(500), "{:?}", before.elapsed());
    drop(slow);
}

/// A sign-up flood is refused (429 with Retry-After): per address, and for all
/// addresses together, each at its own configured rate.
#[tokio::test]
async fn sign_ups_have_a_stricter_limit_of_their_own() {
    for (setting, allowed) in [("ORDERS_SIGNUP_RATE_PER_IP", 3), ("ORDERS_SIGNUP_RATE", 2)] {
        let app = spawn_app_with(&[(setting, &allowed.to_string())]).await;
        let sign_up = |n: usize| {
            let body = json!({"email": format!("flood{n}@example.com"), "name": "Flood"});
            app.http.post(format!("{}/users", app.address)).json(&body).send()
        };
        for n in 0..allowed {
            assert_ne!(sign_up(n).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS, "{setting}: sign-up {n}");
        }
        let refused = sign_up(allowed).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{setting}");
        assert!(refused.headers().contains_key("retry-after"));
        // Other routes keep the general limit.
        assert_eq!(app.http.get(format!("{}/products", app.address)).send().await.unwrap().status(), StatusCode::OK);
    }
}

/// Behind a trusted load balancer, public routes are limited per client (the
/// address its `X-Forwarded-For` names); from anyone else the header is ignored,
/// so a caller cannot choose its own bucket.
#[tokio::test]
async fn public_routes_are_limited_per_client_behind_a_trusted_proxy_only() {
    let sign_up = |app: &TestApp, n: usize, client: &str| {
        let body = json!({"email": format!("c{n}-{client}@example.com"), "name": "Client"});
        app.http.post(format!("{}/users", app.address)).header("x-forwarded-for", client).json(&body).send()
    };
    let behind = spawn_app_with(&[("ORDERS_SIGNUP_RATE_PER_IP", "2"), ("ORDERS_TRUSTED_PROXIES", "127.0.0.1")]).await;
    for n in 0..2 {
        assert_eq!(sign_up(&behind, n, "198.51.100.1").await.unwrap().status(), StatusCode::CREATED);
    }
    assert_eq!(sign_up(&behind, 2, "198.51.100.1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sign_up(&behind, 3, "198.51.100.2").await.unwrap().status(), StatusCode::CREATED, "another client");

    let direct = spawn_app_with(&[("ORDERS_SIGNUP_RATE_PER_IP", "2")]).await;
    for n in 0..2 {
        assert_eq!(sign_up(&direct, n, &format!("198.51.100.{n}")).await.unwrap().status(), StatusCode::CREATED);
    }
    let spoofed = sign_up(&direct, 2, "198.51.100.99").await.unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS, "an untrusted peer's header is ignored");
}

/// A problem's `type` resolves, against the API's own address, to a page that
/// says what it means and what to do; an unknown type is a 404 problem.
#[tokio::test]
async fn every_problem_type_resolves_to_a_page_that_explains_it() {
    let app = spawn_app().await;
    let missing =
        problem(app.get_order(&app.customer("a"), &uuid::Uuid::new_v4().to_string()).await, StatusCode::NOT_FOUND)
            .await;
    let busy = format!("{}/problems/busy", app.address);
    for url in [format!("{}{}", app.address, missing["type"].as_str().unwrap()), busy] {
        let page = app.http.get(&url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{url}");
        assert!(page.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(html.contains("<h1>") && html.contains("type: /problems/"), "{html}");
    }
    for name in orders::http::problems::TYPES.iter().map(|t| t.name) {
        let page = app.http.get(format!("{}/problems/{name}", app.address)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{name}");
    }
    problem(
        app.http.get(format!("{}/problems/no-such-type", app.address)).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// Status is indexed, so every status change writes into every index of `orders`:
/// none may carry what no query needs. Marking a start touches no indexed column
/// (a HOT update), the workflow id (the order id's copy) has no index of its own,
/// and orders without an idempotency key have no entry in its index — while
/// recovery still finds unstarted orders through an index.
#[tokio::test]
async fn the_orders_indexes_carry_only_what_queries_use() {
    let app = spawn_app().await;
    let defs: Vec<String> = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = 'orders'")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(defs.iter().all(|d| !d.contains("workflow_started_at")), "{defs:#?}");
    assert!(defs.iter().all(|d| !d.contains("(workflow_id)")), "{defs:#?}");
    let keyed: Vec<&String> = defs.iter().filter(|d| d.contains("idempotency_key")).collect();
    assert_eq!(keyed.len(), 1, "{defs:#?}");
    assert!(keyed[0].contains("UNIQUE") && keyed[0].contains("WHERE (idempotency_key IS NOT NULL)"), "{keyed:?}");

    // On a near-empty table a sequential scan is cheapest; ask which index it would use.
    let mut conn = app.pool.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id, total FROM orders WHERE status = 'pending' AND workflow_started_at IS NULL \
           AND created_at < now() - make_interval(secs => 10) ORDER BY id LIMIT 100",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(plan.iter().any(|l| l.contains("orders_status_id_idx")), "{plan:#?}");
}
