//! Acting on a running order: cancel, amend the address, review, carrier events.
//!
//! Postgres decides, the workflow follows. Each action is decided under the
//! order's row lock against the state machine (`db::decisions`): the first one
//! recorded wins, a conflicting one is answered 409 saying what won, and the
//! same one again gets its earlier answer. Only then is the order's workflow
//! told (a `decided` signal); it reads the records and acts on them. So the
//! answer is the decision's: Temporal being unreachable delays the workflow
//! (the recovery loop signals it later), never the answer.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::visible_order;
use crate::db::decisions::{self, AmendRefusal, Cancel, CarrierReport, Review, Stop};
use crate::db::orders::{self, OrderView};
use crate::domain::address::AddressInput;
use crate::domain::status::{MAX_AMENDMENTS, MAX_CARRIER_EXCEPTIONS};
use crate::domain::validation::text;
use crate::domain::{Address, FieldErrors, OrderId, OrderStatus, ReviewDecision, ShipmentEvent, ShipmentEventKind};
use crate::http::auth::{Caller, Role};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::JsonBody;
use crate::http::state::AppState;
use crate::temporal;
use crate::workflows;
use crate::workflows::order::CancelRequest;

/// How long telling the workflow may delay an answer; a decision not told by
/// then is told by the recovery loop.
const TELL_TIMEOUT: Duration = Duration::from_secs(3);

/// Tells the order's workflow about decision `seq` (see the module comment).
async fn tell(state: &AppState, id: OrderId, seq: i64, decision: Option<workflows::Decision>) {
    let attempt = async {
        let client = state.temporal().await.map_err(|e| e.to_string())?;
        temporal::tell_decided(client, &state.pool, id, seq, decision).await.map_err(|e| e.to_string())
    };
    let told = match tokio::time::timeout(TELL_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from Temporal within {TELL_TIMEOUT:?}")),
    };
    if let Err(e) = told {
        tracing::warn!(order_id = %id, error = %e, "decision recorded, workflow not told yet; the recovery loop will");
    }
}

/// The order as it is after a decision was recorded. The decision stands even
/// if Postgres cannot be read again just now: then the answer shows the order as
/// it was read before (never a 5xx for a decision that took effect).
async fn reread(state: &AppState, id: OrderId, before: OrderView) -> OrderView {
    match orders::view(&state.pool, id).await {
        Ok(Some(view)) => view,
        Ok(None) => before,
        Err(e) => {
            tracing::warn!(order_id = %id, error = %e, "decision recorded; the order could not be read again");
            before
        }
    }
}

/// The order once it has ended, or as it is after `within`.
async fn until_ended(state: &AppState, id: OrderId, before: OrderView, within: Duration) -> OrderView {
    // Subscribed before the first read, so no change between the two is missed.
    let mut changes = state.events.subscribe();
    let deadline = Instant::now() + within;
    let mut view = before;
    loop {
        view = reread(state, id, view).await;
        let left = deadline.saturating_duration_since(Instant::now());
        if view.status.is_terminal() || left.is_zero() {
            return view;
        }
        // A timeline event of this order (or a lost notification: read again anyway).
        let changed = async {
            loop {
                match changes.recv().await {
                    Ok(order) if order == id.0 => return,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), changed).await;
    }
}

fn invalid_state(status: OrderStatus, action: &str) -> ApiError {
    ApiError::InvalidState(format!("the order is {} and can no longer be {action}", status.as_str()))
}

/// A 409 for an order stopped before this action: what stopped it, and why.
fn stopped_first(stop: Option<Stop>, action: &str) -> ApiError {
    ApiError::InvalidState(match stop {
        Some(stop) => format!(
            "the order was stopped before {action} ({}: {}) and ends {}",
            stop.reason.as_str(),
            stop.detail,
            stop.reason.status().as_str()
        ),
        None => format!("the order is being stopped; {action} is no longer possible"),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why; 1 to 500 characters.
    #[schema(required = true, value_type = String, example = "ordered the wrong size", max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub reason: Option<String>,
}

/// Cancel an order until the carrier has the parcel. The cancel is recorded
/// first (a carrier's pickup, a rejection or a failure recorded before it wins:
/// 409 says which), then compensation runs: refund, cancelled booking,
/// released stock. Answers 200 with the cancelled order once that is done, or
/// 202 with the order as it is if it takes longer than `ORDERS_CANCEL_WAIT`
/// (the cancel stands and completes). Sending it again is answered the same way.
#[utoipa::path(post, path = "/orders/{id}/cancel", operation_id = "cancelOrder", tag = "orders", request_body = CancelBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Cancelled (now, or it already was)", body = OrderView),
        (status = 202, description = "Cancel recorded; compensation still running", body = OrderView),
        (status = 409, description = "In transit, failed or finished; or another change is in progress (retry)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<CancelBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (id, before) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let reason = errors.required("/reason", body.reason).and_then(|r| errors.check("/reason", text(&r, 1, 500)));
    let Some(reason) = reason else { return Err(ApiError::Validation(errors.into_vec())) };
    let detail = format!("cancelled by {}: {reason}", caller.subject);
    match decisions::cancel(&state.pool, state.settings.action_lock_wait, id, &detail).await? {
        Cancel::Recorded { seq, .. } => {
            let request = CancelRequest { reason, by: caller.subject.clone() };
            tell(&state, id, seq, Some(workflows::Decision::Cancel(request))).await;
        }
        // Cancelled already (this cancel sent again, a rejection, a deadline):
        // answered with the order as it ends.
        Cancel::Earlier(stop) if stop.reason.status() == OrderStatus::Cancelled => {}
        Cancel::Earlier(stop) => return Err(stopped_first(Some(stop), "this cancel")),
        Cancel::Refused(status) => return Err(invalid_state(status, "cancelled")),
    }
    let view = until_ended(&state, id, before, state.settings.cancel_wait).await;
    let status = if view.status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(view)))
}

/// Change the shipping address until the shipment is booked; the carrier gets
/// the address of the last change answered 200 (a change that arrives once the
/// booking has begun is refused with 409). At most 10 changes per order.
#[utoipa::path(patch, path = "/orders/{id}/shipping-address", operation_id = "amendShippingAddress", tag = "orders", request_body = AddressInput,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The address is changed; the order with it", body = OrderView),
        (status = 409, description = "Shipment booked or being booked, order stopped, too many changes; or another change is in progress (retry)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn amend_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<AddressInput>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (id, before) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let Some(address): Option<Address> = Address::parse(body, "", &mut errors) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    match decisions::amend(&state.pool, state.settings.action_lock_wait, id, &address).await? {
        Ok(seq) => tell(&state, id, seq, None).await,
        Err(AmendRefusal::Status(status)) => {
            return Err(ApiError::InvalidState(format!(
                "the order is {} and its shipment is already booked",
                status.as_str()
            )));
        }
        Err(AmendRefusal::BookingBegun) => {
            return Err(ApiError::InvalidState(
                "the shipment is being booked with the address as it is; it can no longer change".into(),
            ));
        }
        Err(AmendRefusal::Stopped(stop)) => return Err(stopped_first(stop, "this change")),
        Err(AmendRefusal::TooMany) => {
            return Err(ApiError::InvalidState(format!(
                "the shipping address was already changed {MAX_AMENDMENTS} times, the most an order allows"
            )));
        }
    }
    Ok(Json(reread(&state, id, before).await))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    #[schema(required = true, value_type = Decision)]
    pub decision: Option<Decision>,
    /// At most 500 characters; shown on the timeline when rejecting.
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub note: Option<String>,
}

/// Approve or reject an order held for manual review (admins). Accepted (202):
/// the order then continues to the charge, or is cancelled with compensation.
/// The first decision counts: the same one again is answered 202, the other
/// one 409, as is a decision on an order cancelled or timed out before it.
#[utoipa::path(post, path = "/orders/{id}/review", operation_id = "reviewOrder", tag = "orders", request_body = ReviewBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 202, description = "The decision is recorded (or was already); the workflow follows it", body = OrderView),
        (status = 409, description = "Not awaiting review, already decided the other way, or stopped first; or another change is in progress (retry)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<ReviewBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let (id, before) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let decision = errors.required("/decision", body.decision);
    let note = errors.optional("/note", body.note, |n| text(n, 0, 500)).map(|n| n.filter(|n| !n.is_empty()));
    let (Some(decision), Some(note)) = (decision, note) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    let approve = matches!(decision, Decision::Approve);
    let lock_wait = state.settings.action_lock_wait;
    match decisions::review(&state.pool, lock_wait, id, approve, note.as_deref(), &caller.subject).await? {
        Review::Recorded { seq } => {
            let signal = workflows::Decision::Review(ReviewDecision { approve, note });
            tell(&state, id, seq, Some(signal)).await;
        }
        Review::Replay => {}
        Review::Conflict { approved } => {
            let was = if approved { "approved" } else { "rejected" };
            return Err(ApiError::InvalidState(format!("the order was already {was}")));
        }
        Review::Stopped(stop) => return Err(stopped_first(stop, "a review decision")),
        Review::NotAwaiting(status) => {
            return Err(ApiError::InvalidState(format!("the order is {}, not awaiting review", status.as_str())));
        }
    }
    Ok((StatusCode::ACCEPTED, Json(reread(&state, id, before).await)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentEventBody {
    #[schema(required = true, value_type = ShipmentEventKind)]
    pub event: Option<ShipmentEventKind>,
    /// RFC 3339 time of the event at the carrier.
    #[schema(required = true, value_type = String, format = DateTime, example = "2026-11-25T10:00:00Z")]
    pub at: Option<String>,
    /// At most 500 characters.
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub detail: Option<String>,
}

/// Report a carrier event (role `carrier`). Recorded at once: pickup makes the
/// order `in_transit` (from then on it can no longer be cancelled), delivery
/// `delivered`; duplicates and late events are accepted and change nothing. An
/// order cancelled before the report is answered 409, so the carrier knows.
#[utoipa::path(post, path = "/orders/{id}/shipment-events", operation_id = "reportShipmentEvent", tag = "orders", request_body = ShipmentEventBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 202, description = "The event is recorded (or was already); the workflow follows it", body = OrderView),
        (status = 409, description = "Not shipped yet, cancelled or failed first, too many exceptions; or another change is in progress (retry)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn shipment_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<ShipmentEventBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(&[Role::Carrier, Role::Admin])?;
    let (id, before) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let event = errors.required("/event", body.event);
    let at = errors.required("/at", body.at).and_then(|t| {
        let parsed = chrono::DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339())
            .map_err(|_| "must be an RFC 3339 timestamp".to_owned());
        errors.check("/at", parsed)
    });
    let detail = errors.optional("/detail", body.detail, |d| text(d, 0, 500));
    let (Some(event), Some(at), Some(detail)) = (event, at, detail) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    let lock_wait = state.settings.action_lock_wait;
    let said = detail.clone().unwrap_or_default();
    match decisions::carrier_report(&state.pool, lock_wait, id, event, &at, &said).await? {
        CarrierReport::Recorded { seq, status, moved } => {
            if moved && status.is_terminal() {
                state.metrics.orders_finished.with_label_values(&[status.as_str()]).inc();
            }
            if let Some(seq) = seq {
                let signal = workflows::Decision::Carrier(ShipmentEvent { event, at, detail });
                tell(&state, id, seq, Some(signal)).await;
            }
        }
        CarrierReport::Unchanged(_) => {}
        CarrierReport::Stopped(stop) => return Err(stopped_first(stop, "this report")),
        CarrierReport::NotShipped(status) => {
            return Err(ApiError::InvalidState(format!("the order is {}, not shipped yet", status.as_str())));
        }
        CarrierReport::TooMany => {
            return Err(ApiError::InvalidState(format!(
                "the order already has {MAX_CARRIER_EXCEPTIONS} exceptions, the most it records"
            )));
        }
    }
    Ok((StatusCode::ACCEPTED, Json(reread(&state, id, before).await)))
}
