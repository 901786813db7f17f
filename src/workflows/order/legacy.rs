//! The path of workflows started before decisions were recorded in Postgres
//! (no `decided-in-postgres` marker in their history). It decides cancels,
//! reviews and carrier events from its own signals and updates, and must keep
//! issuing exactly the commands it issued then, or those histories stop
//! replaying. Do not change it; drop it (and `tests/histories/v1/`) once no
//! such workflow runs. Only the comparisons of statuses changed: they ask the
//! state machine now, with the same answers.

use std::time::Duration;

use futures::FutureExt;
use temporalio_common::error::ActivityExecutionError;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{WorkflowContext, WorkflowResult, WorkflowTermination};

use super::{OrderOutcome, OrderWorkflow, compensation, failure_message, payment, shipment};
use crate::activities::OrderActivities;
use crate::activities::order::{Advance, CarrierException, Charge, CloseOrder, Reservation};
use crate::domain::{Action, OrderId, OrderStatus, ReviewDecision, ShipmentEventKind, StopReason};
use crate::workflows::{db_step, deadline_timer};

/// How the order's path ended before closing it.
enum End {
    Completed(OrderOutcome),
    Stopped(StopReason, String),
}

/// Patch id: compensations run from the durable records, not from the workflow's memory.
const COMPENSATE_FROM_RECORDS: &str = "compensate-from-records";

/// What has to be undone when the order stops.
#[derive(Default)]
struct Undo {
    charged: bool,
    booked: bool,
}

impl OrderWorkflow {
    pub(super) async fn process_and_compensate(ctx: &WorkflowContext<Self>) -> WorkflowResult<OrderOutcome> {
        let id = ctx.state(|s| s.input.order_id);
        let mut undo = Undo::default();
        let end = Self::fulfil(ctx, id, &mut undo).await;
        let (reason, detail, cancelled_by_temporal) = match end {
            Ok(End::Completed(outcome)) => return Ok(outcome),
            Ok(End::Stopped(reason, detail)) => (reason, detail, false),
            // Once the carrier has the parcel there is nothing left to undo: the goods are
            // gone and were paid for. Stop following the carrier and end as cancelled.
            Err(e)
                if ctx.cancellation_token().is_cancelled()
                    && !ctx.state(|s| s.status).admits(Action::TemporalCancel) =>
            {
                return Err(e);
            }
            // Cancelled from the Temporal UI or CLI before that: compensate all the same.
            Err(_) if ctx.cancellation_token().is_cancelled() => {
                let why = ctx.cancellation_token().reason().unwrap_or_else(|| "cancelled in Temporal".into());
                (StopReason::WorkflowCancelled, why, true)
            }
            Err(other) => return Err(other),
        };
        // Compensate in reverse order of the steps taken, on detached tokens.
        // A step may have charged or booked without the workflow hearing of it: a
        // worker killed after the party's answer was recorded in Postgres but before
        // the step's result reached the history. So both compensations always run;
        // each undoes what the records show and nothing otherwise. (Histories from
        // before this change replay the old, memory-only rule.)
        let from_records = ctx.patched(COMPENSATE_FROM_RECORDS);
        if undo.booked || from_records {
            ctx.execute_local_activity(OrderActivities::cancel_shipment, id, compensation()).await?;
        }
        if undo.charged || reason == StopReason::PaymentFailed || cancelled_by_temporal || from_records {
            // The gateway may have captured before the failure (or the cancellation) reached us.
            ctx.execute_local_activity(OrderActivities::refund_payment, id, compensation()).await?;
        }
        let close = CloseOrder { order_id: id, reason, detail };
        ctx.execute_local_activity(OrderActivities::close_order, close, db_step()).await?;
        Self::set_status(ctx, reason.status());
        if cancelled_by_temporal {
            return Err(WorkflowTermination::cancelled());
        }
        Ok(OrderOutcome { status: reason.status(), reason: Some(reason), tracking_number: None })
    }

    /// The forward path. Returns how it ended; compensation is the caller's.
    async fn fulfil(ctx: &WorkflowContext<Self>, id: OrderId, undo: &mut Undo) -> WorkflowResult<End> {
        if let Reservation::OutOfStock { skus } =
            ctx.execute_local_activity(OrderActivities::reserve_inventory, id, db_step()).await?
        {
            return Ok(End::Stopped(StopReason::OutOfStock, format!("out of stock: {}", skus.join(", "))));
        }
        Self::set_status(ctx, OrderStatus::Reserved);
        if let Some(end) = Self::cancel_requested(ctx) {
            return Ok(end);
        }

        if let Some(secs) = ctx.state(|s| s.input.review_within_secs)
            && let Some(end) = Self::await_review(ctx, id, secs).await?
        {
            return Ok(end);
        }

        match ctx.execute_local_activity(OrderActivities::charge_payment, id, payment()).await {
            Ok(Charge::Captured { .. }) => {
                undo.charged = true;
                Self::set_status(ctx, OrderStatus::Paid);
            }
            Ok(Charge::Declined { reason }) => {
                return Ok(End::Stopped(StopReason::PaymentDeclined, format!("payment declined: {reason}")));
            }
            Err(ActivityExecutionError::Cancelled(_)) => return Err(WorkflowTermination::cancelled()),
            Err(err) => return Ok(End::Stopped(StopReason::PaymentFailed, failure_message(&err))),
        }
        if let Some(end) = Self::cancel_requested(ctx) {
            return Ok(end);
        }

        // Amendments accepted before this point finish first: the carrier gets the latest address.
        ctx.state_mut(|s| s.booking_started = true);
        ctx.wait_condition(|s: &Self| s.amendments_in_flight == 0).await?;
        let shipped = match ctx.execute_local_activity(OrderActivities::book_shipment, id, shipment()).await {
            Ok(shipped) => shipped,
            Err(ActivityExecutionError::Cancelled(_)) => return Err(WorkflowTermination::cancelled()),
            Err(err) => return Ok(End::Stopped(StopReason::ShipmentFailed, failure_message(&err))),
        };
        undo.booked = true;
        Self::set_status(ctx, OrderStatus::Shipped);
        Self::await_delivery(ctx, id, shipped.tracking_number).await
    }

    /// Holds the order in `awaiting_review` until an admin decides, the order is
    /// cancelled, or the deadline passes (a durable timer: it survives restarts).
    async fn await_review(ctx: &WorkflowContext<Self>, id: OrderId, within_secs: u64) -> WorkflowResult<Option<End>> {
        let detail = format!("total at or above the review threshold; decision due within {within_secs} s");
        let advance = Advance { order_id: id, to: OrderStatus::AwaitingReview, detail, review_due_at: None };
        ctx.execute_local_activity(OrderActivities::advance, advance, db_step()).await?;
        Self::set_status(ctx, OrderStatus::AwaitingReview);
        let decided = select! {
            r = ctx.wait_condition(|s: &Self| s.review.is_some() || s.cancel.is_some()).fuse() => { r?; true }
            _ = deadline_timer(ctx, Duration::from_secs(within_secs), None).fuse() => false,
        };
        if !decided {
            return Ok(Some(End::Stopped(StopReason::ReviewTimeout, "no review decision before the deadline".into())));
        }
        if let Some(end) = Self::cancel_requested(ctx) {
            return Ok(Some(end));
        }
        match ctx.state(|s| s.review.clone()) {
            Some(ReviewDecision { approve: false, note }) => {
                let detail = note.unwrap_or_else(|| "rejected in review".into());
                Ok(Some(End::Stopped(StopReason::ReviewRejected, detail)))
            }
            _ => Ok(None),
        }
    }

    /// After booking: follow the carrier until delivery, an overdue deadline, or
    /// a cancellation that arrives before the carrier has the parcel.
    async fn await_delivery(ctx: &WorkflowContext<Self>, id: OrderId, tracking: String) -> WorkflowResult<End> {
        let completed =
            |status| Ok(End::Completed(OrderOutcome { status, reason: None, tracking_number: Some(tracking.clone()) }));
        let within = Duration::from_secs(ctx.state(|s| s.input.deliver_within_secs));
        let mut deadline = std::pin::pin!(deadline_timer(ctx, within, None).fuse());
        loop {
            let woke = select! {
                r = ctx.wait_condition(|s: &Self| {
                    s.handled < s.shipment_events.len() || (s.cancel.is_some() && s.status == OrderStatus::Shipped)
                }).fuse() => { r?; true }
                _ = deadline => false,
            };
            if !woke {
                let detail = format!("not delivered within {} s of shipping", within.as_secs());
                let advance = Advance { order_id: id, to: OrderStatus::DeliveryOverdue, detail, review_due_at: None };
                ctx.execute_local_activity(OrderActivities::advance, advance, db_step()).await?;
                Self::set_status(ctx, OrderStatus::DeliveryOverdue);
                return completed(OrderStatus::DeliveryOverdue);
            }
            if let Some(end) = Self::cancel_requested(ctx) {
                return Ok(end);
            }
            while let Some(ev) = ctx.state(|s| s.shipment_events.get(s.handled).cloned()) {
                ctx.state_mut(|s| s.handled += 1);
                let detail = ev.detail.clone().unwrap_or_default();
                let to = match ev.event {
                    ShipmentEventKind::Exception => {
                        let e = CarrierException { order_id: id, at: ev.at.clone(), detail };
                        ctx.execute_local_activity(OrderActivities::record_exception, e, db_step()).await?;
                        ctx.state_mut(|s| s.changes += 1);
                        continue;
                    }
                    ShipmentEventKind::InTransit => OrderStatus::InTransit,
                    ShipmentEventKind::Delivered => OrderStatus::Delivered,
                };
                // Late or repeated events (in_transit after delivered) change nothing.
                if !ctx.state(|s| s.status).can_become(to) {
                    continue;
                }
                let advance = Advance {
                    order_id: id,
                    to,
                    detail: format!("carrier at {}: {detail}", ev.at),
                    review_due_at: None,
                };
                ctx.execute_local_activity(OrderActivities::advance, advance, db_step()).await?;
                Self::set_status(ctx, to);
                if to == OrderStatus::Delivered {
                    return completed(OrderStatus::Delivered);
                }
            }
        }
    }

    fn cancel_requested(ctx: &WorkflowContext<Self>) -> Option<End> {
        ctx.state(|s| s.cancel.clone())
            .map(|c| End::Stopped(StopReason::CancelRequested, format!("cancelled by {}: {}", c.by, c.reason)))
    }
}
