//! Stock reservations: one row per order line, whose `state` moves exactly once
//! (held → released, or held → consumed when the parcel ships).
//!
//! Lock order, everywhere: the order row, then inventory rows by SKU. Two orders
//! never wait on each other in opposite orders, so no deadlocks.

use sqlx::PgConnection;

use crate::domain::OrderId;

#[derive(Debug, PartialEq, Eq)]
pub enum Reserve {
    /// Stock is held for every line (now, or by an earlier attempt).
    Held,
    /// These SKUs lack stock; nothing was reserved.
    Short(Vec<String>),
    /// Nothing is held and `take` was false (the order is being stopped).
    Closed,
}

/// Reserves every line of the order in the caller's transaction, which must
/// already hold the order's row lock (`orders::lock`). Stock held by an earlier
/// attempt counts as held; new stock is taken only when `take` is true.
#[tracing::instrument(name = "db.inventory.reserve", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn reserve(tx: &mut PgConnection, id: OrderId, take: bool) -> Result<Reserve, sqlx::Error> {
    // The lines, each with whether an earlier attempt already holds stock for
    // the order: one round trip.
    let rows: Vec<(String, i32, bool)> = sqlx::query_as(
        "SELECT sku, quantity, EXISTS (SELECT 1 FROM inventory_reservations WHERE order_id = $1) \
           FROM order_items WHERE order_id = $1 ORDER BY sku",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await?;
    if rows.iter().any(|(_, _, held)| *held) {
        return Ok(Reserve::Held);
    }
    if !take {
        return Ok(Reserve::Closed);
    }
    let lines: Vec<(String, i32)> = rows.into_iter().map(|(sku, quantity, _)| (sku, quantity)).collect();
    let mut short = Vec::new();
    for (sku, quantity) in &lines {
        // Conditional decrement: never below zero, whatever runs concurrently.
        let taken = sqlx::query(
            "UPDATE inventory SET available = available - $2, reserved = reserved + $2, updated_at = now() \
             WHERE sku = $1 AND available >= $2",
        )
        .bind(sku)
        .bind(quantity)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            short.push(sku.clone());
        }
    }
    if !short.is_empty() {
        // The caller rolls back, undoing the lines that did fit.
        return Ok(Reserve::Short(short));
    }
    let (skus, quantities): (Vec<String>, Vec<i32>) = lines.into_iter().unzip();
    sqlx::query(
        "INSERT INTO inventory_reservations (order_id, sku, quantity, state) \
         SELECT $1, sku, quantity, 'held' FROM unnest($2::text[], $3::int[]) AS l(sku, quantity) \
         ON CONFLICT (order_id, sku) DO NOTHING",
    )
    .bind(id.0)
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *tx)
    .await?;
    Ok(Reserve::Held)
}

/// Returns held stock to `available`. A second call finds nothing held and changes nothing.
#[tracing::instrument(name = "db.inventory.release", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn release(tx: &mut PgConnection, id: OrderId) -> Result<u64, sqlx::Error> {
    settle(tx, id, "released", "available = i.available + r.quantity, ").await
}

/// Stock leaves the warehouse: held units are no longer reserved (nor available).
#[tracing::instrument(name = "db.inventory.consume", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn consume(tx: &mut PgConnection, id: OrderId) -> Result<u64, sqlx::Error> {
    settle(tx, id, "consumed", "").await
}

#[tracing::instrument(name = "db.inventory.settle", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
async fn settle(tx: &mut PgConnection, id: OrderId, state: &str, available: &str) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "WITH r AS (UPDATE inventory_reservations SET state = $2, updated_at = now() \
                    WHERE order_id = $1 AND state = 'held' RETURNING sku, quantity) \
         UPDATE inventory i SET {available}reserved = i.reserved - r.quantity, updated_at = now() \
         FROM r WHERE i.sku = r.sku"
    );
    Ok(sqlx::query(&sql).bind(id.0).bind(state).execute(tx).await?.rows_affected())
}
