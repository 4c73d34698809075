-- An hour's billable units as whole units plus the millionths past them. One BIGINT of millionths
-- overflowed after 9.2 × 10^12 units in one subscription-hour (SQLite then stored a float, PostgreSQL
-- refused the batch); whole units in BIGINT cannot overflow at the per-record bound of 10^9 units
-- (see src/domain/units.rs). `billable_units_micros` now holds only the fraction, 0 to 999999.
ALTER TABLE usage_hourly ADD COLUMN billable_units_whole BIGINT NOT NULL DEFAULT 0;
UPDATE usage_hourly SET
    billable_units_whole = CAST(billable_units_micros AS BIGINT) / 1000000,
    billable_units_micros = CAST(billable_units_micros AS BIGINT) % 1000000;
