//! The notification outbox. A row is written in the same transaction as the
//! status change it announces, so a notification is never lost nor sent for a
//! change that rolled back; UNIQUE (order_id, event_key) makes a retried step write it once.

use serde::Serialize;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::OrderId;

pub async fn enqueue(
    conn: &mut PgConnection,
    id: OrderId,
    kind: &str,
    event_key: &str,
    payload: &impl Serialize,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (order_id, kind, event_key, payload) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(id.0)
    .bind(kind)
    .bind(event_key)
    .bind(Json(payload))
    .execute(conn)
    .await?;
    Ok(())
}
