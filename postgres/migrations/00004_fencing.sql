-- +goose Up
-- The last fencing token each resource has seen (redislock strategy): a
-- write carrying an older token — from a holder whose lock expired while it
-- was paused — is refused.
ALTER TABLE pools ADD COLUMN fence bigint NOT NULL DEFAULT 0;
ALTER TABLE units ADD COLUMN fence bigint NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN fence bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE groups DROP COLUMN fence;
ALTER TABLE units DROP COLUMN fence;
ALTER TABLE pools DROP COLUMN fence;
