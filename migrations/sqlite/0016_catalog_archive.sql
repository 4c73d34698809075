-- Apis, tiers and subscribers can be archived (`DELETE` in the admin API) once no live
-- subscription depends on them. The row stays, for the periods, invoices and usage that name it:
-- an archived row is left out of lists, takes no new subscription (nor, for an api, new tiers),
-- and gives up its routes; created or changed again, it is restored.
ALTER TABLE apis ADD COLUMN archived_at BIGINT;
ALTER TABLE tiers ADD COLUMN archived_at BIGINT;
ALTER TABLE subscribers ADD COLUMN archived_at BIGINT;
