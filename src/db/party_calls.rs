//! How many times a step has called its external party for an order (counted
//! before each call: "the party may have it") and how many of those calls the
//! party answered with a transient failure (the step's bound): our own
//! database being away never uses the bound up.

use sqlx::{PgExecutor, PgPool};

use super::text_enum;
use crate::domain::OrderId;

/// The steps that call a party and count their calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The payment gateway's charge.
    Charge,
    /// The carrier's booking. Once counted, the shipping address is frozen: the
    /// carrier may have it.
    BookShipment,
}

impl Step {
    pub const ALL: [Step; 2] = [Self::Charge, Self::BookShipment];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::BookShipment => "book_shipment",
        }
    }

    pub fn parse(value: &str) -> Option<Step> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

text_enum!(Step);

/// The calls of a step so far, and how many of them the party answered with a
/// transient failure (the step's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Calls {
    pub calls: i32,
    pub failures: i32,
}

/// What counting one more call does to a step's row, as a literal for `concat!`:
/// follows `INSERT INTO party_calls (order_id, step, calls) … 1` and returns the
/// calls and failures so far (`Calls`). `begin_charge` and `begin_booking` count
/// in the statement that starts their step.
macro_rules! count_one_more {
    () => {
        " ON CONFLICT (order_id, step) DO UPDATE SET calls = party_calls.calls + 1 RETURNING calls, failures"
    };
}
pub(crate) use count_one_more;

/// Counts one more call of `step` for the order, before it is made.
#[tracing::instrument(name = "db.party_calls.count", skip_all, fields(order_id = %id, step = step.as_str(), otel.kind = "client", db.system.name = "postgresql"))]
pub async fn count(pool: &PgPool, id: OrderId, step: Step) -> Result<Calls, sqlx::Error> {
    sqlx::query_as(concat!("INSERT INTO party_calls (order_id, step, calls) VALUES ($1, $2, 1)", count_one_more!()))
        .bind(id.0)
        .bind(step)
        .fetch_one(pool)
        .await
}

/// Takes back a call counted but not made (the fence refused it).
#[tracing::instrument(name = "db.party_calls.uncount", skip_all, fields(order_id = %id, step = step.as_str(), otel.kind = "client", db.system.name = "postgresql"))]
pub async fn uncount<'c>(conn: impl PgExecutor<'c>, id: OrderId, step: Step) -> Result<(), sqlx::Error> {
    // A row whose every call was taken back is deleted (calls must stay positive).
    sqlx::query(
        "WITH down AS (UPDATE party_calls SET calls = calls - 1 WHERE order_id = $1 AND step = $2 AND calls > 1 \
                       RETURNING 1) \
         DELETE FROM party_calls WHERE order_id = $1 AND step = $2 AND calls = 1 AND NOT EXISTS (SELECT 1 FROM down)",
    )
    .bind(id.0)
    .bind(step)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts a transient failure the party answered, and returns the failures so far.
#[tracing::instrument(name = "db.party_calls.failed", skip_all, fields(order_id = %id, step = step.as_str(), otel.kind = "client", db.system.name = "postgresql"))]
pub async fn failed(pool: &PgPool, id: OrderId, step: Step) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE party_calls SET failures = failures + 1 WHERE order_id = $1 AND step = $2 RETURNING failures",
    )
    .bind(id.0)
    .bind(step)
    .fetch_one(pool)
    .await
}

/// The calls counted so far (0 when none was ever attempted).
#[tracing::instrument(name = "db.party_calls.calls", skip_all, fields(order_id = %id, step = step.as_str(), otel.kind = "client", db.system.name = "postgresql"))]
pub async fn calls<'c>(conn: impl PgExecutor<'c>, id: OrderId, step: Step) -> Result<i32, sqlx::Error> {
    let calls: Option<i32> = sqlx::query_scalar("SELECT calls FROM party_calls WHERE order_id = $1 AND step = $2")
        .bind(id.0)
        .bind(step)
        .fetch_optional(conn)
        .await?;
    Ok(calls.unwrap_or(0))
}
