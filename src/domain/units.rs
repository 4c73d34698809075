//! Usage units: the backend's count of what a call consumed, as whole millionths.
//!
//! Why every sum fits: one record carries at most [`MAX_UNITS_PER_RECORD`] (10^15 millionths, an
//! `i64` with room to spare); a batch sums in `i128`; an hour of the aggregation table keeps whole
//! units and the millionths apart, so its `i64` of whole units overflows only past 9.2 × 10^9
//! records of the largest size in one subscription-hour (2.5 million a second for an hour, far past
//! what one writer commits); a period of 744 such hours is 6.9 × 10^21 units, inside a `Decimal`
//! with six places (7.9 × 10^22).

use rust_decimal::Decimal;

/// Decimal places a unit count may have.
pub const UNIT_SCALE: u32 = 6;

/// Millionths in one unit.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// The most units one record may carry.
pub const MAX_UNITS_PER_RECORD: i64 = 1_000_000_000;

/// Whole units and the millionths past them, as an hour of the aggregation table keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitUnits {
    pub whole: i64,
    /// `0..MICROS_PER_UNIT`.
    pub micros: i64,
}

impl SplitUnits {
    /// A sum of millionths split into whole units and the rest; `None` past `i64` whole units.
    pub fn from_micros(micros: i128) -> Option<Self> {
        let per_unit = i128::from(MICROS_PER_UNIT);
        Some(Self {
            whole: i64::try_from(micros.div_euclid(per_unit)).ok()?,
            micros: i64::try_from(micros.rem_euclid(per_unit)).ok()?,
        })
    }

    /// The decimal count these are.
    pub fn units(self) -> Decimal {
        let micros = i128::from(self.whole) * i128::from(MICROS_PER_UNIT) + i128::from(self.micros);
        Decimal::try_from_i128_with_scale(micros, UNIT_SCALE)
            .map(|units| units.normalize())
            .unwrap_or(Decimal::MAX)
    }
}

/// A non-negative count of at most [`MAX_UNITS_PER_RECORD`] with at most six decimal places, as
/// millionths; `None` when it is not one.
pub fn micros_from_units(units: Decimal) -> Option<i64> {
    if units.is_sign_negative()
        || units.normalize().scale() > UNIT_SCALE
        || units > Decimal::from(MAX_UNITS_PER_RECORD)
    {
        return None;
    }
    let micros = units.checked_mul(Decimal::from(MICROS_PER_UNIT))?;
    i64::try_from(micros).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn units_round_trip_through_millionths() {
        assert_eq!(micros_from_units(dec!(2.5)), Some(2_500_000));
        assert_eq!(
            SplitUnits::from_micros(2_500_000).unwrap().units(),
            dec!(2.5)
        );
        assert_eq!(micros_from_units(dec!(-1)), None);
        assert_eq!(micros_from_units(dec!(0.0000001)), None);
        assert_eq!(micros_from_units(dec!(2.5000000)), Some(2_500_000));
    }

    #[test]
    fn a_record_past_the_bound_is_refused() {
        assert_eq!(
            micros_from_units(Decimal::from(MAX_UNITS_PER_RECORD)),
            Some(MAX_UNITS_PER_RECORD * MICROS_PER_UNIT)
        );
        assert_eq!(micros_from_units(dec!(1000000000.000001)), None);
        assert_eq!(micros_from_units(dec!(9000000000000)), None);
    }

    #[test]
    fn the_largest_hour_and_period_stay_exact() {
        let hour = SplitUnits {
            whole: i64::MAX,
            micros: MICROS_PER_UNIT - 1,
        };
        assert_eq!(hour.units().to_string(), "9223372036854775807.999999");
        let mut period = Decimal::ZERO;
        for _ in 0..744 {
            period = period.checked_add(hour.units()).unwrap();
        }
        assert_eq!(period.to_string(), "6862188795419953201151.999256");
    }
}
