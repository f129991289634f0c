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
