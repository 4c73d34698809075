//! Figures as a reader expects them in a line description: `1,234,567`, `2026-11-03`, `7.5%`.
//! Each is set in a stack buffer and pushed in one piece: descriptions are written on every
//! rating, and the general formatter costs more than the pricing itself (`benches/rating.rs`).

use super::describe::Piece;
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// A quantity with thousands separators: `1234567.5` reads `1,234,567.5`.
pub(super) struct Grouped(pub(super) Decimal);

impl From<u64> for Grouped {
    fn from(count: u64) -> Self {
        Self(Decimal::from(count))
    }
}

impl Piece for Grouped {
    fn push_to(&self, text: &mut String) {
        // Counts are whole numbers: take them straight from the mantissa.
        if self.0.scale() == 0
            && let Ok(whole) = u64::try_from(self.0.mantissa())
        {
            return Digits::grouped(whole).push_to(text);
        }
        let value = self.0.normalize();
        if value.is_sign_negative() && !value.is_zero() {
            text.push('-');
        }
        let magnitude = value.abs();
        // Beyond 18 quintillion nobody reads separators: write those plainly.
        let Some(whole) = magnitude.trunc().to_u64() else {
            return text.push_str(&magnitude.to_string());
        };
        Digits::grouped(whole).push_to(text);
        let fraction = magnitude.fract();
        if !fraction.is_zero() {
            text.push_str(fraction.to_string().trim_start_matches('0'));
        }
    }
}

/// A UTC day as `2026-11-03`.
pub(super) struct Day(pub(super) NaiveDate);

impl Piece for Day {
    fn push_to(&self, text: &mut String) {
        let Ok(year) = u64::try_from(self.0.year()) else {
            return text.push_str(&self.0.to_string());
        };
        let mut digits = Digits::default();
        digits.number(u64::from(self.0.day()), 2, false);
        digits.byte(b'-');
        digits.number(u64::from(self.0.month()), 2, false);
        digits.byte(b'-');
        digits.number(year, 4, false);
        digits.push_to(text);
    }
}

/// The share of calls that failed, as a percentage to at most two decimals: `7.5%`, `33.33%`.
pub(super) struct FailureRate {
    pub(super) failed: u64,
    pub(super) total: u64,
}

impl Piece for FailureRate {
    fn push_to(&self, text: &mut String) {
        // A rate to read, not money, so it is rounded here, half up, in integers.
        let twice = u128::from(self.failed) * 20_000 / u128::from(self.total.max(1));
        let hundredths = u64::try_from(twice.div_ceil(2)).unwrap_or(u64::MAX);
        let (whole, fraction) = (hundredths / 100, hundredths % 100);
        let mut digits = Digits::default();
        digits.byte(b'%');
        if fraction % 10 != 0 {
            digits.number(fraction, 2, false);
            digits.byte(b'.');
        } else if fraction != 0 {
            digits.number(fraction / 10, 1, false);
            digits.byte(b'.');
        }
        digits.number(whole, 1, false);
        digits.push_to(text);
    }
}

/// Characters set right to left in a stack buffer.
struct Digits {
    text: [u8; 32],
    start: usize,
}

impl Default for Digits {
    fn default() -> Self {
        Self {
            text: [0; 32],
            start: 32,
        }
    }
}

impl Digits {
    /// `1234567` as `1,234,567`.
    fn grouped(whole: u64) -> Self {
        let mut digits = Self::default();
        digits.number(whole, 1, true);
        digits
    }

    fn byte(&mut self, byte: u8) {
        // 32 bytes hold every figure set here (u64::MAX grouped is 26), so none is dropped.
        if let Some(start) = self.start.checked_sub(1) {
            self.text[start] = byte;
            self.start = start;
        }
    }

    /// Sets `value` in front, zero-padded to `width`, with a comma every three digits if `grouped`.
    fn number(&mut self, mut value: u64, width: usize, grouped: bool) {
        let mut count = 0;
        while value > 0 || count < width {
            if grouped && count > 0 && count % 3 == 0 {
                self.byte(b',');
            }
            self.byte(b'0' + u8::try_from(value % 10).unwrap_or_default());
            value /= 10;
            count += 1;
        }
    }

    fn push_to(&self, text: &mut String) {
        // Only ASCII digits and marks are ever set, so this always holds.
        if let Ok(figure) = std::str::from_utf8(&self.text[self.start..]) {
            text.push_str(figure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::describe::text;
    use rust_decimal::dec;

    #[test]
    fn thousands_are_separated() {
        let cases = [
            (dec!(0), "0"),
            (dec!(999), "999"),
            (dec!(1000), "1,000"),
            (dec!(12345), "12,345"),
            (dec!(1234567), "1,234,567"),
            (dec!(100000.00), "100,000"),
            (dec!(1234.50), "1,234.5"),
            (dec!(-5000), "-5,000"),
            (dec!(0.25), "0.25"),
        ];
        for (value, written) in cases {
            assert_eq!(text!(Grouped(value)), written);
        }
        assert_eq!(text!(Grouped::from(u64::MAX)), "18,446,744,073,709,551,615");
    }

    #[test]
    fn days_and_rates_read_as_written() {
        assert_eq!(text!(Day(NaiveDate::from_ymd_opt(2026, 1, 9).unwrap())), "2026-01-09");
        let rate = |failed, total| text!(FailureRate { failed, total });
        assert_eq!(
            [rate(75, 1000), rate(1, 3), rate(2, 3), rate(1, 8), rate(3, 3)],
            ["7.5%", "33.33%", "66.67%", "12.5%", "100%"]
        );
    }
}
