-- Each Stripe invoice of a tollbooth subscription as its `invoice.*` webhooks last described it:
-- what was billed, in the currency's minor unit as Stripe writes it, and where its payment stands.
-- A row is only replaced by an event at least as new (Stripe's `created`) as the one it holds.
CREATE TABLE invoices (
    stripe_id          TEXT PRIMARY KEY,
    subscription_id    TEXT NOT NULL REFERENCES subscriptions (id),
    -- Stripe's status: draft, open, paid, uncollectible or void.
    status             TEXT NOT NULL,
    currency           TEXT NOT NULL,
    total              BIGINT NOT NULL,
    amount_due         BIGINT NOT NULL,
    amount_paid        BIGINT NOT NULL,
    period_start       BIGINT,
    period_end         BIGINT,
    number             TEXT,
    hosted_invoice_url TEXT,
    -- Set by `invoice.payment_failed`, cleared once paid.
    payment_failed_at  BIGINT,
    event_created      BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX invoices_subscription ON invoices (subscription_id, period_start);
