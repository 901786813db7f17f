//! Abuse, proven on the shipped binaries: callers who push (bursts on one order
//! or account, floods of sign-ups, slow connections, held-open streams) get
//! fast, clear answers, and nothing they do stops the service. After every
//! probe: the worker is the same process it was (it never died or restarted),
//! both readiness probes answer 200, and a fresh order still reaches `shipped`.
//!
//! `scripts/test` runs each probe once; `scripts/abuse` (ORDERS_FAULTS_LONG)
//! three times, and prints the table of `ORDERS_FAULTS_REPORT`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::e2e::{Process, Stack};
use crate::support::*;

/// 25 × 19.99 is at the review threshold of these stacks.
const REVIEW_QUANTITY: u32 = 25;
/// The bound on what callers can make one order's workflow history grow to
/// (every caller path at once, each hammered 100 times).
const MAX_HISTORY_EVENTS: usize = 250;

fn rounds() -> usize {
    if std::env::var_os("ORDERS_FAULTS_LONG").is_some() { 3 } else { 1 }
}

/// The stack under abuse, with what it must still do after every probe.
struct Target {
    stack: Stack,
    api: Process,
    worker: Process,
    worker_pid: u32,
    customer: String,
    admin: String,
    carrier: String,
}

/// What one probe saw.
#[derive(Default)]
struct Probe {
    requests: usize,
    answers: BTreeMap<String, usize>,
    violations: Vec<String>,
}

impl Probe {
    fn count(&mut self, answer: &str) {
        self.requests += 1;
        *self.answers.entry(answer.to_owned()).or_insert(0) += 1;
    }

    /// Counts answers; any status outside `allowed` (a 5xx, no answer) is a violation.
    fn tally(&mut self, what: &str, answers: &[u16], allowed: &[u16]) {
        for status in answers {
            self.count(&status.to_string());
            if !allowed.contains(status) {
                self.violations.push(format!("{what}: answered {status}"));
            }
        }
    }
}

impl Target {
    async fn start() -> Target {
        let env = [
            ("ORDERS_REVIEW_THRESHOLD", "400".to_owned()),
            // Bursts from one caller are the point: the general rate limit is not what is probed
            // (it has tests of its own), the sign-up limit is.
            ("ORDERS_RATE_LIMIT_PER_SECOND", "100000".to_owned()),
            ("ORDERS_RATE_LIMIT_BURST", "100000".to_owned()),
            ("ORDERS_HEADER_READ_TIMEOUT", "2s".to_owned()),
            ("ORDERS_BODY_READ_TIMEOUT", "2s".to_owned()),
        ];
        let stack = Stack::with(&env).await;
        let (api, worker) = (stack.start_api().await, stack.start_worker().await);
        let worker_pid = worker.0.id();
        Target {
            customer: stack.token_as("abuser", "customer"),
            admin: stack.token_as("ops", "admin"),
            carrier: stack.token_as("ups", "carrier"),
            stack,
            api,
            worker,
            worker_pid,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.api)
    }

    async fn status_of(req: reqwest::RequestBuilder) -> u16 {
        match req.timeout(Duration::from_secs(30)).send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        }
    }

    async fn place(&self, quantity: u32) -> String {
        let body = order_body(json!([{"sku": WIDGET.0, "quantity": quantity}]));
        let resp = self.stack.http.post(self.url("/orders")).bearer_auth(&self.customer).json(&body).send().await;
        let resp = resp.expect("POST /orders answers");
        assert_eq!(resp.status(), 201, "POST /orders");
        resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.stack.db)
            .await
            .unwrap()
    }

    async fn reached(&self, id: &str, status: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.status(id).await == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The service still does its job: the worker is the same live process,
    /// both probes are ready, and a new order reaches `shipped`.
    async fn still_serving(&mut self, probe: &mut Probe) {
        if !matches!(self.worker.0.try_wait(), Ok(None)) || self.worker.0.id() != self.worker_pid {
            probe.violations.push("the worker process died".into());
            return;
        }
        for url in [format!("{}/readyz", self.stack.api), format!("{}/readyz", self.stack.worker_health)] {
            let ready = Self::status_of(self.stack.http.get(&url)).await;
            if ready != 200 {
                probe.violations.push(format!("{url} answered {ready}"));
            }
        }
        let id = self.place(1).await;
        if !self.reached(&id, "shipped").await {
            probe.violations.push(format!("a fresh order did not ship (it is {})", self.status(&id).await));
        }
    }

    async fn conclude(&mut self, name: &str, mut probe: Probe) {
        self.still_serving(&mut probe).await;
        let restarts = usize::from(!matches!(self.worker.0.try_wait(), Ok(None)));
        let line = json!({
            "probe": name, "requests": probe.requests, "answers": probe.answers,
            "worker_restarts": restarts, "violations": probe.violations,
        });
        eprintln!("abuse: {line}");
        if let Some(path) = std::env::var_os("ORDERS_FAULTS_REPORT") {
            let mut file = std::fs::File::options().create(true).append(true).open(path).unwrap();
            use std::io::Write;
            writeln!(file, "{line}").unwrap();
        }
        assert!(probe.violations.is_empty(), "{name}: {:#?}", probe.violations);
    }

    async fn history_events(&self, id: &str) -> usize {
        let client = self.stack.temporal().await;
        let handle = client.get_workflow_handle::<orders::workflows::OrderWorkflow>(format!("order-{id}"));
        let history = handle.fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default());
        history.into_events().await.unwrap().len()
    }
}

/// Probe 1: a hundred of each caller-driven action at once on one order (address
/// changes, review decisions, cancels; then carrier reports on another), and a
/// hundred wrong verification codes on one account. Every answer is quick and
/// clear (200/202/409/422, never a 5xx or a hang), decisions are serialised by
/// the order's record so none reaches the worker as a burst of Updates (the
/// SDK defect that killed it), and no history grows without bound.
#[tokio::test]
async fn bursts_on_one_order_and_one_account_are_answered_and_bounded() {
    let mut t = Target::start().await;
    for _ in 0..rounds() {
        let mut probe = Probe::default();
        let id = t.place(REVIEW_QUANTITY).await;
        assert!(t.reached(&id, "awaiting_review").await);
        let address =
            json!({"street": "9 Far Rd", "city": "Nowhere", "state": "NV", "zip_code": "89101", "country": "US"});
        let amends = (0..100).map(|_| {
            let req = t.stack.http.patch(t.url(&format!("/orders/{id}/shipping-address")));
            Target::status_of(req.bearer_auth(&t.customer).json(&address))
        });
        let reviews = (0..100).map(|n| {
            let req = t.stack.http.post(t.url(&format!("/orders/{id}/review"))).bearer_auth(&t.admin);
            Target::status_of(req.json(&json!({"decision": if n % 2 == 0 { "approve" } else { "reject" }})))
        });
        let (amends, reviews) = tokio::join!(join_all(amends), join_all(reviews));
        probe.tally("amend", &amends, &[200, 409]);
        probe.tally("review", &reviews, &[202, 409]);
        let cancels = (0..100).map(|_| {
            let req = t.stack.http.post(t.url(&format!("/orders/{id}/cancel"))).bearer_auth(&t.customer);
            Target::status_of(req.json(&json!({"reason": "burst"})))
        });
        probe.tally("cancel", &join_all(cancels).await, &[200, 202, 409]);
        let amended: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM order_events WHERE order_id = $1::uuid AND status = 'address_changed'",
        )
        .bind(&id)
        .fetch_one(&t.stack.db)
        .await
        .unwrap();
        if amended > orders::domain::status::MAX_AMENDMENTS {
            probe.violations.push(format!("{amended} address changes recorded"));
        }

        // Carrier reports on a shipped order: pickup, delivery and distinct exceptions.
        let shipped = t.place(1).await;
        assert!(t.reached(&shipped, "shipped").await);
        let report = |event: &str, n: usize| {
            let body = json!({"event": event, "at": format!("2026-11-25T10:{:02}:{:02}Z", n / 60, n % 60)});
            let req = t.stack.http.post(t.url(&format!("/orders/{shipped}/shipment-events")));
            Target::status_of(req.bearer_auth(&t.carrier).json(&body))
        };
        // Pickup and 99 distinct exceptions at once (at most 20 are recorded), then delivery.
        let reports = (0..100).map(|n| report(if n == 0 { "in_transit" } else { "exception" }, n));
        probe.tally("carrier", &join_all(reports).await, &[202, 409]);
        probe.tally("carrier", &[report("delivered", 100).await], &[202]);
        let exceptions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM order_events WHERE order_id = $1::uuid AND status = 'exception'")
                .bind(&shipped)
                .fetch_one(&t.stack.db)
                .await
                .unwrap();
        if exceptions > orders::domain::status::MAX_CARRIER_EXCEPTIONS {
            probe.violations.push(format!("{exceptions} carrier exceptions recorded"));
        }

        // A hundred wrong codes on one account.
        let user: Value = t
            .stack
            .http
            .post(t.url("/users"))
            .json(&json!({"email": format!("burst-{}@example.com", uuid::Uuid::new_v4().simple()), "name": "Burst"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user_id = user["id"].as_str().unwrap().to_owned();
        let code_sent = Instant::now() + Duration::from_secs(30);
        while !sqlx::query_scalar::<_, bool>("SELECT code_hash IS NOT NULL FROM users WHERE id = $1::uuid")
            .bind(&user_id)
            .fetch_one(&t.stack.db)
            .await
            .unwrap()
        {
            assert!(Instant::now() < code_sent, "no code sent");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let verifies = (0..100).map(|n| {
            let req = t.stack.http.post(t.url(&format!("/users/{user_id}/verify")));
            Target::status_of(req.json(&json!({"code": format!("{:06}", 999_000 + n)})))
        });
        let verifies = join_all(verifies).await;
        probe.tally("verify", &verifies, &[409, 422]);
        let compared = verifies.iter().filter(|s| **s == 422).count();
        if compared > 5 {
            probe.violations.push(format!("{compared} codes compared, more than five"));
        }

        for order in [&id, &shipped] {
            let events = t.history_events(order).await;
            eprintln!("abuse: order {order}'s history after the bursts: {events} events (bound {MAX_HISTORY_EVENTS})");
            if events > MAX_HISTORY_EVENTS {
                probe.violations.push(format!("order {order}'s history has {events} events"));
            }
        }
        t.conclude("bursts: 100 amends, reviews, cancels, carrier reports, wrong codes", probe).await;
    }
    drop((t.api, t.worker));
}

/// Probe 2: a sign-up flood from one address is refused with 429 beyond its
/// limit, quickly, while orders go on.
#[tokio::test]
async fn a_sign_up_flood_is_refused() {
    let mut t = Target::start().await;
    for round in 0..rounds() {
        let mut probe = Probe::default();
        let started = Instant::now();
        let signups = (0..100).map(|n| {
            let body = json!({"email": format!("flood-{round}-{n}@example.com"), "name": "Flood"});
            Target::status_of(t.stack.http.post(t.url("/users")).json(&body))
        });
        let answers = join_all(signups).await;
        probe.tally("sign-up", &answers, &[201, 409, 429]);
        let refused = answers.iter().filter(|s| **s == 429).count();
        if refused < 80 {
            probe.violations.push(format!("only {refused} of 100 sign-ups refused"));
        }
        if started.elapsed() > Duration::from_secs(20) {
            probe.violations.push(format!("the flood took {:?} to answer", started.elapsed()));
        }
        t.conclude("sign-up flood: 100 from one address", probe).await;
    }
    drop((t.api, t.worker));
}

/// Probe 3: slow clients (half a request line, trickled headers, trickled
/// bodies) and held-open live-event streams. Each slow connection is closed
/// within its read timeout, and meanwhile ordinary requests are answered.
#[tokio::test]
async fn slow_clients_and_held_streams_do_not_stop_the_service() {
    let mut t = Target::start().await;
    let addr = t.stack.api.trim_start_matches("http://").to_owned();
    for _ in 0..rounds() {
        let mut probe = Probe::default();
        // A baseline: ordinary reads on a quiet service.
        let order = t.place(1).await;
        let read = |t: &Target| {
            let req = t.stack.http.get(t.url(&format!("/orders/{order}"))).bearer_auth(&t.customer);
            async move {
                let started = Instant::now();
                (Target::status_of(req).await, started.elapsed())
            }
        };
        let mut quiet = Vec::new();
        for _ in 0..20 {
            quiet.push(read(&t).await.1);
        }
        // 500 slow connections: half request lines, trickled headers, bodies that never finish.
        let mut slow = Vec::new();
        for n in 0..500 {
            let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                probe.violations.push("could not open a slow connection".into());
                break;
            };
            let start: &[u8] = match n % 3 {
                0 => b"GET /orders HTT",
                1 => b"POST /orders HTTP/1.1\r\nHost: x\r\n",
                _ => b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"em",
            };
            let _ = s.write_all(start).await;
            slow.push(s);
        }
        // 200 live-event subscribers held open.
        let mut streams = Vec::new();
        for _ in 0..200 {
            let req = t.stack.http.get(t.url(&format!("/orders/{order}/events"))).bearer_auth(&t.customer);
            match req.send().await {
                Ok(resp) if resp.status() == 200 => streams.push(resp),
                Ok(resp) => probe.violations.push(format!("an event stream answered {}", resp.status())),
                Err(e) => probe.violations.push(format!("an event stream failed: {e}")),
            }
        }
        // Ordinary requests meanwhile: reads, and orders placed.
        let mut busy = Vec::new();
        for _ in 0..20 {
            let (status, took) = read(&t).await;
            probe.count(&status.to_string());
            if status != 200 {
                probe.violations.push(format!("a read answered {status} while slow clients held connections"));
            }
            busy.push(took);
        }
        for _ in 0..5 {
            let id = t.place(1).await;
            probe.count("201");
            if !t.reached(&id, "shipped").await {
                probe.violations.push("an order placed meanwhile did not ship".into());
            }
        }
        quiet.sort();
        busy.sort();
        let (quiet_p50, busy_p50) = (quiet[quiet.len() / 2], busy[busy.len() / 2]);
        eprintln!(
            "abuse: GET /orders/{{id}} p50 {quiet_p50:?} quiet, {busy_p50:?} with 500 slow connections and 200 streams"
        );
        if busy_p50 > quiet_p50 * 10 + Duration::from_millis(50) {
            probe.violations.push(format!("reads slowed from {quiet_p50:?} to {busy_p50:?}"));
        }
        // Each slow connection is closed by the server within its read timeout (2 s here).
        let closed_by = Instant::now() + Duration::from_secs(10);
        let mut still_open = 0;
        for s in &mut slow {
            let mut buf = [0u8; 1024];
            loop {
                let left = closed_by.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => continue,
                    Err(_) => {
                        still_open += 1;
                        break;
                    }
                }
            }
        }
        probe.requests += slow.len() + streams.len();
        if still_open > 0 {
            probe.violations.push(format!("{still_open} slow connections still open after 10 s"));
        }
        drop(streams);
        t.conclude("slow clients: 500 trickling connections, 200 held event streams", probe).await;
    }
    drop((t.api, t.worker));
}

/// Probe 4: an order of another customer costs what an unknown id costs (404
/// both): the figures are printed, for the report.
#[tokio::test]
async fn another_customers_order_is_as_unknown_as_a_missing_one() {
    let mut t = Target::start().await;
    let mut probe = Probe::default();
    let theirs = t.place(1).await;
    let stranger = t.stack.token_as("stranger", "customer");
    let mut timings: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for n in 0..200 {
        let (what, id) =
            if n % 2 == 0 { ("another's", theirs.clone()) } else { ("unknown", uuid::Uuid::now_v7().to_string()) };
        let started = Instant::now();
        let status = Target::status_of(t.stack.http.get(t.url(&format!("/orders/{id}"))).bearer_auth(&stranger)).await;
        timings.entry(what).or_default().push(started.elapsed());
        probe.count(&status.to_string());
        if status != 404 {
            probe.violations.push(format!("{what} order answered {status}"));
        }
    }
    for (what, mut times) in timings {
        times.sort();
        eprintln!("abuse: GET of an {what} order: p50 {:?}", times[times.len() / 2]);
    }
    t.conclude("existence: another's order vs an unknown id", probe).await;
    drop((t.api, t.worker));
}
