-- The Stripe mirror. `stripe_objects` says which Stripe object stands for which tollbooth row, in
-- which account (`''` is the platform account, else the provider's connected `acct_…`).
-- `stripe_intents` is the outbox of Stripe writes: each is written in the same transaction as the
-- catalog change that needs it, keyed by its deterministic Idempotency-Key, and stays `pending`
-- until Stripe has answered and the answer is stored. A crash at any point leaves the intent
-- pending; running it again sends the same key, so Stripe answers with the object it already made.

-- The provider's connected account, when an api's objects live there.
ALTER TABLE apis ADD COLUMN stripe_account TEXT;

-- A cancellation asked for at the end of the current period.
ALTER TABLE subscriptions ADD COLUMN cancel_at_period_end INTEGER NOT NULL DEFAULT 0;

CREATE TABLE stripe_objects (
    -- product (per tier), price / one_time_price (per tier version), customer (per subscriber)
    kind       TEXT NOT NULL,
    local_id   TEXT NOT NULL,
    account    TEXT NOT NULL,
    stripe_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, local_id, account)
);

-- The Stripe Subscription of a subscription on a paid tier, with the state Stripe last reported.
CREATE TABLE stripe_subscriptions (
    subscription_id      TEXT PRIMARY KEY REFERENCES subscriptions (id),
    account              TEXT NOT NULL,
    stripe_id            TEXT NOT NULL,
    item_id              TEXT NOT NULL,
    price_id             TEXT NOT NULL,
    status               TEXT NOT NULL,
    current_period_start BIGINT,
    current_period_end   BIGINT,
    cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
    checkout_url         TEXT,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE stripe_intents (
    -- Run order: an intent never depends on a later one.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    intent          TEXT NOT NULL,
    -- The catalog row the admin call was about (tier, subscriber, subscription): its intents run
    -- as part of that call.
    subject_id      TEXT NOT NULL,
    local_id        TEXT NOT NULL,
    account         TEXT NOT NULL,
    -- pending | done
    state           TEXT NOT NULL,
    stripe_id       TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX stripe_intents_subject ON stripe_intents (subject_id, state);
CREATE INDEX stripe_intents_pending ON stripe_intents (state, seq);
