-- +goose Up
-- Keys can be revoked, and show when they were last used.
ALTER TABLE api_keys ADD COLUMN last_used_at bigint;
ALTER TABLE api_keys ADD COLUMN revoked_at bigint;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN revoked_at;
ALTER TABLE api_keys DROP COLUMN last_used_at;
