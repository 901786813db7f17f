//! Postgres access: reads for the HTTP handlers, idempotent writes for the
//! activities. Every write an activity retries is keyed so a retry changes nothing.

pub mod catalog;
pub mod decisions;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod party_calls;
pub mod payments;
pub mod reviews;
pub mod shipments;
pub mod users;

/// Stores an enum that has `as_str` and `parse` in a TEXT column: it is bound
/// by its name (arrays too), and a name it does not know, read back, is a decode
/// error, never a silent default.
macro_rules! text_enum {
    ($($t:ty),* $(,)?) => {$(
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }
        impl sqlx::postgres::PgHasArrayType for $t {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $t {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let name = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                <$t>::parse(name).ok_or_else(|| format!("unknown {} {name:?}", stringify!($t)).into())
            }
        }
    )*};
}
pub(crate) use text_enum;

text_enum!(crate::domain::OrderStatus, crate::domain::StopReason);

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::{Secret, Settings};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A lazily connecting pool: the API starts (and answers `/healthz`, and 503 on
/// `/readyz`) while Postgres is still coming up.
pub fn pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    pool_for(&settings.database_url, settings.db_max_connections)
}

/// A pooled connection idle for longer than this is pinged before it is lent
/// out; one used more recently is not (see `pool_for`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub fn pool_for(database_url: &Secret, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it lends out (a round trip, and a wake-up
        // of the backend) and again when it comes back. The ping on return stays:
        // it closes a connection a failed or abandoned query left broken. The ping
        // before lending is kept for connections idle for a while, the ones a
        // Postgres restart leaves dead: a busy connection died with the server in
        // the middle of a query, failed it and was closed on return.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy(database_url.expose())
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A trivial query: Postgres answers (readiness; the caller bounds the wait).
pub async fn answers(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}

/// Serialization failures and deadlocks are worth retrying; the caller's retry
/// policy (Temporal's, for activities) does the retrying.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        // Serialization failure, deadlock, shutdown or restart in progress, too many
        // connections, and the connection-exception class (08…): worth retrying.
        sqlx::Error::Database(db) => {
            let code = db.code();
            matches!(code.as_deref(), Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"))
                || code.is_some_and(|c| c.starts_with("08"))
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}
