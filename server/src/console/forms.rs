//! Small helpers for the desk pages' forms (insurer, service company, policyholder,
//! institution, operator): a browser posts every field as text, empty when left blank, so
//! optional numbers and amounts are read here into the API's own types, with the API's codes
//! when they are refused.

use crate::error::ApiError;
use axum::http::StatusCode;
use holdfast_core::{CoreError, Currency, Money};
use serde::Serialize;

/// An amount typed into a form, in `currency`; `None` when left blank.
pub fn optional_money(amount: &str, currency: Currency) -> Result<Option<Money>, ApiError> {
    let amount = amount.trim();
    if amount.is_empty() {
        return Ok(None);
    }
    Money::parse(amount, currency)
        .map(Some)
        .map_err(|e| ApiError::from(CoreError::Money(e)))
}

/// An amount the form requires.
pub fn money(amount: &str, currency: Currency, field: &str) -> Result<Money, ApiError> {
    optional_money(amount, currency)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "text_empty",
            format!("{field}: enter an amount"),
        )
    })
}

/// A whole number typed into a form; `None` when left blank.
pub fn optional_int(raw: &str, field: &str) -> Result<Option<i32>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<i32>()
        .map(Some)
        .map_err(|_| ApiError::invalid(format!("{field} is a whole number")))
}

/// A text typed into a form; `None` when left blank.
pub fn optional_text(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (!raw.is_empty()).then(|| raw.to_owned())
}

/// An optional text field of the API's type `T` (parsed by `parse`), refused with the API's
/// code; `None` when left blank.
pub fn optional_field<T>(
    raw: &str,
    parse: impl FnOnce(String) -> Result<T, holdfast_core::text::TextError>,
) -> Result<Option<T>, ApiError> {
    optional_text(raw)
        .map(parse)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

/// A choice of a filter (`?state=in_force`), spelled as in the API; `None` for "any" (blank).
pub fn optional_choice<T: serde::de::DeserializeOwned>(
    raw: Option<&str>,
) -> Result<Option<T>, ApiError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{raw:?} is not one of the choices"))),
    }
}

/// How an API enum is spelled in its JSON (`awaiting_recheck`, `prepayment_account`…): pages
/// show the same words the API and README use.
pub fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A time as pages print it.
pub fn when(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_blank_amount_is_none_and_a_bad_one_keeps_the_money_code() {
        assert!(optional_money("  ", Currency::USD).unwrap().is_none());
        assert_eq!(
            optional_money("12.50", Currency::USD)
                .unwrap()
                .unwrap()
                .to_string(),
            "12.50 USD"
        );
        let refused = optional_money("1.234", Currency::USD).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(money("", Currency::USD, "Premium").is_err());
    }

    #[test]
    fn a_blank_number_is_none_and_words_are_refused() {
        assert_eq!(optional_int("", "Grace days").unwrap(), None);
        assert_eq!(optional_int(" 14 ", "Grace days").unwrap(), Some(14));
        assert!(optional_int("two weeks", "Grace days").is_err());
    }

    #[test]
    fn an_enum_is_labelled_as_the_api_spells_it() {
        assert_eq!(label(&Currency::USD), "USD");
        assert_eq!(
            label(&holdfast_insurance::policies::PolicyState::AwaitingRecheck),
            "awaiting_recheck"
        );
    }
}
