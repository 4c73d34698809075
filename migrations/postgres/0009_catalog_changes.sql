-- What changed in the catalog, in commit order, so that each replica (and this process after its
-- own writes) applies only the changes to its in-memory directory and access book instead of
-- reading the whole catalog again. Triggers write it, so every writer (admin API, webhooks, the
-- CLI, a person with a SQL shell) is seen. `seq` comes from the single row of `catalog_revision`,
-- whose row lock is held to commit: changes become visible in `seq` order, so a reader that keeps
-- the last `seq` it saw misses none.
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

-- TG_ARGV[0]: the kind; TG_ARGV[1]: the column holding the object's id.
CREATE FUNCTION note_catalog_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_seq BIGINT;
    row_id   TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := to_jsonb(OLD) ->> TG_ARGV[1];
    ELSE
        row_id := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1 RETURNING value INTO next_seq;
    INSERT INTO catalog_changes (seq, kind, object_id, changed_at)
        VALUES (next_seq, TG_ARGV[0], row_id, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    RETURN NULL;
END;
$$;

CREATE TRIGGER subscriptions_changed AFTER INSERT OR UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('subscription', 'id');
CREATE TRIGGER consumer_keys_changed AFTER INSERT OR UPDATE ON consumer_keys
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('subscription', 'subscription_id');
CREATE TRIGGER apis_changed AFTER INSERT OR UPDATE ON apis
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('api', 'id');
CREATE TRIGGER gateways_changed AFTER INSERT OR UPDATE OR DELETE ON gateways
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('gateway', 'id');
