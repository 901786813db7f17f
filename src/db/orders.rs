//! The orders read model: written when an order is accepted and at each status
//! change, read by `GET /orders/{id}` (which works while no worker runs).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres};
use utoipa::ToSchema;
use uuid::Uuid;

use super::shipments::{self, Shipment};
use super::{catalog, payments};
use crate::domain::{Action, Address, OrderId, OrderStatus, PricedOrder, StopReason};

const ACCEPTED: &str = "order accepted";
/// Timeline events that are not status changes (the status stays): a carrier
/// exception, an address change, and a party's refusal for good of a
/// compensation (see `activities::order`). With the statuses, these are the
/// event types (`order.<event>`) that webhooks carry.
pub const EXCEPTION: &str = "exception";
pub const ADDRESS_CHANGED: &str = "address_changed";
pub const REFUND_REFUSED: &str = "refund_refused";
pub const CANCELLATION_REFUSED: &str = "cancellation_refused";
pub const OTHER_EVENTS: [&str; 4] = [EXCEPTION, ADDRESS_CHANGED, REFUND_REFUSED, CANCELLATION_REFUSED];

/// The LISTEN/NOTIFY channel announcing new timeline events; the payload is the order id.
pub const EVENTS_CHANNEL: &str = "order_events";

/// The live-event wake-up of the event CTE `e` (only when `e` is new), as a
/// literal for `concat!`. Parameters: $1 order, $5 channel. (The event is also
/// the notification: `db::notifications` reads the timeline.)
macro_rules! wake {
    () => {
        "woken AS (SELECT pg_notify($5, $1::text) FROM e)"
    };
}

/// What happened when an order was recorded.
#[derive(Debug)]
pub enum Recorded {
    Created {
        created_at: DateTime<Utc>,
        first_event_id: i64,
    },
    /// The customer already used this idempotency key; `request_hash` is the hash of that first request.
    Existing {
        id: OrderId,
        request_hash: String,
    },
}

/// Records an accepted order with its lines and first timeline event: one
/// statement, so one round trip and one commit.
#[tracing::instrument(name = "db.orders.insert", skip_all, fields(order_id = %order.id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn insert(pool: &PgPool, order: &PricedOrder) -> Result<Recorded, sqlx::Error> {
    let (key, hash) = order.idempotency.clone().unzip();
    let o = &order.order;
    let skus: Vec<&str> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    let names: Vec<&str> = order.lines.iter().map(|l| l.name.as_str()).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity.get() as i32).collect();
    let unit_prices: Vec<Decimal> = order.lines.iter().map(|l| l.unit_price).collect();
    let line_totals: Vec<Decimal> = order.lines.iter().map(|l| l.line_total).collect();
    let pending = OrderStatus::Pending.as_str();
    // ON CONFLICT waits for a concurrent insert with the same key to commit, so
    // concurrent duplicates see each other and exactly one order is created; the
    // lines and the event are written only with the order (FROM o). Parameters
    // $1-$5 are the event's, as in `record_event`.
    const SQL: &str = concat!(
        "WITH o AS (INSERT INTO orders (id, customer_id, status, subtotal, tax, shipping, total, shipping_address, \
                      billing_address, payment_method, payment_token, notes, idempotency_key, request_hash, workflow_id) \
                    VALUES ($1, $6, $2, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                    ON CONFLICT (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL \
                    DO NOTHING RETURNING created_at), \
              i AS (INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price, line_total) \
                    SELECT $1, (l.n - 1)::smallint, l.sku, l.name, l.quantity, l.unit_price, l.line_total \
                      FROM o, unnest($19::text[], $20::text[], $21::int[], $22::numeric[], $23::numeric[]) \
                           WITH ORDINALITY AS l(sku, name, quantity, unit_price, line_total, n)), \
              e AS (INSERT INTO order_events (order_id, status, key, detail) SELECT $1, $2, $3, $4 FROM o \
                    ON CONFLICT DO NOTHING RETURNING id), ",
        wake!(),
        " SELECT o.created_at, e.id FROM o JOIN e ON true LEFT JOIN woken ON true"
    );
    let inserted: Option<(DateTime<Utc>, i64)> =
        bind_event(sqlx::query_as(SQL), order.id, pending, pending, Some(ACCEPTED))
            .bind(&o.customer_id)
            .bind(order.totals.subtotal)
            .bind(order.totals.tax)
            .bind(order.totals.shipping)
            .bind(order.totals.total)
            .bind(Json(&o.shipping_address))
            .bind(Json(&o.billing_address))
            .bind(o.payment_method.as_str())
            .bind(&o.payment_token)
            .bind(&o.notes)
            .bind(&key)
            .bind(&hash)
            .bind(order.id.workflow_id())
            .bind(&skus)
            .bind(&names)
            .bind(&quantities)
            .bind(&unit_prices)
            .bind(&line_totals)
            .fetch_optional(pool)
            .await?;
    if let Some((created_at, first_event_id)) = inserted {
        return Ok(Recorded::Created { created_at, first_event_id });
    }
    // The conflict means the row exists (it is never deleted): none here is impossible.
    let key = key.as_deref().ok_or(sqlx::Error::RowNotFound)?;
    let (id, request_hash) = by_idempotency_key(pool, &o.customer_id, key).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok(Recorded::Existing { id, request_hash })
}

/// What `POST /orders` reads before deciding.
pub struct CreateLookup {
    /// The order the idempotency key already names, with its request's hash.
    pub existing: Option<(OrderId, String)>,
    pub products: Vec<catalog::Product>,
}

/// What `POST /orders` reads before deciding, in one round trip: the order this
/// customer's idempotency key already names (with the hash of its request), and
/// the catalog rows of the SKUs asked for.
#[tracing::instrument(name = "db.orders.lookup_for_create", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn lookup_for_create(
    pool: &PgPool,
    customer: &str,
    key: Option<&str>,
    skus: &[String],
) -> Result<CreateLookup, sqlx::Error> {
    type Row =
        (Option<String>, Option<String>, Option<Decimal>, Option<bool>, Option<i32>, Option<Uuid>, Option<String>);
    const SQL: &str = concat!(
        "SELECT ",
        catalog::product_columns!(),
        ", NULL::uuid, NULL::text ",
        catalog::products_from!(),
        " WHERE p.sku = ANY($1) UNION ALL \
         SELECT NULL, NULL, NULL, NULL, NULL, id, request_hash FROM orders WHERE customer_id = $2 AND idempotency_key = $3"
    );
    let rows: Vec<Row> = sqlx::query_as(SQL).bind(skus).bind(customer).bind(key).fetch_all(pool).await?;
    let (mut existing, mut products) = (None, Vec::with_capacity(rows.len()));
    for row in rows {
        match row {
            (None, None, None, None, None, Some(id), Some(hash)) => existing = Some((OrderId(id), hash)),
            (Some(sku), Some(name), Some(unit_price), Some(active), Some(available), None, None) => {
                products.push(catalog::Product { sku, name, unit_price, active, available })
            }
            _ => return Err(sqlx::Error::Decode("a catalog row with a missing column".into())),
        }
    }
    Ok(CreateLookup { existing, products })
}

/// The order a customer placed with this idempotency key, with the hash of that first request.
pub async fn by_idempotency_key<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    customer: &str,
    key: &str,
) -> Result<Option<(OrderId, String)>, sqlx::Error> {
    let row: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, request_hash FROM orders WHERE customer_id = $1 AND idempotency_key = $2")
            .bind(customer)
            .bind(key)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(id, request_hash)| (OrderId(id), request_hash)))
}

/// Appends a timeline event (which is also its notification, `db::notifications`),
/// written once whatever retries.
#[tracing::instrument(name = "db.orders.record_event", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn record_event(
    conn: &mut PgConnection,
    id: OrderId,
    status: &str,
    key: &str,
    detail: Option<&str>,
) -> Result<Option<i64>, sqlx::Error> {
    // One round trip: the event and, only when it is new, a wake-up for
    // live-event subscribers on every API replica (delivered at commit).
    const SQL: &str = concat!(
        "WITH e AS (INSERT INTO order_events (order_id, status, key, detail) VALUES ($1, $2, $3, $4) \
                    ON CONFLICT DO NOTHING RETURNING id), ",
        wake!(),
        " SELECT e.id FROM e LEFT JOIN woken ON true"
    );
    let added: Option<(i64,)> =
        bind_event(sqlx::query_as(SQL), id, status, key, detail).fetch_optional(&mut *conn).await?;
    Ok(added.map(|(event_id,)| event_id))
}

/// Binds parameters $1-$5 of a statement that records a timeline event with
/// `wake!`: order, status, event key, detail, channel.
fn bind_event<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    id: OrderId,
    status: &'q str,
    key: &'q str,
    detail: Option<&'q str>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query.bind(id.0).bind(status).bind(key).bind(detail).bind(EVENTS_CHANNEL)
}

/// Records when the review deadline of an order held for review falls.
pub async fn set_review_due(conn: &mut PgConnection, id: OrderId, due: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET review_due_at = $2 WHERE id = $1").bind(id.0).bind(due).execute(conn).await?;
    Ok(())
}

/// The statement of a move (`transition`), with more CTEs of the caller's after
/// it (parameters from $8). Parameters: $1-$5 as in `record_event`, $6 the
/// reason, $7 the statuses the move may come from.
///
/// A fence without a reason was set by a workflow started before stops were
/// recorded with one; it still admits its own end, failed or cancelled. One round
/// trip: the move, and only if it happened its timeline event and wake-up.
macro_rules! transition_sql {
    ($($also:expr),*) => {
        concat!(
            "WITH u AS (UPDATE orders SET status = $2, reason = $6, updated_at = now() \
                        WHERE id = $1 AND status = ANY($7) \
                          AND (stopped_at IS NULL OR stop_reason = $6 OR (stop_reason IS NULL AND $6 IS NOT NULL)) \
                        RETURNING id), \
                  e AS (INSERT INTO order_events (order_id, status, key, detail) SELECT $1, $2, $3, $4 FROM u \
                        ON CONFLICT DO NOTHING RETURNING id), ",
            wake!(),
            $(", ", $also,)*
            " SELECT count(*) FROM u LEFT JOIN woken ON true"
        )
    };
}

/// Moves an order to `status` and appends the timeline event, if the state
/// machine allows the move from where the order is (otherwise nothing changes
/// and `false` is returned: a retried or late step never moves it backwards).
/// Once a stop is recorded (`decisions::stop`) the order moves only to the end
/// that stop names: a step attempt that outlived its run cannot mark it paid or
/// shipped meanwhile, nor can a deadline or a carrier end it otherwise.
#[tracing::instrument(name = "db.orders.transition", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn transition(
    conn: &mut PgConnection,
    id: OrderId,
    status: OrderStatus,
    reason: Option<StopReason>,
    detail: Option<&str>,
) -> Result<bool, sqlx::Error> {
    const SQL: &str = transition_sql!();
    let (moved,): (i64,) = bind_transition(sqlx::query_as(SQL), id, status, reason, detail).fetch_one(conn).await?;
    Ok(moved == 1)
}

/// A party's answer that a forward step records in the statement that moves the order.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// The charge was captured, with this provider reference (`payments::succeed`).
    Captured(&'a str),
    /// The parcel was booked (`shipments::insert_sql!`).
    Booked(&'a Shipment),
}

/// Records a party's answer and moves the order, in one statement (one round trip
/// where two were). The answer is recorded whether or not the order moves: it is
/// what the party did.
#[tracing::instrument(name = "db.orders.transition_recording", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn transition_recording(
    conn: &mut PgConnection,
    id: OrderId,
    status: OrderStatus,
    detail: &str,
    answer: Answer<'_>,
) -> Result<bool, sqlx::Error> {
    let query = |sql| bind_transition(sqlx::query_as(sql), id, status, None, Some(detail));
    let (moved,): (i64,) = match answer {
        Answer::Captured(reference) => {
            const SQL: &str = transition_sql!(concat!("p AS (", payments::succeed_sql!(8, 9), ")"));
            query(SQL).bind(payments::Kind::Charge.key(id)).bind(reference).fetch_one(conn).await?
        }
        Answer::Booked(booking) => {
            const SQL: &str = transition_sql!(concat!("s AS (", shipments::insert_sql!(1, 8, 9), ")"));
            query(SQL).bind(&booking.carrier).bind(&booking.tracking_number).fetch_one(conn).await?
        }
    };
    Ok(moved == 1)
}

/// Binds parameters $1-$7 of `transition_sql!`.
fn bind_transition<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    id: OrderId,
    status: OrderStatus,
    reason: Option<StopReason>,
    detail: Option<&'q str>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    bind_event(query, id, status.as_str(), status.as_str(), detail)
        .bind(reason)
        .bind(OrderStatus::reachable_from(status))
}

/// A recorded stop: the order ends as `reason.status()`, for this reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub reason: StopReason,
    pub detail: String,
}

/// The order as a decision sees it under the row lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub status: OrderStatus,
    /// Compensation has begun (the fence): forward steps must not act.
    pub stopped: bool,
    /// The recorded stop (`None` while not stopped, or for a fence without a reason).
    pub stop: Option<Stop>,
}

/// Locks the order row for the rest of the transaction and returns its state,
/// so decisions about one order are made one after the other, and a step that
/// calls a party holds off compensation until its outcome is recorded. (`NO KEY`:
/// rows that only refer to the order, such as its party-call count or review,
/// can still be written meanwhile.)
#[tracing::instrument(name = "db.orders.lock", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn lock(conn: &mut PgConnection, id: OrderId) -> Result<Option<Locked>, sqlx::Error> {
    // An order closed by a workflow of the version before has its end's reason
    // in `reason` only.
    let row: Option<(OrderStatus, bool, Option<StopReason>, Option<String>)> = sqlx::query_as(
        "SELECT status, stopped_at IS NOT NULL, COALESCE(stop_reason, reason), stop_detail FROM orders \
         WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(id.0)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(status, stopped, reason, detail)| Locked {
        status,
        stopped,
        stop: reason.map(|reason| Stop { reason, detail: detail.unwrap_or_default() }),
    }))
}

/// Fences the order before compensating: no forward step acts on it from now on.
/// Waits for a step holding the row lock (a party call in flight) to record its
/// outcome, so what compensation reads next is final. Idempotent. The stop's
/// reason is recorded first by `decisions::stop`; this is what the compensating
/// steps themselves do, whoever started them.
#[tracing::instrument(name = "db.orders.fence", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn fence<'c>(conn: impl sqlx::PgExecutor<'c>, id: OrderId) -> Result<(), sqlx::Error> {
    // Only the first call writes; later ones (the other compensations) find it set.
    sqlx::query("UPDATE orders SET stopped_at = now() WHERE id = $1 AND stopped_at IS NULL")
        .bind(id.0)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.orders.mark_workflow_started", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn mark_workflow_started(pool: &PgPool, id: OrderId) -> Result<(), sqlx::Error> {
    // Not waiting for the WAL flush here saves one fsync per accepted order. It is
    // safe: if Postgres loses this write in a crash, the recovery loop starts the
    // workflow again, and that start is idempotent on the workflow id. The
    // setting is made inside the statement (`set_config(.., true)` lasts to the end
    // of its transaction, here the statement's own): one round trip, not four.
    sqlx::query(
        "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) \
         UPDATE orders SET workflow_started_at = now() FROM async WHERE id = $1 AND workflow_started_at IS NULL",
    )
    .bind(id.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Orders (id, total) accepted at least `min_age_secs` ago whose workflow start was never confirmed.
#[tracing::instrument(name = "db.orders.unstarted", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn unstarted(pool: &PgPool, min_age_secs: f64, limit: i64) -> Result<Vec<(OrderId, Decimal)>, sqlx::Error> {
    let rows: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "SELECT id, total FROM orders WHERE status = $3 AND workflow_started_at IS NULL \
           AND created_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2",
    )
    .bind(min_age_secs)
    .bind(limit)
    // Only its workflow moves an order on from `pending`: an unstarted one is pending.
    .bind(OrderStatus::Pending)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, c)| (OrderId(id), c)).collect())
}

// ---- the view returned by GET /orders/{id} ----

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    /// Why the order failed or was cancelled, when it was.
    pub reason: Option<StopReason>,
    pub currency: String,
    pub items: Vec<OrderItemView>,
    #[schema(value_type = String, example = "39.98")]
    pub subtotal: Decimal,
    #[schema(value_type = String, example = "3.40")]
    pub tax: Decimal,
    #[schema(value_type = String, example = "9.99")]
    pub shipping: Decimal,
    #[schema(value_type = String, example = "53.37")]
    pub total: Decimal,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub payment: PaymentView,
    pub shipment: Option<ShipmentView>,
    pub notes: Option<String>,
    pub timeline: Vec<EventView>,
    /// What may be asked of the order in its status (the state machine's answer;
    /// an address change also needs the booking not yet begun, a review the
    /// admin role, a carrier report the carrier role).
    pub actions: Vec<Action>,
    /// While `awaiting_review`: when the review deadline falls (no decision by
    /// then cancels the order with `review_timeout`).
    pub review_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderItemView {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    #[schema(value_type = String, example = "19.99")]
    pub unit_price: Decimal,
    #[schema(value_type = String, example = "39.98")]
    pub line_total: Decimal,
}

/// What the customer may see of the payment: never the token.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    #[schema(example = "credit_card")]
    pub method: String,
    /// `not_attempted`, `pending` (sent, no answer yet), `succeeded`, `declined`,
    /// `failed` (refused by the gateway, or nothing was captured), `refunded`, or
    /// `refund_refused` (the gateway refused the refund for good: the money is
    /// still captured, for an operator to return).
    #[schema(example = "succeeded")]
    pub status: String,
    #[schema(value_type = Option<String>, example = "53.37")]
    pub amount: Option<Decimal>,
    pub provider_reference: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShipmentView {
    pub carrier: String,
    pub tracking_number: String,
    pub created_at: DateTime<Utc>,
    /// Set when the booking was cancelled with the carrier.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The carrier's answer when it refused for good to cancel the booking (the
    /// parcel may still travel: an operator settles it with the carrier).
    pub cancel_refused: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct EventView {
    /// Increasing; the SSE event id (`Last-Event-ID` resumes after it).
    pub id: i64,
    /// The order's status after this event; or `exception` for a carrier
    /// exception (the status stays `in_transit`); or `refund_refused` /
    /// `cancellation_refused` when a party refused a compensation for good (the
    /// order still ends as decided; an operator settles what the party kept).
    #[schema(example = "paid")]
    pub status: String,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

impl OrderView {
    /// The view of an order just recorded, built without reading it back.
    pub fn accepted(order: &PricedOrder, created_at: DateTime<Utc>, first_event_id: i64) -> OrderView {
        let o = &order.order;
        OrderView {
            id: order.id.0,
            customer_id: o.customer_id.clone(),
            status: OrderStatus::Pending,
            reason: None,
            currency: "USD".into(),
            items: order
                .lines
                .iter()
                .map(|l| OrderItemView {
                    sku: l.sku.to_string(),
                    name: l.name.clone(),
                    // Quantity is at most 1000.
                    quantity: l.quantity.get() as i32,
                    unit_price: l.unit_price,
                    line_total: l.line_total,
                })
                .collect(),
            subtotal: order.totals.subtotal,
            tax: order.totals.tax,
            shipping: order.totals.shipping,
            total: order.totals.total,
            shipping_address: o.shipping_address.clone(),
            billing_address: o.billing_address.clone(),
            payment: PaymentView {
                method: o.payment_method.as_str().into(),
                status: "not_attempted".into(),
                amount: None,
                provider_reference: None,
            },
            shipment: None,
            notes: o.notes.clone(),
            timeline: vec![EventView {
                id: first_event_id,
                status: "pending".into(),
                detail: Some(ACCEPTED.into()),
                at: created_at,
            }],
            actions: OrderStatus::Pending.api_actions(),
            review_due_at: None,
            created_at,
            updated_at: created_at,
        }
    }
}

/// An order row with its lines, payments, shipment and timeline aggregated as
/// JSON by the same statement: `GET /orders/{id}` costs one round trip.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: Uuid,
    customer_id: String,
    status: OrderStatus,
    reason: Option<StopReason>,
    currency: String,
    subtotal: Decimal,
    tax: Decimal,
    shipping: Decimal,
    total: Decimal,
    shipping_address: Json<Address>,
    billing_address: Json<Address>,
    payment_method: String,
    notes: Option<String>,
    review_due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    items: Json<Vec<OrderItemView>>,
    payments: Json<Vec<PaymentRow>>,
    shipment: Option<Json<ShipmentView>>,
    timeline: Json<Vec<EventView>>,
}

#[derive(Deserialize)]
struct PaymentRow {
    kind: payments::Kind,
    status: payments::Status,
    amount: Decimal,
    provider_reference: Option<String>,
}

/// Money goes into the JSON as text (`::text`): a JSON number would pass
/// through a float on the way to `Decimal`.
const VIEW: &str = "SELECT o.id, o.customer_id, o.status, o.reason, o.currency, o.subtotal, o.tax, o.shipping, o.total, \
       o.shipping_address, o.billing_address, o.payment_method, o.notes, o.review_due_at, o.created_at, o.updated_at, \
       COALESCE((SELECT json_agg(json_build_object('sku', i.sku, 'name', i.name, 'quantity', i.quantity, \
                     'unit_price', i.unit_price::text, 'line_total', i.line_total::text) ORDER BY i.line_no) \
                 FROM order_items i WHERE i.order_id = o.id), '[]') AS items, \
       COALESCE((SELECT json_agg(json_build_object('kind', p.kind, 'status', p.status, 'amount', p.amount::text, \
                     'provider_reference', p.provider_reference)) \
                 FROM payments p WHERE p.order_id = o.id), '[]') AS payments, \
       (SELECT json_build_object('carrier', s.carrier, 'tracking_number', s.tracking_number, \
                     'created_at', s.created_at, 'cancelled_at', s.cancelled_at, \
                     'cancel_refused', s.cancel_refused) \
          FROM shipments s WHERE s.order_id = o.id) AS shipment, \
       COALESCE((SELECT json_agg(json_build_object('id', e.id, 'status', e.status, 'detail', e.detail, 'at', e.at) \
                     ORDER BY e.id) \
                 FROM order_events e WHERE e.order_id = o.id), '[]') AS timeline \
  FROM orders o WHERE o.id = $1 AND ($2::text IS NULL OR o.customer_id = $2)";

/// The whole order as a customer sees it; `None` when there is no such order.
pub async fn view(pool: &PgPool, id: OrderId) -> Result<Option<OrderView>, sqlx::Error> {
    view_for(pool, id, None).await
}

/// The order if it is `customer`'s (any order for `None`). Another customer's
/// order costs what an unknown id costs (the row is found by id and dropped
/// before anything is gathered for it), so timing does not tell that it exists.
#[tracing::instrument(name = "db.orders.view", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn view_for(pool: &PgPool, id: OrderId, customer: Option<&str>) -> Result<Option<OrderView>, sqlx::Error> {
    let Some(o) = sqlx::query_as::<_, OrderRow>(VIEW).bind(id.0).bind(customer).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let rows = o.payments.0;
    let charge = rows.iter().find(|p| p.kind == payments::Kind::Charge);
    let refund = rows.iter().find(|p| p.kind == payments::Kind::Refund).map(|p| p.status);
    let payment = PaymentView {
        method: o.payment_method,
        status: match charge {
            None => "not_attempted".into(),
            Some(_) if refund == Some(payments::Status::Succeeded) => "refunded".into(),
            Some(_) if refund == Some(payments::Status::Failed) => "refund_refused".into(),
            Some(c) => c.status.as_str().into(),
        },
        amount: charge.map(|c| c.amount),
        provider_reference: charge.and_then(|c| c.provider_reference.clone()),
    };
    Ok(Some(OrderView {
        id: o.id,
        customer_id: o.customer_id,
        status: o.status,
        reason: o.reason,
        currency: o.currency,
        items: o.items.0,
        subtotal: o.subtotal,
        tax: o.tax,
        shipping: o.shipping,
        total: o.total,
        shipping_address: o.shipping_address.0,
        billing_address: o.billing_address.0,
        payment,
        shipment: o.shipment.map(|s| s.0),
        notes: o.notes,
        timeline: o.timeline.0,
        actions: o.status.api_actions(),
        review_due_at: pending_review_due(o.status, o.review_due_at),
        created_at: o.created_at,
        updated_at: o.updated_at,
    }))
}

// ---- listing ----

/// One row of `GET /orders`.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct OrderSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub customer_id: String,
    pub status: OrderStatus,
    pub reason: Option<StopReason>,
    pub currency: String,
    #[schema(value_type = String, example = "53.37")]
    pub total: Decimal,
    /// While `awaiting_review`: when the review deadline falls.
    pub review_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub customer_id: Option<String>,
    pub status: Option<OrderStatus>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// The page starts after this order, in the list's order (ids are UUIDv7,
    /// so id order is creation order).
    pub after: Option<Uuid>,
    pub oldest_first: bool,
    pub limit: i64,
}

/// Newest first, or oldest first (the review queue). Only the filters given become conditions (no `$1 IS NULL OR`
/// patterns), so the planner picks the (customer_id, id) or (status, id) index.
#[tracing::instrument(name = "db.orders.list", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<OrderSummary>, sqlx::Error> {
    let mut q = sqlx::QueryBuilder::new(
        "SELECT id, customer_id, status, reason, currency, total, review_due_at, created_at, updated_at \
           FROM orders WHERE TRUE",
    );
    if let Some(c) = &f.customer_id {
        q.push(" AND customer_id = ").push_bind(c);
    }
    if let Some(s) = f.status {
        q.push(" AND status = ").push_bind(s);
    }
    if let Some(t) = f.created_after {
        q.push(" AND created_at > ").push_bind(t);
    }
    if let Some(t) = f.created_before {
        q.push(" AND created_at < ").push_bind(t);
    }
    if let Some(id) = f.after {
        q.push(if f.oldest_first { " AND id > " } else { " AND id < " }).push_bind(id);
    }
    q.push(if f.oldest_first { " ORDER BY id ASC LIMIT " } else { " ORDER BY id DESC LIMIT " }).push_bind(f.limit);
    let mut rows: Vec<OrderSummary> = q.build_query_as().fetch_all(pool).await?;
    for o in &mut rows {
        o.review_due_at = pending_review_due(o.status, o.review_due_at);
    }
    Ok(rows)
}

/// The review deadline shown on an order: only while it waits for the review
/// (the column keeps the deadline an order once had).
fn pending_review_due(status: OrderStatus, due: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    due.filter(|_| status == OrderStatus::AwaitingReview)
}

/// Timeline events of an order after `after_id`, oldest first.
#[tracing::instrument(name = "db.orders.events_after", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn events_after(pool: &PgPool, id: OrderId, after_id: i64) -> Result<Vec<EventView>, sqlx::Error> {
    sqlx::query_as("SELECT id, status, detail, at FROM order_events WHERE order_id = $1 AND id > $2 ORDER BY id")
        .bind(id.0)
        .bind(after_id)
        .fetch_all(pool)
        .await
}
