//! Faults, proven on the shipped binaries: crashes and restarts of every process
//! and server while storefront clients keep placing a mixed load, then every
//! invariant about orders, money, stock and notifications checked.
//!
//! `scripts/test` runs the short form; `scripts/faults` sets ORDERS_FAULTS_LONG
//! (more clients and orders, repeated injections) and prints the per-fault report
//! each test appends to ORDERS_FAULTS_REPORT.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orders::db::catalog;
use orders::readiness::{CHECK_TIMEOUT, FRESH_FOR};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::e2e::{OwnPostgres, OwnTemporal, Process, Stack};
use crate::invariants::{check_records, check_workflows_agree, mail_sink_env};
use crate::support::*;

/// What a storefront order of the load is meant to exercise, and so how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paid,
    Declined,
    /// The simulated gateway times out twice for the order, then charges it.
    Flaky,
    OutOfStock,
    /// Cancelled by the customer right after placing it.
    Cancelled,
    /// Above the review threshold; an admin approves it.
    Approved,
    /// Above the review threshold; an admin rejects it.
    Rejected,
}

const MIX: [Kind; 8] = [
    Kind::Paid,
    Kind::Declined,
    Kind::Flaky,
    Kind::OutOfStock,
    Kind::Cancelled,
    Kind::Approved,
    Kind::Rejected,
    Kind::Paid,
];

/// Plenty for the whole load: no order of it fails for stock but the out-of-stock ones.
const LOAD_SKU: (&str, i32) = ("LOAD-1", 1_000_000);
/// Never in stock.
const GONE_SKU: &str = "GONE-1";
/// 25 × 19.99 is at the threshold of 400 the stacks here run with.
const REVIEW_QUANTITY: u32 = 25;
const REVIEW_THRESHOLD: &str = "400";

struct Scale {
    clients: usize,
    orders_per_client: usize,
    injections: usize,
}

fn scale() -> Scale {
    if std::env::var_os("ORDERS_FAULTS_LONG").is_some() {
        Scale { clients: 8, orders_per_client: 24, injections: 3 }
    } else {
        Scale { clients: 4, orders_per_client: 8, injections: 1 }
    }
}

fn body(kind: Kind) -> Value {
    let (sku, quantity) = match kind {
        Kind::OutOfStock => (GONE_SKU, 1),
        Kind::Approved | Kind::Rejected => (LOAD_SKU.0, REVIEW_QUANTITY),
        _ => (LOAD_SKU.0, 1),
    };
    let mut body = order_body(json!([{"sku": sku, "quantity": quantity}]));
    body["payment_token"] = json!(match kind {
        Kind::Declined => "tok_declined",
        Kind::Flaky => "tok_flaky",
        _ => "tok_ok",
    });
    body
}

/// One placed order and what became of the customer's or admin's action on it.
#[derive(Debug, Clone)]
struct Placed {
    id: String,
    kind: Kind,
    /// For `Cancelled`: the cancel was accepted (200), not refused as too late (409).
    cancel_accepted: bool,
}

/// A stack for the faults: the simulated parties, a low review threshold and the
/// load's SKUs; the test itself is the carrier (see `settle`).
async fn fault_stack(on: Option<&str>, extra: &[(&str, String)]) -> Stack {
    let mut env = vec![("ORDERS_REVIEW_THRESHOLD", REVIEW_THRESHOLD.to_owned()), mail_sink_env().await];
    env.extend(extra.iter().cloned());
    let stack = match on {
        Some(admin) => Stack::on(admin, &env).await,
        None => Stack::with(&env).await,
    };
    let price = Decimal::new(1999, 2);
    catalog::upsert(&stack.db, LOAD_SKU.0, "Load widget", price, LOAD_SKU.1).await.expect("seed");
    catalog::upsert(&stack.db, GONE_SKU, "Sold-out widget", price, 0).await.expect("seed");
    stack
}

/// Sends a request until an answer that is not "try again": 503 and no answer
/// (the API restarting) are retried; anything else is returned.
async fn until_answered(send: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match send().send().await {
            Ok(r) if r.status() != 503 => return r,
            Ok(_) | Err(_) => {}
        }
        assert!(Instant::now() < deadline, "the API did not come back within two minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The storefront clients (and the admin reviewing their big orders), each placing
/// its orders one after another and retrying each POST with its `Idempotency-Key`.
/// Each places at least its share and goes on until the test has injected its
/// faults, so that every fault lands while orders arrive.
struct Load {
    clients: Vec<tokio::task::JoinHandle<Vec<Placed>>>,
    done: Arc<AtomicBool>,
}

impl Load {
    fn start(stack: &Stack, tag: &str) -> Load {
        let s = scale();
        let done = Arc::new(AtomicBool::new(false));
        let (customer, admin) = (stack.token_as(&format!("faults-{tag}"), "customer"), stack.token_as("ops", "admin"));
        let clients = (0..s.clients)
            .map(|c| {
                let (http, base) = (stack.http.clone(), stack.api.clone());
                let (customer, admin, done) = (customer.clone(), admin.clone(), done.clone());
                tokio::spawn(async move {
                    let mut placed = Vec::new();
                    let mut n = 0;
                    while n < s.orders_per_client || !done.load(Ordering::Relaxed) {
                        let kind = MIX[(c + n) % MIX.len()];
                        let key = format!("{c}-{n}");
                        let body = body(kind);
                        let resp = until_answered(|| {
                            http.post(format!("{base}/orders"))
                                .bearer_auth(&customer)
                                .header("Idempotency-Key", &key)
                                .json(&body)
                        })
                        .await;
                        assert!(resp.status().is_success(), "POST /orders for {kind:?}: {}", resp.status());
                        let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                        let order = format!("{base}/orders/{id}");
                        let mut cancel_accepted = false;
                        match kind {
                            Kind::Cancelled => {
                                let reason = json!({"reason": "changed my mind"});
                                let resp = until_answered(|| {
                                    http.post(format!("{order}/cancel")).bearer_auth(&customer).json(&reason)
                                })
                                .await;
                                assert!([200, 409].contains(&resp.status().as_u16()), "cancel: {}", resp.status());
                                cancel_accepted = resp.status() == 200;
                            }
                            Kind::Approved | Kind::Rejected => {
                                let deadline = Instant::now() + Duration::from_secs(120);
                                loop {
                                    let resp = until_answered(|| http.get(&order).bearer_auth(&admin)).await;
                                    let status = resp.json::<Value>().await.unwrap()["status"].clone();
                                    if status == "awaiting_review" {
                                        break;
                                    }
                                    assert!(Instant::now() < deadline, "never held for review: {status}");
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                let decision = if kind == Kind::Approved { "approve" } else { "reject" };
                                let review = json!({"decision": decision});
                                let resp = until_answered(|| {
                                    http.post(format!("{order}/review")).bearer_auth(&admin).json(&review)
                                })
                                .await;
                                assert_eq!(resp.status(), 202, "review");
                            }
                            _ => {}
                        }
                        placed.push(Placed { id, kind, cancel_accepted });
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    placed
                })
            })
            .collect();
        Load { clients, done }
    }
}

/// A moment just before a fault (by the database's clock, which stamps the
/// timeline), the orders then in the service's own hands and, for each, the last
/// event it had: its next step is the first event after that one. (Event ids, not
/// times, tell "after": an event is stamped when its transaction began, which may
/// be before the mark although it became visible after.)
struct Mark {
    at: DateTime<Utc>,
    in_flight: Vec<Uuid>,
    last_event: Vec<i64>,
}

async fn mark(stack: &Stack) -> Mark {
    let (at,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()").fetch_one(&stack.db).await.unwrap();
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT o.id, COALESCE((SELECT max(e.id) FROM order_events e WHERE e.order_id = o.id), 0)
           FROM orders o WHERE o.status IN ('pending', 'reserved', 'paid')",
    )
    .fetch_all(&stack.db)
    .await
    .unwrap();
    let (in_flight, last_event) = rows.into_iter().unzip();
    Mark { at, in_flight, last_event }
}

/// Recovery: how long after the fault the last of the orders then in flight took
/// its next step, and which step of which order that was (None when none was in flight).
async fn recovery(stack: &Stack, marks: &[Mark]) -> Option<(Duration, String)> {
    let mut worst: Option<(Duration, String)> = None;
    for m in marks.iter().filter(|m| !m.in_flight.is_empty()) {
        let slowest: Option<(Uuid, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT e.order_id, e.at, e.status
               FROM unnest($1::uuid[], $2::bigint[]) AS m(order_id, seen)
               JOIN order_events e ON e.order_id = m.order_id AND e.id > m.seen
              WHERE NOT EXISTS (SELECT 1 FROM order_events f
                                 WHERE f.order_id = e.order_id AND f.id > m.seen AND f.id < e.id)
              ORDER BY e.at DESC LIMIT 1",
        )
        .bind(&m.in_flight)
        .bind(&m.last_event)
        .fetch_optional(&stack.db)
        .await
        .unwrap();
        if let Some((id, at, status)) = slowest {
            let took = (at - m.at).to_std().unwrap_or_default();
            if worst.as_ref().is_none_or(|(w, _)| took > *w) {
                worst = Some((took, format!("{status} (order {id})")));
            }
        }
    }
    worst
}

/// The end an order of this kind must reach.
fn expected_end(p: &Placed) -> (&'static str, Option<&'static str>) {
    match p.kind {
        Kind::Paid | Kind::Flaky | Kind::Approved => ("delivered", None),
        Kind::Cancelled if !p.cancel_accepted => ("delivered", None),
        Kind::Cancelled => ("cancelled", Some("cancel_requested")),
        Kind::Rejected => ("cancelled", Some("review_rejected")),
        Kind::Declined => ("failed", Some("payment_declined")),
        Kind::OutOfStock => ("failed", Some("out_of_stock")),
    }
}

/// Once the clients are done: the test acts as the carrier for every shipped
/// order (picked up, then delivered), and waits for every order to end.
/// Returns the orders as they ended, or a violation for each one stuck.
async fn settle(stack: &Stack, placed: &[Placed], violations: &mut Vec<String>) -> Vec<Value> {
    let (admin, carrier) = (stack.token_as("ops", "admin"), stack.token_as("carrier", "carrier"));
    let mut ended = Vec::new();
    for p in placed {
        let url = format!("{}/orders/{}", stack.api, p.id);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut reported = false;
        let order = loop {
            let order: Value = until_answered(|| stack.http.get(&url).bearer_auth(&admin)).await.json().await.unwrap();
            let status = order["status"].as_str().unwrap_or_default().to_owned();
            if ["delivered", "failed", "cancelled", "delivery_overdue"].contains(&status.as_str()) {
                break order;
            }
            if status == "shipped" && !reported {
                for event in ["in_transit", "delivered"] {
                    let report = json!({"event": event, "at": Utc::now().to_rfc3339(), "detail": "faults harness"});
                    let r = until_answered(|| {
                        stack.http.post(format!("{url}/shipment-events")).bearer_auth(&carrier).json(&report)
                    })
                    .await;
                    assert_eq!(r.status(), 202, "carrier event {event}");
                }
                reported = true;
            }
            if Instant::now() > deadline {
                violations.push(format!("order {} ({:?}) stuck at {status}", p.id, p.kind));
                break order;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        ended.push(order);
    }
    ended
}

/// The simulated gateway counts a `tok_flaky` order's calls in the worker's
/// memory: a restarted worker's gateway fails its first two calls again. The
/// service gives up after the gateway's third failed call (counted in Postgres),
/// and so may rightly fail such an order when a worker was restarted mid-payment.
async fn gateway_gave_up(stack: &Stack, order: &Value) -> bool {
    // The gateway's own failed answers, not the calls counted (a count our own
    // database kept from becoming a call does not make the gateway give up).
    let failures: Option<i32> =
        sqlx::query_scalar("SELECT failures FROM party_calls WHERE order_id = $1::uuid AND step = 'charge'")
            .bind(order["id"].as_str())
            .fetch_optional(&stack.db)
            .await
            .unwrap();
    order["status"] == "failed" && order["reason"] == "payment_failed" && failures.is_some_and(|c| c >= 3)
}

/// Every invariant of the issue, as violations (empty when all hold).
async fn check_invariants(stack: &Stack, placed: &[Placed], workers_restarted: bool) -> Vec<String> {
    let mut v = Vec::new();
    let ended = settle(stack, placed, &mut v).await;
    // Each order reached the end its kind calls for.
    for (p, order) in placed.iter().zip(&ended) {
        let (status, reason) = expected_end(p);
        if p.kind == Kind::Flaky && workers_restarted && gateway_gave_up(stack, order).await {
            continue;
        }
        if order["status"] != status || reason.is_some_and(|r| order["reason"] != r) {
            v.push(format!(
                "order {} ({:?}) ended {} ({}), expected {status} ({reason:?})",
                p.id, p.kind, order["status"], order["reason"]
            ));
        }
    }
    // One order (and so one workflow, whose id is the order's) per idempotency key.
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&stack.db).await.unwrap();
    let mut ids: Vec<&str> = placed.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if orders as usize != placed.len() || ids.len() != placed.len() {
        v.push(format!("{} keys made {orders} orders ({} distinct ids answered)", placed.len(), ids.len()));
    }
    v.extend(check_records(&stack.db, &[LOAD_SKU, (GONE_SKU, 0)]).await);
    v.extend(check_workflows_agree(&stack.db, &stack.temporal().await).await);
    v
}

/// Stops the load, checks every invariant, reports the fault and fails the test
/// on any violation.
async fn conclude(fault: &str, stack: &Stack, load: Load, marks: &[Mark], workers_restarted: bool) {
    load.done.store(true, Ordering::Relaxed);
    let mut placed = Vec::new();
    for c in load.clients {
        placed.extend(c.await.expect("a storefront client failed"));
    }
    let violations = check_invariants(stack, &placed, workers_restarted).await;
    report_fault(fault, placed.len(), marks.len(), recovery(stack, marks).await, &violations);
    assert!(violations.is_empty(), "{fault}: {violations:#?}");
    assert!(marks.iter().all(|m| !m.in_flight.is_empty()), "every fault came with orders in flight");
}

/// Lets some orders get under way before the next fault.
async fn under_way(stack: &Stack) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    // On a slow machine the load may take longer to get going: a fault with
    // nothing in flight would prove nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_flight: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status IN ('pending', 'reserved', 'paid')")
                .fetch_one(&stack.db)
                .await
                .unwrap();
        if in_flight > 0 || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill_9(p: Process) {
    // Dropping a Process sends SIGKILL and reaps it: no drain, and tasks in
    // flight are left to Temporal's timeouts.
    drop(p);
}

/// Fault 1: `kill -9` of the worker mid-run, started again.
#[tokio::test]
async fn the_worker_killed_with_sigkill_loses_and_doubles_nothing() {
    let stack = fault_stack(None, &[]).await;
    let api = stack.start_api().await;
    let mut worker = stack.start_worker().await;
    let load = Load::start(&stack, "worker-kill");
    let mut marks = Vec::new();
    for _ in 0..scale().injections {
        under_way(&stack).await;
        marks.push(mark(&stack).await);
        kill_9(worker);
        worker = stack.start_worker().await;
    }
    conclude("1. kill -9 the worker", &stack, load, &marks, true).await;
    drop((worker, api));
}

/// Fault 2: Postgres restarted mid-run: meanwhile the API answers 503
/// problem+json (the clients accept nothing else: never a 500), and it recovers by itself.
#[tokio::test]
async fn a_postgres_restart_answers_503_meanwhile_and_loses_nothing() {
    let pg = OwnPostgres::start();
    let stack = fault_stack(Some(&pg.url()), &[]).await;
    let api = stack.start_api().await;
    let worker = stack.start_worker().await;
    let load = Load::start(&stack, "pg-restart");
    let token = stack.token_as("faults-pg", "customer");
    let mut marks = Vec::new();
    for _ in 0..scale().injections {
        under_way(&stack).await;
        marks.push(mark(&stack).await);
        pg.down();
        let resp = stack.http.post(format!("{}/orders", stack.api)).bearer_auth(&token).json(&body(Kind::Paid)).send();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 503, "Postgres away: try again");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        // A probe may hear a check up to FRESH_FOR old; the first check after Postgres stopped says 503.
        let deadline = Instant::now() + FRESH_FOR + CHECK_TIMEOUT + Duration::from_secs(2);
        loop {
            let ready = stack.http.get(format!("{}/readyz", stack.api)).send().await.unwrap();
            if ready.status() == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "still {} without Postgres", ready.status());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The fault lasts a second more while the load keeps arriving.
        tokio::time::sleep(Duration::from_secs(1)).await;
        pg.up();
    }
    conclude("2. restart Postgres", &stack, load, &marks, false).await;
    drop((worker, api));
}

/// Fault 3: the Temporal server restarted mid-run, its state file kept.
#[tokio::test]
async fn a_temporal_restart_loses_and_doubles_nothing() {
    let mut temporal = OwnTemporal::start().await;
    let stack = fault_stack(None, &[("TEMPORAL_ADDRESS", format!("127.0.0.1:{}", temporal.port))]).await;
    let api = stack.start_api().await;
    let worker = stack.start_worker().await;
    let load = Load::start(&stack, "temporal-restart");
    let mut marks = Vec::new();
    for _ in 0..scale().injections {
        under_way(&stack).await;
        marks.push(mark(&stack).await);
        temporal.stop().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        temporal.restart().await;
    }
    conclude("3. restart Temporal", &stack, load, &marks, false).await;
    drop((worker, api));
}

/// Fault 4: `kill -9` of the API while clients retry their POSTs with the same key.
#[tokio::test]
async fn the_api_killed_with_sigkill_makes_one_order_per_key() {
    let stack = fault_stack(None, &[]).await;
    let mut api = stack.start_api().await;
    let worker = stack.start_worker().await;
    let load = Load::start(&stack, "api-kill");
    let mut marks = Vec::new();
    for _ in 0..scale().injections {
        under_way(&stack).await;
        marks.push(mark(&stack).await);
        kill_9(api);
        api = stack.start_api().await;
    }
    conclude("4. kill -9 the API", &stack, load, &marks, false).await;
    drop((worker, api));
}

/// Fault 7: two workers on the same task queue, one of them killed again and again.
#[tokio::test]
async fn two_racing_workers_one_killed_repeatedly_lose_and_double_nothing() {
    let stack = fault_stack(None, &[]).await;
    let api = stack.start_api().await;
    let steady = stack.start_worker().await;
    let mut victim = stack.start_worker().await;
    let load = Load::start(&stack, "two-workers");
    let mut marks = Vec::new();
    for _ in 0..scale().injections * 3 {
        under_way(&stack).await;
        marks.push(mark(&stack).await);
        kill_9(victim);
        victim = stack.start_worker().await;
    }
    conclude("7. two workers, one killed repeatedly", &stack, load, &marks, true).await;
    drop((steady, victim, api));
}

/// SIGTERM to the worker and then to the API mid-run: readiness goes first, both
/// drain, and once both run again nothing is lost or doubled.
#[tokio::test]
async fn sigterm_to_the_worker_and_the_api_loses_and_doubles_nothing() {
    // A second of "not ready but still serving" after SIGTERM, as behind a load balancer.
    let stack = fault_stack(None, &[("ORDERS_SHUTDOWN_DELAY", "1s".into())]).await;
    let mut api = stack.start_api().await;
    let mut worker = stack.start_worker().await;
    let load = Load::start(&stack, "sigterm");

    under_way(&stack).await;
    let mut marks = vec![mark(&stack).await];
    worker.sigterm();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // From the signal on, the worker is never ready again: 503 while it drains, then gone.
    let ready = stack.http.get(format!("{}/readyz", stack.worker_health)).send().await;
    assert!(ready.map(|r| r.status() == 503).unwrap_or(true), "a stopping worker is not ready");
    assert!(worker.exited_cleanly(Duration::from_secs(20)).await, "the worker drains and exits on SIGTERM");
    let worker = stack.start_worker().await;
    under_way(&stack).await;
    marks.push(mark(&stack).await);
    api.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = stack.http.get(format!("{}/readyz", stack.api)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready from the signal on");
    let live = stack.http.get(format!("{}/healthz", stack.api)).send().await.unwrap();
    assert_eq!(live.status(), 200, "still serving during ORDERS_SHUTDOWN_DELAY");
    assert!(api.exited_cleanly(Duration::from_secs(20)).await, "the API drains and exits on SIGTERM");
    let api = stack.start_api().await;
    conclude("SIGTERM the worker, then the API", &stack, load, &marks, true).await;
    drop((worker, api));
}
