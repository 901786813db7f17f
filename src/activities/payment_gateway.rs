//! Taking and returning money. The gateway is keyed by our idempotency key, so a
//! request repeated after a crash or timeout never moves money twice.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PartyError;

#[derive(Clone, Serialize)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub order_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub payment_method: String,
    /// The PSP token; sent to the gateway only, never logged.
    #[serde(rename = "token")]
    pub payment_token: String,
}

impl std::fmt::Debug for ChargeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeRequest")
            .field("idempotency_key", &self.idempotency_key)
            .field("order_id", &self.order_id)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("payment_method", &self.payment_method)
            .field("payment_token", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Captured { reference: String },
    Declined { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct RefundRequest {
    pub idempotency_key: String,
    /// The charge's own idempotency key, so the gateway can find a charge whose answer we never saw.
    pub charge_idempotency_key: String,
    pub charge_reference: Option<String>,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundResult {
    Refunded {
        reference: String,
        /// The refunded charge's reference, when the gateway gives it (it may be
        /// a charge whose answer never reached us).
        charge_reference: Option<String>,
    },
    /// The gateway holds no captured charge under that key.
    NothingToRefund,
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeResult, PartyError>;
    async fn refund(&self, req: &RefundRequest) -> Result<RefundResult, PartyError>;
}

/// Deterministic gateway for development and tests, driven by the payment token:
/// `tok_declined` is declined, `tok_flaky` fails transiently on the first two calls
/// for an order and then succeeds, `tok_unavailable` always fails transiently,
/// `tok_error` is refused permanently, and any
/// other token succeeds. References derive from the idempotency key, so a
/// repeated call returns the same reference, as a real gateway does.
#[derive(Default)]
pub struct SimulatedPaymentGateway {
    calls: Mutex<HashMap<String, u32>>,
}

fn reference(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{prefix}_{}", &hex::encode(digest)[..20])
}

impl SimulatedPaymentGateway {
    /// Counts a call for this key. Only the tokens whose answer depends on the
    /// count ask: a counter per order for every charge would grow with every order
    /// a long-running worker serves.
    fn next_call(&self, key: &str) -> u32 {
        // A poisoned lock only means another call panicked mid-update of a counter.
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(key.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

#[async_trait]
impl PaymentGateway for SimulatedPaymentGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeResult, PartyError> {
        match req.payment_token.as_str() {
            "tok_declined" => return Ok(ChargeResult::Declined { reason: "card_declined".into() }),
            "tok_error" => return Err(PartyError::Permanent("invalid_request: token not usable".into())),
            "tok_unavailable" => {
                let call = self.next_call(&req.idempotency_key);
                return Err(PartyError::Transient(format!("gateway unavailable (simulated, call {call})")));
            }
            "tok_flaky" => {
                let call = self.next_call(&req.idempotency_key);
                if call <= 2 {
                    return Err(PartyError::Transient(format!("gateway timeout (simulated, call {call})")));
                }
            }
            _ => {}
        }
        Ok(ChargeResult::Captured { reference: reference("sim_ch", &req.idempotency_key) })
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundResult, PartyError> {
        Ok(match &req.charge_reference {
            Some(charge) => RefundResult::Refunded {
                reference: reference("sim_re", &req.idempotency_key),
                charge_reference: Some(charge.clone()),
            },
            None => RefundResult::NothingToRefund,
        })
    }
}

/// A PSP over HTTP: `POST {base}/charges` and `POST {base}/refunds`, JSON, with
/// an `Idempotency-Key` header. 2xx `{"id": ..}` succeeds; 402 `{"reason": ..}` is a
/// decline; a refund's reply may name the refunded charge (`"charge": ..`); 404 on
/// a refund means there is nothing to refund; 5xx, 408, 429, a 2xx without an id
/// and connection errors are transient; any other answer is a permanent refusal.
pub struct HttpPaymentGateway {
    http: reqwest::Client,
    base_url: String,
}

#[derive(Deserialize)]
struct GatewayReply {
    id: Option<String>,
    reason: Option<String>,
    /// On a refund: the charge it returned.
    charge: Option<String>,
}

impl HttpPaymentGateway {
    pub fn new(http: reqwest::Client, base_url: String) -> Self {
        Self { http, base_url }
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        body: &impl Serialize,
    ) -> Result<(reqwest::StatusCode, GatewayReply, String), PartyError> {
        let resp = super::send_traced(
            self.http.post(format!("{}{path}", self.base_url)).header("Idempotency-Key", key).json(body),
        )
        .await?;
        let status = resp.status();
        let text = resp.text().await?;
        let reply = serde_json::from_str(&text).unwrap_or(GatewayReply { id: None, reason: None, charge: None });
        Ok((status, reply, text))
    }
}

#[async_trait]
impl PaymentGateway for HttpPaymentGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeResult, PartyError> {
        let (status, reply, text) = self.post("/charges", &req.idempotency_key, req).await?;
        match (status.as_u16(), reply.id) {
            (200..=299, Some(reference)) => Ok(ChargeResult::Captured { reference }),
            (200..=299, None) => Err(PartyError::Transient("gateway reply without an id".into())),
            (402, _) => Ok(ChargeResult::Declined { reason: reply.reason.unwrap_or_else(|| "declined".into()) }),
            _ => Err(PartyError::from_status(status, &text)),
        }
    }

    async fn refund(&self, req: &RefundRequest) -> Result<RefundResult, PartyError> {
        let (status, reply, text) = self.post("/refunds", &req.idempotency_key, req).await?;
        match (status.as_u16(), reply.id) {
            (200..=299, Some(reference)) => Ok(RefundResult::Refunded { reference, charge_reference: reply.charge }),
            // The money may have moved: ask again (same key) rather than call it refused.
            (200..=299, None) => Err(PartyError::Transient("gateway reply without an id".into())),
            (404, _) => Ok(RefundResult::NothingToRefund),
            _ => Err(PartyError::from_status(status, &text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let req = ChargeRequest {
            idempotency_key: "charge-1".into(),
            order_id: "1".into(),
            amount: Decimal::ONE,
            currency: "USD".into(),
            payment_method: "credit_card".into(),
            payment_token: "tok_secret_value".into(),
        };
        assert!(!format!("{req:?}").contains("tok_secret_value"));
    }

    fn charge(key: &str, token: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            order_id: key.into(),
            amount: Decimal::ONE,
            currency: "USD".into(),
            payment_method: "credit_card".into(),
            payment_token: token.into(),
        }
    }

    /// The simulated gateway serves every order of a long-running worker: it keeps
    /// state only for the tokens whose answers need it.
    #[tokio::test]
    async fn the_simulated_gateway_keeps_nothing_per_ordinary_charge() {
        let gateway = SimulatedPaymentGateway::default();
        for i in 0..100 {
            let answer = gateway.charge(&charge(&format!("charge-{i}"), "tok_ok")).await;
            assert!(matches!(answer, Ok(ChargeResult::Captured { .. })));
        }
        assert_eq!(gateway.calls.lock().unwrap().len(), 0);
        // The flaky token still fails twice, then captures: its count is kept.
        for expected_ok in [false, false, true] {
            let answer = gateway.charge(&charge("charge-flaky", "tok_flaky")).await;
            assert_eq!(answer.is_ok(), expected_ok, "{answer:?}");
        }
    }
}
