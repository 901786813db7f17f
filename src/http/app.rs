//! The API process: bind first (so tests can ask for port 0 and read the port),
//! then serve until a shutdown signal, draining in-flight requests within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::state::AppState;
use crate::config::Settings;
use crate::db::{self, decisions, orders, users};
use crate::temporal;

pub struct Application {
    listener: TcpListener,
    metrics_listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> std::io::Result<Application> {
        let listener = TcpListener::bind(settings.http_addr).await?;
        let metrics_listener = TcpListener::bind(settings.metrics_addr).await?;
        let pool = db::pool(&settings).map_err(std::io::Error::other)?;
        let state = AppState::new(Arc::new(settings), pool).map_err(std::io::Error::other)?;
        Ok(Application { listener, metrics_listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The port of the metrics listener (`GET /metrics`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let grace = self.state.settings.shutdown_grace;
        let recovery = tokio::spawn(recover(self.state.clone()));
        // An IdP's keys: fetched on first use, then on schedule (and on unknown key ids).
        let jwks = self.state.jwt.remote().map(|remote| tokio::spawn(remote.refresh_loop()));
        let events = tokio::spawn(self.state.events.clone().run(self.state.pool.clone()));
        let metrics =
            tokio::spawn(axum::serve(self.metrics_listener, super::metrics::router(self.state.clone())).into_future());
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let (limiter, signups) = (self.state.rate_limiter.clone(), self.state.signup_limiter.clone());
        let forget = tokio::spawn(async move {
            // Keep the per-caller buckets bounded: drop those back at full capacity.
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
                signups.retain_recent();
            }
        });
        let stopping = self.state.stopping.clone();
        let delay = self.state.settings.shutdown_delay;
        let header_read_timeout = self.state.settings.header_read_timeout;
        let starts = self.state.starts.clone();
        let app = super::router(self.state);
        let serve = super::serve::serve(self.listener, app, header_read_timeout, async move {
            shutdown.await;
            // Not ready first, still serving, so a load balancer can take this replica out of rotation.
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(delay_secs = delay.as_secs_f64(), "shutting down: readiness off");
            tokio::time::sleep(delay).await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stopping_tx.send(());
        });
        let deadline = async move {
            // Only a signal starts the clock; a dropped sender means the server already ended.
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = serve => {}
            _ = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; dropping remaining requests");
            }
        };
        // Workflow starts still in flight finish (each within temporal::START_TIMEOUT);
        // one cut short would be made by the recovery loop of a replica.
        let all = u32::try_from(temporal::STARTS_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(temporal::START_TIMEOUT, starts.acquire_many(all)).await;
        recovery.abort();
        events.abort();
        metrics.abort();
        forget.abort();
        if let Some(jwks) = jwks {
            jwks.abort();
        }
        Ok(())
    }
}

/// Starts workflows for orders recorded while Temporal was unreachable (or
/// whose API process died between recording and starting), and tells workflows
/// of decisions recorded while it was (`decided` signals). Both are idempotent
/// (on the workflow id, on the decision's number), so several API replicas may
/// run this at once.
async fn recover(state: AppState) {
    let every = state.settings.start_recovery_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let unstarted = orders::unstarted(&state.pool, every.as_secs_f64(), 100).await;
        let unsignalled = decisions::unsignalled(&state.pool, every.as_secs_f64(), 100).await;
        let users = users::unstarted(&state.pool, every.as_secs_f64(), 100).await;
        let (unstarted, unsignalled, users) = match (unstarted, unsignalled, users) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::debug!(error = %e, "recovery: cannot read what to recover");
                continue;
            }
        };
        if unstarted.is_empty() && unsignalled.is_empty() && users.is_empty() {
            continue;
        }
        let Ok(client) = state.temporal().await else { continue };
        for (id, total) in unstarted {
            let input = temporal::order_input(&state.settings, id, total);
            match temporal::start_order(client, &state.settings, input).await {
                Ok(()) => {
                    tracing::info!(order_id = %id, "recovery: workflow started");
                    if let Err(e) = orders::mark_workflow_started(&state.pool, id).await {
                        tracing::warn!(order_id = %id, error = %e, "recovery: cannot mark started");
                    }
                }
                Err(e) => {
                    tracing::warn!(order_id = %id, error = %e, "recovery: start failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        for id in users {
            match temporal::start_user(client, &state.settings, id).await {
                Ok(()) => {
                    tracing::info!(user_id = %id, "recovery: onboarding started");
                    if let Err(e) = users::mark_workflow_started(&state.pool, id).await {
                        tracing::warn!(user_id = %id, error = %e, "recovery: cannot mark started");
                    }
                }
                Err(e) => {
                    tracing::warn!(user_id = %id, error = %e, "recovery: onboarding start failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        for (id, seq) in unsignalled {
            // The workflow reads the records, so it needs no more than a wake-up.
            match temporal::tell_decided(client, &state.pool, id, seq, None).await {
                Ok(()) => tracing::info!(order_id = %id, decision = seq, "recovery: decision signalled"),
                Err(e) => {
                    tracing::warn!(order_id = %id, error = %e, "recovery: signal failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
