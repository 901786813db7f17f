//! The soak: orders at a steady rate for a long while, with the simulated carrier
//! delivering them, and every few seconds one sample of what could grow — memory of
//! both binaries, Postgres tables, Temporal's database, open workflows, latency.
//! Flat is the target: after the working set fills, nothing should keep growing but
//! the records every order leaves by design (which the report shows per order).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use temporalio_client::Client;

use crate::load::{self, Percentiles};

/// What the soak watches, beside the running service.
pub struct Watched {
    pub api_pid: u32,
    pub worker_pid: u32,
    /// The Temporal dev server's SQLite file (its `-wal` beside it counts too).
    pub temporal_db: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Sample {
    /// Seconds since the soak began.
    t: f64,
    posted: u64,
    errors: u64,
    /// `POST /orders` latency over this sample's window.
    post_ms: Percentiles,
    /// Accepted → delivered, of the orders delivered in this window.
    delivered: i64,
    delivered_p99_ms: Option<f64>,
    rss_mib: RssMib,
    /// Sizes with indexes and TOAST, in MiB, of every table of ours.
    pg_tables_mib: serde_json::Map<String, Value>,
    temporal_db_mib: Option<f64>,
    /// Orders of this soak whose workflow is still running (Temporal's count).
    open_workflows: usize,
    /// Orders of this soak not yet at an end (the read model's count).
    open_orders: i64,
}

#[derive(Debug, Serialize)]
struct RssMib {
    api: Option<f64>,
    worker: Option<f64>,
}

/// Latencies and outcomes of the window being filled.
struct Window {
    h: Histogram<u64>,
    posted: u64,
    errors: u64,
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    pool: &PgPool,
    client: &Client,
    api: &str,
    token: &str,
    rate: f64,
    duration: Duration,
    every: Duration,
    watched: Watched,
) -> anyhow::Result<Value> {
    anyhow::ensure!(rate > 0.0, "the soak needs a rate above zero");
    let began_at: DateTime<Utc> = Utc::now();
    let began = Instant::now();
    let window = Arc::new(Mutex::new(Window { h: load::histogram(), posted: 0, errors: 0 }));

    let load = {
        let (http, url, token, body) = (
            orders::tls::client().build().unwrap_or_default(),
            format!("{api}/orders"),
            token.to_owned(),
            load::order_body("BENCH-1"),
        );
        let window = window.clone();
        tokio::spawn(async move {
            // Open loop: requests go out on schedule whatever the latency.
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut requests = tokio::task::JoinSet::new();
            while began.elapsed() < duration {
                tick.tick().await;
                let (req, window) = (http.post(&url).bearer_auth(&token).json(&body), window.clone());
                requests.spawn(async move {
                    let t = Instant::now();
                    let ok = req.send().await.map(|r| r.status() == 201).unwrap_or(false);
                    let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
                    w.posted += 1;
                    if ok {
                        let _ = w.h.record(t.elapsed().as_micros() as u64);
                    } else {
                        w.errors += 1;
                    }
                });
                // Reap the finished ones as we go, so the set stays the in-flight few.
                while requests.try_join_next().is_some() {}
            }
            while requests.join_next().await.is_some() {}
        })
    };

    let mut samples = Vec::new();
    let mut last = began_at;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while !load.is_finished() {
        tick.tick().await;
        let taken = {
            let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *w, Window { h: load::histogram(), posted: 0, errors: 0 })
        };
        let now = Utc::now();
        samples.push(sample(pool, client, &watched, began, began_at, last, now, taken).await?);
        last = now;
    }
    load.await.context("the soak's load task")?;

    // Afterwards every order of the soak must reach an end: nothing stranded.
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    let stranded = loop {
        let open = open_orders(pool, began_at).await?;
        if open == 0 || Instant::now() > drain_deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (orders, ends): (i64, Value) = sqlx::query_as(
        "SELECT COALESCE(sum(n), 0)::int8, COALESCE(json_object_agg(status, n), '{}'::json) FROM
           (SELECT status::text, count(*) AS n FROM orders WHERE created_at >= $1 GROUP BY status) s",
    )
    .bind(began_at)
    .fetch_one(pool)
    .await?;
    Ok(json!({
        "scenario": "soak", "rate_per_second": rate, "seconds": duration.as_secs_f64(),
        "sample_seconds": every.as_secs_f64(), "orders": orders, "ends": ends,
        "stranded_after_drain": stranded, "samples": samples,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn sample(
    pool: &PgPool,
    client: &Client,
    watched: &Watched,
    began: Instant,
    began_at: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    window: Window,
) -> anyhow::Result<Sample> {
    let (delivered, delivered_p99_ms): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - o.created_at) * 1000)::float8
           FROM order_events e JOIN orders o ON o.id = e.order_id
          WHERE e.key = 'delivered' AND e.at > $1 AND e.at <= $2 AND o.created_at >= $3",
    )
    .bind(from)
    .bind(to)
    .bind(began_at)
    .fetch_one(pool)
    .await?;
    let tables: Vec<(String, f64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) / 1048576.0::float8
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> '_sqlx_migrations'
          ORDER BY 2 DESC",
    )
    .fetch_all(pool)
    .await?;
    let query = format!(
        "WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running' AND StartTime >= '{}'",
        began_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let open_workflows = client.count_workflows(query, Default::default()).await?.count();
    Ok(Sample {
        t: began.elapsed().as_secs_f64(),
        posted: window.posted,
        errors: window.errors,
        post_ms: Percentiles::of_micros(&window.h),
        delivered,
        delivered_p99_ms,
        rss_mib: RssMib { api: rss_mib(watched.api_pid), worker: rss_mib(watched.worker_pid) },
        pg_tables_mib: tables.into_iter().map(|(name, mib)| (name, json!((mib * 100.0).round() / 100.0))).collect(),
        temporal_db_mib: watched.temporal_db.as_ref().map(|db| {
            let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let wal = db.with_file_name(format!("{}-wal", db.file_name().and_then(|n| n.to_str()).unwrap_or_default()));
            (size(db) + size(&wal)) as f64 / 1048576.0
        }),
        open_workflows,
        open_orders: open_orders(pool, began_at).await?,
    })
}

async fn open_orders(pool: &PgPool, since: DateTime<Utc>) -> anyhow::Result<i64> {
    let terminal: Vec<orders::domain::OrderStatus> =
        orders::domain::OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
    Ok(sqlx::query_scalar("SELECT count(*) FROM orders WHERE created_at >= $1 AND status <> ALL($2)")
        .bind(since)
        .bind(terminal)
        .fetch_one(pool)
        .await?)
}

/// Resident memory of a process now, in MiB (None once it has gone).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}
