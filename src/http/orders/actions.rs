//! Acting on a running order: cancel, amend the address, review, carrier events.
//! Each goes to the order's workflow (an Update when the caller needs the real
//! answer, a Signal when it does not) after a check against the read model.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use temporalio_client::{Client, WorkflowExecuteUpdateOptions, WorkflowHandle, WorkflowSignalOptions};
use utoipa::ToSchema;

use super::visible_order;
use crate::db::orders::{self, OrderView};
use crate::db::reviews;
use crate::domain::address::AddressInput;
use crate::domain::validation::text;
use crate::domain::{Address, FieldErrors, OrderId, OrderStatus, ReviewDecision, ShipmentEvent, ShipmentEventKind};
use crate::http::auth::{Caller, Role};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::JsonBody;
use crate::http::state::AppState;
use crate::temporal::traced;
use crate::workflows::OrderWorkflow;
use crate::workflows::order::CancelRequest;

async fn workflow(state: &AppState, id: OrderId) -> Result<WorkflowHandle<Client, OrderWorkflow>, ApiError> {
    let client = state.temporal().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(client.get_workflow_handle::<OrderWorkflow>(id.workflow_id()))
}

async fn reread(state: &AppState, id: OrderId) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(orders::view(&state.pool, id).await?.ok_or(ApiError::NotFound)?))
}

fn update_error(e: temporalio_client::errors::WorkflowUpdateError) -> ApiError {
    use temporalio_client::errors::WorkflowUpdateError as E;
    match e {
        // The validator's (or the handler's) refusal: the order's state forbids it.
        E::Failed(f) => ApiError::InvalidState(f.message.clone()),
        E::NotFound(_) => ApiError::InvalidState("the order is no longer running".into()),
        other => ApiError::Unavailable(format!("temporal: {other}")),
    }
}

fn invalid_state(status: OrderStatus, action: &str) -> ApiError {
    ApiError::InvalidState(format!("the order is {} and can no longer be {action}", status.as_str()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why; 1 to 500 characters.
    #[schema(required = true, value_type = String, example = "ordered the wrong size", max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    pub reason: Option<String>,
}

/// Cancel an order until the carrier has the parcel. Answers after compensation
/// has run (refund, released stock), with the order as it then is.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", request_body = CancelBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Cancelled (or it already was)", body = OrderView),
        (status = 409, description = "In transit or finished", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<CancelBody>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (id, view) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let reason = errors.required("/reason", body.reason).and_then(|r| errors.check("/reason", text(&r, 1, 500)));
    let Some(reason) = reason else { return Err(ApiError::Validation(errors.into_vec())) };
    if view.status == OrderStatus::Cancelled {
        return Ok(Json(view));
    }
    if !view.status.can_cancel() {
        return Err(invalid_state(view.status, "cancelled"));
    }
    let request = CancelRequest { reason, by: caller.subject.clone() };
    // One update id per order: a repeated cancel attaches to the first one's answer.
    let opts = WorkflowExecuteUpdateOptions::builder().update_id(format!("cancel-{id}")).build();
    let handle = workflow(&state, id).await?;
    traced(handle.execute_update(OrderWorkflow::cancel, request, opts)).await.map_err(update_error)?;
    reread(&state, id).await
}

/// Change the shipping address until the shipment is booked; the carrier gets the new one.
#[utoipa::path(patch, path = "/orders/{id}/shipping-address", tag = "orders", request_body = AddressInput,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 200, body = OrderView),
        (status = 409, description = "Shipment already booked", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn amend_address(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<AddressInput>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (id, view) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let Some(address): Option<Address> = Address::parse(body, "", &mut errors) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    if !view.status.can_amend_address() {
        return Err(ApiError::InvalidState(format!(
            "the order is {} and its shipment is already booked",
            view.status.as_str()
        )));
    }
    let opts = WorkflowExecuteUpdateOptions::builder().build();
    let handle = workflow(&state, id).await?;
    traced(handle.execute_update(OrderWorkflow::amend_shipping_address, address, opts)).await.map_err(update_error)?;
    reread(&state, id).await
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
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub note: Option<String>,
}

/// Approve or reject an order held for manual review (admins). Accepted (202):
/// the order then continues to the charge, or is cancelled with compensation.
#[utoipa::path(post, path = "/orders/{id}/review", tag = "orders", request_body = ReviewBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 202, body = OrderView),
        (status = 409, description = "Not awaiting review, or already decided the other way", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, .. }: JsonBody<ReviewBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let (id, view) = visible_order(&state, &caller, &id).await?;
    let mut errors = FieldErrors::new();
    let decision = errors.required("/decision", body.decision);
    let note = errors.optional("/note", body.note, |n| text(n, 0, 500)).map(|n| n.filter(|n| !n.is_empty()));
    let (Some(decision), Some(note)) = (decision, note) else {
        return Err(ApiError::Validation(errors.into_vec()));
    };
    let approve = matches!(decision, Decision::Approve);
    let already = |approved: bool| {
        ApiError::InvalidState(format!("the order was already {}", if approved { "approved" } else { "rejected" }))
    };
    // The first decision counts; the same one again is a replay (a retry after
    // a lost answer), whatever the order's status by now.
    if view.status == OrderStatus::AwaitingReview {
        // Recorded now, or earlier with its signal perhaps lost: it goes (again) below.
        let counted = reviews::record(&state.pool, id, approve, note.as_deref(), &caller.subject).await?;
        if counted != approve {
            return Err(already(counted));
        }
    } else {
        return match reviews::find(&state.pool, id).await? {
            Some(recorded) if recorded == approve => Ok((StatusCode::ACCEPTED, Json(view))),
            Some(recorded) => Err(already(recorded)),
            None => Err(ApiError::InvalidState(format!("the order is {}, not awaiting review", view.status.as_str()))),
        };
    }
    let signal = ReviewDecision { approve, note };
    // One signal per order, however often the decision is sent.
    let opts = WorkflowSignalOptions::builder().request_id(format!("review-{id}")).build();
    let handle = workflow(&state, id).await?;
    traced(handle.signal(OrderWorkflow::review, signal, opts))
        .await
        .map_err(|e| ApiError::Unavailable(format!("temporal: {e}")))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
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
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub detail: Option<String>,
}

/// Report a carrier event (role `carrier`). Duplicates and late events are
/// accepted and change nothing.
#[utoipa::path(post, path = "/orders/{id}/shipment-events", tag = "orders", request_body = ShipmentEventBody,
    params(("id" = String, Path, description = "Order id")), security(("bearerAuth" = [])),
    responses(
        (status = 202, body = OrderView),
        (status = 409, description = "Not shipped yet", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn shipment_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody { body, raw }: JsonBody<ShipmentEventBody>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(&[Role::Carrier, Role::Admin])?;
    let (id, view) = visible_order(&state, &caller, &id).await?;
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
    if view.status.is_terminal() {
        return Ok((StatusCode::ACCEPTED, Json(view)));
    }
    if view.status < OrderStatus::Shipped {
        return Err(ApiError::InvalidState(format!("the order is {}, not shipped yet", view.status.as_str())));
    }
    // The same report sent twice is one signal.
    let mut digest = Sha256::new();
    digest.update(id.to_string().as_bytes());
    digest.update(&raw);
    let request_id = hex::encode(digest.finalize());
    let opts = WorkflowSignalOptions::builder().request_id(request_id).build();
    let handle = workflow(&state, id).await?;
    traced(handle.signal(OrderWorkflow::shipment_event, ShipmentEvent { event, at, detail }, opts))
        .await
        .map_err(|e| ApiError::Unavailable(format!("temporal: {e}")))?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}
