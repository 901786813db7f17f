//! The notification outbox. A row is written in the same transaction as the
//! status change it announces, so a notification is never lost nor sent for a
//! change that rolled back; UNIQUE (order_id, kind) makes a retried step write it once.

use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::OrderId;

pub async fn enqueue(
    conn: &mut PgConnection,
    id: OrderId,
    kind: &str,
    payload: &impl Serialize,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO notifications (order_id, kind, payload) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(id.0)
        .bind(kind)
        .bind(Json(payload))
        .execute(conn)
        .await?;
    Ok(())
}
