//! `orders-bench`: the load generator and floor measurements behind `scripts/bench`.
//! Each subcommand prints one JSON object on stdout (figures, plus this process's
//! own CPU time, so that the generator can be seen not to be the bottleneck).

mod floors;
mod load;
mod soak;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sqlx::PgPool;

use orders::config::Settings;

#[derive(Parser)]
#[command(name = "orders-bench", about = "Benchmarks of the order path (run by scripts/bench)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The running API and a token of the customer the load acts as.
#[derive(clap::Args)]
struct Service {
    #[arg(long)]
    api: String,
    #[arg(long)]
    token: String,
}

/// The timeline event an end-to-end run waits for on every order.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Until {
    Shipped,
    Delivered,
}

impl Until {
    fn key(self) -> &'static str {
        match self {
            Until::Shipped => "shipped",
            Until::Delivered => "delivered",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// POST /orders in a closed loop, then bare StartWorkflowExecution calls, at one concurrency.
    StartPath {
        #[command(flatten)]
        service: Service,
        #[arg(long)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The worker is stopped: accepted orders wait, so neither side shares the
        /// machine with running orders, and nothing drains between the two sides.
        #[arg(long)]
        worker_stopped: bool,
    },
    /// N orders through the service, from the first POST to the last `shipped`
    /// (or `delivered`: the worker's simulated carrier must then report).
    EndToEnd {
        #[command(flatten)]
        service: Service,
        #[arg(long)]
        orders: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, value_enum, default_value_t = Until::Shipped)]
        until: Until,
    },
    /// A floor: OrderWorkflow with no-op activities (ours) or five regular activities (naive).
    Floor {
        #[arg(long, value_enum)]
        shape: floors::Shape,
        #[arg(long)]
        workflows: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// GET /orders/{id} at a fixed rate over the token customer's orders.
    Reads {
        #[command(flatten)]
        service: Service,
        #[arg(long)]
        customer: String,
        #[arg(long, default_value_t = 500)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Orders at a steady rate for `minutes`, sampling memory, table sizes, open
    /// workflows and latency every `sample_seconds` (the simulated carrier must deliver).
    Soak {
        #[command(flatten)]
        service: Service,
        /// Orders per second.
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        minutes: f64,
        #[arg(long, default_value_t = 15)]
        sample_seconds: u64,
        #[arg(long)]
        api_pid: u32,
        #[arg(long)]
        worker_pid: u32,
        /// The Temporal dev server's database file, to sample its size.
        #[arg(long)]
        temporal_db: Option<std::path::PathBuf>,
    },
    /// Fills `orders` up to `count` rows (spread over 10,000 customers), then times
    /// GET /orders pages of one customer and shows the plans of the list queries.
    List {
        #[command(flatten)]
        service: Service,
        #[arg(long)]
        customer: String,
        #[arg(long, default_value_t = 1_000_000)]
        count: i64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

/// CPU seconds this process has used (user + system).
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Arguments first, so that --help needs no environment.
    let command = Cli::parse().command;
    let settings = Settings::from_env()?;
    let cpu_before = own_cpu_seconds();
    let wall = Instant::now();
    let mut result = match command {
        Command::StartPath { service: Service { api, token }, concurrency, seconds, worker_stopped } => {
            let d = Duration::from_secs(seconds);
            let pool = orders::db::pool(&settings)?;
            // With a running worker, each side starts on a quiet server: the worker
            // has finished the orders posted before.
            if !worker_stopped {
                wait_for_quiet(&pool).await?;
            }
            let post = load::post_orders(&api, &token, concurrency, d).await;
            if !worker_stopped {
                wait_for_quiet(&pool).await?;
            }
            let client = orders::temporal::connect(&settings, "orders-bench").await?;
            let bare = load::bare_starts(&client, concurrency, d).await;
            let worker = if worker_stopped { "stopped" } else { "running" };
            json!({"scenario": "start_path", "worker": worker, "concurrency": concurrency, "post": post, "bare_start": bare})
        }
        Command::EndToEnd { service: Service { api, token }, orders: n, concurrency, until } => {
            end_to_end(&settings, &api, &token, n, concurrency, until).await?
        }
        Command::Floor { shape, workflows, concurrency } => {
            json!({"scenario": "floor", "result": floors::run(&settings, shape, workflows, concurrency).await?})
        }
        Command::Reads { service: Service { api, token }, customer, rate, seconds } => {
            let pool = orders::db::pool(&settings)?;
            wait_for_quiet(&pool).await?;
            let ids: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT id FROM orders WHERE customer_id = $1 LIMIT 2000")
                .bind(&customer)
                .fetch_all(&pool)
                .await?;
            anyhow::ensure!(!ids.is_empty(), "no orders of {customer} to read");
            let ids: Vec<String> = ids.into_iter().map(|(id,)| id.to_string()).collect();
            let get = load::reads(&api, &token, ids.clone(), rate, Duration::from_secs(seconds)).await;
            // Then higher rates, 5 s each, up to the first whose p99 reaches 10 ms.
            let mut steps = Vec::new();
            let mut highest_under_10ms = (get.latency_ms.p99 < 10.0 && get.errors == 0).then_some(rate);
            for step in [1000, 1500, 2000, 3000, 4000, 6000, 8000].into_iter().filter(|&r| r > rate) {
                let t = load::reads(&api, &token, ids.clone(), step, Duration::from_secs(5)).await;
                // Served on schedule too: a rate the server cannot keep up with does not count.
                let under = t.latency_ms.p99 < 10.0 && t.errors == 0 && t.per_second >= 0.95 * f64::from(step);
                steps.push(t);
                if !under {
                    break;
                }
                highest_under_10ms = Some(step);
            }
            json!({"scenario": "reads", "get": get, "steps": steps, "highest_rate_p99_under_10ms": highest_under_10ms})
        }
        Command::Soak {
            service: Service { api, token },
            rate,
            minutes,
            sample_seconds,
            api_pid,
            worker_pid,
            temporal_db,
        } => {
            let pool = orders::db::pool(&settings)?;
            let client = orders::temporal::connect(&settings, "orders-bench").await?;
            let watched = soak::Watched { api_pid, worker_pid, temporal_db };
            let (duration, every) = (Duration::from_secs_f64(minutes * 60.0), Duration::from_secs(sample_seconds));
            soak::run(&pool, &client, &api, &token, rate, duration, every, watched).await?
        }
        Command::List { service: Service { api, token }, customer, count, concurrency, seconds } => {
            list(&settings, &api, &token, &customer, count, concurrency, seconds).await?
        }
    };
    let wall = wall.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu_before;
    result["generator"] = json!({"cpu_seconds": cpu, "wall_seconds": wall, "cpu_share_of_one_core": cpu / wall});
    println!("{result}");
    Ok(())
}

/// Waits until no order is between acceptance and `shipped`, so that a scenario
/// does not measure the tail of the one before.
async fn wait_for_quiet(pool: &PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let busy: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status IN ('pending', 'reserved', 'paid')")
                .fetch_one(pool)
                .await?;
        if busy == 0 {
            // The last ones' notifications go out right after their status change.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{busy} orders still in progress");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn end_to_end(
    settings: &Settings,
    api: &str,
    token: &str,
    n: usize,
    concurrency: usize,
    until: Until,
) -> anyhow::Result<Value> {
    let pool = orders::db::pool(settings)?;
    wait_for_quiet(&pool).await?;
    let http = orders::tls::client().build().unwrap_or_default();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let body = load::order_body("BENCH-1");
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let req = http.post(format!("{api}/orders")).bearer_auth(token).json(&body);
        tasks.spawn(async move {
            let r = req.send().await.ok().filter(|r| r.status() == 201);
            drop(permit);
            match r {
                Some(r) => r.json::<Value>().await.ok().and_then(|v| v["id"].as_str().map(str::to_owned)),
                None => None,
            }
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        ids.push(r?.context("an order was refused")?);
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM order_events WHERE order_id = ANY($1) AND key = $2")
            .bind(&uuids)
            .bind(until.key())
            .fetch_one(&pool)
            .await?;
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {done} of {n} orders {}", until.key());
        // Seldom: this count runs on the Postgres being measured, and the figures
        // come from the recorded timestamps, not from when the loop noticed.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (seconds, p50, p90, p99, max): (f64, f64, f64, f64, f64) = sqlx::query_as(
        "WITH l AS (
           SELECT o.created_at, e.at AS done_at, extract(epoch FROM e.at - o.created_at) * 1000 AS ms
             FROM orders o JOIN order_events e ON e.order_id = o.id AND e.key = $2
            WHERE o.id = ANY($1))
         SELECT extract(epoch FROM max(done_at) - min(created_at))::float8,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::float8,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::float8,
                max(ms)::float8 FROM l",
    )
    .bind(&uuids)
    .bind(until.key())
    .fetch_one(&pool)
    .await?;
    let client = orders::temporal::connect(settings, "orders-bench").await?;
    let (history_events, workflow_tasks) = load::history_shape(&client, &format!("order-{}", ids[0])).await?;
    Ok(json!({
        "scenario": "end_to_end", "until": until.key(), "orders": n, "concurrency": concurrency, "seconds": seconds,
        "per_second": n as f64 / seconds,
        format!("accepted_to_{}_ms", until.key()): {"p50": p50, "p90": p90, "p99": p99, "max": max},
        "history_events": history_events, "workflow_tasks": workflow_tasks,
    }))
}

async fn list(
    settings: &Settings,
    api: &str,
    token: &str,
    customer: &str,
    count: i64,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<Value> {
    let pool = orders::db::pool(settings)?;
    fill(&pool, customer, count).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&pool).await?;
    let page = load_pages(api, token, concurrency, Duration::from_secs(seconds)).await;
    let mut plans = serde_json::Map::new();
    for (name, sql) in [
        (
            "customer_page",
            "SELECT id, status, total, created_at FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 21",
        ),
        (
            "customer_status_page",
            "SELECT id, status, total, created_at FROM orders WHERE customer_id = $1 AND status = 'shipped' ORDER BY id DESC LIMIT 21",
        ),
    ] {
        let plan: Vec<(String,)> =
            sqlx::query_as(&format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}")).bind(customer).fetch_all(&pool).await?;
        plans.insert(name.into(), json!(plan.into_iter().map(|(l,)| l).collect::<Vec<_>>()));
    }
    Ok(json!({"scenario": "list", "rows": rows, "get_list": page, "explain": plans}))
}

async fn load_pages(api: &str, token: &str, concurrency: usize, duration: Duration) -> load::Throughput {
    let (http, url, token) =
        (orders::tls::client().build().unwrap_or_default(), format!("{api}/orders?limit=20"), token.to_owned());
    load::closed_loop("GET /orders?limit=20", concurrency, duration, move |_| {
        let req = http.get(&url).bearer_auth(&token);
        async move { req.send().await.map(|r| r.status() == 200).unwrap_or(false) }
    })
    .await
}

/// Synthetic delivered orders (no workflows) up to `count` rows: one customer
/// (the one paged) gets 2,000 of them, the rest spread over 10,000 others.
async fn fill(pool: &PgPool, customer: &str, count: i64) -> anyhow::Result<()> {
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(pool).await?;
    let missing = count - have;
    if missing <= 0 {
        return Ok(());
    }
    let address = r#"{"street":"1 Main St","city":"Springfield","state":"IL","zip_code":"62701","country":"US"}"#;
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, subtotal, tax, shipping, total, shipping_address,
                             billing_address, payment_method, payment_token, workflow_id, workflow_started_at,
                             created_at, updated_at)
         SELECT id, CASE WHEN g % 500 = 0 THEN $2 ELSE 'synthetic-' || (g % 10000) END,
                (ARRAY['delivered','shipped','failed','cancelled'])[1 + g % 4],
                19.99, 1.70, 9.99, 31.68, $3::jsonb, $3::jsonb, 'credit_card', 'tok_ok',
                'order-' || id, now(), now() - make_interval(secs => g), now()
           FROM (SELECT g, gen_random_uuid() AS id FROM generate_series(1, $1) AS g) s",
    )
    .bind(missing)
    .bind(customer)
    .bind(address)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE orders").execute(pool).await?;
    Ok(())
}
