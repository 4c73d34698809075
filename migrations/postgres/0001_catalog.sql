-- The local catalog: apis, tiers and their versions, subscribers, subscriptions, gateways.
-- Timestamps are Unix milliseconds (UTC). Definitions that are read whole (a recording policy,
-- a tier version's pricing) are stored as the JSON the provider wrote; money in them is a string.

-- Small settings tollbooth keeps for itself, such as the hash of the admin token made at first start.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE apis (
    id               TEXT PRIMARY KEY,
    slug             TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    recording_policy TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- A tier is a name for a sequence of versions; only the newest is offered to new subscriptions,
-- and a version, once written, never changes (subscriptions stay on theirs).
CREATE TABLE tiers (
    id             TEXT PRIMARY KEY,
    slug           TEXT NOT NULL UNIQUE,
    api_id         TEXT NOT NULL REFERENCES apis (id),
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE tier_versions (
    id         TEXT PRIMARY KEY,
    tier_id    TEXT NOT NULL REFERENCES tiers (id),
    version    BIGINT NOT NULL,
    spec       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tier_id, version)
);

CREATE TABLE subscribers (
    id          TEXT PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE subscriptions (
    id              TEXT PRIMARY KEY,
    external_id     TEXT NOT NULL UNIQUE,
    subscriber_id   TEXT NOT NULL REFERENCES subscribers (id),
    tier_version_id TEXT NOT NULL REFERENCES tier_versions (id),
    status          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    canceled_at     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- The gateway's consumer keys of each subscription. A key identifies at most one live subscription:
-- when a subscription lets a key go, the row is kept with `released_at` for the record.
CREATE TABLE consumer_keys (
    consumer_key    TEXT NOT NULL,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    created_at      BIGINT NOT NULL,
    released_at     BIGINT
);
CREATE UNIQUE INDEX consumer_keys_live ON consumer_keys (consumer_key) WHERE released_at IS NULL;
CREATE INDEX consumer_keys_subscription ON consumer_keys (subscription_id);

-- Gateways post call records and ask for access decisions. Only the SHA-256 of a key is kept.
CREATE TABLE gateways (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
