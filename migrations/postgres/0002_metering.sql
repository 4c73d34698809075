-- Metering: the raw call records (for audit and dedupe, kept for the retention window) and the
-- aggregation table that billing reads (kept for good).

-- One row per call record the gateway sent. `record_key` is the compact dedupe key of the record id:
-- the 16 bytes of a UUID or ULID (so time-ordered ids stay time-ordered in the index), else a
-- 17-byte 0xFF-prefixed SHA-256 prefix of the id text.
CREATE TABLE call_records (
    record_key      BYTEA PRIMARY KEY,
    record_id       TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    status          INTEGER NOT NULL,
    billable        INTEGER NOT NULL,
    units_micros    BIGINT NOT NULL,
    method          TEXT,
    path            TEXT,
    latency_ms      BIGINT,
    received_at     BIGINT NOT NULL
);
-- The retention purge deletes by the call's own time: a record older than the window would be
-- refused if sent again, so its dedupe row is no longer needed.
CREATE INDEX call_records_occurred ON call_records (occurred_at);

-- Per subscription and hour (Unix milliseconds of the hour's start, UTC). Units are millionths.
-- `revision` orders changes for the export cursor: every upsert takes the next numbers from
-- `usage_revision`, whose single row also serializes writers so revisions commit in order.
CREATE TABLE usage_hourly (
    subscription_id       TEXT NOT NULL,
    hour                  BIGINT NOT NULL,
    billable_calls        BIGINT NOT NULL,
    billable_units_micros BIGINT NOT NULL,
    failed_calls          BIGINT NOT NULL,
    total_calls           BIGINT NOT NULL,
    revision              BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, hour)
);
CREATE INDEX usage_hourly_revision ON usage_hourly (revision);

CREATE TABLE usage_revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO usage_revision (id, value) VALUES (1, 0);
