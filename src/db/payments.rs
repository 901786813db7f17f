//! Charges and refunds. Each is keyed by an idempotency key derived from the
//! order id, and there is at most one of each kind per order (a constraint).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};

use super::party_calls::{self, Calls, Step};
use super::text_enum;
use crate::domain::OrderId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Charge,
    Refund,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Self::Charge, Self::Refund];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::Refund => "refund",
        }
    }

    pub fn parse(value: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// The key sent to the gateway: the same for every attempt of this order's step.
    pub fn key(self, id: OrderId) -> String {
        format!("{}-{}", self.as_str(), id)
    }
}

/// Where a charge or refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Recorded before the call to the gateway; no answer yet (or only transient failures).
    Pending,
    Succeeded,
    /// The gateway declined (a business answer: card declined, insufficient funds).
    Declined,
    /// Refused outright, or nothing was captured: no money moved.
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [Self::Pending, Self::Succeeded, Self::Declined, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Declined => "declined",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

text_enum!(Kind, Status);

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    pub status: Status,
    pub amount: Decimal,
    pub provider_reference: Option<String>,
    pub decline_reason: Option<String>,
}

/// Records the intent to move money (status `pending`) unless an earlier attempt
/// did, and returns the row as it now stands; `None` when there is no such row
/// and none may be added: the order's compensation has begun (`orders.stopped_at`),
/// so no new charge may start.
#[tracing::instrument(name = "db.payments.begin", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn begin(pool: &PgPool, id: OrderId, kind: Kind, amount: Decimal) -> Result<Option<Payment>, sqlx::Error> {
    let key = kind.key(id);
    // A refund is itself compensation: only a charge is held back by the fence.
    // One round trip: the row this statement inserts, or else the one an earlier
    // attempt did (the second SELECT does not see the first's insert).
    let row: Option<Payment> = sqlx::query_as(
        "WITH ins AS (INSERT INTO payments (order_id, kind, idempotency_key, amount, status) \
                      SELECT $1, $2, $3, $4, 'pending' FROM orders WHERE id = $1 AND (stopped_at IS NULL OR $2 = 'refund') \
                      ON CONFLICT (idempotency_key) DO NOTHING \
                      RETURNING status, amount, provider_reference, decline_reason) \
         SELECT * FROM ins \
         UNION ALL \
         SELECT status, amount, provider_reference, decline_reason FROM payments \
          WHERE idempotency_key = $3 AND NOT EXISTS (SELECT 1 FROM ins)",
    )
    .bind(id.0)
    .bind(kind)
    .bind(&key)
    .bind(amount)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Some(row)),
        // No row, or one a concurrent attempt inserted after this statement's
        // snapshot was taken (its insert then waited for that one and did nothing):
        // a fresh read tells.
        None => find(pool, id, kind).await,
    }
}

/// What a charge attempt needs of the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOrder {
    pub total: Decimal,
    pub currency: String,
    pub payment_method: String,
    pub payment_token: String,
}

/// Where a charge attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeStart {
    pub order: ChargeOrder,
    /// The charge as `begin` would return it: `None` when the order owes nothing
    /// (no row is recorded then) or its compensation has begun.
    pub payment: Option<Payment>,
    /// While the charge is `pending`: this attempt's call to the gateway, counted
    /// (as `party_calls::count` does), with the calls and failures so far.
    pub calls: Option<Calls>,
}

/// The order's charge details, the charge recorded as intended (as `begin` does,
/// for the order's total) and, while it is pending, this attempt's call counted:
/// one round trip and one commit instead of a read, an insert and an upsert.
/// `None` when the order does not exist.
#[tracing::instrument(name = "db.payments.begin_charge", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn begin_charge(pool: &PgPool, id: OrderId) -> Result<Option<ChargeStart>, sqlx::Error> {
    type Row = (
        Decimal,
        String,
        String,
        String,
        bool,
        Option<Status>,
        Option<Decimal>,
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<i32>,
    );
    let key = Kind::Charge.key(id);
    // As in `begin`: the row inserted, or else the one an earlier attempt did.
    const SQL: &str = concat!(
        "WITH o AS (SELECT total, currency, payment_method, payment_token, stopped_at IS NULL AS open \
                      FROM orders WHERE id = $1), \
              ins AS (INSERT INTO payments (order_id, kind, idempotency_key, amount, status) \
                      SELECT $1, $2, $3, total, $4 FROM o WHERE open AND total > 0 \
                      ON CONFLICT (idempotency_key) DO NOTHING \
                      RETURNING status, amount, provider_reference, decline_reason), \
              p AS (SELECT * FROM ins \
                    UNION ALL \
                    SELECT status, amount, provider_reference, decline_reason FROM payments \
                     WHERE idempotency_key = $3 AND NOT EXISTS (SELECT 1 FROM ins)), \
              c AS (INSERT INTO party_calls (order_id, step, calls) SELECT $1, $5, 1 FROM p WHERE p.status = $4",
        party_calls::count_one_more!(),
        ") \
         SELECT o.total, o.currency, o.payment_method, o.payment_token, o.open, \
                p.status, p.amount, p.provider_reference, p.decline_reason, c.calls, c.failures \
           FROM o LEFT JOIN p ON true LEFT JOIN c ON true"
    );
    let row: Option<Row> = sqlx::query_as(SQL)
        .bind(id.0)
        .bind(Kind::Charge)
        .bind(&key)
        .bind(Status::Pending)
        .bind(Step::Charge)
        .fetch_optional(pool)
        .await?;
    let Some((
        total,
        currency,
        payment_method,
        payment_token,
        open,
        status,
        amount,
        reference,
        reason,
        calls,
        failures,
    )) = row
    else {
        return Ok(None);
    };
    let order = ChargeOrder { total, currency, payment_method, payment_token };
    let payment = match (status, amount) {
        (Some(status), Some(amount)) => {
            Some(Payment { status, amount, provider_reference: reference, decline_reason: reason })
        }
        (None, None) => None,
        other => return Err(sqlx::Error::Decode(format!("a charge row that cannot be: {other:?}").into())),
    };
    let calls = match (calls, failures) {
        (Some(calls), Some(failures)) => Some(Calls { calls, failures }),
        (None, None) => None,
        other => return Err(sqlx::Error::Decode(format!("a call count that cannot be: {other:?}").into())),
    };
    if payment.is_some() || !open || total <= Decimal::ZERO {
        return Ok(Some(ChargeStart { order, payment, calls }));
    }
    // The order is open and owes money, yet there is no row: a concurrent attempt
    // inserted it after this statement's snapshot was taken (our insert waited for
    // it and did nothing). A fresh read tells, and the call is counted on its own.
    let payment = find(pool, id, Kind::Charge).await?;
    let calls = match &payment {
        Some(p) if p.status == Status::Pending => Some(party_calls::count(pool, id, Step::Charge).await?),
        _ => None,
    };
    Ok(Some(ChargeStart { order, payment, calls }))
}

#[tracing::instrument(name = "db.payments.find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn find<'c>(conn: impl PgExecutor<'c>, id: OrderId, kind: Kind) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as("SELECT status, amount, provider_reference, decline_reason FROM payments WHERE idempotency_key = $1")
        .bind(kind.key(id))
        .fetch_optional(conn)
        .await
}

/// A pending payment's success, with the payment's idempotency key and the
/// provider's reference as the given parameters: one spelling for `succeed` and
/// for a step that records a capture with the order's move (`orders::transition_recording`).
macro_rules! succeed_sql {
    ($key:literal, $reference:literal) => {
        concat!(
            "UPDATE payments SET status = 'succeeded', provider_reference = $",
            $reference,
            ", updated_at = now() WHERE idempotency_key = $",
            $key,
            " AND status = 'pending'"
        )
    };
}
pub(crate) use succeed_sql;

#[tracing::instrument(name = "db.payments.succeed", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn succeed<'c>(
    conn: impl PgExecutor<'c>,
    id: OrderId,
    kind: Kind,
    reference: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(succeed_sql!(1, 2)).bind(kind.key(id)).bind(reference).execute(conn).await?;
    Ok(())
}

/// How a charge (or a refund) ended without money moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway declined (a business answer: card declined, insufficient funds).
    Declined,
    /// The gateway refused the request outright (not a decline): nothing was captured.
    Failed,
}

/// Records that a pending charge or refund ended without money moving. A refused
/// refund leaves the captured charge with the customer's money: the order's
/// view shows it (`refund_refused`) for an operator to settle.
#[tracing::instrument(name = "db.payments.refuse", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn refuse<'c>(
    conn: impl PgExecutor<'c>,
    id: OrderId,
    kind: Kind,
    refusal: Refusal,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let status = match refusal {
        Refusal::Declined => Status::Declined,
        Refusal::Failed => Status::Failed,
    };
    sqlx::query(
        "UPDATE payments SET status = $2, decline_reason = $3, updated_at = now() \
         WHERE idempotency_key = $1 AND status = 'pending'",
    )
    .bind(kind.key(id))
    .bind(status)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets an intent the gateway never heard of, or says it has nothing for
/// (e.g. a refund of a charge it never captured).
#[tracing::instrument(name = "db.payments.discard_pending", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn discard_pending(pool: &PgPool, id: OrderId, kind: Kind) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM payments WHERE idempotency_key = $1 AND status = 'pending'")
        .bind(kind.key(id))
        .execute(pool)
        .await?;
    Ok(())
}
