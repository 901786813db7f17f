//! The OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`, offline assets).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::state::AppState;
use super::{error, health, orders, products, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "orders", description = "Order orchestration over Temporal. Money amounts are decimal strings such as \"12.34\"."),
    paths(orders::create, orders::list::list, orders::get, orders::events::stream, orders::actions::cancel, orders::actions::amend_address,
        orders::actions::review, orders::actions::shipment_event, products::list, users::create, users::verify, users::get, health::healthz, health::readyz),
    components(schemas(error::Problem, error::PriceChange, crate::domain::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "orders"), (name = "catalog"), (name = "users"), (name = "health"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub fn routes() -> axum::Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()).into()
}

/// The document as committed in `openapi/openapi.json` (pretty JSON).
pub fn document() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_pretty_json()
}
