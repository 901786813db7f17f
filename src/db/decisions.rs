//! Decisions about an order that race one another — a cancel, a review, a
//! carrier report, an amendment, a step's failure, a deadline — each made under
//! the order's row lock against the state machine (`domain::status`) and
//! recorded before anything acts on it. The first one recorded wins; the
//! workflow follows the records (it is told by a `decided` signal, and every
//! step it takes is guarded by the same records).
//!
//! Decisions callers make through the API are counted (`orders.decisions`), so
//! that one whose signal was lost (Temporal unreachable) is signalled again by
//! the API's recovery loop.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::orders::{self, Locked};
use super::party_calls::{self, Step};
use super::{inventory, reviews};
use crate::domain::status::{Action, MAX_AMENDMENTS, MAX_CARRIER_EXCEPTIONS};
use crate::domain::{Address, OrderId, OrderStatus, ShipmentEventKind, StopReason};

pub use super::orders::Stop;

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no such order")]
    NotFound,
    /// Another decision or a party call held the order longer than the caller may wait.
    #[error("another change to this order is in progress")]
    Busy,
    #[error("database: {0}")]
    Db(#[source] sqlx::Error),
}

impl From<sqlx::Error> for DecisionError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // lock_not_available: `lock_timeout` ran out.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03") => Self::Busy,
            _ => Self::Db(e),
        }
    }
}

/// How a proposed stop was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum StopDecision {
    /// This stop is recorded now.
    Recorded(Stop),
    /// Another stop was recorded first; the order ends as it says.
    Earlier(Stop),
    /// The order may not stop for that reason where it is: the carrier has the
    /// parcel, it already ended, or (a review deadline) it was approved in time.
    Refused { status: OrderStatus },
}

impl StopDecision {
    /// The stop the order now ends with, if any.
    pub fn stop(&self) -> Option<&Stop> {
        match self {
            Self::Recorded(s) | Self::Earlier(s) => Some(s),
            Self::Refused { .. } => None,
        }
    }
}

/// A transaction for a caller's decision: waits at most `lock_wait` for the
/// row lock of the order (a party call may hold it for as long as the call
/// takes) or the account it decides about.
pub(crate) async fn begin(pool: &PgPool, lock_wait: Duration) -> Result<Transaction<'static, Postgres>, DecisionError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", lock_wait.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

async fn lock(tx: &mut PgConnection, id: OrderId) -> Result<Locked, DecisionError> {
    orders::lock(tx, id).await?.ok_or(DecisionError::NotFound)
}

/// Counts a caller's decision; returns its number (the `decided` signal's key).
async fn count_decision(tx: &mut PgConnection, id: OrderId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE orders SET decisions = decisions + 1, decided_at = now() WHERE id = $1 RETURNING decisions",
    )
    .bind(id.0)
    .fetch_one(tx)
    .await
}

/// Records that the order stops for `reason`, unless a stop was recorded first
/// (that one wins) or the state machine does not allow it from where the order
/// is. The caller holds the row lock and passes what it saw under it.
pub async fn stop_locked(
    tx: &mut PgConnection,
    id: OrderId,
    locked: &Locked,
    reason: StopReason,
    detail: &str,
) -> Result<StopDecision, sqlx::Error> {
    if let Some(stop) = &locked.stop {
        return Ok(StopDecision::Earlier(stop.clone()));
    }
    // A fence without a reason (a workflow of the version before) is compensating
    // already: this names its end, whatever the status still says.
    if !locked.stopped && !locked.status.admits_stop(reason) {
        return Ok(StopDecision::Refused { status: locked.status });
    }
    // A deadline loses to a decision recorded before it fired.
    if reason == StopReason::ReviewTimeout && reviews::find(&mut *tx, id).await?.is_some() {
        return Ok(StopDecision::Refused { status: locked.status });
    }
    sqlx::query(
        "UPDATE orders SET stopped_at = COALESCE(stopped_at, now()), stop_reason = $2, stop_detail = $3 WHERE id = $1",
    )
    .bind(id.0)
    .bind(reason)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    Ok(StopDecision::Recorded(Stop { reason, detail: detail.to_owned() }))
}

/// A stop proposed by the workflow (a failed step, a deadline, a cancellation in
/// Temporal). Waits for a party call in flight, as compensation must.
#[tracing::instrument(name = "db.decisions.stop", skip_all, fields(order_id = %id, reason = reason.as_str(), otel.kind = "client", db.system.name = "postgresql"))]
pub async fn stop(pool: &PgPool, id: OrderId, reason: StopReason, detail: &str) -> Result<StopDecision, DecisionError> {
    let mut tx = pool.begin().await?;
    let locked = lock(&mut tx, id).await?;
    let decided = stop_locked(&mut tx, id, &locked, reason, detail).await?;
    tx.commit().await?;
    Ok(decided)
}

/// What a cancel through the API came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Recorded now: decision number `seq`.
    Recorded { stop: Stop, seq: i64 },
    /// The order was already stopping (by an earlier cancel, a rejection, a failure).
    Earlier(Stop),
    /// Too late (the carrier has the parcel) or over.
    Refused(OrderStatus),
}

#[tracing::instrument(name = "db.decisions.cancel", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn cancel(pool: &PgPool, lock_wait: Duration, id: OrderId, detail: &str) -> Result<Cancel, DecisionError> {
    let mut tx = begin(pool, lock_wait).await?;
    let locked = lock(&mut tx, id).await?;
    let decided = match stop_locked(&mut tx, id, &locked, StopReason::CancelRequested, detail).await? {
        StopDecision::Recorded(stop) => Cancel::Recorded { stop, seq: count_decision(&mut tx, id).await? },
        StopDecision::Earlier(stop) => Cancel::Earlier(stop),
        StopDecision::Refused { status } => Cancel::Refused(status),
    };
    tx.commit().await?;
    Ok(decided)
}

/// What an admin's review decision came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Recorded now (a rejection also records the stop).
    Recorded { seq: i64 },
    /// The same decision was recorded before: a retry after a lost answer.
    Replay,
    /// The other decision was recorded first (`approved` says which).
    Conflict { approved: bool },
    /// The order is stopping for another reason (`None`: a fence of the version before).
    Stopped(Option<Stop>),
    /// The order is not held for review.
    NotAwaiting(OrderStatus),
}

#[tracing::instrument(name = "db.decisions.review", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn review(
    pool: &PgPool,
    lock_wait: Duration,
    id: OrderId,
    approve: bool,
    note: Option<&str>,
    by: &str,
) -> Result<Review, DecisionError> {
    let mut tx = begin(pool, lock_wait).await?;
    let locked = lock(&mut tx, id).await?;
    // The first decision counts, whatever the order's status by now.
    if let Some(recorded) = reviews::find(&mut *tx, id).await? {
        return Ok(if recorded == approve { Review::Replay } else { Review::Conflict { approved: recorded } });
    }
    if locked.stopped {
        return Ok(Review::Stopped(locked.stop));
    }
    if !locked.status.admits(Action::Review) {
        return Ok(Review::NotAwaiting(locked.status));
    }
    reviews::insert(&mut tx, id, approve, note, by).await?;
    if !approve {
        let detail = note.unwrap_or("rejected in review");
        stop_locked(&mut tx, id, &locked, StopReason::ReviewRejected, detail).await?;
    }
    let seq = count_decision(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Review::Recorded { seq })
}

/// What a carrier's report came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierReport {
    /// Recorded now; the order is in `status` (moved, or unchanged for an exception).
    /// `seq` is the decision to tell the workflow (`tell_decided`), when the report
    /// changes the status as the workflow knows it (`OrderStatus::as_followed`: a
    /// delivery): a pickup or an exception changes nothing the workflow does, so
    /// it is not woken for them (a signal, a workflow task and a
    /// read of the records each); the read model shows them at once.
    Recorded { seq: Option<i64>, status: OrderStatus, moved: bool },
    /// A duplicate, or late (the order is past it): accepted, nothing changes.
    Unchanged(OrderStatus),
    /// The order was cancelled or failed before this report: the carrier should know.
    Stopped(Option<Stop>),
    /// Not shipped yet.
    NotShipped(OrderStatus),
    /// The order has all the exceptions it may record.
    TooMany,
}

/// Records a carrier event. Pickup and delivery move the order (stock leaves the
/// warehouse with the parcel); an exception goes on the timeline. Once recorded,
/// a cancel is refused: the carrier's word came first.
#[tracing::instrument(name = "db.decisions.carrier_report", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn carrier_report(
    pool: &PgPool,
    lock_wait: Duration,
    id: OrderId,
    event: ShipmentEventKind,
    at: &str,
    detail: &str,
) -> Result<CarrierReport, DecisionError> {
    let mut tx = begin(pool, lock_wait).await?;
    let locked = lock(&mut tx, id).await?;
    if locked.stopped {
        return Ok(CarrierReport::Stopped(locked.stop));
    }
    if locked.status.is_terminal() {
        return Ok(CarrierReport::Unchanged(locked.status));
    }
    if !locked.status.admits(Action::CarrierEvent) {
        return Ok(CarrierReport::NotShipped(locked.status));
    }
    let detail = format!("carrier at {at}: {detail}");
    let (status, moved) = match event {
        ShipmentEventKind::Exception => {
            let recorded: i64 =
                sqlx::query_scalar("SELECT count(*) FROM order_events WHERE order_id = $1 AND status = 'exception'")
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await?;
            if recorded >= MAX_CARRIER_EXCEPTIONS {
                return Ok(CarrierReport::TooMany);
            }
            let key = format!("exception@{at}");
            if orders::record_event(&mut tx, id, orders::EXCEPTION, &key, Some(&detail)).await?.is_none() {
                return Ok(CarrierReport::Unchanged(locked.status));
            }
            (locked.status, false)
        }
        ShipmentEventKind::InTransit | ShipmentEventKind::Delivered => {
            let to = match event {
                ShipmentEventKind::InTransit => OrderStatus::InTransit,
                _ => OrderStatus::Delivered,
            };
            if !locked.status.can_become(to) {
                return Ok(CarrierReport::Unchanged(locked.status));
            }
            // The carrier has the parcel: its stock is no longer reserved, nor available.
            inventory::consume(&mut tx, id).await?;
            orders::transition(&mut tx, id, to, None, Some(&detail)).await?;
            (to, true)
        }
    };
    // News to the workflow only when it changes the status as the workflow knows
    // it (`as_followed`): a delivery does, a pickup or an exception does not.
    let news = status.as_followed() != locked.status.as_followed();
    let seq = if news { Some(count_decision(&mut tx, id).await?) } else { None };
    tx.commit().await?;
    Ok(CarrierReport::Recorded { seq, status, moved })
}

/// Why an address change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmendRefusal {
    /// The order's status does not admit it (booked, in transit, over).
    Status(OrderStatus),
    /// The carrier has been called with the address as it was.
    BookingBegun,
    Stopped(Option<Stop>),
    /// The order has had all the amendments it may have.
    TooMany,
}

/// Changes the shipping address, as long as the booking has not begun: the
/// booking reads the address under the same lock, so the carrier gets exactly
/// the address of the last amendment answered 200. Returns the decision number.
#[tracing::instrument(name = "db.decisions.amend", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn amend(
    pool: &PgPool,
    lock_wait: Duration,
    id: OrderId,
    address: &Address,
) -> Result<Result<i64, AmendRefusal>, DecisionError> {
    let mut tx = begin(pool, lock_wait).await?;
    let locked = lock(&mut tx, id).await?;
    if locked.stopped {
        return Ok(Err(AmendRefusal::Stopped(locked.stop)));
    }
    if !locked.status.admits(Action::AmendAddress) {
        return Ok(Err(AmendRefusal::Status(locked.status)));
    }
    if party_calls::calls(&mut *tx, id, Step::BookShipment).await? > 0 {
        return Ok(Err(AmendRefusal::BookingBegun));
    }
    let amended: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_events WHERE order_id = $1 AND status = 'address_changed'")
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await?;
    if amended >= MAX_AMENDMENTS {
        return Ok(Err(AmendRefusal::TooMany));
    }
    sqlx::query("UPDATE orders SET shipping_address = $2, updated_at = now() WHERE id = $1")
        .bind(id.0)
        .bind(sqlx::types::Json(address))
        .execute(&mut *tx)
        .await?;
    let detail = format!("shipping address changed to {}, {}", address.city, address.zip_code);
    let key = format!("address@{}", amended + 1);
    orders::record_event(&mut tx, id, orders::ADDRESS_CHANGED, &key, Some(&detail)).await?;
    let seq = count_decision(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Ok(seq))
}

/// What the workflow reads when it is told a decision was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub status: OrderStatus,
    /// The recorded stop: the order is compensating, or ended with it.
    pub stop: Option<Stop>,
    /// The review decision, once an admin made one.
    pub approved: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    status: OrderStatus,
    stop_reason: Option<StopReason>,
    stop_detail: Option<String>,
    approve: Option<bool>,
}

#[tracing::instrument(name = "db.decisions.record", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn record(pool: &PgPool, id: OrderId) -> Result<Option<Record>, sqlx::Error> {
    let row: Option<RecordRow> = sqlx::query_as(
        "SELECT o.status, o.stop_reason, o.stop_detail, r.approve \
           FROM orders o LEFT JOIN order_reviews r ON r.order_id = o.id WHERE o.id = $1",
    )
    .bind(id.0)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Record {
        status: r.status,
        stop: r.stop_reason.map(|reason| Stop { reason, detail: r.stop_detail.unwrap_or_default() }),
        approved: r.approve,
    }))
}

/// Notes that the workflow was told of decisions up to `seq`.
#[tracing::instrument(name = "db.decisions.signalled", skip_all, fields(order_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn signalled(pool: &PgPool, id: OrderId, seq: i64) -> Result<(), sqlx::Error> {
    // Like the workflow-started mark: losing this write in a crash only costs
    // the recovery loop one more (idempotent) signal.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
    sqlx::query("UPDATE orders SET decisions_signalled = GREATEST(decisions_signalled, $2) WHERE id = $1")
        .bind(id.0)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Orders with decisions at least `min_age_secs` old that their workflow was
/// not told of, with the latest decision's number.
#[tracing::instrument(name = "db.decisions.unsignalled", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn unsignalled(pool: &PgPool, min_age_secs: f64, limit: i64) -> Result<Vec<(OrderId, i64)>, sqlx::Error> {
    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT id, decisions FROM orders WHERE decisions_signalled < decisions \
           AND decided_at < now() - make_interval(secs => $1) ORDER BY decided_at LIMIT $2",
    )
    .bind(min_age_secs)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id, seq)| (OrderId(id), seq)).collect())
}
