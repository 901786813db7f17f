//! Load against the running service and bare Temporal calls, with HDR histograms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use temporalio_client::{Client, WorkflowFetchHistoryOptions, WorkflowStartOptions, WorkflowTerminateOptions};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult};

use temporalio_common::protos::temporal::api::enums::v1::EventType;

use orders::domain::OrderId;
use orders::workflows::{OrderInput, OrderWorkflow};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds, in milliseconds.
    pub fn of_micros(h: &Histogram<u64>) -> Percentiles {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits: fixed, valid bounds.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub what: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub latency_ms: Percentiles,
}

/// Runs `call` in a closed loop on `concurrency` tasks for `duration`.
pub async fn closed_loop<F, Fut>(what: &str, concurrency: usize, duration: Duration, call: F) -> Throughput
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.spawn(async move {
            let (mut h, mut errors, mut n) = (histogram(), 0u64, 0u64);
            while Instant::now() < end {
                let t = Instant::now();
                let ok = call(worker as u64 * 1_000_000_000 + n).await;
                n += 1;
                if ok {
                    let _ = h.record(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (h, errors)
        });
    }
    let (mut all, mut errors) = (histogram(), 0);
    while let Some(Ok((h, e))) = tasks.join_next().await {
        let _ = all.add(&h);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    Throughput {
        what: what.into(),
        concurrency,
        seconds,
        ok: all.len(),
        errors,
        per_second: all.len() as f64 / seconds,
        latency_ms: Percentiles::of_micros(&all),
    }
}

pub fn order_body(sku: &str) -> Value {
    json!({
        "items": [{"sku": sku, "quantity": 1}],
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701", "country": "US"},
        "payment_method": "credit_card",
        "payment_token": "tok_ok"
    })
}

/// `POST /orders` in a closed loop; each request has its own idempotency key.
pub async fn post_orders(api: &str, token: &str, concurrency: usize, duration: Duration) -> Throughput {
    let http = orders::tls::client().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let (url, token, body) = (format!("{api}/orders"), token.to_owned(), order_body("BENCH-1"));
    let run = uuid::Uuid::new_v4().simple().to_string();
    closed_loop("POST /orders", concurrency, duration, move |n| {
        let req = http.post(&url).bearer_auth(&token).header("Idempotency-Key", format!("{run}-{n}")).json(&body);
        async move { req.send().await.map(|r| r.status() == 201).unwrap_or(false) }
    })
    .await
}

/// A workflow type no worker polls: only the server's cost of a start is measured.
#[workflow]
pub struct BenchStartOnly {
    input: OrderInput,
}

#[workflow_methods]
impl BenchStartOnly {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: OrderInput) -> Self {
        Self { input }
    }

    #[run(name = "BenchStartOnly")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        let _ = ctx.state(|s| s.input.order_id);
        Ok(())
    }
}

/// Bare `StartWorkflowExecution` calls with the order's input, at the same concurrency.
pub async fn bare_starts(client: &Client, concurrency: usize, duration: Duration) -> Throughput {
    let task_queue = format!("bench-nobody-{}", uuid::Uuid::new_v4().simple());
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (starter, ids) = (client.clone(), started.clone());
    let measured = closed_loop("StartWorkflowExecution", concurrency, duration, move |_| {
        let (client, task_queue, ids) = (starter.clone(), task_queue.clone(), ids.clone());
        async move {
            let id = OrderId::new();
            let input = OrderInput { order_id: id, review_within_secs: None, deliver_within_secs: 14 * 24 * 3600 };
            // They never run (nobody polls their queue); ended below.
            let opts = WorkflowStartOptions::new(task_queue, id.workflow_id())
                .execution_timeout(Duration::from_secs(3600))
                .build();
            let ok = client.start_workflow(BenchStartOnly::run, input, opts).await.is_ok();
            if ok && let Ok(mut ids) = ids.lock() {
                ids.push(id.workflow_id());
            }
            ok
        }
    })
    .await;
    // Outside the measured window: end them now, so that the server does not time
    // them out (a write each) in the middle of the scenarios that follow.
    let ids = started.lock().map(|mut ids| std::mem::take(&mut *ids)).unwrap_or_default();
    let opts = WorkflowTerminateOptions::builder().reason("benchmark start measured".to_owned()).build();
    futures::stream::iter(ids)
        .for_each_concurrent(32, |id| {
            let opts = opts.clone();
            async move {
                let _ = client.get_workflow_handle::<BenchStartOnly>(id).terminate(opts).await;
            }
        })
        .await;
    measured
}

/// `GET /orders/{id}` open loop at `rate` per second (no coordinated omission:
/// requests go out on schedule whatever the latency).
pub async fn reads(api: &str, token: &str, ids: Vec<String>, rate: u32, duration: Duration) -> Throughput {
    let http = orders::tls::client().build().unwrap_or_default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while started.elapsed() < duration {
        tick.tick().await;
        let req = http.get(format!("{api}/orders/{}", ids[n % ids.len()])).bearer_auth(token);
        n += 1;
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = req.send().await.map(|r| r.status() == 200).unwrap_or(false);
            (ok, t.elapsed())
        });
    }
    let (mut h, mut errors) = (histogram(), 0);
    while let Some(Ok((ok, took))) = tasks.join_next().await {
        if ok {
            let _ = h.record(took.as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Throughput {
        what: format!("GET /orders/{{id}} at {rate}/s"),
        concurrency: 0,
        seconds,
        ok: h.len(),
        errors,
        per_second: h.len() as f64 / seconds,
        latency_ms: Percentiles::of_micros(&h),
    }
}

/// Events and completed workflow tasks in a workflow's history so far.
pub async fn history_shape(client: &Client, workflow_id: &str) -> anyhow::Result<(usize, usize)> {
    let handle = client.get_workflow_handle::<OrderWorkflow>(workflow_id.to_owned());
    let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await?;
    let history: Value = serde_json::from_slice(&json)?;
    let events = history["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    let completed = EventType::WorkflowTaskCompleted as i64;
    let tasks = events.iter().filter(|e| e["event_type"].as_i64() == Some(completed)).count();
    Ok((events.len(), tasks))
}
