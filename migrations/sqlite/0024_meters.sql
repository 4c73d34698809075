-- Meters (domain::meter): each api's declared meters and dimensions, as JSON
-- `{"meters": [...], "dimensions": [...]}`. The built-in `calls` and `units` stay in
-- `usage_hourly`, so every catalog from before meters keeps its meaning.
ALTER TABLE apis ADD COLUMN metering TEXT NOT NULL DEFAULT '{}';

-- Per subscription, hour, declared meter and set of dimension values (`{"model":"large"}`, `{}`
-- with none): what the meter measured. Values are millionths, sums split into whole units and
-- millionths as in `usage_hourly`. `records` counts the calls and events that fed the row (a
-- count meter's quantity); for a unique_count meter `sum_whole` counts the values first seen in
-- that hour (the period's exact count is read from `usage_meter_values`). `revision` comes
-- from the same `usage_revision` counter as `usage_hourly`'s, so one export cursor orders both.
CREATE TABLE usage_meters_hourly (
    subscription_id TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    meter           TEXT NOT NULL,
    dimensions      TEXT NOT NULL,
    aggregation     TEXT NOT NULL,
    records         BIGINT NOT NULL,
    sum_whole       BIGINT NOT NULL,
    sum_micros      BIGINT NOT NULL,
    max_micros      BIGINT NOT NULL,
    latest_at       BIGINT NOT NULL,
    latest_micros   BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, hour, meter, dimensions)
);
CREATE INDEX usage_meters_hourly_revision ON usage_meters_hourly (revision);

-- The values a unique_count meter has seen, by the hour they were seen in: a period's count is
-- the number of distinct values over its hours, exact, not a sum of hourly counts.
CREATE TABLE usage_meter_values (
    subscription_id TEXT NOT NULL,
    meter           TEXT NOT NULL,
    dimensions      TEXT NOT NULL,
    value           TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, meter, dimensions, value, hour)
);

-- Usage events (POST /v1/usage-events), deduplicated by the compact key of their tracking id
-- as call records are by their id, and purged with them after the retention window.
CREATE TABLE usage_events (
    record_key      BLOB PRIMARY KEY,
    tracking_id     TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    meter           TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    value           TEXT NOT NULL,
    dimensions      TEXT NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX usage_events_occurred ON usage_events (occurred_at);

-- Each api's distinct values per dimension, for its `max_values` bound.
CREATE TABLE dimension_values (
    api_id    TEXT NOT NULL,
    dimension TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (api_id, dimension, value)
);
