//! Races, proven on the shipped binaries: two callers (or a caller and the
//! carrier, a review decision, the workflow's own step) act on one order at the
//! same moment, round after round. The first decision recorded must win, the
//! loser must hear what won (409, never a 5xx or a hang), and every order must
//! end where its records say, its workflow's result included (`invariants`).
//!
//! `scripts/test` runs a few rounds of each; `scripts/faults` (ORDERS_FAULTS_LONG)
//! at least thirty, and prints each race's row in its report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orders::db::catalog;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::e2e::Stack;
use crate::invariants::{check_records, check_workflows_agree, mail_sink_env};
use crate::support::*;

/// Plenty for every round.
const LOAD_SKU: (&str, i32) = ("RACE-1", 1_000_000);
/// 25 × 19.99 is at the review threshold of these stacks.
const REVIEW_QUANTITY: u32 = 25;
/// An address the simulated carrier does not serve: a booking with it fails,
/// so how an order ends tells which address the carrier got.
const UNSERVED: &str = "00000";

struct Scale {
    rounds: usize,
    /// Rounds run at once (their timing varies with the load they make).
    batch: usize,
}

fn scale() -> Scale {
    if std::env::var_os("ORDERS_FAULTS_LONG").is_some() {
        Scale { rounds: 30, batch: 10 }
    } else {
        Scale { rounds: 4, batch: 4 }
    }
}

/// The answers of one round: what was sent, and its status.
#[derive(Debug, Clone)]
struct Round {
    id: String,
    /// Which variant of the race this round ran.
    variant: &'static str,
    answers: Vec<(&'static str, u16)>,
}

impl Round {
    fn answer(&self, what: &str) -> u16 {
        self.answers.iter().find(|(w, _)| *w == what).map_or(0, |(_, s)| *s)
    }
    fn accepted(&self, what: &str) -> bool {
        (200..300).contains(&self.answer(what))
    }
}

/// One race's stack, its callers, and every answer they got.
struct Race {
    stack: Stack,
    customer: String,
    admin: String,
    carrier: String,
    /// Answers that break the contract: 5xx, no answer, or a status no rule allows.
    bad_answers: Arc<Mutex<Vec<String>>>,
}

impl Race {
    /// The real API and worker over a fresh database; the simulated carrier
    /// reports pickup and delivery by itself shortly after booking, racing the
    /// callers (and the harness, acting as the carrier too).
    async fn start() -> (Race, Vec<crate::e2e::Process>) {
        let env = [
            ("ORDERS_REVIEW_THRESHOLD", "400".to_owned()),
            ("ORDERS_SIM_CARRIER_IN_TRANSIT_AFTER", "100ms".to_owned()),
            ("ORDERS_SIM_CARRIER_DELIVERED_AFTER", "100ms".to_owned()),
            // Many rounds at once from one customer and one admin: not what is under test.
            ("ORDERS_RATE_LIMIT_PER_SECOND", "10000".to_owned()),
            ("ORDERS_RATE_LIMIT_BURST", "10000".to_owned()),
            mail_sink_env().await,
        ];
        let stack = Stack::with(&env).await;
        catalog::upsert(&stack.db, LOAD_SKU.0, "Race widget", Decimal::new(1999, 2), LOAD_SKU.1).await.unwrap();
        let processes = vec![stack.start_api().await, stack.start_worker().await];
        let race = Race {
            customer: stack.token_as("racer", "customer"),
            admin: stack.token_as("ops", "admin"),
            carrier: stack.token_as("ups", "carrier"),
            stack,
            bad_answers: Arc::default(),
        };
        (race, processes)
    }

    /// Sends a request and returns its status; anything but `allowed` is a violation.
    async fn send(&self, what: &str, req: reqwest::RequestBuilder, allowed: &[u16]) -> u16 {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if !allowed.contains(&status) {
                    let body = resp.text().await.unwrap_or_default();
                    self.bad_answers.lock().unwrap().push(format!("{what}: {status} {body}"));
                }
                status
            }
            Err(e) => {
                self.bad_answers.lock().unwrap().push(format!("{what}: no answer ({e})"));
                0
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.api)
    }

    async fn place(&self, quantity: u32, token: &str) -> String {
        let mut body = order_body(json!([{"sku": LOAD_SKU.0, "quantity": quantity}]));
        body["payment_token"] = json!(token);
        let resp = self.stack.http.post(self.url("/orders")).bearer_auth(&self.customer).json(&body).send().await;
        let resp = resp.expect("POST /orders answers");
        assert_eq!(resp.status(), 201, "POST /orders");
        resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// The order's status, read from the read model directly (the race is timed
    /// on it, closely: through the API the callers' rate limits would interfere).
    async fn status(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.stack.db)
            .await
            .expect("the order is recorded")
    }

    /// Waits (polling closely: the race is timed on it) until the order is in one of `statuses`.
    async fn reached(&self, id: &str, statuses: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status(id).await;
            if statuses.contains(&status.as_str()) {
                return status;
            }
            assert!(Instant::now() < deadline, "order {id} never reached {statuses:?} (it is {status})");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn cancel(&self, id: &str) -> u16 {
        let req = self.stack.http.post(self.url(&format!("/orders/{id}/cancel"))).bearer_auth(&self.customer);
        self.send("cancel", req.json(&json!({"reason": "changed my mind"})), &[200, 202, 409]).await
    }

    async fn review(&self, id: &str, decision: &str) -> u16 {
        let req = self.stack.http.post(self.url(&format!("/orders/{id}/review"))).bearer_auth(&self.admin);
        self.send("review", req.json(&json!({"decision": decision})), &[202, 409]).await
    }

    async fn carrier_report(&self, id: &str, event: &str) -> u16 {
        let req = self.stack.http.post(self.url(&format!("/orders/{id}/shipment-events"))).bearer_auth(&self.carrier);
        let body = json!({"event": event, "at": chrono::Utc::now().to_rfc3339(), "detail": "race harness"});
        self.send("carrier", req.json(&body), &[202, 409]).await
    }

    async fn amend(&self, id: &str, zip: &str) -> u16 {
        let req =
            self.stack.http.patch(self.url(&format!("/orders/{id}/shipping-address"))).bearer_auth(&self.customer);
        let address = json!({"street": "9 Far Rd", "city": "Nowhere", "state": "NV", "zip_code": zip, "country": "US"});
        self.send("amend", req.json(&address), &[200, 409]).await
    }

    /// Runs `round` `rounds` times, `batch` at a time, each with its number
    /// (for a jitter that differs from round to round).
    async fn rounds<F, Fut>(&self, round: F) -> Vec<Round>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Round>,
    {
        let s = scale();
        let mut done = Vec::new();
        for start in (0..s.rounds).step_by(s.batch) {
            let batch = (start..(start + s.batch).min(s.rounds)).map(&round);
            done.extend(futures::future::join_all(batch).await);
        }
        done
    }

    /// Every order to its end: the simulated carrier delivers shipped ones;
    /// the harness reports delivery too for any it left in transit.
    async fn settle(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let open: Vec<(uuid::Uuid, String)> = sqlx::query_as(
                "SELECT id, status FROM orders WHERE status NOT IN ('delivered', 'delivery_overdue', 'failed', 'cancelled')",
            )
            .fetch_all(&self.stack.db)
            .await
            .unwrap();
            if open.is_empty() {
                return Vec::new();
            }
            if Instant::now() > deadline {
                return open.iter().map(|(id, status)| format!("order {id} stuck at {status}")).collect();
            }
            for (id, status) in &open {
                if status == "in_transit" {
                    self.carrier_report(&id.to_string(), "delivered").await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Settles, checks every invariant and the race's own rule for each round,
    /// reports the race and fails the test on any violation.
    async fn conclude(&self, race: &str, rounds: &[Round], rule: impl Fn(&Round, &str, &Value) -> Option<String>) {
        let mut v = self.settle().await;
        v.extend(self.bad_answers.lock().unwrap().iter().cloned());
        let mut ends = std::collections::BTreeMap::new();
        for round in rounds {
            let resp = self.stack.http.get(self.url(&format!("/orders/{}", round.id))).bearer_auth(&self.admin);
            let order: Value = resp.send().await.unwrap().json().await.unwrap();
            let status = order["status"].as_str().unwrap_or_default().to_owned();
            if let Some(broken) = rule(round, &status, &order) {
                v.push(format!("order {} ({:?} → {status}): {broken}", round.id, round.answers));
            }
            let end = match order["reason"].as_str() {
                Some(reason) => format!("{status} ({reason})"),
                None => status,
            };
            let variant = if round.variant.is_empty() { String::new() } else { format!("{}: ", round.variant) };
            *ends.entry(format!("{variant}{end}")).or_insert(0) += 1;
        }
        v.extend(check_records(&self.stack.db, &[LOAD_SKU]).await);
        v.extend(check_workflows_agree(&self.stack.db, &self.stack.temporal().await).await);
        let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&self.stack.db).await.unwrap();
        report_race(race, rounds.len(), orders as usize, &ends, &v);
        assert!(v.is_empty(), "{race}: {v:#?}");
    }
}

/// The rule of every race with a cancel in it: the order ends cancelled exactly
/// when the cancel was accepted (200 or 202), and delivered otherwise.
fn ended_as_the_cancel_said(r: &Round, status: &str) -> Option<String> {
    match status {
        "cancelled" if !r.accepted("cancel") => Some("cancelled, but the cancel was refused".into()),
        "delivered" if r.accepted("cancel") => Some("delivered, but the cancel was accepted".into()),
        "cancelled" | "delivered" => None,
        other => Some(format!("ended {other}")),
    }
}

/// A jitter of 0 to `max_ms`, different for each round and each side of it.
fn jitter(round: usize, side: usize, max_ms: u64) -> Duration {
    Duration::from_millis(((round * 37 + side * 53) as u64 * 7919) % (max_ms + 1))
}

async fn after<T>(delay: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::sleep(delay).await;
    f.await
}

/// Race 1: the customer cancels just as the carrier reports pickup (and the
/// simulated carrier reports it by itself too), timed on the booking. Whichever
/// is recorded first wins: a cancel after pickup is 409, a pickup after the
/// cancel is 409 (the carrier hears the order was cancelled), and the order
/// ends cancelled exactly when the cancel was accepted.
#[tokio::test]
async fn cancel_races_the_carriers_pickup() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                let id = race.place(1, "tok_ok").await;
                race.reached(&id, &["shipped", "in_transit", "delivered"]).await;
                let (cancel, pickup) = tokio::join!(
                    after(jitter(n, 0, 120), race.cancel(&id)),
                    after(jitter(n, 1, 120), race.carrier_report(&id, "in_transit"))
                );
                Round { id, variant: "", answers: vec![("cancel", cancel), ("pickup", pickup)] }
            }
        })
        .await;
    race.conclude("race 1. cancel ∥ carrier pickup", &rounds, |r, status, _| match status {
        "cancelled" if r.accepted("cancel") && r.answer("pickup") != 409 => {
            Some("cancelled, but the pickup was accepted".into())
        }
        _ => ended_as_the_cancel_said(r, status),
    })
    .await;
}

/// Race 2: the customer cancels just as an admin approves or rejects. A cancel
/// accepted ends the order cancelled; a review decision recorded after it is 409.
#[tokio::test]
async fn cancel_races_the_review_decision() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                let id = race.place(REVIEW_QUANTITY, "tok_ok").await;
                race.reached(&id, &["awaiting_review"]).await;
                let decision = if n % 2 == 0 { "approve" } else { "reject" };
                let (cancel, review) = tokio::join!(
                    after(jitter(n, 0, 30), race.cancel(&id)),
                    after(jitter(n, 1, 30), race.review(&id, decision))
                );
                Round { id, variant: decision, answers: vec![("cancel", cancel), (decision, review)] }
            }
        })
        .await;
    race.conclude("race 2. cancel ∥ review", &rounds, |r, status, order| {
        let (cancelled, approved, rejected) = (r.accepted("cancel"), r.accepted("approve"), r.accepted("reject"));
        match (status, order["reason"].as_str()) {
            ("cancelled", Some("review_rejected")) if !rejected => Some("rejected without a rejection".into()),
            ("cancelled", Some("cancel_requested")) if !cancelled => Some("cancelled without a cancel".into()),
            ("cancelled", Some("cancel_requested" | "review_rejected")) => None,
            ("delivered", _) if cancelled => Some("delivered, but the cancel was accepted".into()),
            ("delivered", _) if !approved => Some("delivered without an approval".into()),
            ("delivered", _) => None,
            (other, reason) => Some(format!("ended {other} ({reason:?})")),
        }
    })
    .await;
}

/// Race 3: two admins decide at once, the same way or not. The first decision
/// counts: the same one again is 202, the other one 409 (never a 500).
#[tokio::test]
async fn review_decisions_race_each_other() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                let id = race.place(REVIEW_QUANTITY, "tok_ok").await;
                race.reached(&id, &["awaiting_review"]).await;
                let (variant, second) =
                    if n % 2 == 0 { ("approve ∥ reject", "reject") } else { ("approve ∥ approve", "approve") };
                // As close together as the API can take them.
                let (first, second) = tokio::join!(
                    after(jitter(n, 0, 2), race.review(&id, "approve")),
                    after(jitter(n, 1, 2), race.review(&id, second))
                );
                Round { id, variant, answers: vec![("first", first), ("second", second)] }
            }
        })
        .await;
    race.conclude("race 3. approve ∥ reject, approve ∥ approve", &rounds, |r, status, _| {
        let same = r.variant == "approve ∥ approve";
        let accepted = usize::from(r.accepted("first")) + usize::from(r.accepted("second"));
        match (same, accepted, status) {
            (true, 2, "delivered") => None,
            (false, 1, "delivered") if r.accepted("first") => None,
            (false, 1, "cancelled") if r.accepted("second") => None,
            _ => Some(format!("{accepted} decisions accepted")),
        }
    })
    .await;
}

/// Race 4: the customer changes the address (to one the carrier does not serve)
/// just as an admin approves, and just as a small order is booked. The carrier
/// gets the address of the last change answered 200: the booking then fails;
/// a change refused (409) leaves the old address, and the order is delivered.
#[tokio::test]
async fn address_changes_race_the_booking() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                if n % 2 == 0 {
                    let id = race.place(REVIEW_QUANTITY, "tok_ok").await;
                    race.reached(&id, &["awaiting_review"]).await;
                    let (amend, approve) = tokio::join!(
                        after(jitter(n, 0, 30), race.amend(&id, UNSERVED)),
                        after(jitter(n, 1, 30), race.review(&id, "approve"))
                    );
                    Round { id, variant: "amend ∥ approve", answers: vec![("amend", amend), ("approve", approve)] }
                } else {
                    let id = race.place(1, "tok_ok").await;
                    // The booking follows the charge in the same workflow task.
                    race.reached(&id, &["paid", "shipped", "in_transit", "delivered"]).await;
                    let amend = after(jitter(n, 0, 10), race.amend(&id, UNSERVED)).await;
                    Round { id, variant: "amend ∥ booking", answers: vec![("amend", amend)] }
                }
            }
        })
        .await;
    race.conclude("race 4. amend ∥ approve, amend ∥ booking", &rounds, |r, status, order| {
        let amended = r.accepted("amend");
        let zip = order["shipping_address"]["zip_code"].as_str().unwrap_or_default();
        match (amended, status, order["reason"].as_str()) {
            (true, "failed", Some("shipment_failed")) if zip == UNSERVED => None,
            (false, "delivered", _) if zip != UNSERVED => None,
            (_, other, reason) => {
                Some(format!("amend answered {}, ended {other} ({reason:?}), ZIP {zip}", r.answer("amend")))
            }
        }
    })
    .await;
}

/// Race 5: a cancel sent right after the order, while it is pending or reserved
/// and its (flaky) charge is being retried: it stops the order before the
/// charge, so it is never charged and refunded (`invariants`: a refund needs a
/// charge captured before the stop).
#[tokio::test]
async fn an_early_cancel_stops_the_charge() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                let token = if n % 2 == 0 { "tok_flaky" } else { "tok_ok" };
                let id = race.place(1, token).await;
                let cancel = after(jitter(n, 0, 50), race.cancel(&id)).await;
                Round { id, variant: token, answers: vec![("cancel", cancel)] }
            }
        })
        .await;
    // A refund only for a charge captured before the stop is an invariant of all races.
    race.conclude("race 5. cancel while pending or reserved", &rounds, |r, status, _| {
        ended_as_the_cancel_said(r, status)
    })
    .await;
}

/// Race 6: the storefront retries its POST (same key, same body) just as the
/// customer cancels: the retry is answered with the same order, and the cancel
/// as if alone.
#[tokio::test]
async fn a_replayed_post_races_a_cancel() {
    let (race, _processes) = Race::start().await;
    let rounds = race
        .rounds(|n| {
            let race = &race;
            async move {
                let body = order_body(json!([{"sku": LOAD_SKU.0, "quantity": 1}]));
                let key = format!("race6-{n}");
                let post = || {
                    race.stack
                        .http
                        .post(race.url("/orders"))
                        .bearer_auth(&race.customer)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                };
                let first: Value = post().send().await.expect("POST answers").json().await.unwrap();
                let id = first["id"].as_str().unwrap().to_owned();
                let replay = async {
                    tokio::time::sleep(jitter(n, 1, 20)).await;
                    let resp = post().send().await.expect("replay answers");
                    let status = resp.status().as_u16();
                    let again: Value = resp.json().await.unwrap_or_default();
                    if status != 200 || again["id"] != first["id"] {
                        let broken = format!("replay of {id}: {status} {again}");
                        race.bad_answers.lock().unwrap().push(broken);
                    }
                    status
                };
                let (cancel, replay) = tokio::join!(after(jitter(n, 0, 20), race.cancel(&id)), replay);
                Round { id, variant: "", answers: vec![("cancel", cancel), ("replay", replay)] }
            }
        })
        .await;
    race.conclude("race 6. replayed POST ∥ cancel", &rounds, |r, status, _| ended_as_the_cancel_said(r, status)).await;
}
