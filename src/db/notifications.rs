//! The notification outbox. A row is written with the timeline event it
//! announces (`orders::record_event`, same statement), so a notification is
//! never lost nor sent for a change that rolled back; UNIQUE (order_id, event_key)
//! makes a retried step write it once.

use sqlx::PgPool;

use crate::activities::notifier::{Channel, Notification};
use crate::domain::OrderId;

/// The order's notifications not yet delivered on `channel`, oldest first.
#[tracing::instrument(name = "db.notifications.undelivered", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn undelivered(pool: &PgPool, id: OrderId, channel: Channel) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.id, n.kind, n.order_id, n.created_at, n.payload FROM notifications n \
         WHERE n.order_id = $1 AND NOT EXISTS (SELECT 1 FROM notification_deliveries d \
           WHERE d.notification_id = n.id AND d.channel = $2 AND d.status = 'delivered') ORDER BY n.id",
    )
    .bind(id.0)
    .bind(channel.as_str())
    .fetch_all(pool)
    .await
}

/// Records an attempt's outcome; `error` None means delivered.
#[tracing::instrument(name = "db.notifications.record_delivery", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn record_delivery(
    pool: &PgPool,
    notification_id: i64,
    channel: Channel,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notification_deliveries (notification_id, channel, status, last_error) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (notification_id, channel) DO UPDATE SET status = EXCLUDED.status, \
           last_error = EXCLUDED.last_error, attempts = notification_deliveries.attempts + 1, updated_at = now()",
    )
    .bind(notification_id)
    .bind(channel.as_str())
    .bind(if error.is_none() { "delivered" } else { "failed" })
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}
