//! The order's path for workflows started on this version: Postgres decides,
//! the workflow follows.
//!
//! Every step is a local activity, whose side effects happen before the
//! workflow task that ran it is accepted; a task the server rejects (a signal
//! arrived meanwhile) is retried and may take another turn. So nothing here
//! decides alone what races a caller: cancels, reviews, carrier reports and
//! amendments are recorded by the API under the order's row lock first; each
//! step is guarded by those records (a stopped order's charge or booking calls
//! no party), and the workflow's own stops (a failed step, a deadline, a
//! cancellation in Temporal) are proposals that Postgres records only if
//! nothing came first (`StopOrder`). The workflow ends as the records say,
//! however often its tasks are retried and in whatever order signals arrive.

use std::time::Duration;

use futures::FutureExt;
use temporalio_common::error::ActivityExecutionError;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    ApplicationFailure, WaitConditionOptions, WorkflowCancellationToken, WorkflowContext, WorkflowResult,
    WorkflowTermination,
};

use super::{
    FOLLOWS_AFTER_REFUSED_CANCEL, OrderOutcome, OrderWorkflow, Step, compensation, failure_message, payment, shipment,
};
use crate::activities::OrderActivities;
use crate::activities::order::{Advance, CarrierReport, Charge, CloseOrder, ProposeStop, Reservation, out_of_stock};
use crate::db::decisions::{Record, Stop, StopDecision};
use crate::domain::{OrderId, OrderStatus, StopReason};
use crate::workflows::{db_step, deadline_timer};

/// Where the forward path left the order.
enum Next {
    Done(OrderOutcome),
    /// The workflow's own reason to stop, for Postgres to decide on.
    Propose(StopReason, String),
    /// A stop already recorded (a caller's, or one the workflow proposed before).
    Stopped(Stop),
}

/// A `decided` signal arrived that the path has not read the records for.
fn woken(s: &OrderWorkflow) -> bool {
    s.wakes > s.wakes_read
}

impl OrderWorkflow {
    pub(super) async fn follow_records(ctx: &WorkflowContext<Self>) -> WorkflowResult<OrderOutcome> {
        let id = ctx.state(|s| s.input.order_id);
        let next = match Self::forward(ctx, id).await {
            Ok(next) => next,
            Err(_) if ctx.cancellation_token().is_cancelled() => {
                let why = ctx.cancellation_token().reason().unwrap_or_else(|| "cancelled in Temporal".into());
                Next::Propose(StopReason::WorkflowCancelled, why)
            }
            Err(other) => return Err(other),
        };
        let cancelled_in_temporal = ctx.cancellation_token().is_cancelled();
        let stop = match next {
            Next::Done(outcome) => return Ok(outcome),
            Next::Stopped(stop) => stop,
            Next::Propose(reason, detail) => {
                let propose = ProposeStop { order_id: id, reason, detail };
                match ctx.execute_local_activity(OrderActivities::stop_order, propose, db_step()).await? {
                    StopDecision::Recorded(stop) | StopDecision::Earlier(stop) => stop,
                    // The order ended first (the carrier delivered it): so does the workflow.
                    StopDecision::Refused { status } if status.is_terminal() => {
                        Self::set_status(ctx, status);
                        return Ok(Self::outcome(ctx, status));
                    }
                    // The carrier has the parcel: nothing to undo. Workflows of this
                    // version refuse the cancellation and follow the carrier to the
                    // end, so the order never stays `in_transit` with nothing to move it.
                    StopDecision::Refused { .. } if cancelled_in_temporal => {
                        if !ctx.patched(FOLLOWS_AFTER_REFUSED_CANCEL) {
                            return Err(WorkflowTermination::cancelled());
                        }
                        return match Self::follow_carrier(ctx, id, Some(WorkflowCancellationToken::new())).await? {
                            Next::Done(outcome) => Ok(outcome),
                            // No stop is admitted once the carrier has the parcel.
                            Next::Stopped(_) | Next::Propose(..) => Err(WorkflowTermination::cancelled()),
                        };
                    }
                    // Only a cancellation in Temporal can come too late: a step's
                    // failure always happens where the order may fail.
                    StopDecision::Refused { status } => {
                        let message = format!("order {id}: stopping for {reason:?} refused in {status:?}");
                        return Err(ApplicationFailure::builder(message).non_retryable(true).build().into());
                    }
                }
            }
        };
        Self::enter(ctx, Step::Compensating);
        // Compensate in reverse order of the steps, from the records: each undoes
        // exactly what they show (a step's answer may have been recorded by an
        // attempt whose result never reached this history), and nothing otherwise.
        // The refund and booking cancellation fence the order first, so a party
        // call in flight finishes and is undone, and no later one starts.
        ctx.execute_local_activity(OrderActivities::cancel_shipment, id, compensation()).await?;
        ctx.execute_local_activity(OrderActivities::refund_payment, id, compensation()).await?;
        let close = CloseOrder { order_id: id, reason: stop.reason, detail: stop.detail.clone() };
        ctx.execute_local_activity(OrderActivities::close_order, close, db_step()).await?;
        let status = stop.reason.status();
        Self::set_status(ctx, status);
        if cancelled_in_temporal && stop.reason == StopReason::WorkflowCancelled {
            return Err(WorkflowTermination::cancelled());
        }
        Ok(OrderOutcome { status, reason: Some(stop.reason), tracking_number: None })
    }

    /// Reserve → [review] → charge → book → follow the carrier. A step that is
    /// refused because the order was stopped proposes a stop like a failed one:
    /// `StopOrder` then answers with the stop recorded first.
    async fn forward(ctx: &WorkflowContext<Self>, id: OrderId) -> WorkflowResult<Next> {
        if let Reservation::OutOfStock { skus } =
            ctx.execute_local_activity(OrderActivities::reserve_inventory, id, db_step()).await?
        {
            return Ok(Next::Propose(StopReason::OutOfStock, out_of_stock(&skus)));
        }
        Self::set_status(ctx, OrderStatus::Reserved);

        if let Some(secs) = ctx.state(|s| s.input.review_within_secs)
            && let Some(stop) = Self::await_decision(ctx, id, secs).await?
        {
            return Ok(stop);
        }

        Self::enter(ctx, Step::Charging);
        match ctx.execute_local_activity(OrderActivities::charge_payment, id, payment()).await {
            Ok(Charge::Captured { .. }) => Self::set_status(ctx, OrderStatus::Paid),
            Ok(Charge::Declined { reason }) => {
                return Ok(Next::Propose(StopReason::PaymentDeclined, format!("payment declined: {reason}")));
            }
            Err(ActivityExecutionError::Cancelled(_)) => return Err(WorkflowTermination::cancelled()),
            Err(err) => return Ok(Next::Propose(StopReason::PaymentFailed, failure_message(&err))),
        }

        Self::enter(ctx, Step::Booking);
        ctx.state_mut(|s| s.booking_started = true);
        let shipped = match ctx.execute_local_activity(OrderActivities::book_shipment, id, shipment()).await {
            Ok(shipped) => shipped,
            Err(ActivityExecutionError::Cancelled(_)) => return Err(WorkflowTermination::cancelled()),
            Err(err) => return Ok(Next::Propose(StopReason::ShipmentFailed, failure_message(&err))),
        };
        ctx.state_mut(|s| s.tracking_number = Some(shipped.tracking_number));
        Self::set_status(ctx, OrderStatus::Shipped);
        Self::follow_carrier(ctx, id, None).await
    }

    /// Holds the order in `awaiting_review` until the records show a decision (an
    /// approval, or a stop: rejected, cancelled), or the deadline passes. The
    /// deadline is itself a proposal: an approval recorded before it wins.
    async fn await_decision(
        ctx: &WorkflowContext<Self>,
        id: OrderId,
        within_secs: u64,
    ) -> WorkflowResult<Option<Next>> {
        let detail = format!("total at or above the review threshold; decision due within {within_secs} s");
        // The timer below starts in this task, so the deadline is this task's time plus the wait.
        let due = ctx.workflow_time().map(|now| now + Duration::from_secs(within_secs));
        let review_due_at = due.map(Into::into);
        let advance = Advance { order_id: id, to: OrderStatus::AwaitingReview, detail, review_due_at };
        if !ctx.execute_local_activity(OrderActivities::advance, advance, db_step()).await? {
            // Not held for review: the order was stopped first (a cancel).
            return Ok(Self::read(ctx, id).await?.stop.map(Next::Stopped));
        }
        Self::set_status(ctx, OrderStatus::AwaitingReview);
        Self::enter(ctx, Step::AwaitingReview);
        ctx.state_mut(|s| s.review_due = due);
        let mut deadline = std::pin::pin!(deadline_timer(ctx, Duration::from_secs(within_secs), None).fuse());
        loop {
            let woke = select! {
                r = ctx.wait_condition(woken).fuse() => { r?; true }
                _ = deadline => false,
            };
            if !woke {
                let detail = "no review decision before the deadline".to_owned();
                let propose = ProposeStop { order_id: id, reason: StopReason::ReviewTimeout, detail };
                return match ctx.execute_local_activity(OrderActivities::stop_order, propose, db_step()).await? {
                    StopDecision::Recorded(stop) | StopDecision::Earlier(stop) => Ok(Some(Next::Stopped(stop))),
                    // Approved before the deadline fired.
                    StopDecision::Refused { .. } => Ok(None),
                };
            }
            let record = Self::read(ctx, id).await?;
            if let Some(stop) = record.stop {
                return Ok(Some(Next::Stopped(stop)));
            }
            match record.approved {
                Some(true) => return Ok(None),
                // Recorded without its stop by an API of the version before
                // (during a rolling upgrade): the rejection is decided all the same.
                Some(false) => {
                    return Ok(Some(Next::Propose(StopReason::ReviewRejected, "rejected in review".into())));
                }
                None => {}
            }
        }
    }

    /// After booking: follows the records the API keeps of the carrier's reports
    /// (pickup, delivery) and of a cancel before pickup, until delivery or the
    /// delivery deadline, which moves the order only if nothing came first.
    /// `detached` (after a cancellation in Temporal was refused) keeps the waits
    /// from ending with the workflow's own cancellation; the deadline stays the
    /// one set at shipping.
    async fn follow_carrier(
        ctx: &WorkflowContext<Self>,
        id: OrderId,
        detached: Option<WorkflowCancellationToken>,
    ) -> WorkflowResult<Next> {
        Self::enter(ctx, Step::FollowingCarrier);
        let within = Duration::from_secs(ctx.state(|s| s.input.deliver_within_secs));
        let now = ctx.workflow_time();
        let due =
            ctx.state_mut(|s| *s.delivery_due.get_or_insert_with(|| now.map_or(std::time::UNIX_EPOCH, |t| t + within)));
        let left = match (detached.is_some(), now) {
            (true, Some(now)) => due.duration_since(now).unwrap_or(Duration::ZERO).max(Duration::from_millis(1)),
            _ => within,
        };
        let mut deadline = std::pin::pin!(deadline_timer(ctx, left, detached.clone()).fuse());
        loop {
            let wait = WaitConditionOptions::builder().maybe_cancellation_token(detached.clone()).build();
            let woke = select! {
                r = ctx.wait_condition_with_options(woken, wait).fuse() => { r?; true }
                _ = deadline => false,
            };
            if !woke {
                let detail = format!("not delivered within {} s of shipping", within.as_secs());
                let advance = Advance { order_id: id, to: OrderStatus::DeliveryOverdue, detail, review_due_at: None };
                if ctx.execute_local_activity(OrderActivities::advance, advance, db_step()).await? {
                    Self::set_status(ctx, OrderStatus::DeliveryOverdue);
                    return Ok(Next::Done(Self::outcome(ctx, OrderStatus::DeliveryOverdue)));
                }
                // A carrier report or a cancel was recorded first: follow it.
            }
            Self::record_carrier_signals(ctx, id).await?;
            let record = Self::read(ctx, id).await?;
            if let Some(stop) = record.stop {
                return Ok(Next::Stopped(stop));
            }
            if ctx.state(|s| s.status).can_become(record.status) {
                Self::set_status(ctx, record.status);
            }
            if record.status.is_terminal() {
                return Ok(Next::Done(Self::outcome(ctx, record.status)));
            }
        }
    }

    /// Carrier events that came as `shipment_event` signals, which only an API
    /// of the version before sends (during a rolling upgrade): recorded as that
    /// API's successor records them, so they are decided the same way.
    async fn record_carrier_signals(ctx: &WorkflowContext<Self>, id: OrderId) -> WorkflowResult<()> {
        while let Some(event) = ctx.state(|s| s.shipment_events.get(s.handled).cloned()) {
            ctx.state_mut(|s| s.handled += 1);
            let report = CarrierReport { order_id: id, event };
            ctx.execute_local_activity(OrderActivities::report_carrier_event, report, db_step()).await?;
        }
        Ok(())
    }

    /// The records as they are now; every `decided` signal received so far is
    /// answered by them.
    async fn read(ctx: &WorkflowContext<Self>, id: OrderId) -> WorkflowResult<Record> {
        let wakes = ctx.state(|s| s.wakes);
        let record = ctx.execute_local_activity(OrderActivities::read_order, id, db_step()).await?;
        ctx.state_mut(|s| s.wakes_read = s.wakes_read.max(wakes));
        Ok(record)
    }

    fn outcome(ctx: &WorkflowContext<Self>, status: OrderStatus) -> OrderOutcome {
        OrderOutcome { status, reason: None, tracking_number: ctx.state(|s| s.tracking_number.clone()) }
    }
}
