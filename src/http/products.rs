//! The catalog, as storefronts show it.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::state::AppState;
use crate::db::catalog::{self, Product};

/// Active products with their price and units available to order. Public.
#[utoipa::path(get, path = "/products", operation_id = "listProducts", tag = "catalog",
    responses((status = 200, description = "The catalog with prices and stock", body = [Product])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(catalog::list_active(&state.pool).await?))
}
