//! Decisions in Postgres, one rule at a time: the first one recorded wins, each
//! against the state machine, under the order's row lock (`db::decisions`).

use std::sync::Arc;
use std::time::Duration;

use orders::activities::order::Reservation;
use orders::activities::{OrderActivities, SimulatedPaymentGateway};
use orders::db::decisions::{self, AmendRefusal, Cancel, DecisionError, Review, StopDecision};
use orders::db::orders as order_rows;
use orders::db::party_calls::{self, Step};
use orders::domain::{Address, OrderId, OrderStatus, ShipmentEventKind, StopReason};
use temporalio_sdk::testing::ActivityEnvironment;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

async fn order(app: &TestApp, quantity: u32) -> OrderId {
    app.place_order(&app.customer("alice"), &widgets(quantity)).await.parse().unwrap()
}

async fn set_status(app: &TestApp, id: OrderId, status: OrderStatus) {
    sqlx::query("UPDATE orders SET status = $2 WHERE id = $1")
        .bind(id.0)
        .bind(status)
        .execute(&app.pool)
        .await
        .unwrap();
}

fn activities(app: &TestApp) -> ActivityEnvironment {
    crate::activities::environment_with(app, Arc::new(SimulatedPaymentGateway::default()))
}

fn address(zip: &str) -> Address {
    serde_json::from_value(serde_json::json!(
        {"street": "9 Far Rd", "city": "Nowhere", "state": "NV", "zip_code": zip, "country": "US"}
    ))
    .unwrap()
}

#[tokio::test]
async fn a_review_deadline_loses_to_an_approval_recorded_before_it() {
    let app = spawn_app().await;
    let (approved, late) = (order(&app, 1).await, order(&app, 1).await);
    for id in [approved, late] {
        set_status(&app, id, OrderStatus::AwaitingReview).await;
    }
    let recorded = decisions::review(&app.pool, WAIT, approved, true, None, "ops").await.unwrap();
    assert!(matches!(recorded, Review::Recorded { .. }));

    let deadline = decisions::stop(&app.pool, approved, StopReason::ReviewTimeout, "deadline").await.unwrap();
    assert_eq!(deadline, StopDecision::Refused { status: OrderStatus::AwaitingReview }, "the approval came first");

    // The other way round: the deadline is recorded, and the admin hears it.
    let deadline = decisions::stop(&app.pool, late, StopReason::ReviewTimeout, "deadline").await.unwrap();
    assert!(matches!(deadline, StopDecision::Recorded(_)));
    let review = decisions::review(&app.pool, WAIT, late, true, None, "ops").await.unwrap();
    assert!(matches!(&review, Review::Stopped(Some(s)) if s.reason == StopReason::ReviewTimeout), "{review:?}");
}

#[tokio::test]
async fn the_first_stop_recorded_is_the_one_every_later_stop_gets() {
    let app = spawn_app().await;
    let id = order(&app, 1).await;
    let first = decisions::cancel(&app.pool, WAIT, id, "cancelled by alice: oops").await.unwrap();
    assert!(matches!(first, Cancel::Recorded { seq: 1, .. }), "{first:?}");

    // A step's failure, a cancel in Temporal, the same cancel again: all answered with the first.
    let failed = decisions::stop(&app.pool, id, StopReason::PaymentDeclined, "declined").await.unwrap();
    let temporal = decisions::stop(&app.pool, id, StopReason::WorkflowCancelled, "operator").await.unwrap();
    let again = decisions::cancel(&app.pool, WAIT, id, "cancelled by alice: again").await.unwrap();
    for decided in [failed.stop().cloned(), temporal.stop().cloned()] {
        assert_eq!(decided.map(|s| s.reason), Some(StopReason::CancelRequested));
    }
    assert!(matches!(again, Cancel::Earlier(s) if s.detail == "cancelled by alice: oops"));
    let counted = "SELECT count(*) FROM orders WHERE id = $1 AND decisions = 1";
    assert_eq!(app.count(counted, &id.to_string()).await, 1, "a replayed cancel is not a new decision");
}

#[tokio::test]
async fn a_cancel_recorded_before_reserving_holds_nothing_and_charges_nothing() {
    let app = spawn_app().await;
    let env = activities(&app);
    let id = order(&app, 3).await;
    decisions::cancel(&app.pool, WAIT, id, "cancelled by alice: early").await.unwrap();

    let reserved = env.run(OrderActivities::reserve_inventory, id).await.unwrap();
    assert_eq!(reserved, Reservation::OutOfStock { skus: vec![] }, "nothing held");
    assert!(env.run(OrderActivities::charge_payment, id).await.is_err(), "no charge");
    assert!(app.payments(&id.to_string()).await.is_empty(), "not even a pending one");
    assert_eq!(party_calls::calls(&app.pool, id, Step::Charge).await.unwrap(), 0);
    assert_eq!(app.stock(WIDGET.0).await, (WIDGET.3, 0));
}

#[tokio::test]
async fn carrier_reports_and_cancels_refuse_each_other_in_the_order_recorded() {
    let app = spawn_app().await;
    let (picked, cancelled) = (order(&app, 1).await, order(&app, 1).await);
    for id in [picked, cancelled] {
        set_status(&app, id, OrderStatus::Shipped).await;
    }
    let report = |id| decisions::carrier_report(&app.pool, WAIT, id, ShipmentEventKind::InTransit, "t1", "picked up");

    assert!(matches!(report(picked).await.unwrap(), decisions::CarrierReport::Recorded { moved: true, .. }));
    let cancel = decisions::cancel(&app.pool, WAIT, picked, "too late").await.unwrap();
    assert_eq!(cancel, Cancel::Refused(OrderStatus::InTransit));
    assert!(matches!(report(picked).await.unwrap(), decisions::CarrierReport::Unchanged(_)), "a duplicate");

    decisions::cancel(&app.pool, WAIT, cancelled, "in time").await.unwrap();
    let late = report(cancelled).await.unwrap();
    assert!(
        matches!(&late, decisions::CarrierReport::Stopped(Some(s)) if s.reason == StopReason::CancelRequested),
        "{late:?}"
    );
}

#[tokio::test]
async fn the_address_is_frozen_once_the_booking_begins() {
    let app = spawn_app().await;
    let id = order(&app, 1).await;
    assert!(decisions::amend(&app.pool, WAIT, id, &address("89101")).await.unwrap().is_ok());

    // What `BookShipment` does before it calls the carrier.
    let begun = orders::db::shipments::begin_booking(&app.pool, id).await.unwrap();
    assert_eq!(begun, orders::db::shipments::Booking::Counted(party_calls::Calls { calls: 1, failures: 0 }));
    let refused = decisions::amend(&app.pool, WAIT, id, &address("00000")).await.unwrap();
    assert_eq!(refused, Err(AmendRefusal::BookingBegun));
    let zip: String = sqlx::query_scalar("SELECT shipping_address->>'zip_code' FROM orders WHERE id = $1")
        .bind(id.0)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(zip, "89101", "the carrier gets the last change answered 200");
}

#[tokio::test]
async fn amendments_per_order_are_bounded() {
    let app = spawn_app().await;
    let id = order(&app, 1).await;
    for _ in 0..orders::domain::status::MAX_AMENDMENTS {
        assert!(decisions::amend(&app.pool, WAIT, id, &address("89101")).await.unwrap().is_ok());
    }
    assert_eq!(decisions::amend(&app.pool, WAIT, id, &address("89101")).await.unwrap(), Err(AmendRefusal::TooMany));
}

/// A payment or booking call holds the order's row lock for as long as it
/// takes; a caller's decision waits at most its lock wait, then hears "busy".
#[tokio::test]
async fn a_decision_waits_for_the_order_at_most_its_lock_wait() {
    let app = spawn_app().await;
    let id = order(&app, 1).await;
    let mut held = app.pool.begin().await.unwrap();
    order_rows::lock(&mut held, id).await.unwrap();

    let busy = decisions::cancel(&app.pool, Duration::from_millis(200), id, "waited").await;
    assert!(matches!(busy, Err(DecisionError::Busy)), "{busy:?}");
    held.rollback().await.unwrap();
    assert!(matches!(decisions::cancel(&app.pool, WAIT, id, "now").await.unwrap(), Cancel::Recorded { .. }));
}
