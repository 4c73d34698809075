-- Which tier version a subscription was on, and from when: a tier change mid-period rates each
-- part of the period on its own version. `subscriptions.tier_version_id` stays the current one.
CREATE TABLE subscription_tiers (
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    tier_version_id TEXT NOT NULL REFERENCES tier_versions (id),
    from_ms         BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, from_ms)
);

INSERT INTO subscription_tiers (subscription_id, tier_version_id, from_ms)
SELECT id, tier_version_id, started_at FROM subscriptions;
