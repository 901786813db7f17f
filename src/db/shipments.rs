//! One shipment per order (the primary key), with the carrier's tracking number.

use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::party_calls::{Calls, Step};
use crate::domain::{Address, OrderId};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
}

#[tracing::instrument(name = "db.shipments.find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn find<'c>(conn: impl sqlx::PgExecutor<'c>, id: OrderId) -> Result<Option<Shipment>, sqlx::Error> {
    sqlx::query_as("SELECT carrier, tracking_number FROM shipments WHERE order_id = $1")
        .bind(id.0)
        .fetch_optional(conn)
        .await
}

/// Where a booking attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booking {
    /// An earlier attempt booked it (only its records may be missing).
    Booked(Shipment),
    /// Not booked: this attempt's call to the carrier is counted (before the call,
    /// as `party_calls::count` does), with the calls and failures so far.
    Counted(Calls),
}

/// The booking an earlier attempt made or else this attempt's call counted: one
/// round trip instead of a read and an upsert.
#[tracing::instrument(name = "db.shipments.begin_booking", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn begin_booking(pool: &PgPool, id: OrderId) -> Result<Booking, sqlx::Error> {
    type Row = (Option<String>, Option<String>, Option<i32>, Option<i32>);
    const SQL: &str = concat!(
        "WITH s AS (SELECT carrier, tracking_number FROM shipments WHERE order_id = $1), \
              c AS (INSERT INTO party_calls (order_id, step, calls) SELECT $1, $2, 1 WHERE NOT EXISTS (SELECT 1 FROM s)",
        super::party_calls::count_one_more!(),
        ") SELECT s.carrier, s.tracking_number, c.calls, c.failures \
             FROM (VALUES (1)) AS one LEFT JOIN s ON true LEFT JOIN c ON true"
    );
    let row: Row = sqlx::query_as(SQL).bind(id.0).bind(Step::BookShipment).fetch_one(pool).await?;
    match row {
        (Some(carrier), Some(tracking_number), None, None) => {
            Ok(Booking::Booked(Shipment { carrier, tracking_number }))
        }
        (None, None, Some(calls), Some(failures)) => Ok(Booking::Counted(Calls { calls, failures })),
        other => Err(sqlx::Error::Decode(format!("a booking start row that cannot be: {other:?}").into())),
    }
}

/// A booking recorded once, with the order, carrier and tracking number as the
/// given parameters: the booking step records it with the order's move
/// (`orders::transition_recording`).
macro_rules! insert_sql {
    ($order:literal, $carrier:literal, $tracking:literal) => {
        concat!(
            "INSERT INTO shipments (order_id, carrier, tracking_number) VALUES ($",
            $order,
            ", $",
            $carrier,
            ", $",
            $tracking,
            ") ON CONFLICT (order_id) DO NOTHING"
        )
    };
}
pub(crate) use insert_sql;

/// Marks the booking cancelled (after the carrier confirmed); idempotent.
#[tracing::instrument(name = "db.shipments.mark_cancelled", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn mark_cancelled(pool: &PgPool, id: OrderId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE shipments SET cancelled_at = now() WHERE order_id = $1 AND cancelled_at IS NULL")
        .bind(id.0)
        .execute(pool)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.shipments.is_cancelled", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn is_cancelled(pool: &PgPool, id: OrderId) -> Result<bool, sqlx::Error> {
    let row: Option<(bool,)> = sqlx::query_as("SELECT cancelled_at IS NOT NULL FROM shipments WHERE order_id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some_and(|(c,)| c))
}

/// Records that the carrier refused for good to cancel the booking (the parcel
/// may still travel: an operator settles it with the carrier); idempotent.
#[tracing::instrument(name = "db.shipments.refuse_cancel", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn refuse_cancel<'c>(conn: impl sqlx::PgExecutor<'c>, id: OrderId, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE shipments SET cancel_refused = $2 WHERE order_id = $1 AND cancelled_at IS NULL AND cancel_refused IS NULL",
    )
    .bind(id.0)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the carrier already refused to cancel the booking: it is not asked again.
#[tracing::instrument(name = "db.shipments.cancel_refused", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn cancel_refused(pool: &PgPool, id: OrderId) -> Result<bool, sqlx::Error> {
    let row: Option<(bool,)> = sqlx::query_as("SELECT cancel_refused IS NOT NULL FROM shipments WHERE order_id = $1")
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some_and(|(c,)| c))
}

/// What booking an order's shipment starts from, read under the order's row lock.
#[derive(Debug)]
pub enum ToBook {
    /// An earlier attempt booked it.
    Booked(Shipment),
    /// Not booked: where it goes and (sku, quantity) of every line, for the manifest.
    Parcels { address: Address, lines: Vec<(String, i32)> },
}

/// The booking an earlier attempt made, or what a booking needs: one round trip.
/// `None` when the order does not exist.
#[tracing::instrument(name = "db.shipments.to_book", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn to_book(conn: &mut PgConnection, id: OrderId) -> Result<Option<ToBook>, sqlx::Error> {
    type Row = (Json<Address>, Option<String>, Option<String>, Vec<String>, Vec<i32>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT o.shipping_address, s.carrier, s.tracking_number, \
                ARRAY(SELECT sku FROM order_items WHERE order_id = o.id ORDER BY line_no), \
                ARRAY(SELECT quantity FROM order_items WHERE order_id = o.id ORDER BY line_no) \
           FROM orders o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = $1",
    )
    .bind(id.0)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(address, carrier, tracking_number, skus, quantities)| match (carrier, tracking_number) {
        (Some(carrier), Some(tracking_number)) => ToBook::Booked(Shipment { carrier, tracking_number }),
        _ => ToBook::Parcels { address: address.0, lines: skus.into_iter().zip(quantities).collect() },
    }))
}
