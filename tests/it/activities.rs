//! Each activity run twice (as Temporal may after a crash or timeout) changes
//! nothing the second time: one reservation, one charge, one shipment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use orders::activities::order::{Charge, CloseOrder, Reservation};
use orders::activities::payment_gateway::{ChargeRequest, ChargeResult, RefundRequest, RefundResult};
use orders::activities::{OrderActivities, PartyError, PaymentGateway, SimulatedCarrier, SimulatedPaymentGateway};
use orders::domain::{OrderId, OrderStatus, StopReason};
use serde_json::json;
use temporalio_sdk::activities::ActivityError;
use temporalio_sdk::testing::{ActivityEnvironment, ActivityEnvironmentError};
use tokio::sync::{Notify, Semaphore};

use crate::support::*;

/// The simulated gateway, counting the calls that reach it.
#[derive(Default)]
struct CountingGateway {
    inner: SimulatedPaymentGateway,
    charges: AtomicU32,
    refunds: AtomicU32,
}

#[async_trait]
impl PaymentGateway for CountingGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeResult, PartyError> {
        self.charges.fetch_add(1, Ordering::SeqCst);
        self.inner.charge(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<RefundResult, PartyError> {
        self.refunds.fetch_add(1, Ordering::SeqCst);
        self.inner.refund(req).await
    }
}

/// A gateway whose charges wait at a gate the test opens: a call in flight.
struct GatedGateway {
    inner: SimulatedPaymentGateway,
    /// Notified when a charge has reached the gateway.
    entered: Notify,
    gate: Semaphore,
}

impl Default for GatedGateway {
    fn default() -> Self {
        Self { inner: SimulatedPaymentGateway::default(), entered: Notify::new(), gate: Semaphore::new(0) }
    }
}

#[async_trait]
impl PaymentGateway for GatedGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeResult, PartyError> {
        self.entered.notify_one();
        // The semaphore is never closed, so acquiring only waits for the test.
        let _open = self.gate.acquire().await.expect("the gate is never closed");
        self.inner.charge(req).await
    }
    async fn refund(&self, req: &RefundRequest) -> Result<RefundResult, PartyError> {
        self.inner.refund(req).await
    }
}

fn environment(app: &TestApp, gateway: Arc<CountingGateway>) -> ActivityEnvironment {
    environment_with(app, gateway)
}

pub(crate) fn environment_with(app: &TestApp, gateway: Arc<dyn PaymentGateway>) -> ActivityEnvironment {
    ActivityEnvironment::builder()
        .register_activities(OrderActivities {
            pool: app.pool.clone(),
            payments: gateway,
            carrier: Arc::new(SimulatedCarrier),
            simulated_carrier_events: None,
            webhook: None,
            email: None,
            metrics: orders::activities::OrderMetrics::disabled(),
        })
        .build()
}

async fn order(app: &TestApp, body: &serde_json::Value) -> (String, OrderId) {
    let id = app.place_order(&app.customer("alice"), body).await;
    let parsed = id.parse().unwrap();
    (id, parsed)
}

#[tokio::test]
async fn reserving_twice_holds_stock_once() {
    let app = spawn_app().await;
    let env = environment(&app, Default::default());
    let (id, oid) = order(&app, &widgets(3)).await;

    assert_eq!(env.run(OrderActivities::reserve_inventory, oid).await.unwrap(), Reservation::Reserved);
    assert_eq!(env.run(OrderActivities::reserve_inventory, oid).await.unwrap(), Reservation::Reserved);

    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 3, 3));
    assert_eq!(app.count("SELECT count(*) FROM inventory_reservations WHERE order_id = $1", &id).await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM order_events WHERE order_id = $1 AND status = 'reserved'", &id).await,
        1
    );
}

#[tokio::test]
async fn the_last_unit_goes_to_exactly_one_of_two_concurrent_orders() {
    let app = spawn_app().await;
    let env = environment(&app, Default::default());
    let body = order_body(json!([{"sku": RARE.0, "quantity": 1}]));
    let (_, a) = order(&app, &body).await;
    let (_, b) = order(&app, &body).await;

    let (ra, rb) =
        tokio::join!(env.run(OrderActivities::reserve_inventory, a), env.run(OrderActivities::reserve_inventory, b));

    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|r| matches!(r, Reservation::OutOfStock { .. }));
    assert_eq!(outcomes, [Reservation::Reserved, Reservation::OutOfStock { skus: vec![RARE.0.to_owned()] }]);
    assert_eq!(app.stock(RARE.0).await, (0, 1));
}

#[tokio::test]
async fn failing_twice_releases_stock_and_notifies_once() {
    let app = spawn_app().await;
    let env = environment(&app, Default::default());
    let (id, oid) = order(&app, &widgets(4)).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();

    let fail = CloseOrder { order_id: oid, reason: StopReason::PaymentDeclined, detail: "test".into() };
    env.run(OrderActivities::close_order, fail.clone()).await.unwrap();
    env.run(OrderActivities::close_order, fail).await.unwrap();

    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
    assert_eq!(app.notifications(&id).await, ["order.pending", "order.reserved", "order.failed"]);
    assert_eq!(app.count("SELECT count(*) FROM orders WHERE id = $1 AND status = 'failed'", &id).await, 1);
}

#[tokio::test]
async fn charging_twice_calls_the_gateway_once_with_one_key() {
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let (id, oid) = order(&app, &widgets(1)).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();

    let first = env.run(OrderActivities::charge_payment, oid).await.unwrap();
    let second = env.run(OrderActivities::charge_payment, oid).await.unwrap();

    assert!(matches!(&first, Charge::Captured { .. }));
    assert_eq!(first, second, "same reference");
    assert_eq!(gateway.charges.load(Ordering::SeqCst), 1);
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE order_id = $1", &id).await, 1);
    assert_eq!(app.count("SELECT count(*) FROM order_events WHERE order_id = $1 AND status = 'paid'", &id).await, 1);
}

/// Calls counted without being made (our own database failed between the count
/// and the call, as in a Postgres restart) do not use up the party's bound:
/// only its failures do. `tok_flaky` fails twice, then captures.
#[tokio::test]
async fn counted_calls_that_never_happened_leave_the_bound_to_the_party() {
    use orders::db::party_calls::{self, Step};
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let mut body = widgets(1);
    body["payment_token"] = json!("tok_flaky");
    let (_, oid) = order(&app, &body).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();
    for _ in 0..3 {
        party_calls::count(&app.pool, oid, Step::Charge).await.unwrap();
    }

    let mut transient = 0;
    let charge = loop {
        match env.run(OrderActivities::charge_payment, oid).await {
            Ok(charge) => break charge,
            Err(ActivityEnvironmentError::Activity(ActivityError::Application(f))) if !f.is_non_retryable() => {
                transient += 1;
                assert!(transient <= 2, "the simulated gateway fails twice only");
            }
            Err(other) => panic!("the charge failed for good after {transient} failures: {other:?}"),
        }
    };
    assert!(matches!(charge, Charge::Captured { .. }), "{charge:?}");
    assert_eq!(gateway.charges.load(Ordering::SeqCst), 3);
    let calls = party_calls::count(&app.pool, oid, Step::Charge).await.unwrap();
    assert_eq!(calls.failures, 2);
}

/// A charge recorded as intended (`pending`) whose call the fence then refused
/// (the order stopped in between) leaves no `pending` payment on the stopped
/// order: compensation settles it without asking the gateway, which never heard of it.
#[tokio::test]
async fn a_charge_refused_by_the_fence_leaves_no_pending_payment() {
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let (id, oid) = order(&app, &widgets(1)).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();
    let total: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT total FROM orders WHERE id = $1").bind(oid.0).fetch_one(&app.pool).await.unwrap();
    orders::db::payments::begin(&app.pool, oid, orders::db::payments::Kind::Charge, total).await.unwrap();
    orders::db::orders::fence(&app.pool, oid).await.unwrap();

    let refused = refused_for_good(env.run(OrderActivities::charge_payment, oid).await);
    assert!(refused.contains("being stopped"), "{refused}");
    env.run(OrderActivities::refund_payment, oid).await.unwrap();

    assert_eq!(gateway.charges.load(Ordering::SeqCst) + gateway.refunds.load(Ordering::SeqCst), 0);
    assert!(app.payments(&id).await.is_empty(), "{:?}", app.payments(&id).await);
    let view: serde_json::Value = app.get_order(&app.customer("alice"), &id).await.json().await.unwrap();
    assert_eq!(view["payment"]["status"], "not_attempted");
}

#[tokio::test]
async fn a_declined_charge_stays_declined_on_retry() {
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let mut body = widgets(1);
    body["payment_token"] = json!("tok_declined");
    let (_, oid) = order(&app, &body).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();

    for _ in 0..2 {
        let r = env.run(OrderActivities::charge_payment, oid).await.unwrap();
        assert_eq!(r, Charge::Declined { reason: "card_declined".into() });
    }
    assert_eq!(gateway.charges.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shipping_and_refunding_twice_do_each_once() {
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let (id, oid) = order(&app, &widgets(2)).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();
    env.run(OrderActivities::charge_payment, oid).await.unwrap();

    let a = env.run(OrderActivities::book_shipment, oid).await.unwrap();
    let b = env.run(OrderActivities::book_shipment, oid).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 2, 2), "reserved until the carrier has it");
    assert_eq!(app.count("SELECT count(*) FROM order_events WHERE order_id = $1 AND status = 'shipped'", &id).await, 1);

    env.run(OrderActivities::refund_payment, oid).await.unwrap();
    env.run(OrderActivities::refund_payment, oid).await.unwrap();
    assert_eq!(gateway.refunds.load(Ordering::SeqCst), 1);
    assert_eq!(app.count("SELECT count(*) FROM payments WHERE order_id = $1 AND kind = 'refund'", &id).await, 1);
}

/// The refusal a step gives for an order whose compensation has begun.
fn refused_for_good<T: std::fmt::Debug>(r: Result<T, ActivityEnvironmentError>) -> String {
    match r {
        Err(ActivityEnvironmentError::Activity(ActivityError::Application(f))) if f.is_non_retryable() => f.to_string(),
        other => panic!("expected a non-retryable failure, got {other:?}"),
    }
}

/// A charge attempt can outlive its run (Temporal retried the workflow task
/// elsewhere and the new run is compensating). The refund step waits for the
/// gateway call in flight and refunds what it captured: never a charge that
/// lands after the refund step has looked (found by the faults harness).
#[tokio::test]
async fn a_charge_in_flight_when_the_order_stops_is_waited_for_and_refunded() {
    let app = spawn_app().await;
    let gateway = Arc::new(GatedGateway::default());
    let env = environment_with(&app, gateway.clone());
    let (id, oid) = order(&app, &widgets(1)).await;
    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();

    let charge = env.run(OrderActivities::charge_payment, oid);
    let refund = async {
        gateway.entered.notified().await;
        let mut refund = std::pin::pin!(env.run(OrderActivities::refund_payment, oid));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut refund).await;
        assert!(waited.is_err(), "the refund step waits for the charge in flight");
        gateway.gate.add_permits(1);
        refund.await
    };
    let (charged, refunded) = tokio::join!(charge, refund);

    assert!(matches!(charged.unwrap(), Charge::Captured { .. }));
    refunded.unwrap();
    assert_eq!(
        app.payments(&id).await,
        [("charge".to_owned(), "succeeded".to_owned()), ("refund".to_owned(), "succeeded".to_owned())]
    );
}

/// Once compensation has begun, no forward step calls a party or holds stock.
#[tokio::test]
async fn no_step_acts_on_an_order_whose_compensation_has_begun() {
    let app = spawn_app().await;
    let gateway = Arc::new(CountingGateway::default());
    let env = environment(&app, gateway.clone());
    let (id, oid) = order(&app, &widgets(2)).await;
    let (stopping, _) = order(&app, &widgets(1)).await;

    env.run(OrderActivities::reserve_inventory, oid).await.unwrap();
    env.run(OrderActivities::cancel_shipment, oid).await.unwrap();
    env.run(OrderActivities::refund_payment, oid).await.unwrap();

    let charge = refused_for_good(env.run(OrderActivities::charge_payment, oid).await);
    assert!(charge.contains("being stopped"), "{charge}");
    let booking = refused_for_good(env.run(OrderActivities::book_shipment, oid).await);
    assert!(booking.contains("being stopped"), "{booking}");
    assert_eq!(gateway.charges.load(Ordering::SeqCst), 0);
    assert!(app.payments(&id).await.iter().all(|(_, status)| status != "succeeded"), "nothing charged or refunded");
    assert_eq!(app.count("SELECT count(*) FROM shipments WHERE order_id = $1", &id).await, 0);

    // Its status moves only to its end now.
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(!orders::db::orders::transition(&mut conn, oid, OrderStatus::Paid, None, None).await.unwrap());
    let reason = Some(StopReason::CancelRequested);
    assert!(orders::db::orders::transition(&mut conn, oid, OrderStatus::Cancelled, reason, None).await.unwrap());

    // A reservation attempt after the order stopped with nothing held (out of
    // stock; or an attempt that outlived its run) holds nothing either.
    let soid = stopping.parse().unwrap();
    env.run(OrderActivities::cancel_shipment, soid).await.unwrap();
    let again = env.run(OrderActivities::reserve_inventory, soid).await.unwrap();
    assert_eq!(again, Reservation::OutOfStock { skus: vec![] });
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3 - 2, 2), "only the first order's two units are held");
    // What an order stopped with stock held re-runs is answered as before.
    assert_eq!(env.run(OrderActivities::reserve_inventory, oid).await.unwrap(), Reservation::Reserved);
}

/// Two attempts recording the same charge at once: the one whose insert waited
/// for the other's still gets the row (its own statement's snapshot predates
/// that insert), not "no row", which would read as a stopped order; and the
/// charge step's start (`begin_charge`) still counts its call.
#[tokio::test]
async fn a_charge_recorded_by_a_concurrent_attempt_is_found() {
    use orders::db::payments::{self, Kind, Status};
    let app = spawn_app().await;
    let begin = |pool: sqlx::PgPool, oid: OrderId, total| async move {
        payments::begin(&pool, oid, Kind::Charge, total).await.unwrap().map(|p| (p, None))
    };
    recorded_by_a_concurrent_attempt(&app, begin).await;
    let begin_charge = |pool: sqlx::PgPool, oid: OrderId, _| async move {
        payments::begin_charge(&pool, oid).await.unwrap().and_then(|s| Some((s.payment?, s.calls)))
    };
    let calls = recorded_by_a_concurrent_attempt(&app, begin_charge).await;
    let calls = calls.expect("the call counted");
    assert_eq!((calls.calls, calls.failures), (1, 0));

    async fn recorded_by_a_concurrent_attempt<F, Fut>(app: &TestApp, begin: F) -> Option<orders::db::party_calls::Calls>
    where
        F: FnOnce(sqlx::PgPool, OrderId, rust_decimal::Decimal) -> Fut,
        Fut: std::future::Future<Output = Option<(payments::Payment, Option<orders::db::party_calls::Calls>)>>
            + Send
            + 'static,
    {
        let (_, oid) = order(app, &widgets(1)).await;
        let total: rust_decimal::Decimal = sqlx::query_scalar("SELECT total FROM orders WHERE id = $1")
            .bind(oid.0)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        // The other attempt's insert, not yet committed.
        let mut other = app.pool.begin().await.unwrap();
        sqlx::query("INSERT INTO payments (order_id, kind, idempotency_key, amount, status) VALUES ($1, 'charge', $2, $3, 'pending')")
            .bind(oid.0)
            .bind(Kind::Charge.key(oid))
            .bind(total)
            .execute(&mut *other)
            .await
            .unwrap();
        let this = tokio::spawn(begin(app.pool.clone(), oid, total));
        // Until this attempt's insert waits on the other's row.
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO payments%'";
        while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&app.pool).await.unwrap() == 0 {
            assert!(!this.is_finished(), "begin did not wait for the concurrent insert");
            tokio::task::yield_now().await;
        }
        other.commit().await.unwrap();

        let (payment, calls) = this.await.unwrap().expect("the concurrent attempt's row");
        assert_eq!((payment.status, payment.amount), (Status::Pending, total));
        calls
    }
}
