-- A subscription's Stripe Subscription being made is a change the access decision follows: under
-- TOLLBOOTH_UNMIRRORED_ACCESS=refuse, a paid subscription is served from then on, also on the
-- replicas that did not make it. Noted at commit, as the other catalog changes are (0011).
CREATE CONSTRAINT TRIGGER stripe_subscriptions_changed AFTER INSERT ON stripe_subscriptions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION note_catalog_change('subscription', 'subscription_id');
