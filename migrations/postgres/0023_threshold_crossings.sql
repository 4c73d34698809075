-- The usage and spend thresholds each subscription has reached, by billing period: a threshold
-- is notified in the ingestion commit that reaches it, and its row here makes that happen once
-- per period, whichever writer or replica commits it.
CREATE TABLE threshold_crossings (
    subscription_id TEXT NOT NULL,
    period_start    BIGINT NOT NULL,
    -- The alert's key: `hard_limit:80`, `soft_limit:100`, `spend:100`, or `quota.reached`.
    threshold       TEXT NOT NULL,
    reached_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, period_start, threshold)
);
