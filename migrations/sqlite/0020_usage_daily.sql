-- The aggregation table summed by UTC day (86400000 ms), kept by triggers in the same statement as
-- every change to `usage_hourly`, so it never differs from the sum of its hours. Billing periods
-- run from midnight to midnight, so a period's usage is the sum of its days: the revenue report
-- reads these instead of 24 times as many hourly rows. Units are whole units plus millionths
-- (0 to 999999), as in `usage_hourly`.
CREATE TABLE usage_daily (
    subscription_id       TEXT NOT NULL,
    day                   BIGINT NOT NULL,
    billable_calls        BIGINT NOT NULL,
    billable_units_whole  BIGINT NOT NULL,
    billable_units_micros BIGINT NOT NULL,
    failed_calls          BIGINT NOT NULL,
    total_calls           BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, day)
);

INSERT INTO usage_daily (subscription_id, day, billable_calls, billable_units_whole,
                         billable_units_micros, failed_calls, total_calls)
SELECT subscription_id, (hour / 86400000) * 86400000, SUM(billable_calls),
       SUM(billable_units_whole) + SUM(billable_units_micros) / 1000000,
       SUM(billable_units_micros) % 1000000, SUM(failed_calls), SUM(total_calls)
FROM usage_hourly GROUP BY subscription_id, hour / 86400000;

-- An hour's new totals add what they added to its day: all of them for a new hour, the
-- difference for a changed one. `m` is the day's millionths with the change's, -999999 to
-- 1999998, carried into whole units.
CREATE TRIGGER usage_daily_on_insert AFTER INSERT ON usage_hourly BEGIN
    INSERT OR IGNORE INTO usage_daily (subscription_id, day, billable_calls, billable_units_whole,
                                       billable_units_micros, failed_calls, total_calls)
    VALUES (NEW.subscription_id, (NEW.hour / 86400000) * 86400000, 0, 0, 0, 0, 0);
    UPDATE usage_daily SET
        billable_calls = billable_calls + NEW.billable_calls,
        billable_units_whole = billable_units_whole + NEW.billable_units_whole
            + (billable_units_micros + NEW.billable_units_micros) / 1000000,
        billable_units_micros = (billable_units_micros + NEW.billable_units_micros) % 1000000,
        failed_calls = failed_calls + NEW.failed_calls,
        total_calls = total_calls + NEW.total_calls
    WHERE subscription_id = NEW.subscription_id AND day = (NEW.hour / 86400000) * 86400000;
END;

CREATE TRIGGER usage_daily_on_update AFTER UPDATE ON usage_hourly BEGIN
    UPDATE usage_daily SET
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
    WHERE subscription_id = NEW.subscription_id AND day = (NEW.hour / 86400000) * 86400000;
END;
