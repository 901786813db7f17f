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
