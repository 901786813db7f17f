//! Postal addresses, with the rules of the service this one replaces.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validation::{FieldErrors, text};

/// A validated postal address. Only `Address::parse` builds one from client input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    #[schema(example = "1 Main St")]
    pub street: String,
    #[schema(example = "Springfield")]
    pub city: String,
    #[schema(example = "IL")]
    pub state: String,
    #[schema(example = "62701")]
    pub zip_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    #[schema(example = "US")]
    pub country: String,
}

/// The address as a client sent it: every field optional so that all missing
/// ones are reported together.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    #[schema(required = true, value_type = String, example = "1 Main St", max_length = 255, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub street: Option<String>,
    #[schema(required = true, value_type = String, example = "Springfield", max_length = 100, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub city: Option<String>,
    #[schema(required = true, value_type = String, example = "IL", max_length = 50, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*(?:[^\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff][^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*){2}$")]
    pub state: Option<String>,
    /// A US ZIP code: 5 digits, optionally -4 digits.
    #[schema(required = true, value_type = String, example = "62701", pattern = r"^[0-9]{5}(-[0-9]{4})?$")]
    pub zip_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[schema(required = true, schema_with = country_schema)]
    pub country: Option<String>,
}

static ZIP: LazyLock<Regex> =
    // A literal pattern that is known to compile. ASCII digits only (`\d` would take any script's).
    LazyLock::new(|| Regex::new(r"^[0-9]{5}(-[0-9]{4})?$").expect("static regex"));

/// Officially assigned ISO 3166-1 alpha-2 codes.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI \
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// The documented schema of `country`: the codes as an enum, so clients see them.
fn country_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(ISO_3166_ALPHA2.split(' ')))
        .examples(["US"])
        .build()
}

// Codes are compared exactly, as documented: no trimming or case folding.
fn country(code: &str) -> Result<String, String> {
    let known = code.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == code);
    if known { Ok(code.to_owned()) } else { Err("must be an ISO 3166-1 alpha-2 country code such as \"US\"".into()) }
}

fn zip_code(value: &str) -> Result<String, String> {
    let zip = value;
    if ZIP.is_match(zip) {
        Ok(zip.to_owned())
    } else {
        Err("must be a ZIP code: 5 digits, optionally -4 digits".into())
    }
}

impl Address {
    /// Parses an address found at `at` (a JSON pointer), adding one error per bad field.
    pub fn parse(input: AddressInput, at: &str, errors: &mut FieldErrors) -> Option<Address> {
        let mut field = |name: &str, value: Option<String>, rule: &dyn Fn(&str) -> Result<String, String>| {
            let pointer = format!("{at}/{name}");
            let value = errors.required(&pointer, value)?;
            errors.check(&pointer, rule(&value))
        };
        let street = field("street", input.street, &|v| text(v, 1, 255));
        let city = field("city", input.city, &|v| text(v, 1, 100));
        let state = field("state", input.state, &|v| text(v, 2, 50));
        let zip_code = field("zip_code", input.zip_code, &zip_code);
        let country = field("country", input.country, &country);
        Some(Address { street: street?, city: city?, state: state?, zip_code: zip_code?, country: country? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> AddressInput {
        AddressInput {
            street: Some("1 Main St".into()),
            city: Some("Springfield".into()),
            state: Some("IL".into()),
            zip_code: Some("62701-1234".into()),
            country: Some("US".into()),
        }
    }

    #[test]
    fn a_valid_address_parses() {
        let mut errors = FieldErrors::new();
        let address = Address::parse(input(), "/shipping_address", &mut errors);
        assert!(errors.is_empty());
        assert_eq!(address.map(|a| a.zip_code), Some("62701-1234".to_owned()));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut errors = FieldErrors::new();
        let bad = AddressInput {
            street: Some(" ".into()),
            city: None,
            state: Some("I".into()),
            zip_code: Some("6270".into()),
            country: Some("USA".into()),
        };
        assert!(Address::parse(bad, "/shipping_address", &mut errors).is_none());
        let pointers: Vec<_> = errors.into_vec().into_iter().map(|e| e.pointer).collect();
        assert_eq!(
            pointers,
            [
                "/shipping_address/street",
                "/shipping_address/city",
                "/shipping_address/state",
                "/shipping_address/zip_code",
                "/shipping_address/country"
            ]
        );
    }

    #[test]
    fn zip_and_country_rules() {
        for ok in ["12345", "12345-6789"] {
            assert!(zip_code(ok).is_ok(), "{ok}");
        }
        for bad in ["1234", "123456", "12345-678", "abcde", "12345 6789", " 12345", "\u{0666}2345"] {
            assert!(zip_code(bad).is_err(), "{bad}");
        }
        assert!(country("DE").is_ok());
        for bad in ["us", "XX", "U", "USA", ""] {
            assert!(country(bad).is_err(), "{bad}");
        }
    }
}
