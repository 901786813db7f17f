//! The shipped binaries, as processes: `orders-api migrate`, `serve` and
//! `orders-worker` take orders placed over HTTP to their end, expose probes and
//! Prometheus metrics, and stop gracefully on SIGTERM, also under load.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub(crate) fn sigterm(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
    }

    /// Sends SIGTERM and returns whether the process exited cleanly within `within`.
    pub(crate) async fn terminate(&mut self, within: Duration) -> bool {
        self.sigterm();
        self.exited_cleanly(within).await
    }

    pub(crate) async fn exited_cleanly(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A port for a process under test to bind, from below the kernel's ephemeral
/// range (`ip_local_port_range`, 32768–60999 by default): a port that the OS
/// picked for `:0` and that was released can be taken as the local port of any
/// outgoing connection (to Postgres, to Temporal) before the process binds it.
///
/// A port is also handed out once per test run: tests run side by side (nextest
/// runs each in a process of its own), and two could otherwise pick the same free
/// port before either process bound it. The claim is a file created exclusively
/// in a directory of the run's (`NEXTEST_RUN_ID`; this process's id under `cargo test`).
pub(crate) fn free_port() -> u16 {
    let run = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| std::process::id().to_string());
    let claims = std::env::temp_dir().join(format!("orders-test-ports-{run}"));
    std::fs::create_dir_all(&claims).unwrap();
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::fs::File::create_new(claims.join(port.to_string())).is_ok()
        {
            return port;
        }
    }
}

/// An empty database, migrated by the binary itself, and the settings of one stack.
pub(crate) struct Stack {
    env: Vec<(String, String)>,
    pub(crate) db: sqlx::PgPool,
    pub(crate) api: String,
    pub(crate) worker_health: String,
    pub(crate) worker_metrics: String,
    api_metrics: String,
    pub(crate) http: reqwest::Client,
    /// Each process appends its JSON log lines here.
    logs: std::path::PathBuf,
}

impl Stack {
    pub(crate) async fn new() -> Stack {
        Self::with(&[]).await
    }

    pub(crate) async fn with(extra: &[(&str, String)]) -> Stack {
        let admin = std::env::var("ORDERS_TEST_DATABASE_URL").expect("run through scripts/test");
        Self::on(&admin, extra).await
    }

    /// On the Postgres server of `admin` (a URL to a database there we may create others from).
    pub(crate) async fn on(admin: &str, extra: &[(&str, String)]) -> Stack {
        let name = format!("orders_e2e_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.unwrap();
        let database_url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let (api, health, metrics, api_metrics) = (free_port(), free_port(), free_port(), free_port());
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.clone()),
            ("TEMPORAL_ADDRESS", std::env::var("ORDERS_TEST_TEMPORAL_ADDRESS").unwrap()),
            ("TEMPORAL_TASK_QUEUE", format!("orders-e2e-{}", uuid::Uuid::new_v4().simple())),
            ("ORDERS_HTTP_ADDR", format!("127.0.0.1:{api}")),
            ("ORDERS_WORKER_HEALTH_ADDR", format!("127.0.0.1:{health}")),
            ("ORDERS_WORKER_METRICS_ADDR", format!("127.0.0.1:{metrics}")),
            ("ORDERS_METRICS_ADDR", format!("127.0.0.1:{api_metrics}")),
            ("ORDERS_JWT_SECRET", JWT_SECRET.to_owned()),
            ("ORDERS_VERIFICATION_KEY", VERIFICATION_KEY.to_owned()),
            ("ORDERS_START_RECOVERY_INTERVAL", "1s".to_owned()),
            // What production logs, whatever the test run's own level.
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let stack = Stack {
            env,
            db: sqlx::PgPool::connect_lazy(&database_url).unwrap(),
            api: format!("http://127.0.0.1:{api}"),
            worker_health: format!("http://127.0.0.1:{health}"),
            worker_metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            api_metrics: format!("http://127.0.0.1:{api_metrics}/metrics"),
            http: orders::tls::client().timeout(Duration::from_secs(10)).build().unwrap(),
            logs: std::env::temp_dir().join(format!("orders-e2e-{}.log", uuid::Uuid::new_v4().simple())),
        };
        // `migrate` needs the database URL and nothing else (a migration job carries no other secret).
        let migrated = Command::new(env!("CARGO_BIN_EXE_orders-api"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &database_url)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(migrated.success());
        seed_catalog(&stack.db).await;
        stack
    }

    fn binary(&self, name: &str, args: &[&str]) -> Command {
        let path = match name {
            "orders-api" => env!("CARGO_BIN_EXE_orders-api"),
            _ => env!("CARGO_BIN_EXE_orders-worker"),
        };
        let mut cmd = Command::new(path);
        let log = std::fs::File::options().create(true).append(true).open(&self.logs).unwrap();
        cmd.args(args).envs(self.env.iter().cloned()).env("ORDERS_LOG_FORMAT", "json").stdout(log);
        cmd
    }

    async fn wait_ready(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http.get(url).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "{url} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn start_api(&self) -> Process {
        let p = Process(self.binary("orders-api", &["serve"]).spawn().unwrap());
        self.wait_ready(&format!("{}/readyz", self.api)).await;
        p
    }

    pub(crate) async fn start_worker(&self) -> Process {
        let p = Process(self.binary("orders-worker", &[]).spawn().unwrap());
        self.wait_ready(&format!("{}/readyz", self.worker_health)).await;
        p
    }

    /// A Temporal client for this stack's server.
    pub(crate) async fn temporal(&self) -> temporalio_client::Client {
        let var = |k: &str| self.env.iter().rfind(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let settings = test_settings(&var("DATABASE_URL"), &[("TEMPORAL_ADDRESS", &var("TEMPORAL_ADDRESS"))]);
        orders::temporal::connect(&settings, "orders-tests").await.expect("Temporal answers")
    }

    fn token(&self, sub: &str) -> String {
        self.token_as(sub, "customer")
    }

    pub(crate) fn token_as(&self, sub: &str, role: &str) -> String {
        let mut cmd = self.binary("orders-api", &["token", "--sub", sub, "--role", role]);
        // The token goes to our pipe, not to the log file.
        String::from_utf8(cmd.stdout(Stdio::piped()).output().unwrap().stdout).unwrap().trim().to_owned()
    }

    async fn order(&self, token: &str, id: &str) -> Value {
        let resp = self.http.get(format!("{}/orders/{id}", self.api)).bearer_auth(token).send().await.unwrap();
        resp.json().await.unwrap()
    }

    pub(crate) async fn wait_for(&self, token: &str, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let o = self.order(token, id).await;
            if statuses.iter().any(|s| o["status"] == *s) {
                return o;
            }
            assert!(Instant::now() < deadline, "order did not reach {statuses:?}: {o:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.logs).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
            .collect()
    }

    async fn scrape(&self, url: &str) -> String {
        self.http.get(url).send().await.unwrap().error_for_status().unwrap().text().await.unwrap()
    }
}

/// `promtool check metrics` on an exposition: names, types, help and units by the conventions.
fn promtool_check(exposition: &str, what: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed; scripts/test installs it");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool on the {what} metrics:\n{report}");
}

/// The alert rules (helm/orders/files) pass `promtool check rules`, and every
/// metric they and the Grafana dashboard query is one the binaries really expose.
fn alert_rules_are_valid_and_name_real_metrics(expositions: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/orders/files/prometheus-rules.yml");
    let out = Command::new("promtool").args(["check", "rules", path]).output().expect("promtool runs");
    assert!(out.status.success(), "promtool check rules: {}", String::from_utf8_lossy(&out.stdout));
    let rules = std::fs::read_to_string(path).unwrap();
    let dashboard =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/helm/orders/files/grafana-dashboard.json"))
            .unwrap();
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    // Every metric the rules and the dashboard query, ours and the Temporal SDK's. The
    // SDK exposes its failure counters only once something failed (none did here): those
    // are named as in temporalio-sdk-core's telemetry/metrics.rs.
    const SDK_FAILURE_COUNTERS: [&str; 2] =
        ["temporal_workflow_task_execution_failed_total", "temporal_local_activity_execution_failed_total"];
    let names = regex::Regex::new(r"\b(orders|temporal)_[a-z_]+").unwrap();
    for (what, text) in [("rules", &rules), ("dashboard", &dashboard)] {
        for name in names.find_iter(text).map(|m| m.as_str()) {
            let base = name.trim_end_matches("_bucket");
            let exposed = expositions.contains(&format!("# TYPE {base} ")) || SDK_FAILURE_COUNTERS.contains(&base);
            assert!(exposed, "the {what} use {name}, which is not exposed");
        }
    }
}

/// The value of one series (`name{labels}` exactly as exposed), or 0 when absent.
pub(crate) fn series(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn orders_placed_over_http_reach_their_end_through_the_binaries_with_probes_and_metrics() {
    let stack = Stack::new().await;
    let mut api = stack.start_api().await;
    let mut worker = stack.start_worker().await;
    let token = stack.token("e2e-customer");

    let post = |body: Value| stack.http.post(format!("{}/orders", stack.api)).bearer_auth(&token).json(&body).send();
    let mut paid = widgets(2);
    paid["payment_token"] = json!("tok_secret_4242");
    let shipped: Value = post(paid).await.unwrap().json().await.unwrap();
    let mut declined = widgets(1);
    declined["payment_token"] = json!("tok_declined");
    let declined: Value = post(declined).await.unwrap().json().await.unwrap();
    let order = stack.wait_for(&token, shipped["id"].as_str().unwrap(), &["shipped"]).await;
    assert!(order["shipment"]["tracking_number"].is_string());
    stack.wait_for(&token, declined["id"].as_str().unwrap(), &["failed"]).await;

    // Metrics have a listener of their own: the API port does not serve them.
    let public = stack.http.get(format!("{}/metrics", stack.api)).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let api_metrics = stack.scrape(&stack.api_metrics).await;
    promtool_check(&api_metrics, "API");
    assert_eq!(series(&api_metrics, "orders_created_total"), 2.0);
    assert_eq!(series(&api_metrics, r#"orders_http_requests_total{method="POST",route="/orders",status="201"}"#), 2.0);
    assert!(!api_metrics.contains(shipped["id"].as_str().unwrap()), "no ids in labels");

    let worker_metrics = stack.scrape(&stack.worker_metrics).await;
    promtool_check(&worker_metrics, "worker");
    assert!(worker_metrics.contains("temporal_local_activity_execution_latency_seconds"), "the SDK's own metrics");
    assert!(series(&worker_metrics, "orders_payment_declines_total") >= 1.0);
    assert!(series(&worker_metrics, r#"orders_finished_total{status="failed"}"#) >= 1.0, "{worker_metrics}");
    assert!(series(&worker_metrics, r#"orders_compensations_total{step="release_stock"}"#) >= 1.0);
    assert!(worker_metrics.contains("# TYPE orders_workflow_runs_in_memory gauge"), "runs held, beside the cache");
    alert_rules_are_valid_and_name_real_metrics(&format!("{api_metrics}{worker_metrics}"));

    // The container health check: `orders-api probe URL` exits 0 only for a 2xx answer.
    let probe = |url: String| stack.binary("orders-api", &["probe", &url]).stderr(Stdio::null()).status().unwrap();
    assert!(probe(format!("{}/readyz", stack.api)).success());
    assert!(probe(format!("{}/readyz", stack.worker_health)).success());
    assert!(!probe(format!("{}/no-such-route", stack.api)).success());
    assert!(!probe(format!("http://127.0.0.1:{}/readyz", free_port())).success());

    assert!(worker.terminate(Duration::from_secs(15)).await, "worker exits cleanly on SIGTERM");
    assert!(api.terminate(Duration::from_secs(15)).await, "API exits cleanly on SIGTERM");

    // Logs: JSON lines; an activity's lines name the order, request lines the request id;
    // neither the payment token, the bearer token nor the signing secret ever appears.
    let lines = stack.log_lines();
    let text = std::fs::read_to_string(&stack.logs).unwrap();
    let _ = std::fs::remove_file(&stack.logs);
    assert!(lines.iter().any(|l| l.to_string().contains(shipped["id"].as_str().unwrap())), "the order is in the logs");
    for secret in ["tok_secret_4242", token.as_str(), JWT_SECRET] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
    }
    let in_span = |l: &Value, field: &str| {
        l.get(field).is_some() || l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s.get(field).is_some()))
    };
    let activity_lines: Vec<&Value> = lines.iter().filter(|l| in_span(l, "activity")).collect();
    assert!(!activity_lines.is_empty(), "activities log");
    for l in activity_lines {
        assert!(in_span(l, "order_id") || in_span(l, "user_id"), "an activity line without its order: {l}");
    }
    for l in lines.iter().filter(|l| l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "http"))) {
        assert!(in_span(l, "request_id"), "a request's line without its request id: {l}");
    }
}

/// A Temporal dev server of the test's own (the shared one cannot be restarted),
/// on a state file that survives restarts.
pub(crate) struct OwnTemporal {
    pub(crate) port: u16,
    db: std::path::PathBuf,
    process: Option<Process>,
}

impl OwnTemporal {
    pub(crate) async fn start() -> OwnTemporal {
        let db = std::env::temp_dir().join(format!("orders-faults-{}.db", uuid::Uuid::new_v4().simple()));
        let mut t = OwnTemporal { port: free_port(), db, process: None };
        t.restart().await;
        t
    }

    pub(crate) async fn restart(&mut self) {
        let cli = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/temporal");
        let (port, http, metrics) = (self.port.to_string(), free_port().to_string(), free_port().to_string());
        let child = Command::new(cli)
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", &port, "--http-port", &http])
            .args(["--metrics-port", &metrics, "--log-level", "error", "--db-filename"])
            .arg(&self.db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Temporal CLI is in .venv (scripts/test installs it)");
        self.process = Some(Process(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "the Temporal dev server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            assert!(p.terminate(Duration::from_secs(20)).await, "the Temporal dev server stops on SIGTERM");
        }
    }
}

impl Drop for OwnTemporal {
    fn drop(&mut self) {
        self.process.take();
        let _ = std::fs::remove_file(&self.db);
    }
}

/// The spans a local OTLP receiver got, by id.
struct Spans(std::collections::HashMap<String, Value>);

impl Spans {
    fn read(ndjson: &str) -> Spans {
        let spans = ndjson.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str::<Value>(l).unwrap());
        Spans(
            spans.filter(|s| s["spanId"].is_string()).map(|s| (s["spanId"].as_str().unwrap().to_owned(), s)).collect(),
        )
    }

    /// The one span named `name` whose parent is `parent`.
    fn child(&self, parent: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self.0.values().filter(|s| s["parentSpanId"] == parent && s["name"] == name).collect();
        assert_eq!(found.len(), 1, "one {name} under {parent}; spans: {:#?}", self.names());
        found[0]
    }

    /// The first span named `name` somewhere below `ancestor`.
    fn descendant(&self, ancestor: &str, name: &str) -> &Value {
        let below = |s: &Value| {
            let mut p = s["parentSpanId"].as_str().unwrap_or("");
            while let Some(parent) = self.0.get(p) {
                if p == ancestor {
                    return true;
                }
                p = parent["parentSpanId"].as_str().unwrap_or("");
            }
            p == ancestor
        };
        let found = self.0.values().find(|s| s["name"] == name && below(s));
        found.unwrap_or_else(|| panic!("no {name} below {ancestor}; spans: {:#?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.0.values().map(|s| format!("{} <- {}", s["name"], s["parentSpanId"])).collect();
        n.sort();
        n
    }
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, one order is one trace, continued from the
/// storefront's `traceparent`: the HTTP request, the workflow start, the workflow,
/// each activity and the SQL it ran, exported by both binaries to a real OTLP receiver.
#[tokio::test]
async fn one_order_is_one_trace_from_the_storefronts_traceparent_to_the_sql() {
    let receiver_port = free_port();
    let oteltap = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/oteltap");
    let received = std::env::temp_dir().join(format!("orders-otlp-{}.ndjson", uuid::Uuid::new_v4().simple()));
    let mut receiver = Process(
        Command::new(oteltap)
            .args(["--port", &receiver_port.to_string()])
            .stdout(std::fs::File::create(&received).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("oteltap is in .venv (scripts/test installs it)"),
    );
    let stack = Stack::with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{receiver_port}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        // The workflow span ends with the workflow: let the carrier deliver at once.
        ("ORDERS_SIM_CARRIER_IN_TRANSIT_AFTER", "0s".into()),
        ("ORDERS_SIM_CARRIER_DELIVERED_AFTER", "0s".into()),
    ])
    .await;
    let mut api = stack.start_api().await;
    let mut worker = stack.start_worker().await;
    let token = stack.token("traced-customer");

    let (trace_id, storefront_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let created: Value = stack
        .http
        .post(format!("{}/orders", stack.api))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{storefront_span}-01"))
        .json(&widgets(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    stack.wait_for(&token, id, &["delivered"]).await;
    // The run's span ends with the run: wait for the workflow to complete (its
    // last task follows the status) before stopping, which flushes both exporters.
    let handle = stack.temporal().await.get_workflow_handle::<orders::workflows::OrderWorkflow>(format!("order-{id}"));
    let outcome = tokio::time::timeout(Duration::from_secs(30), handle.get_result(Default::default())).await;
    assert!(matches!(outcome, Ok(Ok(_))), "the workflow completes: {outcome:?}");
    assert!(worker.terminate(Duration::from_secs(15)).await);
    assert!(api.terminate(Duration::from_secs(15)).await);
    // The receiver writes what it got as it gets it: wait for the run's span.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&received).unwrap_or_default().contains("RunWorkflow:OrderWorkflow") {
        assert!(Instant::now() < deadline, "the worker's spans never reached the receiver");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = receiver.0.kill();

    let spans = Spans::read(&std::fs::read_to_string(&received).unwrap());
    let _ = std::fs::remove_file(&received);
    let request = spans.child(storefront_span, "POST /orders");
    assert_eq!(request["traceId"], trace_id, "the storefront's trace is continued");
    let request = request["spanId"].as_str().unwrap();
    spans.descendant(request, "db.orders.insert");
    let start = spans.descendant(request, "StartWorkflow:OrderWorkflow")["spanId"].as_str().unwrap();
    let run = spans.child(start, "RunWorkflow:OrderWorkflow")["spanId"].as_str().unwrap();
    for (activity, sql) in [
        ("ReserveInventory", "db.inventory.reserve"),
        ("ChargePayment", "db.orders.transition_recording"),
        ("BookShipment", "db.orders.transition_recording"),
    ] {
        let scheduled = spans.child(run, &format!("StartActivity:{activity}"))["spanId"].as_str().unwrap();
        let ran = spans.child(scheduled, &format!("RunActivity:{activity}"))["spanId"].as_str().unwrap();
        let ours = spans.child(ran, activity);
        assert_eq!(ours["traceId"], trace_id);
        spans.descendant(ours["spanId"].as_str().unwrap(), sql);
    }
}

/// A Postgres server of the test's own (the shared one cannot be restarted), set
/// up by the same shell functions as scripts/test.
pub(crate) struct OwnPostgres {
    dir: std::path::PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn lib(script: &str, args: &[&str]) -> bool {
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib.sh");
        Command::new("bash")
            .arg("-c")
            .arg(format!("source '{lib}' && ensure_postgres && {script}"))
            .arg("bash")
            .args(args)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub(crate) fn start() -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!("orders-faults-pg-{}", uuid::Uuid::new_v4().simple()));
        let pg = OwnPostgres { dir, port: free_port() };
        pg.up();
        pg
    }

    pub(crate) fn up(&self) {
        let (dir, port) = (self.dir.to_string_lossy().into_owned(), self.port.to_string());
        assert!(Self::lib(r#"PG_FSYNC=off start_postgres "$1" "$2""#, &[&dir, &port]), "Postgres starts");
    }

    pub(crate) fn down(&self) {
        let dir = self.dir.to_string_lossy().into_owned();
        let stop = r#"if id postgres >/dev/null 2>&1; then su postgres -s /bin/sh -c "'$PGBIN/pg_ctl' -D '$1' -m fast -w stop"; else "$PGBIN/pg_ctl" -D "$1" -m fast -w stop; fi"#;
        assert!(Self::lib(stop, &[&dir]), "Postgres stops");
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority and a server certificate for 127.0.0.1, made with
/// the openssl CLI in `dir`: (ca.pem, server.pem, server.key).
pub(crate) fn tls_files(dir: &std::path::Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=orders test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("san.ext"),
        "-out",
        &path("server.pem"),
    ]);
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

/// Spans go to an `https://` collector: TLS verified against the CA that
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` names, with `OTEL_EXPORTER_OTLP_HEADERS` sent.
#[tokio::test]
async fn spans_reach_a_collector_over_tls_with_its_headers() {
    let dir = std::env::temp_dir().join(format!("orders-otlp-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = tls_files(&dir);
    let port = free_port();
    let received = dir.join("received.ndjson");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_tls_receiver.py");
    let _receiver = Process(
        Command::new("python3")
            .args([script, &port.to_string(), &cert, &key])
            .stdout(std::fs::File::create(&received).unwrap())
            .spawn()
            .expect("python3 runs"),
    );
    let stack = Stack::with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://127.0.0.1:{port}")),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ])
    .await;
    let _api = stack.start_api().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        stack.http.get(format!("{}/products", stack.api)).send().await.unwrap();
        let lines = std::fs::read_to_string(&received).unwrap_or_default();
        if let Some(line) = lines.lines().find(|l| l.contains("/v1/traces")) {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no spans reached the TLS collector: {lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(exported["tenant"], "acme", "OTEL_EXPORTER_OTLP_HEADERS reaches the collector");
    assert!(exported["bytes"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
