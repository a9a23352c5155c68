//! Rates — commissions and card fees — as whole basis points (1 bp = 0.01 %), never a bare
//! integer whose unit a reader has to guess. A rate is 0 to 10 000 bp (0 to 100 %); a use that
//! needs less (a commission must leave the payee something) says so where it checks.

use crate::money::{Money, MoneyError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct BasisPoints(u16);

impl BasisPoints {
    pub const ZERO: BasisPoints = BasisPoints(0);
    /// The whole amount.
    pub const WHOLE: BasisPoints = BasisPoints(10_000);

    /// For a constant: a rate beyond 10 000 bp does not compile.
    pub const fn of(basis_points: u16) -> BasisPoints {
        assert!(
            basis_points <= 10_000,
            "a rate is at most 10 000 basis points"
        );
        BasisPoints(basis_points)
    }

    /// From a stored or configured count of basis points: 0 to 10 000.
    pub fn new(basis_points: i32) -> Result<BasisPoints, MoneyError> {
        u16::try_from(basis_points)
            .ok()
            .filter(|bp| *bp <= 10_000)
            .map(BasisPoints)
            .ok_or(MoneyError::RateOutOfRange)
    }

    /// From a fraction such as `0.035` (3.5 %): 0 to 1, at most four decimals, nothing
    /// rounded away.
    pub fn from_fraction(rate: Decimal) -> Result<BasisPoints, MoneyError> {
        let rate = rate.normalize();
        if rate.is_sign_negative() || rate > Decimal::ONE || rate.scale() > 4 {
            return Err(MoneyError::RateOutOfRange);
        }
        let basis_points = rate * Decimal::from(10_000);
        i32::try_from(basis_points.trunc().mantissa())
            .map_err(|_| MoneyError::RateOutOfRange)
            .and_then(BasisPoints::new)
    }

    pub fn get(self) -> i32 {
        i32::from(self.0)
    }

    /// As a fraction: 250 bp is 0.0250.
    pub fn as_fraction(self) -> Decimal {
        Decimal::new(i64::from(self.0), 4)
    }

    /// What is left for the payee: 10 000 − self.
    pub fn remainder(self) -> BasisPoints {
        BasisPoints(10_000 - self.0)
    }
}

impl TryFrom<i32> for BasisPoints {
    type Error = MoneyError;
    fn try_from(value: i32) -> Result<Self, Self::Error> {
        BasisPoints::new(value)
    }
}

impl From<BasisPoints> for i32 {
    fn from(rate: BasisPoints) -> i32 {
        rate.get()
    }
}

impl fmt::Display for BasisPoints {
    /// As a fraction, the way rates are written in requests: `0.035`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_fraction().normalize())
    }
}

impl fmt::Debug for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bp", self.0)
    }
}

impl Money {
    /// The share `rate` of this amount, rounded half up to the currency's scale (a commission
    /// or a fee: the payee gets `self − share`, so the two always add up).
    pub fn share_at(&self, rate: BasisPoints) -> Result<Money, MoneyError> {
        self.share_rounded_half_up(rate.as_fraction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use rust_decimal_macros::dec;

    #[test]
    fn a_rate_is_zero_to_ten_thousand_basis_points() {
        assert_eq!(BasisPoints::new(0), Ok(BasisPoints::ZERO));
        assert_eq!(BasisPoints::new(10_000), Ok(BasisPoints::WHOLE));
        assert_eq!(BasisPoints::new(-1), Err(MoneyError::RateOutOfRange));
        assert_eq!(BasisPoints::new(10_001), Err(MoneyError::RateOutOfRange));
    }

    #[test]
    fn a_fraction_converts_exactly_or_not_at_all() {
        assert_eq!(
            BasisPoints::from_fraction(dec!(0.035)).map(BasisPoints::get),
            Ok(350)
        );
        assert_eq!(
            BasisPoints::from_fraction(dec!(0.05000)).map(BasisPoints::get),
            Ok(500)
        );
        assert_eq!(
            BasisPoints::from_fraction(dec!(1)).map(BasisPoints::get),
            Ok(10_000)
        );
        assert!(BasisPoints::from_fraction(dec!(0.00005)).is_err());
        assert!(BasisPoints::from_fraction(dec!(-0.01)).is_err());
        assert!(BasisPoints::from_fraction(dec!(1.0001)).is_err());
        assert_eq!(BasisPoints::new(350).unwrap().to_string(), "0.035");
    }

    #[test]
    fn a_share_and_its_remainder_add_up_to_the_amount() {
        let price = Money::parse("19.99", Currency::USD).unwrap();
        for bp in [0, 1, 250, 333, 5_000, 9_999, 10_000] {
            let rate = BasisPoints::new(bp).unwrap();
            let share = price.share_at(rate).unwrap();
            let rest = price.checked_sub(&share).unwrap();
            assert_eq!(share.checked_add(&rest).unwrap(), price, "{rate:?}");
            assert_eq!(rate.remainder().get() + rate.get(), 10_000);
        }
    }

    #[test]
    fn a_rate_travels_in_json_as_its_basis_points() {
        let rate = BasisPoints::new(250).unwrap();
        assert_eq!(serde_json::to_string(&rate).unwrap(), "250");
        assert!(serde_json::from_str::<BasisPoints>("10001").is_err());
    }
}
