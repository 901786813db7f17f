//! Delivering the timeline's events: storefront webhooks (HMAC-signed) and customer email.
//!
//! Webhook request, per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>), so receivers built on its libraries
//! (`standardwebhooks`, `svix`) verify it: `POST {ORDERS_WEBHOOK_URL}` with a
//! JSON body `{"id", "type", "order_id", "created_at", "data"}` and headers
//! `webhook-id` (the event id: the same on every retry, so receivers can
//! de-duplicate), `webhook-timestamp` (Unix seconds) and `webhook-signature:
//! v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one per key,
//! separated by spaces (two during a key rotation).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use super::PartyError;
use crate::config::SigningKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Webhook,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
        }
    }
}

/// One timeline event, as delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The event id.
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: Uuid,
    pub created_at: DateTime<Utc>,
    #[serde(rename = "data")]
    pub payload: Value,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn deliver(&self, n: &Notification) -> Result<(), PartyError>;
}

/// POSTs each notification to the storefront, signed per Standard Webhooks.
pub struct WebhookNotifier {
    http: reqwest::Client,
    url: String,
    keys: Vec<SigningKey>,
}

/// The `webhook-signature` header: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
/// for each key, separated by spaces.
pub fn signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    let sign = |key: &SigningKey| {
        // HMAC accepts keys of any length, so new_from_slice cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    };
    keys.iter().map(sign).collect::<Vec<_>>().join(" ")
}

impl WebhookNotifier {
    pub fn new(http: reqwest::Client, url: String, keys: Vec<SigningKey>) -> Self {
        Self { http, url, keys }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn deliver(&self, n: &Notification) -> Result<(), PartyError> {
        let body = serde_json::to_vec(n).map_err(|e| PartyError::Permanent(e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let id = n.id.to_string();
        let resp = super::send_traced(
            self.http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("webhook-signature", signature(&self.keys, &id, timestamp, &body))
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .body(body),
        )
        .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // A storefront that answers 4xx today may be fixed tomorrow: keep retrying with backoff.
        Err(PartyError::Transient(format!("webhook answered {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its libraries'
    /// test suites: this secret, id, timestamp and body sign to this value.
    #[test]
    fn the_signature_is_the_specifications_own_example() {
        let keys = SigningKey::parse_all("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn during_a_rotation_every_key_signs() {
        let keys =
            SigningKey::parse_all("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .unwrap();
        let sig = signature(&keys, "1", 1, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")) && parts[0] != parts[1]);
        assert!(SigningKey::parse_all("whsec_not base64!").is_err());
        assert!(SigningKey::parse_all("short").is_err());
        assert!(SigningKey::parse_all("").is_err());
    }
}
