//! The database's own checks agree with the Rust types that write the values:
//! every value the code can write is accepted, and nothing else.

use orders::db::payments;
use orders::domain::{OrderStatus, PaymentMethod, StopReason};
use sqlx::PgPool;

use crate::support::fresh_database;

/// Asks the check function `known` about each of `values` and about one value
/// no type has; returns what it got wrong.
async fn disagreements(pool: &PgPool, known: &str, values: &[&str]) -> Vec<String> {
    let mut wrong = Vec::new();
    for value in values {
        let accepted: bool =
            sqlx::query_scalar(&format!("SELECT {known}($1)")).bind(value).fetch_one(pool).await.unwrap();
        if !accepted {
            wrong.push(format!("{known} refuses {value:?}, which the code writes"));
        }
    }
    let accepted: bool = sqlx::query_scalar(&format!("SELECT {known}('no_such_value')")).fetch_one(pool).await.unwrap();
    if accepted {
        wrong.push(format!("{known} accepts a value no type has"));
    }
    let listed: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM regexp_matches(pg_get_functiondef('{known}(text)'::regprocedure), '''[a-z_]+''', 'g')"
    ))
    .fetch_one(pool)
    .await
    .unwrap();
    if listed != values.len() as i64 {
        wrong.push(format!("{known} lists {listed} values, the code has {}", values.len()));
    }
    wrong
}

#[tokio::test]
async fn value_checks_accept_exactly_what_the_types_write() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    let statuses: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
    let reasons: Vec<&str> = StopReason::ALL.iter().map(|r| r.as_str()).collect();
    let methods: Vec<&str> = PaymentMethod::ALL.iter().map(|m| m.as_str()).collect();
    let kinds: Vec<&str> = payments::Kind::ALL.iter().map(|k| k.as_str()).collect();
    let payment_statuses: Vec<&str> = payments::Status::ALL.iter().map(|s| s.as_str()).collect();
    let mut wrong = Vec::new();
    for (known, values) in [
        ("order_status_known", &statuses[..]),
        ("stop_reason_known", &reasons[..]),
        ("payment_method_known", &methods[..]),
        ("payment_kind_known", &kinds[..]),
        ("payment_status_known", &payment_statuses[..]),
        // Written as literals by `db::inventory`.
        ("reservation_state_known", &["held", "released", "consumed"][..]),
    ] {
        wrong.extend(disagreements(&pool, known, values).await);
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // And the checks call them: an unknown value is refused on every such column.
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, subtotal, tax, shipping, total, shipping_address, \
                             billing_address, payment_method, payment_token, workflow_id) \
         SELECT u, 'c', 'pending', 1, 0, 0, 1, '{}', '{}', 'paypal', 't', 'order-' || u FROM gen_random_uuid() u",
    )
    .execute(&pool)
    .await
    .unwrap();
    for column in ["status", "reason", "stop_reason", "payment_method"] {
        // (Fenced, so that a stop reason is refused for its value, not for the fence.)
        let err = sqlx::query(&format!("UPDATE orders SET {column} = 'no_such_value', stopped_at = now()"))
            .execute(&pool)
            .await
            .expect_err("an unknown value is refused");
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "{column}: {err}");
    }
}

/// Upgrading to "the timeline is the outbox" keeps what was delivered: a
/// notification delivered by email before stays delivered (its event is not
/// sent again), one still due stays due, and its webhook-id becomes its event id.
#[tokio::test]
async fn deliveries_recorded_in_the_old_outbox_carry_over_to_the_timeline() {
    use orders::activities::notifier::Channel;
    use orders::db::notifications;

    const OUTBOX_GOES: &str = "20261203000002_timeline_is_the_outbox.sql";
    let url = crate::support::empty_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    // The schema as it was before: every migration up to the one that drops the outbox.
    let before = std::env::temp_dir().join(format!("orders-migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&before).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let upgrade = names.iter().position(|n| n == OUTBOX_GOES).expect("the migration exists");
    for name in &names[..upgrade] {
        std::fs::copy(std::path::Path::new(dir).join(name), before.join(name)).unwrap();
    }
    sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(&pool).await.unwrap();
    std::fs::remove_dir_all(&before).unwrap();

    // An order with two events and their outbox rows, the first delivered by email.
    let id = uuid::Uuid::new_v4();
    sqlx::raw_sql(&format!(
        "INSERT INTO orders (id, customer_id, status, subtotal, tax, shipping, total, shipping_address,
                             billing_address, payment_method, payment_token, workflow_id)
         VALUES ('{id}', 'alice', 'reserved', 10, 0, 0, 10, '{{}}', '{{}}', 'credit_card', 'tok', 'order-{id}');
         INSERT INTO order_events (order_id, status, key, detail) VALUES
           ('{id}', 'pending', 'pending', 'order accepted'), ('{id}', 'reserved', 'reserved', 'stock reserved');
         INSERT INTO notifications (order_id, kind, event_key, payload)
           SELECT order_id, 'order.' || status, key, '{{}}' FROM order_events ORDER BY id;
         INSERT INTO notification_deliveries (notification_id, channel, status)
           SELECT id, 'email', 'delivered' FROM notifications WHERE event_key = 'pending';
         INSERT INTO notification_deliveries (notification_id, channel, status, last_error)
           SELECT id, 'webhook', 'failed', 'down' FROM notifications WHERE event_key = 'pending';"
    ))
    .execute(&pool)
    .await
    .unwrap();

    orders::db::migrate(&pool).await.unwrap();
    let order = orders::domain::OrderId(id);
    let events: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM order_events ORDER BY id").fetch_all(&pool).await.unwrap();
    let due = |channel| {
        let pool = pool.clone();
        async move {
            let due = notifications::undelivered(&pool, order, channel).await.unwrap();
            due.into_iter().map(|n| (n.id, n.kind)).collect::<Vec<_>>()
        }
    };
    assert_eq!(due(Channel::Email).await, [(events[1].0, "order.reserved".to_owned())], "the delivered one is not due");
    let webhook: Vec<_> = events.iter().map(|(id, status)| (*id, format!("order.{status}"))).collect();
    assert_eq!(due(Channel::Webhook).await, webhook, "a failed delivery is still due");
    let attempts: (String, i32, Option<String>) = sqlx::query_as(
        "SELECT status, attempts, last_error FROM event_deliveries WHERE event_id = $1 AND channel = 'webhook'",
    )
    .bind(events[0].0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, ("failed".to_owned(), 1, Some("down".to_owned())));
}
