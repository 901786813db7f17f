//! The order's state machine: its statuses, the moves between them, and which
//! actions each status admits. This table is the one home of those rules: the
//! HTTP handlers, the workflow, and the SQL guards under the order's row lock
//! all ask it (no comparison of statuses by order anywhere).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `pending` → `reserved` → [`awaiting_review` →] `paid` → `shipped` → `in_transit` → `delivered`.
/// Other ends: `failed` and `cancelled` (with a reason), `delivery_overdue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

/// What someone outside the workflow's own path may ask of an order. Orders
/// carry the ones their status admits (`actions`), so clients such as the
/// console offer exactly those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `POST /orders/{id}/cancel` (customer or admin): stop and compensate.
    Cancel,
    /// `PATCH /orders/{id}/shipping-address`: also needs the booking not yet begun.
    AmendAddress,
    /// `POST /orders/{id}/review` (admin): approve or reject a held order.
    Review,
    /// `POST /orders/{id}/shipment-events` (carrier): pickup, delivery, exceptions.
    CarrierEvent,
    /// Cancelling the workflow from the Temporal UI or CLI: stop and compensate.
    TemporalCancel,
}

/// How many address changes one order accepts: each is a timeline event, a
/// notification and a signal to its workflow, so callers cannot grow them without bound.
pub const MAX_AMENDMENTS: i64 = 10;
/// How many distinct carrier exceptions one order records (the same reasons).
pub const MAX_CARRIER_EXCEPTIONS: i64 = 20;

/// One row of the table: a status, the statuses it may move to, and the actions it admits.
struct Row {
    status: OrderStatus,
    next: &'static [OrderStatus],
    admits: &'static [Action],
}

use Action::*;
use OrderStatus::*;

/// The order's lifecycle. Failing and cancelling are possible until the carrier
/// has the parcel; after that only the carrier moves it (or its deadline).
const TABLE: [Row; 10] = [
    Row { status: Pending, next: &[Reserved, Failed, Cancelled], admits: &[Cancel, AmendAddress, TemporalCancel] },
    Row {
        status: Reserved,
        next: &[AwaitingReview, Paid, Failed, Cancelled],
        admits: &[Cancel, AmendAddress, TemporalCancel],
    },
    Row {
        status: AwaitingReview,
        next: &[Paid, Failed, Cancelled],
        admits: &[Cancel, AmendAddress, Review, TemporalCancel],
    },
    Row { status: Paid, next: &[Shipped, Failed, Cancelled], admits: &[Cancel, AmendAddress, TemporalCancel] },
    Row {
        status: Shipped,
        next: &[InTransit, Delivered, DeliveryOverdue, Cancelled],
        admits: &[Cancel, CarrierEvent, TemporalCancel],
    },
    Row { status: InTransit, next: &[Delivered, DeliveryOverdue], admits: &[CarrierEvent] },
    Row { status: Delivered, next: &[], admits: &[] },
    Row { status: DeliveryOverdue, next: &[], admits: &[] },
    Row { status: Failed, next: &[], admits: &[] },
    Row { status: Cancelled, next: &[], admits: &[] },
];

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] =
        [Pending, Reserved, AwaitingReview, Paid, Shipped, InTransit, Delivered, DeliveryOverdue, Failed, Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Reserved => "reserved",
            AwaitingReview => "awaiting_review",
            Paid => "paid",
            Shipped => "shipped",
            InTransit => "in_transit",
            Delivered => "delivered",
            DeliveryOverdue => "delivery_overdue",
            Failed => "failed",
            Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    fn row(self) -> &'static Row {
        // TABLE has one row per status, in the order of ALL (a unit test checks it).
        let row = &TABLE[self as usize];
        debug_assert_eq!(row.status, self);
        row
    }

    /// The statuses this one may move to.
    pub fn next(self) -> &'static [OrderStatus] {
        self.row().next
    }

    pub fn can_become(self, to: OrderStatus) -> bool {
        self.next().contains(&to)
    }

    /// No move leaves it.
    pub fn is_terminal(self) -> bool {
        self.next().is_empty()
    }

    /// The status as the order's workflow knows it. A carrier's report wakes the
    /// workflow only when it ends the order: a pickup changes nothing the workflow
    /// does, so to the workflow an order `in_transit` is still `shipped`.
    pub fn as_followed(self) -> OrderStatus {
        match self {
            InTransit => Shipped,
            other => other,
        }
    }

    pub fn admits(self, action: Action) -> bool {
        self.row().admits.contains(&action)
    }

    /// The actions this status admits through the API (not the Temporal cancel,
    /// which only Temporal's own tools send).
    pub fn api_actions(self) -> Vec<Action> {
        self.row().admits.iter().copied().filter(|a| *a != TemporalCancel).collect()
    }

    /// The statuses an order may be in just before moving to `to`: the guard of
    /// every status write, so a retried or late step never moves an order backwards.
    pub fn reachable_from(to: OrderStatus) -> Vec<OrderStatus> {
        Self::ALL.into_iter().filter(|s| s.can_become(to)).collect()
    }

    /// Whether an order in this status may be stopped for `reason` (failed or
    /// cancelled), by whoever that reason belongs to.
    pub fn admits_stop(self, reason: StopReason) -> bool {
        self.can_become(reason.status()) && reason.action().is_none_or(|a| self.admits(a))
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
    pub const ALL: [StopReason; 8] = [
        Self::OutOfStock,
        Self::PaymentDeclined,
        Self::PaymentFailed,
        Self::ShipmentFailed,
        Self::CancelRequested,
        Self::WorkflowCancelled,
        Self::ReviewRejected,
        Self::ReviewTimeout,
    ];

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

    pub fn parse(value: &str) -> Option<StopReason> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The status an order ends in for this reason.
    pub fn status(self) -> OrderStatus {
        match self {
            Self::OutOfStock | Self::PaymentDeclined | Self::PaymentFailed | Self::ShipmentFailed => Failed,
            Self::CancelRequested | Self::WorkflowCancelled | Self::ReviewRejected | Self::ReviewTimeout => Cancelled,
        }
    }

    /// The outside action this stop is, if it is one (the others are the
    /// outcomes of the workflow's own steps).
    pub fn action(self) -> Option<Action> {
        match self {
            Self::CancelRequested => Some(Cancel),
            Self::WorkflowCancelled => Some(TemporalCancel),
            Self::ReviewRejected | Self::ReviewTimeout => Some(Review),
            Self::OutOfStock | Self::PaymentDeclined | Self::PaymentFailed | Self::ShipmentFailed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_status_in_order() {
        for (i, s) in OrderStatus::ALL.into_iter().enumerate() {
            assert_eq!(TABLE[i].status, s);
            assert_eq!(s as usize, i);
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for r in StopReason::ALL {
            assert_eq!(StopReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
        }
    }

    #[test]
    fn terminal_statuses_are_never_left_and_admit_nothing() {
        for s in OrderStatus::ALL {
            assert!(!s.can_become(s), "{s:?} to itself");
            for t in OrderStatus::ALL.into_iter().filter(|t| t.is_terminal()) {
                assert!(!t.can_become(s), "{s:?} from {t:?}");
                assert!(!OrderStatus::reachable_from(s).contains(&t));
            }
        }
        let terminal: Vec<_> = OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [Delivered, DeliveryOverdue, Failed, Cancelled]);
        for t in terminal {
            for a in [Cancel, AmendAddress, Review, CarrierEvent, TemporalCancel] {
                assert!(!t.admits(a), "{t:?} admits {a:?}");
            }
        }
    }

    #[test]
    fn every_status_is_reachable_from_pending() {
        let mut seen = vec![Pending];
        let mut i = 0;
        while i < seen.len() {
            for n in seen[i].next() {
                if !seen.contains(n) {
                    seen.push(*n);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), OrderStatus::ALL.len(), "{seen:?}");
    }

    #[test]
    fn cancelling_stops_at_the_carrier_and_amending_at_the_booking() {
        assert!(Shipped.admits(Cancel));
        assert!(!InTransit.admits(Cancel));
        assert!(!Shipped.admits(AmendAddress));
        assert!(AwaitingReview.admits(AmendAddress));
        assert!(Shipped.admits_stop(StopReason::CancelRequested));
        assert!(!InTransit.admits_stop(StopReason::CancelRequested));
        assert!(!InTransit.admits_stop(StopReason::WorkflowCancelled));
        assert!(!Shipped.admits_stop(StopReason::PaymentDeclined), "a shipped order was paid");
        assert!(!Paid.admits_stop(StopReason::ReviewTimeout), "only an order in review times out there");
        assert!(AwaitingReview.admits_stop(StopReason::ReviewRejected));
        assert_eq!(StopReason::ReviewTimeout.status(), Cancelled);
        assert_eq!(OrderStatus::reachable_from(Delivered), [Shipped, InTransit]);
    }
}
