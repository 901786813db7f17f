//! `orders-worker`: runs order workflows and their activities until SIGTERM or Ctrl-C,
//! with probes on `ORDERS_WORKER_HEALTH_ADDR` and Prometheus metrics on `ORDERS_WORKER_METRICS_ADDR`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use orders::activities::OrderMetrics;
use orders::config::{Process, Settings};
use orders::worker::health::{self, WorkerHealth};
use orders::{activities, db, telemetry, temporal, worker};
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter};
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;

/// How long the start-up check of the namespace's capabilities may take: it only
/// decides a warning, so a slow server delays the start by at most this much.
const CAPABILITY_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `orders-worker` takes no arguments; `--help` lists the environment variables.
#[derive(clap::Parser)]
#[command(name = "orders-worker", version, about = "Runs the order and onboarding workflows and their activities")]
struct Cli {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use clap::CommandFactory;
    Cli::command().after_long_help(orders::config::variables_help()).get_matches();
    let settings = Settings::from_env_for(Process::Worker)?;
    let _telemetry = telemetry::init(settings.log_format, "orders-worker");
    tracing::info!(task_queue = %settings.task_queue, temporal = %settings.temporal_address, "orders-worker starting");

    // Prometheus conventions: `_total` counters, durations in seconds with the unit in the name.
    let prometheus = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(settings.worker.metrics_addr)
            .counters_total_suffix(true)
            .unit_suffix(true)
            .use_seconds_for_durations(true)
            .build(),
    )
    .map_err(|e| anyhow::anyhow!("metrics on {}: {e}", settings.worker.metrics_addr))?;
    let meter = prometheus.meter.clone() as Arc<dyn CoreMeter>;
    let telemetry_options = TelemetryOptions::builder().metrics(meter.clone()).build();
    // The runtime must exist before the client connects.
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder().telemetry_options(telemetry_options).build().map_err(anyhow::Error::msg)?,
    )?;
    let client = temporal::connect(&settings, "orders-worker").await?;
    match temporal::completes_polls_on_shutdown(&client, &settings.temporal_namespace, CAPABILITY_CHECK_TIMEOUT).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "the Temporal server does not complete polls when a worker stops: each graceful stop may leave \
             a task to its timeout; set frontend.enableCancelWorkerPollsOnShutdown=true (docs/deploying.md)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read the namespace's capabilities"),
    }
    let pool = db::pool(&settings)?;
    tokio::spawn(activities::metrics::record_runs_in_memory(meter.clone(), Duration::from_secs(5)));
    let activities = activities::from_settings(&settings, pool.clone(), OrderMetrics::new(meter.clone()))
        .context("building the HTTP client")?;

    let polling = Arc::new(AtomicBool::new(true));
    worker::exit_when_workflow_processing_dies(polling.clone());
    let probes = tokio::net::TcpListener::bind(settings.worker.health_addr)
        .await
        .with_context(|| format!("probes on {}", settings.worker.health_addr))?;
    let health = WorkerHealth {
        client: client.clone(),
        pool,
        namespace: settings.temporal_namespace.clone(),
        polling: polling.clone(),
        dependencies: Arc::default(),
    };
    let probes = tokio::spawn(async move { axum::serve(probes, health::router(health)).await });

    let stop = async move {
        orders::shutdown_signal().await;
        // Not ready first, so nothing new is routed here; then stop polling and drain.
        polling.store(false, Ordering::SeqCst);
        tracing::info!("shutting down: no new tasks; finishing running activities");
    };
    worker::run_until_stopped(&runtime, client, &settings, activities, meter, stop).await?;
    probes.abort();
    tracing::info!("orders-worker stopped");
    Ok(())
}
