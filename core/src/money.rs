//! Exact money: a non-negative decimal amount in one currency, at that currency's scale.
//!
//! Built only through [`Money::new`] / [`Money::from_minor`], so a value that exists is valid.
//! Arithmetic is checked and same-currency only; rounding happens only in
//! [`Money::share_rounded_half_up`].

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// The largest amount Holdfast accepts, in minor units (10^15: a quadrillion cents or won).
/// Far below `i64::MAX`, so sums of many amounts cannot overflow the storage type.
pub const MAX_MINOR_UNITS: i64 = 1_000_000_000_000_000;

/// The grammar of an amount in JSON (ECMA-262, for the OpenAPI document): no sign, spaces or
/// exponent, no leading zeros, at most [`MAX_AMOUNT_DIGITS`] digits before the point and at
/// most two after it — the largest scale of any [`Currency`]; a currency with fewer decimals
/// (KRW, JPY: none) allows fewer, which [`Money::parse`] checks.
pub const AMOUNT_PATTERN: &str = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,2})?$";

/// Digits before the point: [`MAX_MINOR_UNITS`] in a currency without decimals has 16.
pub const MAX_AMOUNT_DIGITS: usize = 16;

/// ISO 4217 currencies Holdfast settles in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Currency {
    KRW,
    USD,
    EUR,
    GBP,
    JPY,
}

impl Currency {
    pub const ALL: [Currency; 5] = [
        Currency::KRW,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
        Currency::JPY,
    ];

    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn scale(self) -> u32 {
        match self {
            Currency::KRW | Currency::JPY => 0,
            Currency::USD | Currency::EUR | Currency::GBP => 2,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::KRW => "KRW",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
            Currency::JPY => "JPY",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| MoneyError::UnknownCurrency(s.chars().take(8).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must not be negative")]
    Negative,
    #[error("amount has more decimal places than {currency} allows ({scale})")]
    ExcessScale { currency: Currency, scale: u32 },
    #[error("amount exceeds the maximum Holdfast accepts")]
    TooLarge,
    #[error("currencies differ: {left} and {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("result would be negative")]
    WouldBeNegative,
    #[error("unknown or unsupported currency '{0}'")]
    UnknownCurrency(String),
    #[error(
        "'{0}' is not an amount: digits, optionally '.' and decimals (no sign, spaces or exponent)"
    )]
    NotANumber(String),
    #[error("rate must be between 0 and 1")]
    RateOutOfRange,
}

impl MoneyError {
    /// The stable code for the error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::Negative | MoneyError::WouldBeNegative => "amount_negative",
            MoneyError::ExcessScale { .. } => "amount_scale",
            MoneyError::TooLarge => "amount_too_large",
            MoneyError::CurrencyMismatch { .. } => "currency_mismatch",
            MoneyError::UnknownCurrency(_) => "currency_unsupported",
            MoneyError::NotANumber(_) => "amount_invalid",
            MoneyError::RateOutOfRange => "rate_out_of_range",
        }
    }
}

/// A non-negative amount of one currency, held at exactly the currency's scale.
/// Kept as whole minor units (cents, won): every constructor checks the amount fits, so
/// reading it back never fails and never has to guess.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// Accepts `amount` only if it is non-negative, has no more decimals than the currency
    /// allows, and is within [`MAX_MINOR_UNITS`]. Trailing zeros beyond the scale are fine
    /// (`12.500` USD is `12.50` USD).
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(MoneyError::Negative);
        }
        let scale = currency.scale();
        let normalized = amount.normalize();
        if normalized.scale() > scale {
            return Err(MoneyError::ExcessScale { currency, scale });
        }
        let mut exact = normalized.abs();
        exact.rescale(scale);
        let minor = i64::try_from(exact.mantissa()).map_err(|_| MoneyError::TooLarge)?;
        Money::from_minor(minor, currency)
    }

    /// Parses a decimal string in the one grammar amounts have ([`AMOUNT_PATTERN`]):
    /// `0` or digits without a leading zero, then optionally `.` and at most the currency's
    /// number of decimals (`"12.50"`, `"12.5"`, `"0.05"`, `"12000"`). No sign, no spaces, no
    /// exponent, no `.5` or `5.`.
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        let not_a_number = || MoneyError::NotANumber(amount.chars().take(40).collect());
        let (whole, fraction) = match amount.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (amount, None),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let whole_ok = digits(whole) && (whole == "0" || !whole.starts_with('0'));
        if !whole_ok || !fraction.is_none_or(digits) {
            return Err(not_a_number());
        }
        let scale = currency.scale();
        if fraction.is_some_and(|f| f.len() > scale as usize) {
            return Err(MoneyError::ExcessScale { currency, scale });
        }
        if whole.len() > MAX_AMOUNT_DIGITS {
            return Err(MoneyError::TooLarge);
        }
        let decimal = Decimal::from_str_exact(amount).map_err(|_| not_a_number())?;
        Money::new(decimal, currency)
    }

    pub fn from_minor(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        if minor > MAX_MINOR_UNITS {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { minor, currency })
    }

    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// The amount at the currency's scale (`12.50` USD, `12000` KRW).
    pub fn amount(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.scale())
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.minor == 0
    }

    /// The amount in minor units (cents, won): what the database stores.
    pub fn minor(&self) -> i64 {
        self.minor
    }

    /// Orders two amounts of one currency; amounts in two currencies do not compare (an
    /// error, never an answer read off their digits).
    pub fn checked_cmp(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.minor.cmp(&other.minor))
    }

    /// Whether this amount is more than `other`, of the same currency.
    pub fn exceeds(&self, other: &Money) -> Result<bool, MoneyError> {
        Ok(self.checked_cmp(other)?.is_gt())
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = self
            .minor()
            .checked_add(other.minor())
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(sum, self.currency)
    }

    /// `self - other`; an error rather than a negative result.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let difference = self.minor() - other.minor();
        if difference < 0 {
            return Err(MoneyError::WouldBeNegative);
        }
        Money::from_minor(difference, self.currency)
    }

    /// `self × quantity`, checked.
    pub fn checked_mul(&self, quantity: u32) -> Result<Money, MoneyError> {
        let product = self
            .minor()
            .checked_mul(i64::from(quantity))
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(product, self.currency)
    }

    /// The share `rate` (0 ≤ rate ≤ 1) of this amount, rounded half-up to the currency's
    /// scale. Used for commissions: the payout is `self - share`, so the two always add up.
    pub fn share_rounded_half_up(&self, rate: Decimal) -> Result<Money, MoneyError> {
        if rate.is_sign_negative() || rate > Decimal::ONE {
            return Err(MoneyError::RateOutOfRange);
        }
        let raw = self
            .amount()
            .checked_mul(rate)
            .ok_or(MoneyError::TooLarge)?;
        let rounded = raw.round_dp_with_strategy(
            self.currency.scale(),
            RoundingStrategy::MidpointAwayFromZero,
        );
        Money::new(rounded, self.currency)
    }

    /// `self × part / whole`, rounded half-up: the share of a fee or commission that belongs to
    /// a part of the amount it was computed on. Never more than `self` when `part ≤ whole`.
    pub fn prorate(&self, part: &Money, whole: &Money) -> Result<Money, MoneyError> {
        self.same_currency(part)?;
        self.same_currency(whole)?;
        if whole.is_zero() || part.exceeds(whole)? {
            return Err(MoneyError::RateOutOfRange);
        }
        let numerator = i128::from(self.minor()) * i128::from(part.minor());
        let denominator = i128::from(whole.minor());
        let rounded = (2 * numerator + denominator) / (2 * denominator);
        Money::from_minor(
            i64::try_from(rounded).map_err(|_| MoneyError::TooLarge)?,
            self.currency,
        )
    }

    pub fn min(self, other: Money) -> Result<Money, MoneyError> {
        Ok(if other.exceeds(&self)? { self } else { other })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.amount(), self.currency)
    }
}

/// JSON form: `{"amount": "12.50", "currency": "USD"}` — the amount is a string so no client
/// ever reads it through a float.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = Money)]
struct MoneyJson {
    /// Decimal string, at most the currency's number of decimals (two for USD, EUR, GBP;
    /// none for KRW, JPY), never negative: no sign, spaces, exponent or leading zeros.
    #[schema(
        example = "12.50",
        pattern = r"^(0|[1-9][0-9]{0,15})(\.[0-9]{1,2})?$",
        min_length = 1,
        max_length = 19
    )]
    amount: String,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyJson {
            amount: self.amount().to_string(),
            currency: self.currency,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = MoneyJson::deserialize(deserializer)?;
        // The code first: the HTTP layer reads it from the message.
        Money::parse(&json.amount, json.currency)
            .map_err(|error| serde::de::Error::custom(format!("{}: {error}", error.code())))
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <MoneyJson as utoipa::PartialSchema>::schema()
    }
}

impl ToSchema for Money {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Money")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn an_amount_is_held_at_the_currency_scale() {
        let money = Money::new(dec!(12.5), Currency::USD).unwrap();
        assert_eq!(money.amount().to_string(), "12.50");
        assert_eq!(money.minor(), 1250);
        let won = Money::new(dec!(12000.000), Currency::KRW).unwrap();
        assert_eq!(won.amount().to_string(), "12000");
    }

    #[test]
    fn amounts_of_two_currencies_do_not_compare() {
        let dollars = Money::parse("5.00", Currency::USD).unwrap();
        let won = Money::parse("500", Currency::KRW).unwrap();
        assert!(matches!(
            dollars.checked_cmp(&won),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert!(dollars.exceeds(&won).is_err());
        assert!(dollars.min(won).is_err());
        let more = Money::parse("5.01", Currency::USD).unwrap();
        assert_eq!(more.exceeds(&dollars), Ok(true));
        assert_eq!(dollars.exceeds(&dollars), Ok(false));
        assert_eq!(dollars.min(more), Ok(dollars));
    }

    #[test]
    fn the_largest_amount_reads_back_exactly_in_minor_units() {
        let most = Money::from_minor(MAX_MINOR_UNITS, Currency::USD).unwrap();
        assert_eq!(most.minor(), MAX_MINOR_UNITS);
        assert_eq!(Money::new(most.amount(), Currency::USD), Ok(most));
        assert_eq!(
            Money::new(most.amount() + Decimal::new(1, 2), Currency::USD),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn negative_amounts_and_excess_decimals_are_rejected() {
        assert_eq!(
            Money::new(dec!(-1), Currency::USD),
            Err(MoneyError::Negative)
        );
        assert!(matches!(
            Money::new(dec!(1.005), Currency::USD),
            Err(MoneyError::ExcessScale { .. })
        ));
        assert!(matches!(
            Money::new(dec!(1.5), Currency::KRW),
            Err(MoneyError::ExcessScale { .. })
        ));
        assert_eq!(
            Money::from_minor(MAX_MINOR_UNITS + 1, Currency::USD),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_negative_results() {
        let usd = Money::parse("10.00", Currency::USD).unwrap();
        let eur = Money::parse("10.00", Currency::EUR).unwrap();
        assert!(matches!(
            usd.checked_add(&eur),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let more = Money::parse("10.01", Currency::USD).unwrap();
        assert_eq!(usd.checked_sub(&more), Err(MoneyError::WouldBeNegative));
    }

    #[test]
    fn json_amounts_are_strings_and_are_validated_on_the_way_in() {
        let money = Money::parse("1234.5", Currency::USD).unwrap();
        let json = serde_json::to_string(&money).unwrap();
        assert_eq!(json, r#"{"amount":"1234.50","currency":"USD"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, money);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"-1","currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1e3","currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"XXX"}"#).is_err());
    }

    #[test]
    fn a_share_rounds_half_up_to_the_minor_unit() {
        let price = Money::parse("10.05", Currency::USD).unwrap();
        // 10.05 × 0.05 = 0.5025 → 0.50
        assert_eq!(price.share_rounded_half_up(dec!(0.05)).unwrap().minor(), 50);
        let won = Money::parse("15", Currency::KRW).unwrap();
        // 15 × 0.1 = 1.5 → 2
        assert_eq!(won.share_rounded_half_up(dec!(0.1)).unwrap().minor(), 2);
        assert!(won.share_rounded_half_up(dec!(1.1)).is_err());
    }

    #[test]
    fn amounts_follow_one_strict_grammar() {
        for good in ["0", "0.5", "0.05", "12", "12.5", "12.50", "1000000"] {
            assert!(Money::parse(good, Currency::USD).is_ok(), "{good}");
        }
        for bad in [
            "", " 1", "1 ", " ", "+1", "-1", "-0", "1e3", "1E3", "0x10", ".5", "5.", "01", "00",
            "1,000", "1_000", "１", "NaN", "inf", "1..2", "1.2.3", "\u{0}1", "1\n",
        ] {
            assert!(
                matches!(
                    Money::parse(bad, Currency::USD),
                    Err(MoneyError::NotANumber(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Money::parse("12.500", Currency::USD),
            Err(MoneyError::ExcessScale { .. })
        ));
        assert!(matches!(
            Money::parse("12.0", Currency::KRW),
            Err(MoneyError::ExcessScale { .. })
        ));
        assert_eq!(
            Money::parse("10000000000000000", Currency::KRW),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn the_documented_pattern_covers_every_currency_scale() {
        let largest = Currency::ALL.iter().map(|c| c.scale()).max().unwrap();
        assert!(AMOUNT_PATTERN.ends_with(&format!("{{1,{largest}}})?$")));
        assert_eq!(
            MAX_MINOR_UNITS.to_string().len(),
            MAX_AMOUNT_DIGITS,
            "the largest amount in a currency without decimals"
        );
        let schema = serde_json::to_value(<Money as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["properties"]["amount"]["pattern"], AMOUNT_PATTERN);
    }

    #[test]
    fn a_refused_json_amount_carries_its_code() {
        let error = serde_json::from_str::<Money>(r#"{"amount":" 1.00","currency":"USD"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("amount_invalid:"), "{error}");
        let error = serde_json::from_str::<Money>(r#"{"amount":"1.001","currency":"USD"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("amount_scale:"), "{error}");
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(Currency::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn minor_units_round_trip(minor in 0..=MAX_MINOR_UNITS, currency in currency()) {
            let money = Money::from_minor(minor, currency).unwrap();
            prop_assert_eq!(money.minor(), minor);
            let reparsed = Money::parse(&money.amount().to_string(), currency).unwrap();
            prop_assert_eq!(reparsed, money);
        }

        #[test]
        fn parse_accepts_exactly_the_grammar(text in "[ +\\-0-9.eE]{0,8}") {
            let grammar = {
                let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
                let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
                digits(whole) && (whole == "0" || !whole.starts_with('0'))
                    && fraction.is_none_or(|f| digits(f) && f.len() <= 2)
            };
            prop_assert_eq!(Money::parse(&text, Currency::USD).is_ok(), grammar, "{:?}", text);
        }

        #[test]
        fn a_share_and_its_remainder_always_add_up(
            minor in 0..=MAX_MINOR_UNITS,
            bps in 0u32..=10_000,
            currency in currency(),
        ) {
            let money = Money::from_minor(minor, currency).unwrap();
            let share = money.share_rounded_half_up(Decimal::new(i64::from(bps), 4)).unwrap();
            let rest = money.checked_sub(&share).unwrap();
            prop_assert_eq!(rest.checked_add(&share).unwrap(), money);
        }

        #[test]
        fn a_prorated_share_never_exceeds_the_whole_share(
            share in 0..=1_000_000_000i64,
            extra in 0..=1_000_000_000i64,
            part in 0..=1_000_000_000i64,
        ) {
            let whole = Money::from_minor(share + extra + 1, Currency::USD).unwrap();
            let part = Money::from_minor(part.min(whole.minor()), Currency::USD).unwrap();
            let fee = Money::from_minor(share, Currency::USD).unwrap();
            let prorated = fee.prorate(&part, &whole).unwrap();
            prop_assert!(prorated.minor() <= fee.minor());
            prop_assert!(prorated.minor() <= part.minor());
            if part == whole {
                prop_assert_eq!(prorated, fee);
            }
        }

        #[test]
        fn subtraction_never_goes_below_zero(a in 0..=MAX_MINOR_UNITS, b in 0..=MAX_MINOR_UNITS) {
            let left = Money::from_minor(a, Currency::USD).unwrap();
            let right = Money::from_minor(b, Currency::USD).unwrap();
            match left.checked_sub(&right) {
                Ok(difference) => prop_assert_eq!(difference.minor(), a - b),
                Err(error) => {
                    prop_assert_eq!(error, MoneyError::WouldBeNegative);
                    prop_assert!(a < b);
                }
            }
        }
    }
}
