//! The I/O of an order: Postgres, the payment gateway, the carrier. Each
//! activity is safe to retry: it is keyed by order id and re-reads what an
//! earlier attempt recorded before doing anything.

pub mod carrier;
pub mod mailer;
pub mod metrics;
pub mod notifier;
pub mod order;
pub mod payment_gateway;
pub mod users;

pub use carrier::{Carrier, HttpCarrier, SimulatedCarrier, SimulatedCarrierEvents};
pub use metrics::OrderMetrics;
pub use notifier::{Channel, Notifier, WebhookNotifier};
pub use order::OrderActivities;
pub use payment_gateway::{HttpPaymentGateway, PaymentGateway, SimulatedPaymentGateway};

use std::sync::Arc;

use crate::config::{Integration, Settings};

/// The failure type names the activities raise. The workflow's retry policies
/// list the non-retryable ones by these constants, never by their spelling.
pub mod failure {
    /// The charge failed for good (refused, or no answer in the gateway's calls).
    pub const PAYMENT_FAILED: &str = "PaymentFailed";
    /// The booking failed for good.
    pub const SHIPMENT_REJECTED: &str = "ShipmentRejected";
    pub const REFUND_FAILED: &str = "RefundFailed";
    pub const SHIPMENT_CANCEL_FAILED: &str = "ShipmentCancelFailed";
    pub const NOTIFICATION_FAILED: &str = "NotificationFailed";
    pub const ORDER_NOT_FOUND: &str = "OrderNotFound";
    /// Appended to a type name for the retryable failures of the same step.
    pub const TRANSIENT_SUFFIX: &str = "Transient";
}

/// An external party's answer that is not a business outcome.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// Worth retrying: network trouble, timeouts, 5xx, 429.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: the request itself was refused.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl PartyError {
    /// Classifies an HTTP exchange the way both HTTP integrations need it.
    pub(crate) fn from_status(status: reqwest::StatusCode, body: &str) -> PartyError {
        let msg = format!("HTTP {status}: {}", body.chars().take(200).collect::<String>());
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            PartyError::Transient(msg)
        } else {
            PartyError::Permanent(msg)
        }
    }
}

/// Sends a call to a party in a client span of its own (OpenTelemetry HTTP
/// client conventions), carrying that span's W3C `traceparent`, so a party that
/// traces joins the order's trace and the trace shows how long the party took.
pub(crate) async fn send_traced(request: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (client, request) = request.build_split();
    let mut request = request?;
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http.client",
        otel.name = %method,
        otel.kind = "client",
        http.request.method = %method,
        server.address = request.url().host_str().unwrap_or_default(),
        url.path = request.url().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut opentelemetry_http::HeaderInjector(request.headers_mut()))
    });
    let response = client.execute(request).instrument(span.clone()).await?;
    span.record("http.response.status_code", response.status().as_u16());
    Ok(response)
}

impl From<reqwest::Error> for PartyError {
    fn from(e: reqwest::Error) -> Self {
        // Connection, timeout and body errors: the request may not have arrived; the
        // idempotency key makes the retry safe either way.
        PartyError::Transient(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("ORDERS_SMTP_URL / ORDERS_EMAIL_FROM: {0}")]
    Smtp(String),
}

/// The SMTP mailer, when one is configured.
pub fn mailer(settings: &Settings) -> Result<Option<Arc<mailer::SmtpMailer>>, SetupError> {
    match &settings.smtp {
        Some(smtp) => {
            Ok(Some(Arc::new(mailer::SmtpMailer::new(smtp.url.expose(), &smtp.from).map_err(SetupError::Smtp)?)))
        }
        None => Ok(None),
    }
}

/// Builds the activities with the integrations chosen by configuration.
pub fn from_settings(
    settings: &Settings,
    pool: sqlx::PgPool,
    metrics: OrderMetrics,
) -> Result<OrderActivities, SetupError> {
    let http = crate::tls::client().timeout(settings.http_client_timeout).build()?;
    let http_for_webhooks = http.clone();
    let payments: Arc<dyn PaymentGateway> = match &settings.payment_gateway {
        Integration::Simulated => Arc::new(SimulatedPaymentGateway::default()),
        Integration::Http { base_url } => Arc::new(HttpPaymentGateway::new(http.clone(), base_url.clone())),
    };
    let carrier: Arc<dyn Carrier> = match &settings.carrier {
        Integration::Simulated => Arc::new(SimulatedCarrier),
        Integration::Http { base_url } => Arc::new(HttpCarrier::new(http, base_url.clone())),
    };
    let simulated_carrier_events = match (&settings.carrier, settings.simulated_carrier_events) {
        (Integration::Simulated, Some(r)) => {
            Some(SimulatedCarrierEvents { in_transit_after: r.in_transit_after, delivered_after: r.delivered_after })
        }
        _ => None,
    };
    let webhook = settings.webhook.as_ref().map(|w| -> Arc<dyn Notifier> {
        Arc::new(WebhookNotifier::new(http_for_webhooks, w.url.clone(), w.keys.clone()))
    });
    let email = mailer(settings)?
        .map(|mailer| -> Arc<dyn Notifier> { Arc::new(mailer::EmailNotifier { mailer, pool: pool.clone() }) });
    Ok(OrderActivities { pool, payments, carrier, simulated_carrier_events, webhook, email, metrics })
}
