-- What changed in the catalog, in commit order, so that each replica (and this process after its
-- own writes) applies only the changes to its in-memory directory and access book instead of
-- reading the whole catalog again. Triggers write it, so every writer (admin API, webhooks, the
-- CLI, a person with a SQL shell) is seen. `seq` comes from the single row of `catalog_revision`,
-- updated in the writing transaction: on SQLite writers are serialized anyway.
CREATE TABLE catalog_revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO catalog_revision (id, value) VALUES (1, 0);

CREATE TABLE catalog_changes (
    seq        BIGINT PRIMARY KEY,
    -- `subscription`, `api` or `gateway`.
    kind       TEXT NOT NULL,
    object_id  TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);

CREATE TRIGGER subscriptions_inserted AFTER INSERT ON subscriptions BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'subscription', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER subscriptions_updated AFTER UPDATE ON subscriptions BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'subscription', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER consumer_keys_inserted AFTER INSERT ON consumer_keys BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'subscription', NEW.subscription_id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER consumer_keys_updated AFTER UPDATE ON consumer_keys BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'subscription', NEW.subscription_id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER apis_inserted AFTER INSERT ON apis BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'api', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER apis_updated AFTER UPDATE ON apis BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'api', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER gateways_inserted AFTER INSERT ON gateways BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'gateway', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER gateways_updated AFTER UPDATE ON gateways BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'gateway', NEW.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
CREATE TRIGGER gateways_deleted AFTER DELETE ON gateways BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'gateway', OLD.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
