//! The test harness: a fresh database per test, the API on port 0, and a worker
//! on a task queue of the test's own, all against the servers `scripts/test` runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use orders::config::Settings;
use orders::db::{self, catalog};
use orders::http::Application;
use orders::http::auth::{JwtKeys, Role};
use orders::workflows::OrderWorkflow;
use orders::{activities, telemetry, temporal, worker};
use reqwest::{Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgPool;
use temporalio_client::WorkflowFetchHistoryOptions;
use temporalio_common::telemetry::metrics::NoOpCoreMeter;
use temporalio_sdk::Runtime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const VERIFICATION_KEY: &str = "test-verification-key-test-verification-key";

fn required_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run the tests through scripts/test"))
}

/// Settings for one test: its own database and task queue.
pub fn test_settings(database_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        ("DATABASE_URL".into(), database_url.into()),
        ("TEMPORAL_ADDRESS".into(), required_env("ORDERS_TEST_TEMPORAL_ADDRESS")),
        ("TEMPORAL_TASK_QUEUE".into(), format!("orders-test-{}", Uuid::new_v4().simple())),
        ("ORDERS_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("ORDERS_METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("ORDERS_JWT_SECRET".into(), JWT_SECRET.into()),
        ("ORDERS_VERIFICATION_KEY".into(), VERIFICATION_KEY.into()),
        ("ORDERS_DB_MAX_CONNECTIONS".into(), "10".into()),
        ("ORDERS_WORKER_MAX_ACTIVITIES".into(), "4".into()),
        ("ORDERS_WORKER_MAX_LOCAL_ACTIVITIES".into(), "4".into()),
        ("ORDERS_START_RECOVERY_INTERVAL".into(), "1s".into()),
        ("ORDERS_SHUTDOWN_GRACE".into(), "5s".into()),
        ("ORDERS_LOG_FORMAT".into(), "text".into()),
    ]);
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    Settings::from_lookup(&|k| env.get(k).cloned()).expect("test settings are valid")
}

/// Creates an empty, migrated database and returns its URL.
pub async fn fresh_database() -> String {
    let url = empty_database().await;
    let pool = PgPool::connect(&url).await.expect("connect to the test database");
    db::migrate(&pool).await.expect("migrations apply");
    pool.close().await;
    url
}

/// Test databases older than this are dropped when a test creates one: no suite
/// runs this long, and a developer's long-lived Postgres would otherwise collect
/// them by the hundred (each one more for autovacuum to visit).
const TEST_DATABASE_LIFETIME_SECS: u64 = 6 * 3600;

/// Creates an empty database (no migrations applied) and returns its URL. Its
/// name carries its creation time, for the sweep of old ones.
pub async fn empty_database() -> String {
    let admin_url = required_env("ORDERS_TEST_DATABASE_URL");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970");
    let name = format!("orders_test_{}_{}", now.as_secs(), Uuid::new_v4().simple());
    let admin = PgPool::connect(&admin_url).await.expect("connect to the test Postgres");
    sweep_old_databases(&admin, now.as_secs()).await;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create test database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// Drops the test databases created more than `TEST_DATABASE_LIFETIME_SECS` ago
/// (and those named before names carried a time). Best effort: another test
/// process may be dropping the same one.
async fn sweep_old_databases(admin: &PgPool, now: u64) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'orders\\_test\\_%'")
            .fetch_all(admin)
            .await
            .expect("list test databases");
    for (name,) in names {
        let created = name.trim_start_matches("orders_test_").split_once('_').and_then(|(t, _)| t.parse::<u64>().ok());
        if created.is_none_or(|t| now.saturating_sub(t) > TEST_DATABASE_LIFETIME_SECS) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin).await;
        }
    }
}

/// The catalog every test starts with.
pub const WIDGET: (&str, &str, i64, i32) = ("WIDGET-1", "Blue widget", 1999, 100);
pub const GADGET: (&str, &str, i64, i32) = ("GADGET-2", "Red gadget", 4950, 5);
pub const RARE: (&str, &str, i64, i32) = ("RARE-3", "Rare thing", 12000, 1);

pub async fn seed_catalog(pool: &PgPool) {
    for (sku, name, cents, stock) in [WIDGET, GADGET, RARE] {
        catalog::upsert(pool, sku, name, Decimal::new(cents, 2), stock).await.expect("seed catalog");
    }
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub settings: Settings,
    pub http: reqwest::Client,
    worker: Option<TestWorker>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_on(&database_url, extra).await
}

/// An API over an existing database (several apps may share one).
pub async fn spawn_app_on(database_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let _ = telemetry::init(orders::config::LogFormat::Text, "orders-tests");
    let settings = test_settings(database_url, extra);
    let app = Application::build(settings.clone()).await.expect("API binds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.state().pool.clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    seed_catalog(&pool).await;
    TestApp { address, pool, settings, http: orders::tls::client().build().unwrap(), worker: None }
}

pub async fn spawn_app_with_worker() -> TestApp {
    spawn_app_with_worker_and(&[]).await
}

pub async fn spawn_app_with_worker_and(extra: &[(&str, &str)]) -> TestApp {
    let mut app = spawn_app_with(extra).await;
    app.start_worker();
    app
}

pub const TERMINAL: [&str; 4] = ["delivered", "delivery_overdue", "failed", "cancelled"];

/// A worker on its own thread and runtime (`Worker::run` is not `Send`), with its own pool.
struct TestWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Yields how many times the SDK worker was replaced.
    thread: Option<JoinHandle<u64>>,
}

impl TestWorker {
    /// Graceful shutdown; yields how many times the SDK worker was replaced.
    fn stop(&mut self) -> std::thread::Result<u64> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take().map_or(Ok(0), JoinHandle::join)
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn start_worker_thread(settings: Settings) -> TestWorker {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let runtime = Runtime::from_current_tokio(Default::default()).expect("temporal runtime");
            let client = temporal::connect(&settings, "orders-test-worker").await.expect("worker connects");
            let pool = db::pool(&settings).expect("pool");
            let acts =
                activities::from_settings(&settings, pool, activities::OrderMetrics::disabled()).expect("activities");
            ready_tx.send(()).expect("test thread waits");
            let stop = async move {
                let _ = stop_rx.await;
            };
            let meter = Arc::new(NoOpCoreMeter);
            worker::run_until_stopped(&runtime, client, &settings, acts, meter, stop).await.expect("worker runs")
        })
    });
    ready_rx.recv().expect("worker started");
    TestWorker { stop: Some(stop_tx), thread: Some(thread) }
}

impl TestApp {
    pub fn start_worker(&mut self) {
        self.worker = Some(start_worker_thread(self.settings.clone()));
    }

    /// Stops the worker (graceful shutdown) and waits for its thread; returns
    /// how many times the SDK worker was replaced meanwhile.
    pub fn stop_worker(&mut self) -> u64 {
        self.worker.take().map_or(0, |mut w| w.stop().expect("the worker thread ends cleanly"))
    }

    pub fn token(&self, sub: &str, role: Role) -> String {
        JwtKeys::from_settings(self.settings.jwt.as_ref().expect("test settings are the API's too"))
            .expect("keys")
            .issue(sub, role, Duration::from_secs(600))
            .expect("sign")
    }

    pub fn customer(&self, sub: &str) -> String {
        self.token(sub, Role::Customer)
    }

    pub async fn post_order(&self, token: &str, body: &Value) -> Response {
        self.post_order_with_key(token, body, None).await
    }

    pub async fn post_order_with_key(&self, token: &str, body: &Value, key: Option<&str>) -> Response {
        let mut req = self.http.post(format!("{}/orders", self.address)).bearer_auth(token).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.expect("request sent")
    }

    /// GET `path` as `token`: the status and the JSON body (null when there is none).
    pub async fn get_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(format!("{}{path}", self.address)).bearer_auth(token).send().await.expect("sent");
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_order(&self, token: &str, id: &str) -> Response {
        self.http.get(format!("{}/orders/{id}", self.address)).bearer_auth(token).send().await.expect("request sent")
    }

    /// Places an order that must be accepted, and returns its id.
    pub async fn place_order(&self, token: &str, body: &Value) -> String {
        let resp = self.post_order(token, body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await.unwrap_or_default());
        let order: Value = resp.json().await.expect("json");
        order["id"].as_str().expect("id").to_owned()
    }

    /// Polls `GET /orders/{id}` until the order reaches `status` (or fails the test).
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let resp = self.get_order(token, id).await;
            if resp.status() == StatusCode::OK {
                last = resp.json().await.expect("json");
                if last["status"] == status {
                    return last;
                }
                if TERMINAL.contains(&last["status"].as_str().unwrap_or_default()) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order {id} did not reach {status}; last seen: {last:#}");
    }

    pub async fn stock(&self, sku: &str) -> (i32, i32) {
        sqlx::query_as("SELECT available, reserved FROM inventory WHERE sku = $1")
            .bind(sku)
            .fetch_one(&self.pool)
            .await
            .expect("inventory row")
    }

    /// The types of the order's notifications (one per timeline event), oldest first.
    pub async fn notifications(&self, id: &str) -> Vec<String> {
        let id: Uuid = id.parse().expect("uuid");
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT 'order.' || status FROM order_events WHERE order_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .expect("notifications");
        rows.into_iter().map(|(k,)| k).collect()
    }

    /// (kind, status) of the order's payments, charge first.
    pub async fn payments(&self, id: &str) -> Vec<(String, String)> {
        let id: Uuid = id.parse().expect("uuid");
        sqlx::query_as("SELECT kind, status FROM payments WHERE order_id = $1 ORDER BY kind")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .expect("payments")
    }

    pub async fn count(&self, sql: &str, id: &str) -> i64 {
        let id: Uuid = id.parse().expect("uuid");
        let (n,): (i64,) = sqlx::query_as(sql).bind(id).fetch_one(&self.pool).await.expect("count query");
        n
    }
}

/// A valid order body; tests change what they need.
pub fn order_body(items: Value) -> Value {
    json!({
        "items": items,
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701", "country": "US"},
        "payment_method": "credit_card",
        "payment_token": "tok_ok"
    })
}

pub fn widgets(quantity: u32) -> Value {
    order_body(json!([{"sku": WIDGET.0, "quantity": quantity}]))
}

/// The statuses of an order's timeline, oldest first.
pub fn timeline(order: &Value) -> Vec<&str> {
    order["timeline"].as_array().expect("timeline").iter().map(|e| e["status"].as_str().expect("status")).collect()
}

/// Settings that make the simulated carrier report pickup and delivery quickly.
pub const FAST_CARRIER: [(&str, &str); 2] =
    [("ORDERS_SIM_CARRIER_IN_TRANSIT_AFTER", "50ms"), ("ORDERS_SIM_CARRIER_DELIVERED_AFTER", "50ms")];

/// How many local activities of `activity_type` a history (as JSON) records: the
/// core SDK writes one `core_local_activity` marker per finished local activity.
pub fn local_activity_markers(history_json: &[u8], activity_type: &str) -> usize {
    use base64::Engine;
    let history: Value = serde_json::from_slice(history_json).expect("history JSON");
    let events = history["events"].as_array().expect("events");
    events
        .iter()
        .filter_map(|e| e["attributes"].get("MarkerRecordedEventAttributes"))
        .filter(|m| m["marker_name"] == "core_local_activity")
        .filter(|m| {
            let data = m["details"]["data"]["payloads"][0]["data"].as_str().expect("marker data");
            let data = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
            serde_json::from_slice::<Value>(&data).expect("marker JSON")["activity_type"] == activity_type
        })
        .count()
}

/// With ORDERS_RECORD_HISTORIES=1, saves a history for `recorded_histories_still_replay`.
/// Record again only when a change is meant to be incompatible (and is behind `ctx.patched`).
pub fn record_history(name: &str, json: &[u8]) {
    if std::env::var_os("ORDERS_RECORD_HISTORIES").is_some() {
        let path = format!("{}/tests/histories/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

pub async fn capture(app: &TestApp, id: &str, name: &str) {
    capture_workflow(app, &format!("order-{id}"), name).await
}

pub async fn capture_workflow(app: &TestApp, workflow_id: &str, name: &str) {
    if std::env::var_os("ORDERS_RECORD_HISTORIES").is_some() {
        let client = orders::temporal::connect(&app.settings, "test").await.unwrap();
        // Only the history is wanted; the workflow type parameter does not matter for fetching it.
        let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id.to_owned());
        // Waits for the end; a cancelled workflow ends in an error, which is fine here.
        let _ = handle.get_result(Default::default()).await;
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
        record_history(name, &json);
    }
}

/// Appends one fault's outcome to the report at ORDERS_FAULTS_REPORT, when set
/// (scripts/faults prints it as a table): the orders of the load, the faults
/// injected, the recovery time and every invariant violated.
///
/// `recovery` is the time and the step that came last (see `faults::recovery`).
pub fn report_fault(
    fault: &str,
    orders: usize,
    injected: usize,
    recovery: Option<(Duration, String)>,
    violations: &[String],
) {
    let Some(path) = std::env::var_os("ORDERS_FAULTS_REPORT") else { return };
    let line = json!({
        "fault": fault,
        "orders": orders,
        "injected": injected,
        "recovery_seconds": recovery.as_ref().map(|(r, _)| r.as_secs_f64()),
        "slowest": recovery.map(|(_, step)| step),
        "violations": violations,
    });
    use std::io::Write;
    let mut file = std::fs::File::options().create(true).append(true).open(path).expect("open the faults report");
    writeln!(file, "{line}").expect("write the faults report");
}

/// Appends one race's outcome to the report at ORDERS_FAULTS_REPORT, when set:
/// its rounds, the orders they made, how the orders ended (so that a race whose
/// every round went the same way shows), and every invariant violated.
pub fn report_race(race: &str, rounds: usize, orders: usize, ends: &BTreeMap<String, usize>, violations: &[String]) {
    let Some(path) = std::env::var_os("ORDERS_FAULTS_REPORT") else { return };
    let line = json!({"race": race, "rounds": rounds, "orders": orders, "ends": ends, "violations": violations});
    use std::io::Write;
    let mut file = std::fs::File::options().create(true).append(true).open(path).expect("open the faults report");
    writeln!(file, "{line}").expect("write the faults report");
}

/// Accepts every message and keeps its DATA (headers and body).
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> (SmtpSink, String) {
        let sink = SmtpSink::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let messages = sink.messages.clone();
        // Its own thread and runtime: the worker's shutdown may still talk SMTP
        // (a pooled connection's QUIT) while the test's runtime is blocked joining
        // the worker thread; on that runtime the sink would never answer.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let messages = messages.clone();
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut lines = BufReader::new(read).lines();
                        let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                        let mut data: Option<String> = None;
                        while let Ok(Some(line)) = lines.next_line().await {
                            if let Some(buf) = data.as_mut() {
                                if line == "." {
                                    messages.lock().unwrap().push(data.take().unwrap_or_default());
                                    let _ = write.write_all(b"250 queued\r\n").await;
                                } else {
                                    buf.push_str(&line);
                                    buf.push('\n');
                                }
                                continue;
                            }
                            let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                            let reply: &[u8] = match verb.as_str() {
                                "DATA" => {
                                    data = Some(String::new());
                                    b"354 go ahead\r\n"
                                }
                                "QUIT" => {
                                    let _ = write.write_all(b"221 bye\r\n").await;
                                    break;
                                }
                                _ => b"250 ok\r\n",
                            };
                            let _ = write.write_all(reply).await;
                        }
                    });
                }
            });
        });
        (sink, url)
    }

    pub async fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages.lock().unwrap().iter().find(|m| m.contains(what)) {
                return m.clone();
            }
            assert!(Instant::now() < deadline, "no email containing {what:?}: {:?}", self.messages.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl SmtpSink {
    /// The six-digit code in the verification email to `address`.
    pub async fn code_for(&self, address: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.messages.lock().unwrap().iter().rev().find_map(|m| {
                let code = m.split("Your code: ").nth(1)?;
                m.contains(address).then(|| code.chars().take(6).collect::<String>())
            });
            if let Some(code) = found {
                return code;
            }
            assert!(Instant::now() < deadline, "no verification email to {address}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
