//! Review decisions as sent by admins: the first one per order counts, so that a
//! decision retried after it took effect is answered as a replay. Written only
//! under the order's row lock (`decisions::review`), so two admins deciding at
//! once are answered one after the other.

use sqlx::{PgConnection, PgExecutor};

use crate::domain::OrderId;

/// The decision recorded for the order, if any (true: approved).
#[tracing::instrument(name = "db.reviews.find", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn find<'c>(conn: impl PgExecutor<'c>, id: OrderId) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT approve FROM order_reviews WHERE order_id = $1").bind(id.0).fetch_optional(conn).await
}

/// Records the decision; the caller holds the order's row lock and found none recorded.
#[tracing::instrument(name = "db.reviews.insert", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn insert(
    conn: &mut PgConnection,
    id: OrderId,
    approve: bool,
    note: Option<&str>,
    by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO order_reviews (order_id, approve, note, decided_by) VALUES ($1, $2, $3, $4)")
        .bind(id.0)
        .bind(approve)
        .bind(note)
        .bind(by)
        .execute(conn)
        .await?;
    Ok(())
}
