//! Review decisions as sent by admins: the first one per order counts, so that a
//! decision retried after it took effect is answered as a replay.

use sqlx::PgPool;

use crate::domain::OrderId;

/// The decision recorded for the order, if any.
#[tracing::instrument(name = "db.reviews.find", skip_all, fields(order_id = %id, otel.kind = "client", db.system = "postgresql"))]
pub async fn find(pool: &PgPool, id: OrderId) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT approve FROM order_reviews WHERE order_id = $1").bind(id.0).fetch_optional(pool).await
}

/// Records the decision unless one is already recorded, and returns the one that
/// counts (another admin's, when they were first).
#[tracing::instrument(name = "db.reviews.record", skip_all, fields(order_id = %id, otel.kind = "client", db.system = "postgresql"))]
pub async fn record(
    pool: &PgPool,
    id: OrderId,
    approve: bool,
    note: Option<&str>,
    by: &str,
) -> Result<bool, sqlx::Error> {
    // The second branch sees only a row committed before this statement began,
    // so exactly one branch returns a row.
    sqlx::query_scalar(
        "WITH ins AS (INSERT INTO order_reviews (order_id, approve, note, decided_by) VALUES ($1, $2, $3, $4) \
                      ON CONFLICT (order_id) DO NOTHING RETURNING approve) \
         SELECT approve FROM ins UNION ALL SELECT approve FROM order_reviews WHERE order_id = $1 LIMIT 1",
    )
    .bind(id.0)
    .bind(approve)
    .bind(note)
    .bind(by)
    .fetch_one(pool)
    .await
}
