//! Account onboarding: a code by email, verified within the deadline, five tries.

use orders::http::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

impl TestApp {
    async fn create_user(&self, email: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/users", self.address))
            .json(&json!({"email": email, "name": "Ada Lovelace"}))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn verify(&self, id: &str, code: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/users/{id}/verify", self.address))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    async fn user_status(&self, id: &str) -> String {
        let id: uuid::Uuid = id.parse().unwrap();
        let (s,): (String,) =
            sqlx::query_as("SELECT status FROM users WHERE id = $1").bind(id).fetch_one(&self.pool).await.unwrap();
        s
    }
}

#[tokio::test]
async fn the_emailed_code_activates_the_account() {
    let (sink, smtp) = SmtpSink::start().await;
    let app = spawn_app_with_worker_and(&[("ORDERS_SMTP_URL", smtp.as_str())]).await;
    let (status, user) = app.create_user("ada@example.com").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(user["status"], "pending_verification");
    let id = user["id"].as_str().unwrap().to_owned();

    let code = sink.code_for("ada@example.com").await;
    // Only a keyed hash of the code is stored: not the code, and not a hash that
    // trying the million codes against a copy of the database would undo.
    let uid: uuid::Uuid = id.parse().unwrap();
    let (stored,): (String,) =
        sqlx::query_as("SELECT code_hash FROM users WHERE id = $1").bind(uid).fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, orders::domain::user::code_hash(VERIFICATION_KEY.as_bytes(), uid, &code));
    assert_ne!(
        stored,
        orders::domain::user::legacy_code_hash(uid, &code),
        "an unkeyed hash is undone by trying all codes"
    );
    let other_key = orders::domain::user::code_hash(b"another-key-another-key-another-key!", uid, &code);
    assert_ne!(stored, other_key);
    let (status, user) = app.verify(&id, &code).await;

    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["status"], "active");
    // The welcome email goes out from the workflow, told that the account was decided.
    let welcome = sink.wait_for("Welcome").await;
    assert!(welcome.contains("ada@example.com"), "{welcome}");
    let (status, _) = app.verify(&id, &code).await;
    assert_eq!(status, StatusCode::CONFLICT, "verification is over");

    // The user reads their own account with a token whose subject is their id; others cannot.
    let me = app.http.get(format!("{}/users/{id}", app.address)).bearer_auth(app.customer(&id)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let other =
        app.http.get(format!("{}/users/{id}", app.address)).bearer_auth(app.customer("bob")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let admin = app
        .http
        .get(format!("{}/users/{id}", app.address))
        .bearer_auth(app.token("ops", Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    capture_workflow(&app, &format!("user-{id}"), "user-verified").await;
}

/// An account created while Temporal is away is still created (201), and its
/// code is sent once Temporal is back (the recovery loop starts the onboarding):
/// no account waits for a code that nothing will send.
#[tokio::test]
async fn an_account_created_while_temporal_is_away_gets_its_code_later() {
    let database_url = fresh_database().await;
    let offline = spawn_app_on(&database_url, &[("TEMPORAL_ADDRESS", "127.0.0.1:1")]).await;
    let (status, user) = offline.create_user("late@example.com").await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(offline.count("SELECT count(*) FROM users WHERE id = $1 AND workflow_started_at IS NULL", &id).await, 1);
    let (status, _) = offline.create_user("late@example.com").await;
    assert_eq!(status, StatusCode::CONFLICT, "the account exists");

    let (sink, smtp) = SmtpSink::start().await;
    let mut online = spawn_app_on(&database_url, &[("ORDERS_SMTP_URL", smtp.as_str())]).await;
    online.start_worker();
    let code = sink.code_for("late@example.com").await;
    let (status, user) = online.verify(&id, &code).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(
        online.count("SELECT count(*) FROM users WHERE id = $1 AND workflow_started_at IS NOT NULL", &id).await,
        1
    );
}

#[tokio::test]
async fn emails_are_unique_whatever_their_case_and_input_is_checked() {
    let app = spawn_app_with_worker().await;
    assert_eq!(app.create_user("ada@example.com").await.0, StatusCode::CREATED);
    assert_eq!(app.create_user("ADA@Example.com").await.0, StatusCode::CONFLICT);
    let resp = app.http.post(format!("{}/users", app.address)).json(&json!({"email": "nope"})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = resp.json().await.unwrap();
    let pointers: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert_eq!(pointers, ["/email", "/name"]);
}

#[tokio::test]
async fn the_fifth_wrong_code_locks_the_account() {
    let (sink, smtp) = SmtpSink::start().await;
    let app = spawn_app_with_worker_and(&[("ORDERS_SMTP_URL", smtp.as_str())]).await;
    let (_, user) = app.create_user("eve@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let code = sink.code_for("eve@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };

    for left in (1..=4).rev() {
        let (status, p) = app.verify(&id, wrong).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p["errors"][0]["message"], format!("wrong code; {left} attempts left"));
    }
    let (status, p) = app.verify(&id, wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(p["errors"][0]["message"], "wrong code; the account is now locked");
    assert_eq!(app.user_status(&id).await, "locked");
    let (status, _) = app.verify(&id, &code).await;
    assert_eq!(status, StatusCode::CONFLICT, "even the right code is refused now");
    let (status, _) = app.verify(&id, "12").await;
    assert_eq!(status, StatusCode::CONFLICT);
    capture_workflow(&app, &format!("user-{id}"), "user-locked").await;
}

/// A burst of wrong codes is decided one at a time under the account's row
/// lock: exactly five are compared (four 422 with attempts left, the fifth
/// locks the account), and every other one is answered 409, quickly.
#[tokio::test]
async fn a_hundred_wrong_codes_at_once_compare_exactly_five() {
    let (sink, smtp) = SmtpSink::start().await;
    let app =
        spawn_app_with_worker_and(&[("ORDERS_RATE_LIMIT_BURST", "1000"), ("ORDERS_SMTP_URL", smtp.as_str())]).await;
    let (_, user) = app.create_user("mallory@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let code = sink.code_for("mallory@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };

    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..100).map(|_| app.verify(&id, wrong))).await;

    let messages: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNPROCESSABLE_ENTITY)
        .map(|(_, p)| p["errors"][0]["message"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = (1..=4).rev().map(|left| format!("wrong code; {left} attempts left")).collect();
    expected.push("wrong code; the account is now locked".into());
    let mut sorted = messages.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "exactly five codes compared");
    let conflicts = answers.iter().filter(|(status, _)| *status == StatusCode::CONFLICT).count();
    assert_eq!(conflicts, 95, "{answers:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "answered quickly: {:?}", started.elapsed());
    assert_eq!(app.user_status(&id).await, "locked");
    let failed = app.count("SELECT failed_attempts::bigint FROM users WHERE id = $1", &id).await;
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn an_account_not_verified_in_time_expires() {
    let (sink, smtp) = SmtpSink::start().await;
    let app =
        spawn_app_with_worker_and(&[("ORDERS_VERIFICATION_DEADLINE", "1s"), ("ORDERS_SMTP_URL", smtp.as_str())]).await;
    let (_, user) = app.create_user("late@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let code = sink.code_for("late@example.com").await;

    let mut status = String::new();
    for _ in 0..100 {
        status = app.user_status(&id).await;
        if status != "pending_verification" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "expired");
    assert_eq!(app.verify(&id, &code).await.0, StatusCode::CONFLICT);
    capture_workflow(&app, &format!("user-{id}"), "user-expired").await;
}
