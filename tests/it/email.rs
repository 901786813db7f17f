//! Emails over real SMTP (the sink server of `support`): the verification code,
//! the welcome, and order notifications to the customer's account address.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn account_and_order_emails_go_out_over_smtp() {
    let (sink, url) = SmtpSink::start().await;
    let app = spawn_app_with_worker_and(&[("ORDERS_SMTP_URL", url.as_str()), FAST_CARRIER[0], FAST_CARRIER[1]]).await;

    let user: Value = app
        .http
        .post(format!("{}/users", app.address))
        .json(&json!({"email": "ada@example.com", "name": "Ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();
    let mail = sink.wait_for("Your code:").await;
    assert!(mail.contains("ada@example.com"), "{mail}");
    let code: String = mail.split("Your code: ").nth(1).unwrap().chars().take(6).collect();
    let resp = app
        .http
        .post(format!("{}/users/{user_id}/verify", app.address))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    sink.wait_for("Welcome").await;

    // An order of that user: each status change is emailed to their address.
    let token = app.customer(&user_id);
    let id = app.place_order(&token, &widgets(1)).await;
    app.wait_for_status(&token, &id, "delivered").await;
    let delivered = sink.wait_for("Status: delivered").await;
    assert!(delivered.contains("ada@example.com") && delivered.contains(&id), "{delivered}");
    let order_mails = sink.messages.lock().unwrap().iter().filter(|m| m.contains(&id)).count();
    assert_eq!(order_mails, 6, "one per timeline event");
}
