-- The daily billing job: which day's run was claimed by whom and what it did, and the ledger of
-- what tollbooth has billed to Stripe per subscription, period and invoice line.

-- One row per job and day: whoever inserts it runs that day. A run that stopped (SIGKILL) keeps
-- its row `running` with a lease; once the lease has passed, the next run takes it over.
CREATE TABLE job_runs (
    job          TEXT NOT NULL,
    day          TEXT NOT NULL,
    state        TEXT NOT NULL,
    owner        TEXT NOT NULL,
    leased_until BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    report       TEXT,
    PRIMARY KEY (job, day)
);

-- What has been billed for each usage line of a period, as an invoice item in Stripe. `revision`
-- counts the changes; each change is sent with a key that carries it, so a retry is one change.
CREATE TABLE billed_lines (
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    period_start    BIGINT NOT NULL,
    line            TEXT NOT NULL,
    stripe_item_id  TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL,
    description     TEXT NOT NULL,
    revision        BIGINT NOT NULL,
    -- set when the period's invoice was final and the rest went on the next invoice as late usage
    late            INTEGER NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, period_start, line)
);

-- How far each subscription's periods are closed: the end of the last period whose final usage
-- is on Stripe. A run closes every period that ended since, in order, so a failure or downtime
-- only delays a close.
CREATE TABLE billing_cursors (
    subscription_id TEXT PRIMARY KEY REFERENCES subscriptions (id),
    closed_until    BIGINT NOT NULL
);
