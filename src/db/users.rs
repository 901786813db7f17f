//! Accounts: created by the API, moved through onboarding by the workflow's activities.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::UserStatus;

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
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        UserView {
            id: r.id,
            email: r.email,
            name: r.name,
            // The column's CHECK admits only known statuses.
            status: UserStatus::parse(&r.status).unwrap_or(UserStatus::PendingVerification),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Creates a pending account; `None` when the email is taken (any case).
#[tracing::instrument(name = "db.users.insert", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
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

#[tracing::instrument(name = "db.users.find", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<UserView>, sqlx::Error> {
    let row: Option<UserRow> =
        sqlx::query_as("SELECT id, email, name, status, created_at, updated_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(UserView::from))
}

/// Stores a new code's hash and queues the email carrying the code, once per
/// account; returns the code of record (an earlier attempt's, if there was one).
#[tracing::instrument(name = "db.users.start_verification", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn start_verification(pool: &PgPool, id: Uuid, code_hash: &str, code: &str) -> Result<String, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let queued = sqlx::query(
        "INSERT INTO user_notifications (user_id, kind, payload) VALUES ($1, 'verification_code', $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(Json(serde_json::json!({"code": code})))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // A retried activity keeps the first code: the one already emailed.
    if queued == 1 {
        sqlx::query("UPDATE users SET code_hash = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
    }
    let (payload,): (Json<serde_json::Value>,) =
        sqlx::query_as("SELECT payload FROM user_notifications WHERE user_id = $1 AND kind = 'verification_code'")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(payload.0["code"].as_str().unwrap_or(code).to_owned())
}

/// Compares a code with the stored hash; counts a wrong one. Returns (matched, failed attempts so far).
#[tracing::instrument(name = "db.users.check_code", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn check_code(pool: &PgPool, id: Uuid, code_hash: &str) -> Result<(bool, u32), sqlx::Error> {
    let row: Option<(bool, i32)> = sqlx::query_as(
        "UPDATE users SET failed_attempts = failed_attempts + CASE WHEN code_hash = $2 THEN 0 ELSE 1 END, \
           updated_at = now() WHERE id = $1 AND status = 'pending_verification' \
         RETURNING COALESCE(code_hash = $2, false), failed_attempts",
    )
    .bind(id)
    .bind(code_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(m, a)| (m, a.max(0) as u32)).unwrap_or((false, u32::MAX)))
}

/// Ends onboarding in `status`, with its email (the welcome) when `notify` names one.
#[tracing::instrument(name = "db.users.finish", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn finish(pool: &PgPool, id: Uuid, status: UserStatus, notify: Option<&str>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE users SET status = $2, code_hash = NULL, updated_at = now() WHERE id = $1 AND status = 'pending_verification'")
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
    if let Some(kind) = notify {
        sqlx::query(
            "INSERT INTO user_notifications (user_id, kind, payload) VALUES ($1, $2, '{}') ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
