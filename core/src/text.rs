//! Text as clients send it: every text field of every request is a [`Text`], whose
//! deserialisation refuses what no field needs, so a handler only ever sees text that passed.
//!
//! The rule, per field type `Text<MIN, MAX, LINES>`:
//! - between `MIN` and `MAX` characters (Unicode scalar values, as JSON Schema counts them),
//!   counted as sent — before any trimming a use case does;
//! - with `MIN ≥ 1`, at least one character that is not white space;
//! - no control characters (Unicode `Cc`: U+0000–U+001F, U+007F–U+009F) — a NUL byte breaks
//!   PostgreSQL text and nothing a person types needs one — except, in multi-line text
//!   (`LINES = true`, free-text notes), tab, line feed and carriage return.
//!
//! A refusal has a stable code, the first word of the deserialiser's message, which the HTTP
//! layer puts in the error envelope with the field's path: `text_empty`, `text_too_long`,
//! `text_control_character`. Each type's OpenAPI schema declares `minLength`, `maxLength` and a
//! `pattern` for the same rule, so the document tells clients what the server enforces.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Text of `MIN` to `MAX` characters; one line unless `LINES`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Text<const MIN: usize, const MAX: usize, const LINES: bool = false>(String);

/// Free text over several lines (tab, line feed and carriage return allowed).
pub type MultilineText<const MIN: usize, const MAX: usize> = Text<MIN, MAX, true>;

/// Names people and organisations go by (parties, card holders, commodities, drugs).
pub type Name = Text<1, { crate::parties::MAX_DISPLAY_NAME_CHARS }>;
/// A password as typed at login.
pub type Password = Text<1, { crate::parties::MAX_PASSWORD_CHARS }>;
/// A password chosen for a new account.
pub type NewPassword =
    Text<{ crate::parties::MIN_PASSWORD_CHARS }, { crate::parties::MAX_PASSWORD_CHARS }>;
/// Short tokens: codes, rates, references.
pub type Token = Text<1, 64>;
/// Optional text on one line, such as a manufacturer.
pub type ShortText = Text<0, 200>;
/// Free text over several lines: a reason, a mediator's note.
pub type Note = MultilineText<0, { crate::escrow::MAX_REASON_CHARS }>;

/// The code a phone received.
pub type ChallengeCode = Text<1, 16>;
pub type Email = Text<1, { crate::cards::MAX_EMAIL_CHARS }>;
/// A postal address, over several lines if need be.
pub type Address = MultilineText<1, { crate::cards::MAX_ADDRESS_CHARS }>;
/// A reason that must be given (a dispute).
pub type Reason = MultilineText<1, { crate::escrow::MAX_REASON_CHARS }>;
pub type WebhookUrl = Text<1, { crate::webhooks::MAX_URL_CHARS }>;
/// Why an operator closed a bank difference by hand (recorded with it).
pub type ResolutionReason = MultilineText<1, { crate::banking::reconciliation::MAX_NOTE_CHARS }>;
/// An account holder's name as the bank knows it.
pub type AccountHolderName = Text<1, { crate::banking::destinations::MAX_HOLDER_NAME_CHARS }>;
/// What a payer writes on a bank transfer (ISO 20022 unstructured remittance: 140 characters).
pub type Remittance = Text<0, 140>;

/// Why text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    Empty {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    ControlCharacter,
    /// A character outside the field's set (usernames).
    Character {
        allowed: &'static str,
    },
}

impl TextError {
    /// The stable code for the error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Empty { .. } => "text_empty",
            TextError::TooLong { .. } => "text_too_long",
            TextError::ControlCharacter => "text_control_character",
            TextError::Character { .. } => "text_invalid_character",
        }
    }
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty { min: 1 } => f.write_str("must not be empty or only white space"),
            TextError::Empty { min } => write!(
                f,
                "must have at least {min} characters, not only white space"
            ),
            TextError::TooLong { max } => write!(f, "must have at most {max} characters"),
            TextError::ControlCharacter => f.write_str("must not contain control characters"),
            TextError::Character { allowed } => write!(f, "may only contain {allowed}"),
        }
    }
}

impl std::error::Error for TextError {}

/// The codes a deserialisation message may start with (text and amounts), for the HTTP layer.
pub const FIELD_ERROR_CODES: &[&str] = &[
    "text_empty",
    "text_too_long",
    "text_control_character",
    "text_invalid_character",
    "amount_invalid",
    "amount_scale",
    "amount_too_large",
    "amount_negative",
];

/// The stable code a deserialisation message carries as its first word (`code: …`), if any.
pub fn field_error_code(message: &str) -> Option<&'static str> {
    let (first, _) = message.split_once(':')?;
    FIELD_ERROR_CODES
        .iter()
        .copied()
        .find(|code| *code == first)
}

/// White space as JSON Schema's `\s` (ECMA-262) reads it: Unicode white space and U+FEFF.
fn blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

fn allowed(c: char, lines: bool) -> bool {
    !c.is_control() || (lines && matches!(c, '\t' | '\n' | '\r'))
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> Text<MIN, MAX, LINES> {
    pub fn parse(value: String) -> Result<Self, TextError> {
        let length = value.chars().count();
        if length > MAX {
            return Err(TextError::TooLong { max: MAX });
        }
        if !value.chars().all(|c| allowed(c, LINES)) {
            return Err(TextError::ControlCharacter);
        }
        if length < MIN || (MIN > 0 && value.chars().all(blank)) {
            return Err(TextError::Empty { min: MIN });
        }
        Ok(Text(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The JSON Schema `pattern` for this rule (ECMA-262, as OpenAPI uses).
    pub fn pattern() -> &'static str {
        match (LINES, MIN > 0) {
            (false, false) => r"^[^\u0000-\u001F\u007F-\u009F]*$",
            (false, true) => {
                r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
            }
            (true, false) => r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$",
            (true, true) => {
                r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
            }
        }
    }
}

/// Empty text, where a field may be empty.
impl<const MAX: usize, const LINES: bool> Default for Text<0, MAX, LINES> {
    fn default() -> Self {
        Text(String::new())
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> std::ops::Deref
    for Text<MIN, MAX, LINES>
{
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> AsRef<str> for Text<MIN, MAX, LINES> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> From<Text<MIN, MAX, LINES>> for String {
    fn from(text: Text<MIN, MAX, LINES>) -> String {
        text.0
    }
}

/// Text may be a name, an address or a note: `Debug` does not print it (logs stay free of
/// personal data).
impl<const MIN: usize, const MAX: usize, const LINES: bool> fmt::Debug for Text<MIN, MAX, LINES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} chars)", self.0.chars().count())
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> TryFrom<String>
    for Text<MIN, MAX, LINES>
{
    type Error = TextError;

    fn try_from(value: String) -> Result<Self, TextError> {
        Text::parse(value)
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> TryFrom<&str>
    for Text<MIN, MAX, LINES>
{
    type Error = TextError;

    fn try_from(value: &str) -> Result<Self, TextError> {
        Text::parse(value.to_owned())
    }
}

impl<'de, const MIN: usize, const MAX: usize, const LINES: bool> Deserialize<'de>
    for Text<MIN, MAX, LINES>
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Text::parse(value)
            .map_err(|error| serde::de::Error::custom(format!("{}: {error}", error.code())))
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> utoipa::PartialSchema
    for Text<MIN, MAX, LINES>
{
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let description = if LINES {
            "Text: no control characters except tab, line feed and carriage return."
        } else {
            "Text on one line: no control characters."
        };
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(MIN))
            .max_length(Some(MAX))
            .pattern(Some(Self::pattern()))
            .description(Some(description))
            .into()
    }
}

impl<const MIN: usize, const MAX: usize, const LINES: bool> utoipa::ToSchema
    for Text<MIN, MAX, LINES>
{
    fn name() -> Cow<'static, str> {
        let kind = if LINES { "MultilineText" } else { "Text" };
        Cow::Owned(format!("{kind}_{MIN}_{MAX}"))
    }
}

/// A login name: 1 to 64 letters, digits, `.`, `_`, `-` or `@` (case does not matter).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

const USERNAME_CHARACTERS: &str = "letters, digits, '.', '_', '-' and '@'";

impl Username {
    pub const PATTERN: &'static str = "^[A-Za-z0-9._@-]+$";

    pub fn parse(value: String) -> Result<Username, TextError> {
        let text = Text::<1, { crate::parties::MAX_USERNAME_CHARS }>::parse(value)?;
        if text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        {
            Ok(Username(text.into_string()))
        } else {
            Err(TextError::Character {
                allowed: USERNAME_CHARACTERS,
            })
        }
    }
}

impl std::ops::Deref for Username {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Username> for String {
    fn from(username: Username) -> String {
        username.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Username(…)")
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Username::parse(String::deserialize(deserializer)?)
            .map_err(|error| serde::de::Error::custom(format!("{}: {error}", error.code())))
    }
}

impl utoipa::PartialSchema for Username {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(crate::parties::MAX_USERNAME_CHARS))
            .pattern(Some(Username::PATTERN))
            .description(Some(
                "A login name: letters, digits, '.', '_', '-' and '@'; case does not matter.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Username {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    type Name = Text<1, 10>;
    type Optional = Text<0, 10>;
    type Note = MultilineText<0, 20>;

    fn code<T: for<'de> Deserialize<'de>>(json: &str) -> Option<&'static str> {
        serde_json::from_str::<T>(json)
            .err()
            .and_then(|e| field_error_code(&e.to_string()))
    }

    #[test]
    fn text_within_its_range_is_taken_as_sent() {
        let name: Name = serde_json::from_str(r#"" Åsa Ñ 🙂 ""#).unwrap();
        assert_eq!(name.as_str(), " Åsa Ñ 🙂 ");
        assert_eq!(serde_json::to_string(&name).unwrap(), r#"" Åsa Ñ 🙂 ""#);
        let ten: Name = serde_json::from_str(r#""ééééééééé🙂""#).unwrap();
        assert_eq!(ten.chars().count(), 10);
        let empty: Optional = serde_json::from_str(r#""""#).unwrap();
        assert!(empty.is_empty());
        let note: Note = serde_json::from_str(r#""line one\n\tline two\r\n""#).unwrap();
        assert!(note.contains('\n'));
    }

    #[test]
    fn empty_blank_and_long_text_is_refused_with_its_code() {
        assert_eq!(code::<Name>(r#""""#), Some("text_empty"));
        assert_eq!(code::<Name>(r#""  \u00a0 ""#), Some("text_empty"));
        assert_eq!(code::<Name>(r#""abcdefghijk""#), Some("text_too_long"));
        let long = format!("\"{}\"", "x".repeat(60_000));
        assert_eq!(code::<Name>(&long), Some("text_too_long"));
        assert_eq!(code::<Optional>(&long), Some("text_too_long"));
    }

    #[test]
    fn control_characters_are_refused_and_notes_keep_only_tab_and_line_breaks() {
        for json in [
            r#""a\u0000b""#,
            r#""a\u0007""#,
            r#""a\u001b[31m""#,
            r#""a\u007f""#,
            r#""a\u0085""#,
            r#""a\nb""#,
            r#""a\tb""#,
        ] {
            assert_eq!(code::<Name>(json), Some("text_control_character"), "{json}");
        }
        assert_eq!(code::<Note>(r#""a\u0000""#), Some("text_control_character"));
        assert_eq!(code::<Note>(r#""a\u000b""#), Some("text_control_character"));
        assert_eq!(code::<Note>(r#""a\u009f""#), Some("text_control_character"));
    }

    #[test]
    fn a_username_keeps_to_its_characters() {
        assert!(Username::parse("Sup-1.a_b@x".to_owned()).is_ok());
        for bad in ["has space", "ünï", "a/b", "", "\u{0}"] {
            assert!(Username::parse(bad.to_owned()).is_err(), "{bad:?}");
        }
        let error = serde_json::from_str::<Username>(r#""a b""#).unwrap_err();
        assert_eq!(
            field_error_code(&error.to_string()),
            Some("text_invalid_character")
        );
    }

    #[test]
    fn the_schema_declares_the_same_rule() {
        let schema = serde_json::to_value(<Name as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], 10);
        assert_eq!(schema["pattern"], Name::pattern());
        assert_eq!(<Note as utoipa::ToSchema>::name(), "MultilineText_0_20");
    }

    /// A tiny matcher for the patterns' shape (`^[^X]*[^\sX][^X]*$`), to check the pattern
    /// against the parser on random input without a regex engine.
    fn matches_pattern(value: &str, lines: bool, required: bool) -> bool {
        let forbidden = |c: char| !allowed(c, lines);
        if value.chars().any(forbidden) {
            return false;
        }
        !required || value.chars().any(|c| !blank(c))
    }

    proptest! {
        #[test]
        fn the_parser_and_the_pattern_agree(value in "\\PC{0,3}[\\x00-\\x20\\u{7f}-\\u{a0} a\\n\\t]{0,4}") {
            let within = |min: usize, max: usize| {
                let n = value.chars().count();
                n >= min && n <= max
            };
            prop_assert_eq!(
                Name::parse(value.clone()).is_ok(),
                within(1, 10) && matches_pattern(&value, false, true)
            );
            prop_assert_eq!(
                Optional::parse(value.clone()).is_ok(),
                within(0, 10) && matches_pattern(&value, false, false)
            );
            prop_assert_eq!(
                Note::parse(value.clone()).is_ok(),
                within(0, 20) && matches_pattern(&value, true, false)
            );
        }
    }
}
