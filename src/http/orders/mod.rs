//! `POST /orders` and `GET /orders/{id}`.

pub mod actions;
pub mod events;
pub mod list;
pub mod request;
pub mod workflow;

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use self::request::CreateOrderRequest;
use super::auth::{Caller, Role};
use super::error::{ApiError, PriceChange, Problem};
use super::extract::JsonBody;
use super::state::AppState;
use crate::db::catalog;
use crate::db::orders::{self, OrderView, Recorded};
use crate::domain::{FieldError, FieldErrors, NewOrder, OrderId, PricedLine, PricedOrder, Totals};
use crate::temporal;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Place an order. Validates and prices it from the catalog, records it, and starts its workflow.
///
/// With an `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header),
/// repeating the same request returns the same order (200, `Idempotent-Replayed:
/// true`), even if prices or the catalog changed since; the same key with another
/// body is 422. A repeat sent while the first is still being recorded waits for it
/// and gets its answer.
#[utoipa::path(post, path = "/orders", operation_id = "createOrder", tag = "orders", request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$",
        description = "1-255 visible ASCII characters; makes retries safe")),
    security(("bearerAuth" = [])),
    responses(
        (status = 201, description = "Order accepted", body = OrderView,
            headers(("Location" = String, description = "/orders/{id}"))),
        (status = 200, description = "Replay of an earlier request with the same Idempotency-Key", body = OrderView,
            headers(("Idempotent-Replayed" = String, description = "`true`: this is the order the first request with this key made"))),
        (status = 409, description = "price_changed: a sent unit_price is not the catalog's", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (see `errors`), or an Idempotency-Key used before with another body (`/problems/idempotency-key-reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(customer_id = %caller.subject, order_id))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    json: JsonBody<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Customer])?;
    let key = idempotency_key(&headers)?;
    let idempotency = key.map(|k| (k, request_hash(&json.document())));
    // A retry is answered as the first request was, whatever changed since
    // (prices, the catalog, validation rules): the key is looked up before the
    // body is validated — in the same round trip as the catalog rows of the SKUs
    // sent (as sent: validation rejects any that are not exact SKUs anyway).
    let skus: Vec<String> =
        json.body.items.iter().flatten().filter_map(|i| i.sku.clone()).take(NewOrder::MAX_LINES).collect();
    let key = idempotency.as_ref().map(|(key, _)| key.as_str());
    let orders::CreateLookup { existing, products } =
        orders::lookup_for_create(&state.pool, &caller.subject, key, &skus).await?;
    if let (Some((_, hash)), Some((id, first_hash))) = (&idempotency, existing) {
        return replay(&state, id, hash, &first_hash).await;
    }
    let new = json.body.parse(&caller.subject).map_err(|e| ApiError::Validation(e.into_vec()))?;
    let priced = price(&state, new, products, idempotency)?;
    tracing::Span::current().record("order_id", tracing::field::display(priced.id));

    match orders::insert(&state.pool, &priced).await? {
        Recorded::Created { created_at, first_event_id } => {
            state.metrics.orders_created.inc();
            start_workflow(&state, priced.id, priced.totals.total).await;
            let view = OrderView::accepted(&priced, created_at, first_event_id);
            let location = HeaderValue::from_str(&format!("/orders/{}", priced.id))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)).into_response())
        }
        // A concurrent request with the same key recorded its order first.
        Recorded::Existing { id, request_hash } => {
            let (_, hash) =
                priced.idempotency.as_ref().ok_or_else(|| ApiError::Internal("conflict without a key".into()))?;
            replay(&state, id, hash, &request_hash).await
        }
    }
}

/// The answer to a request whose idempotency key already names order `id`: the
/// order (200, `Idempotent-Replayed`), or 409 when the key came with another body.
async fn replay(state: &AppState, id: OrderId, hash: &str, first_hash: &str) -> Result<Response, ApiError> {
    if hash != first_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let view = orders::view(&state.pool, id).await?.ok_or(ApiError::NotFound)?;
    // The first request may have died between recording and starting.
    start_workflow(state, id, view.total).await;
    Ok((StatusCode::OK, [(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"))], Json(view)).into_response())
}

/// Starts the order's workflow off the answer's path. The order is recorded, so
/// the answer need not wait for Temporal: a start that fails, or never finishes
/// because the API stops, is made by the recovery loop (`app::recover`), as when
/// Temporal is down. At most `temporal::STARTS_IN_FLIGHT` starts run at once; a
/// request beyond them waits here for one to finish, so a burst is answered at
/// the pace Temporal starts workflows and nothing queues without bound.
async fn start_workflow(state: &AppState, id: OrderId, total: Decimal) {
    // Fails only on a closed semaphore, and this one is never closed (were it,
    // recovery would start the order).
    let Ok(slot) = state.starts.clone().acquire_owned().await else { return };
    let state = state.clone();
    tokio::spawn(
        async move {
            let input = temporal::order_input(&state.settings, id, total);
            let started = state.start_bounded(|client| temporal::start_order(client, &state.settings, input)).await;
            drop(slot);
            match started {
                // An unmarked order only costs the recovery loop a start that
                // Temporal answers "already started".
                Ok(()) => {
                    if let Err(e) = orders::mark_workflow_started(&state.pool, id).await {
                        tracing::warn!(order_id = %id, error = %e, "workflow started but not marked; recovery will re-check");
                    }
                }
                Err(e) => tracing::warn!(order_id = %id, error = %e, "workflow not started yet; recovery loop will retry"),
            }
        }
        .in_current_span(),
    );
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else { return Ok(None) };
    let key = raw
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned()))
        .ok_or_else(|| ApiError::BadRequest("Idempotency-Key must be 1-255 visible ASCII characters".into()))
}

/// A hash of the request that does not depend on key order or whitespace.
fn request_hash(document: &Value) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(document).to_string().as_bytes()))
}

/// Checks every line against the catalog rows read for it and prices the order from their prices.
fn price(
    state: &AppState,
    order: NewOrder,
    products: Vec<catalog::Product>,
    idempotency: Option<(String, String)>,
) -> Result<PricedOrder, ApiError> {
    let catalog: BTreeMap<String, catalog::Product> = products.into_iter().map(|p| (p.sku.clone(), p)).collect();
    let mut errors = FieldErrors::new();
    let mut changes = Vec::new();
    let mut lines = Vec::with_capacity(order.lines.len());
    for (i, line) in order.lines.iter().enumerate() {
        let Some(product) = catalog.get(line.sku.as_str()).filter(|p| p.active) else {
            errors.add(format!("/items/{i}/sku"), format!("{} is not in the catalog", line.sku));
            continue;
        };
        if let Some(sent) = line.expected_unit_price
            && sent != product.unit_price
        {
            changes.push(PriceChange {
                pointer: format!("/items/{i}/unit_price"),
                sku: product.sku.clone(),
                sent,
                current: product.unit_price,
            });
        }
        lines.push(PricedLine {
            sku: line.sku.clone(),
            name: product.name.clone(),
            quantity: line.quantity,
            unit_price: product.unit_price,
            line_total: product.unit_price * Decimal::from(line.quantity.get()),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors.into_vec()));
    }
    if !changes.is_empty() {
        return Err(ApiError::PriceChanged(changes));
    }
    let totals = state.settings.pricing.price(lines.iter().map(|l| (l.unit_price, l.quantity.get())));
    if totals.total > Totals::MAX_AMOUNT {
        return Err(ApiError::Validation(vec![FieldError {
            pointer: "/items".into(),
            message: format!("the order total {} exceeds the maximum of {}", totals.total, Totals::MAX_AMOUNT),
        }]));
    }
    Ok(PricedOrder { id: OrderId::new(), order, lines, totals, idempotency })
}

/// The order as `caller` may see it: another customer's order does not exist for them.
pub(super) async fn visible_order(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(OrderId, OrderView), ApiError> {
    let id: OrderId = id.parse().map_err(|_| ApiError::NotFound)?;
    let owner = (caller.role == Role::Customer).then_some(caller.subject.as_str());
    let view = orders::view_for(&state.pool, id, owner).await?.ok_or(ApiError::NotFound)?;
    Ok((id, view))
}

/// An order with its lines, totals, payment and shipment summary and timeline.
/// Customers see only their own orders (another's is 404); admins see all.
#[utoipa::path(get, path = "/orders/{id}", operation_id = "getOrder", tag = "orders",
    params(("id" = String, Path, description = "Order id (UUID)")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The order as the read model has it", body = OrderView),
    ))]
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Customer, Role::Admin])?;
    let (_, view) = visible_order(&state, &caller, &id).await?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_hash_ignores_key_order_but_not_values() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b: Value = serde_json::from_str(r#"{ "b": {"y": "z", "x": [1, 2]}, "a": 1 }"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&json!({"a": 2, "b": {"x": [1, 2], "y": "z"}})));
        assert_ne!(request_hash(&a), request_hash(&json!({"a": 1, "b": {"x": [2, 1], "y": "z"}})));
    }

    #[test]
    fn idempotency_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("abc-123"));
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("has space"));
        assert!(idempotency_key(&h).is_err());
    }
}
