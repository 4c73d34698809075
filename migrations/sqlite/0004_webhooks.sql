-- Stripe webhooks and payment state.

-- Every Stripe event received, once: a replay of an id is acknowledged and does nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    -- Stripe's `created` of the event, in Unix milliseconds.
    created     BIGINT NOT NULL,
    -- applied | ignored (a type tollbooth does not act on) | unknown_object | stale
    outcome     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

-- When a subscription fell past due (its grace period runs from here), and the Stripe time of the
-- event its payment state was last taken from: an older event never overrides a newer one.
ALTER TABLE subscriptions ADD COLUMN past_due_since BIGINT;
ALTER TABLE subscriptions ADD COLUMN state_changed_at BIGINT NOT NULL DEFAULT 0;
