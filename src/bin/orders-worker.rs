//! `orders-worker`: runs order workflows and their activities until SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use orders::{activities, config::Settings, db, telemetry, temporal, worker};
use temporalio_sdk::Runtime;
use temporalio_sdk::runtime::RuntimeOptions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(settings.log_format);
    tracing::info!(task_queue = %settings.task_queue, temporal = %settings.temporal_address, "orders-worker starting");

    // The runtime must exist before the client connects.
    let runtime = Runtime::from_current_tokio(RuntimeOptions::builder().build().map_err(anyhow::Error::msg)?)?;
    let client = temporal::connect(&settings, "orders-worker").await?;
    let pool = db::pool(&settings)?;
    let activities = activities::from_settings(&settings, pool).context("building the HTTP client")?;
    let mut worker = worker::build(&runtime, client, &settings, activities)?;

    let stop = Arc::new(worker.shutdown_handle());
    tokio::spawn(async move {
        orders::shutdown_signal().await;
        tracing::info!("shutting down: no new tasks; finishing running activities");
        stop();
    });
    worker.run().await?;
    tracing::info!("orders-worker stopped");
    Ok(())
}
