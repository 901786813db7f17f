//! Pure types of the order domain. Nothing here does I/O; every type that
//! crosses a boundary is built by a `parse` that rejects invalid input.

pub mod address;
pub mod order;
pub mod pricing;
pub mod shipment;
pub mod status;
pub mod user;
pub mod validation;

pub use address::Address;
pub use order::{NewOrder, OrderId, OrderLineRequest, PaymentMethod, PricedLine, PricedOrder, Quantity, Sku};
pub use pricing::{Pricing, Totals};
pub use shipment::{ReviewDecision, ShipmentEvent, ShipmentEventKind};
pub use status::{Action, OrderStatus, StopReason};
pub use user::UserStatus;
pub use validation::{FieldError, FieldErrors};
