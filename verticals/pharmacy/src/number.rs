//! Prescription numbers, shaped like NHS EPS short-form prescription ids:
//!
//! ```text
//! 83C40E-A23856-00123W     shown with hyphens; stored as 18 characters without them
//! │      │      │    └ ISO/IEC 7064 MOD 37-2 check character over the 17 before it ('+' for 36)
//! │      │      └ 5 hex digits: the hospital's sequence (wraps FFFFF → 00000)
//! │      └ the hospital's code, zero-padded to 6
//! └ 6 random hex digits
//! ```
//!
//! A number is only ever built by [`PrescriptionNumber::parse`] or generated, so a typo is
//! refused before any look-up.

use holdfast_core::check_digit::{mod37_2_char, mod37_2_valid};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub const NUMBER_CHARS: usize = 18;
pub const HOSPITAL_CODE_CHARS: usize = 6;
/// The sequence is five hex digits.
pub const SEQUENCE_MODULUS: u32 = 0x10_0000;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrescriptionNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a valid prescription number (18 characters, e.g. 83C40E-A23856-00123W; check the characters)"
)]
pub struct InvalidPrescriptionNumber;

/// A hospital code as it appears in prescription numbers: 1 to 6 letters and digits, upper
/// case, zero-padded on the left to 6.
pub fn normalise_hospital_code(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    let valid = !code.is_empty()
        && code.len() <= HOSPITAL_CODE_CHARS
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    valid.then(|| format!("{code:0>6}"))
}

impl PrescriptionNumber {
    /// A new number for a hospital (`code` already normalised) and its sequence value.
    pub fn generate(hospital_code: &str, sequence: u32) -> Option<PrescriptionNumber> {
        let hospital = normalise_hospital_code(hospital_code)?;
        let random: u32 = rand::rng().random_range(0..0x100_0000);
        let payload = format!("{random:06X}{hospital}{:05X}", sequence % SEQUENCE_MODULUS);
        let check = mod37_2_char(&payload)?;
        Some(PrescriptionNumber(format!("{payload}{check}")))
    }

    /// Accepts the 18 characters with or without hyphens and spaces, in either case.
    pub fn parse(input: &str) -> Result<PrescriptionNumber, InvalidPrescriptionNumber> {
        if input.len() > 40 {
            return Err(InvalidPrescriptionNumber);
        }
        let compact: String = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let well_formed = compact.len() == NUMBER_CHARS
            && compact
                .bytes()
                .take(NUMBER_CHARS - 1)
                .all(|b| b.is_ascii_alphanumeric())
            && mod37_2_valid(&compact);
        if well_formed {
            Ok(PrescriptionNumber(compact))
        } else {
            Err(InvalidPrescriptionNumber)
        }
    }

    /// The 18 characters, as stored.
    pub fn compact(&self) -> &str {
        &self.0
    }

    pub fn from_stored(compact: String) -> PrescriptionNumber {
        PrescriptionNumber(compact)
    }
}

impl fmt::Display for PrescriptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.0;
        if n.len() == NUMBER_CHARS {
            write!(f, "{}-{}-{}", &n[0..6], &n[6..12], &n[12..18])
        } else {
            f.write_str(n)
        }
    }
}

impl fmt::Debug for PrescriptionNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrescriptionNumber({self})")
    }
}

impl FromStr for PrescriptionNumber {
    type Err = InvalidPrescriptionNumber;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrescriptionNumber::parse(s)
    }
}

impl Serialize for PrescriptionNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrescriptionNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PrescriptionNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for PrescriptionNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(
                "^[0-9A-Fa-f]{6}-?[0-9A-Za-z]{6}-?[0-9A-Fa-f]{5}[0-9A-Za-z+]$",
            ))
            .examples([serde_json::json!("83C40E-A23856-00123W")])
            .description(Some(
                "6 random hex digits, the hospital's 6-character code, a 5-hex-digit sequence \
                 and an ISO/IEC 7064 MOD 37-2 check character (as NHS EPS prescription ids)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PrescriptionNumber {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_nhs_example_number_passes_its_check() {
        // The example short-form id of the NHS EPS guidance.
        assert!(PrescriptionNumber::parse("83C40E-A23856-00123W").is_ok());
        assert!(PrescriptionNumber::parse("83c40e-a23856-00123w").is_ok());
        assert!(PrescriptionNumber::parse("83C40EA2385600123W").is_ok());
        assert!(PrescriptionNumber::parse("83C40E-A23856-00123X").is_err());
        assert!(PrescriptionNumber::parse("83C40E-A23856-0123W").is_err());
        assert!(PrescriptionNumber::parse("").is_err());
    }

    #[test]
    fn a_number_shows_in_three_groups() {
        let number = PrescriptionNumber::generate("A83008", 0x123).unwrap();
        let shown = number.to_string();
        assert_eq!(shown.len(), 20);
        assert_eq!(&shown[7..13], "A83008");
        assert_eq!(&shown[14..19], "00123");
        assert_eq!(PrescriptionNumber::parse(&shown).unwrap(), number);
    }

    #[test]
    fn hospital_codes_are_padded_and_checked() {
        assert_eq!(normalise_hospital_code("y123").as_deref(), Some("00Y123"));
        assert_eq!(normalise_hospital_code("ABCDEFG"), None);
        assert_eq!(normalise_hospital_code("A-1"), None);
        assert_eq!(normalise_hospital_code(""), None);
    }

    proptest! {
        #[test]
        fn any_single_mistyped_character_is_refused(
            code in "[0-9A-Z]{6}", sequence in 0u32..0x100000,
            position in 0usize..18, replacement in "[0-9A-Z]",
        ) {
            let number = PrescriptionNumber::generate(&code, sequence).unwrap();
            let mut chars: Vec<char> = number.compact().chars().collect();
            let new = replacement.chars().next().unwrap();
            prop_assume!(chars[position] != new);
            chars[position] = new;
            let typo: String = chars.into_iter().collect();
            prop_assert!(PrescriptionNumber::parse(&typo).is_err());
        }

        #[test]
        fn generated_numbers_parse_back(code in "[0-9A-Z]{1,6}", sequence in any::<u32>()) {
            let number = PrescriptionNumber::generate(&code, sequence).unwrap();
            prop_assert_eq!(PrescriptionNumber::parse(&number.to_string()).unwrap(), number);
        }

        #[test]
        fn parsing_anything_never_panics(input in ".{0,50}") {
            let _ = PrescriptionNumber::parse(&input);
        }
    }
}
