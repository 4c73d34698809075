//! Where a subscription's billing periods fall: repeats of the tier's period from the anchor date,
//! at midnight UTC. Months are counted from the anchor each time, so a period anchored on the 31st
//! runs to the last day of a shorter month and back to the 31st after it (Jan 31, Feb 28, Mar 31).

use super::PricingError;
use super::period::{Period, midnight};
use crate::domain::tier::{BillingPeriod, Interval};
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};

/// The billing period holding `at`, for a subscription whose first period starts on `anchor`.
pub fn period_containing(
    anchor: NaiveDate,
    period: BillingPeriod,
    at: DateTime<Utc>,
) -> Result<Period, PricingError> {
    let day = at.date_naive();
    if day < anchor {
        return Err(PricingError::BeforeAnchor(at));
    }
    let count = period.interval_count.get();
    let mut index = match period.interval {
        Interval::Day | Interval::Week => {
            let elapsed = u64::try_from((day - anchor).num_days())
                .map_err(|_| PricingError::CalendarOverflow)?;
            let length = count
                .checked_mul(days_in(period.interval))
                .ok_or(PricingError::CalendarOverflow)?;
            elapsed / length
        }
        Interval::Month | Interval::Year => {
            let months = i64::from(day.year() - anchor.year()) * 12 + i64::from(day.month())
                - i64::from(anchor.month());
            let elapsed = u64::try_from(months).map_err(|_| PricingError::CalendarOverflow)?;
            let length = count
                .checked_mul(months_in(period.interval))
                .ok_or(PricingError::CalendarOverflow)?;
            elapsed / length
        }
    };
    // A period that starts late in the anchor's month may not have begun yet in `day`'s month.
    if index > 0 && nth_start(anchor, period, index)? > day {
        index -= 1;
    }
    let next = index.checked_add(1).ok_or(PricingError::CalendarOverflow)?;
    Period::new(
        midnight(nth_start(anchor, period, index)?),
        midnight(nth_start(anchor, period, next)?),
    )
}

/// The billing period right after `previous`, one of the periods anchored on `anchor`.
pub fn period_after(
    anchor: NaiveDate,
    period: BillingPeriod,
    previous: &Period,
) -> Result<Period, PricingError> {
    period_containing(anchor, period, previous.end())
}

/// The first day of the `index`-th period (the anchor's own period is the 0th).
fn nth_start(
    anchor: NaiveDate,
    period: BillingPeriod,
    index: u64,
) -> Result<NaiveDate, PricingError> {
    let steps = index
        .checked_mul(period.interval_count.get())
        .ok_or(PricingError::CalendarOverflow)?;
    let start = match period.interval {
        Interval::Day | Interval::Week => steps
            .checked_mul(days_in(period.interval))
            .and_then(|days| anchor.checked_add_days(Days::new(days))),
        Interval::Month | Interval::Year => steps
            .checked_mul(months_in(period.interval))
            .and_then(|months| u32::try_from(months).ok())
            .and_then(|months| anchor.checked_add_months(Months::new(months))),
    };
    start.ok_or(PricingError::CalendarOverflow)
}

fn days_in(interval: Interval) -> u64 {
    if interval == Interval::Week { 7 } else { 1 }
}

fn months_in(interval: Interval) -> u64 {
    if interval == Interval::Year { 12 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::fixtures::{at, date};
    use std::num::NonZeroU64;

    fn every(interval: Interval, count: u64) -> BillingPeriod {
        BillingPeriod {
            interval,
            interval_count: NonZeroU64::new(count).unwrap(),
        }
    }

    fn span(anchor: &str, period: BillingPeriod, instant: &str) -> (NaiveDate, NaiveDate) {
        let found = period_containing(date(anchor), period, at(instant)).unwrap();
        (found.start().date_naive(), found.end().date_naive())
    }

    #[test]
    fn months_clamp_to_a_shorter_month_and_come_back() {
        let month = every(Interval::Month, 1);
        assert_eq!(
            span("2026-01-31", month, "2026-01-31T00:00:00Z"),
            (date("2026-01-31"), date("2026-02-28"))
        );
        assert_eq!(
            span("2026-01-31", month, "2026-02-15T08:00:00Z"),
            (date("2026-01-31"), date("2026-02-28"))
        );
        assert_eq!(
            span("2026-01-31", month, "2026-03-01T00:00:00Z"),
            (date("2026-02-28"), date("2026-03-31"))
        );
        assert_eq!(
            span("2028-01-31", month, "2028-02-29T23:59:59Z"),
            (date("2028-02-29"), date("2028-03-31"))
        );
        assert_eq!(
            span("2026-11-01", month, "2026-11-30T23:59:59Z"),
            (date("2026-11-01"), date("2026-12-01"))
        );
    }

    #[test]
    fn days_weeks_and_years_repeat_from_the_anchor() {
        assert_eq!(
            span(
                "2026-11-01",
                every(Interval::Day, 1),
                "2026-11-07T13:00:00Z"
            ),
            (date("2026-11-07"), date("2026-11-08"))
        );
        assert_eq!(
            span(
                "2026-11-02",
                every(Interval::Week, 2),
                "2026-11-20T00:00:00Z"
            ),
            (date("2026-11-16"), date("2026-11-30"))
        );
        assert_eq!(
            span(
                "2024-02-29",
                every(Interval::Year, 1),
                "2026-06-01T00:00:00Z"
            ),
            (date("2026-02-28"), date("2027-02-28"))
        );
        assert_eq!(
            span(
                "2026-01-15",
                every(Interval::Month, 3),
                "2026-04-14T00:00:00Z"
            ),
            (date("2026-01-15"), date("2026-04-15"))
        );
    }

    #[test]
    fn the_next_period_follows_without_drift() {
        let month = every(Interval::Month, 1);
        let anchor = date("2026-01-31");
        let mut current = period_containing(anchor, month, at("2026-01-31T00:00:00Z")).unwrap();
        let mut ends = Vec::new();
        for _ in 0..3 {
            current = period_after(anchor, month, &current).unwrap();
            ends.push(current.end().date_naive());
        }
        assert_eq!(
            ends,
            [date("2026-03-31"), date("2026-04-30"), date("2026-05-31")]
        );
    }

    #[test]
    fn an_instant_before_the_anchor_has_no_period() {
        let err = period_containing(
            date("2026-11-01"),
            every(Interval::Month, 1),
            at("2026-10-31T23:00:00Z"),
        );
        assert!(matches!(err, Err(PricingError::BeforeAnchor(_))));
    }
}
