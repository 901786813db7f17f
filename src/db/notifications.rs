//! Notifications are the timeline's events: every event is announced on each
//! configured channel as `order.<status>`, with the event id as its id (the same
//! on every retry, so receivers de-duplicate on it). An event is written once
//! whatever retries (UNIQUE (order_id, key)) and only with the change it records,
//! so a notification is never lost nor sent for a change that rolled back.
//! `event_deliveries` keeps the outcome per event and channel: an event with no
//! `delivered` row for a channel is still due there.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::activities::notifier::{Channel, Notification};
use crate::domain::OrderId;

/// The order's notifications not yet delivered on `channel`, oldest first.
#[tracing::instrument(name = "db.notifications.undelivered", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn undelivered(pool: &PgPool, id: OrderId, channel: Channel) -> Result<Vec<Notification>, sqlx::Error> {
    let rows: Vec<(i64, String, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT e.id, e.status, e.detail, e.at FROM order_events e \
         WHERE e.order_id = $1 AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
           WHERE d.event_id = e.id AND d.channel = $2 AND d.status = 'delivered') ORDER BY e.id",
    )
    .bind(id.0)
    .bind(channel.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(event_id, status, detail, at)| Notification {
            id: event_id,
            kind: format!("order.{status}"),
            order_id: id.0,
            created_at: at,
            payload: serde_json::json!({"order_id": id, "status": status, "detail": detail}),
        })
        .collect())
}

/// Records an attempt's outcome; `error` None means delivered.
#[tracing::instrument(name = "db.notifications.record_delivery", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn record_delivery(
    pool: &PgPool,
    event_id: i64,
    channel: Channel,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_deliveries (event_id, channel, status, last_error) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (event_id, channel) DO UPDATE SET status = EXCLUDED.status, \
           last_error = EXCLUDED.last_error, attempts = event_deliveries.attempts + 1, updated_at = now()",
    )
    .bind(event_id)
    .bind(channel.as_str())
    .bind(if error.is_none() { "delivered" } else { "failed" })
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
