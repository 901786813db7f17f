//! An order as the storefront asks for it, before the catalog prices it.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::Address;

/// Orders are identified by a UUIDv7: time-ordered, so ids index well and sort by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The Temporal workflow id of this order's workflow.
    pub fn workflow_id(&self) -> String {
        format!("order-{}", self.0)
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A stock keeping unit: upper-case letters, digits and dashes, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// Exactly as documented: `^[A-Z0-9][A-Z0-9-]{0,63}$`, no trimming.
    pub fn parse(value: &str) -> Result<Sku, String> {
        let v = value;
        let ok = !v.is_empty()
            && v.len() <= 64
            && !v.starts_with('-')
            && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
        if ok { Ok(Sku(v.to_owned())) } else { Err("must be 1-64 upper-case letters, digits or dashes".into()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many units of one SKU a line orders: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: i64 = 1000;

    pub fn parse(value: i64) -> Result<Quantity, String> {
        if (1..=Self::MAX).contains(&value) {
            // In range 1..=1000, so it fits a u32.
            Ok(Quantity(value as u32))
        } else {
            Err(format!("must be between 1 and {}", Self::MAX))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    CreditCard,
    DebitCard,
    Paypal,
    BankTransfer,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 4] = [Self::CreditCard, Self::DebitCard, Self::Paypal, Self::BankTransfer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreditCard => "credit_card",
            Self::DebitCard => "debit_card",
            Self::Paypal => "paypal",
            Self::BankTransfer => "bank_transfer",
        }
    }

    pub fn parse(value: &str) -> Result<PaymentMethod, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == value)
            .ok_or_else(|| "must be one of credit_card, debit_card, paypal, bank_transfer".into())
    }
}

/// One requested line. `expected_unit_price` is the price the shopper saw; the
/// catalog price always wins, and a mismatch is reported rather than charged.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderLineRequest {
    pub sku: Sku,
    pub quantity: Quantity,
    pub expected_unit_price: Option<Decimal>,
}

/// A syntactically valid order, not yet checked against the catalog.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub customer_id: String,
    pub lines: Vec<OrderLineRequest>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub payment_method: PaymentMethod,
    pub payment_token: String,
    pub notes: Option<String>,
}

impl NewOrder {
    pub const MAX_LINES: usize = 50;
}

/// A catalog-priced line: what the customer pays for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PricedLine {
    #[schema(value_type = String, example = "WIDGET-1")]
    pub sku: Sku,
    #[schema(example = "Blue widget")]
    pub name: String,
    #[schema(value_type = u32, example = 2)]
    pub quantity: Quantity,
    #[schema(value_type = String, example = "19.99")]
    pub unit_price: Decimal,
    #[schema(value_type = String, example = "39.98")]
    pub line_total: Decimal,
}

/// An order ready to be recorded: validated, checked against the catalog and priced.
#[derive(Debug, Clone)]
pub struct PricedOrder {
    pub id: OrderId,
    pub order: NewOrder,
    pub lines: Vec<PricedLine>,
    pub totals: super::Totals,
    /// The client's `Idempotency-Key` and a hash of the request it came with.
    pub idempotency: Option<(String, String)>,
}

/// Parses a unit price a client sent: non-negative, at most two decimal places.
pub fn parse_price(value: &str) -> Result<Decimal, String> {
    let msg = || "must be a non-negative decimal string with at most 2 decimal places, like \"12.34\"".to_owned();
    // The documented shape, `^[0-9]{1,10}(\.[0-9]{1,2})?$`, before the decimal parse
    // (which alone would also take "+1", "1.230" or surrounding spaces).
    let (units, cents) = value.split_once('.').unwrap_or((value, "0"));
    let digits = |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(units, 10) && digits(cents, 2)) {
        return Err(msg());
    }
    Decimal::from_str_exact(value).map_err(|_| msg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        assert!(Sku::parse("WIDGET-1").is_ok());
        for bad in ["", "widget", "A B", "-A", " A", &"A".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        assert!(Quantity::parse(1).is_ok());
        assert!(Quantity::parse(1000).is_ok());
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(1001).is_err());
        assert!(Quantity::parse(-3).is_err());
    }

    #[test]
    fn prices() {
        assert_eq!(parse_price("12.30"), Ok(Decimal::new(1230, 2)));
        assert_eq!(parse_price("7"), Ok(Decimal::new(7, 0)));
        for bad in ["-1", "1.234", "12.300", "+1", " 1", "1.", ".5", "abc", "1e3", "", "12345678901"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_ids_are_v7_and_name_their_workflow() {
        let id = OrderId::new();
        assert_eq!(id.0.get_version_num(), 7);
        assert_eq!(id.workflow_id(), format!("order-{}", id.0));
    }
}
