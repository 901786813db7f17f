//! Our JSON body extractor: every way a body can be wrong becomes a problem
//! (415, 413, 400, 422 with a JSON pointer), never axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::validation::pointer_segment;

/// A JSON body parsed into `T`; the raw bytes are kept for the few callers
/// that hash the request (`document`).
pub struct JsonBody<T> {
    pub body: T,
    pub raw: Bytes,
}

impl<T> JsonBody<T> {
    /// The body as a JSON value. Parsed on demand: only idempotent requests need it.
    pub fn document(&self) -> Value {
        // `raw` already parsed into `T`, so it is valid JSON.
        serde_json::from_slice(&self.raw).unwrap_or_default()
    }
}

fn is_json(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Converts a serde path (`items[0].quantity`) into a JSON pointer (`/items/0/quantity`).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", pointer_segment(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", pointer_segment(variant))),
            Segment::Unknown => {}
        }
    }
    out
}

/// Strips serde's " at line L column C" and its Rust type names from a message.
fn clean(message: &str) -> String {
    let m = message.split(" at line ").next().unwrap_or(message);
    m.replace("invalid type: ", "wrong type: ")
}

/// Whether reading the body failed because it came too slowly (`ORDERS_BODY_READ_TIMEOUT`).
fn is_timeout(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else if is_timeout(&rejection) {
                ApiError::BodyTimeout
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        // Every body is an object: serde would also take a struct from an array
        // of its fields in order (`[...]`), which no client means.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                Ok(_) => ApiError::Validation(vec![crate::domain::FieldError {
                    pointer: String::new(),
                    message: "must be a JSON object".into(),
                }]),
                Err(e) => ApiError::MalformedJson(format!("the body is not valid JSON: {e}")),
            });
        }
        // Straight into `T` (one parse): unlike a `Value`, which silently keeps the last
        // of two duplicate keys, the typed parse rejects them.
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let body = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            if e.inner().is_syntax() || e.inner().is_eof() {
                return ApiError::MalformedJson(format!("the body is not valid JSON: {}", e.inner()));
            }
            let at = pointer(e.path());
            let message = clean(&e.inner().to_string());
            ApiError::Validation(vec![crate::domain::FieldError { pointer: at, message }])
        })?;
        // Trailing garbage after the value is malformed too.
        de.end().map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
        Ok(JsonBody { body, raw: bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only deserialisation errors are under test
    struct Item {
        quantity: i64,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Item>,
    }

    #[test]
    fn type_errors_point_at_the_field() {
        let doc = serde_json::json!({"items": [{"quantity": 1}, {"quantity": "two"}]});
        let err = serde_path_to_error::deserialize::<_, Body>(&doc).unwrap_err();
        assert_eq!(pointer(err.path()), "/items/1/quantity");
        assert!(clean(&err.inner().to_string()).starts_with("wrong type: string \"two\""));
    }
}
