-- Stripe writes the billing job owes for a usage line, saved before they are sent. A run stopped
-- after Stripe's answer and before the ledger was updated resends exactly this request (same key,
-- same parameters) first, so Stripe never sees one key with two different requests and never
-- makes a second item. A row goes in the same transaction that updates `billed_lines`.
CREATE TABLE billing_outbox (
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    period_start    BIGINT NOT NULL,
    line            TEXT NOT NULL,
    request         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, period_start, line)
);
