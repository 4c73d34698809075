-- The aggregation table summed by billing period, for the periods the revenue report has asked
-- for: a row is made (from `usage_daily`, under the write lock) the first time the report needs
-- its period, and from then on kept by triggers in the same statement as every change to
-- `usage_hourly`, so a row never differs from the sum of the hours in `period_start <= hour <
-- period_end`. A period is found by its exact bounds: rows of bounds that no longer apply (after
-- a change of the tier's period) stay right for their own span and are simply not asked for.
-- Units are whole units plus millionths (0 to 999999), as in `usage_hourly`.
CREATE TABLE usage_periods (
    subscription_id       TEXT NOT NULL,
    period_end            BIGINT NOT NULL,
    period_start          BIGINT NOT NULL,
    billable_calls        BIGINT NOT NULL,
    billable_units_whole  BIGINT NOT NULL,
    billable_units_micros BIGINT NOT NULL,
    failed_calls          BIGINT NOT NULL,
    total_calls           BIGINT NOT NULL,
    -- By end first: the periods an hour falls in are those ending after it, found without
    -- reading a subscription's past periods.
    PRIMARY KEY (subscription_id, period_end, period_start)
);
-- The report reads the periods starting in its span.
CREATE INDEX usage_periods_by_start ON usage_periods (period_start);

CREATE TRIGGER usage_periods_on_insert AFTER INSERT ON usage_hourly BEGIN
    UPDATE usage_periods SET
        billable_calls = billable_calls + NEW.billable_calls,
        billable_units_whole = billable_units_whole + NEW.billable_units_whole
            + (billable_units_micros + NEW.billable_units_micros) / 1000000,
        billable_units_micros = (billable_units_micros + NEW.billable_units_micros) % 1000000,
        failed_calls = failed_calls + NEW.failed_calls,
        total_calls = total_calls + NEW.total_calls
    WHERE subscription_id = NEW.subscription_id AND period_end > NEW.hour
      AND period_start <= NEW.hour;
END;

CREATE TRIGGER usage_periods_on_update AFTER UPDATE ON usage_hourly BEGIN
    UPDATE usage_periods SET
        billable_calls = billable_calls + NEW.billable_calls - OLD.billable_calls,
        billable_units_whole = billable_units_whole + NEW.billable_units_whole - OLD.billable_units_whole
            + CASE
                WHEN billable_units_micros + NEW.billable_units_micros - OLD.billable_units_micros < 0 THEN -1
                WHEN billable_units_micros + NEW.billable_units_micros - OLD.billable_units_micros >= 1000000 THEN 1
                ELSE 0 END,
        billable_units_micros = billable_units_micros + NEW.billable_units_micros - OLD.billable_units_micros
            + CASE
                WHEN billable_units_micros + NEW.billable_units_micros - OLD.billable_units_micros < 0 THEN 1000000
                WHEN billable_units_micros + NEW.billable_units_micros - OLD.billable_units_micros >= 1000000 THEN -1000000
                ELSE 0 END,
        failed_calls = failed_calls + NEW.failed_calls - OLD.failed_calls,
        total_calls = total_calls + NEW.total_calls - OLD.total_calls
    WHERE subscription_id = NEW.subscription_id AND period_end > NEW.hour
      AND period_start <= NEW.hour;
END;

-- Calls of all subscriptions by UTC day, for the console's trend: kept by the writer of
-- `usage_hourly` in the same transaction, one row per day a batch touches.
CREATE TABLE usage_days (
    day            BIGINT NOT NULL PRIMARY KEY,
    billable_calls BIGINT NOT NULL,
    failed_calls   BIGINT NOT NULL,
    total_calls    BIGINT NOT NULL
);

INSERT INTO usage_days (day, billable_calls, failed_calls, total_calls)
SELECT day, SUM(billable_calls), SUM(failed_calls), SUM(total_calls)
FROM usage_daily GROUP BY day;
