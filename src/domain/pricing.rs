//! Prices an order from catalog prices. All arithmetic is exact `Decimal`.

use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde::{Deserialize, Serialize};

/// Pricing rules; configurable, defaults are the storefront's published rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// e.g. 0.085 for 8.5 %
    pub tax_rate: Decimal,
    pub shipping_fee: Decimal,
    /// Orders whose subtotal is at least this ship free.
    pub free_shipping_threshold: Decimal,
}

impl Default for Pricing {
    fn default() -> Self {
        Self { tax_rate: dec!(0.085), shipping_fee: dec!(9.99), free_shipping_threshold: dec!(100.00) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: Decimal,
    pub tax: Decimal,
    pub shipping: Decimal,
    pub total: Decimal,
}

impl Totals {
    /// The largest amount the database stores (NUMERIC(12, 2)).
    pub const MAX_AMOUNT: Decimal = dec!(9999999999.99);
}

/// Rounds to cents, half to even (banker's rounding), as the tax authority's tables do.
pub fn to_cents(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    rounded.rescale(2);
    rounded
}

impl Pricing {
    /// `lines` are (unit price, quantity) pairs.
    pub fn price(&self, lines: impl IntoIterator<Item = (Decimal, u32)>) -> Totals {
        let subtotal = to_cents(lines.into_iter().map(|(price, qty)| price * Decimal::from(qty)).sum());
        let tax = to_cents(subtotal * self.tax_rate);
        let shipping =
            if subtotal < self.free_shipping_threshold { to_cents(self.shipping_fee) } else { to_cents(Decimal::ZERO) };
        Totals { subtotal, tax, shipping, total: subtotal + tax + shipping }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_order_pays_shipping() {
        let t = Pricing::default().price([(dec!(19.99), 2)]);
        assert_eq!(t.subtotal, dec!(39.98));
        assert_eq!(t.tax, dec!(3.40)); // 3.3983 -> 3.40
        assert_eq!(t.shipping, dec!(9.99));
        assert_eq!(t.total, dec!(53.37));
        assert_eq!(t.total.to_string(), "53.37");
    }

    #[test]
    fn threshold_is_inclusive_for_free_shipping() {
        let p = Pricing::default();
        assert_eq!(p.price([(dec!(100.00), 1)]).shipping, dec!(0.00));
        assert_eq!(p.price([(dec!(99.99), 1)]).shipping, dec!(9.99));
    }

    #[test]
    fn tax_rounds_half_to_even() {
        // 8.5 % of 1.00 is 0.085: the midpoint rounds to the even cent 0.08
        assert_eq!(Pricing::default().price([(dec!(1.00), 1)]).tax, dec!(0.08));
        // 8.5 % of 3.00 is 0.255 -> 0.26
        assert_eq!(Pricing::default().price([(dec!(3.00), 1)]).tax, dec!(0.26));
    }

    fn cents() -> impl Strategy<Value = Decimal> {
        (0i64..10_000_000).prop_map(|c| Decimal::new(c, 2))
    }

    proptest! {
        #[test]
        fn totals_add_up_and_are_in_cents(lines in prop::collection::vec((cents(), 1u32..=1000), 1..50)) {
            let t = Pricing::default().price(lines.clone());
            prop_assert_eq!(t.total, t.subtotal + t.tax + t.shipping);
            for v in [t.subtotal, t.tax, t.shipping, t.total] {
                prop_assert_eq!(v.scale(), 2);
                prop_assert!(!v.is_sign_negative());
            }
            let exact: Decimal = lines.iter().map(|(p, q)| *p * Decimal::from(*q)).sum();
            prop_assert_eq!(t.subtotal, exact);
        }

        #[test]
        fn tax_is_within_half_a_cent(sub in cents()) {
            let t = Pricing::default().price([(sub, 1)]);
            let exact = sub * dec!(0.085);
            prop_assert!((t.tax - exact).abs() <= dec!(0.005));
            // the remainder is exactly half a cent only when rounding went to the even cent
            if (t.tax - exact).abs() == dec!(0.005) {
                prop_assert_eq!((t.tax * dec!(100)) % dec!(2), Decimal::ZERO);
            }
        }
    }
}
