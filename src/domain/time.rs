//! Time as tollbooth stores it: Unix milliseconds, UTC; hours and days start on their boundary.

use chrono::{DateTime, Utc};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the `step`-long slot (an hour, a day) holding `ms`.
pub fn floor_to(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

/// Stored milliseconds as a UTC time (the epoch for a value chrono cannot hold).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_start_on_their_boundary_also_before_the_epoch() {
        assert_eq!(floor_to(HOUR_MS + 5, HOUR_MS), HOUR_MS);
        assert_eq!(floor_to(-1, DAY_MS), -DAY_MS);
        assert_eq!(from_ms(DAY_MS).to_rfc3339(), "1970-01-02T00:00:00+00:00");
    }
}
