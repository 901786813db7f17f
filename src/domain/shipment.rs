//! What carriers tell us about a parcel after it is booked.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentEventKind {
    /// The carrier has the parcel.
    InTransit,
    /// Terminal success.
    Delivered,
    /// A problem the customer should hear about; the order keeps waiting for delivery.
    Exception,
}

/// A carrier event as the workflow receives it (a signal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentEvent {
    pub event: ShipmentEventKind,
    /// RFC 3339, as the carrier sent it.
    pub at: String,
    pub detail: Option<String>,
}

/// An admin's decision on an order held for manual review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    pub approve: bool,
    pub note: Option<String>,
}
