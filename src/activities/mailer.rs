//! Email over SMTP (lettre), for order notifications and account emails.

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;

use super::PartyError;
use super::notifier::{Notification, Notifier};

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// `url`: `smtp://host:port` (plain), `smtp://host?tls=required` (STARTTLS) or
    /// `smtps://user:password@host:465`.
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| e.to_string())?.build();
        let from = from.parse().map_err(|e| format!("{e}"))?;
        Ok(Self { transport, from })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), PartyError> {
        let to: Mailbox = to.parse().map_err(|e| PartyError::Permanent(format!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| PartyError::Permanent(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(PartyError::Permanent(e.to_string())),
            Err(e) => Err(PartyError::Transient(e.to_string())),
        }
    }
}

/// Order notifications by email to the customer's account address.
pub struct EmailNotifier {
    pub mailer: std::sync::Arc<SmtpMailer>,
    pub pool: PgPool,
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn deliver(&self, n: &Notification) -> Result<(), PartyError> {
        let to: Option<(String,)> =
            sqlx::query_as("SELECT u.email FROM orders o JOIN users u ON u.id::text = o.customer_id WHERE o.id = $1")
                .bind(n.order_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| PartyError::Transient(e.to_string()))?;
        let Some((to,)) = to else {
            // Customers without an account address get webhooks only.
            tracing::debug!(order_id = %n.order_id, "no email address for the customer");
            return Ok(());
        };
        let status = n.kind.trim_start_matches("order.");
        let short = n.order_id.to_string();
        let subject = format!("Your order {}: {}", &short[short.len() - 8..], status.replace('_', " "));
        let detail = n.payload.get("detail").and_then(|d| d.as_str()).unwrap_or("");
        let body = format!("Order {}\nStatus: {status}\n{detail}\n", n.order_id);
        self.mailer.send(&to, &subject, body).await
    }
}
