//! Delivering the outbox: storefront webhooks (HMAC-signed) and customer email.
//!
//! Webhook request: `POST {ORDERS_WEBHOOK_URL}` with a JSON body
//! `{"id", "type", "order_id", "created_at", "data"}` and headers
//! `Webhook-Id` (the event id: the same on every retry, so receivers can
//! de-duplicate), `Webhook-Timestamp` (Unix seconds) and
//! `Webhook-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use super::PartyError;
use crate::config::Secret;

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

/// One outbox row, as delivered.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Notification {
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

/// Logs instead of sending: the default when no webhook URL (or mail server) is configured.
pub struct LogNotifier(pub Channel);

#[async_trait]
impl Notifier for LogNotifier {
    async fn deliver(&self, n: &Notification) -> Result<(), PartyError> {
        tracing::debug!(channel = self.0.as_str(), order_id = %n.order_id, kind = %n.kind, "notification (simulated)");
        Ok(())
    }
}

pub struct WebhookNotifier {
    http: reqwest::Client,
    url: String,
    secret: Secret,
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookNotifier {
    pub fn new(http: reqwest::Client, url: String, secret: Secret) -> Self {
        Self { http, url, secret }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn deliver(&self, n: &Notification) -> Result<(), PartyError> {
        let body = serde_json::to_vec(n).map_err(|e| PartyError::Permanent(e.to_string()))?;
        let timestamp = Utc::now().timestamp();
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", n.id.to_string())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&self.secret, timestamp, &body))
            .body(body)
            .send()
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

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let secret = Secret::new("whsec-0123456789abcdef0123456789abcdef");
        let a = signature(&secret, 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature(&secret, 1_700_000_001, b"{}"));
        assert_ne!(a, signature(&secret, 1_700_000_000, b"{ }"));
        assert_eq!(a, signature(&secret, 1_700_000_000, b"{}"));
    }
}
