//! The activities of `OrderWorkflow`. Type names are pinned with `name = ..`
//! so renaming a Rust item never breaks a running workflow.
//!
//! Business outcomes (out of stock, a declined card) are returned as values:
//! they are answers, not errors, and are never retried. Errors are either
//! transient (retried by the activity's retry policy) or permanent
//! (non-retryable `ApplicationFailure`s).

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::PartyError;
use super::carrier::{Carrier, ShipmentRequest, SimulatedCarrierEvents};
use super::failure::{
    NOTIFICATION_FAILED, ORDER_NOT_FOUND, PAYMENT_FAILED, REFUND_FAILED, SHIPMENT_CANCEL_FAILED, SHIPMENT_REJECTED,
    TRANSIENT_SUFFIX,
};
use super::metrics::{Compensation, OrderMetrics, Refusal};
use super::notifier::{Channel, Notifier};
use super::payment_gateway::{ChargeRequest, ChargeResult, PaymentGateway, RefundRequest, RefundResult};
use crate::db::decisions::{self, DecisionError, Record, StopDecision};
use crate::db::party_calls::{self, Calls, Step};
use crate::db::{inventory, notifications, orders, payments, shipments};
use crate::domain::{Address, OrderId, OrderStatus, ShipmentEvent, StopReason};

#[derive(Clone)]
pub struct OrderActivities {
    pub pool: PgPool,
    pub payments: Arc<dyn PaymentGateway>,
    pub carrier: Arc<dyn Carrier>,
    /// Dev stacks only: the simulated carrier reports pickup and delivery by itself.
    pub simulated_carrier_events: Option<SimulatedCarrierEvents>,
    /// `None` when the channel is not configured (no webhook URL, no mail
    /// server): its notifications are neither sent nor tracked.
    pub webhook: Option<Arc<dyn Notifier>>,
    pub email: Option<Arc<dyn Notifier>>,
    pub metrics: OrderMetrics,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Reservation {
    Reserved,
    OutOfStock { skus: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Charge {
    Captured { reference: String },
    Declined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseOrder {
    pub order_id: OrderId,
    pub reason: StopReason,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advance {
    pub order_id: OrderId,
    pub to: OrderStatus,
    pub detail: String,
    /// Into `awaiting_review`: when the review deadline falls (workflow time).
    /// Absent in histories recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_due_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierException {
    pub order_id: OrderId,
    /// The carrier's event time, as sent (also the de-duplication key).
    pub at: String,
    pub detail: String,
}

/// A carrier event sent as a signal by an API of the version before, to record
/// as this version's API does (`ReportCarrierEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierReport {
    pub order_id: OrderId,
    pub event: ShipmentEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    pub order_id: OrderId,
    pub channel: Channel,
}

/// What a delivery round did on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Delivered {
    /// How many notifications went out (the only answer of versions before,
    /// recorded as a bare number).
    Sent(u32),
    /// The worker has no such channel. The workflow asks no more on it: the
    /// answer is recorded in its history, so a replay stops where it stopped.
    Unconfigured(ChannelUnconfigured),
}

/// Recorded as the string `"channel_not_configured"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelUnconfigured {
    #[serde(rename = "channel_not_configured")]
    ChannelNotConfigured,
}

impl Delivered {
    pub const UNCONFIGURED: Delivered = Delivered::Unconfigured(ChannelUnconfigured::ChannelNotConfigured);
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendAddress {
    pub order_id: OrderId,
    pub address: Address,
    /// Which amendment of this order this is (1, 2, ...), keying its timeline event.
    pub amendment: u32,
}

/// A stop the workflow proposes (`StopOrder`): a step's failure, a deadline, a
/// cancellation in Temporal. It is recorded unless another stop came first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeStop {
    pub order_id: OrderId,
    pub reason: StopReason,
    pub detail: String,
}

/// How many times a step calls its party before a transient failure counts as
/// final. The workflow's retry policy for these steps is unbounded, so that our
/// own database being away never uses up the party's attempts.
const GATEWAY_CALLS: i32 = 3;
const CARRIER_CALLS: i32 = 5;

/// How long the worker's own address changes (the `amend_shipping_address`
/// update of workflows started before amendments went through the API) wait
/// for the order's row lock before the attempt is retried.
const AMEND_LOCK_WAIT: Duration = Duration::from_secs(10);
/// The same for carrier events recorded by the worker.
const REPORT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// An error the caller cannot fix by retrying.
fn permanent(type_name: &str, message: String) -> ActivityError {
    ApplicationFailure::builder(message).type_name(type_name.to_owned()).non_retryable(true).build().into()
}

fn party(type_name: &str, err: PartyError) -> ActivityError {
    match err {
        PartyError::Permanent(m) => permanent(type_name, m),
        PartyError::Transient(m) => {
            ApplicationFailure::builder(m).type_name(format!("{type_name}{TRANSIENT_SUFFIX}")).build().into()
        }
    }
}

/// A charge's recorded answer: `None` while it is pending (no answer yet, or the
/// gateway's last one was a transient failure), an error once it failed for good.
fn answered(payment: payments::Payment) -> Result<Option<ChargeResult>, ActivityError> {
    match (payment.status, payment.provider_reference) {
        (payments::Status::Succeeded, Some(reference)) => Ok(Some(ChargeResult::Captured { reference })),
        (payments::Status::Declined, _) => {
            Ok(Some(ChargeResult::Declined { reason: payment.decline_reason.unwrap_or_default() }))
        }
        (payments::Status::Failed, _) => {
            Err(permanent(PAYMENT_FAILED, payment.decline_reason.unwrap_or_else(|| "the charge failed".into())))
        }
        _ => Ok(None),
    }
}

fn missing(id: OrderId) -> ActivityError {
    permanent(ORDER_NOT_FOUND, format!("order {id} does not exist"))
}

fn decision_failed(id: OrderId, e: DecisionError) -> ActivityError {
    match e {
        DecisionError::NotFound => missing(id),
        DecisionError::Busy => ApplicationFailure::builder("the order is busy".to_owned()).build().into(),
        DecisionError::Db(e) => e.into(),
    }
}

/// A transaction holding the order's row lock, in which a party call's outcome is recorded.
type Locked = sqlx::Transaction<'static, sqlx::Postgres>;

/// Locks the order, or fails when it is missing.
async fn lock(pool: &PgPool, id: OrderId) -> Result<(Locked, orders::Locked), ActivityError> {
    let mut tx = pool.begin().await?;
    let locked = orders::lock(&mut tx, id).await?.ok_or_else(|| missing(id))?;
    Ok((tx, locked))
}

/// Locks the order for a party call, or refuses once its compensation has begun
/// (the fence): the attempt then outlived its run, or the order was stopped
/// (cancelled, say) before it, and calls no party. The call counted for it is
/// taken back, so that compensation knows the party never heard of it.
async fn lock_for_party_call(
    pool: &PgPool,
    id: OrderId,
    step: Step,
    failure: &str,
) -> Result<(Locked, orders::Locked), ActivityError> {
    let (mut tx, locked) = lock(pool, id).await?;
    if locked.stopped {
        party_calls::uncount(&mut *tx, id, step).await?;
        tx.commit().await?;
        let what = match step {
            Step::Charge => "charge",
            Step::BookShipment => "booking",
        };
        tracing::warn!("{what} refused: the order's compensation has begun");
        return Err(permanent(failure, format!("the order is being stopped: no {what} was made")));
    }
    Ok((tx, locked))
}

impl OrderActivities {
    /// The gateway call of a charge with no recorded answer, under the order's
    /// row lock. Returns the lock's transaction (the caller records the answer
    /// in it), what it saw under the lock, the answer, and whether it was an
    /// earlier attempt's.
    async fn charge_under_lock(
        &self,
        ctx: &ActivityContext,
        id: OrderId,
        order: payments::ChargeOrder,
        counted: Calls,
    ) -> Result<(Locked, orders::Locked, ChargeResult, bool), ActivityError> {
        // `counted` was counted before the call, so that a call whose answer was
        // lost counts as made (the refund then asks the gateway); and before the
        // lock, so that no attempt holds two connections. The bound is on the
        // party's failures.
        let Calls { calls: call, failures } = counted;
        if failures >= GATEWAY_CALLS {
            return Err(permanent(PAYMENT_FAILED, format!("no answer from the gateway in {GATEWAY_CALLS} calls")));
        }
        let (mut tx, locked) = lock_for_party_call(&self.pool, id, Step::Charge, PAYMENT_FAILED).await?;
        // Another attempt may have finished while this one waited for the lock.
        let payment = payments::find(&mut *tx, id, payments::Kind::Charge).await?.ok_or_else(|| missing(id))?;
        if let Some(result) = answered(payment)? {
            return Ok((tx, locked, result, true));
        }
        let req = ChargeRequest {
            idempotency_key: payments::Kind::Charge.key(id),
            order_id: id.to_string(),
            amount: order.total,
            currency: order.currency,
            payment_method: order.payment_method,
            payment_token: order.payment_token,
        };
        tracing::info!(attempt = ctx.info().attempt, call, amount = %req.amount, "charging");
        match self.payments.charge(&req).await {
            Ok(result) => Ok((tx, locked, result, false)),
            Err(PartyError::Permanent(reason)) => {
                payments::refuse(&mut *tx, id, payments::Kind::Charge, payments::Refusal::Failed, &reason).await?;
                decisions::stop_locked(&mut tx, id, &locked, StopReason::PaymentFailed, &reason).await?;
                tx.commit().await?;
                self.metrics.payment_declined();
                Err(permanent(PAYMENT_FAILED, reason))
            }
            Err(PartyError::Transient(reason)) => {
                // Nothing to record under the lock: release it before counting the failure.
                tx.rollback().await?;
                if party_calls::failed(&self.pool, id, Step::Charge).await? >= GATEWAY_CALLS {
                    // Still failing after the last call: whether it captured is unknown,
                    // so the charge stays pending and the refund step asks the gateway.
                    return Err(permanent(PAYMENT_FAILED, reason));
                }
                Err(party(PAYMENT_FAILED, PartyError::Transient(reason)))
            }
        }
    }

    /// The carrier call of an order with no recorded booking, under the order's
    /// row lock. Returns the lock's transaction (the caller records the booking in it).
    async fn book_under_lock(
        &self,
        id: OrderId,
        counted: Calls,
    ) -> Result<(Locked, shipments::Shipment), ActivityError> {
        // As with the charge: counted before the call, bounded by the carrier's failures.
        let Calls { failures, .. } = counted;
        if failures >= CARRIER_CALLS {
            return Err(permanent(SHIPMENT_REJECTED, format!("no answer from the carrier in {CARRIER_CALLS} calls")));
        }
        let (mut tx, locked) = lock_for_party_call(&self.pool, id, Step::BookShipment, SHIPMENT_REJECTED).await?;
        // Another attempt may have booked while this one waited for the lock. The
        // address is read under the lock: an amendment either committed before
        // (and the carrier gets it) or sees this booking's call counted and is refused.
        let (address, lines) = match shipments::to_book(&mut tx, id).await?.ok_or_else(|| missing(id))? {
            shipments::ToBook::Booked(booking) => return Ok((tx, booking)),
            shipments::ToBook::Parcels { address, lines } => (address, lines),
        };
        let req = ShipmentRequest {
            idempotency_key: format!("ship-{id}"),
            order_id: id.to_string(),
            address,
            parcels: lines,
        };
        match self.carrier.book(&req).await {
            Ok(b) => Ok((tx, shipments::Shipment { carrier: b.carrier, tracking_number: b.tracking_number })),
            Err(PartyError::Permanent(reason)) => {
                decisions::stop_locked(&mut tx, id, &locked, StopReason::ShipmentFailed, &reason).await?;
                tx.commit().await?;
                Err(permanent(SHIPMENT_REJECTED, reason))
            }
            Err(PartyError::Transient(m)) => {
                tx.rollback().await?;
                if party_calls::failed(&self.pool, id, Step::BookShipment).await? >= CARRIER_CALLS {
                    return Err(permanent(SHIPMENT_REJECTED, m));
                }
                Err(party(SHIPMENT_REJECTED, PartyError::Transient(m)))
            }
        }
    }
}

#[activities]
impl OrderActivities {
    /// Holds stock for every line in one transaction, or for none. Stock short
    /// stops the order (out of stock), recorded before the answer.
    #[activity(name = "ReserveInventory")]
    #[tracing::instrument(name = "ReserveInventory", skip_all, fields(order_id = %id, activity = "ReserveInventory"))]
    pub async fn reserve_inventory(
        self: Arc<Self>,
        _ctx: ActivityContext,
        id: OrderId,
    ) -> Result<Reservation, ActivityError> {
        let (mut tx, locked) = lock(&self.pool, id).await?;
        match inventory::reserve(&mut tx, id, !locked.stopped).await? {
            inventory::Reserve::Held => {
                orders::transition(&mut tx, id, OrderStatus::Reserved, None, Some("stock reserved")).await?;
                tx.commit().await?;
                Ok(Reservation::Reserved)
            }
            // Stopped before anything was held (a cancel came first, or this
            // attempt re-runs a lost task whose reservation failed, or it outlived
            // its run). It holds nothing now; the recorded stop says how the order ends.
            inventory::Reserve::Closed => {
                tx.rollback().await?;
                Ok(Reservation::OutOfStock { skus: Vec::new() })
            }
            inventory::Reserve::Short(skus) => {
                tx.rollback().await?;
                let detail = out_of_stock(&skus);
                let decided = decisions::stop(&self.pool, id, StopReason::OutOfStock, &detail)
                    .await
                    .map_err(|e| decision_failed(id, e))?;
                tracing::info!(?skus, "out of stock");
                if matches!(decided, StopDecision::Recorded(_)) {
                    self.metrics.stock_out();
                }
                Ok(Reservation::OutOfStock { skus })
            }
        }
    }

    /// Charges the order total once: the gateway sees the same idempotency key on
    /// every attempt, and the call is made under the order's row lock after
    /// checking that the order was not stopped (the fence), so neither an attempt
    /// still running for a run Temporal already retried elsewhere nor one after a
    /// recorded cancel can capture. A decline or refusal stops the order, recorded
    /// with the answer.
    #[activity(name = "ChargePayment")]
    #[tracing::instrument(name = "ChargePayment", skip_all, fields(order_id = %id, activity = "ChargePayment"))]
    pub async fn charge_payment(self: Arc<Self>, ctx: ActivityContext, id: OrderId) -> Result<Charge, ActivityError> {
        let start = payments::begin_charge(&self.pool, id).await?.ok_or_else(|| missing(id))?;
        let order = start.order;
        if order.total <= Decimal::ZERO {
            let mut tx = self.pool.begin().await?;
            orders::transition(&mut tx, id, OrderStatus::Paid, None, Some("nothing to charge")).await?;
            tx.commit().await?;
            return Ok(Charge::Captured { reference: "none".into() });
        }
        let Some(payment) = start.payment else {
            tracing::info!("charge refused: the order was stopped before it");
            return Err(permanent(PAYMENT_FAILED, "the order is being stopped: no charge was made".into()));
        };
        // An earlier attempt's answer is replayed (only its records may be missing), not counted again.
        let (mut tx, locked, result, replayed) = match answered(payment)? {
            Some(result) => {
                let (tx, locked) = lock(&self.pool, id).await?;
                (tx, locked, result, true)
            }
            None => {
                // Counted with the row while it is pending; a row with no answer
                // in any other state (none is written) would be counted here.
                let counted = match start.calls {
                    Some(counted) => counted,
                    None => party_calls::count(&self.pool, id, Step::Charge).await?,
                };
                self.charge_under_lock(&ctx, id, order, counted).await?
            }
        };
        match result {
            ChargeResult::Captured { reference } => {
                let detail = format!("payment captured: {reference}");
                let captured = orders::Answer::Captured(&reference);
                orders::transition_recording(&mut tx, id, OrderStatus::Paid, &detail, captured).await?;
                tx.commit().await?;
                Ok(Charge::Captured { reference })
            }
            ChargeResult::Declined { reason } => {
                payments::refuse(&mut *tx, id, payments::Kind::Charge, payments::Refusal::Declined, &reason).await?;
                let detail = format!("payment declined: {reason}");
                let decided =
                    decisions::stop_locked(&mut tx, id, &locked, StopReason::PaymentDeclined, &detail).await?;
                tx.commit().await?;
                tracing::info!(%reason, "payment declined");
                if !replayed && matches!(decided, StopDecision::Recorded(_)) {
                    self.metrics.payment_declined();
                }
                Ok(Charge::Declined { reason })
            }
        }
    }

    /// Returns a captured charge. Safe to call when nothing was captured.
    #[activity(name = "RefundPayment")]
    #[tracing::instrument(name = "RefundPayment", skip_all, fields(order_id = %id, activity = "RefundPayment"))]
    pub async fn refund_payment(self: Arc<Self>, _ctx: ActivityContext, id: OrderId) -> Result<(), ActivityError> {
        // After this no charge attempt calls the gateway, and one in flight has
        // recorded its outcome: what is read next is final.
        orders::fence(&self.pool, id).await?;
        let Some(charge) = payments::find(&self.pool, id, payments::Kind::Charge).await? else {
            return Ok(());
        };
        match charge.status {
            payments::Status::Declined | payments::Status::Failed => return Ok(()),
            // Recorded, but no call was ever counted: fenced now, none ever will be.
            payments::Status::Pending if party_calls::calls(&self.pool, id, Step::Charge).await? == 0 => {
                payments::discard_pending(&self.pool, id, payments::Kind::Charge).await?;
                return Ok(());
            }
            payments::Status::Pending | payments::Status::Succeeded => {}
        }
        let refund =
            payments::begin(&self.pool, id, payments::Kind::Refund, charge.amount).await?.ok_or_else(|| missing(id))?;
        if refund.status == payments::Status::Succeeded {
            return Ok(());
        }
        let req = RefundRequest {
            idempotency_key: payments::Kind::Refund.key(id),
            charge_idempotency_key: payments::Kind::Charge.key(id),
            charge_reference: charge.provider_reference.clone(),
            amount: charge.amount,
        };
        let answer = match self.payments.refund(&req).await {
            Ok(answer) => answer,
            Err(PartyError::Permanent(reason)) => return self.refused(id, Refusal::Refund, &reason).await,
            Err(transient) => return Err(party(REFUND_FAILED, transient)),
        };
        match answer {
            RefundResult::Refunded { reference, charge_reference } => {
                let mut tx = self.pool.begin().await?;
                payments::succeed(&mut *tx, id, payments::Kind::Refund, &reference).await?;
                if charge.provider_reference.is_none() {
                    // The charge's answer never reached us, but it was captured: record it.
                    let captured = charge_reference.unwrap_or_else(|| format!("unknown (refunded as {reference})"));
                    payments::succeed(&mut *tx, id, payments::Kind::Charge, &captured).await?;
                }
                tx.commit().await?;
                self.metrics.compensated(Compensation::Refund);
            }
            RefundResult::NothingToRefund => {
                payments::discard_pending(&self.pool, id, payments::Kind::Refund).await?;
                // A charge whose outcome was unknown (the gateway never answered) is
                // now known: nothing was captured.
                payments::refuse(
                    &self.pool,
                    id,
                    payments::Kind::Charge,
                    payments::Refusal::Failed,
                    "the gateway captured nothing",
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Books the parcel (reading the address as it is now, after any amendment),
    /// then records the shipment and marks the order shipped in one transaction.
    /// As with the charge, the carrier is called under the order's row lock once
    /// it is clear that the order was not stopped; a refusal stops it.
    /// Stock stays reserved until the carrier has the parcel (a carrier report).
    #[activity(name = "BookShipment")]
    #[tracing::instrument(name = "BookShipment", skip_all, fields(order_id = %id, activity = "BookShipment"))]
    pub async fn book_shipment(self: Arc<Self>, ctx: ActivityContext, id: OrderId) -> Result<Shipped, ActivityError> {
        let (mut tx, booking) = match shipments::begin_booking(&self.pool, id).await? {
            // An earlier attempt booked; only the records may be missing.
            shipments::Booking::Booked(booking) => (lock(&self.pool, id).await?.0, booking),
            shipments::Booking::Counted(calls) => self.book_under_lock(id, calls).await?,
        };
        let detail = format!("shipment booked with {}, tracking {}", booking.carrier, booking.tracking_number);
        let booked = orders::Answer::Booked(&booking);
        let moved = orders::transition_recording(&mut tx, id, OrderStatus::Shipped, &detail, booked).await?;
        tx.commit().await?;
        if moved && let Some(events) = &self.simulated_carrier_events {
            events.schedule(self.pool.clone(), ctx.client(), self.metrics.clone(), id);
        }
        Ok(Shipped { carrier: booking.carrier, tracking_number: booking.tracking_number })
    }

    /// Cancels the carrier booking of an order that has not left the warehouse.
    #[activity(name = "CancelShipment")]
    #[tracing::instrument(name = "CancelShipment", skip_all, fields(order_id = %id, activity = "CancelShipment"))]
    pub async fn cancel_shipment(self: Arc<Self>, _ctx: ActivityContext, id: OrderId) -> Result<(), ActivityError> {
        // After this no booking attempt calls the carrier, and one in flight has
        // recorded its booking: what is read next is final.
        orders::fence(&self.pool, id).await?;
        let Some(booking) = shipments::find(&self.pool, id).await? else { return Ok(()) };
        if shipments::is_cancelled(&self.pool, id).await? {
            return Ok(());
        }
        if shipments::cancel_refused(&self.pool, id).await? {
            return Ok(());
        }
        let key = format!("ship-cancel-{id}");
        match self.carrier.cancel(&key, &booking.tracking_number).await {
            Ok(()) => {}
            Err(PartyError::Permanent(reason)) => {
                return self.refused(id, Refusal::CancelShipment, &reason).await;
            }
            Err(transient) => return Err(party(SHIPMENT_CANCEL_FAILED, transient)),
        }
        shipments::mark_cancelled(&self.pool, id).await?;
        self.metrics.compensated(Compensation::CancelShipment);
        Ok(())
    }

    /// A compensation the party refused for good: retrying cannot help, and
    /// failing the workflow would leave the order open with its stock reserved.
    /// So the refusal is recorded (on the payment or shipment, and on the
    /// timeline, which notifies) and counted for an alert, and the order goes on
    /// to close as decided; what the party kept (money, a booking) is an
    /// operator's to settle.
    async fn refused(&self, id: OrderId, step: Refusal, reason: &str) -> Result<(), ActivityError> {
        let mut tx = self.pool.begin().await?;
        let event = match step {
            Refusal::Refund => {
                payments::refuse(&mut *tx, id, payments::Kind::Refund, payments::Refusal::Failed, reason).await?;
                orders::REFUND_REFUSED
            }
            Refusal::CancelShipment => {
                shipments::refuse_cancel(&mut *tx, id, reason).await?;
                orders::CANCELLATION_REFUSED
            }
        };
        let recorded = orders::record_event(&mut tx, id, event, event, Some(reason)).await?;
        tx.commit().await?;
        tracing::error!(step = event, %reason, "compensation refused for good: recorded, the order closes; settle by hand");
        if recorded.is_some() {
            self.metrics.compensation_refused(step);
        }
        Ok(())
    }

    /// Moves the order forward where the workflow decides it: into review, or
    /// overdue at the delivery deadline (and, for workflows started before the
    /// carrier's reports were recorded by the API, on the carrier's word). Once
    /// the carrier has the parcel its reserved stock is consumed. Returns whether
    /// the order moved: a recorded stop, or a carrier report that came first, wins.
    #[activity(name = "AdvanceOrder")]
    #[tracing::instrument(name = "AdvanceOrder", skip_all, fields(order_id = %a.order_id, activity = "AdvanceOrder"))]
    pub async fn advance(self: Arc<Self>, _ctx: ActivityContext, a: Advance) -> Result<bool, ActivityError> {
        let (mut tx, _) = lock(&self.pool, a.order_id).await?;
        let moved = orders::transition(&mut tx, a.order_id, a.to, None, Some(&a.detail)).await?;
        if moved && let Some(due) = a.review_due_at {
            orders::set_review_due(&mut tx, a.order_id, due).await?;
        }
        if moved && matches!(a.to, OrderStatus::InTransit | OrderStatus::Delivered | OrderStatus::DeliveryOverdue) {
            inventory::consume(&mut tx, a.order_id).await?;
        }
        tx.commit().await?;
        if moved && a.to.is_terminal() {
            self.metrics.finished(a.to);
        }
        Ok(moved)
    }

    /// Records a carrier exception on the timeline (and so as a notification), once
    /// per event time. Workflows started before carrier reports were recorded by
    /// the API only.
    #[activity(name = "RecordCarrierException")]
    #[tracing::instrument(name = "RecordCarrierException", skip_all, fields(order_id = %e.order_id, activity = "RecordCarrierException"))]
    pub async fn record_exception(
        self: Arc<Self>,
        _ctx: ActivityContext,
        e: CarrierException,
    ) -> Result<(), ActivityError> {
        let mut tx = self.pool.begin().await?;
        orders::record_event(&mut tx, e.order_id, orders::EXCEPTION, &format!("exception@{}", e.at), Some(&e.detail))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a carrier event that reached the workflow as a signal (from an API
    /// of the version before) the way the API records one now; what the records
    /// then say is for the workflow to read.
    #[activity(name = "ReportCarrierEvent")]
    #[tracing::instrument(name = "ReportCarrierEvent", skip_all, fields(order_id = %r.order_id, activity = "ReportCarrierEvent"))]
    pub async fn report_carrier_event(
        self: Arc<Self>,
        _ctx: ActivityContext,
        r: CarrierReport,
    ) -> Result<(), ActivityError> {
        let ev = &r.event;
        let detail = ev.detail.clone().unwrap_or_default();
        let reported = decisions::carrier_report(&self.pool, REPORT_LOCK_WAIT, r.order_id, ev.event, &ev.at, &detail)
            .await
            .map_err(|e| decision_failed(r.order_id, e))?;
        tracing::info!(outcome = ?reported, "carrier event recorded from a signal");
        if let decisions::CarrierReport::Recorded { status, moved: true, .. } = reported
            && status.is_terminal()
        {
            self.metrics.finished(status);
        }
        Ok(())
    }

    /// Changes the shipping address (the `amend_shipping_address` update: the API
    /// makes amendments itself now); false when the order can no longer be amended.
    #[activity(name = "AmendShippingAddress")]
    #[tracing::instrument(name = "AmendShippingAddress", skip_all, fields(order_id = %a.order_id, activity = "AmendShippingAddress"))]
    pub async fn amend_address(self: Arc<Self>, _ctx: ActivityContext, a: AmendAddress) -> Result<bool, ActivityError> {
        let amended = decisions::amend(&self.pool, AMEND_LOCK_WAIT, a.order_id, &a.address)
            .await
            .map_err(|e| decision_failed(a.order_id, e))?;
        Ok(amended.is_ok())
    }

    /// Delivers the order's due notifications on one channel, oldest first, and
    /// returns how many went out. A failure is recorded and retried with backoff
    /// (the whole batch again: delivered ones are skipped, so none goes twice).
    /// A channel this worker does not have is answered as such, once per order:
    /// the workflow then stops asking (no read of the timeline, no marker per change).
    #[activity(name = "DeliverNotifications")]
    #[tracing::instrument(name = "DeliverNotifications", skip_all, fields(order_id = %d.order_id, channel = d.channel.as_str(), activity = "DeliverNotifications"))]
    pub async fn deliver_notifications(
        self: Arc<Self>,
        _ctx: ActivityContext,
        d: Deliver,
    ) -> Result<Delivered, ActivityError> {
        let notifier = match d.channel {
            Channel::Webhook => &self.webhook,
            Channel::Email => &self.email,
        };
        let Some(notifier) = notifier else { return Ok(Delivered::UNCONFIGURED) };
        let mut delivered = 0;
        for n in notifications::undelivered(&self.pool, d.order_id, d.channel).await? {
            match notifier.deliver(&n).await {
                Ok(()) => {
                    notifications::record_delivery(&self.pool, n.id, d.channel, None).await?;
                    delivered += 1;
                }
                Err(e) => {
                    notifications::record_delivery(&self.pool, n.id, d.channel, Some(&e.to_string())).await?;
                    return Err(party(NOTIFICATION_FAILED, e));
                }
            }
        }
        Ok(Delivered::Sent(delivered))
    }

    /// Records the stop the workflow proposes, unless another was recorded first
    /// (then that one is returned: the order ends as it says), or refuses it when
    /// the state machine does not allow it (the carrier has the parcel; the order
    /// was approved before its review deadline fired).
    #[activity(name = "StopOrder")]
    #[tracing::instrument(name = "StopOrder", skip_all, fields(order_id = %p.order_id, activity = "StopOrder"))]
    pub async fn stop_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        p: ProposeStop,
    ) -> Result<StopDecision, ActivityError> {
        decisions::stop(&self.pool, p.order_id, p.reason, &p.detail).await.map_err(|e| decision_failed(p.order_id, e))
    }

    /// The decisions recorded about the order: its status, its stop, its review.
    #[activity(name = "ReadOrder")]
    #[tracing::instrument(name = "ReadOrder", skip_all, fields(order_id = %id, activity = "ReadOrder"))]
    pub async fn read_order(self: Arc<Self>, _ctx: ActivityContext, id: OrderId) -> Result<Record, ActivityError> {
        decisions::record(&self.pool, id).await?.ok_or_else(|| missing(id))
    }

    /// The last compensation and the end record, in one transaction: releases held
    /// stock and marks the order failed or cancelled as its recorded stop says
    /// (the one proposed here when none was recorded). The timeline event and its
    /// notification come with the status change.
    #[activity(name = "CloseOrder")]
    #[tracing::instrument(name = "CloseOrder", skip_all, fields(order_id = %c.order_id, activity = "CloseOrder"))]
    pub async fn close_order(self: Arc<Self>, _ctx: ActivityContext, c: CloseOrder) -> Result<(), ActivityError> {
        let id = c.order_id;
        let (mut tx, locked) = lock(&self.pool, id).await?;
        let stop = match decisions::stop_locked(&mut tx, id, &locked, c.reason, &c.detail).await? {
            StopDecision::Recorded(stop) | StopDecision::Earlier(stop) => stop,
            StopDecision::Refused { status } => {
                tx.rollback().await?;
                tracing::warn!(
                    status = status.as_str(),
                    reason = c.reason.as_str(),
                    "order not closed: it may not stop"
                );
                return Ok(());
            }
        };
        let released = inventory::release(&mut tx, id).await?;
        let status = stop.reason.status();
        let moved = orders::transition(&mut tx, id, status, Some(stop.reason), Some(&stop.detail)).await?;
        tx.commit().await?;
        if released > 0 {
            self.metrics.compensated(Compensation::ReleaseStock);
        }
        if moved {
            self.metrics.finished(status);
        }
        tracing::info!(reason = stop.reason.as_str(), released, "order closed");
        Ok(())
    }
}

/// The detail of an out-of-stock stop.
pub fn out_of_stock(skus: &[String]) -> String {
    format!("out of stock: {}", skus.join(", "))
}
