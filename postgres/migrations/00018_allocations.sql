-- +goose Up
-- Allocations per sales channel. A channel's allocation of pool P is a
-- pool row of its own, id 'P~channel' (no pool id can have '~'), with
-- parent_id P: its capacity is the allocation, its held and confirmed the
-- channel's sales, so every claim, give-back, limit and audit of a pool
-- serves it unchanged. The parent's allocated is the sum of its
-- allocations' capacities, out of the general sale's reach; the check
-- below keeps the whole pool from being oversold.
ALTER TABLE pools ADD COLUMN allocated bigint NOT NULL DEFAULT 0
    CONSTRAINT pools_allocated_not_oversold CHECK (allocated >= 0 AND held + confirmed + allocated <= capacity);
ALTER TABLE pools ADD COLUMN parent_id text REFERENCES pools (id);
ALTER TABLE pools ADD COLUMN channel text NOT NULL DEFAULT '';
-- When what the channel has not sold goes back (ms), and when it went.
ALTER TABLE pools ADD COLUMN release_at bigint;
ALTER TABLE pools ADD COLUMN ended_at bigint;
CREATE INDEX pools_parent ON pools (parent_id) WHERE parent_id IS NOT NULL;
ALTER TABLE api_keys ADD COLUMN channel text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_keys DROP COLUMN channel;
DROP INDEX pools_parent;
ALTER TABLE pools DROP COLUMN ended_at;
ALTER TABLE pools DROP COLUMN release_at;
ALTER TABLE pools DROP COLUMN channel;
ALTER TABLE pools DROP COLUMN parent_id;
ALTER TABLE pools DROP COLUMN allocated;
