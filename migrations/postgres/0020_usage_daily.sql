-- The aggregation table summed by UTC day (86400000 ms), kept by a trigger in the same statement as
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
-- difference for a changed one, the millionths carried into whole units.
CREATE FUNCTION usage_daily_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    calls  BIGINT := NEW.billable_calls;
    whole  BIGINT := NEW.billable_units_whole;
    micros BIGINT := NEW.billable_units_micros;
    failed BIGINT := NEW.failed_calls;
    total  BIGINT := NEW.total_calls;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        calls := calls - OLD.billable_calls;
        whole := whole - OLD.billable_units_whole;
        micros := micros - OLD.billable_units_micros;
        failed := failed - OLD.failed_calls;
        total := total - OLD.total_calls;
    END IF;
    INSERT INTO usage_daily AS d (subscription_id, day, billable_calls, billable_units_whole,
                                  billable_units_micros, failed_calls, total_calls)
    VALUES (NEW.subscription_id, (NEW.hour / 86400000) * 86400000, calls,
            whole + floor((micros)::numeric / 1000000)::bigint, micros - floor((micros)::numeric / 1000000)::bigint * 1000000,
            failed, total)
    ON CONFLICT (subscription_id, day) DO UPDATE SET
        billable_calls = d.billable_calls + calls,
        billable_units_whole = d.billable_units_whole + whole
            + floor((d.billable_units_micros + micros)::numeric / 1000000)::bigint,
        billable_units_micros = d.billable_units_micros + micros
            - floor((d.billable_units_micros + micros)::numeric / 1000000)::bigint * 1000000,
        failed_calls = d.failed_calls + failed,
        total_calls = d.total_calls + total;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_daily_follows AFTER INSERT OR UPDATE ON usage_hourly
    FOR EACH ROW EXECUTE FUNCTION usage_daily_follow();
