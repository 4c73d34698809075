//! Usage units: the backend's count of what a call consumed, stored as whole millionths.

use rust_decimal::Decimal;

/// Decimal places a unit count may have.
pub const UNIT_SCALE: u32 = 6;

/// Stored millionths as the decimal count they are.
pub fn units_from_micros(micros: i64) -> Decimal {
    Decimal::new(micros, UNIT_SCALE).normalize()
}

/// A non-negative count with at most six decimal places, as millionths; `None` when it is not one.
pub fn micros_from_units(units: Decimal) -> Option<i64> {
    if units.is_sign_negative() || units.scale() > UNIT_SCALE {
        return None;
    }
    let micros = units.checked_mul(Decimal::from(1_000_000))?;
    i64::try_from(micros).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn units_round_trip_through_millionths() {
        assert_eq!(micros_from_units(dec!(2.5)), Some(2_500_000));
        assert_eq!(units_from_micros(2_500_000), dec!(2.5));
        assert_eq!(micros_from_units(dec!(-1)), None);
        assert_eq!(micros_from_units(dec!(0.0000001)), None);
    }
}
