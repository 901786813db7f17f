//! `GET /orders/{id}/workflow` (admin): what only the running workflow knows
//! (its step, pending deadlines, notification deliveries), asked through a
//! Temporal Query and shown next to the read model's status, so an operator sees
//! when the two disagree. Without a worker the query cannot be answered: 503,
//! while `GET /orders/{id}` keeps answering from Postgres.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use temporalio_client::WorkflowQueryOptions;
use temporalio_client::errors::WorkflowQueryError;
use utoipa::ToSchema;

use super::visible_order;
use crate::domain::OrderStatus;
use crate::http::auth::{Caller, Role};
use crate::http::error::{ApiError, Problem};
use crate::http::state::AppState;
use crate::temporal;
use crate::workflows::order::{LiveState, OrderWorkflow, Step};

/// A worker answers a query within milliseconds; with none polling, Temporal
/// holds the query until its own deadline, which no operator should wait for.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    pub workflow_id: String,
    /// The read model's status (Postgres, which decides).
    pub status: OrderStatus,
    /// What the workflow answered.
    pub live: LiveState,
    pub consistency: Consistency,
    /// The workflow in the Temporal Web UI, when `ORDERS_TEMPORAL_UI_URL` is set.
    pub web_ui_url: Option<String>,
}

/// How the workflow's status compares with the read model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Both say the same (an order `in_transit` and a workflow at `shipped` do:
    /// the workflow is not told of a pickup).
    Agrees,
    /// Postgres recorded a change the running workflow has not followed yet
    /// (it does within a workflow task; ask again).
    CatchingUp,
    /// The workflow's path is over and it ended elsewhere than the read model:
    /// a defect to investigate (the runbook says how).
    Disagrees,
}

impl Consistency {
    fn of(read_model: OrderStatus, live: &LiveState) -> Consistency {
        if read_model.as_followed() == live.status.as_followed() {
            Consistency::Agrees
        } else if live.step == Step::Closed {
            Consistency::Disagrees
        } else {
            Consistency::CatchingUp
        }
    }
}

/// The order's workflow as it is now, from a Temporal Query, next to the read
/// model's status. Admins only.
#[utoipa::path(get, path = "/orders/{id}/workflow", operation_id = "getOrderWorkflow", tag = "orders",
    params(("id" = String, Path, description = "Order id (UUID)")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The workflow's live state and how it compares with the read model", body = WorkflowView),
        (status = 503, description = "No worker answered the query (none running), or the workflow has not started yet; `GET /orders/{id}` still answers", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkflowView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let (id, view) = visible_order(&state, &caller, &id).await?;
    let workflow_id = id.workflow_id();
    let client = state.temporal().await.map_err(|e| ApiError::Unavailable(format!("temporal: {e}")))?;
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id.clone());
    let query = temporal::traced(handle.query(OrderWorkflow::live, (), WorkflowQueryOptions::default()));
    let live = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(live)) => live,
        Ok(Err(WorkflowQueryError::NotFound(_))) => {
            return Err(ApiError::WorkflowUnavailable(
                "the order's workflow has not started yet (the API's recovery loop starts it); retry shortly".into(),
            ));
        }
        Ok(Err(e)) => return Err(ApiError::WorkflowUnavailable(format!("the workflow did not answer the query: {e}"))),
        Err(_) => {
            return Err(ApiError::WorkflowUnavailable(format!(
                "no worker answered within {} s: is orders-worker running? GET /orders/{{id}} still answers \
                 from the read model",
                QUERY_TIMEOUT.as_secs()
            )));
        }
    };
    let web_ui_url = state
        .settings
        .temporal_ui_url
        .as_ref()
        .map(|base| format!("{base}/namespaces/{}/workflows/{workflow_id}", state.settings.temporal_namespace));
    Ok(Json(WorkflowView {
        consistency: Consistency::of(view.status, &live),
        workflow_id,
        status: view.status,
        live,
        web_ui_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::order::DeliveryReport;

    fn live(status: OrderStatus, step: Step) -> LiveState {
        LiveState {
            status,
            step,
            review_due_at: None,
            delivery_due_at: None,
            address_locked: false,
            deliveries: DeliveryReport::default(),
        }
    }

    #[test]
    fn a_closed_workflow_that_ended_elsewhere_disagrees() {
        use OrderStatus::*;
        assert_eq!(Consistency::of(Paid, &live(Paid, Step::Booking)), Consistency::Agrees);
        assert_eq!(Consistency::of(Cancelled, &live(AwaitingReview, Step::AwaitingReview)), Consistency::CatchingUp);
        assert_eq!(Consistency::of(Delivered, &live(InTransit, Step::Closed)), Consistency::Disagrees);
    }
}
