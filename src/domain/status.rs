//! Where an order is in its life, and why it stopped when it failed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `pending` → `reserved` → `paid` → `shipped` is success; `failed` (with a reason) ends any other path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Paid,
    Shipped,
    Failed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [Self::Pending, Self::Reserved, Self::Paid, Self::Shipped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Shipped | Self::Failed)
    }

    /// The statuses an order may be in just before moving to `self`. Writes are
    /// guarded by this, so a retried or late step never moves an order backwards.
    pub fn reachable_from(self) -> &'static [&'static str] {
        match self {
            Self::Pending => &[],
            Self::Reserved => &["pending"],
            Self::Paid => &["reserved"],
            Self::Shipped => &["paid"],
            Self::Failed => &["pending", "reserved", "paid"],
        }
    }
}

/// Why an order ended `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    OutOfStock,
    PaymentDeclined,
    PaymentFailed,
    ShipmentFailed,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentFailed => "payment_failed",
            Self::ShipmentFailed => "shipment_failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_never_go_backwards() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
            assert!(!s.reachable_from().contains(&"shipped"), "{s:?}");
            assert!(!s.reachable_from().contains(&"failed"), "{s:?}");
        }
    }
}
