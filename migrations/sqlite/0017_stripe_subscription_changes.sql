-- A subscription's Stripe Subscription being made is a change the access decision follows: under
-- TOLLBOOTH_UNMIRRORED_ACCESS=refuse, a paid subscription is served from then on, also on the
-- replicas that did not make it.
CREATE TRIGGER stripe_subscriptions_inserted AFTER INSERT ON stripe_subscriptions BEGIN
    UPDATE catalog_revision SET value = value + 1 WHERE id = 1;
    INSERT INTO catalog_changes SELECT value, 'subscription', NEW.subscription_id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM catalog_revision;
END;
