//! Figures as a reader expects them in a line description: `1,234,567`, `2026-11-03`, `7.5%`.
//! They are written three digits at a time from a table, not through the general formatter:
//! descriptions are written on every rating, and the formatter cost more than the pricing did.

use super::describe::Piece;
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// `000001002…999`: every group of three digits, the nth at `3n`.
const GROUPS: &str = match std::str::from_utf8(&groups()) {
    Ok(groups) => groups,
    Err(_) => panic!("the digit table is ASCII"),
};

const fn groups() -> [u8; 3000] {
    let mut table = [0; 3000];
    let mut at = 0;
    let mut hundreds = b'0';
    while hundreds <= b'9' {
        let mut tens = b'0';
        while tens <= b'9' {
            let mut ones = b'0';
            while ones <= b'9' {
                table[at] = hundreds;
                table[at + 1] = tens;
                table[at + 2] = ones;
                at += 3;
                ones += 1;
            }
            tens += 1;
        }
        hundreds += 1;
    }
    table
}

/// `value % 1000` as three digits, zeros in front: `7` is `007`.
fn group(value: u64) -> &'static str {
    let at = usize::try_from(value % 1000).unwrap_or_default() * 3;
    GROUPS.get(at..at + 3).unwrap_or("000")
}

/// `value % 100` as two digits: `3` is `03`.
fn pair(value: u64) -> &'static str {
    let digits = group(value % 100);
    digits.get(1..).unwrap_or(digits)
}

/// Writes `value` with a comma between groups of three digits.
fn push_grouped(text: &mut String, value: u64) {
    if value >= 1000 {
        push_grouped(text, value / 1000);
        text.push(',');
        text.push_str(group(value));
    } else {
        push_plain(text, value);
    }
}

/// Writes `value`, below 1000, without zeros in front.
fn push_plain(text: &mut String, value: u64) {
    let digits = group(value);
    let skipped = match value {
        0..=9 => 2,
        10..=99 => 1,
        _ => 0,
    };
    text.push_str(digits.get(skipped..).unwrap_or(digits));
}

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
            return push_grouped(text, whole);
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
        push_grouped(text, whole);
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
        let Ok(year @ 1000..=9999) = u64::try_from(self.0.year()) else {
            return text.push_str(&self.0.to_string());
        };
        push_plain(text, year / 1000);
        text.push_str(group(year));
        text.push('-');
        text.push_str(pair(u64::from(self.0.month())));
        text.push('-');
        text.push_str(pair(u64::from(self.0.day())));
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
        let total = self.total.max(1);
        // In u64 when it fits, as a u128 division is several times slower.
        let twice = match self.failed.checked_mul(20_000) {
            Some(scaled) => scaled / total,
            None => u64::try_from(u128::from(self.failed) * 20_000 / u128::from(total))
                .unwrap_or(u64::MAX),
        };
        let hundredths = twice.div_ceil(2);
        push_grouped(text, hundredths / 100);
        let fraction = pair(hundredths).trim_end_matches('0');
        if !fraction.is_empty() {
            text.push('.');
            text.push_str(fraction);
        }
        text.push('%');
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
        assert_eq!(
            text!(Day(NaiveDate::from_ymd_opt(2026, 1, 9).unwrap())),
            "2026-01-09"
        );
        let rate = |failed, total| text!(FailureRate { failed, total });
        assert_eq!(
            [
                rate(75, 1000),
                rate(1, 3),
                rate(2, 3),
                rate(1, 8),
                rate(3, 3)
            ],
            ["7.5%", "33.33%", "66.67%", "12.5%", "100%"]
        );
    }
}
