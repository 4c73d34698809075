//! Line descriptions: `12,345 API calls, 5,000 included`. Each is written from its pieces into
//! one String sized up front, by `text!`, because descriptions are written on every rating.

use super::PeriodUsage;
use super::figures::Grouped;
use crate::domain::tier::{BillingPeriod, Interval};
use rust_decimal::Decimal;

/// One piece of a line description, written straight into it.
pub(super) trait Piece {
    fn push_to(&self, text: &mut String);
}

impl Piece for str {
    fn push_to(&self, text: &mut String) {
        text.push_str(self);
    }
}

impl Piece for String {
    fn push_to(&self, text: &mut String) {
        text.push_str(self);
    }
}

impl Piece for crate::domain::text::Name {
    fn push_to(&self, text: &mut String) {
        text.push_str(self);
    }
}

impl<T: Piece + ?Sized> Piece for &T {
    fn push_to(&self, text: &mut String) {
        (**self).push_to(text);
    }
}

/// Writes a line description from its pieces: `text!(Grouped::from(n), " API calls")`.
macro_rules! text {
    ($($piece:expr),+ $(,)?) => {{
        // Room for most descriptions, so they are written without growing.
        let mut text = String::with_capacity(64);
        $( $crate::pricing::describe::Piece::push_to(&$piece, &mut text); )+
        text
    }};
}
pub(super) use text;

/// What the priced quantity counts: API calls, or the units the backend reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Noun<'a> {
    /// After a number: `12,345 API calls`.
    pub(super) counted: &'a str,
    /// Opening a description: `API calls 1 to 100,000`.
    pub(super) heading: &'a str,
}

impl Noun<'static> {
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

impl Piece for Span {
    fn push_to(&self, text: &mut String) {
        match self.up_to {
            Some(up_to) => {
                Grouped(self.after + Decimal::ONE).push_to(text);
                text.push_str(" to ");
                Grouped(up_to).push_to(text);
            }
            None => {
                text.push_str("over ");
                Grouped(self.after).push_to(text);
            }
        }
    }
}

/// A billing period's length: `1 month`, `2 weeks`.
pub(super) struct Length(pub(super) BillingPeriod);

impl Piece for Length {
    fn push_to(&self, text: &mut String) {
        let count = self.0.interval_count.get();
        Grouped::from(count).push_to(text);
        text.push_str(match self.0.interval {
            Interval::Day => " day",
            Interval::Week => " week",
            Interval::Month => " month",
            Interval::Year => " year",
        });
        if count != 1 {
            text.push('s');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;
    use std::num::NonZeroU64;

    #[test]
    fn spans_and_lengths_read_as_written() {
        let span = Span {
            after: dec!(5000),
            up_to: Some(dec!(105000)),
        };
        assert_eq!(text!(span), "5,001 to 105,000");
        assert_eq!(
            text!(Span {
                after: dec!(1000000),
                up_to: None
            }),
            "over 1,000,000"
        );
        let weeks = BillingPeriod {
            interval: Interval::Week,
            interval_count: NonZeroU64::new(2).unwrap(),
        };
        assert_eq!(text!(Length(weeks)), "2 weeks");
        assert_eq!(
            text!("every ", Length(BillingPeriod::default())),
            "every 1 month"
        );
    }
}
