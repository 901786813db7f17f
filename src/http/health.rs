//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;
use crate::readiness::CHECK_TIMEOUT;
use crate::{db, temporal};

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    pub postgres: bool,
    pub temporal: bool,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "health", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Postgres and Temporal both answer and the process is not shutting down; 503 otherwise.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "health",
    responses((status = 200, description = "Ready for traffic", body = Readiness), (status = 503, description = "Not ready: a dependency is down or the process is draining", body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let deps = &state.dependencies;
    // Connecting (on the first check) and asking share the one deadline.
    let temporal = deps.temporal.check(async {
        let client = state.temporal().await.map_err(|e| e.to_string())?;
        temporal::answers(client, &state.settings.temporal_namespace, CHECK_TIMEOUT).await.map_err(|e| e.to_string())
    });
    let (postgres, temporal) = tokio::join!(deps.postgres.check(db::answers(&state.pool)), temporal);
    let ready = postgres && temporal && !state.stopping.load(std::sync::atomic::Ordering::SeqCst);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if ready { "ready" } else { "unavailable" }, postgres, temporal }))
}
