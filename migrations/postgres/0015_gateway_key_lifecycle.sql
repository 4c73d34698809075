-- A gateway's key can be rotated and the gateway revoked. After a rotation the key before it
-- stays valid until `previous_key_expires_at` (Unix ms), so a gateway's configuration can be
-- changed without refused calls; a revoked gateway's keys are valid no more, and the row stays
-- for the records and statistics that name it.
ALTER TABLE gateways ADD COLUMN previous_key_hash TEXT;
ALTER TABLE gateways ADD COLUMN previous_key_expires_at BIGINT;
ALTER TABLE gateways ADD COLUMN key_rotated_at BIGINT;
ALTER TABLE gateways ADD COLUMN revoked_at BIGINT;
