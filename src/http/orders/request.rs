//! The `POST /orders` body as clients send it, and its parse into a `NewOrder`.
//! Every field is optional here so that all missing and invalid fields are
//! reported together, each by JSON pointer.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::address::AddressInput;
use crate::domain::order::parse_price;
use crate::domain::validation::text;
use crate::domain::{Address, FieldErrors, NewOrder, OrderLineRequest, PaymentMethod, Quantity, Sku};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "items": [{"sku": "WIDGET-1", "quantity": 2, "unit_price": "19.99"}],
    "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701", "country": "US"},
    "payment_method": "credit_card",
    "payment_token": "tok_ok",
    "notes": "leave at the door"
}))]
pub struct CreateOrderRequest {
    /// 1 to 50 lines, each SKU at most once.
    #[schema(required = true, value_type = Vec<ItemInput>, min_items = 1, max_items = 50)]
    pub items: Option<Vec<ItemInput>>,
    #[schema(required = true, value_type = AddressInput)]
    pub shipping_address: Option<AddressInput>,
    /// Defaults to the shipping address.
    pub billing_address: Option<AddressInput>,
    #[schema(required = true, value_type = PaymentMethod, example = "credit_card")]
    pub payment_method: Option<String>,
    /// The payment provider's token for the customer's instrument (never returned by the API).
    #[schema(required = true, value_type = String, example = "tok_ok", min_length = 1, max_length = 255,
        pattern = r"^[^\s\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\s\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub payment_token: Option<String>,
    /// At most 1000 characters.
    #[schema(max_length = 1000, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    #[schema(required = true, value_type = String, example = "WIDGET-1", pattern = r"^[A-Z0-9][A-Z0-9-]{0,63}$")]
    pub sku: Option<String>,
    /// 1 to 1000.
    #[schema(required = true, value_type = i64, example = 2, minimum = 1, maximum = 1000)]
    pub quantity: Option<i64>,
    /// The price the shopper saw, as a decimal string. Optional; if sent it must
    /// equal the catalog price (else 409 price_changed). The catalog price is always what is charged.
    #[schema(value_type = Option<String>, example = "19.99", pattern = r"^[0-9]{1,10}(\.[0-9]{1,2})?$")]
    pub unit_price: Option<String>,
}

impl CreateOrderRequest {
    pub fn parse(self, customer_id: &str) -> Result<NewOrder, FieldErrors> {
        let mut errors = FieldErrors::new();
        let lines = parse_items(self.items, &mut errors);
        let shipping = errors
            .required("/shipping_address", self.shipping_address)
            .and_then(|a| Address::parse(a, "/shipping_address", &mut errors));
        let billing = match self.billing_address {
            Some(a) => Address::parse(a, "/billing_address", &mut errors),
            None => shipping.clone(),
        };
        let payment_method = errors
            .required("/payment_method", self.payment_method)
            .and_then(|m| errors.check("/payment_method", PaymentMethod::parse(&m)));
        let payment_token = errors.required("/payment_token", self.payment_token).and_then(|t| {
            let token = text(&t, 1, 255).and_then(|t| {
                if t.chars().any(char::is_whitespace) { Err("must not contain spaces".into()) } else { Ok(t) }
            });
            errors.check("/payment_token", token)
        });
        let notes = errors.optional("/notes", self.notes, |n| text(n, 0, 1000)).map(|n| n.filter(|n| !n.is_empty()));
        match (lines, shipping, billing, payment_method, payment_token, notes) {
            (
                Some(lines),
                Some(shipping_address),
                Some(billing_address),
                Some(payment_method),
                Some(payment_token),
                Some(notes),
            ) if errors.is_empty() => Ok(NewOrder {
                customer_id: customer_id.to_owned(),
                lines,
                shipping_address,
                billing_address,
                payment_method,
                payment_token,
                notes,
            }),
            _ => Err(errors),
        }
    }
}

fn parse_items(items: Option<Vec<ItemInput>>, errors: &mut FieldErrors) -> Option<Vec<OrderLineRequest>> {
    let items = errors.required("/items", items)?;
    if items.is_empty() || items.len() > NewOrder::MAX_LINES {
        errors.add("/items", format!("must contain between 1 and {} items", NewOrder::MAX_LINES));
        return None;
    }
    let mut first_seen: BTreeMap<Sku, usize> = BTreeMap::new();
    let mut lines = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        let at = |field: &str| format!("/items/{i}/{field}");
        let sku = errors.required(&at("sku"), item.sku).and_then(|s| errors.check(&at("sku"), Sku::parse(&s)));
        if let Some(sku) = &sku {
            if let Some(j) = first_seen.get(sku) {
                errors.add(at("sku"), format!("repeats the SKU of /items/{j}; combine the quantities in one line"));
            } else {
                first_seen.insert(sku.clone(), i);
            }
        }
        let quantity = errors
            .required(&at("quantity"), item.quantity)
            .and_then(|q| errors.check(&at("quantity"), Quantity::parse(q)));
        let price = errors.optional(&at("unit_price"), item.unit_price, parse_price);
        match (sku, quantity, price) {
            (Some(sku), Some(quantity), Some(expected_unit_price)) => {
                lines.push(OrderLineRequest { sku, quantity, expected_unit_price })
            }
            _ => ok = false,
        }
    }
    ok.then_some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: serde_json::Value) -> Result<NewOrder, Vec<(String, String)>> {
        let req: CreateOrderRequest = serde_json::from_value(body).expect("shape");
        req.parse("cust-1").map_err(|e| e.into_vec().into_iter().map(|e| (e.pointer, e.message)).collect())
    }

    fn valid() -> serde_json::Value {
        json!({
            "items": [{"sku": "WIDGET-1", "quantity": 2, "unit_price": "19.99"}, {"sku": "GADGET-2", "quantity": 1}],
            "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701", "country": "US"},
            "payment_method": "credit_card",
            "payment_token": "tok_ok"
        })
    }

    #[test]
    fn a_valid_order_parses_and_billing_defaults_to_shipping() {
        let order = parse(valid()).unwrap();
        assert_eq!(order.lines.len(), 2);
        assert_eq!(order.billing_address, order.shipping_address);
        assert_eq!(order.customer_id, "cust-1");
        assert_eq!(order.notes, None);
    }

    #[test]
    fn every_invalid_field_is_reported_by_pointer() {
        let body = json!({
            "items": [
                {"sku": "WIDGET-1", "quantity": 0},
                {"sku": "WIDGET-1", "quantity": 1001, "unit_price": "1.999"},
                {"quantity": 1}
            ],
            "shipping_address": {"street": "", "city": "X", "state": "IL", "zip_code": "1234", "country": "ZZ"},
            "payment_method": "cash",
            "notes": "n".repeat(1001)
        });
        let pointers: Vec<String> = parse(body).unwrap_err().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            pointers,
            [
                "/items/0/quantity",
                "/items/1/sku",
                "/items/1/quantity",
                "/items/1/unit_price",
                "/items/2/sku",
                "/shipping_address/street",
                "/shipping_address/zip_code",
                "/shipping_address/country",
                "/payment_method",
                "/payment_token",
                "/notes"
            ]
        );
    }

    #[test]
    fn item_count_limits() {
        let mut body = valid();
        body["items"] = json!([]);
        assert_eq!(parse(body.clone()).unwrap_err()[0].0, "/items");
        body["items"] = json!((0..51).map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1})).collect::<Vec<_>>());
        assert_eq!(parse(body.clone()).unwrap_err()[0].0, "/items");
        body["items"] = json!((0..50).map(|i| json!({"sku": format!("SKU-{i}"), "quantity": 1})).collect::<Vec<_>>());
        assert!(parse(body).is_ok());
    }

    #[test]
    fn missing_required_sections() {
        let errs = parse(json!({})).unwrap_err();
        let pointers: Vec<_> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(pointers, ["/items", "/shipping_address", "/payment_method", "/payment_token"]);
        assert!(errs.iter().all(|(_, m)| m == "is required"));
    }
}
