//! Phone numbers, parsed once into E.164 and masked whenever printed: a phone number is
//! personal data and must never reach a log line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid international phone number (use E.164, e.g. +821012345678)")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    /// Accepts international numbers only (leading `+`), with optional spaces, dashes or
    /// parentheses, and keeps the E.164 form.
    pub fn parse(input: &str) -> Result<PhoneNumber, InvalidPhoneNumber> {
        if input.len() > 32 || !input.trim_start().starts_with('+') {
            return Err(InvalidPhoneNumber);
        }
        let parsed = phonenumber::parse(None, input).map_err(|_| InvalidPhoneNumber)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(InvalidPhoneNumber);
        }
        Ok(PhoneNumber(
            parsed.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Re-reads a number this service stored; it was validated on the way in.
    pub fn from_stored(e164: String) -> PhoneNumber {
        PhoneNumber(e164)
    }

    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `+82•••••••678`: enough for a person to recognise their own number.
    pub fn masked(&self) -> String {
        let visible_tail = 3;
        let country_and_plus = 3.min(self.0.len());
        let tail_start = self
            .0
            .len()
            .saturating_sub(visible_tail)
            .max(country_and_plus);
        let hidden = tail_start - country_and_plus;
        format!(
            "{}{}{}",
            &self.0[..country_and_plus],
            "•".repeat(hidden),
            &self.0[tail_start..]
        )
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl FromStr for PhoneNumber {
    type Err = InvalidPhoneNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhoneNumber::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PhoneNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_to_e164() {
        let phone = PhoneNumber::parse("+82 10-1234-5678").unwrap();
        assert_eq!(phone.e164(), "+821012345678");
        let us = PhoneNumber::parse("+1 (202) 555-0143").unwrap();
        assert_eq!(us.e164(), "+12025550143");
    }

    #[test]
    fn national_and_garbage_numbers_are_rejected() {
        assert!(PhoneNumber::parse("010-1234-5678").is_err());
        assert!(PhoneNumber::parse("+1").is_err());
        assert!(PhoneNumber::parse("hello").is_err());
    }

    #[test]
    fn printing_a_number_masks_it() {
        let phone = PhoneNumber::parse("+821012345678").unwrap();
        let printed = format!("{phone} {phone:?}");
        assert!(!printed.contains("1012345"));
        assert!(printed.contains("678"));
    }
}
