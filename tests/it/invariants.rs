//! What must hold of every order once the load is over, whatever faults or
//! races it met: the fault harness (`faults.rs`) and the race harness
//! (`races.rs`) check these after every round and report each violation.

use std::time::{Duration, Instant};

use orders::domain::{OrderStatus, StopReason};
use orders::workflows::{OrderOutcome, OrderWorkflow};
use sqlx::PgPool;
use temporalio_client::Client;
use temporalio_client::errors::WorkflowGetResultError;
use uuid::Uuid;

/// A mail server for a stack whose records `check_records` checks: the email
/// channel is then configured, so its deliveries are tracked and checked.
pub(crate) async fn mail_sink_env() -> (&'static str, String) {
    let (_sink, url) = crate::support::SmtpSink::start().await;
    ("ORDERS_SMTP_URL", url)
}

/// Money, stock, carrier bookings and notifications, for every order in `db`.
/// `loaded` is every SKU the orders used and the units it started with.
pub(crate) async fn check_records(db: &PgPool, loaded: &[(&str, i32)]) -> Vec<String> {
    let mut v = Vec::new();
    // Money: one successful charge for each order the carrier took and none
    // refunded; a refund for exactly the failed or cancelled orders that were
    // charged, and only for charges captured before the order stopped (a
    // cancel recorded before the charge stops it: no charge-then-refund).
    let money: Vec<(Uuid, OrderStatus, i64, i64, bool, bool)> = sqlx::query_as(
        "SELECT o.id, o.status,
                count(*) FILTER (WHERE p.kind = 'charge' AND p.status = 'succeeded'),
                count(*) FILTER (WHERE p.kind = 'refund' AND p.status = 'succeeded'),
                EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.status = 'paid'),
                EXISTS (SELECT 1 FROM inventory_reservations r WHERE r.order_id = o.id AND r.state = 'consumed')
           FROM orders o LEFT JOIN payments p ON p.order_id = o.id GROUP BY o.id, o.status",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, status, charged, refunded, paid, left) in money {
        let ok = match status {
            OrderStatus::Delivered | OrderStatus::DeliveryOverdue | OrderStatus::InTransit => {
                charged == 1 && refunded == 0
            }
            OrderStatus::Failed | OrderStatus::Cancelled => charged <= 1 && refunded == charged,
            _ => false,
        };
        if !ok {
            v.push(format!("order {id} is {} with {charged} charges and {refunded} refunds", status.as_str()));
        }
        if refunded > 0 && !paid {
            v.push(format!("order {id} was charged and refunded, but never marked paid: charged after it stopped"));
        }
        if left && refunded > 0 {
            v.push(format!("order {id}: refunded, but its parcel left with the carrier"));
        }
        if left && !matches!(status, OrderStatus::InTransit | OrderStatus::Delivered | OrderStatus::DeliveryOverdue) {
            v.push(format!("order {id} is {}, but its parcel left with the carrier", status.as_str()));
        }
    }
    // Records that lie: an order that ended shows no payment still `pending`
    // (a charge whose outcome was never settled, or a refund never finished).
    let pending: Vec<(Uuid, OrderStatus, String)> = sqlx::query_as(
        "SELECT o.id, o.status, p.kind FROM orders o JOIN payments p ON p.order_id = o.id WHERE p.status = 'pending'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    for (id, status, kind) in pending.into_iter().filter(|(_, status, _)| status.is_terminal()) {
        v.push(format!("order {id} is {} with its {kind} still pending", status.as_str()));
    }
    // Stock: what was loaded is available, reserved or shipped; reserved is
    // exactly what reservations hold, shipped what the carrier took, and no
    // failed or cancelled order holds any.
    let skus: Vec<&str> = loaded.iter().map(|(sku, _)| *sku).collect();
    let stock: Vec<(String, i32, i32, i64, i64)> = sqlx::query_as(
        "SELECT i.sku, i.available, i.reserved,
                COALESCE((SELECT sum(r.quantity) FROM inventory_reservations r
                           WHERE r.sku = i.sku AND r.state = 'held'), 0)::bigint,
                COALESCE((SELECT sum(r.quantity) FROM inventory_reservations r
                           WHERE r.sku = i.sku AND r.state = 'consumed'), 0)::bigint
           FROM inventory i WHERE i.sku = ANY($1)",
    )
    .bind(&skus)
    .fetch_all(db)
    .await
    .unwrap();
    for (sku, available, reserved, held, shipped) in stock {
        let units = loaded.iter().find(|(s, _)| *s == sku).map_or(0, |(_, n)| *n);
        if i64::from(available) + i64::from(reserved) + shipped != i64::from(units) || i64::from(reserved) != held {
            v.push(format!(
                "{sku}: {available} available + {reserved} reserved + {shipped} shipped of {units} loaded; \
                 reservations hold {held}"
            ));
        }
    }
    let holding: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM inventory_reservations r JOIN orders o ON o.id = r.order_id
          WHERE o.status IN ('failed', 'cancelled') AND r.state <> 'released'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    if holding != 0 {
        v.push(format!("{holding} reservations still held by failed or cancelled orders"));
    }
    // Carrier: no failed or cancelled order keeps a booking.
    let booked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM shipments s JOIN orders o ON o.id = s.order_id
          WHERE o.status IN ('failed', 'cancelled') AND s.cancelled_at IS NULL",
    )
    .fetch_one(db)
    .await
    .unwrap();
    if booked != 0 {
        v.push(format!("{booked} carrier bookings kept by failed or cancelled orders"));
    }
    // Notifications: one per timeline event, delivered once by email (the
    // stacks configure a mail server, `mail_sink_env`; an unconfigured channel
    // is not tracked, and webhooks have their own tests). Delivery runs beside
    // the order's path, so give it a moment to finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (events, undelivered): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM order_events),
                    (SELECT count(*) FROM order_events e
                      WHERE NOT EXISTS (SELECT 1 FROM event_deliveries d
                                         WHERE d.event_id = e.id AND d.channel = 'email'
                                           AND d.status = 'delivered'))",
        )
        .fetch_one(db)
        .await
        .unwrap();
        if undelivered == 0 {
            break;
        }
        if Instant::now() > deadline {
            v.push(format!("{events} timeline events, {undelivered} not delivered by email"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    v
}

/// The workflow's result and the read model agree on every order's end: the
/// status and reason its workflow returned are the ones `GET /orders/{id}` shows.
pub(crate) async fn check_workflows_agree(db: &PgPool, temporal: &Client) -> Vec<String> {
    let mut v = Vec::new();
    let ends: Vec<(Uuid, OrderStatus, Option<StopReason>)> =
        sqlx::query_as("SELECT id, status, reason FROM orders ORDER BY id").fetch_all(db).await.unwrap();
    for (id, status, reason) in ends {
        if !status.is_terminal() {
            v.push(format!("order {id} has not ended: {}", status.as_str()));
            continue;
        }
        let handle = temporal.get_workflow_handle::<OrderWorkflow>(format!("order-{id}"));
        let result = tokio::time::timeout(Duration::from_secs(60), handle.get_result(Default::default())).await;
        let agrees = match &result {
            Ok(Ok(OrderOutcome { status: s, reason: r, .. })) => (*s, *r) == (status, reason),
            // Cancelled in Temporal, and compensated as such.
            Ok(Err(WorkflowGetResultError::Cancelled { .. })) => {
                (status, reason) == (OrderStatus::Cancelled, Some(StopReason::WorkflowCancelled))
            }
            _ => false,
        };
        if !agrees {
            let says = match result {
                Ok(Ok(o)) => format!("{:?} ({:?})", o.status, o.reason),
                Ok(Err(e)) => format!("{e}"),
                Err(_) => "no result within 60 s".to_owned(),
            };
            v.push(format!("order {id}: the read model says {} ({reason:?}), its workflow {says}", status.as_str()));
        }
    }
    v
}
