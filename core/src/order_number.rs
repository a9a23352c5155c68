//! Order numbers: what a shopper reads out to a carrier and a supplier quotes to get paid.
//! Twelve digits, the last a Luhn check digit, shown as `1234-5678-9015`; a mistyped number is
//! refused before any look-up.

use crate::check_digit::{luhn_digit, luhn_valid};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid order number (12 digits, e.g. 1234-5678-9015; check the digits)")]
pub struct InvalidOrderNumber;

pub const ORDER_NUMBER_DIGITS: usize = 12;

impl OrderNumber {
    /// A fresh random number (the first digit is never 0, so it cannot lose a digit in a
    /// spreadsheet).
    pub fn generate() -> OrderNumber {
        let mut rng = rand::rng();
        let mut payload = String::with_capacity(ORDER_NUMBER_DIGITS);
        payload.push(char::from(b'0' + rng.random_range(1..10u8)));
        for _ in 1..ORDER_NUMBER_DIGITS - 1 {
            payload.push(char::from(b'0' + rng.random_range(0..10u8)));
        }
        let check = luhn_digit(&payload).unwrap_or(0);
        payload.push(char::from(b'0' + check));
        OrderNumber(payload)
    }

    /// Accepts the digits with any spaces or dashes between them.
    pub fn parse(input: &str) -> Result<OrderNumber, InvalidOrderNumber> {
        if input.len() > 32 {
            return Err(InvalidOrderNumber);
        }
        let digits: String = input.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() == ORDER_NUMBER_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit())
            && luhn_valid(&digits)
        {
            Ok(OrderNumber(digits))
        } else {
            Err(InvalidOrderNumber)
        }
    }

    /// The bare digits, as stored.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn from_stored(digits: String) -> OrderNumber {
        OrderNumber(digits)
    }
}

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        if d.len() == ORDER_NUMBER_DIGITS {
            write!(f, "{}-{}-{}", &d[0..4], &d[4..8], &d[8..12])
        } else {
            f.write_str(d)
        }
    }
}

impl fmt::Debug for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderNumber({self})")
    }
}

impl FromStr for OrderNumber {
    type Err = InvalidOrderNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderNumber::parse(s)
    }
}

impl Serialize for OrderNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OrderNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        OrderNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for OrderNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{4}-?[0-9]{4}-?[0-9]{4}$"))
            .examples([serde_json::json!("4417-1234-5673")])
            .description(Some("Twelve digits, the last a Luhn check digit"))
            .into()
    }
}

impl utoipa::ToSchema for OrderNumber {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_the_documentation_is_a_valid_number() {
        assert!(OrderNumber::parse("1234-5678-9015").is_ok());
        assert!(OrderNumber::parse("4417-1234-5673").is_ok());
        assert!(OrderNumber::parse("1234-5678-9012").is_err());
    }
    use proptest::prelude::*;

    #[test]
    fn generated_numbers_parse_back() {
        for _ in 0..1000 {
            let number = OrderNumber::generate();
            assert_eq!(OrderNumber::parse(&number.to_string()).unwrap(), number);
            assert_eq!(OrderNumber::parse(number.digits()).unwrap(), number);
        }
    }

    proptest! {
        #[test]
        fn a_single_mistyped_digit_is_refused(position in 0usize..12, bump in 1u8..10) {
            let number = OrderNumber::generate();
            let mut bytes = number.digits().as_bytes().to_vec();
            bytes[position] = b'0' + (bytes[position] - b'0' + bump) % 10;
            prop_assert!(OrderNumber::parse(&String::from_utf8(bytes).unwrap()).is_err());
        }

        #[test]
        fn anything_parses_without_panicking(input in ".{0,40}") {
            let _ = OrderNumber::parse(&input);
        }
    }
}
