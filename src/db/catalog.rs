//! The product catalog with stock on hand.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Product {
    #[schema(example = "WIDGET-1")]
    pub sku: String,
    #[schema(example = "Blue widget")]
    pub name: String,
    #[schema(value_type = String, example = "19.99")]
    pub unit_price: Decimal,
    pub active: bool,
    /// Units that can still be ordered.
    #[schema(example = 120)]
    pub available: i32,
}

/// A product's columns (in `Product`'s order) and where they come from, as
/// literals for `concat!`: `orders::lookup_for_create` reads a POST's products with them.
macro_rules! product_columns {
    () => {
        "p.sku, p.name, p.unit_price, p.active, COALESCE(i.available, 0) AS available"
    };
}
macro_rules! products_from {
    () => {
        "FROM products p LEFT JOIN inventory i USING (sku)"
    };
}
pub(super) use {product_columns, products_from};

#[tracing::instrument(name = "db.catalog.list_active", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn list_active(pool: &PgPool) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", product_columns!(), " ", products_from!(), " WHERE p.active ORDER BY p.sku"))
        .fetch_all(pool)
        .await
}

/// Adds or updates a product and sets its stock (for the demo catalog and tests).
#[tracing::instrument(name = "db.catalog.upsert", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
pub async fn upsert(
    pool: &PgPool,
    sku: &str,
    name: &str,
    unit_price: Decimal,
    available: i32,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO products (sku, name, unit_price) VALUES ($1, $2, $3) \
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price, active = TRUE",
    )
    .bind(sku)
    .bind(name)
    .bind(unit_price)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO inventory (sku, available) VALUES ($1, $2) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, updated_at = now()",
    )
    .bind(sku)
    .bind(available)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
