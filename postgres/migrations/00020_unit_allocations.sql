-- +goose Up
-- Named seats set aside for a sales channel: a unit's channel is '' in
-- the general sale, else the channel whose keys alone may take it. Every
-- claim of a unit is conditional on it (as on hold_id), so the general
-- sale and a channel never take each other's seats; it stays through
-- holds and their ends, until the allocation is ended.
ALTER TABLE units ADD COLUMN channel text NOT NULL DEFAULT '';
CREATE INDEX units_channel ON units (group_id, channel, id) WHERE channel <> '';

-- +goose Down
DROP INDEX units_channel;
ALTER TABLE units DROP COLUMN channel;
