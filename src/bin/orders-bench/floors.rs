//! The two floors the service is measured against, run by a bare worker on the
//! same Temporal server:
//!
//! (a) `OrderWorkflow` itself with no-op activities registered under the same
//!     names and types: what Temporal allows for this design (same workflow
//!     code, same local activities, same payloads), with no Postgres or HTTP;
//! (b) the naive shape of the guide this service replaces: validate, reserve,
//!     pay, ship, notify as five sequential regular activities with no-op bodies.
//!
//! An order counts as done at the moment the service would call it `shipped`:
//! when the (no-op) shipment is booked in (a), when the notify activity runs in (b).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use std::sync::Mutex;
use temporalio_client::{Client, WorkflowIdConflictPolicy, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, Worker, WorkerOptions, WorkflowContext, WorkflowContextView, WorkflowResult};

use orders::activities::order::{Charge, Reservation, Shipped};
use orders::domain::OrderId;
use orders::workflows::{OrderInput, OrderWorkflow};

/// Start instants by workflow id and the latency of each finished one.
pub struct Tracker {
    started: Mutex<HashMap<String, Instant>>,
    latencies: Mutex<Histogram<u64>>,
    done: AtomicUsize,
    last_done: Mutex<Option<Instant>>,
}

impl Tracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Tracker {
            started: Mutex::default(),
            latencies: Mutex::new(crate::load::histogram()),
            done: AtomicUsize::new(0),
            last_done: Mutex::default(),
        })
    }

    fn finish(&self, workflow_id: &str) {
        let now = Instant::now();
        // An order finishes once: a replayed task re-running the step is not counted twice.
        if let Some(started) = self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(workflow_id) {
            let micros = now.duration_since(started).as_micros() as u64;
            let _ = self.latencies.lock().unwrap_or_else(|e| e.into_inner()).record(micros);
            self.done.fetch_add(1, Ordering::SeqCst);
            *self.last_done.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
    }
}

pub use noop::NoopOrderActivities;

mod noop {
    // OrderWorkflow calls these by their activity names; the generated constants go unused.
    #![allow(dead_code)]

    use super::*;

    /// No-op stand-ins for `OrderActivities`, under the same activity names and types.
    pub struct NoopOrderActivities {
        pub tracker: Arc<Tracker>,
    }

    #[activities]
    impl NoopOrderActivities {
        #[activity(name = "ReserveInventory")]
        pub async fn reserve_inventory(
            self: Arc<Self>,
            _ctx: ActivityContext,
            _id: OrderId,
        ) -> Result<Reservation, ActivityError> {
            Ok(Reservation::Reserved)
        }

        #[activity(name = "ChargePayment")]
        pub async fn charge_payment(
            self: Arc<Self>,
            _ctx: ActivityContext,
            id: OrderId,
        ) -> Result<Charge, ActivityError> {
            Ok(Charge::Captured { reference: format!("sim_ch_{}", id.0.simple()) })
        }

        #[activity(name = "BookShipment")]
        pub async fn book_shipment(
            self: Arc<Self>,
            _ctx: ActivityContext,
            id: OrderId,
        ) -> Result<Shipped, ActivityError> {
            self.tracker.finish(&id.workflow_id());
            Ok(Shipped {
                carrier: "simulated".into(),
                tracking_number: format!("SIM{}", &id.0.simple().to_string()[..12]),
            })
        }

        #[activity(name = "DeliverNotifications")]
        pub async fn deliver_notifications(
            self: Arc<Self>,
            _ctx: ActivityContext,
            _d: orders::activities::order::Deliver,
        ) -> Result<orders::activities::order::Delivered, ActivityError> {
            // As the service's worker answers in the benchmark, which configures no channel.
            Ok(orders::activities::order::Delivered::UNCONFIGURED)
        }
    }
}

/// Floor (b): the five sequential regular activities of a straightforward port.
pub struct NaiveActivities {
    pub tracker: Arc<Tracker>,
}

#[activities]
impl NaiveActivities {
    #[activity(name = "NaiveValidate")]
    pub async fn validate(self: Arc<Self>, _ctx: ActivityContext, _o: OrderInput) -> Result<(), ActivityError> {
        Ok(())
    }
    #[activity(name = "NaiveReserve")]
    pub async fn reserve(self: Arc<Self>, _ctx: ActivityContext, _o: OrderInput) -> Result<Reservation, ActivityError> {
        Ok(Reservation::Reserved)
    }
    #[activity(name = "NaivePay")]
    pub async fn pay(self: Arc<Self>, _ctx: ActivityContext, o: OrderInput) -> Result<Charge, ActivityError> {
        Ok(Charge::Captured { reference: format!("sim_ch_{}", o.order_id.0.simple()) })
    }
    #[activity(name = "NaiveShip")]
    pub async fn ship(self: Arc<Self>, _ctx: ActivityContext, o: OrderInput) -> Result<Shipped, ActivityError> {
        Ok(Shipped { carrier: "simulated".into(), tracking_number: format!("SIM{}", o.order_id.0.simple()) })
    }
    #[activity(name = "NaiveNotify")]
    pub async fn notify(self: Arc<Self>, _ctx: ActivityContext, o: OrderInput) -> Result<(), ActivityError> {
        self.tracker.finish(&o.order_id.workflow_id());
        Ok(())
    }
}

#[workflow]
pub struct NaiveOrderWorkflow {
    input: OrderInput,
}

#[workflow_methods]
impl NaiveOrderWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OrderInput) -> Self {
        Self { input }
    }

    #[run(name = "NaiveOrderWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        let o = ctx.state(|s| s.input.clone());
        let opts = ActivityOptions::start_to_close_timeout(Duration::from_secs(30));
        ctx.execute_activity(NaiveActivities::validate, o.clone(), opts.clone()).await?;
        ctx.execute_activity(NaiveActivities::reserve, o.clone(), opts.clone()).await?;
        ctx.execute_activity(NaiveActivities::pay, o.clone(), opts.clone()).await?;
        ctx.execute_activity(NaiveActivities::ship, o.clone(), opts.clone()).await?;
        ctx.execute_activity(NaiveActivities::notify, o, opts).await?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// (a) OrderWorkflow with no-op activities.
    Ours,
    /// (b) five sequential regular activities.
    Naive,
}

#[derive(Debug, serde::Serialize)]
pub struct FloorResult {
    pub shape: Shape,
    pub workflows: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency_ms: crate::load::Percentiles,
    pub history_events: usize,
    pub workflow_tasks: usize,
}

/// Runs `n` workflows of `shape`, started `concurrency` at a time, through a
/// bare worker on its own task queue, and measures them to the "shipped" point.
pub async fn run(
    settings: &orders::config::Settings,
    shape: Shape,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<FloorResult> {
    let tracker = Tracker::new();
    let task_queue = format!("bench-floor-{}", uuid::Uuid::new_v4().simple());
    let worker = spawn_worker(settings.clone(), task_queue.clone(), shape, tracker.clone())?;
    let client = orders::temporal::connect(settings, "orders-bench").await?;
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let first = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    let mut sample_id = String::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (client, tracker, task_queue) = (client.clone(), tracker.clone(), task_queue.clone());
        let id = OrderId::new();
        sample_id = id.workflow_id();
        starts.spawn(async move {
            let input = OrderInput { order_id: id, review_within_secs: None, deliver_within_secs: 14 * 24 * 3600 };
            tracker.started.lock().unwrap_or_else(|e| e.into_inner()).insert(id.workflow_id(), Instant::now());
            let r = start(&client, shape, task_queue, input).await;
            drop(permit);
            r
        });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while tracker.done.load(Ordering::SeqCst) < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "floor {shape:?}: only {} of {n} done",
            tracker.done.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = tracker.last_done.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
    let seconds = last.duration_since(first).as_secs_f64();
    // The naive workflow has ended by now; ours waits for the carrier, so its history so far is to "shipped".
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (history_events, workflow_tasks) = crate::load::history_shape(&client, &sample_id).await?;
    worker.stop();
    let latency_ms = crate::load::Percentiles::of_micros(&tracker.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(FloorResult {
        shape,
        workflows: n,
        concurrency,
        seconds,
        per_second: n as f64 / seconds,
        latency_ms,
        history_events,
        workflow_tasks,
    })
}

async fn start(client: &Client, shape: Shape, task_queue: String, input: OrderInput) -> anyhow::Result<()> {
    let id = input.order_id.workflow_id();
    let opts =
        WorkflowStartOptions::new(task_queue, id).id_conflict_policy(WorkflowIdConflictPolicy::UseExisting).build();
    match shape {
        Shape::Ours => {
            client.start_workflow(OrderWorkflow::run, input, opts).await?;
        }
        Shape::Naive => {
            client.start_workflow(NaiveOrderWorkflow::run, input, opts).await?;
        }
    }
    Ok(())
}

/// A worker on its own thread (its `run` future is not `Send`), stopped on request.
pub struct FloorWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FloorWorker {
    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_worker(
    settings: orders::config::Settings,
    task_queue: String,
    shape: Shape,
    tracker: Arc<Tracker>,
) -> anyhow::Result<FloorWorker> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::spawn(move || {
        let worker = async {
            let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default()).map_err(|e| e.to_string())?;
            let client =
                orders::temporal::connect(&settings, "orders-bench-worker").await.map_err(|e| e.to_string())?;
            // The same limits and pollers as the service's worker.
            let w = &settings.worker;
            let options = WorkerOptions::new(task_queue)
                .tuner(orders::worker::tuner(w))
                .max_cached_workflows(w.max_cached_workflows)
                .workflow_task_poller_behavior(orders::worker::pollers(w))
                .activity_task_poller_behavior(orders::worker::pollers(w));
            let options = match shape {
                Shape::Ours => options
                    .register_workflow::<OrderWorkflow>()
                    .map(|o| o.register_activities(NoopOrderActivities { tracker: tracker.clone() })),
                Shape::Naive => options
                    .register_workflow::<NaiveOrderWorkflow>()
                    .map(|o| o.register_activities(NaiveActivities { tracker: tracker.clone() })),
            }
            .map_err(|e| e.to_string())?;
            Worker::new(&runtime, client, options.build()).map_err(|e| e.to_string())
        };
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return drop(ready_tx.send(Err(e.to_string()))),
        };
        rt.block_on(async move {
            let mut worker = match worker.await {
                Ok(w) => w,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            let stop = worker.shutdown_handle();
            tokio::spawn(async move {
                let _ = stop_rx.await;
                stop();
            });
            let _ = ready_tx.send(Ok(()));
            let _ = worker.run().await;
        });
    });
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("floor worker: {e}"),
        Err(_) => anyhow::bail!("floor worker did not start within 30 s"),
    }
    Ok(FloorWorker { stop: Some(stop_tx), thread: Some(thread) })
}
