//! orders: HTTP order orchestration over Temporal.
//!
//! Data flows one way: `http` parses requests into `domain` types, starts a
//! `workflows` run per order, whose `activities` do the I/O through `db` and the
//! external parties (payment gateway, carrier).

pub mod activities;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod readiness;
pub mod telemetry;
pub mod temporal;
pub mod tls;
pub mod worker;
pub mod workflows;

/// Resolves on SIGTERM or Ctrl-C: the one shutdown trigger of both binaries.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
