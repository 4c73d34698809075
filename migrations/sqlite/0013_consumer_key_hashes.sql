-- Consumer keys are callers' credentials: `consumer_key` now holds the key's SHA-256 (hex), as
-- gateway keys are kept, and `key_prefix` the few first characters answers show. Rows written
-- before this migration (an empty `key_prefix`) are hashed by tollbooth right after migrating
-- (`Store::migrate`): SQLite has no SHA-256 of its own.
ALTER TABLE consumer_keys ADD COLUMN key_prefix TEXT NOT NULL DEFAULT '';
