-- The catalog-change triggers fire at commit (deferred constraint triggers), not at each
-- statement: the `catalog_revision` row lock that orders the changes is then held only while the
-- transaction commits, instead of from its first catalog write on, so concurrent admin writes
-- queue for the commit alone, and no other lock is ever taken while it is held.
DROP TRIGGER subscriptions_changed ON subscriptions;
DROP TRIGGER consumer_keys_changed ON consumer_keys;
DROP TRIGGER apis_changed ON apis;
DROP TRIGGER gateways_changed ON gateways;

CREATE CONSTRAINT TRIGGER subscriptions_changed AFTER INSERT OR UPDATE ON subscriptions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('subscription', 'id');
CREATE CONSTRAINT TRIGGER consumer_keys_changed AFTER INSERT OR UPDATE ON consumer_keys
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('subscription', 'subscription_id');
CREATE CONSTRAINT TRIGGER apis_changed AFTER INSERT OR UPDATE ON apis
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('api', 'id');
CREATE CONSTRAINT TRIGGER gateways_changed AFTER INSERT OR UPDATE OR DELETE ON gateways
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('gateway', 'id');
