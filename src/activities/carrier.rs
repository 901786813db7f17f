//! Booking the parcel with a carrier, keyed by our idempotency key.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PartyError;
use crate::domain::Address;

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
}

/// A carrier API over HTTP: `POST {base}/shipments` with an `Idempotency-Key`
/// header; 2xx `{"carrier": .., "tracking_number": ..}` is a booking.
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
        let resp = self
            .http
            .post(format!("{}/shipments", self.base_url))
            .header("Idempotency-Key", &req.idempotency_key)
            .json(req)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if status.is_success() {
            serde_json::from_str(&text).map_err(|e| PartyError::Transient(format!("unreadable booking: {e}")))
        } else {
            Err(PartyError::from_status(status, &text))
        }
    }
}
