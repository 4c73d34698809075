-- The aggregation table summed by billing period, for the periods the revenue report has asked
-- for: a row is made (from `usage_daily`, holding the `usage_revision` lock that every writer of
-- `usage_hourly` takes) the first time the report needs its period, and from then on kept by a
-- trigger in the same statement as every change to `usage_hourly`, so a row never differs from
-- the sum of the hours in `period_start <= hour < period_end`. A period is found by its exact
-- bounds: rows of bounds that no longer apply (after a change of the tier's period) stay right
-- for their own span and are simply not asked for. Units are whole units plus millionths (0 to
-- 999999), as in `usage_hourly`.
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

-- An hour's new totals add what they added to its periods: all of them for a new hour, the
-- difference for a changed one, the millionths carried into whole units.
CREATE FUNCTION usage_periods_follow() RETURNS trigger LANGUAGE plpgsql AS $$
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
    UPDATE usage_periods AS p SET
        billable_calls = p.billable_calls + calls,
        billable_units_whole = p.billable_units_whole + whole
            + floor((p.billable_units_micros + micros)::numeric / 1000000)::bigint,
        billable_units_micros = p.billable_units_micros + micros
            - floor((p.billable_units_micros + micros)::numeric / 1000000)::bigint * 1000000,
        failed_calls = p.failed_calls + failed,
        total_calls = p.total_calls + total
    WHERE p.subscription_id = NEW.subscription_id AND p.period_end > NEW.hour
      AND p.period_start <= NEW.hour;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_periods_follows AFTER INSERT OR UPDATE ON usage_hourly
    FOR EACH ROW EXECUTE FUNCTION usage_periods_follow();

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
