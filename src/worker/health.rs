//! The worker's probes on their own port: `/healthz` (the process is up) and
//! `/readyz` (polling, and both Postgres and Temporal answer). Readiness turns
//! false the moment shutdown starts, before the worker stops polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sqlx::PgPool;
use temporalio_client::Client;

use crate::readiness::{CHECK_TIMEOUT, Dependencies};
use crate::{db, temporal};

#[derive(Clone)]
pub struct WorkerHealth {
    pub client: Client,
    pub pool: PgPool,
    pub namespace: String,
    /// True while the worker polls; cleared as shutdown begins.
    pub polling: Arc<AtomicBool>,
    pub dependencies: Arc<Dependencies>,
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    polling: bool,
    postgres: bool,
    temporal: bool,
}

pub fn router(health: WorkerHealth) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn readyz(State(h): State<WorkerHealth>) -> (StatusCode, Json<Readiness>) {
    let polling = h.polling.load(Ordering::SeqCst);
    let (postgres, temporal) = tokio::join!(
        h.dependencies.postgres.check(db::answers(&h.pool)),
        h.dependencies.temporal.check(temporal::answers(&h.client, &h.namespace, CHECK_TIMEOUT))
    );
    let ready = polling && postgres && temporal;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if ready { "ready" } else { "unavailable" }, polling, postgres, temporal }))
}
