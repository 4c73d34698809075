-- The outbox of notifications to the provider. A notification is written in the transaction of
-- the change it reports, then claimed (`claimed_until`), posted and marked by whichever process
-- gets to it first: delivered at least once, with the same id, in order per subscription.
CREATE TABLE notifications (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    -- Deliveries go in order per subscription; '' for a notification of none.
    subscription_id TEXT NOT NULL,
    -- The JSON body as delivered.
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- pending, delivered, or failed (parked after its attempts until sent again by hand).
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- Until when a process sending it holds it (Unix ms); 0 when none does.
    claimed_until   BIGINT NOT NULL,
    last_error      TEXT,
    delivered_at    BIGINT
);

CREATE INDEX notifications_pending ON notifications (status, subscription_id, seq);
