//! The worker process: one task queue, `OrderWorkflow`, `UserOnboardingWorkflow` and their activities,
//! concurrency bounded so activities never wait on the database pool.

pub mod health;

use std::time::Duration;

use temporalio_client::Client;
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::activities::OrderActivities;
use crate::activities::users::UserActivities;
use crate::config::{Settings, WorkerSettings};
use crate::workflows::{OrderWorkflow, UserOnboardingWorkflow};

#[derive(Debug, thiserror::Error)]
#[error("cannot create the worker: {0}")]
pub struct WorkerError(String);

/// Builds a worker for `settings.task_queue`. Run it with `worker.run().await`
/// on the current thread (its future is not `Send`).
pub fn build(
    runtime: &Runtime,
    client: Client,
    settings: &Settings,
    activities: OrderActivities,
) -> Result<Worker, WorkerError> {
    let mailer = crate::activities::mailer(settings).map_err(|e| WorkerError(e.to_string()))?;
    let w = &settings.worker;
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<OrderWorkflow>()
        .map_err(|e| WorkerError(e.to_string()))?
        .register_workflow::<UserOnboardingWorkflow>()
        .map_err(|e| WorkerError(e.to_string()))?
        .register_activities(UserActivities {
            pool: activities.pool.clone(),
            mailer: mailer.clone(),
            verification_key: settings.verification_key.clone(),
        })
        .register_activities(activities)
        .workflow_interceptor(crate::workflows::run_counter())
        .tuner(tuner(w))
        .max_cached_workflows(w.max_cached_workflows)
        .sticky_queue_schedule_to_start_timeout(crate::temporal::WORKFLOW_TASK_TIMEOUT)
        .workflow_task_poller_behavior(pollers(w))
        .activity_task_poller_behavior(pollers(w))
        // Leave room inside the process's own grace period to finish the drain.
        .graceful_shutdown_period(settings.shutdown_grace.saturating_sub(Duration::from_secs(2)))
        .build();
    Worker::new(runtime, client, options).map_err(|e| WorkerError(e.to_string()))
}

/// Concurrency limits from the settings: never more database activities at once
/// than the pool has connections (the settings check that).
pub fn tuner(w: &WorkerSettings) -> TunerHolder {
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(w.max_concurrent_workflow_tasks))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(w.max_concurrent_activities))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(w.max_concurrent_local_activities))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build()
}

/// Long polls per task type.
pub fn pollers(w: &WorkerSettings) -> PollerBehavior {
    PollerBehavior::SimpleMaximum(w.max_pollers)
}

/// The thread of the SDK core that runs every workflow of the worker (named so
/// in `temporalio-sdk-core`'s `worker/workflow/mod.rs`).
const WORKFLOW_PROCESSING_THREAD: &str = "workflow-processing";

/// Makes the process exit at once (code 70) when the core's workflow-processing
/// thread panics. Without it the process lives on, polling nothing, until its
/// main thread happens to join that thread, and looks alive meanwhile; exiting
/// lets Kubernetes (or `scripts/dev`) restart it, and Temporal hands its
/// workflow tasks to another worker. Panics elsewhere are the SDK's to handle
/// (it fails the activity or workflow task and retries it).
pub fn exit_when_workflow_processing_dies(polling: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if is_workflow_processing(std::thread::current().name()) {
            polling.store(false, std::sync::atomic::Ordering::SeqCst);
            tracing::error!(panic = %info, "the workflow-processing thread died: exiting so that the worker is restarted");
            std::process::exit(70);
        }
    }));
}

fn is_workflow_processing(thread: Option<&str>) -> bool {
    thread == Some(WORKFLOW_PROCESSING_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_workflow_processing_thread_is_fatal() {
        assert!(is_workflow_processing(Some("workflow-processing")));
        assert!(!is_workflow_processing(Some("tokio-runtime-worker")));
        assert!(!is_workflow_processing(None));
    }
}
