//! `GET /orders`: newest first, filters, cursor pages, and who sees what.

use orders::http::auth::Role;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

async fn list(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    let resp = app.http.get(format!("{}/orders?{query}", app.address)).bearer_auth(token).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn customers_page_through_their_own_orders_newest_first() {
    let app = spawn_app().await;
    let alice = app.customer("alice");
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(app.place_order(&alice, &widgets(1)).await);
    }
    app.place_order(&app.customer("bob"), &widgets(1)).await;
    placed.reverse(); // newest first

    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = list(&app, &alice, &query).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, placed, "every order of alice's, once, newest first, none of bob's");
}

#[tokio::test]
async fn filters_by_status_and_time_and_admins_by_customer() {
    let app = spawn_app().await;
    let a = app.place_order(&app.customer("alice"), &widgets(1)).await;
    let b = app.place_order(&app.customer("bob"), &widgets(1)).await;
    let admin = app.token("ops", Role::Admin);

    let (_, all) = list(&app, &admin, "").await;
    assert_eq!(ids(&all), [b.as_str(), a.as_str()]);
    let (_, bobs) = list(&app, &admin, "customer_id=bob").await;
    assert_eq!(ids(&bobs), [b.as_str()]);
    let (_, pending) = list(&app, &admin, "status=pending").await;
    assert_eq!(ids(&pending).len(), 2);
    let (_, shipped) = list(&app, &admin, "status=shipped").await;
    assert!(ids(&shipped).is_empty());
    let (_, future) = list(&app, &admin, "created_after=2999-01-01T00:00:00Z").await;
    assert!(ids(&future).is_empty());
    let (_, past) = list(&app, &admin, "created_before=2999-01-01T00:00:00Z").await;
    assert_eq!(ids(&past).len(), 2);
}

#[tokio::test]
async fn bad_parameters_are_named_and_other_customers_are_refused() {
    let app = spawn_app().await;
    let alice = app.customer("alice");
    let (status, p) = list(&app, &alice, "limit=500&status=lost&created_after=yesterday&cursor=zz").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/status", "/created_after", "/limit", "/cursor"]);

    // Another customer's orders: refused (403), not silently narrowed to one's own.
    let (status, _) = list(&app, &alice, "customer_id=bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = list(&app, &app.token("ups", Role::Carrier), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
