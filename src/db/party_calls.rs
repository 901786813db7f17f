//! How many times a step has called its external party for an order, counted
//! before each call: a step's bound on attempts then counts the party's
//! failures only, never our own database being away.

use sqlx::PgPool;

use crate::domain::OrderId;

/// Counts one more call of `step` for the order and returns the count so far.
#[tracing::instrument(name = "db.party_calls.count", skip_all, fields(order_id = %id, step, otel.kind = "client", db.system = "postgresql"))]
pub async fn count(pool: &PgPool, id: OrderId, step: &str) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO party_calls (order_id, step, calls) VALUES ($1, $2, 1) \
         ON CONFLICT (order_id, step) DO UPDATE SET calls = party_calls.calls + 1 RETURNING calls",
    )
    .bind(id.0)
    .bind(step)
    .fetch_one(pool)
    .await
}
