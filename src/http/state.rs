//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sqlx::PgPool;
use temporalio_client::Client;
use tokio::sync::{OnceCell, Semaphore};

use super::auth::{JwtKeys, KeyError};
use super::metrics::HttpMetrics;
use super::orders::events::EventHub;
use super::rate_limit::{Limiter, SignupLimiter, limiter};
use crate::config::Settings;
use crate::readiness::Dependencies;
use crate::temporal::{self, TemporalError};

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub events: EventHub,
    pub rate_limiter: Limiter,
    pub signup_limiter: SignupLimiter,
    pub metrics: HttpMetrics,
    /// Slots for the order workflow starts in flight off the answers' path
    /// (`temporal::STARTS_IN_FLIGHT`).
    pub starts: Arc<Semaphore>,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub stopping: Arc<AtomicBool>,
    /// What `/readyz` last found of Postgres and Temporal (a change is logged).
    pub dependencies: Arc<Dependencies>,
    /// Connected on first use, so the API starts (and serves reads) while Temporal is down.
    temporal: Arc<OnceCell<Client>>,
}

impl AppState {
    pub fn new(settings: Arc<Settings>, pool: PgPool) -> Result<Self, KeyError> {
        let jwt = settings.jwt.as_ref().ok_or(KeyError::Invalid {
            var: "ORDERS_JWT_SECRET",
            message: "the API needs JWT settings (read them with Process::Api)".into(),
        })?;
        let jwt = JwtKeys::from_settings(jwt)?;
        let rate_limiter = limiter(settings.rate_limit_per_second, settings.rate_limit_burst);
        let signup_limiter = SignupLimiter::new(settings.signup_per_ip_per_minute, settings.signup_per_minute);
        Ok(Self {
            settings,
            pool,
            jwt,
            events: EventHub::new(),
            rate_limiter,
            signup_limiter,
            metrics: HttpMetrics::new(),
            starts: Arc::new(Semaphore::new(temporal::STARTS_IN_FLIGHT)),
            stopping: Arc::new(AtomicBool::new(false)),
            dependencies: Arc::default(),
            temporal: Arc::new(OnceCell::new()),
        })
    }

    pub async fn temporal(&self) -> Result<&Client, TemporalError> {
        self.temporal.get_or_try_init(|| temporal::connect(&self.settings, "orders-api")).await
    }

    /// Starts a workflow for a request within `temporal::START_TIMEOUT`, so an
    /// unreachable Temporal delays the answer by at most that; the error says why
    /// (the caller logs it, and the recovery loop starts the workflow later).
    pub async fn start_bounded<'a, F, Fut>(&'a self, start: F) -> Result<(), String>
    where
        F: FnOnce(&'a Client) -> Fut,
        Fut: std::future::Future<Output = Result<(), temporalio_client::errors::WorkflowStartError>>,
    {
        let attempt = async {
            let client = self.temporal().await.map_err(|e| e.to_string())?;
            start(client).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(temporal::START_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no answer from Temporal within {:?}", temporal::START_TIMEOUT)))
    }
}
