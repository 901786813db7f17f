//! The worker process: one task queue, `OrderWorkflow`, `UserOnboardingWorkflow` and their activities,
//! concurrency bounded so activities never wait on the database pool.

pub mod health;

use std::future::Future;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use temporalio_client::Client;
use temporalio_common::telemetry::metrics::{CoreMeter, MetricParameters, NewAttributes};
use temporalio_sdk::interceptors::{ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, Next};
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkerRunError};
use tokio::sync::{Notify, watch};

use crate::activities::OrderActivities;
use crate::activities::users::UserActivities;
use crate::config::{Settings, WorkerSettings};
use crate::workflows::{OrderWorkflow, UserOnboardingWorkflow};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot create the worker: {0}")]
    Build(String),
    #[error("the worker failed")]
    Run(#[source] WorkerRunError),
    #[error("cannot release the stopped SDK worker from the client")]
    Unregister(#[source] anyhow::Error),
    #[error("the SDK worker stopped though nothing asked it to")]
    StoppedUnasked,
}

/// Runs the task queue's workflows and activities until `stop` resolves, then
/// drains (finishes running activities) and returns how many times the SDK
/// worker was replaced.
///
/// Why replace it: `temporalio-sdk` 1.1.1 keeps one entry per activity task it
/// ever ran (`ActivityHalf::task_tokens_to_cancels` is inserted into, never
/// removed from), so a long-lived worker grows by about 1 KB per order served.
/// After `recycle_after_activities` activity tasks the running SDK worker is
/// shut down gracefully (running activities finish, cached workflows are
/// evicted and replay from their history on their next task: CPU, never
/// correctness) and a fresh one takes over on the same client; dropping the
/// old one frees its map. One at a time, so the concurrency limits (and the
/// database pool sized to them) hold throughout; Temporal keeps the tasks that
/// arrive meanwhile. See docs/operations.md, "Worker memory".
pub async fn run_until_stopped(
    runtime: &Runtime,
    client: Client,
    settings: &Settings,
    activities: OrderActivities,
    meter: Arc<dyn CoreMeter>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<u64, WorkerError> {
    let replaced = meter.counter(MetricParameters {
        name: "orders_worker_replaced".into(),
        description: "Times the SDK worker was replaced by a fresh one (ORDERS_WORKER_RECYCLE_AFTER_ACTIVITIES)".into(),
        unit: "".into(),
    });
    let none = meter.new_attributes(NewAttributes::default());
    replaced.add(0, &none);
    let (stopped_tx, stopped) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stopped_tx.send(true);
    });
    let mut count = 0;
    loop {
        let tasks = Arc::new(ActivityTasks::new(settings.worker.recycle_after_activities));
        let mut worker = build(runtime, client.clone(), settings, activities.clone(), tasks.clone())?;
        let shutdown = worker.shutdown_handle();
        let mut stopping = stopped.clone();
        // Spawned onto this runtime: the handle spawns the shutdown RPC where it is called.
        let asked = tokio::spawn(async move {
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => {}
                () = tasks.limit_reached() => {}
            }
            let asked_at = Instant::now();
            shutdown();
            asked_at
        });
        worker.run().await.map_err(WorkerError::Run)?;
        // The SDK's run() shuts its core worker down but leaves it registered with the
        // client, which keeps it (slots, heartbeat callbacks: some 4 MiB) for good; only
        // this releases it, and stops heartbeats on behalf of a stopped worker.
        client
            .connection()
            .workers()
            .finalize_unregister(worker.worker_instance_key())
            .map_err(WorkerError::Unregister)?;
        drop(worker);
        if *stopped.borrow() {
            return Ok(count);
        }
        if !asked.is_finished() {
            asked.abort();
            return Err(WorkerError::StoppedUnasked);
        }
        let asked_at = asked.await.map_err(|_| WorkerError::StoppedUnasked)?;
        count += 1;
        replaced.add(1, &none);
        tracing::info!(
            activity_tasks = settings.worker.recycle_after_activities.map_or(0, NonZeroU64::get),
            drained_ms = asked_at.elapsed().as_millis() as u64,
            "replacing the SDK worker by a fresh one (it keeps an entry per activity task it ran)"
        );
    }
}

/// Builds a worker for `settings.task_queue` that reports its activity tasks to
/// `tasks`. Run it with `worker.run().await` on the current thread (its future
/// is not `Send`).
fn build(
    runtime: &Runtime,
    client: Client,
    settings: &Settings,
    activities: OrderActivities,
    tasks: Arc<ActivityTasks>,
) -> Result<Worker, WorkerError> {
    let mailer = crate::activities::mailer(settings).map_err(|e| WorkerError::Build(e.to_string()))?;
    let w = &settings.worker;
    let options = WorkerOptions::new(settings.task_queue.clone())
        .register_workflow::<OrderWorkflow>()
        .map_err(|e| WorkerError::Build(e.to_string()))?
        .register_workflow::<UserOnboardingWorkflow>()
        .map_err(|e| WorkerError::Build(e.to_string()))?
        .register_activities(UserActivities {
            pool: activities.pool.clone(),
            mailer: mailer.clone(),
            verification_key: settings.verification_key.clone(),
        })
        .register_activities(activities)
        .activity_inbound_interceptor(CountActivityTasks(tasks))
        .workflow_interceptor(crate::workflows::run_counter())
        .tuner(tuner(w))
        .max_cached_workflows(w.max_cached_workflows)
        .sticky_queue_schedule_to_start_timeout(crate::temporal::WORKFLOW_TASK_TIMEOUT)
        .workflow_task_poller_behavior(pollers(w))
        .activity_task_poller_behavior(pollers(w))
        // Leave room inside the process's own grace period to finish the drain.
        .graceful_shutdown_period(settings.shutdown_grace.saturating_sub(Duration::from_secs(2)))
        .build();
    Worker::new(runtime, client, options).map_err(|e| WorkerError::Build(e.to_string()))
}

/// The activity tasks one SDK worker has started, and when it has started enough.
struct ActivityTasks {
    started: AtomicU64,
    limit: Option<NonZeroU64>,
    reached: Notify,
}

impl ActivityTasks {
    fn new(limit: Option<NonZeroU64>) -> Self {
        Self { started: AtomicU64::new(0), limit, reached: Notify::new() }
    }

    fn started_one(&self) {
        let started = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit.is_some_and(|limit| started == limit.get()) {
            // Stores the wake-up if nobody waits yet.
            self.reached.notify_one();
        }
    }

    /// Resolves once `limit` tasks have started; never without a limit.
    async fn limit_reached(&self) {
        if self.limit.is_none() {
            return std::future::pending().await;
        }
        self.reached.notified().await;
    }
}

/// Counts every activity task (local ones too) as the SDK starts it.
struct CountActivityTasks(Arc<ActivityTasks>);

impl ActivityInboundInterceptor for CountActivityTasks {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        self.0.started_one();
        next.run(input)
    }
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
    use futures::FutureExt;

    use super::*;

    #[test]
    fn the_limit_is_reached_once_that_many_tasks_started() {
        let tasks = ActivityTasks::new(NonZeroU64::new(3));
        tasks.started_one();
        tasks.started_one();
        assert!(tasks.limit_reached().now_or_never().is_none(), "two of three");
        tasks.started_one();
        assert!(tasks.limit_reached().now_or_never().is_some(), "three of three");
        let unlimited = ActivityTasks::new(None);
        unlimited.started_one();
        assert!(unlimited.limit_reached().now_or_never().is_none());
    }

    #[test]
    fn only_the_workflow_processing_thread_is_fatal() {
        assert!(is_workflow_processing(Some("workflow-processing")));
        assert!(!is_workflow_processing(Some("tokio-runtime-worker")));
        assert!(!is_workflow_processing(None));
    }
}
