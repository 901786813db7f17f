//! `GET /orders`: newest (or oldest) first, filtered, with an opaque cursor.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::orders::{self, ListFilter, OrderSummary};
use crate::domain::{FieldErrors, OrderStatus};
use crate::http::auth::{Caller, Role};
use crate::http::error::{ApiError, Problem};
use crate::http::state::AppState;

pub const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 20;

/// Query parameters; all optional. Strings here, parsed below, so that every bad
/// one is reported (as `/name`) instead of a bare 400 for the first.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    /// RFC 3339 timestamp, exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    created_after: Option<String>,
    /// RFC 3339 timestamp, exclusive.
    #[param(value_type = Option<String>, format = DateTime)]
    created_before: Option<String>,
    /// Admins only (403 for anyone else's): orders of this customer.
    customer_id: Option<String>,
    /// 1 to 100, default 20.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page (asked for in the same `order`).
    #[param(pattern = r"^[0-9a-fA-F]{32}$")]
    cursor: Option<String>,
    /// `newest` (the default) or `oldest` first, as a review queue is worked.
    #[param(value_type = Option<String>, pattern = "^(newest|oldest)$")]
    order: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn timestamp(v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z".into())
}

fn cursor(v: &str) -> Result<Uuid, String> {
    hex::decode(v)
        .ok()
        .and_then(|b| Uuid::from_slice(&b).ok())
        .ok_or_else(|| "is not a cursor returned by this API".into())
}

fn parse(params: ListParams, caller: &Caller) -> Result<ListFilter, ApiError> {
    // Customers see their own orders; asking for someone else's is refused, not widened.
    if caller.role != Role::Admin && params.customer_id.as_ref().is_some_and(|c| *c != caller.subject) {
        return Err(ApiError::Forbidden);
    }
    let mut errors = FieldErrors::new();
    let mut filter = ListFilter { limit: DEFAULT_LIMIT, ..Default::default() };
    if let Some(s) = params.status {
        filter.status = errors.check("/status", OrderStatus::parse(&s).ok_or_else(|| format!("{s:?} is not a status")));
    }
    if let Some(t) = params.created_after {
        filter.created_after = errors.check("/created_after", timestamp(&t));
    }
    if let Some(t) = params.created_before {
        filter.created_before = errors.check("/created_before", timestamp(&t));
    }
    if let Some(l) = params.limit {
        let parsed = l.parse::<i64>().ok().filter(|n| (1..=MAX_LIMIT).contains(n));
        filter.limit = errors
            .check("/limit", parsed.ok_or_else(|| format!("must be an integer from 1 to {MAX_LIMIT}")))
            .unwrap_or(DEFAULT_LIMIT);
    }
    if let Some(c) = params.cursor {
        filter.after = errors.check("/cursor", cursor(&c));
    }
    if let Some(o) = params.order {
        filter.oldest_first = errors
            .check(
                "/order",
                match o.as_str() {
                    "newest" => Ok(false),
                    "oldest" => Ok(true),
                    _ => Err(format!("{o:?} is neither \"newest\" nor \"oldest\"")),
                },
            )
            .unwrap_or(false);
    }
    filter.customer_id = if caller.role == Role::Admin { params.customer_id } else { Some(caller.subject.clone()) };
    if errors.is_empty() { Ok(filter) } else { Err(ApiError::Validation(errors.into_vec())) }
}

/// Orders, newest first (or oldest, with `order=oldest`). Customers see only
/// their own; admins may filter by `customer_id`.
#[utoipa::path(get, path = "/orders", operation_id = "listOrders", tag = "orders", params(ListParams),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "One page of orders in the order asked, with the cursor of the next", body = OrderPage),
        (status = 422, description = "Invalid query parameters, each named in `errors` as `/name`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<OrderPage>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let filter = parse(params, &caller)?;
    let items = orders::list(&state.pool, &filter).await?;
    let next_cursor =
        (items.len() as i64 == filter.limit).then(|| items.last().map(|o| hex::encode(o.id.as_bytes()))).flatten();
    Ok(Json(OrderPage { items, next_cursor }))
}
