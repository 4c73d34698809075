//! The span being rated: a billing period, and the part of it a subscription spent on a tier.

use super::PricingError;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;

/// A billing period: from one midnight UTC up to (not including) a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Period {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    #[serde(skip)]
    days: i64,
}

impl Period {
    /// A period from `start` to `end`, both midnight UTC, `start` first.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, PricingError> {
        if start >= end || !is_midnight(start) || !is_midnight(end) {
            return Err(PricingError::PeriodNotWholeDays);
        }
        let days = (end.date_naive() - start.date_naive()).num_days();
        Ok(Self { start, end, days })
    }

    /// The period covering the days from `first` up to (not including) `end`.
    pub fn of_days(first: NaiveDate, end: NaiveDate) -> Result<Self, PricingError> {
        Self::new(midnight(first), midnight(end))
    }

    /// Its first instant.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after it, which is the next period's start.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// How many days it has: 28 to 31 for a month.
    pub fn days(&self) -> i64 {
        self.days
    }
}

/// A billing period and the part of it the subscription was on the tier being rated: all of it,
/// or less when the subscription starts, ends or changes tier within the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatedPeriod {
    period: Period,
    active_from: DateTime<Utc>,
    active_to: DateTime<Utc>,
    first_active_day: NaiveDate,
    end_active_day: NaiveDate,
    active_days: i64,
    first_period: bool,
}

impl RatedPeriod {
    /// A period the subscription was on the tier from start to end.
    pub fn whole(period: Period) -> Self {
        Self {
            period,
            active_from: period.start,
            active_to: period.end,
            first_active_day: period.start.date_naive(),
            end_active_day: period.end.date_naive(),
            active_days: period.days,
            first_period: false,
        }
    }

    /// A period the subscription was on the tier only from `active_from` up to `active_to`.
    pub fn partial(
        period: Period,
        active_from: DateTime<Utc>,
        active_to: DateTime<Utc>,
    ) -> Result<Self, PricingError> {
        if active_from < period.start || active_to > period.end || active_from >= active_to {
            return Err(PricingError::ActiveOutsidePeriod);
        }
        // A started day counts whole, so the active days run up to the midnight after `active_to`.
        let end_active_day = if is_midnight(active_to) {
            active_to.date_naive()
        } else {
            active_to
                .date_naive()
                .succ_opt()
                .ok_or(PricingError::CalendarOverflow)?
        };
        let first_active_day = active_from.date_naive();
        Ok(Self {
            period,
            active_from,
            active_to,
            first_active_day,
            end_active_day,
            active_days: (end_active_day - first_active_day).num_days(),
            first_period: false,
        })
    }

    /// Marks this as the subscription's first period: the one that carries a one-time fee.
    pub fn as_first_period(self) -> Self {
        Self {
            first_period: true,
            ..self
        }
    }

    /// The whole billing period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// When the subscription came onto the tier within the period.
    pub fn active_from(&self) -> DateTime<Utc> {
        self.active_from
    }

    /// When the subscription left the tier within the period (the period end if it did not).
    pub fn active_to(&self) -> DateTime<Utc> {
        self.active_to
    }

    /// Whether this is the subscription's first period.
    pub fn is_first_period(&self) -> bool {
        self.first_period
    }

    /// The days the subscription was active, each started day counting whole.
    pub fn active_days(&self) -> i64 {
        self.active_days
    }

    /// Whether `day` is one of the active days.
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.first_active_day <= day && day < self.end_active_day
    }
}

pub(super) fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

fn is_midnight(instant: DateTime<Utc>) -> bool {
    instant.time() == NaiveTime::MIN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::fixtures::{at, date, november};

    #[test]
    fn a_period_runs_between_midnights() {
        assert_eq!(november().days(), 30);
        let noon = at("2026-11-01T12:00:00Z");
        assert_eq!(
            Period::new(noon, november().end()),
            Err(PricingError::PeriodNotWholeDays)
        );
        let first = november().start();
        assert_eq!(
            Period::new(first, first),
            Err(PricingError::PeriodNotWholeDays)
        );
    }

    #[test]
    fn a_started_day_counts_whole() {
        let joined =
            RatedPeriod::partial(november(), at("2026-11-18T15:00:00Z"), november().end()).unwrap();
        assert_eq!(joined.active_days(), 13);
        assert!(joined.covers(date("2026-11-18")) && !joined.covers(date("2026-11-17")));
        let left = RatedPeriod::partial(november(), november().start(), at("2026-11-03T00:00:01Z"))
            .unwrap();
        assert_eq!(left.active_days(), 3);
        let one_hour = RatedPeriod::partial(
            november(),
            at("2026-11-05T10:00:00Z"),
            at("2026-11-05T11:00:00Z"),
        )
        .unwrap();
        assert_eq!(one_hour.active_days(), 1);
        assert_eq!(RatedPeriod::whole(november()).active_days(), 30);
    }

    #[test]
    fn the_active_part_stays_inside_the_period() {
        let before = at("2026-10-31T23:00:00Z");
        let during = at("2026-11-10T00:00:00Z");
        let after = at("2026-12-01T00:00:01Z");
        for (from, to) in [(before, during), (during, after), (during, during)] {
            assert_eq!(
                RatedPeriod::partial(november(), from, to),
                Err(PricingError::ActiveOutsidePeriod)
            );
        }
    }
}
