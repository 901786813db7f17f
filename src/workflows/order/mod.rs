//! `OrderWorkflow`: reserve → [review] → charge → ship → wait for the carrier,
//! compensating in reverse on failure or cancellation.
//!
//! Round trips to the Temporal server are what limit throughput (on one machine
//! the server, not our code, is the bottleneck), so every step is a local
//! activity: the worker runs it inline, and an order goes from accepted to
//! shipped in one workflow task (with regular activities it took three, and
//! measured ~2.5x fewer orders/s on the dev server); later tasks come only
//! from decisions and timers. Durability is kept: results are recorded as
//! markers when the task completes, and a task lost with a crashed worker is
//! replayed, re-running its steps, which is safe because every activity is
//! keyed by order id and re-reads what an earlier attempt recorded (the gateway
//! and carrier also get an idempotency key).
//!
//! Because a local activity acts before its task is accepted, decisions that
//! race (cancel, review, carrier reports, deadlines) are made in Postgres, and
//! the workflow follows the records (`follow`). Workflows started before that
//! change replay their own path (`legacy`), chosen by the `decided-in-postgres`
//! patch marker at the start of the history.

mod follow;
mod legacy;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::error::ActivityExecutionError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join;
use temporalio_sdk::{
    LocalActivityOptions, SyncWorkflowContext, WaitConditionOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use super::{HandlerError, STEP_RETRY_CAP, db_step};
use crate::activities::OrderActivities;
use crate::activities::failure::{PAYMENT_FAILED, SHIPMENT_REJECTED};
use crate::activities::notifier::Channel;
use crate::activities::order::{AmendAddress, Deliver, Delivered, ProposeStop};
use crate::db::decisions::StopDecision;
use crate::domain::{Action, Address, OrderId, OrderStatus, ReviewDecision, ShipmentEvent, StopReason};

/// Patch id: decisions are recorded in Postgres and the workflow follows them
/// (`follow`); histories without its marker take the path they were made on (`legacy`).
const DECIDED_IN_POSTGRES: &str = "decided-in-postgres";

/// Patch id: a cancellation in Temporal that comes after the carrier has the
/// parcel is refused (the table admits none there), and the workflow goes on
/// following the carrier to delivery or its deadline instead of ending with the
/// order `in_transit` and nothing left to move it.
const FOLLOWS_AFTER_REFUSED_CANCEL: &str = "follows-after-refused-cancel";

/// The workflow input: the id plus the policy decided when the order was accepted.
/// Everything else is in Postgres, the system of record, which keeps history
/// small and the payment token out of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInput {
    pub order_id: OrderId,
    /// Set when the total reached the review threshold: how long an admin has to decide.
    #[serde(default)]
    pub review_within_secs: Option<u64>,
    /// How long after shipping the carrier has to deliver.
    #[serde(default = "default_delivery_secs")]
    pub deliver_within_secs: u64,
}

fn default_delivery_secs() -> u64 {
    14 * 24 * 3600
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderOutcome {
    pub status: OrderStatus,
    pub reason: Option<StopReason>,
    pub tracking_number: Option<String>,
}

/// A cancellation asked for through the API (the `cancel` update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    pub reason: String,
    pub by: String,
}

/// The `decided` signal: a decision about the order was recorded in Postgres
/// (by the API, or the simulated carrier). It carries no authority: the
/// workflow reads the records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// What was decided, for workflows started before decisions were recorded:
    /// they act on it as they did on the signals and updates of their version.
    #[serde(default)]
    pub decision: Option<Decision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Cancel(CancelRequest),
    Review(ReviewDecision),
    Carrier(ShipmentEvent),
}

#[workflow]
pub struct OrderWorkflow {
    input: OrderInput,
    status: OrderStatus,
    /// Started on this version: follows the records (the `decided-in-postgres` patch).
    follows_records: bool,
    /// `decided` signals received, and how many of them the path has read the records for.
    wakes: u32,
    wakes_read: u32,
    tracking_number: Option<String>,
    /// When the carrier's delivery deadline falls (workflow time), once shipped.
    delivery_due: Option<std::time::SystemTime>,
    // What workflows of the version before decide from (`legacy`):
    cancel: Option<CancelRequest>,
    review: Option<ReviewDecision>,
    /// Carrier events in arrival order; `handled` of them are processed.
    shipment_events: Vec<ShipmentEvent>,
    handled: usize,
    /// Set once the carrier booking starts: the address can no longer change.
    booking_started: bool,
    amendments: u32,
    amendments_in_flight: u32,
    /// Timeline events recorded so far (the pending one included); wakes delivery.
    changes: u32,
    /// The order's path is over (delivery may still be running).
    closed: bool,
    deliveries: DeliveryReport,
    /// Where the order's path is now; only state, so replays rebuild it.
    step: Step,
    /// When the review deadline falls (workflow time), while held for review.
    review_due: Option<std::time::SystemTime>,
}

/// The step the order's path is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Reserving,
    AwaitingReview,
    Charging,
    Booking,
    FollowingCarrier,
    Compensating,
    /// The path is over (notifications may still be going out).
    Closed,
    /// A workflow started before steps were tracked (the path before `decided-in-postgres`).
    Untracked,
}

/// What only the running workflow knows, answered by the `live` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveState {
    /// The status as the workflow last recorded it.
    pub status: OrderStatus,
    pub step: Step,
    /// The pending review deadline, while the order waits for a review.
    pub review_due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The carrier's delivery deadline, once shipped and until the order ends.
    pub delivery_due_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The booking has begun: the shipping address can no longer change.
    pub address_locked: bool,
    pub deliveries: DeliveryReport,
}

/// Outcome of notification delivery, per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryReport {
    pub webhook: ChannelReport,
    pub email: ChannelReport,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelReport {
    pub delivered: u32,
    /// Batches that still failed after all retries (recorded per notification in Postgres).
    pub failed_batches: u32,
}

/// A channel's answer in one delivery round (none once the channel is off).
type Round = Option<Result<Delivered, ActivityExecutionError>>;

impl DeliveryReport {
    fn record(&mut self, r: &Round, channel: impl Fn(&mut Self) -> &mut ChannelReport) {
        let c = channel(self);
        match r {
            Some(Ok(Delivered::Sent(n))) => c.delivered += *n,
            Some(Err(_)) => c.failed_batches += 1,
            Some(Ok(Delivered::Unconfigured(_))) | None => {}
        }
    }
}

/// The worker answered that it has no such channel.
fn unconfigured(r: &Round) -> bool {
    matches!(r, Some(Ok(Delivered::Unconfigured(_))))
}

/// Payment: initial 1 s, at most `STEP_RETRY_CAP` between attempts, and no bound
/// on attempts here: the activity fails for good after the gateway's third failed
/// call (`party_calls`), so our own database being away never fails an order.
fn payment() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(STEP_RETRY_CAP)
                .maximum_attempts(0)
                .non_retryable_error_types([PAYMENT_FAILED])
                .build(),
        )
        .build()
}

/// Booking: as payment, bounded by the carrier's fifth failed call in the activity.
fn shipment() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(STEP_RETRY_CAP)
                .maximum_attempts(0)
                .non_retryable_error_types([SHIPMENT_REJECTED])
                .build(),
        )
        .build()
}

/// Compensations (refund, cancelled booking) must eventually happen: unlimited
/// attempts, on a detached token.
fn compensation() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(300))
                .maximum_attempts(0)
                .build(),
        )
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// Notification delivery: a storefront that is down is retried with backoff for a day.
fn delivery() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(60))
        .schedule_to_close_timeout(Duration::from_secs(24 * 3600))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(600))
                .maximum_attempts(0)
                .build(),
        )
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

/// The message of the failure that ended the activity (the cause, not the wrapper).
fn failure_message(err: &ActivityExecutionError) -> String {
    err.cause().map(|c| c.failure().message.clone()).unwrap_or_else(|| err.to_string())
}

#[workflow_methods]
impl OrderWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OrderInput) -> Self {
        Self {
            input,
            status: OrderStatus::Pending,
            follows_records: false,
            wakes: 0,
            wakes_read: 0,
            tracking_number: None,
            delivery_due: None,
            cancel: None,
            review: None,
            shipment_events: Vec::new(),
            handled: 0,
            booking_started: false,
            amendments: 0,
            amendments_in_flight: 0,
            changes: 1,
            closed: false,
            deliveries: DeliveryReport::default(),
            step: Step::Reserving,
            review_due: None,
        }
    }

    #[run(name = "OrderWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<OrderOutcome> {
        // First, before any other command: histories recorded before this marker
        // existed replay the path they were made on.
        let follows_records = ctx.patched(DECIDED_IN_POSTGRES);
        ctx.state_mut(|s| s.follows_records = follows_records);
        // The order's path and the delivery of its notifications run side by side:
        // a storefront that is down delays its webhooks, never the order.
        let c: &WorkflowContext<Self> = ctx;
        let (outcome, ()) = join!(Self::process(c), Self::deliver(c));
        Self::drain_handlers(ctx).await;
        outcome
    }

    async fn process(ctx: &WorkflowContext<Self>) -> WorkflowResult<OrderOutcome> {
        let outcome = if ctx.state(|s| s.follows_records) {
            Self::follow_records(ctx).await
        } else {
            Self::enter(ctx, Step::Untracked);
            Self::process_and_compensate(ctx).await
        };
        ctx.state_mut(|s| {
            s.closed = true;
            s.step = Step::Closed;
        });
        outcome
    }

    /// Delivers the outbox after every change, webhook and email concurrently,
    /// until the order is closed and everything due has gone out (or failed for good).
    /// A channel the worker answers is not configured is not asked again for
    /// this order (histories of versions before never hold that answer, so they
    /// replay asking every time, as they were made).
    async fn deliver(ctx: &WorkflowContext<Self>) {
        let order_id = ctx.state(|s| s.input.order_id);
        let mut seen = 0;
        let (mut webhook_on, mut email_on) = (true, true);
        loop {
            // Detached: notifications of a cancelled workflow's compensation still go out.
            let opts = WaitConditionOptions::builder().cancellation_token(WorkflowCancellationToken::new()).build();
            let _ = ctx.wait_condition_with_options(move |s: &Self| s.changes > seen || s.closed, opts).await;
            let (changes, closed) = ctx.state(|s| (s.changes, s.closed));
            if changes == seen && closed {
                return;
            }
            seen = changes;
            let round = |channel: Channel, on: bool| async move {
                if !on {
                    return None;
                }
                let deliver = Deliver { order_id, channel };
                Some(ctx.execute_local_activity(OrderActivities::deliver_notifications, deliver, delivery()).await)
            };
            let (webhook, email) = join!(round(Channel::Webhook, webhook_on), round(Channel::Email, email_on));
            webhook_on &= !unconfigured(&webhook);
            email_on &= !unconfigured(&email);
            ctx.state_mut(|s| {
                s.deliveries.record(&webhook, |r| &mut r.webhook);
                s.deliveries.record(&email, |r| &mut r.email);
            });
        }
    }

    /// Lets running update handlers (a cancel waiting for the end, an amendment)
    /// answer before the workflow closes; otherwise their callers get an error.
    async fn drain_handlers(ctx: &WorkflowContext<Self>) {
        let c = ctx.clone();
        // Detached from workflow cancellation: this runs after compensation either way.
        let opts = WaitConditionOptions::builder().cancellation_token(WorkflowCancellationToken::new()).build();
        let _ = ctx.wait_condition_with_options(move |_| c.all_handlers_finished(), opts).await;
    }

    /// Every recorded change wakes the notification delivery.
    fn set_status(ctx: &WorkflowContext<Self>, status: OrderStatus) {
        ctx.state_mut(|s| {
            s.status = status;
            s.changes += 1;
        });
    }

    /// Where the path is now (state only: no command, so no patch).
    fn enter(ctx: &WorkflowContext<Self>, step: Step) {
        ctx.state_mut(|s| {
            s.step = step;
            if step != Step::AwaitingReview {
                s.review_due = None;
            }
        });
    }

    /// What the workflow knows now: the step, the pending deadlines and the
    /// notification deliveries (`GET /orders/{id}/workflow`).
    #[query]
    pub fn live(&self, _ctx: &WorkflowContextView) -> LiveState {
        let ended = self.closed || self.status.is_terminal();
        LiveState {
            status: self.status,
            step: self.step,
            review_due_at: self.review_due.map(Into::into),
            delivery_due_at: self.delivery_due.filter(|_| !ended).map(Into::into),
            address_locked: self.booking_started,
            deliveries: self.deliveries.clone(),
        }
    }

    /// The status as the workflow sees it (Postgres has the same, plus the timeline).
    #[query]
    pub fn status(&self, _ctx: &WorkflowContextView) -> OrderStatus {
        self.status
    }

    /// How notification delivery went, per channel.
    #[query]
    pub fn deliveries(&self, _ctx: &WorkflowContextView) -> DeliveryReport {
        self.deliveries.clone()
    }

    /// A decision was recorded in Postgres: read the records (and deliver the
    /// timeline events it added).
    #[signal(name = "decided")]
    pub fn decided(&mut self, _ctx: &mut SyncWorkflowContext<Self>, decided: Decided) {
        self.wakes += 1;
        self.changes += 1;
        if self.follows_records {
            return;
        }
        match decided.decision {
            Some(Decision::Cancel(c)) if self.cancel.is_none() => self.cancel = Some(c),
            Some(Decision::Review(r)) if self.review.is_none() => self.review = Some(r),
            Some(Decision::Carrier(e)) => self.shipment_events.push(e),
            _ => {}
        }
    }

    /// An admin's decision on an order in review, from an API of the version
    /// before (this one records it and signals `decided`). Only the first counts.
    /// A workflow that follows the records reads it there.
    #[signal(name = "review")]
    pub fn review(&mut self, _ctx: &mut SyncWorkflowContext<Self>, decision: ReviewDecision) {
        if self.review.is_none() {
            self.review = Some(decision);
        }
        self.wakes += 1;
    }

    /// A carrier event from an API of the version before (this one records it
    /// and signals `decided`); processed in arrival order (a workflow that
    /// follows the records records it first).
    #[signal(name = "shipment_event")]
    pub fn shipment_event(&mut self, _ctx: &mut SyncWorkflowContext<Self>, event: ShipmentEvent) {
        self.shipment_events.push(event);
        self.wakes += 1;
    }

    #[update_validator(cancel)]
    fn validate_cancel(&self, _ctx: &WorkflowContextView, _req: &CancelRequest) -> Result<(), HandlerError> {
        if self.cancel.is_some() || self.status.admits(Action::Cancel) {
            Ok(())
        } else {
            Err(format!("the order is {} and can no longer be cancelled", self.status.as_str()).into())
        }
    }

    /// Cancels the order and answers once compensation has run, with the final
    /// status. (The API records cancels itself; this serves Temporal's own
    /// clients, and decides in Postgres all the same.)
    #[update(name = "cancel")]
    pub async fn cancel(ctx: &mut WorkflowContext<Self>, req: CancelRequest) -> Result<OrderStatus, HandlerError> {
        if ctx.state(|s| s.follows_records) {
            let order_id = ctx.state(|s| s.input.order_id);
            let detail = format!("cancelled by {}: {}", req.by, req.reason);
            let propose = ProposeStop { order_id, reason: StopReason::CancelRequested, detail };
            match ctx.execute_local_activity(OrderActivities::stop_order, propose, db_step()).await {
                Ok(StopDecision::Refused { status }) => {
                    return Err(format!("the order is {} and can no longer be cancelled", status.as_str()).into());
                }
                Ok(_) => ctx.state_mut(|s| s.wakes += 1),
                Err(e) => return Err(failure_message(&e).into()),
            }
        }
        ctx.state_mut(|s| {
            if s.cancel.is_none() {
                s.cancel = Some(req);
            }
        });
        ctx.wait_condition(|s: &Self| s.status.is_terminal()).await?;
        Ok(ctx.state(|s| s.status))
    }

    #[update_validator(amend_shipping_address)]
    fn validate_amend(&self, _ctx: &WorkflowContextView, _address: &Address) -> Result<(), HandlerError> {
        if self.booking_started || !self.status.admits(Action::AmendAddress) || self.cancel.is_some() {
            Err(format!("the order is {} and its shipment is already booked", self.status.as_str()).into())
        } else {
            Ok(())
        }
    }

    /// Changes the address the carrier will receive; only before the booking
    /// begins (decided in Postgres, as the API's own amendments are).
    #[update(name = "amend_shipping_address")]
    pub async fn amend_shipping_address(ctx: &mut WorkflowContext<Self>, address: Address) -> Result<(), HandlerError> {
        let (order_id, amendment) = ctx.state_mut(|s| {
            s.amendments += 1;
            s.amendments_in_flight += 1;
            (s.input.order_id, s.amendments)
        });
        let input = AmendAddress { order_id, address, amendment };
        let changed = ctx.execute_local_activity(OrderActivities::amend_address, input, db_step()).await;
        ctx.state_mut(|s| {
            s.amendments_in_flight -= 1;
            s.changes += 1;
        });
        match changed {
            Ok(true) => Ok(()),
            Ok(false) => Err("the order can no longer be amended".into()),
            Err(e) => Err(failure_message(&e).into()),
        }
    }
}
