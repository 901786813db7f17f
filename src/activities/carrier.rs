//! Booking the parcel with a carrier, keyed by our idempotency key.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::time::Duration;

use sqlx::PgPool;
use temporalio_client::Client;

use super::PartyError;
use super::metrics::OrderMetrics;
use crate::db::decisions::{self, CarrierReport};
use crate::domain::{Address, OrderId, ShipmentEvent, ShipmentEventKind};
use crate::temporal::tell_decided;
use crate::workflows::Decision;

#[derive(Debug, Clone, Serialize)]
pub struct ShipmentRequest {
    pub idempotency_key: String,
    pub order_id: String,
    pub address: Address,
    /// (sku, quantity) per line.
    pub parcels: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Booking {
    pub carrier: String,
    pub tracking_number: String,
}

#[async_trait]
pub trait Carrier: Send + Sync {
    async fn book(&self, req: &ShipmentRequest) -> Result<Booking, PartyError>;
    /// Cancels a booking before pickup. Cancelling an already cancelled booking succeeds.
    async fn cancel(&self, idempotency_key: &str, tracking_number: &str) -> Result<(), PartyError>;
}

/// Deterministic carrier: the tracking number derives from the idempotency key;
/// ZIP code 00000 is an address it does not serve (to exercise compensation).
pub struct SimulatedCarrier;

impl SimulatedCarrier {
    pub const UNSERVED_ZIP: &'static str = "00000";
}

#[async_trait]
impl Carrier for SimulatedCarrier {
    async fn book(&self, req: &ShipmentRequest) -> Result<Booking, PartyError> {
        if req.address.zip_code == Self::UNSERVED_ZIP {
            return Err(PartyError::Permanent(format!("address not served: ZIP {}", req.address.zip_code)));
        }
        let digest = Sha256::digest(req.idempotency_key.as_bytes());
        let digits: String = digest.iter().take(6).map(|b| format!("{:02}", b % 100)).collect();
        Ok(Booking { carrier: "simulated".into(), tracking_number: format!("SIM{digits}") })
    }

    async fn cancel(&self, _idempotency_key: &str, _tracking_number: &str) -> Result<(), PartyError> {
        Ok(())
    }
}

/// A carrier API over HTTP: `POST {base}/shipments` with an `Idempotency-Key`
/// header; 2xx `{"carrier": .., "tracking_number": ..}` is a booking.
/// `POST {base}/shipments/{tracking}/cancel` cancels one; 2xx or 404 means it is not booked.
pub struct HttpCarrier {
    http: reqwest::Client,
    base_url: String,
}

impl HttpCarrier {
    pub fn new(http: reqwest::Client, base_url: String) -> Self {
        Self { http, base_url }
    }
}

#[async_trait]
impl Carrier for HttpCarrier {
    async fn book(&self, req: &ShipmentRequest) -> Result<Booking, PartyError> {
        let resp = super::send_traced(
            self.http
                .post(format!("{}/shipments", self.base_url))
                .header("Idempotency-Key", &req.idempotency_key)
                .json(req),
        )
        .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status.is_success() {
            serde_json::from_str(&text).map_err(|e| PartyError::Transient(format!("unreadable booking: {e}")))
        } else {
            Err(PartyError::from_status(status, &text))
        }
    }

    async fn cancel(&self, idempotency_key: &str, tracking_number: &str) -> Result<(), PartyError> {
        let resp = super::send_traced(
            self.http
                .post(format!("{}/shipments/{tracking_number}/cancel", self.base_url))
                .header("Idempotency-Key", idempotency_key),
        )
        .await?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(PartyError::from_status(status, &resp.text().await.unwrap_or_default()))
        }
    }
}

/// For demo stacks: after a simulated booking, report pickup and delivery after
/// fixed delays, as a carrier's webhook would: recorded in Postgres like the
/// API records a carrier's report (so a cancel recorded first wins), then told
/// to the workflow. In-process and best-effort: a worker restart forgets
/// pending reports (the order then ends `delivery_overdue` at its deadline).
#[derive(Debug, Clone, Copy)]
pub struct SimulatedCarrierEvents {
    pub in_transit_after: Duration,
    pub delivered_after: Duration,
}

/// How long a simulated report waits for the order's row lock.
const REPORT_LOCK_WAIT: Duration = Duration::from_secs(10);

impl SimulatedCarrierEvents {
    pub fn schedule(&self, pool: PgPool, client: Client, metrics: OrderMetrics, id: OrderId) {
        let plan = *self;
        tokio::spawn(async move {
            for (after, event) in [
                (plan.in_transit_after, ShipmentEventKind::InTransit),
                (plan.delivered_after, ShipmentEventKind::Delivered),
            ] {
                tokio::time::sleep(after).await;
                let at = chrono::Utc::now().to_rfc3339();
                let detail = "simulated carrier";
                match decisions::carrier_report(&pool, REPORT_LOCK_WAIT, id, event, &at, detail).await {
                    Ok(CarrierReport::Recorded { seq, status, moved }) => {
                        if moved && status.is_terminal() {
                            metrics.finished(status);
                        }
                        if let Some(seq) = seq {
                            let ev = ShipmentEvent { event, at, detail: Some(detail.into()) };
                            if let Err(e) = tell_decided(&client, &pool, id, seq, Some(Decision::Carrier(ev))).await {
                                tracing::warn!(order_id = %id, error = %e, "simulated carrier: report recorded, not signalled");
                            }
                        }
                    }
                    // Reported first by someone else (the real carrier, an admin).
                    Ok(CarrierReport::Unchanged(_)) => {}
                    Ok(other) => {
                        tracing::info!(order_id = %id, outcome = ?other, "simulated carrier: report refused");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(order_id = %id, error = %e, "simulated carrier could not report");
                        return;
                    }
                }
            }
        });
    }
}
