//! Accounts: created by the API, moved through onboarding by the workflow's
//! activities; a verification attempt is decided here, under the account's row
//! lock, as the order's decisions are (`decisions`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::decisions::{self, DecisionError};
use super::text_enum;
use crate::domain::UserStatus;
use crate::domain::user::{MAX_CODE_ATTEMPTS, same_hash};

text_enum!(UserStatus);

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    status: UserStatus,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        UserView {
            id: r.id,
            email: r.email,
            name: r.name,
            status: r.status,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Creates a pending account; `None` when the email is taken (any case).
#[tracing::instrument(name = "db.users.insert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn insert(pool: &PgPool, id: Uuid, email: &str, name: &str) -> Result<Option<UserView>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(
        "INSERT INTO users (id, email, name, status) VALUES ($1, $2, $3, 'pending_verification') \
         ON CONFLICT ((lower(email))) DO NOTHING RETURNING id, email, name, status, created_at, updated_at",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(UserView::from))
}

#[tracing::instrument(name = "db.users.mark_workflow_started", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn mark_workflow_started(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET workflow_started_at = now() WHERE id = $1 AND workflow_started_at IS NULL")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Accounts recorded at least `min_age_secs` ago whose onboarding start was never confirmed.
#[tracing::instrument(name = "db.users.unstarted", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn unstarted(pool: &PgPool, min_age_secs: f64, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM users WHERE workflow_started_at IS NULL \
           AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
    )
    .bind(min_age_secs)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(name = "db.users.find", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<UserView>, sqlx::Error> {
    let row: Option<UserRow> =
        sqlx::query_as("SELECT id, email, name, status, created_at, updated_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(UserView::from))
}

/// Stores the hash of a new code for an account still waiting for one; the code
/// itself is never stored (only the email carries it). A retried send replaces
/// the hash: the code in the latest email is the one that works. Returns whether
/// the account still waits (an account already decided gets no code).
#[tracing::instrument(name = "db.users.store_code", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn store_code(pool: &PgPool, id: Uuid, code_hash: &str) -> Result<bool, sqlx::Error> {
    let stored = sqlx::query(
        "UPDATE users SET code_hash = $2, updated_at = now() WHERE id = $1 AND status = 'pending_verification'",
    )
    .bind(id)
    .bind(code_hash)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// What a verification attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The code matched: the account is active now.
    Activated,
    /// A wrong code, counted; this many attempts are left.
    Wrong { attempts_left: u32 },
    /// A wrong code, the last one allowed: the account is locked now.
    Locked,
    /// The code has not been made yet (onboarding has just started).
    NoCodeYet,
    /// Onboarding is over: the account is in this status.
    Over(UserStatus),
}

/// Decides a verification attempt under the account's row lock, so attempts
/// are compared one at a time and at most `MAX_CODE_ATTEMPTS` wrong ones ever
/// are, however many arrive at once (the rest find the account locked, or wait
/// at most `lock_wait` and are refused as busy).
#[tracing::instrument(name = "db.users.verify", skip_all, fields(user_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn verify(
    pool: &PgPool,
    lock_wait: Duration,
    id: Uuid,
    code_hashes: &[String],
) -> Result<Verify, DecisionError> {
    let mut tx = decisions::begin(pool, lock_wait).await?;
    let row: Option<(UserStatus, Option<String>, i32)> =
        sqlx::query_as("SELECT status, code_hash, failed_attempts FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let (status, stored, failed) = row.ok_or(DecisionError::NotFound)?;
    if status != UserStatus::PendingVerification {
        return Ok(Verify::Over(status));
    }
    let Some(stored) = stored else { return Ok(Verify::NoCodeYet) };
    let verdict = if code_hashes.iter().any(|h| same_hash(&stored, h)) {
        sqlx::query("UPDATE users SET status = 'active', code_hash = NULL, updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Verify::Activated
    } else {
        let failed = u32::try_from(failed).unwrap_or(0) + 1;
        let locked = failed >= MAX_CODE_ATTEMPTS;
        sqlx::query(
            "UPDATE users SET failed_attempts = $2, updated_at = now(), \
               status = CASE WHEN $3 THEN 'locked' ELSE status END, \
               code_hash = CASE WHEN $3 THEN NULL ELSE code_hash END WHERE id = $1",
        )
        .bind(id)
        .bind(failed as i32)
        .bind(locked)
        .execute(&mut *tx)
        .await?;
        if locked { Verify::Locked } else { Verify::Wrong { attempts_left: MAX_CODE_ATTEMPTS - failed } }
    };
    tx.commit().await?;
    Ok(verdict)
}

/// The account's status.
#[tracing::instrument(name = "db.users.status", skip_all, fields(user_id = %id, otel.kind = "client", db.system.name = "postgresql"))]
pub async fn status(pool: &PgPool, id: Uuid) -> Result<Option<UserStatus>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM users WHERE id = $1").bind(id).fetch_optional(pool).await
}

/// Compares a code with the stored hash; counts a wrong one. Returns (matched,
/// failed attempts so far). For workflows started before attempts were decided
/// by the API (their `verify` update).
#[tracing::instrument(name = "db.users.check_code", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn check_code(pool: &PgPool, id: Uuid, code_hashes: &[String]) -> Result<(bool, u32), sqlx::Error> {
    let row: Option<(bool, i32)> = sqlx::query_as(
        "UPDATE users SET failed_attempts = failed_attempts + CASE WHEN code_hash = ANY($2) THEN 0 ELSE 1 END, \
           updated_at = now() WHERE id = $1 AND status = 'pending_verification' \
         RETURNING COALESCE(code_hash = ANY($2), false), failed_attempts",
    )
    .bind(id)
    .bind(code_hashes)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(m, a)| (m, a.max(0) as u32)).unwrap_or((false, u32::MAX)))
}

/// Ends onboarding in `status` while the account is pending; one already decided keeps its status.
#[tracing::instrument(name = "db.users.finish", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn finish(pool: &PgPool, id: Uuid, status: UserStatus) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET status = $2, code_hash = NULL, updated_at = now() WHERE id = $1 AND status = 'pending_verification'")
        .bind(id)
        .bind(status)
        .execute(pool)
        .await?;
    Ok(())
}
