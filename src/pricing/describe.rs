//! How figures read in line descriptions: `12,345 API calls, 5,000 included`.

use super::PeriodUsage;
use crate::domain::tier::{BillingPeriod, Interval};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use std::fmt;

/// A quantity with thousands separators: `1234567.5` reads `1,234,567.5`.
pub(super) struct Grouped(pub(super) Decimal);

impl From<u64> for Grouped {
    fn from(count: u64) -> Self {
        Self(Decimal::from(count))
    }
}

impl fmt::Display for Grouped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0.normalize();
        if value.is_sign_negative() && !value.is_zero() {
            f.write_str("-")?;
        }
        let magnitude = value.abs();
        let Some(whole) = magnitude.trunc().to_u128() else {
            return magnitude.fmt(f);
        };
        // Digits go to the stack, not a String: descriptions are written on every rating.
        let mut digits = Digits::default();
        fmt::Write::write_fmt(&mut digits, format_args!("{whole}"))?;
        let digits = digits.as_str()?;
        let mut at = match digits.len() % 3 {
            0 => 3,
            head => head,
        };
        f.write_str(&digits[..at])?;
        while at < digits.len() {
            f.write_str(",")?;
            f.write_str(&digits[at..at + 3])?;
            at += 3;
        }
        let fraction = magnitude.fract();
        if !fraction.is_zero() {
            f.write_str(fraction.to_string().trim_start_matches('0'))?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Digits {
    bytes: [u8; 40],
    len: usize,
}

impl Digits {
    fn as_str(&self) -> Result<&str, fmt::Error> {
        std::str::from_utf8(&self.bytes[..self.len]).map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Digits {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What the priced quantity counts: API calls, or the units the backend reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Noun {
    /// After a number: `12,345 API calls`.
    pub(super) counted: &'static str,
    /// Opening a description: `API calls 1 to 100,000`.
    pub(super) heading: &'static str,
}

impl Noun {
    /// Calls when the units are the calls, else units.
    pub(super) fn of(usage: &PeriodUsage) -> Self {
        if usage.billable_units == Decimal::from(usage.billable_calls) {
            Self {
                counted: "API calls",
                heading: "API calls",
            }
        } else {
            Self {
                counted: "units",
                heading: "Units",
            }
        }
    }
}

/// A span of units as a reader counts them: `5,001 to 105,000`, or `over 1,005,000`.
pub(super) struct Span {
    pub(super) after: Decimal,
    pub(super) up_to: Option<Decimal>,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.up_to {
            Some(up_to) => write!(
                f,
                "{} to {}",
                Grouped(self.after + Decimal::ONE),
                Grouped(up_to)
            ),
            None => write!(f, "over {}", Grouped(self.after)),
        }
    }
}

/// A billing period's length: `1 month`, `2 weeks`.
pub(super) struct Length(pub(super) BillingPeriod);

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.interval_count.get();
        let unit = match self.0.interval {
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
            Interval::Year => "year",
        };
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "{} {unit}{plural}", Grouped::from(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;
    use std::num::NonZeroU64;

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
        for (value, text) in cases {
            assert_eq!(Grouped(value).to_string(), text);
        }
        assert_eq!(Grouped::from(u64::MAX).to_string(), "18,446,744,073,709,551,615");
    }

    #[test]
    fn spans_and_lengths_read_as_written() {
        let span = Span { after: dec!(5000), up_to: Some(dec!(105000)) };
        assert_eq!(span.to_string(), "5,001 to 105,000");
        assert_eq!(Span { after: dec!(1000000), up_to: None }.to_string(), "over 1,000,000");
        let weeks = BillingPeriod { interval: Interval::Week, interval_count: NonZeroU64::new(2).unwrap() };
        assert_eq!(Length(weeks).to_string(), "2 weeks");
        assert_eq!(Length(BillingPeriod::default()).to_string(), "1 month");
    }
}
