//! Where an order is in its life, and why it stopped when it did not complete.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `pending` → `reserved` → [`awaiting_review` →] `paid` → `shipped` → `in_transit` → `delivered`.
/// Other ends: `failed` and `cancelled` (with a reason), `delivery_overdue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Reserved,
    AwaitingReview,
    Paid,
    Shipped,
    InTransit,
    Delivered,
    DeliveryOverdue,
    Failed,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] = [
        Self::Pending,
        Self::Reserved,
        Self::AwaitingReview,
        Self::Paid,
        Self::Shipped,
        Self::InTransit,
        Self::Delivered,
        Self::DeliveryOverdue,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserved => "reserved",
            Self::AwaitingReview => "awaiting_review",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::InTransit => "in_transit",
            Self::Delivered => "delivered",
            Self::DeliveryOverdue => "delivery_overdue",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::DeliveryOverdue | Self::Failed | Self::Cancelled)
    }

    /// Cancelling is allowed until the parcel is handed to the carrier.
    pub fn can_cancel(self) -> bool {
        matches!(self, Self::Pending | Self::Reserved | Self::AwaitingReview | Self::Paid | Self::Shipped)
    }

    /// The shipping address may change until the shipment is booked.
    pub fn can_amend_address(self) -> bool {
        matches!(self, Self::Pending | Self::Reserved | Self::AwaitingReview | Self::Paid)
    }

    /// The statuses an order may be in just before moving to `self`. Writes are
    /// guarded by this, so a retried or late step never moves an order backwards.
    pub fn reachable_from(self) -> &'static [&'static str] {
        match self {
            Self::Pending => &[],
            Self::Reserved => &["pending"],
            Self::AwaitingReview => &["reserved"],
            Self::Paid => &["reserved", "awaiting_review"],
            Self::Shipped => &["paid"],
            Self::InTransit => &["shipped"],
            Self::Delivered | Self::DeliveryOverdue => &["shipped", "in_transit"],
            Self::Failed => &["pending", "reserved", "awaiting_review", "paid"],
            Self::Cancelled => &["pending", "reserved", "awaiting_review", "paid", "shipped"],
        }
    }
}

/// Why an order ended `failed` or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    OutOfStock,
    PaymentDeclined,
    PaymentFailed,
    ShipmentFailed,
    /// The customer or an admin cancelled through the API.
    CancelRequested,
    /// An operator cancelled the workflow from the Temporal UI or CLI.
    WorkflowCancelled,
    ReviewRejected,
    ReviewTimeout,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentFailed => "payment_failed",
            Self::ShipmentFailed => "shipment_failed",
            Self::CancelRequested => "cancel_requested",
            Self::WorkflowCancelled => "workflow_cancelled",
            Self::ReviewRejected => "review_rejected",
            Self::ReviewTimeout => "review_timeout",
        }
    }

    /// The status an order ends in for this reason.
    pub fn status(self) -> OrderStatus {
        match self {
            Self::OutOfStock | Self::PaymentDeclined | Self::PaymentFailed | Self::ShipmentFailed => {
                OrderStatus::Failed
            }
            Self::CancelRequested | Self::WorkflowCancelled | Self::ReviewRejected | Self::ReviewTimeout => {
                OrderStatus::Cancelled
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_terminal_ones_are_never_left() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
            for t in OrderStatus::ALL.into_iter().filter(|t| t.is_terminal()) {
                assert!(!s.reachable_from().contains(&t.as_str()), "{s:?} from {t:?}");
            }
        }
    }

    #[test]
    fn cancelling_stops_at_the_carrier_and_amending_at_the_booking() {
        assert!(OrderStatus::Shipped.can_cancel());
        assert!(!OrderStatus::InTransit.can_cancel());
        assert!(!OrderStatus::Shipped.can_amend_address());
        assert!(OrderStatus::AwaitingReview.can_amend_address());
        assert_eq!(StopReason::ReviewTimeout.status(), OrderStatus::Cancelled);
    }
}
