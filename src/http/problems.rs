//! `GET /problems/{name}`: a short page per problem type. Every problem's `type`
//! is a relative URI (`/problems/busy`), which resolves against the API's own
//! address to the page that says what it means and what to do, so a developer
//! who follows it lands somewhere useful instead of nowhere.

use axum::extract::Path;
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// A problem type: its name (the last segment of `type`), its title, and what
/// a caller should make of it. Every `ApiError` answers with one of these (its
/// title and status as listed here: a unit test in `error` checks each).
pub struct ProblemType {
    pub name: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub explanation: &'static str,
}

pub const TYPES: [ProblemType; 17] = [
    t(
        "validation",
        "Request is invalid",
        422,
        "One or more fields are invalid. `errors` lists each one: a JSON pointer into the request body (or the query) and a message. Fix those fields and send again.",
    ),
    t(
        "malformed-json",
        "Malformed JSON",
        400,
        "The body is not JSON, or not a JSON object. `detail` says where parsing stopped.",
    ),
    t(
        "bad-request",
        "Bad request",
        400,
        "A header or query parameter cannot be read (for example an Idempotency-Key that is not 1-255 visible ASCII characters). `detail` says which.",
    ),
    t("unsupported-media-type", "Unsupported media type", 415, "Send the body as `application/json`."),
    t(
        "payload-too-large",
        "Payload too large",
        413,
        "The body is over the limit (64 KiB by default). An order has at most 50 lines.",
    ),
    t(
        "request-timeout",
        "Request timeout",
        408,
        "The body did not arrive within the body read timeout; nothing was done. Send it again.",
    ),
    t(
        "unauthorized",
        "Unauthorized",
        401,
        "Send a valid bearer token (`Authorization: Bearer <JWT>`): signed with the configured key, with `sub`, `role` and `exp`, not expired.",
    ),
    t(
        "forbidden",
        "Forbidden",
        403,
        "The token's role may not use this operation (customers act on their own orders, admins review, carriers report shipments).",
    ),
    t(
        "not-found",
        "Not found",
        404,
        "No such resource, or not one this caller may see: another customer's order is not found for you.",
    ),
    t(
        "method-not-allowed",
        "Method not allowed",
        405,
        "This path exists but does not accept that method; see the OpenAPI document at /openapi.json.",
    ),
    t(
        "price-changed",
        "Price changed",
        409,
        "A `unit_price` sent is not the catalog's price now. `changes` lists each line with the current price: show it to the customer and send again (without unit_price, or with the new one).",
    ),
    t(
        "idempotency-key-reused",
        "Idempotency key reused",
        422,
        "This Idempotency-Key was used before with another request body. A retry must send the same body; a new order needs a new key.",
    ),
    t(
        "order-state",
        "Not allowed in the order's state",
        409,
        "The order (or account) does not admit this action now: it moved on, or a decision recorded first won (a carrier's pickup before a cancel, a rejection before an approval). `detail` says which. Read the order to see its state.",
    ),
    t(
        "busy",
        "Busy",
        409,
        "Another change to this order or account was in progress (a payment or booking call, or another request) for longer than the API waits. Nothing was done: retry after `Retry-After`.",
    ),
    t(
        "rate-limited",
        "Too many requests",
        429,
        "This caller sent more than its rate limit. Retry after `Retry-After` seconds.",
    ),
    t(
        "unavailable",
        "Service unavailable",
        503,
        "The API is overloaded, a request took too long, or Postgres or Temporal cannot be reached. Retry after `Retry-After` (with the same Idempotency-Key for a POST /orders).",
    ),
    t(
        "internal",
        "Internal error",
        500,
        "An unexpected error. Nothing is partially written; the `instance` (the request id) finds the log line. Please report it.",
    ),
];

const fn t(name: &'static str, title: &'static str, status: u16, explanation: &'static str) -> ProblemType {
    ProblemType { name, title, status, explanation }
}

/// The problem type named `name` (the part after `/problems/`).
pub fn find(name: &str) -> Option<&'static ProblemType> {
    TYPES.iter().find(|p| p.name == name)
}

pub async fn page(Path(name): Path<String>) -> Result<Response, ApiError> {
    let p = find(&name).ok_or(ApiError::NotFound)?;
    // The texts are ours and contain no markup but backquotes, rendered as code.
    let explanation = html_escape(p.explanation);
    let explanation = explanation.split('`').enumerate().fold(String::new(), |mut out, (i, part)| {
        out.push_str(&if i % 2 == 1 { format!("<code>{part}</code>") } else { part.to_owned() });
        out
    });
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>HTTP {status} &middot; <code>type: /problems/{name}</code></p><p>{explanation}</p>\
         <p>Every problem is <code>application/problem+json</code> (RFC 9457); its <code>instance</code> is the \
         request id. The API is described at <a href=\"/docs\">/docs</a>.</p></body></html>",
        title = html_escape(p.title),
        status = p.status,
        name = p.name,
    );
    Ok(Html(body).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
