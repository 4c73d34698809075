-- The provider console's sign-in sessions and the subscriber portal's links. Only the SHA-256 of
-- a session's cookie is kept; a portal link's token is signed with `portal_signing_key` (in
-- `settings`) and checked against its row here, which can be revoked.
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

CREATE TABLE portal_links (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX portal_links_subscription ON portal_links (subscription_id, created_at);
