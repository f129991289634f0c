-- +goose Up
-- Keys can be revoked, show when they were last used, and may have a
-- quota of held units: held_units counts what the key's holds have held,
-- and each hold records what it counted (quota_key, quota_units), so that
-- confirming, releasing or expiring it gives back exactly that.
ALTER TABLE api_keys ADD COLUMN last_used_at bigint;
ALTER TABLE api_keys ADD COLUMN revoked_at bigint;
ALTER TABLE api_keys ADD COLUMN max_held_units bigint NOT NULL DEFAULT 0 CHECK (max_held_units >= 0);
ALTER TABLE api_keys ADD COLUMN held_units bigint NOT NULL DEFAULT 0 CHECK (held_units >= 0);
ALTER TABLE holds ADD COLUMN quota_key text;
ALTER TABLE holds ADD COLUMN quota_units bigint NOT NULL DEFAULT 0 CHECK (quota_units >= 0);
CREATE INDEX holds_quota ON holds (quota_key) WHERE quota_key IS NOT NULL;

-- Retention: finished holds are purged oldest first, and the feed knows
-- the last event purged, to refuse a cursor from before it.
CREATE INDEX holds_finished ON holds (updated_at) WHERE status IN ('released', 'expired', 'cancelled');
CREATE TABLE purges (
    what    text PRIMARY KEY,
    through bigint NOT NULL
);

-- A per-holder limit counts per API key and holder: pool_holders keys the
-- holder as "<owner> <holder>" (the holder alone when the hold has no
-- owner). Recount it that way from the holds.
DELETE FROM pool_holders;
INSERT INTO pool_holders (pool_id, holder, taken)
SELECT l.pool_id, CASE WHEN h.owner = '' THEN h.holder ELSE h.owner || ' ' || h.holder END, SUM(l.quantity)
FROM hold_lines l JOIN holds h ON h.id = l.hold_id JOIN pools p ON p.id = l.pool_id
WHERE h.status IN ('held', 'confirmed', 'completed') AND p.per_holder_limit > 0
GROUP BY l.pool_id, CASE WHEN h.owner = '' THEN h.holder ELSE h.owner || ' ' || h.holder END;

-- +goose Down
DROP TABLE purges;
DROP INDEX holds_finished;
DROP INDEX holds_quota;
ALTER TABLE holds DROP COLUMN quota_units;
ALTER TABLE holds DROP COLUMN quota_key;
ALTER TABLE api_keys DROP COLUMN held_units;
ALTER TABLE api_keys DROP COLUMN max_held_units;
ALTER TABLE api_keys DROP COLUMN revoked_at;
ALTER TABLE api_keys DROP COLUMN last_used_at;
