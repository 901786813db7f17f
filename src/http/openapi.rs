//! The OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`, offline assets).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::error::{PROBLEM_JSON, Problem};
use super::state::AppState;
use super::{error, health, orders, products, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "orders", description = "Order orchestration over Temporal. Money amounts are decimal strings such as \"12.34\"."),
    servers((url = "/", description = "The API that serves this document")),
    paths(orders::create, orders::list::list, orders::get, orders::events::stream, orders::workflow::get, orders::actions::cancel, orders::actions::amend_address,
        orders::actions::review, orders::actions::shipment_event, products::list, users::create, users::verify, users::get, super::auth::whoami, health::healthz, health::readyz),
    components(schemas(error::Problem, error::PriceChange, crate::domain::FieldError, WebhookEvent)),
    modifiers(&BearerAuth, &CommonErrors, &Webhooks),
    tags((name = "orders"), (name = "catalog"), (name = "users"), (name = "health"))
)]
pub struct ApiDoc;

struct BearerAuth;

/// The body of every storefront webhook. Signed per Standard Webhooks: see the
/// `webhook-*` headers of each entry under `webhooks`, and the README.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)] // documentation only: `activities::notifier::Notification` is what is sent
struct WebhookEvent {
    /// The event id, also sent as `webhook-id`: the same on every retry; de-duplicate on it.
    #[schema(example = 42)]
    id: i64,
    /// `order.<status>` for a status change; `order.exception`, `order.address_changed`,
    /// `order.refund_refused` or `order.cancellation_refused` otherwise.
    #[serde(rename = "type")]
    #[schema(example = "order.paid")]
    kind: String,
    #[schema(value_type = String, format = Uuid)]
    order_id: uuid::Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
    data: WebhookEventData,
}

#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code)]
struct WebhookEventData {
    #[schema(value_type = String, format = Uuid)]
    order_id: uuid::Uuid,
    /// The timeline event's status (the part of `type` after `order.`).
    #[schema(example = "paid")]
    status: String,
    #[schema(example = "payment captured: ch_123")]
    detail: Option<String>,
}

/// The OpenAPI 3.1 `webhooks` section: one entry per event type the storefront
/// receives, written as JSON (shorter than utoipa's builders) and read into its `Paths`.
struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use serde_json::json;
        let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}});
        let parameters = json!([
            header("webhook-id", "The event id (as in the body): the same on every retry"),
            header("webhook-timestamp", "Unix seconds when this attempt was sent; refuse stale ones"),
            header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256(key, \"{webhook-id}.{webhook-timestamp}.{body}\")>` per key, space-separated (Standard Webhooks)"
            ),
        ]);
        let events = crate::domain::OrderStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(crate::db::orders::OTHER_EVENTS)
            .map(|event| {
                let operation = json!({
                    "summary": format!("order.{event}"),
                    "description": format!("POSTed to ORDERS_WEBHOOK_URL when an order's timeline records `{event}`."),
                    "parameters": parameters,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
                    "responses": {"2XX": {"description": "Acknowledged. Any other answer is retried with backoff (1 s doubling to 10 min, for up to a day)."}},
                });
                (format!("order.{event}"), json!({"post": operation}))
            })
            .collect::<serde_json::Map<_, _>>();
        // The input is fixed, so this fails in the test of the document or never.
        let webhooks: utoipa::openapi::Paths =
            serde_json::from_value(serde_json::Value::Object(events)).expect("the webhook entries are path items");
        doc.webhooks = Some(webhooks);
    }
}

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The errors any operation can answer with, added to every operation that
/// does not describe them itself, so that clients (and the contract fuzzing in
/// `scripts/test`) see every status the API really sends:
/// 429 (rate limit), 500, 503 (timeout, overload, dependency down) everywhere;
/// 401/403 where a token is required; 404 where the path names a resource;
/// 400/408/413/415/422 where a JSON body is read, 400 where a query string is.
struct CommonErrors;

const COMMON: [(&str, &str, &str); 11] = [
    ("400", "BadRequest", "Malformed JSON, query string or header"),
    ("401", "Unauthorized", "Missing or invalid bearer token (`WWW-Authenticate: Bearer`)"),
    ("403", "Forbidden", "The token's role may not do this"),
    ("404", "NotFound", "No such resource, or not the caller's"),
    ("408", "RequestTimeout", "The body did not arrive within the configured read timeout; send it again"),
    ("413", "PayloadTooLarge", "The body is over the configured limit"),
    ("415", "UnsupportedMediaType", "The body is not sent as application/json"),
    ("422", "ValidationFailed", "Invalid fields, each named in `errors` by JSON pointer"),
    ("429", "RateLimited", "Over the caller's rate limit; retry after `Retry-After` seconds"),
    ("500", "InternalError", "An unexpected error; the details are logged under the request id"),
    ("503", "Unavailable", "Timed out, overloaded, or a dependency is down; retry later"),
];

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (status, name, description) in COMMON {
            let mut response = ResponseBuilder::new().description(description).content(
                PROBLEM_JSON,
                ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).build(),
            );
            if matches!(status, "429" | "503") {
                let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).build();
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new().schema(Some(seconds)).description(Some("seconds")).build(),
                );
            }
            if status == "429" {
                let text = || ObjectBuilder::new().schema_type(Type::String).build();
                response = response
                    .header(
                        "RateLimit-Policy",
                        HeaderBuilder::new()
                            .schema(Some(text()))
                            .description(Some(
                                "draft-ietf-httpapi-ratelimit-headers: `\"default\";q=<requests>;w=<seconds>`",
                            ))
                            .build(),
                    )
                    .header(
                        "RateLimit",
                        HeaderBuilder::new()
                            .schema(Some(text()))
                            .description(Some("`\"default\";r=<left>;t=<seconds until the quota is full again>`"))
                            .build(),
                    );
            }
            components.responses.insert(name.to_owned(), RefOr::T(response.build()));
        }
        for item in doc.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete].into_iter().flatten()
            {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = op.request_body.is_some();
                let has_query = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
                let names_resource = op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
                for (status, name, _) in COMMON {
                    let applies = match status {
                        "401" | "403" => secured,
                        "404" => names_resource,
                        // A query string serde cannot read at all (e.g. a repeated key) is a 400.
                        "400" => has_body || has_query,
                        "408" | "413" | "415" | "422" => has_body,
                        _ => true,
                    };
                    if applies {
                        let reference: RefOr<Response> = RefOr::Ref(Ref::from_response_name(name));
                        op.responses.responses.entry(status.to_owned()).or_insert(reference);
                    }
                }
            }
        }
    }
}

pub fn routes() -> axum::Router<AppState> {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()).into()
}

/// The document as committed in `openapi/openapi.json` (pretty JSON).
pub fn document() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_pretty_json()
}
