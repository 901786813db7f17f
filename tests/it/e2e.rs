//! The shipped binaries, as processes: `orders-api migrate`, `serve` and
//! `orders-worker` take an order placed over HTTP to `shipped`, then stop on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends SIGTERM and returns whether the process exited cleanly within `within`.
    fn terminate(&mut self, within: Duration) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

fn binary(name: &str, env: &[(String, String)], args: &[&str]) -> Command {
    let path = match name {
        "orders-api" => env!("CARGO_BIN_EXE_orders-api"),
        _ => env!("CARGO_BIN_EXE_orders-worker"),
    };
    let mut cmd = Command::new(path);
    cmd.args(args).envs(env.iter().cloned()).env("ORDERS_LOG_FORMAT", "text").stdout(Stdio::null());
    cmd
}

#[tokio::test]
async fn an_order_placed_over_http_reaches_shipped_through_the_binaries() {
    // An empty database: the binary's own `migrate` creates the schema.
    let admin = std::env::var("ORDERS_TEST_DATABASE_URL").expect("run through scripts/test");
    let name = format!("orders_e2e_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
    let database_url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.clone()),
        ("TEMPORAL_ADDRESS", std::env::var("ORDERS_TEST_TEMPORAL_ADDRESS").unwrap()),
        ("TEMPORAL_TASK_QUEUE", format!("orders-e2e-{}", uuid::Uuid::new_v4().simple())),
        ("ORDERS_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("ORDERS_JWT_SECRET", JWT_SECRET.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let migrated = binary("orders-api", &env, &["migrate"]).status().unwrap();
    assert!(migrated.success());
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();
    seed_catalog(&db).await;
    let mut api = Process(binary("orders-api", &env, &["serve"]).spawn().unwrap());
    let mut worker = Process(binary("orders-worker", &env, &[]).spawn().unwrap());

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "API never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token_out = binary("orders-api", &env, &["token", "--sub", "e2e-customer", "--role", "customer"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let token = String::from_utf8(token_out.stdout).unwrap().trim().to_owned();

    let created: Value = http
        .post(format!("{base}/orders"))
        .bearer_auth(&token)
        .json(&widgets(2))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("order created").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let order = loop {
        let o: Value =
            http.get(format!("{base}/orders/{id}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        if o["status"] == "shipped" {
            break o;
        }
        assert!(Instant::now() < deadline, "order did not ship: {o:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(order["shipment"]["tracking_number"].is_string());

    assert!(worker.terminate(Duration::from_secs(15)), "worker exits cleanly on SIGTERM");
    assert!(api.terminate(Duration::from_secs(15)), "API exits cleanly on SIGTERM");
}
